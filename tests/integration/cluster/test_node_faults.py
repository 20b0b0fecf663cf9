"""The local node behaves like a kubelet through faults, on clusters of their own.

Each test here starts a second local cluster in a state folder under ``/tmp`` (a new user's
clone may live there), so stopping its API server or its node disturbs no other test.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.cluster import COMPONENTS, LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.support.wait import wait_until

RUNNER_IMAGE = "ghcr.io/kubegym/kubegym-runner:0.1.0"

#: Mount targets a pod of the tests below asks for, none of which exists on a plain host.
#: After ``down`` the host must not hold any of them that it did not hold before.
HOST_PATHS = (
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/var/run/secrets",
    "/dev/termination-log",
    "/etc/kubegym-test",
    "/workspace-kubegym-test",
)


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    state = Path(tempfile.mkdtemp(prefix="kubegym-state-", dir="/tmp"))
    cluster = LocalCluster(state)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(state, ignore_errors=True)


def _pod(name: str, script: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": RUNNER_IMAGE, "command": ["python", "-c", script], **container}],
        },
    }


def _phase(kube: Kube, name: str) -> str | None:
    phase = kube.get(f"/api/v1/namespaces/default/pods/{name}").get("status", {}).get("phase")
    return None if phase is None else str(phase)


def _logs(cluster: LocalCluster, name: str) -> str:
    pod = cluster.admin().get(f"/api/v1/namespaces/default/pods/{name}")
    logs = cluster.state / "node" / "pods" / pod["metadata"]["uid"] / "logs" / "main-0.log"
    return logs.read_text(errors="replace") if logs.exists() else ""


def test_state_under_tmp_token_pod_and_down_leaves_nothing_on_the_host(own_cluster: LocalCluster) -> None:
    """A pod with a /tmp emptyDir, a projected ServiceAccount token, a ConfigMap at a new path and
    a new working directory runs from a state folder under /tmp; ``down`` leaves no mount point."""
    assert str(own_cluster.state).startswith("/tmp/")
    before = {p for p in HOST_PATHS if Path(p).exists()}
    kube = own_cluster.admin()
    kube.create(
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}},
    )
    script = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read()
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
req = urllib.request.Request(f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews", data=body,
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
me = json.load(urllib.request.urlopen(req, context=ctx))["status"]["userInfo"]["username"]
open("/tmp/scratch", "w").write("x")
cpu = next(line.split(":", 2)[2] for line in open("/proc/self/cgroup") if ":cpu:" in line or ":cpu," in line)
quota = int(open(f"/sys/fs/cgroup/cpu{cpu.strip()}/cpu.cfs_quota_us").read())
import kubegym_runner
print("RESULT " + json.dumps({"me": me, "mode": open("/etc/kubegym-test/mode").read(), "cwd": os.getcwd(),
                              "namespace": open(sa + "/namespace").read(), "quota": quota,
                              "runner": kubegym_runner.__file__}))
open("/dev/termination-log", "w").write("done")
"""
    manifest = _pod(
        "token",
        script,
        workingDir="/workspace-kubegym-test/run",
        resources={"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        volumeMounts=[
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "settings", "mountPath": "/etc/kubegym-test", "readOnly": True},
        ],
    )
    manifest["spec"]["volumes"] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "settings", "configMap": {"name": "settings"}},
    ]
    wait_until(lambda: kube.get("/api/v1/namespaces/default/serviceaccounts/default"), 60, "the default ServiceAccount")
    pod_uid = kube.create("/api/v1/namespaces/default/pods", manifest)["metadata"]["uid"]
    wait_until(lambda: _phase(kube, "token") in ("Succeeded", "Failed"), 90, "the token pod to finish")
    logs = _logs(own_cluster, "token")
    assert _phase(kube, "token") == "Succeeded", logs
    result = json.loads(next(line for line in logs.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {
        "me": "system:serviceaccount:default:default",
        "mode": "fast",
        "cwd": "/workspace-kubegym-test/run",
        "namespace": "default",
        "quota": 50000,  # 500m over the 100 ms CFS period
        # The image's sources, which no pod volume (here a /tmp emptyDir) can hide.
        "runner": "/opt/kubegym/src/runner/kubegym_runner/__init__.py",
    }
    status = kube.get("/api/v1/namespaces/default/pods/token")["status"]["containerStatuses"][0]
    assert status["state"]["terminated"]["message"] == "done"
    # While the cluster is still up: the pod's mount points never reached the host.
    assert {p for p in HOST_PATHS if Path(p).exists()} == before
    own_cluster.down()
    assert {p for p in HOST_PATHS if Path(p).exists()} == before
    uid = pod_uid
    assert [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/**/kubegym/{uid}-*")] == []


def test_a_secret_created_after_create_container_config_error_lets_the_pod_start(own_cluster: LocalCluster) -> None:
    kube = own_cluster.admin()
    wait_until(lambda: kube.get("/api/v1/namespaces/default/serviceaccounts/default"), 60, "the default ServiceAccount")
    manifest = _pod(
        "late-secret",
        "import os; print('PASSWORD=' + os.environ['PASSWORD'])",
        env=[{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "late", "key": "password"}}}],
    )
    manifest["spec"]["volumes"] = [{"name": "late", "secret": {"secretName": "late-volume"}}]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "late", "mountPath": "/etc/late"}]
    kube.create("/api/v1/namespaces/default/pods", manifest)

    def waiting_reason() -> str | None:
        st = kube.get("/api/v1/namespaces/default/pods/late-secret").get("status", {})
        for c in st.get("containerStatuses", []):
            return str(c.get("state", {}).get("waiting", {}).get("reason"))
        return None

    wait_until(lambda: waiting_reason() == "CreateContainerConfigError", 60, "CreateContainerConfigError (volume)")
    for name, key in (("late-volume", "file"), ("late", "password")):
        kube.create(
            "/api/v1/namespaces/default/secrets",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: "s3cr3t"}},
        )
        if name == "late-volume":
            # The volume is there now; the env var's Secret still is not.
            wait_until(lambda: waiting_reason() == "CreateContainerConfigError", 60, "CreateContainerConfigError (env)")
    wait_until(lambda: _phase(kube, "late-secret") == "Succeeded", 60, "the pod to run once its Secrets exist")
    assert "PASSWORD=s3cr3t" in _logs(own_cluster, "late-secret")


