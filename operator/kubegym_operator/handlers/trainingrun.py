"""kopf handlers for TrainingRun: every event of a run, its Job or its pods reconciles the run.

Only ``on.event`` handlers are used, never kopf's change-detecting ones (create/update/
resume/delete), so kopf keeps no diff-base and no progress on the objects: nothing in
their metadata or spec is written but by the user, and Argo CD sees no drift. Deletion
needs no handler: everything a run owns carries its owner reference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubegym_operator import GROUP, VERSION
from kubegym_operator.api.trainingrun import PLURAL
from kubegym_operator.builders.job import RUN_LABEL, RUN_NAME_ANNOTATION
from kubegym_operator.builders.status import Event
from kubegym_operator.controllers import trainingrun
from kubegym_operator.handlers.resync import resync_unfinished, unless_namespace_terminating
from kubegym_operator.kubeapi import Obj, post_event
from kubegym_operator.state import STATE

log = logging.getLogger("kubegym.handlers")


def emit(run: Obj, event: Event) -> None:
    try:
        post_event(run, event.type, event.reason, event.message)
    except Exception as e:  # noqa: BLE001 - an Event is best effort; the status is the truth
        log.warning("could not post event %s on %s: %s", event.reason, run["metadata"]["name"], e)


def reconcile(namespace: str, name: str) -> None:
    with unless_namespace_terminating(namespace, name):
        trainingrun.reconcile(namespace, name, STATE.settings, emit)


def resync() -> None:
    resync_unfinished(PLURAL, reconcile)


@kopf.on.event(GROUP, VERSION, PLURAL)
def trainingrun_event(type: str, name: str, namespace: str | None, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    if type != "DELETED" and namespace:
        reconcile(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={RUN_LABEL: kopf.PRESENT})
def job_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    if RUN_NAME_ANNOTATION in annotations and namespace:
        reconcile(namespace, annotations[RUN_NAME_ANNOTATION])


@kopf.on.event("", "v1", "pods", labels={RUN_LABEL: kopf.PRESENT})
def pod_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    if RUN_NAME_ANNOTATION in annotations and namespace:
        reconcile(namespace, annotations[RUN_NAME_ANNOTATION])
