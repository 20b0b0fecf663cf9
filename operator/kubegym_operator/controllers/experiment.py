"""Reconcile one Experiment: its runs, their suspension, early stops, final Benchmarks, report.

Level-triggered and idempotent like the TrainingRun reconcile: it reads the Experiment, its
TrainingRuns (and the pods of the suspended ones, to know when a slot is really free), its
Benchmarks and its report Job, asks :func:`~kubegym_operator.builders.experiment_status.decide`
what to do, and does it. Children are created under deterministic names with
``create_if_absent``, so a restart or a duplicate event never creates a run twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from datetime import timedelta

from kubernetes.client.exceptions import ApiException

from kubegym_operator import GROUP, VERSION, metrics
from kubegym_operator.api.benchmark import PLURAL as BENCHMARK_PLURAL
from kubegym_operator.api.experiment import PLURAL, RunPhase
from kubegym_operator.api.trainingrun import PLURAL as RUN_PLURAL
from kubegym_operator.builders.experiment import (
    EXPERIMENT_LABEL,
    Plan,
    PlanError,
    owned_by,
    plan,
    render_run,
)
from kubegym_operator.builders.experiment_report import (
    benchmark_name,
    build_report_config,
    render_benchmark,
    render_report_job,
    render_report_rbac,
    report_job_name,
    report_storage,
)
from kubegym_operator.builders.experiment_status import (
    Actions,
    ChildView,
    Observed,
    benchmark_chunks,
    decide,
    report_inputs,
    view,
)
from kubegym_operator.builders.job import RUN_LABEL, RenderError, run_prefix
from kubegym_operator.builders.naming import label_value
from kubegym_operator.builders.status import EARLY_STOPPED_ANNOTATION
from kubegym_operator.controllers.common import EventSink, ObjectLocks, job_path, object_path, write_status
from kubegym_operator.kubeapi import (
    Obj,
    collection_path,
    create_if_absent,
    delete,
    get_or_none,
    list_items,
    merge_patch,
)
from kubegym_operator.settings import Settings

log = logging.getLogger("kubegym.experiment")

#: One reconcile at a time per Experiment: its runs' events arrive in bursts.
_lock = ObjectLocks()


def experiment_path(namespace: str, name: str) -> str:
    return object_path(PLURAL, namespace, name)


def run_path(namespace: str, name: str) -> str:
    return object_path(RUN_PLURAL, namespace, name)


def _plan(exp: Obj, settings: Settings) -> Plan | PlanError:
    """The plan, with the storage checked too: a run without storage could never start."""
    try:
        planned = plan(exp)
        report_storage(planned.spec, settings)
    except PlanError as e:
        return e
    except RenderError as e:
        return PlanError(e.reason, e.message)
    return planned


def _live_pods(namespace: str, names: list[str]) -> frozenset[str]:
    """Which of these runs still have a pod that runs or terminates."""
    if not names:
        return frozenset()
    selector = f"{RUN_LABEL} in ({','.join(sorted(label_value(n) for n in names))})"
    live = set()
    for pod in list_items(f"/api/v1/namespaces/{namespace}/pods", selector):
        if (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
            live.add((pod["metadata"].get("labels") or {}).get(RUN_LABEL, ""))
    return frozenset(n for n in names if label_value(n) in live)


def _benchmarks(exp: Obj, selector: str) -> dict[str, Obj]:
    namespace = exp["metadata"]["namespace"]
    try:
        items = list_items(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{BENCHMARK_PLURAL}", selector)
    except ApiException as e:
        if e.status == 404:  # the Benchmark CRD is not installed
            return {}
        raise
    return {b["metadata"]["name"]: b for b in items if owned_by(b, exp)}


def observe(exp: Obj, planned: Plan | PlanError) -> Observed:
    meta = exp["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if isinstance(planned, PlanError):
        return Observed()
    selector = f"{EXPERIMENT_LABEL}={label_value(name)}"
    names = {r.name for r in planned.runs}
    children: dict[str, ChildView] = {}
    for child in list_items(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{RUN_PLURAL}", selector):
        if owned_by(child, exp) and child["metadata"]["name"] in names:
            children[child["metadata"]["name"]] = view(child)
    draining = [n for n, c in children.items() if c.suspended and c.phase not in ("Succeeded", "Failed")]
    benchmarks = _benchmarks(exp, selector) if planned.spec.benchmark is not None else {}
    job = get_or_none(job_path(namespace, report_job_name(name)))
    if job is not None and not owned_by(job, exp):
        job = None
    pods: list[Obj] = []
    if job is not None:
        pods = list_items(
            f"/api/v1/namespaces/{namespace}/pods", f"batch.kubernetes.io/job-name={job['metadata']['name']}"
        )
    return Observed(
        children=children,
        live=_live_pods(namespace, draining),
        benchmarks=benchmarks,
        report_job=job,
        report_pods=pods,
    )


@metrics.instrument("Experiment")
def reconcile(
    namespace: str, name: str, settings: Settings, emit: EventSink, now: Callable[[], dt.datetime] | None = None
) -> Obj | None:
    """Bring one Experiment in line; returns the status written (None when nothing changed or it is gone)."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    with _lock(namespace, name):
        exp = get_or_none(experiment_path(namespace, name))
        if exp is None or exp["metadata"].get("deletionTimestamp"):
            return None
        planned = _plan(exp, settings)
        observed = observe(exp, planned)
        grace = timedelta(seconds=settings.pending_error_grace_seconds)

        def namer(chunk: int) -> str:
            return benchmark_name(name, chunk)

        actions = decide(exp, planned, observed, now=clock(), pending_grace=grace, benchmark_name=namer)
        if isinstance(planned, Plan):
            try:
                _apply(exp, planned, observed, actions, settings)
            except RenderError as e:
                failed = PlanError(e.reason, e.message)
                actions = decide(exp, failed, Observed(), now=clock(), pending_grace=grace, benchmark_name=namer)
        return _write(exp, actions, emit)


