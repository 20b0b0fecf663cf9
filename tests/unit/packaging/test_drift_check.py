"""The field-by-field drift check of tests/e2e/test_no_drift.py catches the drifts an operator
could cause (a kopf annotation, a finalizer, a spec default written back, a label) and accepts
what Argo CD ignores (status, server-maintained metadata, status-only writers)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.e2e.drift import LAST_APPLIED, TRACKING, field_drift

APPLIER = "argocd-controller"

MANIFEST: dict[str, Any] = {
    "apiVersion": "kubegym.io/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "cartpole-ppo", "annotations": {TRACKING: "app:kubegym.io/TrainingRun:ns/cartpole-ppo"}},
    "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}},
}
#: The spec with the CRD schema's defaults, as the API server admits it.
DEFAULTED = {"algorithm": "PPO", "environment": {"id": "CartPole-v1", "nEnvs": 1}, "seed": 0, "suspend": False}


def live() -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {
            "name": "cartpole-ppo",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "42",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": dict(MANIFEST["metadata"]["annotations"]),
            "managedFields": [
                {"manager": APPLIER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                {"manager": "kubegym-operator", "operation": "Update", "subresource": "status", "fieldsV1": {}},
                {"manager": "kubegym-runner", "operation": "Update", "subresource": "status", "fieldsV1": {}},
            ],
        },
        "spec": copy.deepcopy(DEFAULTED),
        "status": {"phase": "Succeeded", "observedGeneration": 1, "progress": {"timesteps": 3000}},
    }


def test_status_and_server_metadata_are_not_drift() -> None:
    assert field_drift(live(), MANIFEST, DEFAULTED, APPLIER) == []
    with_last_applied = live()
    with_last_applied["metadata"]["annotations"][LAST_APPLIED] = "{}"
    assert field_drift(with_last_applied, MANIFEST, DEFAULTED, APPLIER) == []


def _kopf_annotation(obj: dict[str, Any]) -> None:
    obj["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"] = "{}"


def _finalizer(obj: dict[str, Any]) -> None:
    obj["metadata"]["finalizers"] = ["kubegym.io/cleanup"]


def _default_written_back(obj: dict[str, Any]) -> None:
    obj["spec"]["checkpoint"] = {"everySteps": 10000}
    obj["metadata"]["generation"] = 2


def _label(obj: dict[str, Any]) -> None:
    obj["metadata"]["labels"] = {"kubegym.io/phase": "Succeeded"}


def _spec_writer(obj: dict[str, Any]) -> None:
    obj["metadata"]["managedFields"].append({"manager": "kubegym-operator", "operation": "Update", "fieldsV1": {}})


def _owner(obj: dict[str, Any]) -> None:
    obj["metadata"]["ownerReferences"] = [{"kind": "Experiment", "name": "x", "uid": "e"}]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (_kopf_annotation, "annotations"),
        (_finalizer, "metadata.finalizers was added"),
        (_default_written_back, "spec differs"),
        (_label, "labels"),
        (_spec_writer, "manager kubegym-operator owns fields outside status"),
        (_owner, "metadata.ownerReferences was added"),
    ],
)
def test_operator_drift_is_caught(drift: Any, expected: str) -> None:
    obj = live()
    drift(obj)
    problems = field_drift(obj, MANIFEST, DEFAULTED, APPLIER)
    assert any(expected in p for p in problems), problems
