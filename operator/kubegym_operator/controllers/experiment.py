"""Reconcile one Experiment: its runs, their suspension, early stops, final Benchmarks, report.

Level-triggered and idempotent like the reconcile of the kinds that own a Job: it reads the
Experiment, its TrainingRuns (and the pods of the suspended ones, to know when a slot is really
free), its Benchmarks and its report Job through the :class:`~kubegym_operator.clusterapi.
ClusterAPI` it is handed (the watch-fed view on the operator: no GET, no LIST), asks
:func:`~kubegym_operator.builders.experiment_status.decide` what to do, and does it. Children are
created under deterministic names, so a restart or a duplicate event never creates a run twice.

The Experiment is not a :class:`~kubegym_operator.reconciler.JobOwner` (its verdict is about its
runs), but it shares the reconciler's parts: one reconcile at a time per object
(:data:`~kubegym_operator.reconciler.GATE`), its report Job created and stopped by
:func:`~kubegym_operator.reconciler.create_job` and :func:`~kubegym_operator.reconciler.stop_job`
(with the report pod's own storage credentials, refreshed by :func:`~kubegym_operator.reconciler.
refresh_credentials` while it runs), and the status written only when it changed
(:func:`~kubegym_operator.reconciler.write_status`).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from kubegym_api.benchmark import MAX_MODELS
from kubegym_api.experiment import RunPhase
from kubegym_api.runnerconfig import ExperimentReportConfig
from kubegym_api.status import TERMINAL_PHASES
from kubegym_operator import metrics
from kubegym_operator.apierrors import ApiError
from kubegym_operator.builders.artifacts import legacy_location, run_location
from kubegym_operator.builders.credentials import StorageAccess, access_of, refresh_due
from kubegym_operator.builders.experiment import Plan, PlanError, owned_by, plan, proposed_trials, render_run
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
    Reason,
    benchmark_chunks,
    decide,
    report_inputs,
    segment_results,
    stopped_run_model,
    view,
)
from kubegym_operator.builders.job import RenderError, minted_credentials
from kubegym_operator.builders.naming import training_job_name
from kubegym_operator.builders.status import EARLY_STOPPED_ANNOTATION, GRACE_LIMITED_REASONS, verdict_of
from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.credentials import Issuer
from kubegym_operator.kubeapi import Obj
from kubegym_operator.reconciler import (
    GATE,
    Clock,
    ReconcileGate,
    create_job,
    deleting,
    namespace_terminating,
    refresh_credentials,
    stop_job,
    utc_now,
    write_status,
)
from kubegym_operator.settings import Settings
from kubegym_operator.watched import Kind

log = logging.getLogger("kubegym.experiment")


def _plan(api: ClusterAPI, exp: Obj, settings: Settings) -> Plan | PlanError:
    """The plan, with an Optuna search's proposals read back from its runs, and the storage checked
    too: a run without storage could never start."""
    try:
        planned = plan(exp)
        search = planned.spec.search
        if search is not None and (search.optuna is not None or search.pbt is not None):
            namespace = exp["metadata"]["namespace"]
            runs = {
                r.name: child
                for r in planned.runs
                if (child := api.get(Kind.TRAINING_RUN, namespace, r.name)) is not None and owned_by(child, exp)
            }
            if search.optuna is not None:
                planned = plan(exp, trials=proposed_trials(exp, runs))
            else:
                # The segments' names do not depend on the decisions, so one pass reads every result.
                planned = plan(exp, results=segment_results(planned, {n: view(c) for n, c in runs.items()}))
        report_storage(planned.spec, settings)
    except PlanError as e:
        return e
    except RenderError as e:
        return PlanError(e.reason, e.message)
    return planned


def _live_pods(api: ClusterAPI, namespace: str, names: list[str]) -> frozenset[str]:
    """Which of these runs still have a pod that runs or terminates."""
    live = set()
    for name in names:
        pods = api.pods_of_job(namespace, training_job_name(name))
        if any((pod.get("status") or {}).get("phase") in ("Pending", "Running") for pod in pods):
            live.add(name)
    return frozenset(live)


def _benchmarks(api: ClusterAPI, exp: Obj, planned: Plan) -> dict[str, Obj]:
    """The final Benchmarks this Experiment owns, by name (every name its chunks can have)."""
    namespace, name = exp["metadata"]["namespace"], exp["metadata"]["name"]
    found = {}
    for chunk in range(math.ceil(len(planned.runs) / MAX_MODELS)):
        bench = api.get(Kind.BENCHMARK, namespace, benchmark_name(name, chunk))
        if bench is not None and owned_by(bench, exp):
            found[bench["metadata"]["name"]] = bench
    return found


def _report_job(api: ClusterAPI, exp: Obj) -> Obj | None:
    namespace, name = exp["metadata"]["namespace"], exp["metadata"]["name"]
    job = api.get(Kind.JOB, namespace, report_job_name(name))
    return job if job is not None and owned_by(job, exp) else None


def observe(api: ClusterAPI, exp: Obj, planned: Plan | PlanError) -> Observed:
    """The Experiment's children as ``api`` shows them."""
    namespace = exp["metadata"]["namespace"]
    if isinstance(planned, PlanError):
        return Observed()
    children: dict[str, ChildView] = {}
    for run in planned.runs:
        child = api.get(Kind.TRAINING_RUN, namespace, run.name)
        if child is not None and owned_by(child, exp):
            children[run.name] = view(child)
    draining = [n for n, c in children.items() if c.suspended and c.phase not in TERMINAL_PHASES]
    benchmarks = _benchmarks(api, exp, planned) if planned.spec.benchmark is not None else {}
    job = _report_job(api, exp)
    pods = api.pods_of_job(namespace, job["metadata"]["name"]) if job is not None else []
    return Observed(
        children=children,
        live=_live_pods(api, namespace, draining),
        benchmarks=benchmarks,
        report_job=job,
        report_pods=pods,
    )


