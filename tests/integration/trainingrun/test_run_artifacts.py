"""A run's artifacts belong to that run, on the real local cluster and MinIO (issue 12, part 3).

The bug: a TrainingRun (PPO, 512 steps) was deleted and one with the same name but A2C and 1,024
steps applied; it "resumed from s3://…/checkpoints/000000000512", loaded the PPO weights as A2C
and reported Succeeded. Now the second run trains from 0 in a folder of its own (its uid in the
prefix, recorded in status.artifacts, which the API server keeps immutable), the first run's
artifacts stay in MinIO under the first uid, and only ``resumeFrom`` starts from another run's
checkpoint: a PPO checkpoint into an A2C run fails with reason UserError before any training.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from kubegym_localcluster.kube import ApiError, Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import TR, get_run, keys, s3_client, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.usefixtures("operator")

NAME = "reborn"


def _finished(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def _wait_finished(kube: Kube, ns: str, name: str, operator: OperatorProcess, timeout: float = 600) -> dict[str, Any]:
    st: dict[str, Any] = wait_until(
        functools.partial(_finished, kube, ns, name),
        timeout,
        f"{name} to finish",
        interval=1,
        describe=lambda: f"{status(kube, ns, name)}\n{operator.tail(15)}",
    )
    return st


def _gone(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError as e:
        if e.status == 404:
            return True
        raise
    return False


def _manifests(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every manifest.json under ``prefix``, by key relative to it."""
    return {
        key[len(prefix) + 1 :]: json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for key in keys(s3, bucket, f"{prefix}/")
        if key.endswith("/manifest.json")
    }


def _run(name: str, algorithm: str, total: int, **spec: Any) -> dict[str, Any]:
    return training_run(
        name,
        algorithm=algorithm,
        totalTimesteps=total,
        hyperparameters={"n_steps": 64},
        checkpoint={"everySteps": 256, "keepLast": 3},
        evaluation={"everySteps": 100_000, "episodes": 2},
        **spec,
    )


def test_a_run_applied_again_under_the_same_name_trains_from_zero_in_its_own_folder(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)

    kubectl.apply(_run(NAME, "PPO", 512))
    first = _wait_finished(kube, ns, NAME, operator)
    assert first["phase"] == "Succeeded", first
    uid_ppo = get_run(kube, ns, NAME)["metadata"]["uid"]
    ppo_prefix = f"{ns}/{NAME}/{uid_ppo}"
    assert first["artifacts"] == {"bucket": bucket, "prefix": ppo_prefix, "uri": f"s3://{bucket}/{ppo_prefix}/"}
    ppo = _manifests(s3, bucket, ppo_prefix)
    assert "checkpoints/000000000512/manifest.json" in ppo and "final/manifest.json" in ppo, sorted(ppo)
    for manifest in ppo.values():
        assert (manifest["runUid"], manifest["algorithm"]) == (uid_ppo, "PPO")
        assert (manifest["observationSpace"], manifest["actionSpace"]) == (
            "Box(shape=(4,), dtype=float32)",
            "Discrete(2)",
        )

    # The operator alone chose the folder, and nobody may move it (the runner's identity could
    # patch its own status): the API server refuses a change.
    with pytest.raises(ApiError) as refused:
        kube.merge_patch(f"{TR.format(ns=ns)}/{NAME}/status", {"status": {"artifacts": {"prefix": "elsewhere"}}})
    assert refused.value.status == 422 and "status.artifacts is immutable" in refused.value.body, refused.value.body

    kube.delete(f"{TR.format(ns=ns)}/{NAME}")
    wait_until(
        lambda: (
            _gone(kube, f"{TR.format(ns=ns)}/{NAME}")
            and _gone(kube, f"/apis/batch/v1/namespaces/{ns}/jobs/{NAME}-train")
        ),
        180,
        f"{NAME} and its Job to be gone",
    )

    kubectl.apply(_run(NAME, "A2C", 1024))
    second = _wait_finished(kube, ns, NAME, operator)
    assert second["phase"] == "Succeeded", second
    uid_a2c = get_run(kube, ns, NAME)["metadata"]["uid"]
    a2c_prefix = f"{ns}/{NAME}/{uid_a2c}"
    assert uid_a2c != uid_ppo
    assert second["artifacts"]["prefix"] == a2c_prefix != ppo_prefix
    # It trained from 0: nothing resumed, every timestep its own.
    assert second["progress"]["resumedFromStep"] == 0, second["progress"]
    assert 1024 <= second["result"]["timesteps"] < 1024 + 64, second["result"]
    assert second["result"]["modelUri"].startswith(f"s3://{bucket}/{a2c_prefix}/final")
    log = kubectl.run("logs", f"job/{NAME}-train").stdout
    assert "resuming from" not in log and "training 1024 timesteps (from 0 to 1024)" in log, log[-2000:]
    a2c = _manifests(s3, bucket, a2c_prefix)
    assert "final/manifest.json" in a2c
    assert {(m["runUid"], m["algorithm"]) for m in a2c.values()} == {(uid_a2c, "A2C")}

    # The first run's artifacts are still there, untouched, under its own uid.
    assert _manifests(s3, bucket, ppo_prefix) == ppo


def test_resume_from_a_checkpoint_of_another_algorithm_fails_before_training(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)
    kubectl.apply(_run("ppo-source", "PPO", 256))
    source = _wait_finished(kube, ns, "ppo-source", operator)
    assert source["phase"] == "Succeeded", source

    kubectl.apply(_run("a2c-heir", "A2C", 1024, resumeFrom={"trainingRun": "ppo-source"}))
    heir = _wait_finished(kube, ns, "a2c-heir", operator, timeout=300)
    assert (heir["phase"], heir["reason"]) == ("Failed", "UserError"), heir
    checkpoint = source["checkpoints"]["latestUri"]
    assert heir["message"].startswith(f"resumeFrom {checkpoint} does not fit this run: "), heir["message"]
    assert "the checkpoint was saved by PPO, this run trains A2C" in heir["message"]
    failed = next(c for c in heir["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "UserError")
    # Before any training: no timestep reported, nothing in its folder but the pod's own log (which
    # says why); one pod (no retries).
    assert not (heir.get("progress") or {}).get("timesteps"), heir.get("progress")
    written = keys(s3, bucket, f"{heir['artifacts']['prefix']}/")
    assert [k for k in written if "/logs/" not in k] == [], written
    (log,) = written
    body = s3.get_object(Bucket=bucket, Key=log)["Body"].read().decode()
    assert "the checkpoint was saved by PPO, this run trains A2C" in body, body[-2000:]
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector="kubegym.io/training-run=a2c-heir")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
