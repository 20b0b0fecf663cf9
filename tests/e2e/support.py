"""Helpers of the e2e tier: the Helm release handle, restricted namespaces, the examples."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.support.helm import Helm
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

RELEASE = "kubegym"
SYSTEM_NAMESPACE = layout.SYSTEM_NAMESPACE
#: The restricted Pod Security Standard, enforced by the API server's admission plugin.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass
class Release:
    """The installed chart: its values, and handles on its operator."""

    name: str
    namespace: str
    values: dict[str, Any]
    kube: Kube
    kubectl: Kubectl
    helm: Helm
    selector: str = field(default="")

    @property
    def fullname(self) -> str:
        return self.name if "kubegym" in self.name else f"{self.name}-kubegym"

    @property
    def username(self) -> str:
        """The operator's identity as the API server sees it."""
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/pods", labelSelector=self.selector
        )["items"]
        return items

    def operator_pod(self) -> dict[str, Any]:
        running = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
        assert len(running) == 1, f"expected one operator pod, found {[p['metadata']['name'] for p in running]}"
        return running[0]

    def logs(self) -> str:
        """The operator's log, through the API server and the local node's kubelet port."""
        pod = self.operator_pod()["metadata"]["name"]
        return self.kubectl.run("logs", pod, "-c", "operator").stdout


def label_restricted(kube: Kube, namespace: str) -> None:
    kube.merge_patch(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": RESTRICTED}})


def release_values(cluster: LocalCluster) -> dict[str, Any]:
    """The chart's values for the local cluster: default storage in its MinIO, the operator minting
    each run's credentials (STS) with its key from the Secret ``up`` made in the release namespace
    (the chart's default name; no run namespace holds a storage Secret), free ports for the health and metrics endpoints (pods share the
    host's network here, so one operator pod: two would bind the same ports), quicker progress
    reports and pending-error verdicts for tests."""
    health, metrics = layout.free_ports(2)
    return {
        "operator": {"healthPort": health, "replicas": 1},
        "metrics": {"port": metrics},
        "storage": {
            "bucket": layout.BUCKET,
            "endpoint": cluster.minio().endpoint,
            "sts": {"operatorSecretName": layout.OPERATOR_STORAGE_SECRET},
        },
        "runner": {"progressIntervalSeconds": 2, "pendingErrorGraceSeconds": 20},
    }


def new_namespace(cluster: LocalCluster, kube: Kube, prefix: str) -> str:
    """A namespace enforcing the restricted standard (no storage Secret: runs get minted credentials)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}},
    )
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        f"the default ServiceAccount of {name}",
    )
    return name


def delete_namespace(kube: Kube, name: str) -> None:
    try:
        kube.delete(f"/api/v1/namespaces/{name}")
    except ApiError as e:
        if e.status != 404:
            raise


EXAMPLES = layout.REPO / "examples"


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def example_files() -> list[Path]:
    """Every YAML file under examples/, except Argo CD health-check fixtures (objects with a
    status and a uid, not manifests to apply)."""
    return sorted(
        p
        for p in EXAMPLES.rglob("*.yaml")
        if "testdata" not in p.relative_to(EXAMPLES).parts and p.name != "health_test.yaml"
    )
