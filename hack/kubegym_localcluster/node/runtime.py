"""One pod's life on the local node: volumes, processes, restarts, termination, status.

Each pod gets a worker thread. Containers are processes started in their own session
(so the whole group can be signalled) inside a private mount namespace that maps the
pod's volumes onto their mountPaths (see :mod:`.podspec` and :mod:`.launch`). Resources
become cgroups (v1 controllers) per container where the machine allows it: a memory limit
is a real OOM kill, reported as ``OOMKilled``; a CPU limit is a CFS quota and a CPU request
is ``cpu.shares``, as a kubelet sets them.

The worker behaves like a kubelet through faults: a container whose configuration cannot be
built yet (a Secret or ConfigMap that does not exist) is retried with back-off until it can;
a status write that fails (the API server is down) is kept and sent again until the API
answers, so the final container state is never lost; the processes it supervises are never
abandoned because a write failed.
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
from .podspec import Resolver, SpecError, Volumes, container_env, parse_cpu, parse_quantity
from .status import ContainerState, condition, exit_code, now, pod_status

Obj = dict[str, Any]
log = logging.getLogger("kubegym.node")

TERMINATION_LOG = "/dev/termination-log"
LAUNCHER = str(Path(__file__).with_name("launch.py"))
MAX_TERMINATION_MESSAGE = 4096
#: How long a refused volume set-up (token or Secret request) is retried before the pod fails.
VOLUME_RETRY_SECONDS = 60.0
BACKOFF_MAX = 60.0
#: Back-off cap for a container whose configuration cannot be built yet (missing Secret...).
CONFIG_RETRY_MAX = 10.0
#: Waiting reasons a kubelet retries by itself (the user may create the missing object).
RETRYABLE_WAITING = frozenset({"CreateContainerConfigError", "ErrImagePull", "ImagePullBackOff"})
CFS_PERIOD_US = 100_000


def cgroup_root(controller: str) -> Path | None:
    """The writable v1 cgroup of ``controller`` this process lives in, if any."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                root = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
                if os.access(root, os.W_OK):
                    return root
    except OSError:
        pass
    return None


def cgroup_settings(resources: Obj) -> dict[str, dict[str, str]]:
    """The cgroup v1 files a kubelet writes for a container's resources, by controller.

    A CPU limit is a CFS quota over a 100 ms period; a CPU request is ``cpu.shares``
    (1024 per core, at least 2); a memory limit is ``memory.limit_in_bytes``.
    """
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    out: dict[str, dict[str, str]] = {}
    cpu: dict[str, str] = {}
    if "cpu" in limits:
        cpu["cpu.cfs_period_us"] = str(CFS_PERIOD_US)
        cpu["cpu.cfs_quota_us"] = str(max(1000, round(parse_cpu(limits["cpu"]) * CFS_PERIOD_US)))
    request = requests.get("cpu", limits.get("cpu"))
    if request is not None:
        cpu["cpu.shares"] = str(max(2, round(parse_cpu(request) * 1024)))
    if cpu:
        out["cpu"] = cpu
    if "memory" in limits:
        out["memory"] = {"memory.limit_in_bytes": str(parse_quantity(limits["memory"]))}
    return out


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    term_path: Path
    cgroups: dict[str, Path]


