"""A MinIO of its own for the runner's storage tests (no Kubernetes needed).

It is the local cluster's ``kubegym_localcluster.minio.Minio`` (same binary, same start-up
check), started standalone under a temporary state directory so these tests neither need
nor disturb a running local cluster. A missing binary fails the tests; it does not skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.layout import free_ports
from kubegym_localcluster.minio import Minio
from kubegym_localcluster.procs import Supervisor

BUCKET = "kubegym-runner-tests"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    client: Any
    #: MinIO's process id (a test may freeze it with SIGSTOP; it must SIGCONT it again).
    pid: int | None = None

    def env(self) -> dict[str, str]:
        """How the runner pod gets credentials: the Secret's keys as environment variables."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    state: Path = tmp_path_factory.mktemp("runner-minio")
    supervisor = Supervisor(state)
    port, console_port = free_ports(2)
    minio = Minio(state / "minio", port, console_port, supervisor)
    try:
        minio.start()
        minio.ensure_bucket(BUCKET)
        creds = minio.credentials()
        yield S3Server(
            minio.endpoint, creds["access_key"], creds["secret_key"], BUCKET, minio.client(), supervisor.pid("minio")
        )
    finally:
        supervisor.stop("minio")
