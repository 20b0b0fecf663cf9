"""Every reconcile path of the kinds that own a Job (TrainingRun, Benchmark), against the fake API.

Each test arranges a cluster, reconciles, and checks what the reconcile wrote (the fake's call
log) and the state it left: create, update, recreate, stop, finish, fail, namespace terminating,
a deleted owner, and the no-op reconcile that writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.finalreport import FinalReport, final_report_message
from kubegym_api.trainingrun import CheckpointStatus, TrainingResult
from kubegym_operator import reconciler
from kubegym_operator.apierrors import ApiError
from kubegym_operator.jobowners.benchmark import BenchmarkJobs, WaitIndex
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.settings import Settings
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import (
    NAMESPACE,
    SETTINGS,
    ago,
    make_benchmark,
    make_job,
    make_pod,
    make_run,
    now,
    terminated,
    training_job,
)
from tests.unit.operator.fakeapi import Call, FakeCluster, api_error, namespace_terminating

Obj = dict[str, Any]
RUN_JOB = "cartpole-train"
BENCH_JOB = "compare-bench"


def reconcile_run(cluster: FakeCluster, name: str = "cartpole", settings: Settings = SETTINGS) -> Obj | None:
    return reconciler.reconcile(TrainingRunJobs(settings), cluster, NAMESPACE, name, now=now, gate=ReconcileGate())


def reconcile_bench(cluster: FakeCluster, waiting: WaitIndex | None = None, name: str = "compare") -> Obj | None:
    adapter = BenchmarkJobs(SETTINGS, waiting or WaitIndex())
    return reconciler.reconcile(adapter, cluster, NAMESPACE, name, now=now, gate=ReconcileGate())


def status_of(cluster: FakeCluster, kind: str, name: str) -> Obj:
    obj = cluster.obj(kind, NAMESPACE, name)
    assert obj is not None
    return dict(obj.get("status") or {})


def writes(cluster: FakeCluster) -> list[tuple[str, str, str]]:
    """(verb, kind, name) of every write, Events included."""
    return [(c.verb, c.kind, c.name) for c in cluster.writes()]


def env_config(job: Obj) -> Obj:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    config: Obj = json.loads(env[CONFIG_ENV]["value"])
    return config


def with_job(cluster: FakeCluster, owner: Obj, job: Obj) -> Obj:
    """Put the owner and its Job in the cluster; returns the stored owner."""
    cluster.add(job)
    return cluster.add(owner)


# --- TrainingRun ---------------------------------------------------------------------------------


def test_run_create_makes_identity_then_job_and_writes_pending() -> None:
    cluster = FakeCluster(make_run())
    written = reconcile_run(cluster)
    assert writes(cluster) == [
        ("create", "ServiceAccount", "cartpole-runner"),
        ("create", "Role", "cartpole-runner"),
        ("create", "RoleBinding", "cartpole-runner"),
        ("create", "Job", RUN_JOB),
        ("post_event", "TrainingRun", "cartpole"),
        ("merge_patch_status", "TrainingRun", "cartpole"),
    ]
    job = cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB)
    assert job is not None
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert written is not None and written["phase"] == "Pending"
    assert status_of(cluster, Kind.TRAINING_RUN, "cartpole")["jobName"] == RUN_JOB
    assert [e.reason for e in cluster.events] == [written["reason"]]


def test_run_reconciled_again_with_nothing_new_writes_nothing() -> None:
    cluster = FakeCluster(make_run())
    reconcile_run(cluster)
    cluster.reset_calls()
    assert reconcile_run(cluster) is None
    assert cluster.writes() == []
    assert [c.verb for c in cluster.calls] == ["get", "get", "pods_of_job"]


@pytest.mark.parametrize(
    ("edit", "expected_patch_path", "phase"),
    [
        ({"suspend": True}, "/spec/suspend", "Suspended"),
        ({"runPolicy": {"backoffLimit": 3, "ttlSecondsAfterFinished": 60}}, "/spec/ttlSecondsAfterFinished", None),
    ],
    ids=["suspend", "ttl"],
)
def test_run_edit_of_a_mutable_field_patches_the_job(edit: Obj, expected_patch_path: str, phase: str | None) -> None:
    cluster = FakeCluster()
    run = make_run()
    with_job(cluster, run, training_job(run, started=None))
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None
    stored["spec"].update(edit)
    cluster.update(stored)
    reconcile_run(cluster)
    assert ("json_patch", "Job", RUN_JOB) in writes(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB)
    assert job is not None
    field = expected_patch_path.rsplit("/", 1)[1]
    assert job["spec"][field] == (True if field == "suspend" else 60)
    if phase:
        assert status_of(cluster, Kind.TRAINING_RUN, "cartpole")["phase"] == phase


def test_run_scheduling_edit_before_start_recreates_the_job() -> None:
    cluster = FakeCluster(make_run())
    reconcile_run(cluster)  # created, not suspended, never started
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None
    run["spec"]["scheduling"] = {"nodeSelector": {"pool": "fast"}}
    cluster.update(run)
    cluster.reset_calls()

    reconcile_run(cluster)
    assert ("delete", "Job", RUN_JOB) in writes(cluster)
    old = cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB)
    assert old is not None and old["metadata"]["deletionTimestamp"]  # Foreground: its pods go first

    cluster.reset_calls()
    reconcile_run(cluster)  # still being deleted: wait, do not delete or create again
    assert [w for w in writes(cluster) if w[1] == "Job"] == []

    cluster.finish_deletion(Kind.JOB, NAMESPACE, RUN_JOB)
    reconcile_run(cluster)
    new = cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB)
    assert new is not None and "deletionTimestamp" not in new["metadata"]
    assert new["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "fast"}


def test_run_with_a_permanent_image_error_fails_and_its_job_is_stopped() -> None:
    cluster = FakeCluster()
    run = make_run()
    stored = with_job(cluster, run, job := training_job(run, active=1))
    cluster.add(make_pod(job, waiting=("InvalidImageName", "bad reference")))
    reconcile_run(cluster)
    assert ("delete", "Job", RUN_JOB) in writes(cluster)
    assert cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB) is None
    status = status_of(cluster, Kind.TRAINING_RUN, "cartpole")
    assert (status["phase"], status["reason"]) == ("Failed", "ImagePullFailed")
    assert stored["metadata"]["uid"]
    cluster.reset_calls()
    reconcile_run(cluster)  # Failed is final: no Job again, nothing to write
    assert cluster.writes() == []


@pytest.mark.parametrize(
    ("pod_age", "phase", "stopped"),
    [(60, "Pending", False), (400, "Failed", True)],
    ids=["within-grace", "after-grace"],
)
def test_run_image_pull_error_fails_only_after_the_grace_period(pod_age: float, phase: str, stopped: bool) -> None:
    cluster = FakeCluster()
    run = make_run()
    with_job(cluster, run, job := training_job(run, active=1))
    cluster.add(make_pod(job, waiting=("ImagePullBackOff", "pull failed"), created=pod_age))
    reconcile_run(cluster)
    status = status_of(cluster, Kind.TRAINING_RUN, "cartpole")
    assert (status["phase"], status["reason"]) == (phase, "ImagePullFailed")
    assert (cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB) is None) == stopped
    adapter = TrainingRunJobs(SETTINGS)
    stored = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert stored is not None
    assert adapter.clock_dependent(cluster, stored) == (phase == "Pending")  # the resync's business


def test_run_finishes_from_a_complete_job_with_the_result_from_the_termination_message() -> None:
    cluster = FakeCluster()
    run = make_run(status={"phase": "Running", "reason": "Training", "startTime": ago(250)})
    with_job(cluster, run, job := training_job(run, conditions=(("Complete", "Completed"),)))
    report = FinalReport(
        result=TrainingResult(
            timesteps=100_000, mean_reward=500.0, model_uri="s3://kubegym/runs/research/cartpole/final/"
        ),
        total_timesteps=100_000,
        checkpoints=CheckpointStatus(latest_uri="s3://kubegym/runs/research/cartpole/checkpoints/100000/", count=2),
    )
    message = final_report_message("trained", report, 4096)
    cluster.add(make_pod(job, "Succeeded", terminated=terminated(0, message=message)))
    reconcile_run(cluster)
    status = status_of(cluster, Kind.TRAINING_RUN, "cartpole")
    assert status["phase"] == "Succeeded"
    assert status["result"]["meanReward"] == 500.0
    assert status["checkpoints"]["count"] == 2
    assert "status.result recovered" in status["message"]
    assert [(e.type, e.reason) for e in cluster.events] == [("Normal", "Completed")]
    cluster.reset_calls()
    cluster.remove(Kind.JOB, NAMESPACE, RUN_JOB)  # ttlSecondsAfterFinished took it
    reconcile_run(cluster)
    assert cluster.writes() == []  # no new Job for a finished run


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"checkpoint": {"everySteps": 5000, "keepLast": 2}}, "StorageNotConfigured"),
        ({"resumeFrom": {"trainingRun": "missing"}}, "ResumeSourceNotFound"),
        (
            {"hyperparameters": {"policy_kwargs": "__import__('os').system('touch /tmp/x') or dict(net_arch=[64])"}},
            "InvalidHyperparameters",
        ),
        ({"hyperparameters": {"policy_kwargs": {"activation_fn": "os.system"}}}, "InvalidHyperparameters"),
    ],
    ids=["no-storage", "missing-resume-source", "code-in-policy-kwargs", "unknown-class-name"],
)
def test_run_that_cannot_work_fails_without_a_job(spec: Obj, reason: str) -> None:
    cluster = FakeCluster(make_run(**spec))
    reconcile_run(cluster)
    status = status_of(cluster, Kind.TRAINING_RUN, "cartpole")
    assert (status["phase"], status["reason"]) == ("Failed", reason)
    assert [w for w in writes(cluster) if w[0] == "create"] == []
    assert cluster.events[0].type == "Warning"


def test_run_resumes_from_another_runs_newest_checkpoint() -> None:
    newest = "s3://kubegym/runs/research/first/uid-trainingrun-first/checkpoints/000000005000/"
    source = make_run("first", status={"phase": "Suspended", "checkpoints": {"latestUri": newest}})
    cluster = FakeCluster(source, make_run(resumeFrom={"trainingRun": "first"}))
    reconcile_run(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB)
    assert job is not None
    assert env_config(job)["resumeFrom"] == newest


def test_run_does_not_resume_from_a_checkpoint_outside_the_other_runs_folder() -> None:
    """The other run's runner reports its latestUri: one that points out of that run's own folder
    (another team's prefix, say) fails this run instead of handing its runner that URI."""
    elsewhere = "s3://kubegym/runs/other-team/secret/checkpoints/000000005000/"
    source = make_run("first", status={"phase": "Suspended", "checkpoints": {"latestUri": elsewhere}})
    cluster = FakeCluster(source, make_run(resumeFrom={"trainingRun": "first"}))
    reconcile_run(cluster)
    assert cluster.obj(Kind.JOB, NAMESPACE, RUN_JOB) is None
    status = status_of(cluster, Kind.TRAINING_RUN, "cartpole")
    assert (status["phase"], status["reason"]) == ("Failed", "ResumeSourceNotFound")


def test_run_in_a_terminating_namespace_is_left_alone_quietly() -> None:
    cluster = FakeCluster(make_run())
    cluster.fail("create", "ServiceAccount", namespace_terminating(NAMESPACE))
    assert reconcile_run(cluster) is None  # no exception, no traceback
    assert writes(cluster) == [("create", "ServiceAccount", "cartpole-runner")]


def test_other_api_errors_propagate_and_mark_the_object_for_the_resync() -> None:
    cluster = FakeCluster(make_run())
    cluster.fail("create", "Job", api_error(500, "InternalError"))
    gate = ReconcileGate()
    with pytest.raises(ApiError, match="InternalError"):
        reconciler.reconcile(TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=now, gate=gate)
    assert gate.failed() == {(Kind.TRAINING_RUN, NAMESPACE, "cartpole")}
    due = reconciler.due_for_resync(Kind.TRAINING_RUN, cluster, TrainingRunJobs(SETTINGS).clock_dependent, gate)
    assert due == [(NAMESPACE, "cartpole")]
    reconciler.reconcile(TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=now, gate=gate)
    assert gate.failed() == set()


def test_run_deleted_between_the_read_and_the_status_write_is_not_an_error() -> None:
    # The watch-fed view still had the run; the API server had deleted it by the status write.
    cluster = FakeCluster(make_run())
    cluster.fail("merge_patch_status", Kind.TRAINING_RUN, api_error(404, "NotFound", "trainingruns cartpole not found"))
    gate = ReconcileGate()
    assert reconciler.reconcile(TrainingRunJobs(SETTINGS), cluster, NAMESPACE, "cartpole", now=now, gate=gate) is None
    assert gate.failed() == set()
    assert writes(cluster)[-1] == ("merge_patch_status", "TrainingRun", "cartpole")


@pytest.mark.parametrize("deleting", [False, True], ids=["gone", "being-deleted"])
def test_deleted_run_makes_no_calls_but_its_read(deleting: bool) -> None:
    cluster = FakeCluster()
    if deleting:
        run = make_run()
        run["metadata"]["deletionTimestamp"] = ago(1)
        cluster.add(run)
    assert reconcile_run(cluster) is None
    assert cluster.calls == [Call("get", Kind.TRAINING_RUN, NAMESPACE, "cartpole")]


# --- Benchmark -------------------------------------------------------------------------------------


def test_benchmark_create_makes_evaluator_identity_then_job() -> None:
    cluster = FakeCluster(make_benchmark())
    reconcile_bench(cluster)
    assert [w for w in writes(cluster) if w[0] == "create"] == [
        ("create", "ServiceAccount", "compare-evaluator"),
        ("create", "Role", "compare-evaluator"),
        ("create", "RoleBinding", "compare-evaluator"),
        ("create", "Job", BENCH_JOB),
    ]
    status = status_of(cluster, Kind.BENCHMARK, "compare")
    assert status["phase"] == "Pending" and status["jobName"] == BENCH_JOB
    cluster.reset_calls()
    reconcile_bench(cluster)
    assert cluster.writes() == []


def test_benchmark_waits_for_its_training_run_then_creates_its_job() -> None:
    models = [{"name": "agent", "trainingRunRef": {"name": "cartpole"}}]
    cluster = FakeCluster(make_benchmark(models=models), make_run(status={"phase": "Running", "reason": "Training"}))
    waiting = WaitIndex()
    reconcile_bench(cluster, waiting)
    status = status_of(cluster, Kind.BENCHMARK, "compare")
    assert (status["phase"], status["reason"]) == ("Pending", "TrainingRunNotFinished")
    assert cluster.obj(Kind.JOB, NAMESPACE, BENCH_JOB) is None
    assert waiting.waiting_for(NAMESPACE, "cartpole") == ["compare"]

    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None
    run["status"] = {"phase": "Succeeded", "result": {"modelUri": "s3://kubegym/runs/research/cartpole/final/"}}
    cluster.update(run)
    reconcile_bench(cluster, waiting)
    job = cluster.obj(Kind.JOB, NAMESPACE, BENCH_JOB)
    assert job is not None
    assert "s3://kubegym/runs/research/cartpole/final/" in json.dumps(env_config(job))
    assert waiting.waiting_for(NAMESPACE, "cartpole") == []


@pytest.mark.parametrize(
    ("models", "spec", "reason"),
    [
        ([{"name": "agent", "trainingRunRef": {"name": "cartpole"}}], {}, "TrainingRunFailed"),
        (None, {"storage": None}, "StorageNotConfigured"),
    ],
    ids=["referenced-run-failed", "no-storage"],
)
def test_benchmark_that_cannot_work_fails_without_a_job(models: list[Obj] | None, spec: Obj, reason: str) -> None:
    bench = make_benchmark(models=models)
    bench["spec"].update(spec)
    bench["spec"] = {k: v for k, v in bench["spec"].items() if v is not None}
    cluster = FakeCluster(bench, make_run(status={"phase": "Failed", "reason": "UserError", "message": "bad env"}))
    reconcile_bench(cluster)
    status = status_of(cluster, Kind.BENCHMARK, "compare")
    assert (status["phase"], status["reason"]) == ("Failed", reason)
    assert [w for w in writes(cluster) if w[0] == "create"] == []


def test_benchmark_ttl_edit_patches_its_job() -> None:
    cluster = FakeCluster(make_benchmark())
    reconcile_bench(cluster)
    bench = cluster.obj(Kind.BENCHMARK, NAMESPACE, "compare")
    assert bench is not None
    bench["spec"]["runPolicy"] = {"backoffLimit": 1, "ttlSecondsAfterFinished": 30}
    cluster.update(bench)
    cluster.reset_calls()
    reconcile_bench(cluster)
    assert ("json_patch", "Job", BENCH_JOB) in writes(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, BENCH_JOB)
    assert job is not None and job["spec"]["ttlSecondsAfterFinished"] == 30


def test_benchmark_finishes_and_a_permanent_image_error_stops_its_job() -> None:
    cluster = FakeCluster(make_benchmark())
    reconcile_bench(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, BENCH_JOB)
    assert job is not None
    cluster.update(make_job(job, conditions=(("Complete", "Completed"),)))
    reconcile_bench(cluster)
    assert status_of(cluster, Kind.BENCHMARK, "compare")["phase"] == "Succeeded"

    other = FakeCluster(make_benchmark())
    reconcile_bench(other)
    job = other.obj(Kind.JOB, NAMESPACE, BENCH_JOB)
    assert job is not None
    other.add(make_pod(job, waiting=("ErrImageNeverPull", "never pull")))
    reconcile_bench(other)
    assert other.obj(Kind.JOB, NAMESPACE, BENCH_JOB) is None
    assert status_of(other, Kind.BENCHMARK, "compare")["reason"] == "ImagePullFailed"


def test_benchmark_in_a_terminating_namespace_and_a_deleted_one() -> None:
    cluster = FakeCluster(make_benchmark())
    cluster.fail("create", "Job", namespace_terminating(NAMESPACE))
    assert reconcile_bench(cluster) is None
    assert all(w[0] == "create" for w in writes(cluster))
    empty = FakeCluster()
    assert reconcile_bench(empty) is None
    assert empty.writes() == []


# --- the periodic resync -------------------------------------------------------------------------


def test_only_clock_dependent_unfinished_objects_are_due_for_resync() -> None:
    cluster = FakeCluster(
        make_run("pulling", status={"phase": "Pending", "reason": "ImagePullFailed"}),
        make_run("secret", status={"phase": "Pending", "reason": "SecretNotFound"}),
        make_run("training", status={"phase": "Running", "reason": "Training"}),
        make_run("queued", status={"phase": "Pending", "reason": "Queued"}),
        make_run("failed", status={"phase": "Failed", "reason": "ImagePullFailed"}),
    )
    due = reconciler.due_for_resync(
        Kind.TRAINING_RUN, cluster, TrainingRunJobs(SETTINGS).clock_dependent, ReconcileGate()
    )
    assert due == [(NAMESPACE, "pulling"), (NAMESPACE, "secret")]