def clock_dependent(api: ClusterAPI, exp: Obj, settings: Settings, now: datetime | None = None) -> bool:
    """Whether only the clock moves the Experiment on: it is reporting and its report Job's pod is
    stuck on an error that fails the report once the pending-error grace period ends, or the pod's
    minted storage credentials are due for a refresh (at ``now``, default the current time)."""
    if (exp.get("status") or {}).get("reason") != Reason.REPORTING:
        return False
    job = _report_job(api, exp)
    if job is None:
        return False
    now = now or utc_now()
    if not deleting(job) and refresh_due(job, now):
        return True
    pods = api.pods_of_job(exp["metadata"]["namespace"], job["metadata"]["name"])
    grace = timedelta(seconds=settings.pending_error_grace_seconds)
    return verdict_of({"spec": {}}, job, pods, now=now, grace=grace).reason in GRACE_LIMITED_REASONS


def reconcile(
    api: ClusterAPI,
    namespace: str,
    name: str,
    settings: Settings,
    now: Clock = utc_now,
    gate: ReconcileGate = GATE,
    issuer: Issuer | None = None,
) -> Obj | None:
    """Bring the Experiment ``namespace/name`` in line with its plan, with the operator's
    ``settings``, at the time ``now`` tells, one reconcile at a time (``gate``); ``issuer`` mints
    the report pod's storage credentials (None: the operator mints none).

    Returns the status fields written: None when nothing changed, it is gone, or another
    reconcile of it is running (and will make one more pass).
    """

    @metrics.instrument("Experiment")
    def once() -> Obj | None:
        try:
            return _converge(api, namespace, name, settings, now, issuer)
        except ApiError as e:
            if namespace_terminating(e):
                log.info("Experiment %s/%s: namespace is being deleted; nothing to reconcile", namespace, name)
                return None
            raise

    return gate.run((Kind.EXPERIMENT, namespace, name), once)


def _converge(
    api: ClusterAPI, namespace: str, name: str, settings: Settings, now: Clock, issuer: Issuer | None
) -> Obj | None:
    exp = api.get(Kind.EXPERIMENT, namespace, name)
    if exp is None or deleting(exp):
        return None
    planned = _plan(api, exp, settings)
    observed = observe(api, exp, planned)
    grace = timedelta(seconds=settings.pending_error_grace_seconds)

    def namer(chunk: int) -> str:
        return benchmark_name(name, chunk)

    actions = decide(exp, planned, observed, now=now(), pending_grace=grace, benchmark_name=namer)
    if isinstance(planned, Plan):
        try:
            _apply(api, exp, planned, observed, actions, settings, issuer, now)
        except RenderError as e:
            failed = PlanError(e.reason, e.message)
            actions = decide(exp, failed, Observed(), now=now(), pending_grace=grace, benchmark_name=namer)
    return write_status(api, Kind.EXPERIMENT, exp, actions.status, actions.events)


