"""One pod's life on the local node: volumes, processes, restarts, termination, status.

Each pod gets a worker thread. Containers are processes started in their own session
(so the whole group can be signalled) inside a private mount namespace that maps the
pod's volumes onto their mountPaths (see :mod:`.podspec`). Memory limits become a
cgroup (v1 memory controller) per container where the machine allows it, so an
exceeded limit is a real OOM kill, reported as ``OOMKilled``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kube import ApiError, Kube
from ..procs import group_members, kill_group
from . import images
from .podspec import Resolver, SpecError, Volumes, container_env
from .status import ContainerState, condition, exit_code, now, pod_status

Obj = dict[str, Any]
log = logging.getLogger("kubegym.node")

TERMINATION_LOG = "/dev/termination-log"
LAUNCHER = str(Path(__file__).with_name("launch.py"))
MAX_TERMINATION_MESSAGE = 4096
#: How long a refused volume set-up (token or Secret request) is retried before the pod fails.
VOLUME_RETRY_SECONDS = 60.0
BACKOFF_MAX = 60.0


def parse_quantity(q: str | int | float) -> int:
    """Bytes of a memory quantity (Ki/Mi/Gi/k/M/G or plain)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s))


def memory_cgroup_root() -> Path | None:
    """The writable v1 memory cgroup this process lives in, if any."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                root = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                if os.access(root, os.W_OK):
                    return root
    except OSError:
        pass
    return None


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    term_path: Path
    cgroup: Path | None


class PodWorker(threading.Thread):
    def __init__(self, kube: Kube, pod: Obj, root: Path, service_env: dict[str, str], node_name: str) -> None:
        super().__init__(name=f"pod-{pod['metadata']['namespace']}/{pod['metadata']['name']}", daemon=True)
        self.kube = kube
        self.pod = pod
        self.meta = pod["metadata"]
        self.ns, self.name, self.uid = self.meta["namespace"], self.meta["name"], self.meta["uid"]
        self.root = root
        self.service_env = service_env
        self.node_name = node_name
        self.restart_policy = pod["spec"].get("restartPolicy", "Always")
        self.start_time = now()
        self.init = [self._state(c) for c in pod["spec"].get("initContainers", [])]
        self.main = [self._state(c) for c in pod["spec"]["containers"]]
        self.procs: dict[str, Proc] = {}
        self.lock = threading.Lock()
        self.terminate_requested = threading.Event()
        self.grace = 30.0
        self.evict_message: str | None = None
        self.finished = threading.Event()
        self.extra_conditions: list[Obj] = []
        self.pod_reason: str | None = None
        self.pod_message: str | None = None
        self.failed_init = False
        self._cg_root = memory_cgroup_root()

    # --- public, called from the agent thread --------------------------------------------
    def request_termination(self, grace: float) -> None:
        self.grace = grace
        self.terminate_requested.set()

    def request_eviction(self, message: str) -> None:
        self.evict_message = message
        self.grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.terminate_requested.set()

    def log_file(self, container: str, previous: bool = False) -> Path | None:
        states = {c.name: c for c in self.init + self.main}
        st = states.get(container)
        if st is None:
            return None
        n = st.restart_count - (1 if previous else 0)
        if n < 0:
            return None
        return self.root / "logs" / f"{container}-{n}.log"

    def container_running(self, container: str) -> bool:
        p = self.procs.get(container)
        return p is not None and p.popen.poll() is None

    # --- the life of the pod --------------------------------------------------------------
    def _state(self, c: Obj) -> ContainerState:
        return ContainerState(c["name"], c["image"], f"local://{c['image']}")

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:
            # Whatever broke, the pod must still report it and honour its deletion.
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
            self._waiting_all("CreateContainerError", str(e))
            self._report()
            while not self.terminate_requested.wait(1.0):
                pass
            self._kill_all()
            self._report()
            self._delete_object()
        finally:
            self.finished.set()

    def _materialise(self, volumes: Volumes) -> None:
        """Set up the volumes, retrying API refusals for a while as a kubelet retries a mount.

        The Node authorizer learns that this node may request the pod's ServiceAccount token
        from its own informers, so right after binding the request can be refused (403 "no
        relationship found") or the ServiceAccount not be visible yet (404).
        """
        delay, deadline = 0.5, time.monotonic() + VOLUME_RETRY_SECONDS
        while True:
            try:
                volumes.materialise()
                return
            except ApiError as e:
                if e.status not in (403, 404) or time.monotonic() > deadline or self.terminate_requested.is_set():
                    raise
                log.info(
                    "pod %s/%s: volume set-up refused (%s); retrying in %.1fs", self.ns, self.name, e.status, delay
                )
                self.terminate_requested.wait(delay)
                delay = min(delay * 2, 5.0)

    def _run(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        resolver = Resolver(self.kube, self.ns)
        volumes = Volumes(self.pod, self.root / "volumes", resolver)
        self._report()
        try:
            self._materialise(volumes)
        except SpecError as e:
            self._waiting_all("CreateContainerConfigError", str(e))
            self._report()
            self._wait_for_termination(volumes)
            return
        specs = {c["name"]: c for c in self.pod["spec"].get("initContainers", []) + self.pod["spec"]["containers"]}
        # Init containers, one after the other.
        for st in self.init:
            while not self.terminate_requested.is_set():
                self._start(st, specs[st.name], resolver, volumes)
                self._report()
                self._wait_exit([st], volumes)
                term = st.terminated
                if term is None or term["exitCode"] == 0 or self.terminate_requested.is_set():
                    break
                if self.restart_policy == "Never":
                    self.failed_init = True
                    break
                self._backoff(st)
            if self.failed_init or self.terminate_requested.is_set():
                break
        if not self.failed_init and not self.terminate_requested.is_set():
            for st in self.main:
                self._start(st, specs[st.name], resolver, volumes)
            self._report()
            self._supervise(specs, resolver, volumes)
        self._finish(volumes)

    def _supervise(self, specs: dict[str, Obj], resolver: Resolver, volumes: Volumes) -> None:
        restart_at: dict[str, float] = {}
        while not self.terminate_requested.is_set():
            changed = False
            for st in self.main:
                p = self.procs.get(st.name)
                if st.running and p is not None and p.popen.poll() is not None:
                    self._record_exit(st, p)
                    changed = True
                    code = st.terminated["exitCode"] if st.terminated else 0
                    if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0):
                        delay = min(BACKOFF_MAX, 2.0**st.restart_count)
                        restart_at[st.name] = time.monotonic() + delay
                        st.last_state = {"terminated": st.state["terminated"]}
                        st.state = {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": f"back-off {delay:.0f}s restarting container={st.name} pod={self.name}",
                            }
                        }
                if st.name in restart_at and time.monotonic() >= restart_at[st.name]:
                    del restart_at[st.name]
                    st.restart_count += 1
                    self._start(st, specs[st.name], resolver, volumes)
                    changed = True
            if changed:
                self._report()
            if all(st.terminated is not None for st in self.main) and not restart_at:
                return
            self._tick(volumes)

    def _tick(self, volumes: Volumes) -> None:
        self.terminate_requested.wait(0.2)
        try:
            volumes.refresh_tokens()
        except Exception as e:  # noqa: BLE001 - a failed refresh is retried next tick
            log.warning("pod %s/%s: token refresh failed: %s", self.ns, self.name, e)

    def _backoff(self, st: ContainerState) -> None:
        delay = min(BACKOFF_MAX, 2.0**st.restart_count)
        st.last_state = {"terminated": st.state["terminated"]}
        st.state = {"waiting": {"reason": "CrashLoopBackOff"}}
        self._report()
        self.terminate_requested.wait(delay)
        st.restart_count += 1

    def _waiting_all(self, reason: str, message: str) -> None:
        for st in self.init + self.main:
            st.state = {"waiting": {"reason": reason, "message": message}}

    def _wait_for_termination(self, volumes: Volumes) -> None:
        while not self.terminate_requested.is_set():
            self._tick(volumes)
        self._finish(volumes)

    def _wait_exit(self, states: list[ContainerState], volumes: Volumes) -> None:
        while not self.terminate_requested.is_set():
            done = True
            for st in states:
                p = self.procs.get(st.name)
                if st.running and p is not None:
                    if p.popen.poll() is None:
                        done = False
                    else:
                        self._record_exit(st, p)
            if done:
                return
            self._tick(volumes)

    # --- processes ------------------------------------------------------------------------
    def _start(self, st: ContainerState, spec: Obj, resolver: Resolver, volumes: Volumes) -> None:
        try:
            image = images.resolve(spec["image"])
        except images.ImageNotAvailableError as e:
            st.state = {"waiting": {"reason": "ErrImagePull", "message": str(e)}}
            return
        try:
            env = container_env(self.pod, spec, resolver, images.base_environment(), self.service_env)
            mounts = volumes.mounts(spec)
        except SpecError as e:
            st.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            return
        from .podspec import expand

        argv = [expand(a, env) for a in (spec.get("command") or image.entrypoint)]
        argv += [expand(a, env) for a in spec.get("args", [])]
        started = now()
        cid = f"local://{self.uid}/{st.name}/{st.restart_count}"
        if not argv or shutil.which(argv[0], path=env["PATH"]) is None:
            msg = f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH'
            st.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": msg,
                    "startedAt": started,
                    "finishedAt": now(),
                    "containerID": cid,
                }
            }
            st.container_id = cid
            return
        log_path = self.root / "logs" / f"{st.name}-{st.restart_count}.log"
        term_path = self.root / "termination" / st.name
        term_path.parent.mkdir(parents=True, exist_ok=True)
        term_path.write_text("")
        cgroup = self._cgroup(st.name, spec)
        launch = {
            "cgroup": str(cgroup) if cgroup else None,
            "mounts": [{"source": str(term_path), "target": TERMINATION_LOG}]
            + [{"source": str(m.source), "target": m.target, "readOnly": m.read_only} for m in mounts],
            "workingDir": spec.get("workingDir"),
        }
        with open(log_path, "ab") as logf:
            popen = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    sys.executable,
                    LAUNCHER,
                    json.dumps(launch),
                    "--",
                    *argv,
                ],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd="/",
            )
        (self.root / "pids").mkdir(exist_ok=True)
        (self.root / "pids" / st.name).write_text(str(popen.pid))
        self.procs[st.name] = Proc(popen, log_path, term_path, cgroup)
        st.container_id = cid
        st.state = {"running": {"startedAt": started}}

    def _cgroup(self, name: str, spec: Obj) -> Path | None:
        limit = spec.get("resources", {}).get("limits", {}).get("memory")
        if limit is None or self._cg_root is None:
            return None
        cg = self._cg_root / "kubegym" / f"{self.uid}-{name}"
        try:
            cg.mkdir(parents=True, exist_ok=True)
            (cg / "memory.limit_in_bytes").write_text(str(parse_quantity(limit)))
            return cg
        except OSError as e:
            log.warning("memory limit for %s not enforced: %s", name, e)
            return None

    def _record_exit(self, st: ContainerState, p: Proc) -> None:
        code = exit_code(p.popen.returncode)
        reason = "Completed" if code == 0 else "Error"
        if p.cgroup is not None and _oom_killed(p.cgroup):
            reason, code = "OOMKilled", 137
        message = p.term_path.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE].strip()
        spec: Obj = next(
            (
                c
                for c in self.pod["spec"].get("initContainers", []) + self.pod["spec"]["containers"]
                if c["name"] == st.name
            ),
            {},
        )
        if not message and code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = p.log_path.read_text(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        started = st.state.get("running", {}).get("startedAt", now())
        term: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
            "containerID": st.container_id,
        }
        if message:
            term["message"] = message
        st.state = {"terminated": term}
        if p.cgroup is not None:
            _remove_cgroup(p.cgroup)

    def _kill_all(self) -> None:
        """SIGTERM every container, SIGKILL whatever outlives the grace period."""
        live = {n: p for n, p in self.procs.items() if p.popen.poll() is None}
        for p in live.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + max(self.grace, 0.0)
        while time.monotonic() < deadline and any(
            p.popen.poll() is None or group_members(p.popen.pid) for p in live.values()
        ):
            time.sleep(0.1)
        for p in live.values():
            kill_group(p.popen.pid, 0.0)
            p.popen.wait()
        for st in self.init + self.main:
            proc = self.procs.get(st.name)
            if st.running and proc is not None:
                self._record_exit(st, proc)
            elif "waiting" in st.state and st.restart_count == 0 and st.name not in self.procs:
                # Never started: the kubelet reports these as terminated with 137 on pod deletion.
                st.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "startedAt": now(),
                        "finishedAt": now(),
                    }
                }

    def _finish(self, volumes: Volumes) -> None:
        if self.terminate_requested.is_set():
            if self.evict_message is not None:
                self.extra_conditions = [
                    condition("DisruptionTarget", True, "TerminationByKubelet", self.evict_message)
                ]
                self._report()
                self.pod_reason, self.pod_message = "Evicted", self.evict_message
            self._kill_all()
            if self.evict_message is not None:
                self._report(force_phase="Failed")
            else:
                self._report()
            if self.evict_message is None:
                self._delete_object()
        else:
            self._report()
        self.finished.set()

    def _delete_object(self) -> None:
        try:
            self.kube.delete(
                f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.ns, self.name, e)

    # --- status ---------------------------------------------------------------------------
    def _report(self, force_phase: str | None = None) -> None:
        with self.lock:
            status = pod_status(
                self.restart_policy,
                self.init,
                self.main,
                self.start_time,
                failed_init=self.failed_init,
                extra_conditions=self.extra_conditions,
                reason=self.pod_reason,
                message=self.pod_message,
            )
            if force_phase:
                status["phase"] = force_phase
            try:
                self.kube.strategic_patch(f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status", {"status": status})
            except ApiError as e:
                if e.status != 404:
                    log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)

    @property
    def terminal(self) -> bool:
        return self.finished.is_set()


def _oom_killed(cg: Path) -> bool:
    try:
        for line in (cg / "memory.oom_control").read_text().splitlines():
            key, _, val = line.partition(" ")
            if key == "oom_kill" and int(val) > 0:
                return True
    except OSError:
        pass
    return False


def _remove_cgroup(cg: Path) -> None:
    for _ in range(20):
        try:
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.05)
