"""``status.estimatedRemainingSeconds``: the operator's estimate of the training time left, from the
progress the runner reports, as the pure builder computes it and as a reconcile writes it."""

from __future__ import annotations

from typing import Any

import pytest

from kubegym_operator import reconciler
from kubegym_operator.builders.status import estimated_remaining_seconds
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, ago, make_pod, make_run, now, training_job
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]


def progress(timesteps: int, total: int | None, rate: float | None) -> Obj:
    out: Obj = {"timesteps": timesteps}
    if total is not None:
        out["totalTimesteps"] = total
    if rate is not None:
        out["stepsPerSecond"] = rate
    return out


@pytest.mark.parametrize(
    ("phase", "prog", "expected"),
    [
        ("Running", progress(40_000, 100_000, 1_000.0), 60),
        ("Running", progress(99_999, 100_000, 3.0), 1),  # rounded up: never says 0 before the end
        ("Running", progress(100_000, 100_000, 900.0), 0),
        ("Running", progress(120, 100, 10.0), 0),  # past the budget (a vectorised last rollout)
        ("Running", progress(0, 100_000, None), None),  # no throughput measured yet
        ("Running", progress(10, 100_000, 0.0), None),
        ("Running", progress(10, None, 50.0), None),
        ("Running", None, None),
        ("Succeeded", progress(100_000, 100_000, 900.0), 0),
        ("Succeeded", None, 0),
        ("Pending", progress(0, 100_000, 500.0), None),
        ("Suspended", progress(40_000, 100_000, 500.0), None),
        ("Failed", progress(40_000, 100_000, 500.0), None),
    ],
)
def test_estimate_from_progress_and_phase(phase: str, prog: Obj | None, expected: int | None) -> None:
    assert estimated_remaining_seconds(phase, prog) == expected


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, 60),
        (64, 64),  # within 5 s: kept, nothing to write
        (66, 66),  # within 10% of 66
        (70, 60),  # further off: the new estimate
        (0, 60),
    ],
)
def test_a_close_estimate_keeps_the_one_in_the_status(previous: int | None, expected: int) -> None:
    assert estimated_remaining_seconds("Running", progress(40_000, 100_000, 1_000.0), previous) == expected
    assert estimated_remaining_seconds("Running", progress(100_000, 100_000, 1_000.0), previous) == 0  # done is 0
    assert estimated_remaining_seconds("Succeeded", None, previous) == 0


def reconcile(cluster: FakeCluster) -> Obj | None:
    return reconciler.reconcile(
        TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=now, gate=ReconcileGate()
    )


def status_of(cluster: FakeCluster) -> Obj:
    obj = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert obj is not None
    return dict(obj.get("status") or {})


def test_reconcile_writes_the_estimate_once_per_progress_report_and_zero_at_the_end() -> None:
    cluster = FakeCluster()
    run = make_run(
        status={"phase": "Running", "reason": "Training", "startTime": ago(250), "progress": progress(0, 10_000, None)}
    )
    job = training_job(run, active=1)
    cluster.add(job)
    cluster.add(run)
    cluster.add(make_pod(job, "Running", running=200))
    reconcile(cluster)
    assert "estimatedRemainingSeconds" not in status_of(cluster)  # no throughput yet: no estimate

    # The runner reports progress (it owns status.progress); the next reconcile states the time left.
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None
    stored["status"]["progress"] = progress(4_000, 10_000, 200.0)
    cluster.add(stored)
    reconcile(cluster)
    assert status_of(cluster)["estimatedRemainingSeconds"] == 30

    cluster.reset_calls()
    assert reconcile(cluster) is None  # the same progress: the same estimate, nothing written
    assert cluster.writes() == []

    # Finished: the Job completes and the run says 0 seconds left.
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None
    done = training_job(stored, conditions=(("Complete", "Completed"),))
    cluster.remove(Kind.JOB, NAMESPACE, job["metadata"]["name"])
    cluster.add(done)
    reconcile(cluster)
    st = status_of(cluster)
    assert st["phase"] == "Succeeded"
    assert st["estimatedRemainingSeconds"] == 0
