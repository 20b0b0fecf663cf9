"""Throughput of runs that share a node, against bare rl-zoo3, and steps lost to a storage outage.

On a local cluster of its own (``kubegym_localcluster``, state under ``--state``, default a fresh
folder under /tmp; the operator as a subprocess), side by side in one run:

* **Sharing a node.** For k in ``--ks`` (default 1, 2, 4) and PPO and DQN on CartPole-v1 with
  rl-zoo3's presets and fixed budgets (``--ppo-steps``, ``--dqn-steps`` per run): k TrainingRuns
  at once, each with a CPU request of (node cores / k), against k bare ``python -m rl_zoo3.train``
  processes at once with the same thread settings (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
  ``--num-threads`` = max(1, cores // k), what the runner derives from that request), and against
  one run alone (k = 1).
* **A storage outage.** One PPO run (request: every core) checkpointing every few seconds, with
  MinIO frozen (SIGSTOP of the pid in ``<state>/pids/minio.pid``) for ``--freeze`` seconds mid-run,
  against the same run without an outage: the steps made in the frozen minute, and in the same
  stretch of training without it. The StorageAvailable condition is watched meanwhile.

Throughput is measured over the stretch of training every one of the k runs (or processes) is in:
from the moment the last of them passed 10% of its budget to the moment the first passed 80%, from
``status.progress.timesteps`` for TrainingRuns (polled every 0.5 s; the runners report every 2 s; the
final report, sent after the last upload and the final evaluation, is left out) and SB3's
``total_timesteps`` log lines for rl-zoo3 (``--log-interval 1``). Pod start, imports, uploads at the
end and the final evaluation are outside it.

Targets (issue 13): aggregate of k runs >= 0.9 x min(k, cores) x one run alone; >= 0.95x the bare
rl-zoo3 processes at equal k; a 60 s outage costs < 5% of the steps made in that minute without it.

    python bench/bench_parallel.py --write docs/benchmarks.md   # about 15 minutes on 2 cores
    python bench/bench_parallel.py --quick                       # k in 1, 2, small budgets, 20 s freeze
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchdoc import markers, write_section

REPO = Path(__file__).resolve().parents[1]
for folder in ("api", "runner", "operator", "hack"):
    sys.path.insert(0, str(REPO / folder))

BEGIN, END = markers("bench_parallel")
NAMESPACE = "bench-parallel"
GROUP_PATH = "/apis/kubegym.io/v1alpha1"
#: The stretch of each budget the throughput is measured over.
LOW, HIGH = 0.1, 0.8
ALGOS = {"ppo": "PPO", "dqn": "DQN"}
ENV_ID = "CartPole-v1"
MEMORY = "1536Mi"
#: Seconds between two looks at the runs' status.
POLL = 0.5
#: Steps SB3 logs as ``|    total_timesteps    | 2048  |``.
TOTAL_TIMESTEPS = re.compile(r"total_timesteps\s*\|\s*(\d+)")

Series = list[tuple[float, int]]


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- series arithmetic --------------------------------------------------------------------------


def crossing(series: Series, steps: float) -> float | None:
    """When ``series`` (time, timesteps) reached ``steps``, linearly interpolated; None if it never did."""
    previous: tuple[float, int] | None = None
    for t, s in series:
        if s >= steps:
            if previous is None or s == previous[1]:
                return t
            t0, s0 = previous
            return t0 + (t - t0) * (steps - s0) / (s - s0)
        previous = (t, s)
    return None


def steps_at(series: Series, moment: float) -> float:
    """Timesteps at ``moment``, linearly interpolated (clamped to the first and last samples)."""
    if not series:
        return 0.0
    if moment <= series[0][0]:
        return float(series[0][1])
    for (t0, s0), (t1, s1) in itertools.pairwise(series):
        if t0 <= moment <= t1:
            return s0 + (s1 - s0) * ((moment - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return float(series[-1][1])


@dataclass(frozen=True)
class Window:
    """Aggregate throughput of several series over the stretch all of them are in."""

    rate: float
    seconds: float
    #: False when the runs barely overlapped: then total steps over the whole span (conservative).
    common: bool
    per_run: tuple[float, ...]


def aggregate(series: Sequence[Series], budget: int) -> Window:
    """Aggregate steps/s of ``series`` from the last of them passing LOW to the first passing its high mark.

    A run's high mark is HIGH of its budget, or its last progress sample before the final report
    when that came earlier (a short run may finish between two reports); a run whose last sample
    is below half its budget, or that never passed LOW before it, cannot be measured.
    """
    lows: list[float] = []
    highs: list[float] = []
    for s in series:
        last = s[-1][1] if s else 0
        target = min(HIGH * budget, last)
        low, high = crossing(s, LOW * budget), crossing(s, target)
        if target < 0.5 * budget or low is None or high is None or high <= low:
            raise RuntimeError(
                f"a run was never sampled between {LOW:.0%} and {HIGH:.0%} of its budget "
                f"(samples: {[(round(t, 1), n) for t, n in s]}); give it a larger budget"
            )
        lows.append(low)
        highs.append(high)
    per_run = tuple(
        (steps_at(s, h) - steps_at(s, low)) / (h - low) for s, low, h in zip(series, lows, highs, strict=True)
    )
    start, end = max(lows), min(highs)
    if end - start >= 3.0:
        steps = sum(steps_at(s, end) - steps_at(s, start) for s in series)
        return Window(steps / (end - start), end - start, True, per_run)
    span = max(highs) - min(lows)
    total = sum(steps_at(s, h) - steps_at(s, low) for s, low, h in zip(series, lows, highs, strict=True))
    return Window(total / span, span, False, per_run)


# --- the cluster ------------------------------------------------------------------------------------


class Operator:
    """``kubegym-operator`` as a subprocess with the cluster's admin kubeconfig (as the integration tier runs it)."""

    def __init__(self, cluster: Any, log_path: Path) -> None:
        from kubegym_localcluster import layout

        self.log_path = log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("api", "operator", "runner")),
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEGYM_STORAGE_BUCKET": layout.BUCKET,
            "KUBEGYM_STORAGE_ENDPOINT": cluster.minio().endpoint,
            # Static keys, as before STS mode: the figures stay comparable (bench_sweep runs older trees too).
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": layout.S3_SECRET,
            "KUBEGYM_PROGRESS_INTERVAL_SECONDS": "2",
            "KUBEGYM_LIVENESS": "",
            "KUBEGYM_METRICS_PORT": str(layout.free_ports(1)[0]),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubegym_operator"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def training_run(name: str, algo: str, steps: int, seed: int, cpu_m: int, every: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "algorithm": ALGOS[algo],
            "environment": {"id": ENV_ID},
            "preset": "rl-zoo3",
            "totalTimesteps": steps,
            "seed": seed,
            "device": "cpu",
            "evaluation": {"everySteps": 100 * steps, "episodes": 1},  # only the final evaluation, short
            "checkpoint": {"everySteps": every, "keepLast": 1},
            "resources": {"cpu": f"{cpu_m}m", "memory": MEMORY},
        },
    }


