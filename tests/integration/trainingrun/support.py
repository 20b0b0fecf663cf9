"""Helpers for TrainingRun tests: manifests from examples/, status reads, S3 access."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.support.wait import wait_until

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TR = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns"


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def training_run(name: str, **spec: Any) -> dict[str, Any]:
    """A small CPU TrainingRun; keyword arguments override spec fields."""
    base: dict[str, Any] = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1"},
        "totalTimesteps": 2048,
        "device": "cpu",
        "checkpoint": {"everySteps": 1024},
    }
    base.update(spec)
    return {"apiVersion": "kubegym.io/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name}, "spec": base}


def with_spec(manifest: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["spec"].update(spec)
    return out


def get_run(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return kube.get(f"{TR.format(ns=ns)}/{name}")


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(get_run(kube, ns, name).get("status") or {})


def phase(kube: Kube, ns: str, name: str) -> str | None:
    return status(kube, ns, name).get("phase")


def condition(st: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in st.get("conditions", []) if c["type"] == ctype), None)


def artifacts_prefix(kube: Kube, ns: str, name: str, timeout: float = 120) -> str:
    """The key prefix of the run's folder, as the operator recorded it in ``status.artifacts`` with
    the run's first Job (``<prefix>/<namespace>/<name>/<uid>``)."""
    found: str = wait_until(
        lambda: (status(kube, ns, name).get("artifacts") or {}).get("prefix"), timeout, f"{name}'s status.artifacts"
    )
    return found


def s3_client(kube: Kube, ns: str) -> tuple[Any, str]:
    """boto3 client and bucket with the local MinIO's root key, to check what the runs of ``ns``
    wrote (``kube`` is the cluster's admin; the namespace holds no storage Secret: its runs get
    credentials minted for them)."""
    import boto3

    env = LocalCluster().storage_env()
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    return client, env["BUCKET"]


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out
