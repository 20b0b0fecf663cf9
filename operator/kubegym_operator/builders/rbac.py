"""The runner's own identity: a ServiceAccount that can read its TrainingRun and patch that
run's status, and nothing else (not other runs, not secrets, not pods).

The runner loads pickled models, so it is treated as untrusted code: a compromised runner can
at worst misreport its own progress.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubegym_operator import GROUP
from kubegym_operator.api.trainingrun import PLURAL
from kubegym_operator.builders.job import Manifest, owner_reference, run_labels
from kubegym_operator.builders.naming import runner_identity_name


def runner_role_rules(run_name: str) -> list[Manifest]:
    """Get the run itself; get and patch its status. ``resourceNames`` pins both to this run."""
    return [
        {
            "apiGroups": [GROUP],
            "resources": [PLURAL],
            "resourceNames": [run_name],
            "verbs": ["get"],
        },
        {
            "apiGroups": [GROUP],
            "resources": [f"{PLURAL}/status"],
            "resourceNames": [run_name],
            "verbs": ["get", "patch"],
        },
    ]


def render_runner_rbac(run: Mapping[str, Any]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding of a run's runner, all owned by the run.

    Create them before the Job: a pod whose ServiceAccount is missing is never created.
    """
    meta = run["metadata"]
    name = runner_identity_name(meta["name"])
    base: dict[str, Any] = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": run_labels(run),
        "ownerReferences": [owner_reference(run)],
    }
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": copy.deepcopy(base),
        # The token is mounted explicitly in the runner pod; no other pod should get one.
        "automountServiceAccountToken": False,
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": copy.deepcopy(base),
        "rules": runner_role_rules(meta["name"]),
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": copy.deepcopy(base),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": meta["namespace"]}],
    }
    return [service_account, role, binding]
