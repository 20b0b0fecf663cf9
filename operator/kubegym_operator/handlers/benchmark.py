"""kopf handlers for Benchmark: events of a Benchmark, its Job or its pods reconcile it, and the
end of a TrainingRun wakes the Benchmarks waiting for it.

Only ``on.event`` handlers, as for TrainingRun: kopf writes nothing onto the objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubegym_operator import GROUP, VERSION
from kubegym_operator.api.benchmark import PLURAL
from kubegym_operator.api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator.builders.benchmark import BENCHMARK_LABEL, BENCHMARK_NAME_ANNOTATION
from kubegym_operator.builders.status import Event
from kubegym_operator.controllers import benchmark
from kubegym_operator.handlers.resync import resync_unfinished, unless_namespace_terminating
from kubegym_operator.kubeapi import Obj, post_event
from kubegym_operator.state import STATE

log = logging.getLogger("kubegym.handlers")


def emit(bench: Obj, event: Event) -> None:
    try:
        post_event(bench, event.type, event.reason, event.message)
    except Exception as e:  # noqa: BLE001 - an Event is best effort; the status is the truth
        log.warning("could not post event %s on %s: %s", event.reason, bench["metadata"]["name"], e)


def reconcile(namespace: str, name: str) -> None:
    with unless_namespace_terminating(namespace, name):
        benchmark.reconcile(namespace, name, STATE.settings, emit)


def resync() -> None:
    """Reconcile every unfinished Benchmark (this also rebuilds the index of waiting ones)."""
    resync_unfinished(PLURAL, reconcile)


@kopf.on.event(GROUP, VERSION, PLURAL)
def benchmark_event(type: str, name: str, namespace: str | None, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    if type != "DELETED" and namespace:
        reconcile(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={BENCHMARK_LABEL: kopf.PRESENT})
def benchmark_job_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    if BENCHMARK_NAME_ANNOTATION in annotations and namespace:
        reconcile(namespace, annotations[BENCHMARK_NAME_ANNOTATION])


@kopf.on.event("", "v1", "pods", labels={BENCHMARK_LABEL: kopf.PRESENT})
def benchmark_pod_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    if BENCHMARK_NAME_ANNOTATION in annotations and namespace:
        reconcile(namespace, annotations[BENCHMARK_NAME_ANNOTATION])


@kopf.on.event(GROUP, VERSION, TRAINING_RUNS)
def waiting_benchmarks_event(name: str, namespace: str | None, **_: Any) -> None:
    """A referenced run that appeared, moved or finished wakes the Benchmarks waiting for it (an
    in-memory lookup; the reconcile writes only when the run's phase changed)."""
    if namespace:
        for waiting in benchmark.WAITING.waiting_for(namespace, name):
            reconcile(namespace, waiting)
