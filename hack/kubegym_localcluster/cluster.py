"""Bring the local cluster up and down: etcd, the control plane, the local node, MinIO.

Everything lives in one state directory (see :mod:`layout`); ``up`` is idempotent
(a running component is left alone) and ``down`` stops every process it started.
"""

from __future__ import annotations

import base64
import functools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import layout
from .kube import Credentials, Kube
from .minio import Minio
from .pki import Identity, Pki
from .procs import Supervisor

ADMIN = Identity("admin", "kubegym-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("kube-scheduler", "system:kube-scheduler")
NODE = Identity("node", f"system:node:{layout.NODE_NAME}", ("system:nodes",))
KUBELET_CLIENT = Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))

#: Client QPS and burst of the controller-manager and the scheduler (see docs/local-cluster.md).
CONTROL_PLANE_QPS = 200
CONTROL_PLANE_BURST = 400

#: Start order; ``down`` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node", "minio")


def log(msg: str) -> None:
    print(f"[local-cluster] {msg}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float, logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            pass
        time.sleep(0.25)
    tail = ""
    if logfile and logfile.exists():
        tail = "\n" + "\n".join(logfile.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


class LocalCluster:
    def __init__(self, state: Path | None = None) -> None:
        self.state = state or layout.state_dir()
        self.pki = Pki(self.state / "pki")
        self.sup = Supervisor(self.state)
        self.kubeconfig = self.state / "kubeconfig"

    # --- set-up --------------------------------------------------------------------------
    @property
    def ports(self) -> layout.Ports:
        return layout.Ports.load_or_pick(self.state)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def admin(self) -> Kube:
        return Kube(Credentials.from_kubeconfig(self.kubeconfig))

    def _write_kubeconfig(self, path: Path, ident: Identity) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": layout.CLUSTER_NAME,
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki.ca_crt)},
                }
            ],
            "users": [
                {
                    "name": ident.common_name,
                    "user": {
                        "client-certificate": str(self.pki.crt(ident.file)),
                        "client-key": str(self.pki.key(ident.file)),
                    },
                }
            ],
            "contexts": [
                {
                    "name": layout.CLUSTER_NAME,
                    "context": {"cluster": layout.CLUSTER_NAME, "user": ident.common_name},
                }
            ],
            "current-context": layout.CLUSTER_NAME,
        }
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        path.chmod(0o600)

    def _prepare(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        self.pki.ensure(
            serving={
                "apiserver": (dns, ["127.0.0.1", "10.0.0.1"]),
                "kubelet": ([layout.NODE_NAME, "localhost"], ["127.0.0.1"]),
                "minio": (["localhost"], ["127.0.0.1"]),
            },
            clients=[ADMIN, CONTROLLER_MANAGER, SCHEDULER, NODE, KUBELET_CLIENT],
        )
        for name, ident in (
            ("kubeconfig", ADMIN),
            ("kube-controller-manager.kubeconfig", CONTROLLER_MANAGER),
            ("kube-scheduler.kubeconfig", SCHEDULER),
            ("node.kubeconfig", NODE),
        ):
            self._write_kubeconfig(self.state / name, ident)

    def _ensure_binaries(self) -> None:
        needed = [
            layout.kubernetes_bin(b)
            for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ]
        needed += [layout.minio_bin(), layout.mc_bin()]
        if not all(p.exists() for p in needed):
            log("building the pinned components (cached under ~/.cache/kubegym; first time only)")
            subprocess.run(
                ["bash", str(layout.REPO / "hack" / "build-components.sh"), "kubernetes", "minio", "mc"], check=True
            )

    # --- components -----------------------------------------------------------------------
    def _etcd(self) -> None:
        p = self.ports
        self.sup.start(
            "etcd",
            [
                str(layout.kubernetes_bin("etcd")),
                "--name=local",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=local=http://127.0.0.1:{p.etcd_peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _apiserver(self) -> None:
        p, k = self.ports, self.pki
        self.sup.start(
            "kube-apiserver",
            [
                str(layout.kubernetes_bin("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{p.etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p.apiserver}",
                f"--cert-dir={self.state / 'apiserver-certs'}",
                f"--tls-cert-file={k.crt('apiserver')}",
                f"--tls-private-key-file={k.key('apiserver')}",
                f"--client-ca-file={k.ca_crt}",
                f"--service-account-issuer={layout.SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={k.sa_pub}",
                f"--service-account-signing-key-file={k.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={k.crt(KUBELET_CLIENT.file)}",
                f"--kubelet-client-key={k.key(KUBELET_CLIENT.file)}",
                f"--kubelet-certificate-authority={k.ca_crt}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                # The endpoint reconciler refuses loopback addresses; pods reach the API through
                # KUBERNETES_SERVICE_HOST/PORT, which the local node sets to 127.0.0.1.
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )

    def _controller_manager(self) -> None:
        kc = str(self.state / "kube-controller-manager.kubeconfig")
        self.sup.start(
            "kube-controller-manager",
            [
                str(layout.kubernetes_bin("kube-controller-manager")),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_crt}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                # Client-side rate limits sized for a real control plane (the defaults, 20 QPS
                # and a burst of 30, made deleting 1,000 Jobs take minutes), and more workers
                # for the controllers a training platform leans on.
                f"--kube-api-qps={CONTROL_PLANE_QPS}",
                f"--kube-api-burst={CONTROL_PLANE_BURST}",
                "--concurrent-job-syncs=20",
                "--concurrent-gc-syncs=40",
                "--v=1",
            ],
        )

    def _scheduler(self) -> None:
        kc = str(self.state / "kube-scheduler.kubeconfig")
        # Client rate limits are set through the component config (the flags are deprecated).
        config = self.state / "kube-scheduler.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": kc, "qps": CONTROL_PLANE_QPS, "burst": CONTROL_PLANE_BURST},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        self.sup.start(
            "kube-scheduler",
            [
                str(layout.kubernetes_bin("kube-scheduler")),
                f"--config={config}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--v=1",
            ],
        )

    def _node(self) -> None:
        self.sup.start(
            "node",
            [sys.executable, "-m", "kubegym_localcluster", "--state", str(self.state), "node"],
            env={"PYTHONPATH": str(layout.REPO / "hack"), "PYTHONUNBUFFERED": "1"},
        )

    def minio(self) -> Minio:
        return Minio(self.state / "minio", self.ports.minio, self.ports.minio_console, self.sup)

    # --- orchestration --------------------------------------------------------------------
    def up(self) -> None:
        t0 = time.monotonic()
        self._ensure_binaries()
        self._prepare()
        self._etcd()
        self._apiserver()
        kube = self.admin()
        wait_for(
            "kube-apiserver /readyz",
            lambda: kube.raw("/readyz") == "ok",
            120,
            self.sup.logs / "kube-apiserver.log",
        )
        self._controller_manager()
        self._scheduler()
        self._node()
        minio = self.minio()
        minio.start()
        self._bootstrap(kube, minio)
        wait_for("node Ready", lambda: self.node_ready(kube), 60, self.sup.logs / "node.log")
        wait_for(
            "ServiceAccount 'default' (controller-manager)",
            lambda: bool(kube.get("/api/v1/namespaces/default/serviceaccounts/default")),
            60,
            self.sup.logs / "kube-controller-manager.log",
        )
        self._install_crds(kube)
        log(f"up in {time.monotonic() - t0:.1f}s; kubeconfig: {self.kubeconfig}")

    def node_ready(self, kube: Kube) -> bool:
        node = kube.get(f"/api/v1/nodes/{layout.NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))

    def _bootstrap(self, kube: Kube, minio: Minio) -> None:
        """The bucket, the operator's MinIO user, and the namespaces; the operator's key as the Secret
        :data:`~kubegym_localcluster.layout.OPERATOR_STORAGE_SECRET` in the system namespace (the
        chart's default). No team namespace needs a storage Secret: the operator mints each run's."""
        minio.ensure_bucket(layout.BUCKET)
        operator = minio.ensure_operator_user(layout.BUCKET)
        for ns in (layout.SYSTEM_NAMESPACE, "default"):
            ensure(
                kube, f"/api/v1/namespaces/{ns}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
        ensure(
            kube,
            f"/api/v1/namespaces/{layout.SYSTEM_NAMESPACE}/secrets/{layout.OPERATOR_STORAGE_SECRET}",
            key_secret(layout.SYSTEM_NAMESPACE, layout.OPERATOR_STORAGE_SECRET, operator),
        )

    def storage_env(self) -> dict[str, str]:
        """The admin's view of the bucket, as AWS_* variables (root key, endpoint, region) and
        BUCKET: what the tests and ``make env`` read every namespace's artifacts with."""
        creds = self.minio().credentials()
        return {
            "AWS_ACCESS_KEY_ID": creds["access_key"],
            "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
            "AWS_ENDPOINT_URL": creds["endpoint"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "BUCKET": layout.BUCKET,
        }

    def storage_operator_key(self) -> dict[str, str]:
        """The operator's own storage key (``access_key``, ``secret_key``, ``endpoint``): what an
        operator started by hand (the tests' ``OperatorProcess``) mints runs' credentials with."""
        return self.minio().operator_credentials()

    def _install_crds(self, kube: Kube) -> None:
        crd_dir = layout.REPO / "crds"
        for f in sorted(crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if doc:
                    name = doc["metadata"]["name"]
                    kube.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", doc, "kubegym-local")
                    wait_for(f"CRD {name} Established", functools.partial(_established, kube, name), 30)

    def down(self) -> None:
        for name in reversed(COMPONENTS):
            self.sup.stop(name)
        for name in self.sup.names():  # anything else recorded (older layouts)
            self.sup.stop(name)
        log("down: every process of this state directory is stopped")

    def status(self) -> dict[str, Any]:
        return {name: self.sup.running(name) for name in COMPONENTS}


def _established(kube: Kube, name: str) -> bool:
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return any(
        c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", [])
    )


def ensure(kube: Kube, path: str, body: dict[str, Any]) -> None:
    """Create-or-apply one object by its own path."""
    kube.apply(path, body, "kubegym-local")


def key_secret(namespace: str, name: str, creds: dict[str, str]) -> dict[str, Any]:
    """An access key as a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."""
    data = {"AWS_ACCESS_KEY_ID": creds["access_key"], "AWS_SECRET_ACCESS_KEY": creds["secret_key"]}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def s3_secret(namespace: str, creds: dict[str, str]) -> dict[str, Any]:
    """The static-mode Secret runs reference (``KUBEGYM_STORAGE_CREDENTIALS=static``): the root
    key, with the endpoint; boto3 reads these names from the environment as they are."""
    data = {
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        "AWS_ENDPOINT_URL": creds["endpoint"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "BUCKET": layout.BUCKET,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": layout.S3_SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def copy_s3_secret(kube: Kube, namespace: str, minio: Minio) -> None:
    """Put the static-mode Secret ``kubegym-s3`` into ``namespace`` (only static mode needs it)."""
    ensure(
        kube, f"/api/v1/namespaces/{namespace}/secrets/{layout.S3_SECRET}", s3_secret(namespace, minio.credentials())
    )
