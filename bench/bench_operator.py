"""The operator's own cost at scale: N runs that cannot schedule, against a bare client, and failover.

On a local cluster of its own (``kubegym_localcluster``, state under ``--state``, default a fresh
folder under /tmp), with the operator as subprocesses (``--replicas``, default 2, leader election
on a Lease as in the chart) watching one namespace, side by side in one run:

* **N runs at once** (``--ns``, default 200 and 1000): N TrainingRuns asking for ``gpu: 1`` on a
  node without GPUs (so their pods never start and only the operator's work is timed) are created
  by 8 client threads; timed until every run's Job exists and every run's status is written.
  Against a **bare client** (the same 8 threads) creating, in a namespace the operator does not
  watch, the same objects the operator made for those runs — the CR, then copies of the Job and the
  per-run objects the operator created (read back from the cluster, owner references pointed at
  the bare CR), then the same status patch — so the comparison holds whatever the operator creates.
* **Latency with 1,000 live**: one more run created at a time (``--probes``), from its POST to its
  Job existing (seen through a watch); p50 and p99.
* **Memory and idle cost with 1,000 live**: the leader's RSS (``/proc``), its CPU seconds over one
  idle minute, and the API requests it made in that minute (its ``kubegym_api_requests_total``
  on ``/metrics``, when it exports that counter).
* **Failover**: SIGKILL of the leader, then one new run: from the kill to that run's Job.
* **Deletion**: every run deleted at once; the time until no Job, ServiceAccount, Role or
  RoleBinding of theirs remains, and the leader's RSS afterwards.

Targets (issue 10): <= 1.3x the bare client at N = 1,000; p99 <= 2 s with 1,000 live; RSS <= 150 MB
at 1,000; failover <= 15 s; near-zero API calls per minute for idle runs.

    python bench/bench_operator.py --write docs/benchmarks.md   # about 15 minutes on 2 cores
    python bench/bench_operator.py --quick                      # N = 100, 5 probes
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchdoc import markers, write_section

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("api", "operator", "runner", "hack")
for folder in reversed(SOURCE_DIRS):
    sys.path.insert(0, str(REPO / folder))

BEGIN, END = markers("bench_operator")
WATCHED = "bench-operator"
BARE = "bench-bare"
SYSTEM = "kubegym-system"
GROUP_PATH = "/apis/kubegym.io/v1alpha1"
THREADS = 8
#: Kinds of the per-run objects the operator may create besides the Job (copied for the bare client).
PER_RUN = {
    "serviceaccounts": "/api/v1",
    "roles": "/apis/rbac.authorization.k8s.io/v1",
    "rolebindings": "/apis/rbac.authorization.k8s.io/v1",
    "secrets": "/api/v1",
}
RUN_LABEL_HINT = "kubegym.io/"
API_REQUESTS = re.compile(r"^kubegym_api_requests_total\{[^}]*\}\s+([0-9.e+]+)$", re.M)


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values by linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def training_run(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 10000,
            "resources": {"cpu": "100m", "memory": "256Mi", "gpu": 1},
        },
    }


# --- watching what exists -----------------------------------------------------------------------


@dataclass
class Seen:
    """What a watch saw: when each Job first appeared, when each run's status was first written."""

    jobs: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def job(self, owner: str, moment: float) -> None:
        with self.lock:
            self.jobs.setdefault(owner, moment)

    def status(self, run: str, moment: float) -> None:
        with self.lock:
            self.statuses.setdefault(run, moment)

    def reset(self) -> None:
        with self.lock:
            self.jobs.clear()
            self.statuses.clear()


