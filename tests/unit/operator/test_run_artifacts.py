"""Where a TrainingRun's artifacts live: the choice of its folder, recorded once, read by everyone.

Table-driven over :func:`~kubegym_operator.builders.artifacts.run_location` and
:func:`~kubegym_operator.builders.artifacts.artifacts_status`, then the reconcile paths against
the fake API: the first Job records the folder, a lost status write is recovered from the Job,
a recorded folder survives a change of the operator's storage, a run from before the uid keeps
its old layout, and a run applied again under the same name gets a folder of its own.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import TRAINING_RUN, RunArtifacts
from kubegym_operator import reconciler
from kubegym_operator.builders.artifacts import (
    ARTIFACTS_ANNOTATION,
    ArtifactLocation,
    artifacts_status,
    run_location,
)
from kubegym_operator.builders.job import render_job
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.settings import Settings, load_settings
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, make_job, make_run, now
from tests.unit.operator.fakeapi import FakeCluster, api_error

Obj = dict[str, Any]
UID = "0b0e6f1c-1111-4000-8000-00000000aaaa"
STORAGE = S3Storage(bucket="kubegym", prefix="runs/")
LEGACY = "s3://kubegym/runs/research/cartpole/"
NEW = f"s3://kubegym/runs/research/cartpole/{UID}/"


def run_with(status: Obj | None = None, uid: str = UID) -> Obj:
    return make_run(uid=uid, status=status)


def recorded(bucket: str, prefix: str) -> Obj:
    return {"artifacts": {"bucket": bucket, "prefix": prefix, "uri": f"s3://{bucket}/{prefix}/"}}


@pytest.mark.parametrize(
    ("status", "storage", "expected"),
    [
        ({}, STORAGE, NEW),
        ({}, S3Storage(bucket="kubegym"), f"s3://kubegym/research/cartpole/{UID}/"),
        # A recorded folder is the answer, whatever the storage says now (an upgrade, a new default).
        (recorded("kubegym", "old/research/cartpole/x"), STORAGE, "s3://kubegym/old/research/cartpole/x/"),
        (
            recorded("other-bucket", f"runs/research/cartpole/{UID}"),
            STORAGE,
            f"s3://other-bucket/runs/research/cartpole/{UID}/",
        ),
        # Recorded wins over what the runner reported.
        (
            {
                **recorded("kubegym", f"runs/research/cartpole/{UID}"),
                "checkpoints": {"latestUri": f"{LEGACY}checkpoints/000000000512"},
            },
            STORAGE,
            NEW,
        ),
        # Not recorded, but the runner reported a checkpoint or a final model in the old layout: it
        # started under an older operator and keeps its folder.
        ({"checkpoints": {"latestUri": f"{LEGACY}checkpoints/000000000512"}}, STORAGE, LEGACY),
        ({"result": {"modelUri": f"{LEGACY}final"}}, STORAGE, LEGACY),
        # Reported in the uid layout (a lost record): that is the new layout anyway.
        ({"checkpoints": {"latestUri": f"{NEW}checkpoints/000000000512"}}, STORAGE, NEW),
        # Reported under a predecessor's uid folder, or another run's folder: not evidence of the old layout.
        ({"checkpoints": {"latestUri": f"{LEGACY}some-old-uid/checkpoints/000000000512"}}, STORAGE, NEW),
        (
            {"checkpoints": {"latestUri": "s3://kubegym/runs/research/cartpole-2/checkpoints/000000000512"}},
            STORAGE,
            NEW,
        ),
        (
            {"checkpoints": {"latestUri": "s3://elsewhere/runs/research/cartpole/checkpoints/000000000512"}},
            STORAGE,
            NEW,
        ),
        # A malformed record is not a record.
        ({"artifacts": {"bucket": "kubegym", "prefix": "/"}}, STORAGE, NEW),
    ],
    ids=[
        "new-run",
        "no-storage-prefix",
        "recorded",
        "recorded-bucket",
        "recorded-over-reported",
        "old-layout-checkpoint",
        "old-layout-final",
        "uid-layout-reported",
        "predecessor-uid-folder",
        "another-run",
        "another-bucket",
        "malformed-record",
    ],
)
def test_run_location(status: Obj, storage: S3Storage, expected: str) -> None:
    assert run_location(run_with(status), storage).uri == expected


def test_a_run_applied_again_under_the_same_name_gets_another_folder() -> None:
    first = run_location(run_with(uid="uid-first"), STORAGE)
    again = run_location(run_with(uid="uid-again"), STORAGE)
    assert first != again
    assert first.prefix == "runs/research/cartpole/uid-first" and again.prefix == "runs/research/cartpole/uid-again"


def test_a_run_without_uid_is_refused() -> None:
    run = run_with()
    del run["metadata"]["uid"]
    with pytest.raises(ValueError, match=r"no metadata\.uid"):
        run_location(run, STORAGE)


def job_with(annotations: dict[str, str] | None) -> Obj:
    return {"metadata": {"name": "cartpole-train", "namespace": NAMESPACE, "annotations": annotations or {}}}


@pytest.mark.parametrize(
    ("status", "job", "storage", "expected"),
    [
        ({}, job_with({ARTIFACTS_ANNOTATION: NEW}), STORAGE, NEW),
        # A Job an operator before the uid rendered: the old layout, in the run's storage.
        ({}, job_with(None), STORAGE, LEGACY),
        ({}, job_with(None), None, None),
        ({}, None, STORAGE, None),
        ({}, job_with({ARTIFACTS_ANNOTATION: "not-a-uri"}), STORAGE, None),
        # Recorded: never rewritten, whatever the Job says.
        (recorded("kubegym", "runs/research/cartpole/x"), job_with({ARTIFACTS_ANNOTATION: NEW}), STORAGE, None),
    ],
    ids=["annotated-job", "old-operators-job", "old-job-no-storage", "no-job", "bad-annotation", "already-recorded"],
)
def test_artifacts_status(status: Obj, job: Obj | None, storage: S3Storage | None, expected: str | None) -> None:
    written = artifacts_status(run_with(status), job, storage)
    if expected is None:
        assert written == {}
    else:
        location = ArtifactLocation.parse(expected)
        assert location is not None
        assert written == {"artifacts": location.status()}
        RunArtifacts.model_validate(written["artifacts"])  # the status model takes it


def test_contains_only_the_runs_own_folders() -> None:
    location = ArtifactLocation("kubegym", "runs/research/cartpole")
    assert location.contains(f"{LEGACY}checkpoints/000000000512/")
    assert location.contains(f"{LEGACY}final")
    assert not location.contains(f"{LEGACY}{UID}/checkpoints/000000000512")
    assert not location.contains("s3://kubegym/runs/research/cartpole-2/final/")
    assert not location.contains("s3://kubegym/runs/research/cartpole")


def test_the_crd_keeps_status_artifacts_immutable() -> None:
    from kubegym_api.crd import build_crd

    rules = build_crd(TRAINING_RUN)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    (rule,) = [r for r in rules if r.get("fieldPath") == ".status.artifacts"]
    assert "self.status.artifacts == oldSelf.status.artifacts" in rule["rule"]
    assert rule["rule"].startswith("!has(oldSelf.status) || !has(oldSelf.status.artifacts)")


# --- the reconcile paths ----------------------------------------------------------------------------


def reconcile(cluster: FakeCluster, settings: Settings = SETTINGS) -> Obj | None:
    return reconciler.reconcile(
        TrainingRunJobs(settings), cluster, NAMESPACE, "cartpole", now=now, gate=ReconcileGate()
    )


def config_of(job: Obj) -> Obj:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    value = next(e["value"] for e in container["env"] if e["name"] == CONFIG_ENV)
    config: Obj = json.loads(value)
    return config


def artifacts_of(cluster: FakeCluster) -> Obj | None:
    run = cluster.obj(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    assert run is not None
    found: Obj | None = (run.get("status") or {}).get("artifacts")
    return found


def test_the_first_job_records_the_folder_its_runner_writes() -> None:
    cluster = FakeCluster(run_with())
    reconcile(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train")
    assert job is not None
    config = config_of(job)
    assert config["runPrefix"] == f"runs/research/cartpole/{UID}" and config["runUid"] == UID
    assert job["metadata"]["annotations"][ARTIFACTS_ANNOTATION] == NEW
    assert artifacts_of(cluster) == {"bucket": "kubegym", "prefix": f"runs/research/cartpole/{UID}", "uri": NEW}


def test_a_lost_status_write_is_recorded_from_the_job() -> None:
    cluster = FakeCluster(run_with())
    cluster.fail("merge_patch_status", "TrainingRun", api_error(500, "InternalError"))
    with pytest.raises(Exception, match="InternalError"):
        reconcile(cluster)
    assert cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train") is not None
    assert artifacts_of(cluster) is None
    reconcile(cluster)
    assert artifacts_of(cluster) == {"bucket": "kubegym", "prefix": f"runs/research/cartpole/{UID}", "uri": NEW}


#: The storage mode with a credentials Secret by reference (the layout is the same in both modes).
STATIC = {"KUBEGYM_STORAGE_CREDENTIALS": "static", "KUBEGYM_STORAGE_SECRET": "s3"}


def test_a_recorded_folder_survives_new_storage_settings_and_a_new_job() -> None:
    """An upgrade that changes the layout or the default storage must not move a run: its Job,
    rendered again (deleted meanwhile), writes where the status says."""
    before = load_settings({"KUBEGYM_STORAGE_BUCKET": "first", "KUBEGYM_STORAGE_PREFIX": "v1", **STATIC})
    after = load_settings({"KUBEGYM_STORAGE_BUCKET": "second", "KUBEGYM_STORAGE_PREFIX": "v2", **STATIC})
    run = run_with()
    del run["spec"]["checkpoint"]["storage"]
    cluster = FakeCluster(run)
    reconcile(cluster, before)
    first = artifacts_of(cluster)
    assert first is not None and first["uri"] == f"s3://first/v1/research/cartpole/{UID}/"
    cluster.delete(Kind.JOB, NAMESPACE, "cartpole-train")
    reconcile(cluster, after)
    job = cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train")
    assert job is not None
    config = config_of(job)
    assert (config["storage"]["bucket"], config["runPrefix"]) == ("first", f"v1/research/cartpole/{UID}")
    assert artifacts_of(cluster) == first


def test_a_run_from_before_the_uid_keeps_its_old_layout() -> None:
    """No record, but checkpoints reported under <prefix>/<namespace>/<name>: its Job (lost and
    rendered again by the new operator) resumes there, and the status records it."""
    cluster = FakeCluster(
        run_with({"phase": "Pending", "checkpoints": {"latestUri": f"{LEGACY}checkpoints/000000000512"}})
    )
    reconcile(cluster)
    job = cluster.obj(Kind.JOB, NAMESPACE, "cartpole-train")
    assert job is not None
    assert config_of(job)["runPrefix"] == "runs/research/cartpole"
    assert artifacts_of(cluster) == {"bucket": "kubegym", "prefix": "runs/research/cartpole", "uri": LEGACY}


def test_an_old_operators_live_job_is_recorded_in_the_old_layout() -> None:
    """A Job an older operator rendered (no annotation) is running when the new operator starts:
    its runner writes <prefix>/<namespace>/<name>, so that is what the status records."""
    run = run_with({"phase": "Running"})
    job = make_job(render_job(run, SETTINGS))
    del job["metadata"]["annotations"][ARTIFACTS_ANNOTATION]
    cluster = FakeCluster(job, run)
    reconcile(cluster)
    assert artifacts_of(cluster) == {"bucket": "kubegym", "prefix": "runs/research/cartpole", "uri": LEGACY}


def test_a_run_applied_again_does_not_inherit_its_predecessors_folder() -> None:
    """The bug: a run deleted and applied again under the same name resumed from the first one's
    checkpoints. The new one (another uid) gets a folder of its own."""
    cluster = FakeCluster(run_with(uid="uid-ppo"))
    reconcile(cluster)
    first = copy.deepcopy(artifacts_of(cluster))
    cluster.delete(Kind.JOB, NAMESPACE, "cartpole-train")
    cluster.delete(Kind.TRAINING_RUN, NAMESPACE, "cartpole")
    cluster.add(make_run(uid="uid-a2c", algorithm="A2C", totalTimesteps=1024))
    reconcile(cluster)
    again = artifacts_of(cluster)
    assert first is not None and again is not None
    assert first["prefix"] == "runs/research/cartpole/uid-ppo"
    assert again["prefix"] == "runs/research/cartpole/uid-a2c"
