"""Faults, observers and invariants shared by the chaos cases.

Every case injects real faults into the local cluster (SIGKILL, SIGSTOP, stopped daemons,
deleted objects) and then checks the same invariants:

* **no lost run**: every TrainingRun that was not deleted on purpose ends Succeeded with its
  ``status.result``;
* **no duplicate Job**: one Job per run, with the name the operator derives from the run's
  name, and one UID over the whole case (a :class:`Ledger` polls Jobs and pods in the
  background, so a Job deleted and created again is caught too), and never two runner pods
  of one run running at once;
* **never a partial checkpoint chosen**: a resume names a ``checkpoints/<step>/`` folder whose
  ``manifest.json`` exists and whose objects match the manifest's sha256s and sizes
  (:func:`checkpoint_folders` downloads and hashes them);
* **progress resumes**: a restarted runner starts from the newest complete checkpoint, not 0.

What each case observed (faults, runs lost, recovery times) goes to :class:`Figures`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Credentials, Kube
from kubegym_operator.builders.job import RUN_LABEL, RUN_NAME_ANNOTATION
from kubegym_operator.builders.naming import training_job_name
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import status, training_run
from tests.support.wait import wait_until

TERMINAL = ("Succeeded", "Failed")
MANIFEST = "manifest.json"
REPLAY_BUFFER = "replay_buffer.pkl"

#: What the runner logs when it starts from a checkpoint (kubegym_runner.train.Trainer._download).
RESUME_LINE = re.compile(r"resuming from (s3://\S+) \(timestep (\d+)\)")
#: What the runner is expected to log after loading a checkpoint's replay buffer: the number of
#: transitions the restored buffer holds (``model.replay_buffer.size()``).
BUFFER_LINE = re.compile(r"replay buffer restored: (\d+) transitions")
#: The runner's log record prefix (kubegym_runner.logs): ``2025-01-31 12:00:00,123 INFO name: ...``.
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", re.MULTILINE)


# --- manifests -------------------------------------------------------------------------------


def cartpole(name: str, total: int, every: int, **spec: Any) -> dict[str, Any]:
    """A small PPO CartPole run on CPU that checkpoints every ``every`` steps."""
    base: dict[str, Any] = {
        "totalTimesteps": total,
        "seed": 7,
        "hyperparameters": {"n_steps": 512, "batch_size": 64},
        "checkpoint": {"everySteps": every, "keepLast": 3},
        "evaluation": {"everySteps": 10 * total, "episodes": 5},  # only the final evaluation
        "resources": {"cpu": "100m", "memory": "1536Mi"},
    }
    base.update(spec)
    return training_run(name, **base)


def pendulum_sac(name: str, total: int, every: int, **spec: Any) -> dict[str, Any]:
    """SAC on Pendulum with rl-zoo3's preset and a checkpointed replay buffer."""
    base: dict[str, Any] = {
        "algorithm": "SAC",
        "environment": {"id": "Pendulum-v1"},
        "preset": "rl-zoo3",
        "totalTimesteps": total,
        "seed": 23,
        "hyperparameters": {"buffer_size": 20_000},
        "checkpoint": {"everySteps": every, "keepLast": 3, "saveReplayBuffer": True},
        "evaluation": {"everySteps": 10 * total, "episodes": 10},  # only the final evaluation
        "resources": {"cpu": "500m", "memory": "2Gi"},
    }
    base.update(spec)
    return training_run(name, **base)


