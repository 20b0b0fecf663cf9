"""kopf handlers of Experiments: every event of an Experiment or of one of its children
(TrainingRuns, Benchmarks, the report Job) reconciles the Experiment; nothing else.

Children carry the Experiment's full name in an annotation (a label value is cut at 63
characters), which maps their events back. As for TrainingRuns, only ``on.event`` is used:
kopf writes nothing onto the objects. Handler names are unique across modules: kopf identifies a
handler by its function name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubegym_operator import GROUP, VERSION
from kubegym_operator.api.benchmark import PLURAL as BENCHMARK_PLURAL
from kubegym_operator.api.experiment import PLURAL
from kubegym_operator.api.trainingrun import PLURAL as RUN_PLURAL
from kubegym_operator.builders.experiment import EXPERIMENT_LABEL, EXPERIMENT_NAME_ANNOTATION
from kubegym_operator.builders.experiment_report import REPORT_LABEL
from kubegym_operator.builders.status import Event
from kubegym_operator.controllers import experiment
from kubegym_operator.handlers.resync import resync_unfinished, unless_namespace_terminating
from kubegym_operator.kubeapi import Obj, post_event
from kubegym_operator.state import STATE

log = logging.getLogger("kubegym.handlers")


def emit(exp: Obj, event: Event) -> None:
    try:
        post_event(exp, event.type, event.reason, event.message)
    except Exception as e:  # noqa: BLE001 - an Event is best effort; the status is the truth
        log.warning("could not post event %s on %s: %s", event.reason, exp["metadata"]["name"], e)


def reconcile(namespace: str, name: str) -> None:
    with unless_namespace_terminating(namespace, name):
        experiment.reconcile(namespace, name, STATE.settings, emit)


def resync() -> None:
    """Reconcile every unfinished Experiment (pending grace periods depend on the clock)."""
    resync_unfinished(PLURAL, reconcile)


def _parent(annotations: Mapping[str, str], namespace: str | None) -> None:
    if EXPERIMENT_NAME_ANNOTATION in annotations and namespace:
        reconcile(namespace, annotations[EXPERIMENT_NAME_ANNOTATION])


@kopf.on.event(GROUP, VERSION, PLURAL)
def experiment_event(type: str, name: str, namespace: str | None, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    if type != "DELETED" and namespace:
        reconcile(namespace, name)


@kopf.on.event(GROUP, VERSION, RUN_PLURAL, labels={EXPERIMENT_LABEL: kopf.PRESENT})
def experiment_run_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)


@kopf.on.event(GROUP, VERSION, BENCHMARK_PLURAL, labels={EXPERIMENT_LABEL: kopf.PRESENT})
def experiment_benchmark_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)


@kopf.on.event("batch", "v1", "jobs", labels={REPORT_LABEL: kopf.PRESENT})
def experiment_report_job_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)