def _apply(exp: Obj, planned: Plan, observed: Observed, actions: Actions, settings: Settings) -> None:
    meta = exp["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for decision in actions.stop:
        log.info("%s/%s: stopping %s early: %s", namespace, name, decision.run, decision.message)
        merge_patch(
            run_path(namespace, decision.run),
            {"metadata": {"annotations": {EARLY_STOPPED_ANNOTATION: decision.message}}, "spec": {"suspend": True}},
        )
    for run, suspend in sorted(actions.set_suspend.items()):
        log.info("%s/%s: %s %s", namespace, name, "suspending" if suspend else "resuming", run)
        merge_patch(run_path(namespace, run), {"spec": {"suspend": suspend}})
    for planned_run in actions.create_runs:
        manifest = render_run(exp, planned_run, suspend=False)
        create_if_absent(collection_path(manifest), manifest)
        log.info("%s/%s: created TrainingRun %s", namespace, name, planned_run.name)
    for chunk in actions.create_benchmarks:
        runs = [
            (
                r.name,
                None if actions.phases[r.name] == RunPhase.Succeeded else observed.children[r.name].latest_checkpoint,
            )
            for r in chunk.runs
        ]
        manifest = render_benchmark(exp, planned.spec, chunk.name, runs)
        create_if_absent(collection_path(manifest), manifest)
        log.info("%s/%s: created Benchmark %s (%d models)", namespace, name, chunk.name, len(runs))
    if actions.create_report:
        _create_report(exp, planned, observed, actions, settings)
    if actions.stop_report_job and observed.report_job is not None:
        delete(job_path(namespace, observed.report_job["metadata"]["name"]))


def _create_report(exp: Obj, planned: Plan, observed: Observed, actions: Actions, settings: Settings) -> None:
    meta = exp["metadata"]
    storage = report_storage(planned.spec, settings)
    chunks = []
    if planned.spec.benchmark is not None:
        chunks = [
            c
            for c in benchmark_chunks(
                planned, actions.phases, observed.children, lambda i: benchmark_name(meta["name"], i)
            )
            if c.name in observed.benchmarks
        ]
    benchmarked = frozenset(r.name for c in chunks for r in c.runs)
    configurations, runs = report_inputs(
        planned,
        actions.phases,
        observed.children,
        benchmarked,
        lambda run: run_prefix(storage, meta["namespace"], run),
    )
    config = build_report_config(exp, planned.spec, configurations, runs, [c.name for c in chunks], settings)
    for manifest in render_report_rbac(exp):
        create_if_absent(collection_path(manifest), manifest)
    job = render_report_job(exp, planned.spec, config, settings)
    create_if_absent(collection_path(job), job)
    log.info("%s/%s: report Job %s created", meta["namespace"], meta["name"], job["metadata"]["name"])


def _write(exp: Obj, actions: Actions, emit: EventSink) -> Obj | None:
    meta = exp["metadata"]
    return write_status(exp, experiment_path(meta["namespace"], meta["name"]), actions.status, actions.events, emit)
