"""`down` stops every process a state directory started, pods' processes included."""

from __future__ import annotations

import uuid
from pathlib import Path

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.support.wait import wait_until


def _processes_mentioning(*needles: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(f"{d.name}: {cmd[:200]}")
    return found


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    marker = f"kubegym-down-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(state)
    try:
        cluster.up()
        kube: Kube = cluster.admin()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "ghcr.io/kubegym/kubegym-runner:0.1.0",
                        "command": ["python", "-c", f"import time; time.sleep(600)  # {marker}"],
                    }
                ],
            },
        }
        kube.create("/api/v1/namespaces/default/pods", pod)
        wait_until(lambda: _processes_mentioning(marker), 60, "the pod's process to start")
        assert _processes_mentioning(str(state))  # the daemons are there
    finally:
        cluster.down()
    assert _processes_mentioning(str(state), marker) == []
