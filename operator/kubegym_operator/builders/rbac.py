"""The runner's own identity: a ServiceAccount that can read its TrainingRun and patch that
run's status, and nothing else (not other runs, not secrets, not pods).

The runner loads pickled models, so it is treated as untrusted code: a compromised runner can
at worst misreport its own progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubegym_api.trainingrun import PLURAL
from kubegym_operator.builders.job import Manifest, owner_reference, run_labels
from kubegym_operator.builders.naming import runner_identity_name
from kubegym_operator.builders.ownership import identity_manifests, own_status_rules


def runner_role_rules(run_name: str) -> list[Manifest]:
    """Get the run itself; get and patch its status. ``resourceNames`` pins both to this run."""
    return own_status_rules(PLURAL, run_name, read_object=True)


def render_runner_rbac(run: Mapping[str, Any]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding of a run's runner, all owned by the run.

    Create them before the Job: a pod whose ServiceAccount is missing is never created.
    """
    meta = run["metadata"]
    base: dict[str, Any] = {
        "name": runner_identity_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": run_labels(run),
        "ownerReferences": [owner_reference(run)],
    }
    return identity_manifests(base, runner_role_rules(meta["name"]))
