"""Fixtures shared by the integration and e2e tiers: one local cluster per session, a namespace per test.

The cluster is the real thing (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the local node, MinIO) started by ``kubegym_localcluster``; if it is
already up it is reused, and if this session started it, it stops it at the end
(unless KUBEGYM_KEEP_CLUSTER=1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
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
    """A fresh namespace, deleted after the test. It holds no storage Secret: the operator mints
    each run's credentials (STS mode), as for any team's namespace."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        f"the default ServiceAccount of {name}",
    )
    yield name
    try:
        kube.delete(f"/api/v1/namespaces/{name}")
    except ApiError as e:
        if e.status != 404:
            raise


@pytest.fixture
def kubectl(cluster: LocalCluster, namespace: str) -> Kubectl:
    return Kubectl(cluster.kubeconfig, namespace)


class OperatorProcess:
    """``kubegym-operator`` as a subprocess with the admin kubeconfig (integration tier).

    Its default storage is the local MinIO, bucket ``kubegym``, in STS mode: it holds the
    operator's own MinIO key (``cluster.storage_operator_key()``) and mints each run's
    credentials, so no namespace needs a storage Secret. It serves its Prometheus metrics on
    ``metrics_port`` (a free port, kept across restarts). The e2e tier runs the operator as
    a pod instead, installed by the Helm chart.
    """

    def __init__(self, cluster: LocalCluster, log: Path, **env: str) -> None:
        self.cluster = cluster
        self.log = log
        self.metrics_port = layout.free_ports(1)[0]
        key = cluster.storage_operator_key()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBEGYM_STORAGE_BUCKET": layout.BUCKET,
            "KUBEGYM_STORAGE_ENDPOINT": cluster.minio().endpoint,
            "KUBEGYM_STORAGE_CREDENTIALS": "sts",
            "KUBEGYM_STORAGE_ACCESS_KEY_ID": key["access_key"],
            "KUBEGYM_STORAGE_SECRET_ACCESS_KEY": key["secret_key"],
            "KUBEGYM_PENDING_ERROR_GRACE_SECONDS": "20",
            "KUBEGYM_PROGRESS_INTERVAL_SECONDS": "2",
            # A run without progress is flagged Idle after 45 s (test_cost_and_idle), not 10 minutes.
            "KUBEGYM_IDLE_AFTER_SECONDS": "45",
            "KUBEGYM_LIVENESS": "",
            "KUBEGYM_METRICS_PORT": str(self.metrics_port),
            # One operator alone, even where the tests themselves run in a pod (POD_NAMESPACE
            # set would turn leader election on); tests of leader election pass "true".
            "KUBEGYM_LEADER_ELECTION": "false",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubegym_operator"], env=self.env, stdout=out, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill_and_restart(self) -> None:
        """SIGKILL, as a node failure or the OOM killer would, then a fresh process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.start()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


#: Namespaces whose tests run operators of their own (leader election): the session's operator
#: leaves them alone (a kopf namespace pattern: every namespace but these), so only those
#: operators reconcile there.
OWN_OPERATOR_PREFIX = "solo-"


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        cluster,
        tmp_path_factory.mktemp("operator") / "operator.log",
        KUBEGYM_WATCH_NAMESPACES=f"!{OWN_OPERATOR_PREFIX}*",
    )
    op.start()
    yield op
    op.stop()
