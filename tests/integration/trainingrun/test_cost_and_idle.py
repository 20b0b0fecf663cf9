"""What a run cost, and a run that trains nothing, on the local cluster.

A CartPole run trains to Succeeded and its ``status.cost`` agrees with its pod: the requested
CPU times the runner container's own start and end, and the CPU time the runner measured of
itself (above zero, and not more than the node's cores could give in that time); ``kubectl get
-o wide`` shows it. A second run's runner process is frozen with SIGSTOP — a real hang: it holds
its pod and trains nothing — and the operator flags it ``Idle`` (reason NoProgress), then fails it
with reason IdleTimeout past its ``runPolicy.idleTimeoutSeconds``, stops its Job, and leaves its
checkpoints in storage."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from datetime import datetime
from typing import Any

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.kube import Kube
from kubegym_operator.builders.job import CONTAINER_NAME
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import condition, keys, s3_client, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

RUN_LABEL = "kubegym.io/training-run"


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pods(kube: Kube, ns: str, run: str) -> list[dict[str, Any]]:
    return list(kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{RUN_LABEL}={run}")["items"])


def _describe(kube: Kube, ns: str, run: str, operator: OperatorProcess) -> str:
    st = status(kube, ns, run)
    return f"{ {k: st.get(k) for k in ('phase', 'reason', 'message', 'conditions', 'cost')} }\n{operator.tail(20)}"


def test_a_finished_run_states_what_its_pod_held_and_used(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    kubectl.apply(training_run("costed", totalTimesteps=4096, resources={"cpu": "500m", "memory": "2Gi"}))

    def done() -> bool:
        st = status(kube, ns, "costed")
        # The last pod's end is written once the operator has seen it terminate.
        return st.get("phase") in ("Succeeded", "Failed") and not (st.get("cost") or {}).get("asOf")

    wait_until(
        done, 600, "costed to finish", interval=2, describe=functools.partial(_describe, kube, ns, "costed", operator)
    )
    st = status(kube, ns, "costed")
    assert st["phase"] == "Succeeded", st
    cost = st["cost"]
    (pod,) = _pods(kube, ns, "costed")
    (runner,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == CONTAINER_NAME]
    ran = runner["state"]["terminated"]
    seconds = (_time(ran["finishedAt"]) - _time(ran["startedAt"])).total_seconds()
    (attempt,) = cost["attempts"]
    assert attempt["pod"] == pod["metadata"]["name"]
    assert (attempt["cpu"], attempt.get("gpu", 0)) == (0.5, 0)
    assert (attempt["startTime"], attempt["endTime"]) == (ran["startedAt"], ran["finishedAt"])
    assert cost["cpuSeconds"] == pytest.approx(0.5 * seconds, abs=0.1), cost
    assert cost.get("gpuSeconds", 0) == 0 and cost["pods"] == 1
    # Measured by the runner of its own process tree: some, and no more than 2 cores in that time.
    assert 0 < cost["measuredCpuSeconds"] <= (os.cpu_count() or 2) * seconds, cost
    assert cost["cpuUtilization"] == pytest.approx(cost["measuredCpuSeconds"] / cost["cpuSeconds"], rel=0.02)
    wide = kubectl.run("get", "trainingrun", "costed", "-o", "wide").stdout
    header, row = wide.strip().splitlines()
    assert "CPU-S" in header.split() and "GPU-S" in header.split(), wide
    assert str(cost["cpuSeconds"]) in row.split(), wide


def test_a_frozen_runner_is_flagged_idle_then_stopped_with_its_checkpoints_kept(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)
    kubectl.apply(training_run("frozen", totalTimesteps=1_000_000, runPolicy={"idleTimeoutSeconds": 60}))
    describe = functools.partial(_describe, kube, ns, "frozen", operator)

    def checkpointed() -> bool:
        st = status(kube, ns, "frozen")
        return st.get("phase") == "Running" and bool((st.get("checkpoints") or {}).get("latestStep"))

    wait_until(checkpointed, 300, "frozen to train and checkpoint", interval=1, describe=describe)
    (pod,) = [p for p in _pods(kube, ns, "frozen") if p["status"].get("phase") == "Running"]
    pid_file = layout.state_dir() / "node" / "pods" / pod["metadata"]["uid"] / "pids" / CONTAINER_NAME
    pgid = int(pid_file.read_text())
    os.killpg(pgid, signal.SIGSTOP)
    try:

        def flagged() -> bool:
            idle = condition(status(kube, ns, "frozen"), "Idle")
            return idle is not None and idle["status"] == "True"

        wait_until(flagged, 150, "the Idle condition", interval=1, describe=describe)
        st = status(kube, ns, "frozen")
        idle = condition(st, "Idle")
        assert idle is not None and idle["reason"] == "NoProgress", idle
        assert idle["message"].startswith("no new timesteps since "), idle
        assert "while holding 1 CPU cores" in idle["message"], idle

        def failed() -> bool:
            return status(kube, ns, "frozen").get("phase") == "Failed"

        wait_until(failed, 150, "the idle timeout to fail the run", interval=1, describe=describe)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)
    st = status(kube, ns, "frozen")
    assert st["reason"] == "IdleTimeout", st
    assert "stopped after runPolicy.idleTimeoutSeconds (60 s); its checkpoints are kept" in st["message"], st
    events = kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector="involvedObject.name=frozen")["items"]
    reasons = {(e["type"], e["reason"]) for e in events}
    assert {("Warning", "NoProgress"), ("Warning", "IdleTimeout")} <= reasons, reasons
    # Its Job is stopped (its pod goes) and its checkpoints stay.
    wait_until(lambda: not [p for p in _pods(kube, ns, "frozen") if p["status"].get("phase") == "Running"], 120,
               "the frozen pod to go", interval=1, describe=describe)  # fmt: skip
    latest = st["checkpoints"]["latestStep"]
    prefix = st["artifacts"]["prefix"]
    assert any(f"/checkpoints/{latest:012d}/" in k for k in keys(s3, bucket, f"{prefix}/")), keys(s3, bucket, prefix)
    assert st["cost"]["cpuSeconds"] > 0
