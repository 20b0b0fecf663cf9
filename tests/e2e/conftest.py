"""The e2e tier's operator: the Helm chart installed into the local cluster, its pod on the local
node, authenticating with its own ServiceAccount token (so RBAC is the chart's, for real).

``release`` installs it once per session (uninstalling a leftover release first) and
uninstalls it at the end; ``run_namespace`` is a fresh namespace that enforces the
``restricted`` Pod Security Standard, as a platform team would set it up, and holds no storage
Secret (the operator mints each run's credentials).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.e2e.support import (
    RELEASE,
    SYSTEM_NAMESPACE,
    Release,
    delete_namespace,
    label_restricted,
    new_namespace,
    release_values,
)
from tests.support.argocd import LuaHealth
from tests.support.helm import CHART, Helm
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


def _installed(helm: Helm, name: str, namespace: str) -> bool:
    return helm.run("status", name, "--namespace", namespace, check=False).returncode == 0


@pytest.fixture(scope="session")
def release(cluster: LocalCluster, kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    helm = Helm(kubeconfig=cluster.kubeconfig, workdir=tmp_path_factory.mktemp("helm"))
    kubectl = Kubectl(cluster.kubeconfig, SYSTEM_NAMESPACE)
    if _installed(helm, RELEASE, SYSTEM_NAMESPACE):
        helm.run("uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, "--wait", "--timeout", "120s")
    label_restricted(kube, SYSTEM_NAMESPACE)
    # `up` installed crds/ (the chart's crds/ are byte-equal copies, a unit test says so);
    # Helm leaves existing CRDs alone, so the release installs the rest.
    values = release_values(cluster)
    helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--values",
        str(helm.values_file(values, "release-values.json")),
        "--wait",
        "--timeout",
        "180s",
    )
    rel = Release(
        RELEASE,
        SYSTEM_NAMESPACE,
        values,
        kube,
        kubectl,
        helm,
        selector=f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
    )
    wait_until(lambda: "Initial authentication has finished" in rel.logs(), 60, "the operator to log in")
    yield rel
    if os.environ.get("KUBEGYM_KEEP_RELEASE") != "1":
        helm.run("uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, "--wait", "--timeout", "120s")


class ReleaseOperator:
    """The e2e tier's ``operator``: the installed chart, never the integration tier's subprocess.

    Overriding the fixture here means one operator per cluster in this tier: a test that asks
    for ``operator`` gets the Helm release, with the ``tail`` the tests use to explain a failure.
    """

    def __init__(self, release: Release) -> None:
        self.release = release

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.release.logs().splitlines()[-lines:])


@pytest.fixture(scope="session")
def operator(release: Release) -> ReleaseOperator:
    return ReleaseOperator(release)


@pytest.fixture
def run_namespace(cluster: LocalCluster, kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40].strip("-")
    name = new_namespace(cluster, kube, prefix)
    yield name
    delete_namespace(kube, name)


@pytest.fixture(scope="session")
def lua() -> LuaHealth:
    return LuaHealth()
