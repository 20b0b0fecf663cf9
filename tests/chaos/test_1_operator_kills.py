"""Chaos case 1: the operator is SIGKILLed 5 times while 10 short runs train.

The operator keeps no state of its own: a restarted one lists what exists and must find the
Jobs it created before (their names derive from the runs' names alone) instead of creating
second ones. The first kill lands while the 10 Jobs are being created, the others while the
runs start, train, checkpoint and finish. A runner never needs the operator to train, so no
pod is restarted either. Recovery: restart → the new operator's first successful reconcile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.chaos.support import (
    TERMINAL,
    Figures,
    Ledger,
    assert_succeeded,
    cartpole,
    describe,
    operator_reconciles,
    progress,
    sigkill_operator,
    since,
    wait_finished,
)
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos

RUNS = 10
TOTAL = 2048
#: Seconds the operator stays dead after each SIGKILL (status keeps changing meanwhile).
DEAD_FOR = 2.0


def test_operator_sigkilled_five_times_during_ten_runs(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    names = [f"short-{i}" for i in range(RUNS)]
    why = describe(kube, ns, names, operator)

    def jobs() -> int:
        return len(kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"])

    def phases() -> list[str | None]:
        return [status(kube, ns, n).get("phase") for n in names]

    def any_run(check: Callable[[dict[str, object]], bool]) -> bool:
        return any(check(status(kube, ns, n)) for n in names)

    # When each kill lands: while the Jobs are created, then at each stage of the runs' lives.
    moments: list[tuple[str, Callable[[], bool]]] = [
        ("jobs being created", lambda: jobs() >= 1),
        ("all Jobs created", lambda: jobs() >= RUNS),
        ("runs training", lambda: any(progress(kube, ns, n).get("timesteps", 0) > 0 for n in names)),
        ("a checkpoint reported", lambda: any_run(lambda st: bool(st.get("checkpoints")))),
        ("a run finished", lambda: any(p in TERMINAL for p in phases())),
    ]
    recoveries: list[float] = []
    kills: list[dict[str, object]] = []
    t0 = time.monotonic()
    with Ledger(cluster, ns) as ledger:
        for i, name in enumerate(names):  # staggered budgets: the runs finish one after another
            kubectl.apply(cartpole(name, TOTAL + 256 * i, 1024))
        for moment, ready in moments:
            wait_until(ready, 420, f"the moment '{moment}' to kill the operator", interval=0.1, describe=why)
            unfinished = sum(p not in TERMINAL for p in phases())
            sigkill_operator(operator)
            kills.append({"at": moment, "t": since(t0), "unfinished_runs": unfinished})
            time.sleep(DEAD_FOR)
            operator.start()
            restarted = time.monotonic()
            wait_until(lambda: operator_reconciles(operator) >= 1, 120, "the restarted operator to reconcile")
            recoveries.append(since(restarted))
        done = {n: wait_finished(kube, ns, n, 600, operator) for n in names}
        ledger.poll()
    all_jobs = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    succeeded = [n for n, st in done.items() if st.get("phase") == "Succeeded" and st.get("result")]
    figures.record(
        "1-operator-sigkill",
        faults_injected=len(kills),
        kills=kills,
        runs=RUNS,
        runs_succeeded=len(succeeded),
        runs_lost=RUNS - len(succeeded),
        jobs=len(all_jobs),
        duplicate_jobs=ledger.duplicate_jobs(),
        runner_pods=sum(ledger.pod_count(n) for n in names),
        recovery_seconds=recoveries,
        wall_seconds=since(t0),
    )

    assert all(k["unfinished_runs"] for k in kills), f"a kill landed after every run had finished: {kills}"
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died:\n" + operator.tail()
    for name, st in done.items():
        assert_succeeded(st, name)
        ledger.assert_one_job(name)
        assert st.get("jobName") == ledger.jobs[name][next(iter(ledger.jobs[name]))], st
        # The operator's restarts never touch a runner: one pod, never resumed.
        assert ledger.pod_count(name) == 1, f"{name}: {ledger.pods[name]}"
        assert (st.get("progress") or {}).get("resumedFromStep", 0) == 0, st["progress"]
    assert len(all_jobs) == RUNS, [j["metadata"]["name"] for j in all_jobs]
    ledger.assert_no_overlap()
