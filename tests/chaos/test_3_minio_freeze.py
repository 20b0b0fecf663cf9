"""Chaos case 3: MinIO is frozen (SIGSTOP) for 60 s mid-run, then thawed (SIGCONT).

A frozen S3 accepts connections and never answers: the worst kind of outage for a client.
Checkpoints are attempted during the freeze (one every 1000 steps), yet training must not
stall: ``status.progress.timesteps`` (written to the API server, not to S3) has to rise in
every third of the freeze. After the thaw the run checkpoints again (recovery: SIGCONT →
a newer checkpoint reported), succeeds, and no manifest in S3 is torn.

The budget is sized from SAC's throughput on this machine (measured first), so training
outlasts the freeze by about 30 s wherever the suite runs.
"""

from __future__ import annotations

import math
import time

import boto3
import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.chaos.support import (
    Figures,
    Ledger,
    assert_manifests_intact,
    assert_succeeded,
    checkpoint_folders,
    checkpoint_step,
    describe,
    frozen,
    pendulum_sac,
    progress,
    running_pod,
    sac_steps_per_second,
    since,
    wait_finished,
)
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import artifacts_prefix, s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos

FREEZE = 60.0
EVERY = 1000
#: Training wanted after the freeze (seconds at the measured throughput).
AFTER = 30.0
NAME = "frozen-s3"


def s3_answers(cluster: LocalCluster) -> bool:
    """Whether MinIO answers a listing within 3 s (one try)."""
    from botocore.config import Config

    creds = cluster.minio().credentials()
    client = boto3.client(
        "s3",
        endpoint_url=creds["endpoint"],
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        region_name="us-east-1",
        config=Config(connect_timeout=3, read_timeout=3, retries={"total_max_attempts": 1}),
    )
    try:
        client.list_buckets()
    except Exception:  # noqa: BLE001 - a timeout is the answer we want
        return False
    return True


def test_training_goes_on_while_minio_is_frozen(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    why = describe(kube, ns, [NAME], operator)
    sps = sac_steps_per_second()
    total = int(math.ceil((EVERY + sps * (FREEZE + AFTER)) / EVERY) * EVERY)

    def steps() -> int:
        return int(progress(kube, ns, NAME).get("timesteps", 0))

    t0 = time.monotonic()
    with Ledger(cluster, ns) as ledger:
        kubectl.apply(pendulum_sac(NAME, total, EVERY))
        wait_until(
            lambda: running_pod(kube, ns, NAME) and checkpoint_step(kube, ns, NAME) >= EVERY,
            420,
            f"{NAME}'s first checkpoint",
            describe=why,
        )
        samples: list[tuple[float, int]] = []
        with frozen(cluster, "minio"):
            t_freeze = time.monotonic()
            checkpoint_at_freeze = checkpoint_step(kube, ns, NAME)
            answered = s3_answers(cluster)
            while (elapsed := time.monotonic() - t_freeze) < FREEZE:
                samples.append((round(elapsed, 1), steps()))
                time.sleep(1.0)
            checkpoint_at_thaw = checkpoint_step(kube, ns, NAME)
        t_thaw = time.monotonic()
        steps_at_thaw = samples[-1][1]
        wait_until(
            lambda: checkpoint_step(kube, ns, NAME) > checkpoint_at_thaw,
            300,
            "a checkpoint after the thaw",
            describe=why,
        )
        recovery = since(t_thaw)
        st = wait_finished(kube, ns, NAME, 600, operator)
        ledger.poll()

    thirds = [[s for t, s in samples if i * FREEZE / 3 <= t < (i + 1) * FREEZE / 3] for i in range(3)]
    rises = [w[-1] - w[0] if len(w) > 1 else 0 for w in thirds]
    longest_stall, changed_at = 0.0, samples[0]
    for t, value in samples:
        if value > changed_at[1]:
            changed_at = (t, value)
        longest_stall = max(longest_stall, t - changed_at[0])
    s3, bucket = s3_client(kube, ns)
    folders = checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, NAME))
    figures.record(
        "3-minio-frozen",
        faults_injected=1,
        freeze_seconds=FREEZE,
        measured_sac_steps_per_second=round(sps, 1),
        total_timesteps=total,
        steps_at_freeze=samples[0][1],
        steps_at_thaw=steps_at_thaw,
        steps_gained_per_third_of_freeze=rises,
        checkpoint_at_freeze=checkpoint_at_freeze,
        checkpoint_at_thaw=checkpoint_at_thaw,
        runs=1,
        runs_lost=0 if st.get("phase") == "Succeeded" and st.get("result") else 1,
        duplicate_jobs=ledger.duplicate_jobs(),
        runner_pods=ledger.pod_count(NAME),
        longest_progress_stall_seconds=round(longest_stall, 1),
        recovery_seconds=recovery,
        wall_seconds=since(t0),
    )

    assert steps_at_thaw < total, f"training ended during the freeze ({steps_at_thaw}/{total}); size it longer"
    assert not answered, "MinIO answered while it was frozen"
    assert all(r > 0 for r in rises), (
        f"training stalled while S3 was frozen: steps gained per 20 s {rises}; samples {samples}"
    )
    assert_succeeded(st, NAME)
    ledger.assert_one_job(NAME)
    assert ledger.pod_count(NAME) == 1, f"the freeze restarted the runner: {ledger.pods[NAME]}"
    assert_manifests_intact(folders, NAME)
    assert max(f.step for f in folders.values() if f.complete) > steps_at_thaw
