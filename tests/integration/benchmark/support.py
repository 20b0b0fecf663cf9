"""Helpers for Benchmark tests: manifests, status reads, S3, and ``kubectl gym`` as kubectl runs it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube

REPO = Path(__file__).resolve().parents[3]
BENCH = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks"


def benchmark(name: str, models: list[dict[str, Any]], envs: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"models": models, "environments": [{"id": e} for e in envs], "episodes": 8, "nEnvs": 4}
    body.update(spec)
    return {"apiVersion": "kubegym.io/v1alpha1", "kind": "Benchmark", "metadata": {"name": name}, "spec": body}


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(kube.get(f"{BENCH.format(ns=ns)}/{name}").get("status") or {})


def condition(st: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), None)


def s3_env(kube: Kube, ns: str) -> dict[str, str]:
    """AWS_* variables (and BUCKET) of the local MinIO's root key, to put models where the
    Benchmarks of ``ns`` read them (the namespace holds no storage Secret)."""
    return LocalCluster().storage_env()


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def read_s3(client: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def kubectl_gym(
    tmp_path: Path, kubeconfig: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl gym ARGS``: kubectl itself finds the ``kubectl-gym`` plugin on PATH."""
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir(exist_ok=True)
    plugin = bin_dir / "kubectl-gym"
    plugin.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kubegym_cli "$@"\n')
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    full_env = {
        **os.environ,
        **(env or {}),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("api", "cli", "runner", "operator")),
        "KUBECONFIG": str(kubeconfig),
    }
    return subprocess.run(
        [str(layout.kubernetes_bin("kubectl")), "gym", *args], capture_output=True, text=True, env=full_env, timeout=120
    )
