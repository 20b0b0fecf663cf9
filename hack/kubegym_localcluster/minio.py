"""MinIO on loopback: the local cluster's S3, with credentials generated per state directory."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from . import layout
from .procs import Supervisor


class Minio:
    def __init__(self, directory: Path, port: int, console_port: int, sup: Supervisor) -> None:
        self.dir = directory
        self.port = port
        self.console_port = console_port
        self.sup = sup
        self.endpoint = f"http://127.0.0.1:{port}"

    def credentials(self) -> dict[str, str]:
        """Generated once; kept with mode 0600 beside the data."""
        f = self.dir / "credentials.json"
        if not f.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            creds = {
                "access_key": "kubegym-" + secrets.token_hex(6),
                "secret_key": secrets.token_urlsafe(30),
            }
            f.write_text(json.dumps(creds))
            f.chmod(0o600)
        creds = json.loads(f.read_text())
        return {**creds, "endpoint": self.endpoint}

    def start(self, timeout: float = 60.0) -> None:
        creds = self.credentials()
        self.sup.start(
            "minio",
            [
                str(layout.minio_bin()),
                "server",
                str(self.dir / "data"),
                f"--address=127.0.0.1:{self.port}",
                f"--console-address=127.0.0.1:{self.console_port}",
                "--quiet",
            ],
            env={
                "MINIO_ROOT_USER": creds["access_key"],
                "MINIO_ROOT_PASSWORD": creds["secret_key"],
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
        )
        deadline = time.monotonic() + timeout
        s3 = self.client()
        while True:
            try:
                s3.list_buckets()
                return
            except Exception:  # noqa: BLE001 - any failure means "not up yet"
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MinIO did not answer on {self.endpoint} within {timeout:.0f}s") from None
                time.sleep(0.25)

    def client(self) -> Any:
        creds = self.credentials()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=creds["access_key"],
            aws_secret_access_key=creds["secret_key"],
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=30),
        )

    def ensure_bucket(self, bucket: str) -> None:
        s3 = self.client()
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