def test_a_pod_outlives_an_api_outage_and_reports_its_end(own_cluster: LocalCluster) -> None:
    """The API server is stopped while a pod runs and exits; ``up`` brings it back in one call, and
    the pod's final state arrives: the node never loses a pod it supervises."""
    kube = own_cluster.admin()
    wait_until(lambda: kube.get("/api/v1/namespaces/default/serviceaccounts/default"), 60, "the default ServiceAccount")
    kube.create(
        "/api/v1/namespaces/default/pods",
        _pod("outage", "import sys, time; time.sleep(15); print('finished'); sys.exit(3)"),
    )
    wait_until(lambda: _phase(kube, "outage") == "Running", 60, "the pod to run")
    own_cluster.sup.stop("kube-apiserver")
    assert not own_cluster.sup.running("kube-apiserver")
    # The container exits while nobody can hear it; several status writes and heartbeats fail.
    wait_until(lambda: "finished" in _logs_by_dir(own_cluster), 60, "the container to finish during the outage")
    time.sleep(12)
    t0 = time.monotonic()
    own_cluster.up()
    restart = time.monotonic() - t0
    assert all(own_cluster.status().values()), own_cluster.status()
    wait_until(lambda: _phase(kube, "outage") == "Failed", 60, "the pod's final state to arrive")
    term = kube.get("/api/v1/namespaces/default/pods/outage")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3
    node_log = (own_cluster.sup.logs / "node.log").read_text(errors="replace")
    assert "worker failed" not in node_log
    assert "status delivered after" in node_log
    print(f"API server restart by up(): {restart:.1f}s")


def _logs_by_dir(cluster: LocalCluster) -> str:
    """Every container log of the node, read from disk (the API may be down)."""
    return "".join(p.read_text(errors="replace") for p in (cluster.state / "node" / "pods").glob("*/logs/*.log"))


def test_up_restarts_every_component_that_is_down(own_cluster: LocalCluster) -> None:
    for name in ("kube-scheduler", "kube-controller-manager", "node", "minio"):
        own_cluster.sup.stop(name)
    assert not any(own_cluster.status()[n] for n in ("kube-scheduler", "kube-controller-manager", "node", "minio"))
    own_cluster.up()
    assert own_cluster.status() == dict.fromkeys(COMPONENTS, True)
    kube = own_cluster.admin()
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "after-restart", "namespace": "default"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": RUNNER_IMAGE, "command": ["python", "-c", "print(1)"]}],
                }
            },
        },
    }
    kube.create("/apis/batch/v1/namespaces/default/jobs", job)

    def complete() -> bool:
        try:
            j = kube.get("/apis/batch/v1/namespaces/default/jobs/after-restart")
        except ApiError:
            return False
        return any(c["type"] == "Complete" and c["status"] == "True" for c in j.get("status", {}).get("conditions", []))

    wait_until(complete, 90, "a Job to complete on the restarted cluster")