@dataclass
class Watch:
    """The timesteps of some TrainingRuns over time, and their last status."""

    names: list[str]
    series: dict[str, Series] = field(default_factory=dict)
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (time, status) of each run's StorageAvailable condition when it changed.
    storage: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def tick(self, kube: Any) -> None:
        listing = kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingruns")
        now = time.monotonic()
        for item in listing.get("items", []):
            name = item["metadata"]["name"]
            if name not in self.names:
                continue
            status = item.get("status") or {}
            self.status[name] = status
            steps = (status.get("progress") or {}).get("timesteps")
            series = self.series.setdefault(name, [])
            # The final report (it carries the result) comes after the final uploads and evaluation.
            final = status.get("result") is not None
            if isinstance(steps, int) and not final and (not series or steps != series[-1][1]):
                series.append((now, steps))
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "StorageAvailable"), None)
            changes = self.storage.setdefault(name, [])
            if cond is not None and (not changes or changes[-1][1] != cond.get("status")):
                changes.append((now, str(cond.get("status"))))

    def phase(self, name: str) -> str | None:
        return (self.status.get(name) or {}).get("phase")

    def done(self) -> bool:
        for name in self.names:
            if self.phase(name) == "Failed":
                st = self.status[name]
                raise RuntimeError(f"{name} failed: {st.get('reason')}: {st.get('message')}")
        return all(self.phase(n) == "Succeeded" for n in self.names)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from kubegym_localcluster.cluster import LocalCluster

        self.args = args
        self.state: Path = args.state or Path(tempfile.mkdtemp(prefix="kubegym-bench-parallel-"))
        self.cluster = LocalCluster(self.state)
        self.operator: Operator | None = None
        self.kube: Any = None
        self.cores = 0
        self.frozen_pid: int | None = None

    # --- set-up and tear-down -------------------------------------------------------------------

    def up(self) -> None:
        from kubegym_localcluster import layout
        from kubegym_localcluster.cluster import copy_s3_secret
        from kubegym_localcluster.node.podspec import parse_cpu

        log(f"starting a local cluster in {self.state}")
        self.cluster.up()
        self.kube = self.cluster.admin()
        node = self.kube.get(f"/api/v1/nodes/{layout.NODE_NAME}")
        self.cores = math.floor(parse_cpu(node["status"]["allocatable"]["cpu"]))
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self.kube.apply(f"/api/v1/namespaces/{NAMESPACE}", body, "bench-parallel")
        self._wait(
            lambda: bool(self.kube.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")),
            60,
            "the namespace's default ServiceAccount",
        )
        copy_s3_secret(self.kube, NAMESPACE, self.cluster.minio())
        self.operator = Operator(self.cluster, self.state / "operator.log")
        self.operator.start()
        log(f"node {layout.NODE_NAME}: {self.cores} allocatable CPU(s); operator started")

    def down(self) -> None:
        self.thaw()
        if self.operator is not None:
            self.operator.stop()
        if self.args.keep:
            log(f"kept the cluster: python -m kubegym_localcluster --state {self.state} down")
            return
        with contextlib.suppress(Exception):
            self.cluster.down()
        if self.args.state is None:
            shutil.rmtree(self.state, ignore_errors=True)

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except Exception:  # noqa: BLE001 - not there yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(POLL)

    def _clean(self) -> None:
        """Delete every TrainingRun of the namespace and wait until their pods are gone."""
        runs = self.kube.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingruns").get("items", [])
        for run in runs:
            with contextlib.suppress(Exception):
                self.kube.delete(f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingruns/{run['metadata']['name']}")
        self._wait(
            lambda: not self.kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods").get("items"), 180, "the pods to go"
        )

    def _run(self, manifests: list[dict[str, Any]], until: Callable[[Watch], bool] | None = None) -> Watch:
        """Create the runs at once and watch them until they succeed (``until``: an extra stop)."""
        watch = Watch([m["metadata"]["name"] for m in manifests])
        for manifest in manifests:
            self.kube.create(f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingruns", manifest)
        deadline = time.monotonic() + self.args.timeout
        while True:
            watch.tick(self.kube)
            if watch.done() or (until is not None and until(watch)):
                return watch
            if time.monotonic() > deadline:
                raise TimeoutError(f"{watch.names} did not finish within {self.args.timeout}s")
            time.sleep(POLL)

    # --- k runs sharing the node ----------------------------------------------------------------

    def share(self, k: int) -> tuple[int, int]:
        """(CPU request in millicores, threads) of each of k runs."""
        return self.cores * 1000 // k, max(1, self.cores // k)

    def cluster_group(self, algo: str, k: int, steps: int) -> Result:
        cpu_m, threads = self.share(k)
        log(f"kubegym: {k} x {ALGOS[algo]} at {cpu_m}m each ({steps} steps per run)")
        every = max(1000, steps // 4)
        manifests = [training_run(f"{algo}-k{k}-{i}", algo, steps, i, cpu_m, every) for i in range(k)]
        try:
            watch = self._run(manifests)
        finally:
            self._clean()
        window = aggregate([watch.series[n] for n in watch.names], steps)
        compute = (watch.status[watch.names[0]].get("progress") or {}).get("compute") or {}
        return Result("kubegym", algo, k, cpu_m, threads, steps, window, compute)

    def bare_group(self, algo: str, k: int, steps: int) -> Result:
        cpu_m, threads = self.share(k)
        log(f"rl_zoo3.train: {k} x {ALGOS[algo]} with {threads} thread(s) each ({steps} steps per process)")
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        folder = Path(tempfile.mkdtemp(prefix="rl-zoo3-", dir=self.state))
        series: list[Series] = [[] for _ in range(k)]
        tails: list[list[str]] = [[] for _ in range(k)]
        procs = []
        for i in range(k):
            argv = [
                sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", ENV_ID, "-n", str(steps),
                "--num-threads", str(threads), "--seed", str(i), "--device", "cpu", "--eval-freq", "-1",
                "--log-interval", "1", "--log-folder", str(folder / str(i)),
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)
            )
        readers = [
            threading.Thread(target=_read_steps, args=(p, series[i], tails[i]), daemon=True)
            for i, p in enumerate(procs)
        ]
        for reader in readers:
            reader.start()
        try:
            for i, proc in enumerate(procs):
                if proc.wait(self.args.timeout) != 0:
                    raise RuntimeError(f"rl_zoo3.train {i} exited {proc.returncode}: {''.join(tails[i][-20:])}")
            for reader in readers:
                reader.join(10)
            for proc_series in series:  # a last log line may fall short of the end: the exit is the end
                if proc_series and proc_series[-1][1] < HIGH * steps:
                    proc_series.append((time.monotonic(), steps))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            shutil.rmtree(folder, ignore_errors=True)
        window = aggregate(series, steps)
        return Result("rl_zoo3.train", algo, k, cpu_m, threads, steps, window, {})

    # --- a storage outage -------------------------------------------------------------------------

    @contextlib.contextmanager
    def frozen_minio(self) -> Iterator[None]:
        pid = int((self.state / "pids" / "minio.pid").read_text().split()[0])
        self.frozen_pid = pid
        _signal(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            self.thaw()

    def thaw(self) -> None:
        if self.frozen_pid is not None:
            _signal(self.frozen_pid, signal.SIGCONT)
            self.frozen_pid = None

    def outage(self, rate: float) -> Outage:
        freeze, lead, tail = self.args.freeze, self.args.lead, max(8.0, self.args.freeze / 4)
        cpu_m = self.cores * 1000
        every = max(500, int(round(rate * 3, -2)))  # a checkpoint about every 3 s of training
        budget = int(math.ceil(rate * (lead + freeze + tail) * 1.2 / 1000) * 1000)
        log(f"outage: PPO alone, {budget} steps, checkpoint every {every}; MinIO frozen {freeze:.0f}s")

        def ready(name: str) -> Callable[[Watch], bool]:
            def check(watch: Watch) -> bool:
                st = watch.status.get(name) or {}
                step = (st.get("checkpoints") or {}).get("latestStep") or 0
                done = (st.get("progress") or {}).get("timesteps") or 0
                return bool(step >= every and done >= rate * lead)

            return check

        try:
            base = self._run([training_run("outage-none", "ppo", budget, 7, cpu_m, every)])
        finally:
            self._clean()
        name = "outage-frozen"
        try:
            watch = self._run([training_run(name, "ppo", budget, 7, cpu_m, every)], until=ready(name))
            with self.frozen_minio():
                t_freeze = time.monotonic()
                while time.monotonic() - t_freeze < freeze:
                    watch.tick(self.kube)
                    time.sleep(POLL)
                watch.tick(self.kube)
            t_thaw = time.monotonic()
            deadline = t_thaw + self.args.timeout
            while not watch.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not finish after the thaw")
                watch.tick(self.kube)
                time.sleep(POLL)
        finally:
            self.thaw()
            self._clean()
        frozen, none = watch.series[name], base.series["outage-none"]
        start = steps_at(frozen, t_freeze)
        during = steps_at(frozen, t_thaw) - start
        t_same = crossing(none, start)
        if t_same is None:
            raise RuntimeError("the run without an outage never reached the step where the freeze began")
        without = steps_at(none, t_same + (t_thaw - t_freeze)) - start
        changes = [(round(t - t_freeze, 1), s) for t, s in watch.storage.get(name, [])]
        if max(steps_at(frozen, t_thaw), steps_at(none, t_same + (t_thaw - t_freeze))) >= 0.98 * budget:
            log("warning: a run finished training within the frozen stretch; raise --outage-rate or --lead")
        return Outage(budget, every, t_thaw - t_freeze, int(start), during, without, changes)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal MinIO's process group (it leads one), or the process alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _read_steps(proc: subprocess.Popen[str], series: Series, tail: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        match = TOTAL_TIMESTEPS.search(line)
        if match:
            series.append((time.monotonic(), int(match.group(1))))
        tail.append(line)
        del tail[:-40]


@dataclass(frozen=True)
class Result:
    who: str
    algo: str
    k: int
    cpu_m: int
    threads: int
    steps: int
    window: Window
    #: ``status.progress.compute`` of the first run (TrainingRuns only).
    compute: dict[str, Any]


@dataclass(frozen=True)
class Outage:
    budget: int
    every: int
    seconds: float
    start_step: int
    during: float
    without: float
    #: (seconds after the freeze began, status) of StorageAvailable.
    changes: list[tuple[float, str]]

    @property
    def loss(self) -> float:
        return 1.0 - self.during / self.without if self.without > 0 else float("nan")


# --- the report ----------------------------------------------------------------------------------------


def _ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def report(bench: Bench, results: list[Result], outage: Outage | None, command: str, seconds: float) -> str:
    args, cores = bench.args, bench.cores
    by = {(r.who, r.algo, r.k): r for r in results}
    lines = [
        BEGIN,
        "## Runs sharing a node (TrainingRuns vs bare rl-zoo3), and a storage outage",
        "",
        f"Command: `{command}`",
        "",
        f"On a local cluster of its own ({cores} allocatable CPUs, the operator as a subprocess, progress every "
        f"2 s): k TrainingRuns at once (CartPole-v1, rl-zoo3 preset, fixed budget per run, CPU request = "
        f"{cores} cores / k, memory {MEMORY}; checkpoints every quarter budget to MinIO; the final evaluation one "
        "episode) against k bare `python -m rl_zoo3.train` processes at once with `OMP_NUM_THREADS`, "
        "`MKL_NUM_THREADS` and `--num-threads` = max(1, cores // k) (what the runner derives from that request), "
        f"`--eval-freq -1 --log-interval 1`. Steps/s: the sum over the k runs of the steps made from the moment the last one passed "
        f"{LOW:.0%} of its budget to the moment the first passed {HIGH:.0%}, divided by that time (pod start, "
        "imports, the last uploads and the final evaluation are outside it). *vs alone*: the aggregate over min(k, cores) x the "
        "k = 1 TrainingRun's; *vs bare*: over the bare processes' aggregate at equal k.",
        "",
        "| algorithm | k | request / threads | runner chose (status.progress.compute) | TrainingRuns steps/s | "
        "per run | bare rl-zoo3 steps/s | vs bare (>= 0.95) | vs alone (>= 0.9) |",
        "|---|---:|---|---|---:|---|---:|---:|---:|",
    ]
    verdicts: list[str] = []
    for algo in args.algos:
        alone = by.get(("kubegym", algo, 1))
        for k in args.ks:
            ours, bare = by.get(("kubegym", algo, k)), by.get(("rl_zoo3.train", algo, k))
            if ours is None:
                continue
            c = ours.compute
            chose = (
                f"{c.get('threads')} thread(s) ({c.get('threadsFrom')}), {c.get('vectorization')}, "
                f"{c.get('envWorkers')} env worker(s)"
                if c
                else "-"
            )
            per_run = ", ".join(f"{r:.0f}" for r in ours.window.per_run)
            note = "" if ours.window.common else " (runs barely overlapped: whole span)"
            vs_bare = ours.window.rate / bare.window.rate if bare is not None else float("nan")
            vs_alone = ours.window.rate / (min(k, cores) * alone.window.rate) if alone is not None else float("nan")
            bare_rate = f"{bare.window.rate:.0f}" if bare is not None else "-"
            lines.append(
                f"| {ALGOS[algo]} | {k} | {ours.cpu_m}m / {ours.threads} | {chose} | {ours.window.rate:.0f}{note} | "
                f"{per_run} | {bare_rate} | {_ratio(vs_bare)} | {_ratio(vs_alone)} |"
            )
            if bare is not None:
                verdicts.append(f"{ALGOS[algo]} k={k} vs bare {vs_bare:.2f}x: {_verdict(vs_bare >= 0.95)}")
            if alone is not None and k > 1:
                verdicts.append(f"{ALGOS[algo]} k={k} vs alone {vs_alone:.2f}x: {_verdict(vs_alone >= 0.9)}")
    lines += ["", *(f"- {v}" for v in verdicts)]
    if outage is not None:
        lines += [
            "",
            f"**Storage outage.** One PPO TrainingRun alone ({cores * 1000}m), {outage.budget} steps, a checkpoint "
            f"every {outage.every} steps, MinIO frozen (SIGSTOP) for {outage.seconds:.0f} s once the run had a "
            f"checkpoint in S3 and {args.lead:.0f} s of training, at step {outage.start_step}; against the same run "
            "(same seed) without an outage, over the same stretch of training (from the same step, for the same "
            "time).",
            "",
            "| | steps in the frozen stretch | steps/s |",
            "|---|---:|---:|",
            f"| MinIO frozen | {outage.during:.0f} | {outage.during / outage.seconds:.0f} |",
            f"| no outage | {outage.without:.0f} | {outage.without / outage.seconds:.0f} |",
            "",
            f"- Steps lost to the outage: **{outage.loss:.1%}** (target < 5%: {_verdict(outage.loss < 0.05)}).",
            "- StorageAvailable (seconds after the freeze began: status): "
            + (", ".join(f"{t:+.0f} s: {s}" for t, s in outage.changes) or "never reported")
            + (
                " (a freeze under 30 s ends before the runner calls storage failing: requests get 30 s to answer)"
                if outage.seconds < 30
                else ""
            ),
        ]
    load = os.getloadavg()[0]
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, load average "
        f"{load:.1f} at the end (shared with other jobs); Python {platform.python_version()}; the whole run took "
        f"{seconds / 60:.1f} min; {datetime.now(UTC).strftime('%Y-%m-%d')}.",
        END,
    ]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k in 1, 2, small budgets, a 20 s freeze (minutes)")
    parser.add_argument("--ks", type=_ints, help="concurrent runs to measure, comma-separated (default 1,2,4)")
    parser.add_argument("--algos", type=lambda s: s.split(","), default=["ppo", "dqn"], help="ppo,dqn")
    parser.add_argument("--ppo-steps", type=int, help="PPO budget per run (default 40000; quick 20000)")
    parser.add_argument("--dqn-steps", type=int, help="DQN budget per run (default 25000; quick 10000)")
    parser.add_argument("--freeze", type=float, help="seconds MinIO is frozen (default 60; quick 20)")
    parser.add_argument("--lead", type=float, help="seconds of training before the freeze (default 20; quick 8)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare rl_zoo3.train processes")
    parser.add_argument("--no-outage", action="store_true", help="skip the storage outage")
    parser.add_argument("--outage-rate", type=float, default=1500.0, help="PPO steps/s if k=1 is not measured")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds any one group may take")
    parser.add_argument("--state", type=Path, help="the local cluster's state folder (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_parallel markers)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.ks = args.ks or ([1, 2] if quick else [1, 2, 4])
    args.ppo_steps = args.ppo_steps or (20000 if quick else 40000)
    args.dqn_steps = args.dqn_steps or (10000 if quick else 25000)
    args.freeze = args.freeze or (20.0 if quick else 60.0)
    args.lead = args.lead or (8.0 if quick else 20.0)
    unknown = set(args.algos) - set(ALGOS)
    if unknown:
        parser.error(f"unknown algorithms {sorted(unknown)}; use ppo and/or dqn")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/bench_parallel.py " + " ".join(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    started = time.monotonic()

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    results: list[Result] = []
    outage: Outage | None = None
    try:
        bench.up()
        for algo in args.algos:
            budget = args.ppo_steps if algo == "ppo" else args.dqn_steps
            for k in args.ks:
                groups = [bench.cluster_group] + ([] if args.no_bare else [bench.bare_group])
                for group in groups:
                    result = group(algo, k, budget)
                    results.append(result)
                    log(
                        f"  {result.who} {ALGOS[algo]} k={k}: {result.window.rate:.0f} steps/s "
                        f"(per run {', '.join(f'{r:.0f}' for r in result.window.per_run)})"
                    )
        if not args.no_outage:
            alone = next((r for r in results if (r.who, r.algo, r.k) == ("kubegym", "ppo", 1)), None)
            outage = bench.outage(alone.window.rate if alone else args.outage_rate)
            log(f"  outage: {outage.during:.0f} steps frozen vs {outage.without:.0f} without: {outage.loss:.1%} lost")
    finally:
        bench.down()
    section = report(bench, results, outage, command, time.monotonic() - started)
    print(section)
    if args.write:
        write_section(args.write, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
