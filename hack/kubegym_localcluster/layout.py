"""Where things are: the state directory, the cached binaries, the pinned versions, the ports."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "kubegym-local"
BUCKET = "kubegym"
S3_SECRET = "kubegym-s3"
#: The operator's own storage key (a MinIO user, not root) in SYSTEM_NAMESPACE, for the chart.
OPERATOR_STORAGE_SECRET = "kubegym-storage-operator"
SYSTEM_NAMESPACE = "kubegym-system"
CLUSTER_NAME = "kubegym-local"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def versions() -> dict[str, str]:
    """The pins of hack/versions.env, the one place they are written."""
    out = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("KUBEGYM_CACHE", Path.home() / ".cache" / "kubegym"))


def state_dir() -> Path:
    """All state of the local cluster: ``$KUBEGYM_STATE`` or ``<repo>/.state``."""
    return Path(os.environ.get("KUBEGYM_STATE", REPO / ".state")).resolve()


def kubernetes_bin(name: str) -> Path:
    return cache_dir() / "bin" / f"kubernetes-{versions()['KUBERNETES_VERSION']}" / name


def minio_bin() -> Path:
    return cache_dir() / "bin" / f"minio-{versions()['MINIO_VERSION']}" / "minio"


def mc_bin() -> Path:
    return cache_dir() / "bin" / f"mc-{versions()['MC_VERSION']}" / "mc"


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Ports:
    apiserver: int
    etcd: int
    etcd_peer: int
    kubelet: int
    minio: int
    minio_console: int

    @classmethod
    def load_or_pick(cls, state: Path) -> Ports:
        """Ports chosen once per state directory, so kubeconfigs and Secrets stay valid."""
        f = state / "ports.json"
        if f.exists():
            return cls(**json.loads(f.read_text()))
        ports = cls(*free_ports(6))
        state.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(asdict(ports), indent=2))
        return ports
