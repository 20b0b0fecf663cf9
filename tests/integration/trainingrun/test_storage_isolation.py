"""A runner pod holds its own run's storage credentials and nothing more (STS mode, the default).

A TrainingRun in a namespace without any storage Secret trains a custom environment
(``module:Class``, installed in the runner image: the local node's site folder) that, when it is
constructed, uses the pod's own credentials with boto3 to read, overwrite and list another
namespace's artifacts. MinIO answers AccessDenied to all three, while the run itself succeeds and
uploads its model. Besides: the pod's environment and mounted files hold neither the operator's
key nor the bucket's root key; its per-run Secret is owned by the run and is deleted with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubegym_api.storage import SESSION_CREDENTIALS_KEY, SessionCredentials
from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from kubegym_localcluster.node.images import site_dir
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import TR, keys, s3_client, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "probe"
SECRET = f"{NAME}-train-storage"
PROBE_MODULE = "kubegym_storage_probe"
#: The custom environment: CartPole that probes the storage its pod can reach, once per process.
PROBE_SOURCE = '''"""CartPole, plus a probe of what the pod's own storage credentials reach (kubegym's tests)."""

import hashlib
import json
import os

import boto3
import botocore.exceptions
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

_PROBED = False


def _outcome(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return "Allowed"


def probe(bucket, victim_key, plant_key, list_prefix):
    with open(os.environ["KUBEGYM_STORAGE_CREDENTIALS_FILE"]) as f:
        creds = json.load(f)
    storage = json.loads(os.environ["KUBEGYM_CONFIG"])["storage"]
    s3 = boto3.client(
        "s3",
        endpoint_url=storage.get("endpoint"),
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    result = {
        "accessKeyId": creds["AccessKeyId"],
        "read": _outcome(lambda: s3.get_object(Bucket=bucket, Key=victim_key)["Body"].read()),
        "write": _outcome(lambda: s3.put_object(Bucket=bucket, Key=plant_key, Body=b"planted by another run")),
        "list": _outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=list_prefix)),
        "awsEnv": sorted(k for k in os.environ if k.startswith("AWS_")),
        "envDigests": sorted(hashlib.sha256(v.encode()).hexdigest() for v in os.environ.values()),
    }
    print("KUBEGYM-PROBE " + json.dumps(result), flush=True)
    allowed = [k for k in ("read", "write", "list") if result[k] != "AccessDenied"]
    if allowed:
        raise RuntimeError(f"the pod's credentials were not denied: {allowed}")


class ProbeCartPole(CartPoleEnv):
    def __init__(self, bucket, victim_key, plant_key, list_prefix, **kwargs):
        global _PROBED
        super().__init__(**kwargs)
        if not _PROBED:
            _PROBED = True
            probe(bucket, victim_key, plant_key, list_prefix)
'''


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def victim(cluster: LocalCluster, kube: Kube) -> Iterator[str]:
    """Another team's namespace, with a model its run uploaded (by the admin, here)."""
    name = f"victim-{uuid.uuid4().hex[:6]}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    s3, bucket = s3_client(kube, name)
    s3.put_object(Bucket=bucket, Key=f"{name}/run/final/model.zip", Body=b"the other team's model")
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def probe_module(cluster: LocalCluster) -> Path:
    """The custom environment, installed in the runner image (the local node's site folder)."""
    site = site_dir(cluster.state / "node")
    site.mkdir(parents=True, exist_ok=True)
    path = site / f"{PROBE_MODULE}.py"
    path.write_text(PROBE_SOURCE)
    return path


def _probe_result(kubectl: Kubectl, pod: str) -> dict[str, Any]:
    log = kubectl.run("logs", pod).stdout
    line = next((line for line in log.splitlines() if line.startswith("KUBEGYM-PROBE ")), None)
    assert line is not None, log[-3000:]
    result: dict[str, Any] = json.loads(line.removeprefix("KUBEGYM-PROBE "))
    return result