class Watcher:
    """Watches a namespace's Jobs and TrainingRuns in two threads, restarting the streams as they end."""

    def __init__(self, kube: Any, namespace: str, job_owner: Callable[[dict[str, Any]], str | None]) -> None:
        self.kube, self.namespace, self.job_owner = kube, namespace, job_owner
        self.seen = Seen()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._loop, args=(f"/apis/batch/v1/namespaces/{namespace}/jobs", self._job), daemon=True
            ),
            threading.Thread(
                target=self._loop, args=(f"{GROUP_PATH}/namespaces/{namespace}/trainingruns", self._run), daemon=True
            ),
        ]
        for thread in self.threads:
            thread.start()

    def _job(self, kind: str, obj: dict[str, Any]) -> None:
        owner = self.job_owner(obj)
        if kind in ("ADDED", "MODIFIED") and owner:
            self.seen.job(owner, time.monotonic())

    def _run(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED") and (obj.get("status") or {}).get("phase"):
            self.seen.status(obj["metadata"]["name"], time.monotonic())

    def _loop(self, path: str, on: Callable[[str, dict[str, Any]], None]) -> None:
        version = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listing = self.kube.get(path)
                    version = listing["metadata"]["resourceVersion"]
                    for item in listing.get("items", []):
                        on("ADDED", item)
                for event in self.kube.watch(path, timeout_seconds=60, resourceVersion=version):
                    if event.get("type") == "ERROR":
                        version = None
                        break
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    on(str(event.get("type")), obj)
                    if self.stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - a stream that broke is restarted from a fresh list
                version = None
                time.sleep(0.5)


def controller_owner(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "TrainingRun":
            return str(ref["name"])
    return None


# --- the operator -----------------------------------------------------------------------------------


class Operator:
    """One replica of ``kubegym-operator`` as a subprocess, watching ``WATCHED`` only."""

    def __init__(self, cluster: Any, state: Path, index: int) -> None:
        from kubegym_localcluster import layout

        self.name = f"kubegym-operator-{index}"
        self.log_path = state / f"{self.name}.log"
        self.metrics_port = layout.free_ports(1)[0]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in SOURCE_DIRS),
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEGYM_STORAGE_BUCKET": layout.BUCKET,
            "KUBEGYM_STORAGE_ENDPOINT": cluster.minio().endpoint,
            # Static keys, as before STS mode: the figures stay comparable (bench_sweep runs older trees too).
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": layout.S3_SECRET,
            "KUBEGYM_LIVENESS": "",
            "KUBEGYM_METRICS_PORT": str(self.metrics_port),
            "KUBEGYM_WATCH_NAMESPACES": WATCHED,
            "KUBEGYM_LEADER_ELECTION": "true",
            "POD_NAME": self.name,
            "POD_NAMESPACE": SYSTEM,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubegym_operator"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def api_requests(self) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        values = [float(v) for v in API_REQUESTS.findall(text)]
        return sum(values) if values else None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def leader_of(kube: Any) -> str | None:
    try:
        lease = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM}/leases/kubegym-operator")
    except Exception:  # noqa: BLE001 - no lease yet
        return None
    holder = (lease.get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None


# --- the benchmark -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    n: int
    operator_s: float
    bare_s: float
    create_s: float


@dataclass
class Figures:
    scales: list[Scale] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rss_idle_mb: float = math.nan
    rss_live_mb: float = math.nan
    rss_after_delete_mb: float = math.nan
    idle_cpu_s: float = math.nan
    idle_api_calls: float | None = None
    failover_s: float = math.nan
    delete_s: float = math.nan
    leftovers: dict[str, int] = field(default_factory=dict)
    crashed: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from kubegym_localcluster.cluster import LocalCluster

        self.args = args
        self.state: Path = args.state or Path(tempfile.mkdtemp(prefix="kubegym-bench-operator-"))
        self.cluster = LocalCluster(self.state)
        self.kube: Any = None
        self.operators: list[Operator] = []
        self.watcher: Watcher | None = None
        self.figures = Figures()

    def up(self) -> None:
        from kubegym_localcluster.cluster import copy_s3_secret

        log(f"starting a local cluster in {self.state}")
        self.cluster.up()
        self.kube = self.cluster.admin()
        for namespace in (WATCHED, BARE, SYSTEM):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            self.kube.apply(f"/api/v1/namespaces/{namespace}", body, "bench-operator")
        for namespace in (WATCHED, BARE):
            path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
            wait_until(lambda path=path: bool(self.kube.get(path)), 60, path)  # type: ignore[misc]
            copy_s3_secret(self.kube, namespace, self.cluster.minio())
        self.operators = [Operator(self.cluster, self.state, i) for i in range(self.args.replicas)]
        for operator in self.operators:
            operator.start()
        wait_until(lambda: self.leader() is not None, 60, "a leader")
        log(f"{len(self.operators)} operator replica(s); leader {self.leader().name}")  # type: ignore[union-attr]
        self.watcher = Watcher(self.kube, WATCHED, controller_owner)
        time.sleep(5)
        self.figures.rss_idle_mb = self.leader().rss_mb()  # type: ignore[union-attr]

    def leader(self) -> Operator | None:
        holder = leader_of(self.kube)
        return next((o for o in self.operators if o.name == holder and o.alive()), None)

    def down(self) -> None:
        if self.watcher is not None:
            self.watcher.stop.set()
        for operator in self.operators:
            operator.stop()
        if self.args.keep:
            log(f"kept the cluster: python -m kubegym_localcluster --state {self.state} down")
            return
        with contextlib.suppress(Exception):
            self.cluster.down()
        if self.args.state is None:
            shutil.rmtree(self.state, ignore_errors=True)

    def check_alive(self) -> None:
        for operator in self.operators:
            if operator.proc is not None and not operator.alive() and operator.name not in self.figures.crashed:
                self.figures.crashed.append(operator.name)

    # --- N at once ------------------------------------------------------------------------------

    def scale(self, n: int, prefix: str) -> Scale:
        assert self.watcher is not None
        seen = self.watcher.seen
        seen.reset()
        names = [f"{prefix}-{i:04d}" for i in range(n)]
        log(f"operator: {n} TrainingRuns at once")
        started = time.monotonic()
        parallel(
            lambda name: self.kube.create(
                f"{GROUP_PATH}/namespaces/{WATCHED}/trainingruns", training_run(name, WATCHED)
            ),
            names,
        )
        created = time.monotonic() - started

        def done() -> bool:
            with seen.lock:
                return all(x in seen.jobs and x in seen.statuses for x in names)

        wait_until(done, self.args.timeout, f"{n} Jobs and statuses")
        with seen.lock:
            finished = max(max(seen.jobs[x], seen.statuses[x]) for x in names)
        operator_s = finished - started
        log(f"  all {n} Jobs and statuses in {operator_s:.1f}s (the CRs alone: {created:.1f}s)")
        bare_s = self.bare(names)
        log(f"  bare client, the same objects: {bare_s:.1f}s ({operator_s / bare_s:.2f}x)")
        self.check_alive()
        return Scale(n, operator_s, bare_s, created)

    def bare(self, names: list[str]) -> float:
        """Create, in BARE, the CRs and copies of what the operator created for ``names``, timed."""
        jobs = {controller_owner(j): j for j in items(self.kube, f"/apis/batch/v1/namespaces/{WATCHED}/jobs")}
        extra: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for plural, prefix in PER_RUN.items():
            for obj in items(self.kube, f"{prefix}/namespaces/{WATCHED}/{plural}"):
                owner = controller_owner(obj)
                if owner:
                    extra.setdefault(owner, []).append((f"{prefix}/namespaces/{BARE}/{plural}", obj))
        statuses = {
            r["metadata"]["name"]: r.get("status") or {}
            for r in self.kube.get(f"{GROUP_PATH}/namespaces/{WATCHED}/trainingruns")["items"]
        }
        job_prefix = "/apis/batch/v1"

        def one(name: str) -> None:
            run = self.kube.create(f"{GROUP_PATH}/namespaces/{BARE}/trainingruns", training_run(name, BARE))
            uid = run["metadata"]["uid"]
            for path, obj in extra.get(name, []):
                self.kube.create(path, copy_for(obj, uid))
            if name in jobs:
                self.kube.create(f"{job_prefix}/namespaces/{BARE}/jobs", copy_for(jobs[name], uid))
            self.kube.merge_patch(
                f"{GROUP_PATH}/namespaces/{BARE}/trainingruns/{name}/status", {"status": statuses.get(name, {})}
            )

        started = time.monotonic()
        parallel(one, names)
        return time.monotonic() - started

    # --- with 1,000 live ------------------------------------------------------------------------

    def probe(self, name: str) -> float:
        assert self.watcher is not None
        started = time.monotonic()
        self.kube.create(f"{GROUP_PATH}/namespaces/{WATCHED}/trainingruns", training_run(name, WATCHED))
        wait_until(lambda: name in self.watcher.seen.jobs, 120, f"the Job of {name}")  # type: ignore[union-attr]
        return self.watcher.seen.jobs[name] - started

    def latency(self) -> None:
        for i in range(self.args.probes):
            self.figures.latencies.append(self.probe(f"probe-{i:03d}"))
            time.sleep(0.5)
        lat = self.figures.latencies
        log(f"  latency with {self.live()} live: p50 {percentile(lat, 0.5):.2f}s, p99 {percentile(lat, 0.99):.2f}s")

    def live(self) -> int:
        listing = self.kube.get(f"{GROUP_PATH}/namespaces/{WATCHED}/trainingruns", limit=1)
        return 1 + int(listing["metadata"].get("remainingItemCount") or 0) if listing.get("items") else 0

    def idle(self) -> None:
        leader = self.leader()
        assert leader is not None
        time.sleep(10)  # the last probes' events settle
        self.figures.rss_live_mb = leader.rss_mb()
        cpu0, calls0 = leader.cpu_seconds(), leader.api_requests()
        time.sleep(self.args.idle)
        self.figures.idle_cpu_s = (leader.cpu_seconds() - cpu0) * 60 / self.args.idle
        calls1 = leader.api_requests()
        if calls0 is not None and calls1 is not None:
            self.figures.idle_api_calls = (calls1 - calls0) * 60 / self.args.idle
        log(
            f"  {self.live()} live runs: leader RSS {self.figures.rss_live_mb:.0f} MB, idle "
            f"{self.figures.idle_cpu_s:.2f} CPU s/min, {self.figures.idle_api_calls} API calls/min"
        )

    def failover(self) -> None:
        leader = self.leader()
        if leader is None or len(self.operators) < 2:
            log("  failover: skipped (one replica)")
            return
        assert self.watcher is not None
        started = time.monotonic()
        leader.kill()
        log(f"  killed the leader {leader.name} (SIGKILL)")
        name = "failover-probe"
        self.kube.create(f"{GROUP_PATH}/namespaces/{WATCHED}/trainingruns", training_run(name, WATCHED))
        wait_until(lambda: name in self.watcher.seen.jobs, 180, "the failover probe's Job")  # type: ignore[union-attr]
        self.figures.failover_s = self.watcher.seen.jobs[name] - started
        log(f"  failover: the new run's Job {self.figures.failover_s:.1f}s after the kill")
        leader.start()  # back as the standby, as a Deployment would restart it

    def delete_all(self) -> None:
        log("deleting every run at once")
        started = time.monotonic()
        for namespace in (WATCHED, BARE):  # one DELETE per run, as `kubectl delete trainingruns --all` does
            path = f"{GROUP_PATH}/namespaces/{namespace}/trainingruns"
            names = [r["metadata"]["name"] for r in self.kube.get(path)["items"]]
            parallel(lambda name, path=path: self.kube.delete(f"{path}/{name}"), names)  # type: ignore[misc]

        def leftovers() -> dict[str, int]:
            counts = {}
            for plural, prefix in {**PER_RUN, "jobs": "/apis/batch/v1"}.items():
                items = self.kube.get(f"{prefix}/namespaces/{WATCHED}/{plural}")["items"]
                counts[plural] = sum(1 for o in items if controller_owner(o))
            counts["trainingruns"] = self.live()
            return counts

        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not any(leftovers().values()), self.args.timeout, "every run and its objects to go", 2.0)
        self.figures.delete_s = time.monotonic() - started
        self.figures.leftovers = leftovers()
        time.sleep(10)
        leader = self.leader()
        if leader is not None:
            self.figures.rss_after_delete_mb = leader.rss_mb()
        self.check_alive()
        log(f"  gone in {self.figures.delete_s:.0f}s; left: {self.figures.leftovers}")


