"""kopf handlers that keep the per-object metrics (:data:`kubegym_operator.metrics.OBJECTS`) in
step with the watched resources.

Every event of a TrainingRun, Benchmark or Experiment — kopf's initial listing included — updates
that object's series; its DELETED event removes them, so a deleted object is gone from the next
scrape. :func:`resync` (run by the operator's periodic loop, acting every :data:`PRUNE_SECONDS`) forgets
objects whose DELETED event was lost while a watch was re-listed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from kubegym_api import GROUP, VERSION
from kubegym_api.benchmark import PLURAL as BENCHMARKS
from kubegym_api.experiment import PLURAL as EXPERIMENTS
from kubegym_api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator.apierrors import ApiError
from kubegym_operator.kubeapi import list_items
from kubegym_operator.metrics import OBJECTS

log = logging.getLogger("kubegym.metrics")

#: Kind label → plural of the resource.
PLURALS = {"TrainingRun": TRAINING_RUNS, "Benchmark": BENCHMARKS, "Experiment": EXPERIMENTS}


@kopf.on.event(GROUP, VERSION, TRAINING_RUNS)
def trainingrun_metrics(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    OBJECTS.observe("TrainingRun", type, body)


@kopf.on.event(GROUP, VERSION, BENCHMARKS)
def benchmark_metrics(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    OBJECTS.observe("Benchmark", type, body)


@kopf.on.event(GROUP, VERSION, EXPERIMENTS)
def experiment_metrics(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002 - kopf's kwarg
    OBJECTS.observe("Experiment", type, body)


def _live(kind: str) -> set[tuple[str, str]]:
    """(namespace, name) of every object of ``kind``: one cluster-wide list, or one list per
    namespace the cache knows when the operator may list only in its watched namespaces."""
    plural = PLURALS[kind]
    try:
        items = list_items(f"/apis/{GROUP}/{VERSION}/{plural}", "")
    except ApiError as e:
        if e.status != 403:
            raise
        items = []
        for namespace in OBJECTS.namespaces(kind):
            try:
                items += list_items(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}", "")
            except ApiError as err:
                if err.status != 404:
                    raise
    return {(item["metadata"]["namespace"], item["metadata"]["name"]) for item in items}


#: Seconds between two prunes. A DELETED event is missed only when a watch re-lists (410 Gone), so
#: one LIST of each kind every 10 minutes is enough, and idle runs cost next to no API calls.
PRUNE_SECONDS = 600.0
_schedule = {"next": 0.0}


def resync() -> None:
    """Prune the metrics of objects a LIST no longer shows, at most every :data:`PRUNE_SECONDS`."""
    if time.monotonic() < _schedule["next"]:
        return
    _schedule["next"] = time.monotonic() + PRUNE_SECONDS
    for kind in PLURALS:
        started = time.monotonic()
        try:
            live = _live(kind)
        except ApiError as e:
            log.debug("cannot list %s to prune metrics: %s", kind, e.reason)
            continue
        forgotten = OBJECTS.prune(kind, live, started)
        if forgotten:
            log.info("metrics: forgot %d deleted %s object(s) whose DELETED event was missed", forgotten, kind)
