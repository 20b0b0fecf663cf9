"""The runner's identity: its own run's status and nothing more."""

from __future__ import annotations

from typing import Any

from kubegym_operator.builders.rbac import render_runner_rbac

RUN: dict[str, Any] = {
    "apiVersion": "kubegym.io/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "cartpole", "namespace": "research", "uid": "u-1", "generation": 1},
    "spec": {},
}


def by_kind() -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_runner_rbac(RUN)}


def test_three_objects_owned_by_the_run() -> None:
    objs = by_kind()
    assert set(objs) == {"ServiceAccount", "Role", "RoleBinding"}
    for obj in objs.values():
        meta = obj["metadata"]
        assert meta["name"] == "cartpole-runner"
        assert meta["namespace"] == "research"
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("TrainingRun", "cartpole", "u-1")
        assert owner["controller"] is True


def test_role_allows_only_this_runs_status() -> None:
    rules = by_kind()["Role"]["rules"]
    assert rules == [
        {
            "apiGroups": ["kubegym.io"],
            "resources": ["trainingruns"],
            "resourceNames": ["cartpole"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["kubegym.io"],
            "resources": ["trainingruns/status"],
            "resourceNames": ["cartpole"],
            "verbs": ["get", "patch"],
        },
    ]
    flat = str(rules)
    assert "*" not in flat and "secrets" not in flat and "pods" not in flat


def test_binding_ties_the_role_to_the_service_account() -> None:
    binding = by_kind()["RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "cartpole-runner",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cartpole-runner", "namespace": "research"}]
    assert by_kind()["ServiceAccount"]["automountServiceAccountToken"] is False


def test_objects_do_not_share_mutable_metadata() -> None:
    sa, role, _ = render_runner_rbac(RUN)
    sa["metadata"]["labels"]["x"] = "y"
    sa["metadata"]["ownerReferences"].append({})
    assert "x" not in role["metadata"]["labels"]
    assert len(role["metadata"]["ownerReferences"]) == 1
