"""The local cluster behaves as Kubernetes does: real controllers, real scheduler, real admission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

RUNNER_IMAGE = "ghcr.io/kubegym/kubegym-runner:0.1.0"


def job_condition(kube: Kube, ns: str, name: str, ctype: str) -> bool:
    job = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    return any(c["type"] == ctype and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))


def pods_of(kube: Kube, ns: str, job: str) -> list[dict[str, Any]]:
    return list(kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"job-name={job}")["items"])


def pod(ns: str, name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": RUNNER_IMAGE,
                    "command": ["python", "-c", script],
                    **spec.pop("container", {}),
                }
            ],
            **spec,
        },
    }


def test_node_ready_and_server_version(kubectl: Kubectl) -> None:
    nodes = kubectl.json("get", "nodes")["items"]
    node = next(n for n in nodes if n["metadata"]["name"] == layout.NODE_NAME)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert "Ready" in kubectl.run("get", "nodes").stdout
    version = kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == layout.versions()["KUBERNETES_VERSION"]


def test_job_runs_to_completion_and_logs(kubectl: Kubectl, kube: Kube, namespace: str) -> None:
    kubectl.run("create", "job", "hello", f"--image={RUNNER_IMAGE}", "--", "python", "-c", "print(42)")
    wait_until(lambda: job_condition(kube, namespace, "hello", "Complete"), 60, "Job hello Complete")
    (p,) = pods_of(kube, namespace, "hello")
    assert p["spec"]["nodeName"] == layout.NODE_NAME  # bound by the real scheduler
    assert p["status"]["phase"] == "Succeeded"
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert "42" in kubectl.run("logs", p["metadata"]["name"]).stdout.split()
    # The node's own log CLI reads the same file.
    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubegym_localcluster",
            "--state",
            str(kubectl.kubeconfig.parent),
            "logs",
            p["metadata"]["name"],
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert local.stdout.split() == ["42"]


def test_failing_pod_exhausts_backoff_limit(kube: Kube, namespace: str, kubectl: Kubectl) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "fails", "namespace": namespace},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": RUNNER_IMAGE, "command": ["python", "-c", "raise SystemExit(3)"]}
                    ],
                }
            },
        },
    }
    kubectl.apply(job)
    wait_until(lambda: job_condition(kube, namespace, "fails", "Failed"), 120, "Job fails Failed")
    pods = pods_of(kube, namespace, "fails")
    assert len(pods) == 2
    for p in pods:
        assert p["status"]["phase"] == "Failed"
        assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def _host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    return d


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["handles-sigterm", "ignores-sigterm"])
def test_deleting_a_pod_sends_sigterm_then_sigkill(
    kube: Kube, namespace: str, kubectl: Kubectl, tmp_path: Path, ignores_sigterm: bool
) -> None:
    host = _host_dir(tmp_path)
    handler = "signal.SIG_IGN" if ignores_sigterm else "on_term"
    script = f"""
import os, signal, time, pathlib
out = pathlib.Path('/work')
def on_term(signum, frame):
    (out / 'term').write_text('SIGTERM')
    raise SystemExit(0)
signal.signal(signal.SIGTERM, {handler})
(out / 'pid').write_text(str(os.getpid()))
while True:
    time.sleep(0.1)
