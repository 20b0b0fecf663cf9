"""How the handlers are wired into kopf: one registration per kind that owns a Job, the indexes that
feed the view, the DELETED handlers ahead of everything that reconciles, and events routed to the
right owner."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest

import kubegym_operator.handlers  # noqa: F401 - registers every handler
from kubegym_operator.handlers import jobowners, watched
from kubegym_operator.watched import Kind
from kubegym_operator.workqueue import REQUESTS


def watching_ids() -> list[str]:
    return [h.id for h in kopf.get_default_registry()._watching.get_all_handlers()]


def test_each_kind_that_owns_a_job_has_its_own_event_job_and_pod_handlers_once() -> None:
    ids = watching_ids()
    assert len(ids) == len(set(ids))
    for owner in jobowners.OWNERS:
        for source in ("event", "job_event", "pod_event"):
            assert ids.count(f"{owner.id}_{source}") == 1


def test_deleted_objects_are_forgotten_before_anything_reconciles_on_that_event() -> None:
    ids = watching_ids()
    assert ids.index("forget_deleted_jobs") < min(ids.index(f"{o.id}_job_event") for o in jobowners.OWNERS)
    assert ids.index("forget_deleted_jobs") < ids.index("experiment_report_job_event")
    assert ids.index("forget_deleted_trainingruns") < ids.index("trainingrun_event")


def test_the_view_reads_kopfs_indexes_handed_to_startup_by_id() -> None:
    registered = {h.id for h in kopf.get_default_registry()._indexing.get_all_handlers()}
    assert registered == set(watched.INDEX_IDS.values())
    job = {"kind": "Job", "metadata": {"name": "j", "namespace": "ns", "resourceVersion": "1"}}
    indices: dict[str, Any] = {index_id: {} for index_id in watched.INDEX_IDS.values()}
    indices[watched.INDEX_IDS[Kind.JOB]] = {("ns", "j"): [job]}
    before = {kind: watched.VIEW._sources.get(kind) for kind in Kind if kind != Kind.POD}
    try:
        watched.attach(indices)
        assert watched.CLUSTER.get(Kind.JOB, "ns", "j") == job
    finally:
        for kind, source in before.items():
            watched.VIEW.attach(kind, source or {})
        watched.VIEW.attach(Kind.POD, {})


def _handler(handler_id: str) -> Any:
    (handler,) = [h for h in kopf.get_default_registry()._watching.get_all_handlers() if h.id == handler_id]
    return handler.fn


@pytest.mark.parametrize(
    ("handler_id", "kwargs", "owner", "name"),
    [
        ("trainingrun_event", {"name": "cartpole", "type": "MODIFIED"}, "trainingrun", "cartpole"),
        (
            "trainingrun_job_event",
            {"annotations": {"kubegym.io/training-run-name": "cartpole"}},
            "trainingrun",
            "cartpole",
        ),
        ("benchmark_pod_event", {"annotations": {"kubegym.io/benchmark-name": "compare"}}, "benchmark", "compare"),
        ("benchmark_job_event", {"annotations": {}}, None, None),
    ],
)
def test_events_reach_their_owners_reconcile(
    monkeypatch: pytest.MonkeyPatch, handler_id: str, kwargs: dict[str, Any], owner: str | None, name: str | None
) -> None:
    seen: list[tuple[str, str, str]] = []
    monkeypatch.setattr(jobowners, "reconcile", lambda o, ns, n: seen.append((o.id, ns, n)))
    handler = _handler(handler_id)
    assert asyncio.iscoroutinefunction(handler)  # never parks an event on kopf's executor
    assert asyncio.run(handler(namespace="ns", **kwargs)) is None  # a result would be written into status
    assert seen == []  # queued, not reconciled on kopf's loop
    REQUESTS.drain()
    assert seen == ([(owner, "ns", name)] if owner else [])


def as_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def _index(index_id: str) -> Any:
    (handler,) = [h for h in kopf.get_default_registry()._indexing.get_all_handlers() if h.id == index_id]
    return handler


def test_indexes_key_objects_by_name_and_pods_by_their_job_and_keep_slim_copies() -> None:
    labels = {"batch.kubernetes.io/job-name": "j"}
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "labels": {"batch.kubernetes.io/job-name": "j"},
            "managedFields": [1],
        },
        "spec": {"containers": [{"name": "runner", "env": [{"name": "SECRETISH", "value": "x"}]}]},
    }
    index = _index(watched.INDEX_IDS[Kind.POD])
    result = asyncio.run(index.fn(body=as_body(pod), namespace="ns", labels=labels))
    assert result == {
        ("ns", "j"): {
            **pod,
            "metadata": {k: v for k, v in pod["metadata"].items() if k != "managedFields"},
            "spec": {"containers": [{"name": "runner"}]},
        }
    }
    assert asyncio.run(index.fn(body=as_body(pod), namespace="ns", labels={})) is None
    assert index.when is not None and not index.when(labels={"app": "other"})
    assert index.when(labels={"kubegym.io/training-run": "cartpole"})
    run: dict[str, Any] = {"kind": "TrainingRun", "metadata": {"name": "cartpole", "namespace": "ns"}}
    by_name = _index(watched.INDEX_IDS[Kind.TRAINING_RUN])
    assert asyncio.run(by_name.fn(body=as_body(run), namespace="ns", name="cartpole")) == {("ns", "cartpole"): run}


def test_the_deleted_handlers_run_for_deleted_events_only() -> None:
    jobs: Any = next(
        h for h in kopf.get_default_registry()._watching.get_all_handlers() if h.id == "forget_deleted_jobs"
    )
    assert jobs.when is not None
    owned = {"kubegym.io/benchmark": "compare"}
    assert jobs.when(type="DELETED", labels=owned)
    assert not jobs.when(type="MODIFIED", labels=owned)
    assert not jobs.when(type="DELETED", labels={"app": "other"})
    job = {"kind": "Job", "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "5"}}
    watched.VIEW.wrote("Job", job)
    asyncio.run(jobs.fn(body=as_body(job)))
    assert watched.VIEW.get(Kind.JOB, "ns", "j") is None
