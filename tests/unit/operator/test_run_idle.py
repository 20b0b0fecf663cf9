"""A Running TrainingRun that trains nothing: the Idle condition past the operator's threshold, the
run failed with reason IdleTimeout (its Job stopped) past ``runPolicy.idleTimeoutSeconds``, and
the resync reconciling exactly the runs the clock can move on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kubegym_operator import reconciler
from kubegym_operator.builders.idle import idle_due, last_progress
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.settings import Settings
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, NOW, ago, make_pod, make_run, now, training_job
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]
SETTINGS = Settings(pending_error_grace_seconds=300, idle_after_seconds=600)


def running_run(
    reported: float | None,
    *,
    pod_started: float = 3000,
    timeout: int | None = None,
    conditions: list[Obj] | None = None,
) -> tuple[FakeCluster, Obj]:
    """A Running run whose runner last reported ``reported`` seconds ago, its pod started
    ``pod_started`` seconds ago (1 GPU, 2 cores)."""
    running = {"type": "Running", "status": "True", "reason": "Training", "lastTransitionTime": ago(pod_started)}
    status: Obj = {
        "phase": "Running",
        "reason": "Training",
        "startTime": ago(pod_started),
        "conditions": [running, *(conditions or [])],
    }
    if reported is not None:
        status["progress"] = {"timesteps": 12_288, "totalTimesteps": 100_000, "updateTime": ago(reported)}
    spec: Obj = {"runPolicy": {"idleTimeoutSeconds": timeout}} if timeout else {}
    run = make_run(status=status, **spec)
    job = training_job(run, active=1)
    pod = make_pod(job, "Running", running=pod_started)
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}, "limits": {"nvidia.com/gpu": "1"}}
    cluster = FakeCluster()
    for obj in (job, run, pod):
        cluster.add(obj)
    return cluster, job


def reconcile(cluster: FakeCluster) -> Obj:
    reconciler.reconcile(TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=now, gate=ReconcileGate())
    obj = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert obj is not None
    return dict(obj["status"])


def idle_condition(status: Obj) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Idle"), None)


def test_a_run_that_reports_is_not_idle() -> None:
    cluster, _ = running_run(reported=30)
    status = reconcile(cluster)
    assert status["phase"] == "Running" and idle_condition(status) is None


def test_no_report_past_the_threshold_flags_it_with_what_it_holds() -> None:
    cluster, _ = running_run(reported=650)
    status = reconcile(cluster)
    assert status["phase"] == "Running"
    cond = idle_condition(status)
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "NoProgress")
    assert cond["message"] == f"no new timesteps since {ago(650)} (timestep 12,288) while holding 1 GPU and 2 CPU cores"
    assert [(e.type, e.reason) for e in cluster.events if e.reason == "NoProgress"] == [("Warning", "NoProgress")]


def test_a_new_attempt_starts_the_clock_again() -> None:
    # The last report is two hours old, but its pod (a new attempt, after a preemption) started 20 s ago.
    cluster, _ = running_run(reported=7200, pod_started=20)
    assert idle_condition(reconcile(cluster)) is None


def test_progress_again_turns_the_condition_false() -> None:
    flagged = [
        {"type": "Idle", "status": "True", "reason": "NoProgress", "message": "…", "lastTransitionTime": ago(60)}
    ]
    cluster, _ = running_run(reported=5, conditions=flagged)
    cond = idle_condition(reconcile(cluster))
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "Progressing")
    assert any((e.type, e.reason) == ("Normal", "Progressing") for e in cluster.events)


def test_past_the_idle_timeout_the_run_fails_and_its_job_is_stopped() -> None:
    cluster, job = running_run(reported=400, timeout=300)  # not yet past the 600 s threshold, past its timeout
    status = reconcile(cluster)
    assert (status["phase"], status["reason"]) == ("Failed", "IdleTimeout")
    assert f"no new timesteps since {ago(400)}" in status["message"]
    assert "stopped after runPolicy.idleTimeoutSeconds (300 s); its checkpoints are kept" in status["message"]
    cond = idle_condition(status)
    assert cond is not None and cond["status"] == "True"
    assert cluster.obj(Kind.JOB, NAMESPACE, job["metadata"]["name"]) is None  # stopped


@pytest.mark.parametrize(
    ("phase", "reported", "timeout", "flagged", "due"),
    [
        ("Running", 10, None, False, False),
        ("Running", 575, None, False, True),  # flagged before the next pass (575 + 30 >= 600)
        ("Running", 700, None, True, False),  # flagged already, no timeout: nothing more to do
        ("Running", 700, 900, True, False),  # flagged; its timeout is more than a pass away
        ("Running", 880, 900, True, True),  # the timeout comes within a pass
        ("Running", 100, 120, False, True),
        ("Pending", 5000, 60, False, False),
        ("Running", None, 60, False, False),  # nothing tells when it last progressed
    ],
)
def test_the_resync_visits_the_runs_the_clock_moves(
    phase: str, reported: float | None, timeout: int | None, flagged: bool, due: bool
) -> None:
    status: Obj = {"phase": phase, "conditions": [{"type": "Idle", "status": "True"}] if flagged else []}
    if reported is not None:
        status["progress"] = {"updateTime": ago(reported)}
    policy: Obj = {"runPolicy": {"idleTimeoutSeconds": timeout}} if timeout else {}
    run = make_run(status=status, **policy)
    assert idle_due(run, now=NOW, flag_after=600, resync_seconds=30) is due


def test_last_progress_is_the_latest_sign() -> None:
    status = {
        "phase": "Running",
        "progress": {"updateTime": ago(100)},
        "conditions": [{"type": "Running", "status": "True", "lastTransitionTime": ago(50)}],
    }
    assert last_progress(status) == NOW - timedelta(seconds=50)
    assert last_progress({"phase": "Pending", **{k: v for k, v in status.items() if k != "phase"}}) == NOW - timedelta(
        seconds=100
    )
    assert last_progress({}) is None


def test_an_idle_run_is_written_once_not_at_every_reconcile() -> None:
    """The condition carries no moving figure: a reconcile of a run that stays idle writes nothing
    (else each write's watch event would reconcile and write again, for as long as it stays idle)."""
    cluster, _ = running_run(reported=650)
    gate = ReconcileGate()
    for seconds in (0, 10, 45):
        cluster.reset_calls()
        reconciler.reconcile(
            TrainingRunJobs(SETTINGS),
            cluster,
            NAMESPACE,
            "cartpole",
            now=lambda s=seconds: NOW + timedelta(seconds=s),  # type: ignore[misc]
            gate=gate,
        )
        if seconds:
            assert cluster.writes() == [], seconds