def items(kube: Any, path: str) -> list[dict[str, Any]]:
    """The items of a LIST, each with the ``kind`` and ``apiVersion`` a LIST leaves out of its items."""
    listing = kube.get(path)
    kind = str(listing.get("kind", "")).removesuffix("List")
    return [{"kind": kind, "apiVersion": listing.get("apiVersion"), **item} for item in listing.get("items", [])]


def copy_for(obj: dict[str, Any], owner_uid: str) -> dict[str, Any]:
    """A copy of ``obj`` for the bare namespace: no server fields, owner references to the bare CR."""
    meta = obj["metadata"]
    kept = {k: v for k, v in meta.items() if k in ("name", "labels", "annotations")}
    kept["namespace"] = BARE
    kept["ownerReferences"] = [{**ref, "uid": owner_uid} for ref in meta.get("ownerReferences") or []]
    body = copy.deepcopy({k: v for k, v in obj.items() if k not in ("metadata", "status")})
    body["metadata"] = kept
    if obj.get("kind") == "Job":
        template = body["spec"]["template"]
        labels = template.get("metadata", {}).get("labels", {})
        for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
            labels.pop(key, None)
        body["spec"].pop("selector", None)
        kept["labels"] = {k: v for k, v in (kept.get("labels") or {}).items() if "controller-uid" not in k}
    if obj.get("kind") == "ServiceAccount":
        body.pop("secrets", None)
    return body


