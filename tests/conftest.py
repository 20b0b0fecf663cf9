"""Fixtures shared by the integration and e2e tiers: one local cluster per session, a namespace per test.

The cluster is the real thing (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the local node, MinIO) started by ``kubegym_localcluster``; if it is
already up it is reused, and if this session started it, it stops it at the end
(unless KUBEGYM_KEEP_CLUSTER=1).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster, copy_s3_secret
from kubegym_localcluster.kube import ApiError, Kube
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


def _guard(cluster: LocalCluster, kube: Kube) -> None:
    """Refuse to run against anything but the local cluster: these tests create and delete freely."""
    env_kc = os.environ.get("KUBECONFIG")
    if env_kc and Path(env_kc).resolve() != cluster.kubeconfig.resolve():
        pytest.exit(
            f"KUBECONFIG={env_kc} is not the local cluster's ({cluster.kubeconfig}); refusing to run", returncode=2
        )
    if not kube.server.startswith("https://127.0.0.1:"):
        pytest.exit(f"API server {kube.server} is not on loopback; refusing to run", returncode=2)
    node = kube.get(f"/api/v1/nodes/{layout.NODE_NAME}")
    if node["metadata"].get("labels", {}).get("kubegym.io/local-node") != "true":
        pytest.exit("the cluster has no kubegym local node; refusing to run", returncode=2)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster()
    started = not all(c.status().values())
    c.up()
    _guard(c, c.admin())
    yield c
    if started and os.environ.get("KUBEGYM_KEEP_CLUSTER") != "1":
        c.down()


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Kube:
    return cluster.admin()


@pytest.fixture
def namespace(cluster: LocalCluster, kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with the S3 credentials Secret; deleted after the test."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        f"the default ServiceAccount of {name}",
    )
    copy_s3_secret(kube, name, cluster.minio())
    yield name
    try:
        kube.delete(f"/api/v1/namespaces/{name}")
    except ApiError as e:
        if e.status != 404:
            raise


@pytest.fixture
def kubectl(cluster: LocalCluster, namespace: str) -> Kubectl:
    return Kubectl(cluster.kubeconfig, namespace)
