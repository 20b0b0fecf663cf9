"""The field-by-field half of the no-drift check, pure so that a unit test can show it fails
on the drifts it exists to catch (tests/unit/packaging/test_drift_check.py)."""

from __future__ import annotations

import json
from typing import Any

TRACKING = "argocd.argoproj.io/tracking-id"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Metadata the API server maintains and Argo CD never compares.
SERVER_METADATA = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"}


def field_drift(live: dict[str, Any], manifest: dict[str, Any], defaulted: dict[str, Any], applier: str) -> list[str]:
    """Every difference between the live object and what was applied, outside ``status``."""
    problems = []
    meta, want = live["metadata"], manifest["metadata"]
    if live["spec"] != defaulted:
        problems.append(f"spec differs from the applied spec with schema defaults:\n{live['spec']}\n{defaulted}")
    if meta.get("generation") != 1:
        problems.append(f"metadata.generation is {meta.get('generation')}: the spec was written after the apply")
    if (meta.get("labels") or {}) != (want.get("labels") or {}):
        problems.append(f"labels {meta.get('labels')} != applied {want.get('labels')}")
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations != (want.get("annotations") or {}):
        problems.append(f"annotations {annotations} != applied {want.get('annotations')}")
    for key in ("finalizers", "ownerReferences"):
        if meta.get(key):
            problems.append(f"metadata.{key} was added: {meta[key]}")
    extra = set(meta) - SERVER_METADATA - {"name", "namespace", "labels", "annotations"}
    if extra:
        problems.append(f"metadata fields nobody applied: {sorted(extra)}")
    for entry in meta.get("managedFields") or []:
        if entry.get("subresource") != "status" and entry["manager"] != applier:
            fields = json.dumps(entry.get("fieldsV1"))[:300]
            problems.append(f"manager {entry['manager']} owns fields outside status: {fields}")
    return problems