def test_a_runs_credentials_reach_only_its_own_run(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    victim: str,
    probe_module: Path,
) -> None:
    ns = namespace
    secrets = kube.get(f"/api/v1/namespaces/{ns}/secrets")["items"]
    assert secrets == []  # a team namespace needs no copy of any storage Secret
    s3, bucket = s3_client(kube, ns)
    environment = {
        "id": f"{PROBE_MODULE}:ProbeCartPole",
        "kwargs": {
            "bucket": bucket,
            "victim_key": f"{victim}/run/final/model.zip",
            "plant_key": f"{victim}/run/final/planted.zip",
            "list_prefix": f"{victim}/",
        },
    }
    kubectl.apply(training_run(NAME, environment=environment, totalTimesteps=1024, checkpoint={"everySteps": 512}))

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-3000:] + "\n--- operator:\n" + operator.tail(30)

    wait_until(
        lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"), 600, "the run", describe=describe
    )
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()

    # The probe ran in the pod, with the pod's own credentials: all three refused by MinIO.
    (pod,) = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"kubegym.io/training-run={NAME}")["items"]
    result = _probe_result(kubectl, pod["metadata"]["name"])
    assert (result["read"], result["write"], result["list"]) == ("AccessDenied", "AccessDenied", "AccessDenied")
    assert result["awsEnv"] == []  # no key in the environment, not even by reference
    admin = LocalCluster().storage_env()
    operator_key = cluster.storage_operator_key()
    long_lived = {admin["AWS_SECRET_ACCESS_KEY"], operator_key["secret_key"]}
    assert not {_digest(secret) for secret in long_lived} & set(result["envDigests"])
    assert result["accessKeyId"] not in (admin["AWS_ACCESS_KEY_ID"], operator_key["access_key"])
    assert s3.get_object(Bucket=bucket, Key=f"{victim}/run/final/model.zip")["Body"].read() == b"the other team's model"
    assert f"{victim}/run/final/planted.zip" not in keys(s3, bucket, f"{victim}/")

    # Its own run: checkpoints and the final model uploaded with those same credentials.
    own = st["artifacts"]["prefix"]  # recorded by the operator: the run's own folder
    assert own == f"{ns}/{NAME}/{kube.get(f'{TR.format(ns=ns)}/{NAME}')['metadata']['uid']}"
    uploaded = keys(s3, bucket, f"{own}/")
    assert f"{own}/final/model.zip" in uploaded, uploaded
    assert any(k.startswith(f"{own}/checkpoints/") for k in uploaded)

    # The pod spec references the run's own Secret and no other; its files hold no long-lived key.
    container = pod["spec"]["containers"][0]
    assert not [e for e in container["env"] if "secretKeyRef" in (e.get("valueFrom") or {})]
    assert [v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v] == [SECRET]
    volumes = cluster.state / "node" / "pods" / pod["metadata"]["uid"] / "volumes"
    mounted = [f for f in volumes.rglob("*") if f.is_file()]
    assert mounted and not any(secret.encode() in f.read_bytes() for f in mounted for secret in long_lived)

    # The per-run Secret: the credentials the pod used, owned by the run, gone with the run.
    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
    run = kube.get(f"{TR.format(ns=ns)}/{NAME}")
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("TrainingRun", NAME, run["metadata"]["uid"])
    minted = SessionCredentials.model_validate_json(base64.b64decode(secret["data"][SESSION_CREDENTIALS_KEY]))
    assert minted.access_key_id == result["accessKeyId"]
    kubectl.run("delete", "trainingrun", NAME)

    def secret_gone() -> bool:
        try:
            kube.get(f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
        except ApiError as e:
            return e.status == 404
        return False

    wait_until(secret_gone, 120, "the garbage collector to delete the run's Secret")
    assert layout.OPERATOR_STORAGE_SECRET not in {
        s["metadata"]["name"] for s in kube.get(f"/api/v1/namespaces/{ns}/secrets")["items"]
    }
