"""The Experiment's reconcile against the fake API: its runs, and its report Job created and stopped
by the reconciler's shared steps; reads from the view only, writes only when something changed."""

from __future__ import annotations

import json
from typing import Any

from kubegym_api.envvars import CONFIG_ENV
from kubegym_operator.clusterapi import LiveClusterAPI
from kubegym_operator.controllers import experiment
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, STORAGE, ago, make_pod, now
from tests.unit.operator.fakeapi import Call, FakeCluster, FakeHttp, FakeWatch, namespace_terminating

Obj = dict[str, Any]
REPORT_JOB = "sweep-report"


def make_experiment(**spec: Any) -> Obj:
    body: Obj = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 10000,
            "checkpoint": {"storage": dict(STORAGE)},
        },
        "seeds": {"count": 2},
        "parallelism": 1,
    }
    body.update(spec)
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "sweep", "namespace": NAMESPACE, "uid": "uid-exp", "generation": 1},
        "spec": body,
    }


def reconcile(api: Any) -> Obj | None:
    return experiment.reconcile(api, NAMESPACE, "sweep", SETTINGS, now=now, gate=ReconcileGate())


def writes(cluster: FakeCluster) -> list[tuple[str, str, str]]:
    return [(c.verb, c.kind, c.name) for c in cluster.writes()]


def finish_runs(cluster: FakeCluster) -> None:
    for run in cluster.of_kind(Kind.TRAINING_RUN):
        run["status"] = {"phase": "Succeeded", "reason": "Completed", "result": {"meanReward": 100.0}}
        cluster.update(run)


def status(cluster: FakeCluster) -> Obj:
    exp = cluster.obj(Kind.EXPERIMENT, NAMESPACE, "sweep")
    assert exp is not None
    return dict(exp.get("status") or {})


def reporting(cluster: FakeCluster) -> Obj:
    """An Experiment whose runs all succeeded and whose report Job exists."""
    reconcile(cluster)
    finish_runs(cluster)
    reconcile(cluster)  # the second run
    finish_runs(cluster)
    reconcile(cluster)  # the report Job
    job = cluster.obj(Kind.JOB, NAMESPACE, REPORT_JOB)
    assert job is not None
    return job


def test_creates_runs_up_to_parallelism_and_writes_nothing_more_when_nothing_changed() -> None:
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    assert [w for w in writes(cluster) if w[0] == "create"] == [("create", "TrainingRun", "sweep-c0-s0")]
    assert status(cluster)["phase"] == "Pending"
    reconcile(cluster)  # the run's ADDED event: the run exists now (Starting)
    assert status(cluster)["reason"] == "Starting"
    cluster.reset_calls()
    reconcile(cluster)
    assert cluster.writes() == []


def test_report_job_is_created_with_its_identity_once_training_is_done() -> None:
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    finish_runs(cluster)
    reconcile(cluster)
    finish_runs(cluster)
    cluster.reset_calls()
    reconcile(cluster)
    assert [w for w in writes(cluster) if w[0] == "create"] == [
        ("create", "ServiceAccount", "sweep-report"),
        ("create", "Role", "sweep-report"),
        ("create", "RoleBinding", "sweep-report"),
        ("create", "Job", REPORT_JOB),
    ]
    assert (status(cluster)["phase"], status(cluster)["reason"]) == ("Running", "Reporting")
    reconcile(cluster)  # the report Job's ADDED event: its name goes into the status
    assert status(cluster)["reportJob"] == REPORT_JOB
    cluster.reset_calls()
    reconcile(cluster)
    assert cluster.writes() == []


def test_the_report_reads_each_run_in_the_folder_its_status_records() -> None:
    """One run recorded its folder (the uid layout), the other is from before the uid (old-layout
    checkpoints reported, nothing recorded): the report Job reads each where it is."""
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    finish_runs(cluster)
    reconcile(cluster)
    finish_runs(cluster)
    first, second = sorted(cluster.of_kind(Kind.TRAINING_RUN), key=lambda r: r["metadata"]["name"])
    first["status"]["artifacts"] = {
        "bucket": "kubegym",
        "prefix": "runs/research/sweep-c0-s0/u0",
        "uri": "s3://kubegym/runs/research/sweep-c0-s0/u0/",
    }
    cluster.update(first)
    second["status"]["checkpoints"] = {"latestUri": "s3://kubegym/runs/research/sweep-c0-s1/checkpoints/000000010000"}
    cluster.update(second)
    reconcile(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, REPORT_JOB)
    assert job is not None
    (container,) = job["spec"]["template"]["spec"]["containers"]
    config = json.loads(next(e["value"] for e in container["env"] if e["name"] == CONFIG_ENV))
    assert {r["name"]: r["runPrefix"] for r in config["runs"]} == {
        "sweep-c0-s0": "runs/research/sweep-c0-s0/u0",
        "sweep-c0-s1": "runs/research/sweep-c0-s1",
    }


def test_a_report_pod_that_can_never_start_fails_the_experiment_and_stops_the_job() -> None:
    cluster = FakeCluster(make_experiment())
    job = reporting(cluster)
    cluster.add(make_pod(job, waiting=("InvalidImageName", "bad image")))
    reconcile(cluster)
    assert ("delete", "Job", REPORT_JOB) in writes(cluster)
    assert (status(cluster)["phase"], status(cluster)["reason"]) == ("Failed", "ReportFailed")


def test_a_report_pod_stuck_on_a_pull_error_is_the_clocks_business_until_the_grace_ends() -> None:
    cluster = FakeCluster(make_experiment())
    job = reporting(cluster)
    pod = cluster.add(make_pod(job, waiting=("ImagePullBackOff", "pull failed"), created=60))
    reconcile(cluster)
    exp = cluster.obj(Kind.EXPERIMENT, NAMESPACE, "sweep")
    assert exp is not None
    assert status(cluster)["reason"] == "Reporting"
    assert experiment.clock_dependent(cluster, exp, SETTINGS)
    pod["metadata"]["creationTimestamp"] = ago(400)
    cluster.update(pod)
    reconcile(cluster)  # what the resync does once the grace period is over
    assert (status(cluster)["phase"], status(cluster)["reason"]) == ("Failed", "ReportFailed")
    assert cluster.obj(Kind.JOB, NAMESPACE, REPORT_JOB) is None


def test_terminating_namespace_and_deleted_experiment() -> None:
    cluster = FakeCluster(make_experiment())
    cluster.fail("create", "TrainingRun", namespace_terminating(NAMESPACE))
    assert reconcile(cluster) is None
    assert writes(cluster) == [("create", "TrainingRun", "sweep-c0-s0")]
    gone = FakeCluster()
    assert reconcile(gone) is None
    assert gone.calls == [Call("get", Kind.EXPERIMENT, NAMESPACE, "sweep")]


def test_a_reconcile_of_an_experiment_already_seen_reads_nothing_from_the_api_server() -> None:
    cluster = FakeCluster(make_experiment())
    watch = FakeWatch(cluster)
    watch.deliver()
    http = FakeHttp(cluster)
    api = LiveClusterAPI(watch.view, http)
    reconcile(api)
    watch.deliver()
    reconcile(api)
    assert http.reads() == []
    http.requests.clear()
    reconcile(api)
    assert http.requests == []
