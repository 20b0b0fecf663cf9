"""MinIO on loopback: the local cluster's S3, with credentials generated per state directory.

Two identities: the root user (the tests' and ``make env``'s view of everything), and the
operator's user, a regular MinIO user whose policy allows the bucket and nothing else. The
operator signs STS ``AssumeRole`` with the latter's key, so each run's credentials are that
user's rights narrowed by the run's session policy: bounded to the bucket even if a policy were
wrong (root's key would be bounded by the session policy alone). The user and
its policy are made with the official client ``mc`` (``mc admin user add``, ``policy create``,
``policy attach``), which is idempotent: every ``up`` runs it again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from . import layout
from .procs import Supervisor

#: The operator's MinIO user and its policy's name.
OPERATOR_USER = "kubegym-operator"
OPERATOR_POLICY = "kubegym-operator"


def operator_policy(bucket: str) -> dict[str, Any]:
    """Everything on ``bucket``, nothing else: the most any run's credentials can be."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:*"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


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

    def operator_credentials(self) -> dict[str, str]:
        """The operator's user (access_key, secret_key, endpoint), generated once like root's."""
        f = self.dir / "operator-credentials.json"
        if not f.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            # Hex: `mc admin user add` takes the key as an argument, and a urlsafe token may begin with '-'.
            creds = {"access_key": OPERATOR_USER, "secret_key": secrets.token_hex(20)}
            f.write_text(json.dumps(creds))
            f.chmod(0o600)
        creds = json.loads(f.read_text())
        return {**creds, "endpoint": self.endpoint}

    def mc(self, *args: str) -> str:
        """Run ``mc`` against this MinIO as root (alias ``local``); its output, or RuntimeError."""
        root = self.credentials()
        host = f"http://{root['access_key']}:{root['secret_key']}@127.0.0.1:{self.port}"
        result = subprocess.run(
            [str(layout.mc_bin()), "--config-dir", str(self.dir / "mc"), "--no-color", *args],
            env={**os.environ, "MC_HOST_local": host},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"mc {args[0]} {args[1] if len(args) > 1 else ''} failed: {result.stderr or result.stdout}"
            )
        return result.stdout

    def ensure_operator_user(self, bucket: str) -> dict[str, str]:
        """The operator's user with :func:`operator_policy` on ``bucket`` (idempotent); its credentials."""
        creds = self.operator_credentials()
        policy = self.dir / "operator-policy.json"
        policy.write_text(json.dumps(operator_policy(bucket)))
        self.mc("admin", "user", "add", "local", creds["access_key"], creds["secret_key"])
        self.mc("admin", "policy", "create", "local", OPERATOR_POLICY, str(policy))
        self.mc("admin", "policy", "attach", "local", OPERATOR_POLICY, "--user", creds["access_key"])
        return creds

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
