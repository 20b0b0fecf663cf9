"""Chaos case 4: the API server is stopped for 2 minutes mid-run, then brought back by ``up``.

The run (PPO on CartPole) is sized to finish training during the outage, so the runner's
final status report (``status.result``) cannot get through when it is made: the run must
still end Succeeded *with its result* once the API server is back (the runner retries the
report; the result is also in its termination message). Meanwhile the runner must keep
training (its log shows progress during the outage) and must not be restarted, and the
session's operator subprocess must reconnect by itself (kopf retries) and finish the run.

The API server is stopped as ``make down`` would stop it (SIGTERM to its process group) and
restarted with ``LocalCluster().up()`` (what ``make up`` does) in a ``finally``.
Recovery: ``up`` returned → the run Succeeded with its result.
"""

from __future__ import annotations

import re
import time

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.chaos.support import (
    Figures,
    Ledger,
    api_ready,
    assert_succeeded,
    cartpole,
    checkpoint_step,
    describe,
    log_times,
    operator_reconciles,
    reconnect,
    runner_log,
    running_pod,
    since,
    wait_finished,
)
from tests.conftest import OperatorProcess
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos(shared=True)

OUTAGE = 120.0
TOTAL = 20480
EVERY = 4096
NAME = "api-outage"
PROGRESS_LINE = re.compile(r"progress: (\d+)/\d+ timesteps")
FINAL_LINE = re.compile(r"final evaluation: ")
DELIVERED_LINE = re.compile(r"final status report delivered at attempt (\d+)")


def _progress_between(log: str, start: float, end: float) -> list[int]:
    """Timesteps of the runner's progress log lines written between two epoch times."""
    out = []
    for line in log.splitlines():
        m = PROGRESS_LINE.search(line)
        times = log_times(line)
        if m and times and start <= times[0] <= end:
            out.append(int(m.group(1)))
    return out


def test_run_succeeds_with_its_result_across_an_api_server_outage(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    why = describe(kube, ns, [NAME], operator)
    t0 = time.monotonic()
    with Ledger(cluster, ns) as ledger:
        kubectl.apply(cartpole(NAME, TOTAL, EVERY))
        pod = wait_until(
            lambda: running_pod(kube, ns, NAME) if checkpoint_step(kube, ns, NAME) >= EVERY else None,
            420,
            f"{NAME}'s first checkpoint",
            describe=why,
        )
        uid = pod["metadata"]["uid"]
        reconciles_before = operator_reconciles(operator)
        down_at = time.time()
        try:
            cluster.sup.stop("kube-apiserver")  # SIGTERM, then waits until its process group is gone
            assert not api_ready(kube), "the API server still answers after being stopped"
            time.sleep(max(0.0, OUTAGE - (time.time() - down_at)))
        finally:
            back = time.monotonic()
            LocalCluster(cluster.state).up()
        up_at, t_up = time.time(), time.monotonic()
        up_seconds = since(back)
        reconnect(kube)
        st = wait_finished(kube, ns, NAME, 600, operator)
        t_done = time.monotonic()
        recovery = since(t_up)
        ledger.poll()

    log = runner_log(cluster, uid)
    during = _progress_between(log, down_at, up_at)
    final = [t for line in log.splitlines() if FINAL_LINE.search(line) for t in log_times(line)]
    finished_in_outage = bool(final) and down_at <= final[0] <= up_at
    figures.record(
        "4-apiserver-stopped",
        faults_injected=1,
        outage_seconds=round(up_at - down_at, 1),
        up_seconds=up_seconds,
        steps_logged_during_outage=[min(during), max(during)] if during else [],
        training_finished_during_outage=finished_in_outage,
        # How the result crossed the outage: the runner's retried final report (attempts), else
        # the operator took it from the pod's termination message.
        final_report_attempts=int(m.group(1)) if (m := DELIVERED_LINE.search(log)) else None,
        runs=1,
        runs_lost=0 if st.get("phase") == "Succeeded" and st.get("result") else 1,
        duplicate_jobs=ledger.duplicate_jobs(),
        runner_pods=ledger.pod_count(NAME),
        ledger_polls_failed=ledger.failed_polls,
        recovery_seconds=recovery,
        # Stages after `up` was called (the API server answers a few seconds later): the node
        # reports the pod, the Job controller completes the Job, the operator the run.
        restart_to_pod_succeeded_seconds=ledger.seen_after("pod", NAME, "Succeeded", back),
        restart_to_job_complete_seconds=ledger.seen_after("job", NAME, "Complete", back),
        restart_to_run_succeeded_seconds=round(t_done - back, 1),
        wall_seconds=since(t0),
    )

    assert operator.proc is not None and operator.proc.poll() is None, "the operator died:\n" + operator.tail()
    assert_succeeded(st, NAME)
    assert len(during) >= 2 and during[-1] > during[0], f"the runner did not train during the outage:\n{log[-3000:]}"
    assert finished_in_outage, (
        f"training did not end during the {OUTAGE:.0f} s outage, so the result never had to cross it; "
        f"size {NAME} shorter:\n{log[-2000:]}"
    )
    ledger.assert_one_job(NAME)
    assert ledger.pod_count(NAME) == 1, f"the outage restarted the runner: {ledger.pods[NAME]}"
    ledger.assert_no_overlap()
    # The operator that lived through the outage still reconciles (its counter moved on).
    assert operator_reconciles(operator) > reconciles_before
