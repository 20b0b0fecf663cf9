"""``status.cost``: what a resource's pods held (requested CPU and GPUs x the time they ran, every
attempt) and used (the runner's own measurement), as the pure builder computes it and as the
generic reconcile writes it — at most once a minute for a running pod, and never again for a
finished one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kubegym_operator import reconciler
from kubegym_operator.builders.cost import as_of, attempt_of, cost_of, cpu_cores, sum_costs
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, NOW, SETTINGS, ago, make_pod, make_run, terminated, training_job
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]


def pod(
    phase: str = "Running",
    *,
    suffix: str = "a",
    cpu: str | None = "2",
    gpu: str | None = None,
    running: float | None = 200,
    done: Obj | None = None,
) -> Obj:
    """A runner pod of the default run's Job requesting ``cpu`` cores and ``gpu`` GPUs."""
    job = training_job(make_run())
    out = make_pod(job, phase, suffix=suffix, running=None if done else running, terminated=done)
    requests: Obj = {} if cpu is None else {"cpu": cpu}
    limits: Obj = {"memory": "4Gi"} | ({"nvidia.com/gpu": gpu} if gpu else {})
    out["spec"]["containers"][0]["resources"] = {"requests": requests, "limits": limits}
    return out


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [("2", 2.0), ("500m", 0.5), ("1.5", 1.5), (4, 4.0), ("250000u", 0.25), (None, 0.0), ("lots", 0.0), ("-1", 0.0)],
)
def test_cpu_quantities(quantity: Any, cores: float) -> None:
    assert cpu_cores(quantity) == cores


@pytest.mark.parametrize(
    ("the_pod", "expected"),
    [
        (pod("Pending", running=None), None),  # never started: costs nothing
        (pod(running=200), (2.0, 0, 200, None)),
        (pod(gpu="1", cpu="500m", running=30), (0.5, 1, 30, None)),
        (pod("Succeeded", done=terminated(0, started=240)), (2.0, 0, 240, 10)),
        (pod(cpu=None, running=5), (0.0, 0, 5, None)),  # no request: nothing reserved
        # A container that never ran reports the Unix epoch as its start.
        (pod("Failed", done={"exitCode": 128, "reason": "StartError", "startedAt": "1970-01-01T00:00:00Z"}), None),
    ],
)
def test_a_pod_is_counted_from_its_runner_container_start(
    the_pod: Obj, expected: tuple[float, int, float, float | None] | None
) -> None:
    entry = attempt_of(the_pod)
    if expected is None:
        assert entry is None
        return
    assert entry is not None
    cpu, gpu, started, ended = expected
    assert (entry.cpu, entry.gpu) == (cpu, gpu)
    assert entry.start_time == NOW - timedelta(seconds=started)
    assert entry.end_time == (None if ended is None else NOW - timedelta(seconds=ended))


def test_running_and_finished_attempts_add_up() -> None:
    first = pod("Failed", suffix="a", done=terminated(1, started=900) | {"finishedAt": ago(600)})
    second = pod("Running", suffix="b", gpu="1", running=300)
    cost = cost_of({}, [first, second], NOW)
    assert cost is not None
    # 2 cores x 300 s (the failed attempt) + 2 cores x 300 s (running); 1 GPU x 300 s.
    assert (cost.cpu_seconds, cost.gpu_seconds, cost.pods) == (1200.0, 300.0, 2)
    assert cost.as_of == NOW
    assert [a.pod for a in cost.attempts] == [first["metadata"]["name"], second["metadata"]["name"]]
    assert cost.measured_cpu_seconds is None and cost.cpu_utilization is None


def test_nothing_started_means_no_cost() -> None:
    assert cost_of({}, [pod("Pending", running=None)], NOW) is None
    assert cost_of({}, [], NOW) is None


def test_a_running_pod_moves_once_a_minute() -> None:
    running = [pod(running=200)]
    assert as_of(NOW + timedelta(seconds=59)) == NOW
    at_noon = cost_of({}, running, NOW)
    later = cost_of({}, running, NOW + timedelta(seconds=59))
    assert at_noon == later
    minute = cost_of({}, running, NOW + timedelta(seconds=60))
    assert minute is not None and minute.cpu_seconds == 2 * 260


def test_a_pod_gone_while_it_ran_ends_when_it_was_missed_and_stays_so() -> None:
    seen = cost_of({}, [pod(running=200)], NOW)
    assert seen is not None
    status = {"cost": seen.model_dump(mode="json", by_alias=True, exclude_none=True)}
    gone = cost_of(status, [], NOW + timedelta(seconds=90))
    assert gone is not None
    assert gone.attempts[0].end_time == NOW + timedelta(seconds=60)
    assert gone.cpu_seconds == 2 * 260 and gone.as_of is None  # nothing runs: no asOf to move
    final = {"cost": gone.model_dump(mode="json", by_alias=True, exclude_none=True)}
    assert cost_of(final, [], NOW + timedelta(hours=5)) == gone
    # A stale update of the finished pod (the watch replays it as running) changes nothing either.
    assert cost_of(final, [pod(running=200)], NOW + timedelta(hours=5)) == gone


