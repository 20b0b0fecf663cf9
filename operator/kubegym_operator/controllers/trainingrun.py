"""Reconcile one TrainingRun: make its Job exist as rendered, and its status true.

Level-triggered and idempotent: it reads the run, its Job and the Job's pods, and acts
on what it sees, whatever event woke it. Rendering and status are pure functions in
:mod:`kubegym_operator.builders`; this module only sequences the API calls.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from kubegym_operator import metrics
from kubegym_operator.api.trainingrun import PLURAL
from kubegym_operator.builders.job import RenderError, checkpoint_uri_of, parse_spec, plan_job_update, render_job
from kubegym_operator.builders.naming import training_job_name
from kubegym_operator.builders.rbac import render_runner_rbac
from kubegym_operator.builders.status import StatusUpdate, compute_status, failed_status, is_terminal
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

log = logging.getLogger("kubegym.trainingrun")

#: One reconcile at a time per run: run, Job and pod events may arrive together.
_lock = ObjectLocks()


def run_path(namespace: str, name: str) -> str:
    return object_path(PLURAL, namespace, name)


@metrics.instrument("TrainingRun")
def reconcile(
    namespace: str, name: str, settings: Settings, emit: EventSink, now: Callable[[], dt.datetime] | None = None
) -> Obj | None:
    """Bring one run in line; returns the status written (None when nothing changed or it is gone)."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    with _lock(namespace, name):
        run = get_or_none(run_path(namespace, name))
        if run is None or run["metadata"].get("deletionTimestamp"):
            return None
        job = get_or_none(job_path(namespace, training_job_name(name)))
        if job is None and not is_terminal(run):
            try:
                job = _create(run, settings)
            except RenderError as e:
                return _write(run, failed_status(run, e.reason, e.message, now=clock()), emit)
        elif job is not None and not is_terminal(run):
            job = _update(run, job, settings)
        pods = []
        if job is not None:
            pods = list_items(
                f"/api/v1/namespaces/{namespace}/pods", f"batch.kubernetes.io/job-name={job['metadata']['name']}"
            )
        update = compute_status(run, job, pods, now=clock(), settings=settings)
        metrics.job_started("TrainingRun", job, run.get("status") or {}, update.status)
        if update.stop_job and job is not None:
            log.info("%s/%s failed for good; stopping its Job", namespace, name)
            delete(job_path(namespace, job["metadata"]["name"]))
        return _write(run, update, emit)


def _create(run: Obj, settings: Settings) -> Obj:
    meta = run["metadata"]
    resume_uri = None
    spec = parse_spec(run)
    if spec.resume_from is not None and spec.resume_from.training_run:
        other = get_or_none(run_path(meta["namespace"], spec.resume_from.training_run))
        if other is None:
            raise RenderError(
                "ResumeSourceNotFound",
                f"resumeFrom.trainingRun: TrainingRun {spec.resume_from.training_run!r} not found in {meta['namespace']}",
            )
        resume_uri = checkpoint_uri_of(other)
    job = render_job(run, settings, resume_uri=resume_uri)
    for manifest in render_runner_rbac(run):
        create_if_absent(collection_path(manifest), manifest)
    created = create_if_absent(collection_path(job), job)
    metrics.job_created("TrainingRun", run)
    log.info("%s/%s: Job %s created", meta["namespace"], meta["name"], job["metadata"]["name"])
    return created


def _update(run: Obj, job: Obj, settings: Settings) -> Obj:
    plan = plan_job_update(run, job, settings)
    meta = job["metadata"]
    if plan.recreate:
        delete(job_path(meta["namespace"], meta["name"]), propagation="Foreground")
        return job
    if plan.patch:
        return json_patch(job_path(meta["namespace"], meta["name"]), plan.patch)
    return job


def _write(run: Obj, update: StatusUpdate, emit: EventSink) -> Obj | None:
    meta = run["metadata"]
    return write_status(run, run_path(meta["namespace"], meta["name"]), update.status, update.events, emit)