def _apply(
    api: ClusterAPI,
    exp: Obj,
    planned: Plan,
    observed: Observed,
    actions: Actions,
    settings: Settings,
    issuer: Issuer | None,
    now: Clock,
) -> None:
    meta = exp["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for decision in actions.stop:
        log.info("%s/%s: stopping %s early: %s", namespace, name, decision.run, decision.message)
        api.merge_patch(
            Kind.TRAINING_RUN,
            namespace,
            decision.run,
            {"metadata": {"annotations": {EARLY_STOPPED_ANNOTATION: decision.message}}, "spec": {"suspend": True}},
        )
    for run, suspend in sorted(actions.set_suspend.items()):
        log.info("%s/%s: %s %s", namespace, name, "suspending" if suspend else "resuming", run)
        api.merge_patch(Kind.TRAINING_RUN, namespace, run, {"spec": {"suspend": suspend}})
    for planned_run in actions.create_runs:
        manifest = render_run(exp, planned_run, suspend=False)
        api.create(manifest)
        log.info("%s/%s: created TrainingRun %s", namespace, name, planned_run.name)
    checkpoint = planned.spec.benchmark.checkpoint if planned.spec.benchmark is not None else None
    for chunk in actions.create_benchmarks:
        runs = [
            (
                r.name,
                None
                if actions.phases[r.name] == RunPhase.Succeeded
                else stopped_run_model(observed.children[r.name], checkpoint),
            )
            for r in chunk.runs
        ]
        manifest = render_benchmark(exp, planned.spec, chunk.name, runs)
        api.create(manifest)
        log.info("%s/%s: created Benchmark %s (%d models)", namespace, name, chunk.name, len(runs))
    if actions.create_report:
        _create_report(api, exp, planned, observed, actions, settings, issuer, now)
    job = observed.report_job
    if actions.stop_report_job and job is not None and not deleting(job):
        stop_job(api, job)
    elif job is not None and not deleting(job) and refresh_due(job, now()):

        def storage() -> StorageAccess | None:
            return _report_access(exp, _report_config(api, exp, planned, observed, actions, settings))

        refresh_credentials(api, exp, dict(job), storage, issuer, now)


def _report_access(exp: Obj, config: ExperimentReportConfig) -> StorageAccess | None:
    if not minted_credentials(config.storage):
        return None
    return access_of(config, exp["metadata"]["namespace"])


def _create_report(
    api: ClusterAPI,
    exp: Obj,
    planned: Plan,
    observed: Observed,
    actions: Actions,
    settings: Settings,
    issuer: Issuer | None,
    now: Clock,
) -> None:
    config = _report_config(api, exp, planned, observed, actions, settings)
    create_job(
        api,
        exp,
        render_report_job(exp, planned.spec, config, settings),
        render_report_rbac(exp),
        storage=_report_access(exp, config),
        issuer=issuer,
        now=now,
    )


def _report_config(
    api: ClusterAPI, exp: Obj, planned: Plan, observed: Observed, actions: Actions, settings: Settings
) -> ExperimentReportConfig:
    """What the report reads (the finished runs, the final Benchmarks observed) and writes."""
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

    def prefix_of(run: str) -> str:
        """The run's own folder, as its status records it (the report reads its ``eval/``)."""
        child = api.get(Kind.TRAINING_RUN, meta["namespace"], run)
        if child is None:  # gone: whatever it wrote, nothing says where any more
            return legacy_location(storage, meta["namespace"], run).prefix
        return run_location(child, storage).prefix

    configurations, runs = report_inputs(planned, actions.phases, observed.children, benchmarked, prefix_of)
    return build_report_config(exp, planned.spec, configurations, runs, [c.name for c in chunks], settings)