def parallel(fn: Callable[[str], Any], names: Iterable[str]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(fn, n) for n in names]:
            future.result()


def wait_until(condition: Callable[[], bool], timeout: float, what: str = "a condition", every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# --- the report ---------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def report(bench: Bench, command: str, seconds: float) -> str:
    f = bench.figures
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    lines = [
        BEGIN,
        "## The operator at scale (bench/bench_operator.py)",
        "",
        f"`{command}` — {datetime.now(UTC):%Y-%m-%d}, commit `{head.stdout.strip()}`, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {bench.args.replicas} operator replica(s) (subprocesses, leader "
        f"election on a Lease), {seconds / 60:.0f} minutes in all. Runs ask for `gpu: 1` on a node without GPUs, "
        f"so only the operator's work is timed. Bare client: {THREADS} threads creating the CR, copies of the "
        "objects the operator made for it, and the same status patch.",
        "",
        "| runs created at once | operator: all Jobs + statuses | bare client, same objects | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for s in f.scales:
        ratio = s.operator_s / s.bare_s
        target = _verdict(ratio <= 1.3) if s.n >= 1000 else "-"
        lines.append(
            f"| {s.n} | {s.operator_s:.1f} s | {s.bare_s:.1f} s | {ratio:.2f}x | {target} (<= 1.3x at 1,000) |"
        )
    lat = f.latencies
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    calls = "not exported" if f.idle_api_calls is None else f"{f.idle_api_calls:.0f}"
    lines += [
        "",
        "| measured | value | target |",
        "|---|---|---|",
        f"| one more run → its Job, with ~1,000 live ({len(lat)} tries) | p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"| p99 <= 2 s: {_verdict(p99 <= 2.0)} |",
        f"| leader RSS: idle before any run / ~1,000 live / after deleting them | {f.rss_idle_mb:.0f} / "
        f"{f.rss_live_mb:.0f} / {f.rss_after_delete_mb:.0f} MB | <= 150 MB at 1,000: {_verdict(f.rss_live_mb <= 150)} |",
        f"| leader CPU on ~1,000 idle live runs | {f.idle_cpu_s:.2f} CPU s per minute | - |",
        f"| leader API requests on ~1,000 idle live runs | {calls} per minute | near zero |",
        f"| SIGKILL of the leader → a new run's Job | {f.failover_s:.1f} s | <= 15 s: {_verdict(f.failover_s <= 15)} |",
        f"| every run deleted at once → no Job, ServiceAccount, Role, RoleBinding left | {f.delete_s:.0f} s; "
        f"left: {sum(f.leftovers.values())} | none left: {_verdict(not any(f.leftovers.values()))} |",
        f"| operator crashes | {', '.join(f.crashed) or 'none'} (the killed leader excluded) | none |",
        "",
        END,
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100, 5 probes, a 20 s idle minute")
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], help="runs at once (default 200,1000)")
    parser.add_argument("--replicas", type=int, default=2, help="operator replicas (default 2)")
    parser.add_argument("--probes", type=int, help="runs created one at a time with ~1,000 live (default 20)")
    parser.add_argument("--idle", type=float, help="seconds of the idle measurement (default 60)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds any one step may take")
    parser.add_argument("--state", type=Path, help="the local cluster's state folder (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_operator markers)")
    args = parser.parse_args(argv)
    args.ns = args.ns or ([100] if args.quick else [200, 1000])
    args.probes = args.probes or (5 if args.quick else 20)
    args.idle = args.idle or (20.0 if args.quick else 60.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/bench_operator.py " + " ".join(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    started = time.monotonic()

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        bench.up()
        for i, n in enumerate(args.ns):
            if i:
                bench.delete_all()
            bench.figures.scales.append(bench.scale(n, f"n{n}"))
        bench.latency()
        bench.idle()
        bench.failover()
        bench.delete_all()
    finally:
        bench.down()
    section = report(bench, command, time.monotonic() - started)
    print(section)
    if args.write:
        write_section(args.write, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
