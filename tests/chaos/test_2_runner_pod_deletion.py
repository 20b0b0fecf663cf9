"""Chaos case 2: SAC's runner pod is deleted 3 times; each new pod resumes with its replay buffer.

SAC on Pendulum checkpoints its replay buffer (``checkpoint.saveReplayBuffer``). Its pod is
deleted three times mid-training (SIGTERM: the runner checkpoints once more and exits), and
after each deletion:

* the folder the new pod resumes from is the newest *complete* checkpoint once the old pod
  is gone (manifest present, every object matching its sha256), never an older or a partial
  one, and at least the checkpoint the run had reported before the deletion;
* the replay buffer in that folder holds one transition per step, and the runner logs that it
  restored that many (``replay buffer restored: N transitions``);
* progress moves on from there (recovery: deletion → the new pod's progress past its resume step).

A twin run with the same spec and seed trains uninterrupted beside it; the interrupted run's
final evaluation must land within that run's spread (see :func:`band`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from kubegym_operator.builders.naming import training_job_name
from tests.chaos.support import (
    BUFFER_LINE,
    Figures,
    Ledger,
    assert_manifests_intact,
    assert_succeeded,
    checkpoint_folders,
    checkpoint_step,
    describe,
    newest_complete,
    pendulum_sac,
    progress,
    replay_buffer_size,
    resumes,
    runner_log,
    running_pod,
    since,
    wait_finished,
    wait_pod_gone,
)
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import artifacts_prefix, s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos

TOTAL = 5000
EVERY = 500
#: Reported timesteps at which the current pod is deleted.
THRESHOLDS = (1200, 2400, 3600)
CHAOS, CALM = "sac-chaos", "sac-calm"


def band(calm: dict[str, float], chaos: dict[str, float]) -> float:
    """How far the interrupted run's final mean reward may lie from the uninterrupted one's.

    Both are means over the same number of evaluation episodes of policies trained for the same
    budget; resuming reseeds the environments (``seed + step``), so the two runs see different
    episodes and their policies differ by training noise. Allowed: 3 standard errors of the
    difference of the two means (the episodes' spread) plus 250 for run-to-run training noise.
    At 5000 steps SAC has learnt Pendulum (seeds 3, 11, 23 in one process: -148..-192, episode
    std 57..88, so about 370 is allowed), while a policy that lost its learning on a resume scores
    -1200..-1500 — far outside.
    """
    n = max(1.0, calm["episodes"])
    stderr = math.sqrt((calm["stdReward"] ** 2 + chaos["stdReward"] ** 2) / n)
    return 3 * stderr + 250


def _delete_and_resume(
    cluster: LocalCluster,
    kube: Kube,
    ns: str,
    threshold: int,
    resumed_at: int,
    deleted: list[str],
    why: Callable[[], str],
) -> dict[str, Any]:
    """Delete the current pod once it is past ``threshold`` with a checkpoint of its own; check the resume."""
    s3, bucket = s3_client(kube, ns)

    def steps() -> int:
        return int(progress(kube, ns, CHAOS).get("timesteps", 0))

    def due() -> dict[str, Any] | None:
        pod = running_pod(kube, ns, CHAOS, not_uids=deleted)
        ok = steps() >= threshold and checkpoint_step(kube, ns, CHAOS) > resumed_at
        return pod if pod is not None and ok else None

    pod = wait_until(due, 420, f"{CHAOS} past {threshold} steps with a checkpoint of its own", describe=why)
    steps_before, reported_checkpoint = steps(), checkpoint_step(kube, ns, CHAOS)
    assert steps_before < TOTAL, f"{CHAOS} finished before the deletion at {threshold}; train longer"
    kube.delete(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
    deleted.append(pod["metadata"]["uid"])
    t_fault = time.monotonic()
    wait_pod_gone(kube, ns, pod, 180)
    gone_at = datetime.now(UTC)
    # Nothing writes this run's checkpoints now: the newest complete one is what must be chosen.
    folders = checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, CHAOS))
    assert_manifests_intact(folders, f"{CHAOS} after deletion {len(deleted)}")
    newest = newest_complete(folders, created_before=gone_at)
    assert newest is not None, f"no complete checkpoint of {CHAOS}: {folders}"
    assert newest.step >= reported_checkpoint, (newest.step, reported_checkpoint)
    buffered = replay_buffer_size(s3, bucket, newest)

    new_pod = wait_until(
        lambda: running_pod(kube, ns, CHAOS, not_uids=deleted), 240, "the replacement pod", describe=why
    )
    new_uid = str(new_pod["metadata"]["uid"])
    lines = wait_until(
        lambda: resumes(runner_log(cluster, new_uid)), 240, "the new pod's 'resuming from' line", describe=why
    )
    uri, step = lines[0]
    wait_until(
        lambda: (
            progress(kube, ns, CHAOS).get("resumedFromStep") == step
            and progress(kube, ns, CHAOS).get("timesteps", 0) > step
        ),
        240,
        f"progress past the resume step {step}",
        describe=why,
    )
    recovery = since(t_fault)
    restored = BUFFER_LINE.search(runner_log(cluster, new_uid))
    # The resume names the newest complete checkpoint (its buffer is checked at the end of the case).
    assert (uri.rstrip("/"), step) == (newest.uri(bucket), newest.step), (uri, step, sorted(folders))
    return {
        "pod": pod["metadata"]["name"],
        "at_steps": steps_before,
        "reported_checkpoint": reported_checkpoint,
        "newest_complete": newest.step,
        "resumed_from": step,
        "steps_lost": max(0, steps_before - step),
        "checkpoint": newest.key,
        "buffer_in_checkpoint": buffered,
        "buffer_logged": int(restored.group(1)) if restored else None,
        "recovery_seconds": recovery,
    }


def test_sac_resumes_with_its_replay_buffer_after_three_pod_deletions(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)
    why = describe(kube, ns, [CHAOS, CALM], operator)
    deletions: list[dict[str, Any]] = []
    short_buffers: list[str] = []
    buffer_lines: list[str] = []
    deleted: list[str] = []
    t0 = time.monotonic()
    with Ledger(cluster, ns) as ledger:
        for name in (CHAOS, CALM):
            kubectl.apply(pendulum_sac(name, TOTAL, EVERY))
        resumed_at = 0
        for threshold in THRESHOLDS:
            d = _delete_and_resume(cluster, kube, ns, threshold, resumed_at, deleted, why)
            deletions.append(d)
            if d["buffer_in_checkpoint"] != d["resumed_from"]:
                short_buffers.append(
                    f"{d['checkpoint']}: replay buffer of {d['buffer_in_checkpoint']} transitions "
                    f"in a checkpoint of step {d['resumed_from']}"
                )
            if d["buffer_logged"] != d["buffer_in_checkpoint"]:
                buffer_lines.append(
                    f"pod {d['pod']} (resumed from {d['checkpoint']}, buffer {d['buffer_in_checkpoint']}): "
                    f"logged {d['buffer_logged']}"
                )
            resumed_at = d["resumed_from"]
        results = {name: wait_finished(kube, ns, name, 600, operator) for name in (CHAOS, CALM)}
        ledger.poll()
    job = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{training_job_name(CHAOS)}")

    calm, chaos = (results[n].get("result") or {} for n in (CALM, CHAOS))
    allowed = band(calm, chaos) if calm and chaos else None
    lost = [n for n, st in results.items() if st.get("phase") != "Succeeded" or not st.get("result")]
    figures.record(
        "2-runner-pod-deleted",
        faults_injected=len(deletions),
        deletions=deletions,
        runs=2,
        runs_lost=len(lost),
        duplicate_jobs=ledger.duplicate_jobs(),
        runner_pods={n: ledger.pod_count(n) for n in (CHAOS, CALM)},
        recovery_seconds=[d["recovery_seconds"] for d in deletions],
        # Deleted pods count as failed pods of the Job (no DisruptionTarget condition): they are
        # charged to runPolicy.backoffLimit and delay the replacement by the Job's back-off.
        job_failed_pods=(job.get("status") or {}).get("failed", 0),
        final_mean_reward={CHAOS: chaos.get("meanReward"), CALM: calm.get("meanReward")},
        final_std_reward={CHAOS: chaos.get("stdReward"), CALM: calm.get("stdReward")},
        allowed_difference=allowed,
        wall_seconds=since(t0),
    )

    for name, st in results.items():
        assert_succeeded(st, name)
        ledger.assert_one_job(name)
        assert_manifests_intact(checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, name)), name)
    ledger.assert_no_overlap()
    assert ledger.pod_count(CHAOS) == 1 + len(THRESHOLDS), ledger.pods[CHAOS]
    assert ledger.pod_count(CALM) == 1, ledger.pods[CALM]
    assert allowed is not None
    assert abs(chaos["meanReward"] - calm["meanReward"]) <= allowed, (
        f"the interrupted run's final evaluation {chaos} is outside the uninterrupted run's spread {calm} (±{allowed:.0f})"
    )
    # A checkpoint's replay buffer holds one transition per step (n_envs 1, buffer larger than the budget).
    assert not short_buffers, "checkpoints whose replay buffer and step count disagree:\n" + "\n".join(short_buffers)
    assert not buffer_lines, (
        "the runner does not log the size of the replay buffer it restored (expected a line matching "
        f"{BUFFER_LINE.pattern!r} with the number of transitions loaded):\n" + "\n".join(buffer_lines)
    )
