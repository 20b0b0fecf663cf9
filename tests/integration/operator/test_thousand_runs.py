"""Issue 10's acceptance: 1,000 TrainingRuns applied at once, then deleted at once, twice.

The session's operator (``OperatorProcess``: STS mode, every namespace watched) gets, in a
namespace of this module's own, 1,000 TrainingRuns server-side applied by 8 client threads
(how Argo CD or a script applies a folder of manifests; ``kubectl apply`` of one 1,000-item List
took 154 s on its own, sequential, on 2 loaded cores). They ask for ``gpu: 1`` on a node without
GPUs, as in ``bench/bench_operator.py``: every pod stays Pending (Unschedulable), nothing trains,
and only the operator's work is measured. Once every run has its Job and a written status, all of
them are deleted at once (8 threads of DELETE, as ``kubectl delete trainingruns --all`` does one
by one; a single deletecollection ran past the API server's 60 s request timeout here). Then the
whole cycle again with 1,000 new names.

What must hold (``test_thousand_runs_leave_no_orphans_and_no_leak``):

* the operator never crashes: the same process (pid) from start to end, and no ERROR line about
  this namespace and no CRITICAL one in its log; and one Job created per run, none recreated while
  the runs were deleted (``test_no_job_created_for_a_run_being_deleted``);
* at 1,000 live, each run owns exactly its Job, its runner's ServiceAccount, Role and
  RoleBinding (``<run>-runner``) and its storage Secret (``<run>-train-storage``, STS
  credentials), and its status says Pending (not Failed: no STS or API error failed a run);
* after the deletion, nothing is left in the namespace that was not there before: no Job, Pod,
  ServiceAccount but ``default``, Role, RoleBinding or Secret (the garbage collector removes them
  by their owner references; the operator must not recreate any);
* no leak: the operator's RSS (``VmRSS`` of ``/proc/<pid>/status``) after the second cycle's
  deletion is at most :data:`LEAK_MARGIN_MB` above what it was after the first's. Measured in five
  scenario runs on 2 shared cores (docs/reliability.md), before the operator dropped the
  ``kubernetes`` client (about 60 MB less since, idle and live alike): idle 121 MB, 1,000 live 196-217 MB, after
  the first deletion 196-216 MB, after the second 0-2 MB more than that. Each live run costs the
  operator 75-95 KB; a leak of a sixth of that per run (15 MB per 1,000) fails the bound, the
  allocator's noise (0-3 MB) does not.

What does not hold today (``test_memory_returns_near_idle_after_deletion``, a strict xfail): the
issue's "memory returns near its idle level". The RSS stays at the burst's level after the
deletion (196-216 MB against 121 MB idle), through every resync pass watched (four in two
minutes), though each runs ``gc.collect()`` and ``malloc_trim(0)``
(``kubegym_operator.main.trim_memory``). Since a second burst of 1,000 new runs does not raise it
further, it is memory the process keeps for reuse, not per-run state that is never dropped; in
``/proc/<pid>/smaps`` the main ``[heap]`` stayed at 51 MB from the burst's first seconds to the
end while the anonymous mappings (CPython's object arenas, the threads' malloc arenas) grew to
145 MB. The xfail is strict: once the memory does come back, it fails, and the mark must go.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubegym_localcluster.kube import ApiError, Kube
from kubegym_operator.builders.credentials import credentials_secret_name
from kubegym_operator.builders.naming import runner_identity_name, training_job_name
from kubegym_operator.settings import RESYNC_SECONDS
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import TR, training_run
from tests.support.wait import wait_until

N = 1000
CYCLES = 2
#: Client threads that apply, and later delete, the runs.
THREADS = 8
#: A GPU on a node without GPUs: every pod stays Pending (Unschedulable), so nothing trains.
RESOURCES = {"cpu": "100m", "memory": "256Mi", "gpu": 1}
#: How much the RSS after the second deletion may exceed the RSS after the first (see the docstring).
LEAK_MARGIN_MB = 15.0
#: The longest any one step (all Jobs and statuses; everything gone) may take. Measured: 130-150 s
#: and 80-90 s on 2 cores shared with other test runs.
STEP_TIMEOUT = 600.0
#: kopf logs this once its watches have started.
KOPF_STARTED = "Initial authentication has finished"

#: What each run owns, by list path: how its name derives from the run's name.
OWNED: dict[str, tuple[str, Callable[[str], str]]] = {
    "jobs": ("/apis/batch/v1/namespaces/{ns}/jobs", training_job_name),
    "serviceaccounts": ("/api/v1/namespaces/{ns}/serviceaccounts", runner_identity_name),
    "roles": ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", runner_identity_name),
    "rolebindings": ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", runner_identity_name),
    "secrets": ("/api/v1/namespaces/{ns}/secrets", lambda run: credentials_secret_name(training_job_name(run))),
}
#: What must be gone after the deletion: the owned kinds, the Jobs' pods, and the runs.
CHECKED = {
    **{kind: path for kind, (path, _) in OWNED.items()},
    "pods": "/api/v1/namespaces/{ns}/pods",
    "trainingruns": TR,
}


def rss_mb(pid: int) -> float:
    """The process's resident set size (``VmRSS``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class RssSampler:
    """The highest RSS of a process, sampled every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.highest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.highest = max(self.highest, rss_mb(self.pid))
            except (OSError, AssertionError):
                return  # the process is gone: the test says so
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def settled_rss(pid: int, seconds: float = 10.0, within_mb: float = 1.0, timeout: float = 90.0) -> float:
    """The RSS once it has stayed within ``within_mb`` for ``seconds`` (sampled every second)."""
    window: list[float] = []

    def steady() -> float | None:
        window.append(rss_mb(pid))
        del window[: -int(seconds) - 1]
        if len(window) > seconds and max(window) - min(window) <= within_mb:
            return window[-1]
        return None

    return wait_until(steady, timeout, f"the RSS of {pid} to settle", interval=1.0)


def names(kube: Kube, path: str) -> set[str]:
    return {o["metadata"]["name"] for o in kube.get(path)["items"]}


@dataclass
class Cycle:
    """What one cycle (1,000 applied, then deleted) measured and found."""

    apply_s: float = 0.0
    live_s: float = 0.0
    delete_s: float = 0.0
    gone_s: float = 0.0
    rss_live_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    owned: dict[str, set[str]] = field(default_factory=dict)
    expected: dict[str, set[str]] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    leftovers: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Scenario:
    pid: int
    namespace: str
    rss_idle_mb: float = 0.0
    cycles: list[Cycle] = field(default_factory=list)
    alive: bool = False
    same_pid: bool = False
    log: str = ""
    seconds: float = 0.0

    def jobs_created(self) -> list[str]:
        """The runs of the namespace for which the operator logged "Job ... created", once per line."""
        return re.findall(rf"TrainingRun {re.escape(self.namespace)}/(\S+): Job \S+ created", self.log)

    def created_again(self) -> list[str]:
        """Runs whose Job the operator created more than once (it never recreates one of these runs)."""
        created = self.jobs_created()
        return sorted({run for run in created if created.count(run) > 1})

    def figures(self) -> str:
        again = self.created_again()
        lines = [
            f"RSS idle {self.rss_idle_mb:.0f} MB; {self.seconds:.0f} s in all; {len(self.jobs_created())} Jobs "
            f"created for {N * CYCLES} runs (again: {', '.join(again) or 'none'})"
        ]
        for i, c in enumerate(self.cycles, 1):
            lines.append(
                f"cycle {i}: applied in {c.apply_s:.1f} s, every Job and status {c.live_s:.1f} s after the first "
                f"apply; deleted in {c.delete_s:.1f} s, all gone {c.gone_s:.1f} s after the first delete; RSS live "
                f"{c.rss_live_mb:.0f} MB, peak {c.rss_peak_mb:.0f} MB, after deletion {c.rss_after_mb:.0f} MB"
            )
        return "\n".join(lines)


def _cycle(kube: Kube, ns: str, pid: int, prefix: str, before: dict[str, set[str]]) -> Cycle:
    cycle = Cycle()
    runs = [f"{prefix}-{i:04d}" for i in range(N)]
    collection = TR.format(ns=ns)
    sampler = RssSampler(pid)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            list(
                pool.map(lambda r: kube.apply(f"{collection}/{r}", training_run(r, resources=RESOURCES), "test"), runs)
            )
        cycle.apply_s = time.monotonic() - started

        def every_run_started() -> bool:
            jobs = names(kube, OWNED["jobs"][0].format(ns=ns))
            statuses = [(o.get("status") or {}).get("phase") for o in kube.get(collection)["items"]]
            return len(jobs - before["jobs"]) >= N and sum(1 for p in statuses if p) >= N

        wait_until(every_run_started, STEP_TIMEOUT, f"a Job and a status for each of {N} runs", interval=5.0)
        cycle.live_s = time.monotonic() - started
        for run in kube.get(collection)["items"]:
            phase = str((run.get("status") or {}).get("phase"))
            cycle.phases[phase] = cycle.phases.get(phase, 0) + 1
        cycle.owned = {kind: names(kube, path.format(ns=ns)) - before[kind] for kind, (path, _) in OWNED.items()}
        cycle.expected = {kind: {name_of(r) for r in runs} for kind, (_, name_of) in OWNED.items()}
        cycle.rss_live_mb = rss_mb(pid)
    finally:
        sampler.stop()
    cycle.rss_peak_mb = max(sampler.highest, cycle.rss_live_mb)

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda r: kube.delete(f"{collection}/{r}"), runs))
    cycle.delete_s = time.monotonic() - started

    def leftovers() -> dict[str, set[str]]:
        found = {kind: names(kube, path.format(ns=ns)) - before.get(kind, set()) for kind, path in CHECKED.items()}
        return {kind: left for kind, left in found.items() if left}

    with contextlib.suppress(AssertionError):  # what is left is recorded below; the test names it
        wait_until(lambda: not leftovers(), STEP_TIMEOUT, "every run and what it owned to go", interval=5.0)
    cycle.gone_s = time.monotonic() - started
    cycle.leftovers = leftovers()
    # The resync pass (every RESYNC_SECONDS) collects cycles and trims the heap: measure after one.
    time.sleep(RESYNC_SECONDS + 5)
    cycle.rss_after_mb = settled_rss(pid)
    return cycle


@pytest.fixture(scope="module")
def scenario(operator: OperatorProcess, kube: Kube) -> Iterator[Scenario]:
    """Both cycles, run once for the module's tests, in a namespace of the module's own."""
    ns = f"t-thousand-runs-{uuid.uuid4().hex[:5]}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        wait_until(lambda: kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default"), 30, f"{ns}'s ServiceAccount")
        assert operator.proc is not None and operator.proc.poll() is None, "the session's operator is not running"
        pid = operator.proc.pid
        log_start = operator.log.stat().st_size
        wait_until(lambda: KOPF_STARTED in operator.log.read_text(errors="replace"), 60, "the operator's watches")
        started = time.monotonic()
        result = Scenario(pid, ns, rss_idle_mb=settled_rss(pid))
        before = {kind: names(kube, path.format(ns=ns)) for kind, path in CHECKED.items()}
        for i in range(CYCLES):
            result.cycles.append(_cycle(kube, ns, pid, f"c{i}", before))
        result.seconds = time.monotonic() - started
        result.alive = operator.proc is not None and operator.proc.poll() is None
        result.same_pid = operator.proc is not None and operator.proc.pid == pid
        with operator.log.open("rb") as f:
            f.seek(log_start)
            result.log = f.read().decode(errors="replace")
        print(f"\n[thousand runs] {result.figures()}")
        yield result
    finally:
        try:
            kube.delete(f"/api/v1/namespaces/{ns}")
        except ApiError as e:
            if e.status != 404:
                raise


def test_thousand_runs_leave_no_orphans_and_no_leak(scenario: Scenario) -> None:
    s = scenario
    assert s.alive and s.same_pid, f"the operator (pid {s.pid}) did not survive the scenario"
    # This namespace's errors, and any CRITICAL (the session's operator also serves other tests,
    # whose leftovers may log errors of their own meanwhile).
    problems = [
        line for line in s.log.splitlines() if " CRITICAL " in line or (" ERROR " in line and s.namespace in line)
    ]
    assert not problems, "the operator logged errors:\n" + "\n".join(problems[:20])
    for i, cycle in enumerate(s.cycles, 1):
        assert cycle.phases == {"Pending": N}, f"cycle {i}: phases {cycle.phases}"
        for kind, expected in cycle.expected.items():
            owned = cycle.owned[kind]
            assert owned == expected, (
                f"cycle {i}, {N} live runs: {len(owned)} {kind}; missing {sorted(expected - owned)[:5]}, "
                f"unexpected {sorted(owned - expected)[:5]}"
            )
        left = {kind: (len(objs), sorted(objs)[:5]) for kind, objs in cycle.leftovers.items()}
        assert not left, f"cycle {i}: left {cycle.gone_s:.0f} s after the deletion: {left}"
    first, second = s.cycles[0], s.cycles[-1]
    assert second.rss_after_mb <= first.rss_after_mb + LEAK_MARGIN_MB, (
        f"the operator's RSS grew by {second.rss_after_mb - first.rss_after_mb:.0f} MB over a second cycle of "
        f"{N} runs (more than {LEAK_MARGIN_MB:.0f} MB): per-run state is kept after deletion\n{s.figures()}"
    )


@pytest.mark.xfail(
    strict=True,
    reason="finding (issue 10): the operator's RSS stays at the burst's level after the runs are deleted "
    "(196-216 MB vs 121 MB idle with the kubernetes client; bench_operator since: 111-117 vs 63 MB), though it "
    "does not grow over a second burst",
)
def test_memory_returns_near_idle_after_deletion(scenario: Scenario) -> None:
    """Near idle: at least three quarters of what the burst added given back after the deletion."""
    s = scenario
    cycle = s.cycles[0]
    bound = s.rss_idle_mb + 0.25 * (cycle.rss_peak_mb - s.rss_idle_mb)
    assert cycle.rss_after_mb <= bound, (
        f"RSS after deleting {N} runs {cycle.rss_after_mb:.0f} MB > {bound:.0f} MB "
        f"(idle {s.rss_idle_mb:.0f} MB, peak {cycle.rss_peak_mb:.0f} MB)"
    )


def test_no_job_created_for_a_run_being_deleted(scenario: Scenario) -> None:
    """Each run's Job is created once: none for a run that is being deleted.

    Before the reconcile confirmed a run by one GET before creating a Job it had had (see
    ``reconciler._still_there``), the garbage collector's deletion of a deleted run's Job could
    reach the operator before the run's own DELETED event, and the Job was created again: 3 runs
    of 2,000, in 1 of 5 scenario runs. Timing-dependent: a pass says nothing, a failure is the race.
    """
    created = scenario.jobs_created()
    assert not scenario.created_again(), (
        f"{len(created)} Jobs created for {N * CYCLES} runs; again for {scenario.created_again()}"
    )
    assert len(created) == N * CYCLES, f"{len(created)} Jobs created for {N * CYCLES} runs"
