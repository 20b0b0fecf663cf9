"""kopf handlers of the kinds that own a Job, registered once per kind from :data:`OWNERS`.

Every event of an owner, of its Job or of the Job's pods reconciles the owner (by the annotation
that names it on them; a label value is cut at 63 characters), and the end of a TrainingRun wakes
the Benchmarks that wait for it. The reconcile reads the watch-fed view, so an event that
changed nothing costs no API call.

The handlers are ``async`` and only add the owner's key to the work queue
(:data:`~kubegym_operator.workqueue.REQUESTS`), whose threads reconcile: kopf drops the event at
once instead of holding it until an executor thread is free (see :mod:`kubegym_operator.workqueue`).

Only ``on.event`` handlers, never kopf's change-detecting ones (create/update/resume/delete),
and they return nothing: kopf keeps no diff-base and no progress on the objects, and posts none
of its Events, so nothing in their metadata or spec is written but by the user and Argo CD sees
no drift. Deletion needs no handler: everything an owner has carries its owner reference. kopf
identifies a handler by its id, which is the kind's :attr:`OwnerWatch.id` and the event's source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kubegym_api import GROUP, VERSION
from kubegym_api.benchmark import PLURAL as BENCHMARKS
from kubegym_api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator import reconciler
from kubegym_operator.builders.benchmark import BENCHMARK_LABEL, BENCHMARK_NAME_ANNOTATION
from kubegym_operator.builders.job import RUN_LABEL, RUN_NAME_ANNOTATION
from kubegym_operator.handlers.watched import CLUSTER
from kubegym_operator.jobowners.benchmark import WAITING, BenchmarkJobs
from kubegym_operator.jobowners.trainingrun import TrainingRunJobs
from kubegym_operator.reconciler import JobOwner
from kubegym_operator.settings import Settings
from kubegym_operator.state import STATE
from kubegym_operator.workqueue import REQUESTS


@dataclass(frozen=True)
class OwnerWatch:
    """How the events of one kind that owns a Job reach its reconcile.

    ``id`` prefixes its handlers' ids; ``plural`` is the resource; ``child_label`` marks its Jobs
    and pods and ``owner_annotation`` names the owner on them; ``adapter`` makes the kind's
    :class:`~kubegym_operator.reconciler.JobOwner` from the operator's settings.
    """

    id: str
    plural: str
    child_label: str
    owner_annotation: str
    adapter: Callable[[Settings], JobOwner[Any]]


TRAINING_RUN = OwnerWatch("trainingrun", TRAINING_RUNS, RUN_LABEL, RUN_NAME_ANNOTATION, TrainingRunJobs)
BENCHMARK = OwnerWatch("benchmark", BENCHMARKS, BENCHMARK_LABEL, BENCHMARK_NAME_ANNOTATION, BenchmarkJobs)
#: Every kind that owns a Job, in the order of registration.
OWNERS = (TRAINING_RUN, BENCHMARK)


def reconcile(owner: OwnerWatch, namespace: str, name: str) -> None:
    """Reconcile ``namespace/name`` of ``owner``'s kind against the live cluster (on the leader only)."""
    if not STATE.leading.is_set():
        return
    reconciler.reconcile(owner.adapter(STATE.settings), CLUSTER, namespace, name, issuer=STATE.issuer)


def request(owner: OwnerWatch, namespace: str, name: str) -> None:
    """Queue a reconcile of ``namespace/name`` of ``owner``'s kind (folded with any already waiting)."""
    REQUESTS.add((owner.id, namespace, name))


def register(owner: OwnerWatch) -> None:
    """The handlers of one kind: its own events, its Jobs' and its pods'; and its queue route."""
    REQUESTS.route(owner.id, lambda namespace, name: reconcile(owner, namespace, name))

    async def owner_event(name: str | None, namespace: str | None, **_: Any) -> None:
        # DELETED too: the reconcile finds it gone in the view and drops what its adapter tracked.
        if namespace and name:
            request(owner, namespace, name)

    async def child_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        name = annotations.get(owner.owner_annotation)
        if namespace and name:
            request(owner, namespace, name)

    kopf.on.event(GROUP, VERSION, owner.plural, id=f"{owner.id}_event")(owner_event)
    kopf.on.event("batch", "v1", "jobs", labels={owner.child_label: kopf.PRESENT}, id=f"{owner.id}_job_event")(
        child_event
    )
    kopf.on.event("", "v1", "pods", labels={owner.child_label: kopf.PRESENT}, id=f"{owner.id}_pod_event")(child_event)


for _owner in OWNERS:
    register(_owner)


@kopf.on.event(GROUP, VERSION, TRAINING_RUNS, id="waiting_benchmarks_event")
async def waiting_benchmarks_event(name: str | None, namespace: str | None, **_: Any) -> None:
    """A referenced run that appeared, moved or finished wakes the Benchmarks waiting for it (an
    in-memory lookup; the reconcile writes only when the run's phase changed)."""
    if namespace and name:
        for waiting in WAITING.waiting_for(namespace, name):
            request(BENCHMARK, namespace, waiting)