"""
    grace = 4
    manifest = pod(
        namespace,
        "sleeper",
        script,
        terminationGracePeriodSeconds=grace,
        volumes=[{"name": "work", "hostPath": {"path": str(host), "type": "Directory"}}],
        container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    )
    kubectl.apply(manifest)
    pid = int(
        wait_until(
            lambda: ((host / "pid").exists() and (host / "pid").read_text()) or None, 60, "the pod's process to start"
        )
    )
    t0 = time.monotonic()
    kubectl.run("delete", "pod", "sleeper", "--wait=true", timeout=60)
    elapsed = time.monotonic() - t0
    assert not _alive(pid), "the pod's process outlived its deletion"
    if ignores_sigterm:
        assert not (host / "term").exists()
        assert grace - 0.5 <= elapsed < grace + 10, (
            f"SIGKILL should follow the {grace}s grace period, took {elapsed:.1f}s"
        )
    else:
        assert (host / "term").read_text() == "SIGTERM"
        assert elapsed < grace, f"a process that exits on SIGTERM should not wait out the grace period ({elapsed:.1f}s)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_secrets_token_and_rbac_from_inside_a_pod(kube: Kube, namespace: str, kubectl: Kubectl) -> None:
    ns = namespace
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cr3t-value"},
        }
    )
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    kubectl.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})
    kubectl.run("create", "role", "read-configmaps", "--verb=get,list", "--resource=configmaps")
    kubectl.run("create", "rolebinding", "reader", "--role=read-configmaps", f"--serviceaccount={ns}:reader")
    script = """
import json, os
from kubernetes import client, config
config.load_incluster_config()
v1 = client.CoreV1Api()
out = {"env": os.environ.get("PASSWORD"), "file": open("/etc/creds/password").read(),
       "mode": os.environ.get("MODE"), "me": os.environ.get("MY_NAME"),
       "token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")}
out["configmaps"] = [c.metadata.name for c in v1.list_namespaced_config_map(os.environ["NS"]).items]
try:
    v1.list_namespaced_secret(os.environ["NS"])
    out["secrets"] = "allowed"
except client.ApiException as e:
    out["secrets"] = e.status
