"""Builders of the objects reconcile tests start from (in the manner of Kueue's ``testingjobs``):
owners as the API server returns them (defaults applied), the Job the operator rendered as the
Job controller then shows it, and its pods as the kubelet reports them.

Times are relative to :data:`NOW`, the clock every reconcile test runs at.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from kubegym_operator.builders.job import render_job as render_training_job
from kubegym_operator.builders.timestamps import format_time
from kubegym_operator.settings import Settings
from kubegym_operator.watched import JOB_NAME_LABEL

Obj = dict[str, Any]

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NAMESPACE = "research"
STORAGE = {"bucket": "kubegym", "prefix": "runs/", "endpoint": "http://minio.minio:9000", "secretRef": "minio-creds"}
#: The operator's settings in these tests: no default storage (a run without its own fails), 300 s
#: of pending-error grace.
SETTINGS = Settings(pending_error_grace_seconds=300)


def ago(seconds: float) -> str:
    """The timestamp ``seconds`` before :data:`NOW`."""
    return format_time(NOW - timedelta(seconds=seconds))


def now() -> datetime:
    """The reconcile tests' clock."""
    return NOW


def _metadata(kind: str, name: str, namespace: str, uid: str | None, generation: int, created: float) -> Obj:
    return {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{kind.lower()}-{name}",
        "generation": generation,
        "creationTimestamp": ago(created),
    }


def make_run(
    name: str = "cartpole",
    namespace: str = NAMESPACE,
    *,
    status: Obj | None = None,
    uid: str | None = None,
    generation: int = 1,
    created: float = 600,
    **spec: Any,
) -> Obj:
    """A TrainingRun with its own storage, unsuspended; ``spec`` keys (camelCase) override the spec's."""
    body: Obj = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1", "nEnvs": 4},
        "totalTimesteps": 100_000,
        "checkpoint": {"everySteps": 5000, "keepLast": 2, "storage": dict(STORAGE)},
        "resources": {"cpu": 2, "memory": "4Gi", "gpu": 0},
        "scheduling": {},
        "runPolicy": {"backoffLimit": 3},
        "suspend": False,
    }
    body.update(spec)
    run: Obj = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": _metadata("TrainingRun", name, namespace, uid, generation, created),
        "spec": body,
    }
    if status is not None:
        run["status"] = status
    return run


def make_benchmark(
    name: str = "compare",
    namespace: str = NAMESPACE,
    *,
    models: list[Obj] | None = None,
    status: Obj | None = None,
    uid: str | None = None,
    created: float = 600,
    **spec: Any,
) -> Obj:
    """A Benchmark of one uploaded model (or ``models``) on CartPole, with its own storage."""
    body: Obj = {
        "models": models or [{"name": "uploaded", "uri": "s3://kubegym/uploads/abc/model.zip", "algorithm": "DQN"}],
        "environments": [{"id": "CartPole-v1"}],
        "episodes": 20,
        "seeds": [0],
        "deterministic": True,
        "nEnvs": 4,
        "statistic": "IQM",
        "device": "cpu",
        "resources": {"cpu": 1, "memory": "2Gi", "gpu": 0},
        "scheduling": {},
        "runPolicy": {"backoffLimit": 1},
        "storage": dict(STORAGE),
    }
    body.update(spec)
    bench: Obj = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Benchmark",
        "metadata": _metadata("Benchmark", name, namespace, uid, 1, created),
        "spec": body,
    }
    if status is not None:
        bench["status"] = status
    return bench


def make_job(
    manifest: Obj,
    *,
    conditions: tuple[tuple[str, str], ...] = (),
    active: int = 0,
    failed: int = 0,
    started: float | None = 300,
    suspend: bool | None = None,
    created: float = 300,
) -> Obj:
    """The Job ``manifest`` (as the operator rendered it) with the Job controller's status:
    ``conditions`` as (type, reason) pairs, all True."""
    job = copy.deepcopy(manifest)
    job["metadata"]["creationTimestamp"] = ago(created)
    if suspend is not None:
        job["spec"]["suspend"] = suspend
    status: Obj = {"active": active, "failed": failed}
    if started is not None:
        status["startTime"] = ago(started)
    if conditions:
        status["conditions"] = [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": f"job says {reason}",
                "lastTransitionTime": ago(5),
            }
            for kind, reason in conditions
        ]
        if any(kind == "Complete" for kind, _ in conditions):
            status["completionTime"] = ago(5)
    job["status"] = status
    return job


def training_job(run: Obj, settings: Settings = SETTINGS, **status: Any) -> Obj:
    """The run's Job as :func:`~kubegym_operator.builders.job.render_job` renders it, with
    :func:`make_job`'s status."""
    return make_job(render_training_job(run, settings), **status)


def make_pod(
    job: Obj,
    phase: str = "Pending",
    *,
    suffix: str = "abcde",
    created: float = 60,
    node: str | None = "local-node",
    waiting: tuple[str, str] | None = None,
    running: float | None = None,
    terminated: Obj | None = None,
    unschedulable: str | None = None,
) -> Obj:
    """A pod of ``job`` in ``phase``; the runner container ``waiting`` (reason, message), running for
    ``running`` seconds, or ``terminated`` (a containerStatus ``terminated`` mapping)."""
    meta = job["metadata"]
    labels = {**((job["spec"].get("template") or {}).get("metadata") or {}).get("labels", {})}
    labels[JOB_NAME_LABEL] = meta["name"]
    labels["job-name"] = meta["name"]
    state: Obj = {}
    if waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif running is not None:
        state = {"running": {"startedAt": ago(running)}}
    elif terminated is not None:
        state = {"terminated": terminated}
    conditions: list[Obj] = []
    if unschedulable is not None:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
        node = None
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": dict(((job["spec"].get("template") or {}).get("metadata") or {}).get("annotations", {})),
            "creationTimestamp": ago(created),
        },
        "spec": {"containers": [{"name": "runner", "resources": {"limits": {"memory": "4Gi"}}}]},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "runner", "state": state, "lastState": {}}],
        },
    }
    if node:
        pod["spec"]["nodeName"] = node
    return pod


def terminated(code: int, *, message: str = "", reason: str | None = None, started: float = 240) -> Obj:
    """A runner container's ``terminated`` state with ``code``, ended 10 s ago."""
    return {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "message": message,
        "startedAt": ago(started),
        "finishedAt": ago(10),
    }