def test_the_runners_measurement_goes_to_its_pod() -> None:
    running = pod(running=100)
    name = running["metadata"]["name"]
    status = {"progress": {"usage": {"pod": name, "cpuSeconds": 150.04, "gpuUtilizationPercent": 87.0}}}
    cost = cost_of(status, [running], NOW)
    assert cost is not None
    assert cost.measured_cpu_seconds == 150.0 and cost.attempts[0].gpu_utilization_percent == 87.0
    assert cost.cpu_utilization == 0.75  # 150 of 2 cores x 100 s
    # A report about another pod (a previous attempt's, late) is not filed under this one.
    other = {"progress": {"usage": {"pod": "someone-else", "cpuSeconds": 9.0}}}
    alone = cost_of(other, [running], NOW)
    assert alone is not None and alone.measured_cpu_seconds is None


def test_many_attempts_fold_the_oldest_finished_ones() -> None:
    pods = [
        pod(
            "Failed",
            suffix=f"p{i:02d}",
            done=terminated(1, started=3000 - 100 * i) | {"finishedAt": ago(2950 - 100 * i)},
        )
        for i in range(25)
    ]
    cost = cost_of({}, pods, NOW)
    assert cost is not None
    assert len(cost.attempts) == 20 and cost.earlier is not None and cost.earlier.pods == 5
    assert cost.pods == 25 and cost.cpu_seconds == 25 * 2 * 50
    assert cost.attempts[0].pod.endswith("p05")


def test_an_experiment_sums_its_runs() -> None:
    runs = [
        {"cpuSeconds": 100.0, "gpuSeconds": 10.0, "measuredCpuSeconds": 80.0, "pods": 1, "attempts": []},
        {"cpuSeconds": 50.5, "gpuSeconds": 0.0, "pods": 2},
        {"nonsense": True},
    ]
    total = sum_costs(runs)
    assert total is not None
    assert (total.cpu_seconds, total.gpu_seconds, total.measured_cpu_seconds, total.pods) == (150.5, 10.0, 80.0, 3)
    assert sum_costs([]) is None


def test_the_reconcile_writes_the_cost_once_a_minute_while_the_pod_runs() -> None:
    cluster = FakeCluster()
    run = make_run(status={"phase": "Running", "reason": "Training", "startTime": ago(250)})
    job = training_job(run, active=1)
    cluster.add(job)
    cluster.add(run)
    running = make_pod(job, "Running", running=200)
    running["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    cluster.add(running)
    clock = [NOW]

    def reconcile() -> Obj | None:
        return reconciler.reconcile(
            TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=lambda: clock[0], gate=ReconcileGate()
        )

    written = reconcile()
    assert written is not None and written["cost"]["cpuSeconds"] == 200.0
    clock[0] = NOW + timedelta(seconds=30)
    assert reconcile() is None  # the same minute: nothing to write
    clock[0] = NOW + timedelta(seconds=61)
    written = reconcile()
    assert written is not None and written["cost"]["cpuSeconds"] == 260.0
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None and stored["status"]["cost"]["attempts"][0]["pod"] == running["metadata"]["name"]


def test_once_no_pod_runs_the_reconcile_removes_as_of_and_then_writes_nothing() -> None:
    """A merge patch keeps the keys it does not mention: the reconcile deletes ``asOf`` explicitly
    (found on the local cluster, where it stayed and the run looked as if a pod still ran)."""
    cluster = FakeCluster()
    run = make_run(status={"phase": "Running", "reason": "Training", "startTime": ago(250)})
    job = training_job(run, active=1)
    cluster.add(job)
    cluster.add(run)
    running = make_pod(job, "Running", running=200)
    running["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    cluster.add(running)
    gate = ReconcileGate()

    def reconcile() -> Obj | None:
        return reconciler.reconcile(
            TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=lambda: NOW, gate=gate
        )

    reconcile()
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None and stored["status"]["cost"]["asOf"]
    finished = make_pod(job, "Succeeded", terminated=terminated(0, started=200))
    finished["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    cluster.add(finished)
    reconcile()
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None
    assert "asOf" not in stored["status"]["cost"], stored["status"]["cost"]
    assert stored["status"]["cost"]["cpuSeconds"] == 190.0
    cluster.reset_calls()
    reconcile()
    assert cluster.writes() == []


@pytest.mark.parametrize(
    ("before", "after", "patch"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": None}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, {"a": {"x": 1, "y": None}}),
        (None, {"a": 1}, {"a": 1}),
        ([1, 2], [1], [1]),  # lists are replaced whole
        ({"a": 1}, 5, 5),
    ],
)
def test_a_status_patch_deletes_what_the_new_value_no_longer_has(before: Any, after: Any, patch: Any) -> None:
    assert reconciler.replacing(before, after) == patch
