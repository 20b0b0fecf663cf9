"""Ownership and identity shared by every kind: controller references, and the per-object
ServiceAccount, Role and RoleBinding that a runner pod uses to report back to its one object.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubegym_api import API_VERSION, GROUP

Manifest = dict[str, Any]


def controller_reference(obj: Mapping[str, Any], kind: str) -> Manifest:
    """Controller reference to a kubegym object, so deleting it deletes what it owns."""
    meta = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def own_status_rules(plural: str, name: str, *, read_object: bool) -> list[Manifest]:
    """Role rules pinned by ``resourceNames`` to one object: get and patch its status, and get the
    object itself only when ``read_object`` (the runner never needs more)."""
    rules: list[Manifest] = []
    if read_object:
        rules.append({"apiGroups": [GROUP], "resources": [plural], "resourceNames": [name], "verbs": ["get"]})
    rules.append(
        {
            "apiGroups": [GROUP],
            "resources": [f"{plural}/status"],
            "resourceNames": [name],
            "verbs": ["get", "patch"],
        }
    )
    return rules


def identity_manifests(metadata: Manifest, rules: list[Manifest]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding named and labelled by ``metadata``, binding ``rules``.

    The ServiceAccount does not automount its token: the runner pod mounts it explicitly, so no
    other pod gets one.
    """
    name = metadata["name"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": copy.deepcopy(metadata),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": copy.deepcopy(metadata),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": copy.deepcopy(metadata),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": metadata["namespace"]}],
        },
    ]
