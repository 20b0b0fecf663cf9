"""A running pod sees its Secret volume change, as on a kubelet (the local node re-reads Secret and
ConfigMap volumes every minute): the runner picks up refreshed storage credentials this way.

A pod prints its mounted file whenever it changes; the Secret is updated through the API; the
pod prints the new value within the node's sync period (plus slack for a loaded machine), and
the environment variable taken from the same Secret keeps the value it started with.
"""

from __future__ import annotations

from kubegym_localcluster.kube import Kube
from kubegym_localcluster.node.podspec import VOLUME_SYNC_SECONDS
from tests.integration.cluster.test_local_cluster import pod
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

SCRIPT = """
import os, time
seen = None
while True:
    value = open("/etc/creds/token").read()
    if value != seen:
        print("FILE", value, "ENV", os.environ["TOKEN"], flush=True)
        seen = value
        if value == "second":
            break
    time.sleep(0.5)
"""


def test_a_running_pod_sees_its_secret_volume_change(kube: Kube, namespace: str, kubectl: Kubectl) -> None:
    ns = namespace
    kubectl.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "first"}}
    )
    kubectl.apply(
        pod(
            ns,
            "watcher",
            SCRIPT,
            volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
            container={
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
                "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}],
            },
        )
    )

    def logs() -> str:
        return str(kubectl.run("logs", "watcher", check=False).stdout)

    wait_until(lambda: "FILE first ENV first" in logs(), 90, "the pod to print its first value", describe=logs)
    kube.merge_patch(f"/api/v1/namespaces/{ns}/secrets/creds", {"stringData": {"token": "second"}})
    wait_until(
        lambda: "FILE second ENV first" in logs(),
        VOLUME_SYNC_SECONDS + 60,
        "the pod to see the Secret's new value in its volume",
        describe=logs,
    )
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{ns}/pods/watcher")["status"].get("phase") == "Succeeded",
        30,
        "the pod to finish",
    )
