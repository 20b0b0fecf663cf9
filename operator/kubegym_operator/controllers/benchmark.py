"""Reconcile one Benchmark: resolve its models, make its Job exist, make its status true.

Level-triggered and idempotent like the TrainingRun's: it reads the Benchmark, the TrainingRuns
it refers to (until its Job exists), its Job and the Job's pods, and acts on what it sees.
Benchmarks waiting for a TrainingRun are remembered in :data:`WAITING`, so that the run's
events wake them; the periodic resync rebuilds that index after a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from kubegym_operator import metrics
from kubegym_operator.api.benchmark import PLURAL
from kubegym_operator.api.trainingrun import PLURAL as TRAINING_RUNS
from kubegym_operator.builders.benchmark import (
    Resolution,
    evaluation_job_name,
    parse_spec,
    referenced_runs,
    render_evaluator_rbac,
    render_job,
    resolve_models,
    ttl_patch,
)
from kubegym_operator.builders.benchmark_status import compute_status, failed_status
from kubegym_operator.builders.job import RenderError
from kubegym_operator.builders.status import StatusUpdate, is_terminal
from kubegym_operator.controllers.common import EventSink, ObjectLocks, job_path, object_path, write_status
from kubegym_operator.kubeapi import (
    Obj,
    collection_path,
    create_if_absent,
    delete,
    get_or_none,
    json_patch,
    list_items,
)
from kubegym_operator.settings import Settings

log = logging.getLogger("kubegym.benchmark")

#: One reconcile at a time per Benchmark.
_lock = ObjectLocks()


class WaitIndex:
    """Which Benchmarks wait for which TrainingRun, per namespace (in memory; thread safe)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._by_run: dict[tuple[str, str], set[str]] = {}

    def set(self, namespace: str, benchmark: str, runs: list[str]) -> None:
        """Record that ``benchmark`` now waits for exactly ``runs``."""
        with self._guard:
            for key in [k for k in self._by_run if k[0] == namespace]:
                self._by_run[key].discard(benchmark)
                if not self._by_run[key]:
                    del self._by_run[key]
            for run in runs:
                self._by_run.setdefault((namespace, run), set()).add(benchmark)

    def waiting_for(self, namespace: str, run: str) -> list[str]:
        with self._guard:
            return sorted(self._by_run.get((namespace, run), ()))


WAITING = WaitIndex()


def benchmark_path(namespace: str, name: str) -> str:
    return object_path(PLURAL, namespace, name)


def training_run_path(namespace: str, name: str) -> str:
    return object_path(TRAINING_RUNS, namespace, name)


@metrics.instrument("Benchmark")
def reconcile(
    namespace: str, name: str, settings: Settings, emit: EventSink, now: Callable[[], dt.datetime] | None = None
) -> Obj | None:
    """Bring one Benchmark in line; returns the status written (None when nothing changed or it is gone)."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    with _lock(namespace, name):
        bench = get_or_none(benchmark_path(namespace, name))
        if bench is None or bench["metadata"].get("deletionTimestamp"):
            WAITING.set(namespace, name, [])
            return None
        job = get_or_none(job_path(namespace, evaluation_job_name(name)))
        resolution: Resolution | None = None
        if job is None and not is_terminal(bench):
            spec = parse_spec(bench)
            runs = {ref: get_or_none(training_run_path(namespace, ref)) for ref in referenced_runs(spec)}
            resolution = resolve_models(spec, runs, settings)
            WAITING.set(namespace, name, list(resolution.waiting))
            if resolution.models is not None:
                try:
                    job = _create(bench, settings, resolution)
                except RenderError as e:
                    return _write(bench, failed_status(bench, e.reason, e.message, now=clock()), emit)
        else:
            WAITING.set(namespace, name, [])
            if job is not None and not is_terminal(bench):
                patch = ttl_patch(bench, job, settings)
                if patch:
                    job = json_patch(job_path(namespace, job["metadata"]["name"]), patch)
        pods = []
        if job is not None:
            pods = list_items(
                f"/api/v1/namespaces/{namespace}/pods", f"batch.kubernetes.io/job-name={job['metadata']['name']}"
            )
        update = compute_status(bench, job, pods, resolution=resolution, now=clock(), settings=settings)
        metrics.job_started("Benchmark", job, bench.get("status") or {}, update.status)
        if update.stop_job and job is not None:
            log.info("%s/%s failed for good; stopping its Job", namespace, name)
            delete(job_path(namespace, job["metadata"]["name"]))
        return _write(bench, update, emit)


def _create(bench: Obj, settings: Settings, resolution: Resolution) -> Obj:
    assert resolution.models is not None
    job = render_job(bench, settings, resolution.models)
    for manifest in render_evaluator_rbac(bench):
        create_if_absent(collection_path(manifest), manifest)
    created = create_if_absent(collection_path(job), job)
    metrics.job_created("Benchmark", bench)
    meta = bench["metadata"]
    log.info("%s/%s: Job %s created", meta["namespace"], meta["name"], job["metadata"]["name"])
    return created


def _write(bench: Obj, update: StatusUpdate, emit: EventSink) -> Obj | None:
    meta = bench["metadata"]
    events = [update.event] if update.event is not None else []
    return write_status(bench, benchmark_path(meta["namespace"], meta["name"]), update.status, events, emit)
