"""Chaos case 6: the whole local cluster is stopped (``down``) and started again (``up``) mid-run.

``down`` stops MinIO, the node (and with it the runner), the scheduler, the controller
manager, the API server and etcd; no runner may outlive it (it would train on, unseen). After
``up`` the run must go on from its newest checkpoint written before the stop, not from 0, with
the same Job, and finish Succeeded; the session's operator subprocess, which lived through
the stop, must pick the run up again by itself.
Recovery: ``up`` returned → the resumed runner's progress past its resume step.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.chaos.support import (
    Figures,
    Ledger,
    assert_manifests_intact,
    assert_succeeded,
    cartpole,
    checkpoint_folders,
    checkpoint_step,
    describe,
    newest_complete,
    pod_processes,
    progress,
    reconnect,
    resumes,
    runner_log,
    running_pod,
    since,
    wait_finished,
)
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import artifacts_prefix, s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos(shared=True)

TOTAL = 24576
EVERY = 2048
NAME = "cluster-restart"


def test_run_resumes_after_the_whole_cluster_restarts(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    why = describe(kube, ns, [NAME], operator)
    t0 = time.monotonic()

    def ready() -> dict[str, Any] | None:
        return running_pod(kube, ns, NAME) if checkpoint_step(kube, ns, NAME) >= 2 * EVERY else None

    with Ledger(cluster, ns) as ledger:
        kubectl.apply(cartpole(NAME, TOTAL, EVERY))
        pod = wait_until(ready, 420, f"{NAME}'s second checkpoint", describe=why)
        steps_before, reported_checkpoint = int(progress(kube, ns, NAME)["timesteps"]), checkpoint_step(kube, ns, NAME)
        job_uid = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"][0]["metadata"]["uid"]
        down_at = datetime.now(UTC)
        try:
            t_down = time.monotonic()
            LocalCluster(cluster.state).down()
            down_seconds = since(t_down)
            orphans = pod_processes(pod["metadata"]["name"])
        finally:
            t_back = time.monotonic()
            LocalCluster(cluster.state).up()
        up_seconds, t_up = since(t_back), time.monotonic()
        reconnect(kube)
        s3, bucket = s3_client(kube, ns)
        folders = checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, NAME))
        newest = newest_complete(folders, created_before=down_at)

        def moving() -> bool:
            p = progress(kube, ns, NAME)
            return bool(p.get("resumedFromStep")) and p.get("timesteps", 0) > p["resumedFromStep"]

        wait_until(moving, 300, f"{NAME} to train again after the restart", describe=why)
        recovery = since(t_up)
        resumed = int(progress(kube, ns, NAME)["resumedFromStep"])
        st = wait_finished(kube, ns, NAME, 600, operator)
        ledger.poll()
    logged = [r for uid in ledger.pod_uids[NAME] for r in resumes(runner_log(cluster, uid))]
    jobs = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    figures.record(
        "6-cluster-down-up",
        faults_injected=1,
        down_seconds=down_seconds,
        up_seconds=up_seconds,
        steps_before=steps_before,
        reported_checkpoint=reported_checkpoint,
        newest_complete_before_down=newest.step if newest else None,
        resumed_from=resumed,
        steps_lost=steps_before - resumed,
        runner_orphans=orphans,
        runs=1,
        runs_lost=0 if st.get("phase") == "Succeeded" and st.get("result") else 1,
        duplicate_jobs=ledger.duplicate_jobs(),
        runner_pods=ledger.pod_count(NAME),
        recovery_seconds=recovery,
        wall_seconds=since(t0),
    )

    assert not orphans, f"runner processes outlived the cluster: {orphans}"
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died:\n" + operator.tail()
    assert newest is not None, f"no complete checkpoint written before the stop: {folders}"
    assert resumed >= reported_checkpoint > 0, (resumed, reported_checkpoint)
    assert resumed == newest.step, f"resumed from {resumed}, the newest complete checkpoint was {newest.step}"
    assert [step for _, step in logged] == [newest.step], logged
    assert_succeeded(st, NAME)
    assert [j["metadata"]["uid"] for j in jobs] == [job_uid]
    ledger.assert_one_job(NAME)
    ledger.assert_no_overlap()
    assert_manifests_intact(checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, NAME)), NAME)
