"""Issuing and refreshing runner pods' storage credentials in the reconciles, against the fake API
and a fake STS (:class:`FakeMinter`, which records what it is asked and can fail).

A run of the default storage (STS mode) gets its Secret — owned by the run, holding only what
the minter returned — before its Job, whose annotations record when the credentials expire; a
third of the lifetime before that, a reconcile mints again, replaces the Secret and moves the
record; an STS failure leaves no Job (and a Warning Event) until STS answers, and a failed
refresh keeps the running Job and says why. Static mode and a spec's own storage mint nothing.
A Benchmark's pod reads its models, an Experiment report's its trials, both refreshed alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubegym_api.base import Algorithm
from kubegym_api.runnerconfig import BenchmarkModel
from kubegym_api.storage import SESSION_CREDENTIALS_KEY, S3Storage, SessionCredentials
from kubegym_operator import reconciler
from kubegym_operator.builders import credentials as c
from kubegym_operator.builders.job import RESUME_FROM_ANNOTATION, build_train_config
from kubegym_operator.credentials import Issuer
from kubegym_operator.jobowners.benchmark import BenchmarkJobs, WaitIndex
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.settings import Settings, StorageCredentials
from kubegym_operator.sts import StsError
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, NOW, make_benchmark, make_run
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]
STS = Settings(
    default_storage=S3Storage(bucket="kubegym", prefix="runs", endpoint="http://minio:9000"),
    pending_error_grace_seconds=300,
)
STATIC = Settings(
    default_storage=S3Storage(bucket="kubegym", prefix="runs", endpoint="http://minio:9000", secret_ref="kubegym-s3"),
    storage_credentials=StorageCredentials.static,
)
HOUR = 3600
RUN_JOB = "cartpole-train"
SECRET = "cartpole-train-storage"


@dataclass
class FakeMinter:
    """STS as the reconciles see it: each call returns new credentials valid ``duration`` from the
    test's clock; ``failure`` makes the next calls raise it."""

    clock: Clock
    calls: list[tuple[Obj, str, int]] = field(default_factory=list)
    failure: StsError | None = None

    def assume_role(self, policy: str, name: str, duration_seconds: int) -> SessionCredentials:
        if self.failure is not None:
            raise self.failure
        self.calls.append((json.loads(policy), name, duration_seconds))
        n = len(self.calls)
        return SessionCredentials(
            access_key_id=f"TEMP{n}",
            secret_access_key=f"secret-{n}",
            session_token=f"token-{n}",
            expiration=self.clock() + dt.timedelta(seconds=duration_seconds),
        )


@dataclass
class Clock:
    at: dt.datetime = NOW

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def minter(clock: Clock) -> FakeMinter:
    return FakeMinter(clock)


def reconcile(cluster: FakeCluster, minter: FakeMinter, settings: Settings = STS, name: str = "cartpole") -> Obj | None:
    issuer = Issuer(minter, HOUR)
    return reconciler.reconcile(
        TrainingRunJobs(settings), cluster, NAMESPACE, name, now=minter.clock, gate=ReconcileGate(), issuer=issuer
    )


def default_storage_run(**spec: Any) -> Obj:
    return make_run(checkpoint={"everySteps": 1000}, **spec)


def secret_credentials(cluster: FakeCluster, name: str = SECRET) -> SessionCredentials:
    secret = cluster.obj("Secret", NAMESPACE, name)
    assert secret is not None
    return SessionCredentials.model_validate_json(base64.b64decode(secret["data"][SESSION_CREDENTIALS_KEY]))


def job_of(cluster: FakeCluster, name: str = RUN_JOB) -> Obj:
    job = cluster.obj(Kind.JOB, NAMESPACE, name)
    assert job is not None
    return job