class PodWorker(threading.Thread):
    def __init__(
        self,
        kube: Kube,
        pod: Obj,
        root: Path,
        service_env: dict[str, str],
        node_name: str,
        node_stopping: threading.Event | None = None,
    ) -> None:
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
        self._cg_roots = {c: r for c in ("cpu", "memory") if (r := cgroup_root(c)) is not None}
        #: The node is shutting down: stop retrying writes (the next node start lists again).
        self.node_stopping = node_stopping or threading.Event()
        #: The newest status not yet accepted by the API server, and whether the pod object
        #: still has to be deleted; both are retried until the API answers.
        self._unsent: Obj | None = None
        self._delete_pending = False
        self._write_failures = 0
        self._config_retries: dict[str, int] = {}

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
                self._flush()
            self._kill_all()
            self._report()
            self._delete_object()
        finally:
            self._drain()
            self.finished.set()

    def _drain(self) -> None:
        """Retry the last status and the pod's deletion until the API server takes them."""
        delay = 0.5
        while (self._unsent is not None or self._delete_pending) and not self.node_stopping.is_set():
            if self._flush() and (not self._delete_pending or self._delete_object()):
                return
            self.node_stopping.wait(delay)
            delay = min(delay * 2, 5.0)

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
            except SpecError:
                raise
            except Exception as e:  # the API server is unreachable: wait for it
                if self.terminate_requested.is_set():
                    raise SpecError(f"API server unreachable: {_short(e)}") from e
                log.info("pod %s/%s: volume set-up: %s; retrying in %.1fs", self.ns, self.name, _short(e), delay)
                self.terminate_requested.wait(delay)
                delay = min(delay * 2, 5.0)

    def _run(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        resolver = Resolver(self.kube, self.ns)
        volumes = Volumes(self.pod, self.root / "volumes", resolver)
        self._report()
        attempt = 0
        while True:
            try:
                self._materialise(volumes)
                break
            except SpecError as e:
                # A kubelet retries: the missing Secret or ConfigMap may be created later.
                self._waiting_all("CreateContainerConfigError", str(e))
                self._report()
                if self.terminate_requested.wait(config_backoff(attempt)):
                    self._finish(volumes)
                    return
                attempt += 1
        specs = {c["name"]: c for c in self.pod["spec"].get("initContainers", []) + self.pod["spec"]["containers"]}
        # Init containers, one after the other.
        for st in self.init:
            while not self.terminate_requested.is_set():
                self._start(st, specs[st.name], resolver, volumes)
                self._report()
                if self._retryable_waiting(st):
                    self._wait_retry(st, volumes)
                    continue
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
        retry_at: dict[str, float] = {}
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
                elif st.name not in restart_at and self._retryable_waiting(st):
                    # Never started (missing Secret, image): retried without counting a restart.
                    retry_at.setdefault(st.name, time.monotonic() + self._next_config_delay(st))
                    if time.monotonic() >= retry_at[st.name]:
                        del retry_at[st.name]
                        self._start(st, specs[st.name], resolver, volumes)
                        changed = True
            if changed:
                self._report()
            if all(st.terminated is not None for st in self.main) and not restart_at:
                return
            self._tick(volumes)

    def _retryable_waiting(self, st: ContainerState) -> bool:
        return st.state.get("waiting", {}).get("reason") in RETRYABLE_WAITING

    def _next_config_delay(self, st: ContainerState) -> float:
        n = self._config_retries.get(st.name, 0)
        self._config_retries[st.name] = n + 1
        return config_backoff(n)

    def _wait_retry(self, st: ContainerState, volumes: Volumes) -> None:
        deadline = time.monotonic() + self._next_config_delay(st)
        while time.monotonic() < deadline and not self.terminate_requested.is_set():
            self._tick(volumes)

    def _tick(self, volumes: Volumes) -> None:
        self.terminate_requested.wait(0.2)
        if self._unsent is not None:
            self._flush()
        try:
            volumes.refresh_tokens()
        except Exception as e:  # noqa: BLE001 - a failed refresh is retried next tick
            log.warning("pod %s/%s: token refresh failed: %s", self.ns, self.name, e)
        try:
            if volumes.sync_sources():
                log.info("pod %s/%s: Secret/ConfigMap volumes updated", self.ns, self.name)
        except Exception as e:  # noqa: BLE001 - the next sync tries again
            log.warning("pod %s/%s: volume sync failed: %s", self.ns, self.name, _short(e))

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
            site = images.site_mounts(self.root.parent.parent)
            env = container_env(self.pod, spec, resolver, images.base_environment(bool(site)), self.service_env)
            mounts = volumes.mounts(spec)
        except SpecError as e:
            st.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            return
        except Exception as e:  # noqa: BLE001 - the API server is unreachable: retried as a kubelet does
            message = f"cannot read the container's configuration: {_short(e)}"
            st.state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
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
        cgroups = self._cgroups(st.name, spec)
        launch = {
            "cgroups": [str(c) for c in cgroups.values()],
            # The image's own files first (its sources), then the termination log and the volumes.
            "mounts": [
                {"source": str(src), "target": target, "readOnly": True} for src, target in image.source_mounts + site
            ]
            + [{"source": str(term_path), "target": spec.get("terminationMessagePath") or TERMINATION_LOG}]
            + [{"source": str(m.source), "target": m.target, "readOnly": m.read_only} for m in mounts],
            "workingDir": spec.get("workingDir"),
            "scratch": str(self.root / "scratch" / f"{st.name}-{st.restart_count}"),
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
        self.procs[st.name] = Proc(popen, log_path, term_path, cgroups)
        st.container_id = cid
        st.state = {"running": {"startedAt": started}}

    def _cgroups(self, name: str, spec: Obj) -> dict[str, Path]:
        """One cgroup per controller the container's resources need, written before it starts."""
        out: dict[str, Path] = {}
        for controller, files in cgroup_settings(spec.get("resources", {})).items():
            root = self._cg_roots.get(controller)
            if root is None:
                log.warning("%s resources of %s not enforced: no writable %s cgroup", controller, name, controller)
                continue
            cg = root / "kubegym" / f"{self.uid}-{name}"
            try:
                cg.mkdir(parents=True, exist_ok=True)
                for fname, value in files.items():
                    (cg / fname).write_text(value)
                out[controller] = cg
            except OSError as e:
                log.warning("%s resources of %s not enforced: %s", controller, name, e)
        return out

    def _record_exit(self, st: ContainerState, p: Proc) -> None:
        code = exit_code(p.popen.returncode)
        reason = "Completed" if code == 0 else "Error"
        if "memory" in p.cgroups and _oom_killed(p.cgroups["memory"]):
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
        for cg in p.cgroups.values():
            _remove_cgroup(cg)

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

    def _delete_object(self) -> bool:
        """Delete the pod object (grace 0); ``False`` when the API did not answer (retried)."""
        self._delete_pending = True
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
                if e.status < 500 and e.status != 429:
                    self._delete_pending = False
                return not self._delete_pending
        except Exception as e:  # noqa: BLE001 - the API server is unreachable: retried
            log.warning("pod %s/%s: final delete failed: %s; retrying", self.ns, self.name, _short(e))
            return False
        self._delete_pending = False
        return True

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
            self._unsent = status
        self._flush()

    def _flush(self) -> bool:
        """Send the newest unsent status; ``True`` when nothing is left to send."""
        with self.lock:
            status = self._unsent
            if status is None:
                return True
            try:
                self.kube.strategic_patch(f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status", {"status": status})
            except ApiError as e:
                if e.status == 404 or (e.status < 500 and e.status not in (409, 429)):
                    if e.status != 404:
                        log.warning("pod %s/%s: status update refused: %s", self.ns, self.name, e)
                    self._unsent = None  # the pod is gone, or the API will never take this body
                    return True
                self._note_write_failure(e)
                return False
            except Exception as e:  # noqa: BLE001 - the API server is unreachable: kept and retried
                self._note_write_failure(e)
                return False
            self._unsent = None
            if self._write_failures:
                log.info("pod %s/%s: status delivered after %d failed writes", self.ns, self.name, self._write_failures)
                self._write_failures = 0
            return True

    def _note_write_failure(self, e: Exception) -> None:
        self._write_failures += 1
        if self._write_failures in (1, 10) or self._write_failures % 100 == 0:
            log.warning(
                "pod %s/%s: status update failed (%d times so far; kept and retried): %s",
                self.ns,
                self.name,
                self._write_failures,
                _short(e),
            )

    @property
    def terminal(self) -> bool:
        return self.finished.is_set()


def config_backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based) of a container that could not be configured."""
    return float(min(CONFIG_RETRY_MAX, 2.0**attempt))


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


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