print("RESULT " + json.dumps(out))
"""
    manifest = pod(
        ns,
        "inside",
        script,
        serviceAccountName="reader",
        volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
        container={
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
            "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}],
        },
    )
    kubectl.apply(manifest)
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{ns}/pods/inside")["status"].get("phase") in ("Succeeded", "Failed"),
        90,
        "pod inside to finish",
    )
    logs = kubectl.run("logs", "inside").stdout
    result = json.loads(next(line for line in logs.splitlines() if line.startswith("RESULT "))[7:])
    assert result["env"] == result["file"] == "s3cr3t-value"
    assert result["mode"] == "fast" and result["me"] == "inside" and result["token"]
    assert "settings" in result["configmaps"]  # allowed verb
    assert result["secrets"] == 403  # RBAC enforced for the pod's identity


def test_deleting_a_job_removes_its_pods(kube: Kube, namespace: str, kubectl: Kubectl) -> None:
    kubectl.run(
        "create", "job", "long", f"--image={RUNNER_IMAGE}", "--", "python", "-c", "import time; time.sleep(600)"
    )
    wait_until(
        lambda: [p for p in pods_of(kube, namespace, "long") if p["status"].get("phase") == "Running"],
        60,
        "the Job's pod to run",
    )
    kubectl.run("delete", "job", "long", "--cascade=background", "--wait=false")
    wait_until(lambda: not pods_of(kube, namespace, "long"), 60, "the garbage collector to remove the pods")


def test_gpu_pod_waits_until_the_node_advertises_gpus(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl
) -> None:
    from kubegym_localcluster.node.agent import NodeConfig

    config = NodeConfig(cluster.state / "node" / "config.json")
    manifest = pod(namespace, "gpu", "print('gpu ok')", container={"resources": {"limits": {"nvidia.com/gpu": "1"}}})
    try:
        config.write(gpus=0)
        wait_until(
            lambda: "nvidia.com/gpu" not in kube.get(f"/api/v1/nodes/{layout.NODE_NAME}")["status"]["capacity"],
            30,
            "the node to drop its GPUs",
        )
        kubectl.apply(manifest)

        def unschedulable() -> bool:
            conds = kube.get(f"/api/v1/namespaces/{namespace}/pods/gpu")["status"].get("conditions", [])
            return any(
                c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
                for c in conds
            )

        wait_until(unschedulable, 60, "the scheduler to mark the GPU pod Unschedulable")
        assert kube.get(f"/api/v1/namespaces/{namespace}/pods/gpu")["status"]["phase"] == "Pending"
        config.write(gpus=1)
        wait_until(
            lambda: kube.get(f"/api/v1/namespaces/{namespace}/pods/gpu")["status"].get("phase") == "Succeeded",
            120,
            "the GPU pod to be scheduled and run",
        )
    finally:
        config.write(gpus=None)


def test_privileged_pod_rejected_under_restricted_pod_security(kube: Kube, namespace: str) -> None:
    kube.merge_patch(
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    manifest = pod(namespace, "privileged", "print(1)", container={"securityContext": {"privileged": True}})
    with pytest.raises(ApiError) as err:
        kube.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    assert err.value.status == 403
    assert "violates PodSecurity" in err.value.text and "privileged" in err.value.text


def test_eviction_marks_disruption_target_for_pod_failure_policy(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "evicted", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": RUNNER_IMAGE,
                            "command": ["python", "-c", "import time; time.sleep(600)"],
                        }
                    ],
                }
            },
        },
    }
    kubectl.apply(job)
    first = wait_until(
        lambda: next((p for p in pods_of(kube, namespace, "evicted") if p["status"].get("phase") == "Running"), None),
        60,
        "the first pod to run",
    )
    name = first["metadata"]["name"]
    subprocess.run(
        [
            os.environ.get("PYTHON", "python"),
            "-m",
            "kubegym_localcluster",
            "--state",
            str(cluster.state),
            "evict",
            name,
            "-n",
            namespace,
        ],
        check=True,
    )
    evicted = wait_until(
        lambda: (p := kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}"))["status"].get("phase") == "Failed" and p,
        60,
        "the evicted pod to fail",
    )
    cond = next(c for c in evicted["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert cond["status"] == "True" and cond["reason"] == "TerminationByKubelet"
    assert evicted["status"]["reason"] == "Evicted"
    # backoffLimit 0, yet the Job replaces the pod: the disruption did not count as a failure.
    wait_until(
        lambda: any(
            p["metadata"]["name"] != name and p["status"].get("phase") == "Running"
            for p in pods_of(kube, namespace, "evicted")
        ),
        60,
        "a replacement pod",
    )
    assert not job_condition(kube, namespace, "evicted", "Failed")


def test_memory_limit_is_enforced_as_oomkilled(kube: Kube, namespace: str, kubectl: Kubectl) -> None:
    manifest = pod(
        namespace,
        "hog",
        "x = bytearray(400 * 1024 * 1024); print(len(x))",
        container={"resources": {"limits": {"memory": "64Mi"}}},
    )
    kubectl.apply(manifest)
    p = wait_until(
        lambda: (p := kube.get(f"/api/v1/namespaces/{namespace}/pods/hog"))["status"].get("phase") == "Failed" and p,
        60,
        "the pod over its memory limit to fail",
    )
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137


def test_boto3_round_trip_on_minio(cluster: LocalCluster, kube: Kube, namespace: str) -> None:
    import boto3

    env = cluster.storage_env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    key = f"tests/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=env["BUCKET"], Key=key, Body=b"hello kubegym")
    assert s3.get_object(Bucket=env["BUCKET"], Key=key)["Body"].read() == b"hello kubegym"
    s3.delete_object(Bucket=env["BUCKET"], Key=key)
    # And the credentials are really required.
    anon = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="nobody",
        aws_secret_access_key="wrong-secret",
        region_name="us-east-1",
    )
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch"):
        anon.get_object(Bucket=env["BUCKET"], Key=key)


def test_make_kubeconfig_prints_one_path(cluster: LocalCluster) -> None:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "kubeconfig"],
        cwd=layout.REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KUBEGYM_STATE": str(cluster.state)},
    ).stdout
    assert out.splitlines() == [str(cluster.kubeconfig)]