def test_a_run_of_the_default_storage_gets_its_secret_before_its_job(minter: FakeMinter) -> None:
    cluster = FakeCluster(default_storage_run())
    reconcile(cluster, minter)
    writes = [(w.verb, w.kind, w.name) for w in cluster.writes()]
    assert writes[:5] == [
        ("create", "ServiceAccount", "cartpole-runner"),
        ("create", "Role", "cartpole-runner"),
        ("create", "RoleBinding", "cartpole-runner"),
        ("put", "Secret", SECRET),
        ("create", "Job", RUN_JOB),
    ]
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    secret = cluster.obj("Secret", NAMESPACE, SECRET)
    assert run is not None and secret is not None
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("TrainingRun", run["metadata"]["uid"], True)
    assert secret_credentials(cluster).access_key_id == "TEMP1"

    (policy, session, duration) = minter.calls[0]
    assert (session, duration) == (f"kubegym.{NAMESPACE}.{RUN_JOB}", HOUR)
    config = build_train_config(run, STS)
    assert policy == json.loads(c.session_policy(c.access_of(config, NAMESPACE)))
    uid = run["metadata"]["uid"]
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:s3:::kubegym/runs/{NAMESPACE}/cartpole/{uid}/*"]

    annotations = job_of(cluster)["metadata"]["annotations"]
    assert annotations[c.ISSUED_ANNOTATION] == "2026-03-01T12:00:00Z"
    assert annotations[c.EXPIRATION_ANNOTATION] == "2026-03-01T13:00:00Z"
    assert "secret-1" not in json.dumps(job_of(cluster))  # the Job references the Secret, never its data


@pytest.mark.parametrize(
    ("settings", "run"),
    [(STATIC, default_storage_run()), (STS, make_run())],
    ids=["static-mode", "spec-with-its-own-secretRef"],
)
def test_credentials_by_reference_mint_nothing(minter: FakeMinter, settings: Settings, run: Obj) -> None:
    cluster = FakeCluster(run)
    reconcile(cluster, minter, settings)
    assert minter.calls == []
    assert cluster.of_kind("Secret") == []
    assert c.ISSUED_ANNOTATION not in job_of(cluster)["metadata"]["annotations"]


def test_credentials_are_refreshed_with_a_third_of_their_lifetime_left(clock: Clock, minter: FakeMinter) -> None:
    cluster = FakeCluster(default_storage_run())
    reconcile(cluster, minter)
    adapter = TrainingRunJobs(STS)
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None

    clock.advance(30 * 60)  # half of it left: nothing to do, and the resync does not pick it
    cluster.reset_calls()
    reconcile(cluster, minter)
    assert len(minter.calls) == 1 and ("put", "Secret", SECRET) not in [
        (w.verb, w.kind, w.name) for w in cluster.writes()
    ]
    assert not reconciler.needs_resync(adapter, cluster, run, clock())

    clock.advance(11 * 60)  # 19 minutes left: due, and the resync would reconcile it for that alone
    assert reconciler.needs_resync(adapter, cluster, run, clock())
    cluster.reset_calls()
    reconcile(cluster, minter)
    assert [(w.verb, w.kind, w.name) for w in cluster.writes()][:2] == [
        ("put", "Secret", SECRET),
        ("merge_patch", "Job", RUN_JOB),
    ]
    assert secret_credentials(cluster).access_key_id == "TEMP2"
    assert minter.calls[1][0] == minter.calls[0][0]  # the same policy
    annotations = job_of(cluster)["metadata"]["annotations"]
    assert annotations[c.ISSUED_ANNOTATION] == "2026-03-01T12:41:00Z"
    assert annotations[c.EXPIRATION_ANNOTATION] == "2026-03-01T13:41:00Z"
    assert [e.reason for e in cluster.events] == ["StorageCredentialsRefreshed"]
    assert not reconciler.needs_resync(adapter, cluster, run, clock())


def test_an_sts_failure_leaves_no_job_until_sts_answers(minter: FakeMinter) -> None:
    cluster = FakeCluster(default_storage_run())
    gate = ReconcileGate()
    minter.failure = StsError("Unreachable", "connection refused", retryable=True)

    def once() -> Obj | None:
        return reconciler.reconcile(
            TrainingRunJobs(STS),
            cluster,
            NAMESPACE,
            "cartpole",
            now=minter.clock,
            gate=gate,
            issuer=Issuer(minter, HOUR),
        )

    with pytest.raises(StsError):
        once()
    assert cluster.of_kind(Kind.JOB) == [] and cluster.of_kind("Secret") == []
    assert [(e.type, e.reason) for e in cluster.events] == [("Warning", "StorageCredentialsFailed")]
    assert (Kind.TRAINING_RUN, NAMESPACE, "cartpole") in gate.failed()  # the resync tries again

    minter.failure = None
    once()
    assert job_of(cluster) and secret_credentials(cluster).access_key_id == "TEMP1"
    assert gate.failed() == set()


def test_a_failed_refresh_keeps_the_job_and_warns(clock: Clock, minter: FakeMinter) -> None:
    cluster = FakeCluster(default_storage_run())
    reconcile(cluster, minter)
    before = job_of(cluster)["metadata"]["annotations"][c.EXPIRATION_ANNOTATION]
    clock.advance(45 * 60)
    minter.failure = StsError("AccessDenied", "the operator's key was revoked", retryable=False)
    cluster.reset_calls()
    reconcile(cluster, minter)  # does not raise: the pod keeps its credentials for 15 more minutes
    assert job_of(cluster)["metadata"]["annotations"][c.EXPIRATION_ANNOTATION] == before
    assert [(e.type, e.reason) for e in cluster.events] == [("Warning", "StorageCredentialsNotRefreshed")]
    assert "revoked" in cluster.events[0].message
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None and reconciler.needs_resync(TrainingRunJobs(STS), cluster, run, clock())  # still due


def test_a_refresh_grants_the_checkpoint_the_pod_was_configured_with(clock: Clock, minter: FakeMinter) -> None:
    first = "s3://kubegym/runs/research/old/checkpoints/000000001000/"
    other = make_run("old", status={"phase": "Running", "checkpoints": {"latestUri": first, "count": 1}})
    cluster = FakeCluster(other, default_storage_run(resumeFrom={"trainingRun": "old"}))
    reconcile(cluster, minter)
    assert job_of(cluster)["metadata"]["annotations"][RESUME_FROM_ANNOTATION] == first
    granted = minter.calls[0][0]["Statement"][1]["Resource"]
    assert granted == ["arn:aws:s3:::kubegym/runs/research/old/checkpoints/000000001000/*"]

    moved = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "old")
    assert moved is not None
    moved["status"]["checkpoints"]["latestUri"] = "s3://kubegym/runs/research/old/checkpoints/000000002000/"
    cluster.update(moved)  # the other run went on
    clock.advance(50 * 60)
    reconcile(cluster, minter)
    assert len(minter.calls) == 2 and minter.calls[1][0]["Statement"][1]["Resource"] == granted


def test_a_benchmark_reads_its_models_and_writes_its_reports(minter: FakeMinter) -> None:
    models: list[Obj] = [
        {"name": "strong", "trainingRunRef": {"name": "strong"}},
        {"name": "uploaded", "uri": "s3://kubegym/uploads/abc/model.zip", "algorithm": "DQN"},
    ]
    strong = make_run(
        "strong",
        status={"phase": "Succeeded", "result": {"modelUri": "s3://kubegym/runs/research/strong/final/"}},
    )
    cluster = FakeCluster(strong, make_benchmark(models=models, storage=None))
    adapter = BenchmarkJobs(STS, WaitIndex())
    reconciler.reconcile(
        adapter, cluster, NAMESPACE, "compare", now=minter.clock, gate=ReconcileGate(), issuer=Issuer(minter, HOUR)
    )
    assert cluster.obj("Secret", NAMESPACE, "compare-bench-storage") is not None
    policy = minter.calls[0][0]
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::kubegym/runs/research/benchmarks/compare/*"]
    assert policy["Statement"][1]["Resource"] == [
        "arn:aws:s3:::kubegym/runs/research/strong/final/*",
        "arn:aws:s3:::kubegym/uploads/abc/*",
    ]
    job = job_of(cluster, "compare-bench")
    access = adapter.storage_access(cluster, make_benchmark(models=models, storage=None), job)
    assert access is not None
    assert [f.key for f in access.read] == ["runs/research/strong/final", "uploads/abc"]
    assert access.read == c.access_of(_evaluate_config(cluster), NAMESPACE).read


def _evaluate_config(cluster: FakeCluster) -> Any:
    from kubegym_operator.builders.benchmark import build_evaluate_config

    bench = cluster.obj(Kind.BENCHMARK, NAMESPACE, "compare")
    assert bench is not None
    models = [
        BenchmarkModel(name="strong", uri="s3://kubegym/runs/research/strong/final/", algorithm=Algorithm.PPO),
        BenchmarkModel(name="uploaded", uri="s3://kubegym/uploads/abc/model.zip", algorithm=Algorithm.DQN),
    ]
    return build_evaluate_config(bench, models, STS)


def test_issuer_is_required_when_a_job_needs_minted_credentials() -> None:
    cluster = FakeCluster(default_storage_run())
    with pytest.raises(RuntimeError, match="no issuer"):
        reconciler.reconcile(TrainingRunJobs(STS), cluster, NAMESPACE, "cartpole", gate=ReconcileGate())
    assert cluster.of_kind(Kind.JOB) == []


def test_an_experiment_report_reads_its_trials_and_is_refreshed_while_it_runs(clock: Clock, minter: FakeMinter) -> None:
    from kubegym_operator.controllers import experiment as controller
    from tests.unit.operator.test_experiment_reconcile import REPORT_JOB, finish_runs, make_experiment

    exp = make_experiment()
    exp["spec"]["template"]["checkpoint"] = {"everySteps": 1000}  # the default storage: minted credentials
    cluster = FakeCluster(exp)
    issuer = Issuer(minter, HOUR)

    def reconcile_exp() -> None:
        controller.reconcile(cluster, NAMESPACE, "sweep", STS, now=clock, gate=ReconcileGate(), issuer=issuer)

    for _ in range(2):  # one run at a time, each finished
        reconcile_exp()
        finish_runs(cluster)
    reconcile_exp()  # the report Job, after its Secret
    assert [(w.verb, w.kind, w.name) for w in cluster.writes() if w.kind in ("Secret", "Job")][-2:] == [
        ("put", "Secret", f"{REPORT_JOB}-storage"),
        ("create", "Job", REPORT_JOB),
    ]
    (policy, _, _) = minter.calls[-1]
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:s3:::kubegym/runs/{NAMESPACE}/experiments/sweep/*"]

    def folder(run: str) -> str:
        obj = cluster.obj("TrainingRun", NAMESPACE, run)
        assert obj is not None
        return f"arn:aws:s3:::kubegym/runs/{NAMESPACE}/{run}/{obj['metadata']['uid']}/*"

    assert policy["Statement"][1]["Resource"] == [folder("sweep-c0-s0"), folder("sweep-c0-s1")]
    reconcile_exp()  # the Job's event: the status says it reports
    stored = cluster.obj(Kind.EXPERIMENT, NAMESPACE, "sweep")
    assert stored is not None
    assert not controller.clock_dependent(cluster, stored, STS, clock())
    clock.advance(45 * 60)
    assert controller.clock_dependent(cluster, stored, STS, clock())  # the resync refreshes it
    reconcile_exp()
    assert len(minter.calls) == 2 and minter.calls[1][0] == policy
    assert secret_credentials(cluster, f"{REPORT_JOB}-storage").access_key_id == "TEMP2"
