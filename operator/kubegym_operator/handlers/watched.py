"""kopf's side of the watch-fed view: the indexes that fill it, the DELETED events that empty it,
and the live API the reconciles are handed.

One ``@kopf.index`` per watched resource: TrainingRuns, Benchmarks and Experiments by (namespace,
name); the Jobs of runs, Benchmarks and Experiment reports by (namespace, name); their pods by
(namespace, ``batch.kubernetes.io/job-name``). kopf lists each of them and indexes the listing
before any handler runs, so a restarted operator starts with the whole view; then every event
updates its object's entry before that event's handlers run, and DELETED removes it. The index
functions are ``async`` and only copy (:func:`~kubegym_operator.watched.slim`), so they run on
kopf's event loop and never wait for an executor thread busy reconciling.

:data:`VIEW` reads those indexes; :func:`attach` hands them over at startup (kopf passes every
index to the startup handlers by its id). :data:`CLUSTER` is the live
:class:`~kubegym_operator.clusterapi.ClusterAPI`: reads from :data:`VIEW`, writes over HTTP.

Importing this package's handlers registers this module first (see ``handlers/__init__``): kopf
runs an event's handlers in registration order, so a DELETED object's written copy is dropped
(:meth:`~kubegym_operator.watched.WatchedObjects.forget`) before its owner reconciles on that event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kubegym_api import GROUP, VERSION
from kubegym_api.benchmark import PLURAL as BENCHMARKS
from kubegym_api.experiment import PLURAL as EXPERIMENTS
from kubegym_api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator.builders.benchmark import BENCHMARK_LABEL
from kubegym_operator.builders.experiment_report import REPORT_LABEL
from kubegym_operator.builders.job import RUN_LABEL
from kubegym_operator.clusterapi import LiveClusterAPI
from kubegym_operator.kubeapi import Obj
from kubegym_operator.watched import JOB_NAME_LABEL, Key, Kind, WatchedObjects, slim

#: The watched objects, for every reconcile and the resync thread.
VIEW = WatchedObjects()
#: The cluster as the reconciles see it on a running operator.
CLUSTER = LiveClusterAPI(VIEW)

#: kopf's id of each index (also the keyword under which kopf passes it to handlers).
INDEX_IDS: Mapping[Kind, str] = {
    Kind.TRAINING_RUN: "kubegym_trainingruns",
    Kind.BENCHMARK: "kubegym_benchmarks",
    Kind.EXPERIMENT: "kubegym_experiments",
    Kind.JOB: "kubegym_jobs",
    Kind.POD: "kubegym_pods_by_job",
}
#: Labels that mark the Jobs (and their pods) the operator creates: a run's, a Benchmark's, a report's.
OWNED_LABELS = (RUN_LABEL, BENCHMARK_LABEL, REPORT_LABEL)


def attach(indices: Mapping[str, Any]) -> None:
    """Make :data:`VIEW` read kopf's indexes, given as kopf passes them to a handler (by id)."""
    for kind, index_id in INDEX_IDS.items():
        VIEW.attach(kind, indices[index_id])


def _owned(labels: Mapping[str, str], **_: Any) -> bool:
    return any(label in labels for label in OWNED_LABELS)


def _by_name(kind: Kind) -> Any:
    async def index(body: kopf.Body, namespace: str | None, name: str | None, **_: Any) -> dict[Key, Obj] | None:
        if not namespace or not name:
            return None
        return {(namespace, name): slim(kind, body)}

    return index


async def _pods_by_job(
    body: kopf.Body, namespace: str | None, labels: Mapping[str, str], **_: Any
) -> dict[Key, Obj] | None:
    job = labels.get(JOB_NAME_LABEL)
    if not namespace or not job:
        return None
    return {(namespace, job): slim(Kind.POD, body)}


def _deleted(type: str | None, **_: Any) -> bool:  # noqa: A002 - kopf's kwarg
    return type == "DELETED"


def _owned_and_deleted(labels: Mapping[str, str], type: str | None, **_: Any) -> bool:  # noqa: A002 - kopf's kwarg
    return _owned(labels) and _deleted(type)


def _forget(kind: Kind) -> Any:
    """The DELETED handler of ``kind`` (its filter keeps kopf from calling, and logging, it for
    any other event)."""

    async def forget(body: kopf.Body, **_: Any) -> None:
        VIEW.forget(kind, body)

    return forget


for _kind, _plural in (
    (Kind.TRAINING_RUN, TRAINING_RUNS),
    (Kind.BENCHMARK, BENCHMARKS),
    (Kind.EXPERIMENT, EXPERIMENTS),
):
    kopf.index(GROUP, VERSION, _plural, id=INDEX_IDS[_kind])(_by_name(_kind))
    kopf.on.event(GROUP, VERSION, _plural, when=_deleted, id=f"forget_deleted_{_plural}")(_forget(_kind))
kopf.index("batch", "v1", "jobs", when=_owned, id=INDEX_IDS[Kind.JOB])(_by_name(Kind.JOB))
kopf.on.event("batch", "v1", "jobs", when=_owned_and_deleted, id="forget_deleted_jobs")(_forget(Kind.JOB))
kopf.index("", "v1", "pods", when=_owned, id=INDEX_IDS[Kind.POD])(_pods_by_job)
