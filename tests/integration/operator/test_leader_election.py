"""Two operator replicas on the local cluster, electing a leader on a Lease.

Both start at once: exactly one leads, the other stands by without watching anything. A
TrainingRun starts; the leader is SIGKILLed while it runs; the standby takes over once the
Lease expires (measured), the run succeeds, and it has one Job — nothing was created twice.
Then the killed replica comes back as a standby, and a clean shutdown of the leader hands it
the Lease at once (released, not left to expire).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.conftest import OWN_OPERATOR_PREFIX, OperatorProcess
from tests.integration.trainingrun.support import TR, phase, status, training_run
from tests.support.wait import wait_until

RUN = "ha-cartpole"
LEASE = "kubegym-operator"
#: kopf logs this once its watches start, i.e. after every startup handler returned.
KOPF_STARTED = "Initial authentication has finished"


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A namespace the session's operator does not watch (see ``OWN_OPERATOR_PREFIX``): the
    replicas under test are the only operators there, so what happens there is theirs."""
    name = f"{OWN_OPERATOR_PREFIX}leader-{uuid.uuid4().hex[:6]}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30, f"{name}'s ServiceAccount")
    yield name
    try:
        kube.delete(f"/api/v1/namespaces/{name}")
    except ApiError as e:
        if e.status != 404:
            raise


def _replica(cluster: LocalCluster, tmp_path: Path, namespace: str, name: str) -> OperatorProcess:
    return OperatorProcess(
        cluster,
        tmp_path / f"{name}.log",
        KUBEGYM_LEADER_ELECTION="true",
        KUBEGYM_WATCH_NAMESPACES=namespace,
        POD_NAMESPACE=namespace,
        POD_NAME=name,
    )


def _log(op: OperatorProcess) -> str:
    return op.log.read_text(errors="replace") if op.log.exists() else ""


def _became_leader(op: OperatorProcess, namespace: str) -> str | None:
    """The "took over from" part of the replica's leadership line, if it logged one."""
    marker = f"became the leader (lease {namespace}/{LEASE}, took over from "
    for line in _log(op).splitlines():
        if marker in line:
            return line.split(marker, 1)[1].rstrip(")")
    return None


def test_standby_takes_over_from_a_killed_leader_without_duplicating_work(
    cluster: LocalCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    replicas = {name: _replica(cluster, tmp_path, ns, name) for name in ("op-a", "op-b")}
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}"

    def describe() -> str:
        return (
            "\n".join(f"--- {name}:\n{op.tail(25)}" for name, op in replicas.items())
            + f"\n--- run: {status(kube, ns, RUN) if phase_or_none() else None}"
        )

    def phase_or_none() -> str | None:
        try:
            return phase(kube, ns, RUN)
        except Exception:  # noqa: BLE001 - not created yet
            return None

    try:
        for op in replicas.values():
            op.start()
        leader_name = wait_until(
            lambda: next((n for n, op in replicas.items() if _became_leader(op, ns) is not None), None),
            60,
            "one replica to become the leader",
            describe=describe,
        )
        (standby_name,) = set(replicas) - {leader_name}
        leader, standby = replicas[leader_name], replicas[standby_name]
        wait_until(
            lambda: f"waiting for leadership (lease {ns}/{LEASE} held by {leader_name})" in _log(standby),
            30,
            "the other replica to stand by",
            describe=describe,
        )
        wait_until(lambda: KOPF_STARTED in _log(leader), 30, "the leader's watches", describe=describe)
        assert _became_leader(standby, ns) is None
        # Warm: the standby's watches run (its view is filled) but it reconciles nothing.
        wait_until(lambda: KOPF_STARTED in _log(standby), 30, "the standby's watches", describe=describe)
        lease: dict[str, Any] = kube.get(lease_path)["spec"]
        assert lease["holderIdentity"] == leader_name and lease["leaseDurationSeconds"] == 10

        # A short run; the leader creates its Job and dies while it trains.
        run = training_run(RUN, totalTimesteps=6144, resources={"cpu": "1", "memory": "1Gi"})
        kube.create(TR.format(ns=ns), run)
        wait_until(lambda: phase_or_none() == "Running", 180, "the run to be Running", describe=describe)
        assert f"Job {RUN}" in _log(leader) and " created" in _log(leader)
        assert "created" not in _log(standby), "a standby must not reconcile"
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait(10)
        killed_at = time.monotonic()

        took_over_from = wait_until(
            lambda: _became_leader(standby, ns), 30, "the standby to take over", interval=0.1, describe=describe
        )
        failover = time.monotonic() - killed_at
        print(f"\nfailover after SIGKILL of the leader: {failover:.1f}s (lease duration 10s, retry period 2s)")
        assert took_over_from == leader_name
        wait_until(lambda: "takeover pass done" in _log(standby), 30, "the takeover pass", describe=describe)
        assert failover <= 20, f"the standby took {failover:.1f}s to take over"
        lease = kube.get(lease_path)["spec"]
        assert lease["holderIdentity"] == standby_name and lease["leaseTransitions"] == 1

        wait_until(lambda: phase_or_none() == "Succeeded", 300, "the run to succeed", describe=describe)
        jobs = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
        assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]

        # The killed replica restarts as a standby; the leader's clean shutdown (SIGTERM)
        # releases the Lease, so the standby takes over at its next retry, not 10 s later.
        leader.start()
        wait_until(
            lambda: _log(leader).count(f"waiting for leadership (lease {ns}/{LEASE} held by {standby_name})") >= 1,
            60,
            "the restarted replica to stand by",
            describe=describe,
        )
        stopped_at = time.monotonic()
        standby.stop()
        assert f"released the lease {ns}/{LEASE}" in _log(standby)
        wait_until(
            lambda: _log(leader).count(f"became the leader (lease {ns}/{LEASE}") >= 2,
            10,
            "the restarted replica to take the released lease",
            interval=0.1,
            describe=describe,
        )
        handover = time.monotonic() - stopped_at
        print(f"handover after SIGTERM of the leader: {handover:.1f}s")
        lease = kube.get(lease_path)["spec"]
        assert lease["holderIdentity"] == leader_name and lease["leaseTransitions"] == 2
    finally:
        for op in replicas.values():
            op.stop()