def sac_steps_per_second(steps: int = 400) -> float:
    """SAC's training throughput on Pendulum on this machine now, measured in a fresh process as
    a runner pod would train (the CPU-bound part: one gradient step per environment step)."""
    code = (
        "import time\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"  # a runner with a CPU request of 1 or less trains on one thread
        "from stable_baselines3 import SAC\n"
        "m = SAC('MlpPolicy', 'Pendulum-v1', learning_rate=1e-3, buffer_size=20000, seed=0, device='cpu')\n"
        "m.learn(150)\n"
        "t = time.monotonic()\n"
        f"m.learn({steps}, reset_num_timesteps=False)\n"
        f"print({steps} / (time.monotonic() - t))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# --- status ------------------------------------------------------------------------------------


def progress(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(status(kube, ns, name).get("progress") or {})


def timesteps(kube: Kube, ns: str, name: str) -> int:
    return int(progress(kube, ns, name).get("timesteps", 0))


def checkpoint_step(kube: Kube, ns: str, name: str) -> int:
    return int((status(kube, ns, name).get("checkpoints") or {}).get("latestStep", 0))


def finished(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("phase") in TERMINAL else None


def describe(kube: Kube, ns: str, names: Iterable[str], operator: OperatorProcess | None = None) -> Callable[[], str]:
    """A ``wait_until`` description: the runs' status (short) and the operator's last lines."""
    names = list(names)

    def text() -> str:
        parts = []
        for name in names:
            try:
                st = status(kube, ns, name)
            except Exception as e:  # noqa: BLE001 - a description must not fail
                parts.append(f"{name}: {e}")
                continue
            short = {k: st.get(k) for k in ("phase", "reason", "message", "checkpoints", "result")}
            short["timesteps"] = (st.get("progress") or {}).get("timesteps")
            short["resumedFromStep"] = (st.get("progress") or {}).get("resumedFromStep")
            parts.append(f"{name}: {json.dumps(short)[:1500]}")
        if operator is not None:
            parts.append("--- operator:\n" + operator.tail(15))
        return "\n".join(parts)

    return text


def wait_finished(
    kube: Kube, ns: str, name: str, timeout: float, operator: OperatorProcess | None = None
) -> dict[str, Any]:
    return wait_until(
        lambda: finished(kube, ns, name), timeout, f"{name} to finish", describe=describe(kube, ns, [name], operator)
    )


def assert_succeeded(st: dict[str, Any], name: str) -> None:
    """The run is not lost: Succeeded, with the result the runner reported."""
    assert st.get("phase") == "Succeeded", f"{name} ended {st.get('phase')}: {st.get('reason')}: {st.get('message')}"
    result = st.get("result") or {}
    assert result.get("modelUri") and "meanReward" in result, f"{name} succeeded without a status.result: {st}"
    total = (st.get("progress") or {}).get("totalTimesteps")
    assert total is None or result.get("timesteps", 0) >= total, f"{name}: result {result} short of {total} steps"


# --- background observation -------------------------------------------------------------------


def _run_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    return str(annotations.get(RUN_NAME_ANNOTATION) or (meta.get("labels") or {}).get(RUN_LABEL, "?"))


class Ledger:
    """Polls a namespace's Jobs and runner pods and remembers every one it saw, per run.

    Polls that fail (the API server is down on purpose in some cases) are counted and the
    thread goes on. Its own client has a short timeout so it never hangs on a frozen peer.
    """

    def __init__(self, cluster: LocalCluster, namespace: str, interval: float = 0.5) -> None:
        self.kube = Kube(Credentials.from_kubeconfig(cluster.kubeconfig), timeout=5.0)
        self.ns = namespace
        self.interval = interval
        self.jobs: dict[str, dict[str, str]] = defaultdict(dict)
        self.pods: dict[str, dict[str, str]] = defaultdict(dict)
        self.pod_uids: dict[str, list[str]] = defaultdict(list)
        self.overlaps: list[str] = []
        #: (kind, run, state) -> monotonic time it was first seen: pod phases, Job conditions.
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.polls = 0
        self.failed_polls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ledger-{namespace}", daemon=True)

    def __enter__(self) -> Ledger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - outages are part of the cases
                self.failed_polls += 1
            self._stop.wait(self.interval)

    def poll(self) -> None:
        jobs = self.kube.get(f"/apis/batch/v1/namespaces/{self.ns}/jobs")["items"]
        pods = self.kube.get(f"/api/v1/namespaces/{self.ns}/pods", labelSelector=RUN_LABEL)["items"]
        with self._lock:
            now = time.monotonic()
            for job in jobs:
                self.jobs[_run_of(job)][job["metadata"]["uid"]] = job["metadata"]["name"]
                for cond in (job.get("status") or {}).get("conditions") or []:
                    if cond.get("status") == "True":
                        self.first_seen.setdefault(("job", _run_of(job), cond["type"]), now)
            running: dict[str, list[str]] = defaultdict(list)
            for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
                run, uid = _run_of(pod), pod["metadata"]["uid"]
                if uid not in self.pods[run]:
                    self.pod_uids[run].append(uid)
                self.pods[run][uid] = pod["metadata"]["name"]
                self.first_seen.setdefault(("pod", run, f"{uid}:{(pod.get('status') or {}).get('phase')}"), now)
                if (pod.get("status") or {}).get("phase") == "Running":
                    running[run].append(pod["metadata"]["name"])
            for run, names in running.items():
                if len(names) > 1:
                    self.overlaps.append(f"{time.strftime('%H:%M:%S')} {run}: {names} running at once")
            self.polls += 1

    def seen_after(self, kind: str, run: str, state: str, t0: float) -> float | None:
        """Seconds from ``t0`` to when ``state`` was first seen (pods: the phase of any of its pods)."""
        with self._lock:
            times = [
                t
                for (k, r, s), t in self.first_seen.items()
                if k == kind and r == run and (s == state or s.endswith(f":{state}")) and t >= t0
            ]
        return round(min(times) - t0, 1) if times else None

    def duplicate_jobs(self) -> int:
        """Jobs beyond the first one per run (over the whole observation)."""
        with self._lock:
            return sum(max(0, len(uids) - 1) for uids in self.jobs.values())

    def pod_count(self, run: str) -> int:
        with self._lock:
            return len(self.pods.get(run, {}))

    def assert_one_job(self, run: str) -> None:
        with self._lock:
            seen = dict(self.jobs.get(run, {}))
        assert len(seen) == 1, f"{run}: {len(seen)} Jobs seen ({seen}); a run has exactly one"
        (name,) = seen.values()
        assert name == training_job_name(run), f"{run}: Job {name}, not the deterministic {training_job_name(run)}"

    def assert_no_overlap(self) -> None:
        assert not self.overlaps, "two runner pods of one run ran at once:\n" + "\n".join(self.overlaps[:10])


def runner_pods(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    items = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{RUN_LABEL}={name}")["items"]
    return sorted(items, key=lambda p: p["metadata"].get("creationTimestamp", ""))


def running_pod(kube: Kube, ns: str, name: str, not_uids: Iterable[str] = ()) -> dict[str, Any] | None:
    """The run's pod in phase Running that is none of ``not_uids``."""
    skip = set(not_uids)
    for pod in runner_pods(kube, ns, name):
        if pod["metadata"]["uid"] not in skip and (pod.get("status") or {}).get("phase") == "Running":
            return pod
    return None


# --- runner logs (the node's files, kept after the pod is gone) -----------------------------------


def runner_log(cluster: LocalCluster, pod_uid: str) -> str:
    """Everything the runner container of a pod wrote, over all its restarts (oldest first)."""
    logs = cluster.state / "node" / "pods" / pod_uid / "logs"

    def restart(path: Path) -> int:
        tail = path.stem.rpartition("-")[2]
        return int(tail) if tail.isdigit() else 0

    files = sorted(logs.glob("runner-*.log"), key=restart)
    return "\n".join(f.read_text(errors="replace") for f in files)


def resumes(log: str) -> list[tuple[str, int]]:
    """The (folder URI, step) of every "resuming from" line of a runner log."""
    return [(m.group(1), int(m.group(2))) for m in RESUME_LINE.finditer(log)]


def log_times(log: str) -> list[float]:
    """Epoch seconds of every record of a runner log (the runner logs local time)."""
    out = []
    for m in LOG_TIME.finditer(log):
        moment = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        out.append(moment.timestamp() + int(m.group(2)) / 1000)
    return out


def pod_processes(pod_name: str) -> list[int]:
    """Live processes started for a pod: the node gives every container ``KUBEGYM_POD_NAME``
    (the runner's downward-API variable), so this finds them whatever the node recorded."""
    marker = f"KUBEGYM_POD_NAME={pod_name}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (d / "environ").read_bytes().split(b"\0"):
                stat = (d / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(d.name))
    return found


# --- checkpoints in S3 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """One ``checkpoints/<step>/`` folder as a listing and a download show it."""

    step: int
    key: str
    #: Object name -> size of every object in the folder.
    objects: dict[str, int]
    manifest: dict[str, Any] | None
    #: Objects the manifest lists that are missing or do not match its sha256 or size.
    mismatched: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.mismatched

    @property
    def created_at(self) -> datetime | None:
        value = (self.manifest or {}).get("createdAt")
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    def uri(self, bucket: str) -> str:
        return f"s3://{bucket}/{self.key}"


def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def checkpoint_folders(s3: Any, bucket: str, run_prefix: str) -> dict[int, Folder]:
    """Every step folder under ``<run_prefix>/checkpoints/``; those with a manifest are verified
    object by object (sha256 and size). A folder whose manifest vanishes while it is verified
    (pruned meanwhile) counts as one without a manifest."""
    prefix = f"{run_prefix.strip('/')}/checkpoints/"
    grouped: dict[str, dict[str, int]] = defaultdict(dict)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            folder, sep, name = obj["Key"][len(prefix) :].partition("/")
            if sep and folder.isdigit() and name and "/" not in name:
                grouped[folder][name] = int(obj["Size"])
    out: dict[int, Folder] = {}
    for folder, objects in grouped.items():
        key = prefix + folder
        manifest = None
        mismatched: list[str] = []
        if MANIFEST in objects:
            data = _get(s3, bucket, f"{key}/{MANIFEST}")
            manifest = json.loads(data) if data is not None else None
        if manifest is not None:
            for name, digest in (manifest.get("objects") or {}).items():
                blob = _get(s3, bucket, f"{key}/{name}")
                if blob is None or len(blob) != digest["size"] or hashlib.sha256(blob).hexdigest() != digest["sha256"]:
                    mismatched.append(name)
            if mismatched and _get(s3, bucket, f"{key}/{MANIFEST}") is None:
                manifest, mismatched = None, []
        out[int(folder)] = Folder(int(folder), key, objects, manifest, tuple(mismatched))
    return out


def newest_complete(folders: dict[int, Folder], created_before: datetime | None = None) -> Folder | None:
    done = [
        f
        for f in folders.values()
        if f.complete and (created_before is None or (f.created_at is not None and f.created_at < created_before))
    ]
    return max(done, key=lambda f: f.step) if done else None


def assert_manifests_intact(folders: dict[int, Folder], what: str) -> None:
    """A manifest is written last: none may exist whose objects are missing or differ."""
    torn = {f.step: f.mismatched for f in folders.values() if f.manifest is not None and f.mismatched}
    assert not torn, f"{what}: manifests whose objects are missing or do not match their sha256: {torn}"


def replay_buffer_size(s3: Any, bucket: str, folder: Folder) -> int:
    """Transitions in the folder's replay buffer, as stable-baselines3 loads it."""
    from stable_baselines3.common.save_util import load_from_pkl

    assert folder.manifest is not None and REPLAY_BUFFER in folder.manifest["objects"], (
        f"{folder.key} has no {REPLAY_BUFFER} in its manifest: {folder.manifest}"
    )
    blob = _get(s3, bucket, f"{folder.key}/{REPLAY_BUFFER}")
    assert blob is not None, f"{folder.key}/{REPLAY_BUFFER} is missing"
    return int(load_from_pkl(io.BytesIO(blob)).size())


def wait_pod_gone(kube: Kube, ns: str, pod: dict[str, Any], timeout: float) -> None:
    path = f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}"

    def gone() -> bool:
        try:
            return bool(kube.get(path)["metadata"]["uid"] != pod["metadata"]["uid"])
        except ApiError as e:
            if e.status == 404:
                return True
            raise

    wait_until(gone, timeout, f"pod {pod['metadata']['name']} to be gone")


# --- faults ----------------------------------------------------------------------------------------


def sigkill_operator(operator: OperatorProcess) -> None:
    """SIGKILL the operator subprocess: no shutdown, no cleanup, whatever it was doing."""
    proc = operator.proc
    assert proc is not None and proc.poll() is None, "the operator is not running:\n" + operator.tail()
    proc.send_signal(signal.SIGKILL)
    proc.wait(15)
    operator.proc = None


def operator_reconciles(operator: OperatorProcess, kind: str = "TrainingRun") -> float:
    """Successful reconciles of ``kind`` the running operator has done (its Prometheus counter)."""
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    pattern = re.compile(r"^kubegym_reconciles_total\{([^}]*)\} ([0-9.eE+-]+)$", re.MULTILINE)
    total = 0.0
    for m in pattern.finditer(text):
        if f'kind="{kind}"' in m.group(1) and 'result="success"' in m.group(1):
            total += float(m.group(2))
    return total


@contextlib.contextmanager
def frozen(cluster: LocalCluster, component: str) -> Iterator[int]:
    """SIGSTOP a daemon's process group for the block; SIGCONT it whatever happens."""
    pid = cluster.sup.pid(component)
    assert pid is not None, f"{component} is not running"
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.killpg(pid, signal.SIGCONT)


def api_ready(kube: Kube) -> bool:
    try:
        return kube.raw("/readyz") == "ok"
    except Exception:  # noqa: BLE001 - down is an answer here
        return False


def reconnect(kube: Kube, timeout: float = 60) -> None:
    """Let a long-lived client see the restarted API server (stale pooled connections fail once)."""
    wait_until(lambda: kube.get("/api/v1/namespaces/default"), timeout, "the API server to answer again")


# --- figures ---------------------------------------------------------------------------------------


class Figures:
    """What each case observed; rewritten to ``path`` (JSON) after every case and printed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cases: dict[str, dict[str, Any]] = {}

    def record(self, case: str, **values: Any) -> None:
        self.cases[case] = values
        self.path.write_text(json.dumps(self.cases, indent=2, default=str) + "\n")
        print(f"\n[chaos] {case}: {json.dumps(values, default=str)}", flush=True)


def since(t0: float) -> float:
    return round(time.monotonic() - t0, 1)
