"""kopf handlers of Experiments: every event of an Experiment or of one of its children
(TrainingRuns, Benchmarks, the report Job and its pods) reconciles the Experiment; nothing else.

Children carry the Experiment's full name in an annotation (a label value is cut at 63
characters), which maps their events back. The reconcile reads the watch-fed view, so the burst
of events an Experiment's many runs make costs no API call, and folds into one or two passes
(:class:`~kubegym_operator.reconciler.ReconcileGate`). As for the kinds that own a Job, only
``on.event`` is used, the handlers return nothing (kopf writes nothing onto the objects) and they
only queue the Experiment's key (:data:`~kubegym_operator.workqueue.REQUESTS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kubegym_api import GROUP, VERSION
from kubegym_api.benchmark import PLURAL as BENCHMARK_PLURAL
from kubegym_api.experiment import PLURAL
from kubegym_api.trainingrun import PLURAL as RUN_PLURAL
from kubegym_operator.builders.experiment import EXPERIMENT_LABEL, EXPERIMENT_NAME_ANNOTATION
from kubegym_operator.builders.experiment_report import REPORT_LABEL
from kubegym_operator.controllers import experiment
from kubegym_operator.handlers.watched import CLUSTER
from kubegym_operator.state import STATE
from kubegym_operator.workqueue import REQUESTS

#: The work queue's route of Experiments.
ROUTE = "experiment"


def reconcile(namespace: str, name: str) -> None:
    """Reconcile the Experiment ``namespace/name`` against the live cluster (on the leader only)."""
    if not STATE.leading.is_set():
        return
    experiment.reconcile(CLUSTER, namespace, name, STATE.settings, issuer=STATE.issuer)


def request(namespace: str, name: str) -> None:
    """Queue a reconcile of the Experiment ``namespace/name``."""
    REQUESTS.add((ROUTE, namespace, name))


REQUESTS.route(ROUTE, lambda namespace, name: reconcile(namespace, name))


def _parent(annotations: Mapping[str, str], namespace: str | None) -> None:
    if EXPERIMENT_NAME_ANNOTATION in annotations and namespace:
        request(namespace, annotations[EXPERIMENT_NAME_ANNOTATION])


@kopf.on.event(GROUP, VERSION, PLURAL, id="experiment_event")
async def experiment_event(name: str | None, namespace: str | None, **_: Any) -> None:
    if namespace and name:
        request(namespace, name)


@kopf.on.event(GROUP, VERSION, RUN_PLURAL, labels={EXPERIMENT_LABEL: kopf.PRESENT}, id="experiment_run_event")
async def experiment_run_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)


@kopf.on.event(
    GROUP, VERSION, BENCHMARK_PLURAL, labels={EXPERIMENT_LABEL: kopf.PRESENT}, id="experiment_benchmark_event"
)
async def experiment_benchmark_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)


@kopf.on.event("batch", "v1", "jobs", labels={REPORT_LABEL: kopf.PRESENT}, id="experiment_report_job_event")
async def experiment_report_job_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)


@kopf.on.event("", "v1", "pods", labels={REPORT_LABEL: kopf.PRESENT}, id="experiment_report_pod_event")
async def experiment_report_pod_event(annotations: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    _parent(annotations, namespace)
