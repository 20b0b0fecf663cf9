"""Chaos case 5: a run is deleted while it uploads a checkpoint; a new run resumes from its storage.

Run A (SAC on Pendulum with a full-size replay buffer, about 40 MB per checkpoint) trains
until one of its checkpoint uploads is seen in flight (objects of a new step folder listed, no
manifest yet). Right then the TrainingRun is deleted and its runner is SIGKILLed, as when the
grace period runs out or the node dies: the upload is cut, leaving a folder of objects without
a manifest. Deleting a run does not delete its artifacts.

Two more torn folders are planted in A's storage, newer than every real checkpoint: objects
without a manifest, and a manifest whose folder misses an object (the replay buffer).
Then run B, with another name and
``resumeFrom.uri`` pointing at A's run folder, must start from A's newest *complete* checkpoint
(every object matching the manifest's sha256), and succeed. Recovery: A deleted → B's progress
past its resume step.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.chaos.support import (
    MANIFEST,
    REPLAY_BUFFER,
    Figures,
    Ledger,
    assert_manifests_intact,
    assert_succeeded,
    checkpoint_folders,
    checkpoint_step,
    describe,
    newest_complete,
    pendulum_sac,
    pod_processes,
    progress,
    resumes,
    runner_log,
    runner_pods,
    since,
    wait_finished,
)
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import TR, artifacts_prefix, s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.chaos

TOTAL = 3000
EVERY = 500
A, B = "doomed", "heir"


def _full_buffer(name: str, **spec: Any) -> dict[str, Any]:
    manifest = pendulum_sac(name, TOTAL, EVERY, **spec)
    manifest["spec"]["hyperparameters"] = {}  # SAC's default 1e6-transition buffer: big uploads
    manifest["spec"]["checkpoint"]["keepLast"] = 2
    return manifest


def _exists(kube: Kube, path: str) -> bool:
    try:
        kube.get(path)
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    return True


def _upload_in_flight(s3: Any, bucket: str, run_prefix: str, timeout: float) -> tuple[int, list[str]] | None:
    """Poll the run's checkpoint listing until a folder newer than every complete one has objects
    but no manifest yet (an upload in progress); its step and the objects already there."""
    prefix = f"{run_prefix}/checkpoints/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders: dict[int, set[str]] = {}
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            folder, _, name = obj["Key"][len(prefix) :].partition("/")
            if folder.isdigit():
                folders.setdefault(int(folder), set()).add(name)
        complete = [step for step, names in folders.items() if MANIFEST in names]
        newest = max(complete, default=-1)
        for step, names in folders.items():
            if step > newest and MANIFEST not in names:
                return step, sorted(names)
        time.sleep(0.01)
    return None


def test_deleted_runs_half_written_checkpoints_are_never_chosen(
    cluster: LocalCluster,
    kube: Kube,
    namespace: str,
    kubectl: Kubectl,
    operator: OperatorProcess,
    figures: Figures,
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)
    why = describe(kube, ns, [A, B], operator)
    t0 = time.monotonic()
    with Ledger(cluster, ns) as ledger:
        kubectl.apply(_full_buffer(A))
        wait_until(lambda: checkpoint_step(kube, ns, A) >= EVERY, 420, f"{A}'s first checkpoint", describe=why)
        (pod,) = runner_pods(kube, ns, A)
        a_prefix = artifacts_prefix(kube, ns, A)  # A's own folder (its uid in the name), read while A exists
        in_flight = _upload_in_flight(s3, bucket, a_prefix, timeout=120)
        assert in_flight is not None, f"no upload of {A} was seen in flight within 120 s (uploads too fast to catch?)"
        step_in_flight, objects_in_flight = in_flight
        # The run is deleted mid-upload, and its runner dies before the upload ends, as when the
        # grace period runs out (or the node dies): SIGKILL, nothing can finish.
        kube.delete(f"{TR.format(ns=ns)}/{A}")
        killed = pod_processes(pod["metadata"]["name"])
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        t_fault = time.monotonic()
        steps_at_delete = step_in_flight
        wait_until(
            lambda: not _exists(kube, f"{TR.format(ns=ns)}/{A}") and not runner_pods(kube, ns, A),
            180,
            f"{A}, its Job and its pods to be gone",
            describe=why,
        )
        # Nothing writes A's storage any more.
        folders = checkpoint_folders(s3, bucket, a_prefix)
        real_partials = sorted(f.step for f in folders.values() if f.manifest is None)
        assert step_in_flight in real_partials, (step_in_flight, sorted(folders))
        assert_manifests_intact(folders, A)
        newest = newest_complete(folders)
        assert newest is not None and newest.manifest is not None, f"{A} left no complete checkpoint: {folders}"

        # Torn writes, newer than every real checkpoint: objects without a manifest, and a
        # manifest whose folder lacks one of its objects.
        top = max(folders)
        model = s3.get_object(Bucket=bucket, Key=f"{newest.key}/model.zip")["Body"].read()
        no_manifest = f"{a_prefix}/checkpoints/{top + 100:012d}"
        s3.put_object(Bucket=bucket, Key=f"{no_manifest}/model.zip", Body=model)
        missing_object = f"{a_prefix}/checkpoints/{top + 200:012d}"
        s3.put_object(Bucket=bucket, Key=f"{missing_object}/model.zip", Body=model)
        s3.put_object(
            Bucket=bucket,
            Key=f"{missing_object}/{MANIFEST}",
            Body=json.dumps({**newest.manifest, "step": top + 200}).encode(),
        )
        planted = checkpoint_folders(s3, bucket, a_prefix)
        assert REPLAY_BUFFER not in planted[top + 200].objects and not planted[top + 200].complete
        assert newest_complete(planted) == newest

        kubectl.apply(_full_buffer(B, resumeFrom={"uri": f"s3://{bucket}/{a_prefix}/"}))
        pod_b = wait_until(lambda: runner_pods(kube, ns, B), 240, f"{B}'s pod", describe=why)[0]
        lines = wait_until(
            lambda: resumes(runner_log(cluster, pod_b["metadata"]["uid"])),
            240,
            f"{B}'s 'resuming from' line",
            describe=why,
        )
        uri, step = lines[0]
        wait_until(
            lambda: progress(kube, ns, B).get("resumedFromStep") == step and progress(kube, ns, B)["timesteps"] > step,
            240,
            f"{B}'s progress past {step}",
            describe=why,
        )
        recovery = since(t_fault)
        st = wait_finished(kube, ns, B, 600, operator)
        ledger.poll()

    b_folders = checkpoint_folders(s3, bucket, artifacts_prefix(kube, ns, B))
    figures.record(
        "5-run-deleted-mid-upload",
        faults_injected=1,
        deleted_at_steps=steps_at_delete,
        objects_uploaded_when_killed=objects_in_flight,
        runner_processes_killed=len(killed),
        real_partial_folders=real_partials,
        planted_torn_folders=[top + 100, top + 200],
        newest_complete=newest.step,
        resumed_from=step,
        runs=1,
        runs_lost=0 if st.get("phase") == "Succeeded" and st.get("result") else 1,
        duplicate_jobs=ledger.duplicate_jobs(),
        recovery_seconds=recovery,
        wall_seconds=since(t0),
    )

    assert (uri.rstrip("/"), step) == (newest.uri(bucket), newest.step), (uri, step, sorted(planted))
    assert_succeeded(st, B)
    ledger.assert_one_job(A)
    ledger.assert_one_job(B)
    ledger.assert_no_overlap()
    assert_manifests_intact(b_folders, B)
    assert st["progress"]["resumedFromStep"] == newest.step
