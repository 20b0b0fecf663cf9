"""Bad input gets a clear error at the earliest point: apply time where the schema can know,
else phase Failed with a reason and message, and no retry loop."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import condition, status, training_run, with_spec
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"algorithm": "PPO2"}, "spec.algorithm"),
        ({"totalTimesteps": 0}, "spec.totalTimesteps"),
        ({"totalTimesteps": -5}, "spec.totalTimesteps"),
        ({"resources": {"gpu": -1}}, "spec.resources.gpu"),
        ({"device": "cuda"}, "GPU"),
        ({"checkpoint": {"everySteps": 1024, "storage": {"bucket": "kubegym"}}}, "secretRef"),
    ],
    ids=[
        "unknown-algorithm",
        "zero-timesteps",
        "negative-timesteps",
        "negative-gpu",
        "cuda-without-gpu",
        "storage-without-secret",
    ],
)
def test_rejected_at_apply_time(kubectl: Kubectl, spec: dict[str, Any], message: str) -> None:
    result = kubectl.apply(training_run("bad", **spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "bad" not in kubectl.run("get", "trainingruns", "-o", "name").stdout


def test_immutable_fields_rejected_after_creation_mutable_ones_accepted(
    kubectl: Kubectl, kube: Kube, namespace: str
) -> None:
    run = training_run("frozen", suspend=True)
    kubectl.apply(run)
    changed = kubectl.apply(with_spec(run, totalTimesteps=4096), check=False)
    assert changed.returncode != 0 and "immutable" in changed.stderr, changed.stderr
    algo = kubectl.apply(with_spec(run, algorithm="A2C"), check=False)
    assert algo.returncode != 0 and "immutable" in algo.stderr, algo.stderr
    kubectl.apply(with_spec(run, suspend=False, runPolicy={"ttlSecondsAfterFinished": 600}))


def _describe(kube: Kube, ns: str, name: str, operator: OperatorProcess) -> str:
    return f"{status(kube, ns, name)}\n{operator.tail(10)}"


def _failed(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("phase") == "Failed" else None


@pytest.mark.usefixtures("operator")
def test_runtime_user_errors_fail_once_with_reason(
    kubectl: Kubectl, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    cases = {
        "dqn-pendulum": (
            training_run("dqn-pendulum", algorithm="DQN", environment={"id": "Pendulum-v1"}),
            "UserError",
            "DQN",
        ),
        "unknown-env": (training_run("unknown-env", environment={"id": "CartPoel-v1"}), "UserError", "CartPoel-v1"),
        "unknown-hparam": (
            training_run("unknown-hparam", hyperparameters={"learning_rat": 0.001}),
            "UserError",
            "learning_rat",
        ),
        "missing-resume": (
            training_run("missing-resume", resumeFrom={"uri": "s3://kubegym/nowhere/checkpoints/000000001024/"}),
            "UserError",
            "resumeFrom",
        ),
        "missing-secret": (
            training_run(
                "missing-secret",
                checkpoint={"everySteps": 1024, "storage": {"bucket": "kubegym", "secretRef": "no-such-secret"}},
            ),
            "SecretNotFound",
            "no-such-secret",
        ),
    }
    for manifest, _, _ in cases.values():
        kubectl.apply(manifest)
    for name, (_, reason, needle) in cases.items():
        st = wait_until(
            functools.partial(_failed, kube, ns, name),
            180,
            f"{name} to fail",
            describe=functools.partial(_describe, kube, ns, name, operator),
        )
        assert st["reason"] == reason, (name, st)
        assert needle in st["message"], (name, st["message"])
        failed = condition(st, "Failed")
        assert failed is not None and failed["status"] == "True" and failed["reason"] == reason
        assert "AWS_SECRET_ACCESS_KEY=" not in st["message"]
    # No retry loop: a user error ends the Job after its one pod.
    for name in ("dqn-pendulum", "unknown-env", "unknown-hparam", "missing-resume"):
        pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"kubegym.io/training-run={name}")["items"]
        assert len(pods) == 1, (name, [p["metadata"]["name"] for p in pods])
    events = kubectl.run("get", "events", "--field-selector", "involvedObject.name=unknown-env").stdout
    assert "UserError" in events
