"""A TrainingRun as the owner of its runner Job (adapter of :func:`kubegym_operator.reconciler.reconcile`).

Rendering and status are the builders' pure functions (:mod:`kubegym_operator.builders.job`,
:mod:`~kubegym_operator.builders.rbac`, :mod:`~kubegym_operator.builders.status`); this module
only answers the reconciler's questions with them. The one read beyond the run's own Job:
``spec.resumeFrom.trainingRun`` names another run whose newest checkpoint the Job starts from,
looked up in the watched runs when the Job is created (its newest checkpoint inside its own folder,
recorded on the Job, so a refresh of the pod's storage credentials grants the same checkpoint the
pod was configured with).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from kubegym_api.status import Phase
from kubegym_api.trainingrun import ModelSelection
from kubegym_operator.builders.credentials import StorageAccess, access_of
from kubegym_operator.builders.idle import idle_due
from kubegym_operator.builders.job import (
    JobUpdate,
    RenderError,
    build_train_config,
    minted_credentials,
    model_uri_of,
    parse_spec,
    plan_job_update,
    render_job,
    resume_uri_of,
)
from kubegym_operator.builders.naming import training_job_name
from kubegym_operator.builders.rbac import render_runner_rbac
from kubegym_operator.builders.status import GRACE_LIMITED_REASONS, StatusUpdate, compute_status, failed_status
from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.kubeapi import Obj
from kubegym_operator.reconciler import JobPlan, utc_now
from kubegym_operator.settings import RESYNC_SECONDS, Settings
from kubegym_operator.watched import Kind


def waits_out_a_grace_period(owner: Obj) -> bool:
    """The owner is Pending on a pod error that fails it once the pending-error grace period ends
    (image pull, missing Secret, container config): only the clock moves it on."""
    status = owner.get("status") or {}
    return status.get("phase") == Phase.Pending.value and status.get("reason") in GRACE_LIMITED_REASONS


@dataclass(frozen=True)
class TrainingRunJobs:
    """The TrainingRun adapter, with the operator's ``settings`` (defaults, image, grace period)."""

    settings: Settings

    kind = Kind.TRAINING_RUN

    def job_name(self, owner: Obj) -> str:
        return training_job_name(owner["metadata"]["name"])

    def plan_job(self, api: ClusterAPI, owner: Obj) -> JobPlan[None]:
        meta = owner["metadata"]
        resume_uri = None
        source = parse_spec(owner).resume_from
        if source is not None and source.training_run:
            other = api.get(Kind.TRAINING_RUN, meta["namespace"], source.training_run)
            if other is None:
                raise RenderError(
                    "ResumeSourceNotFound",
                    f"resumeFrom.trainingRun: TrainingRun {source.training_run!r} not found in {meta['namespace']}",
                )
            resume_uri = model_uri_of(other, source.checkpoint or ModelSelection.latest, self.settings)
        job = render_job(owner, self.settings, resume_uri=resume_uri)
        return JobPlan(job, tuple(render_runner_rbac(owner)), storage=self._access(owner, resume_uri))

    def plan_update(self, owner: Obj, job: Obj) -> JobUpdate:
        return plan_job_update(owner, job, self.settings)

    def storage_access(self, api: ClusterAPI, owner: Obj, job: Obj) -> StorageAccess | None:
        return self._access(owner, resume_uri_of(job))

    def _access(self, owner: Obj, resume_uri: str | None) -> StorageAccess | None:
        config = build_train_config(owner, self.settings, resume_uri=resume_uri)
        if not minted_credentials(config.storage):
            return None
        return access_of(config, owner["metadata"]["namespace"])

    def status(
        self, owner: Obj, job: Obj | None, pods: Sequence[Obj], *, now: dt.datetime, plan: JobPlan[None] | None
    ) -> StatusUpdate:
        return compute_status(owner, job, pods, now=now, settings=self.settings)

    def failed(self, owner: Obj, reason: str, message: str, *, now: dt.datetime) -> StatusUpdate:
        return failed_status(owner, reason, message, now=now)

    def settled(self, namespace: str, name: str) -> None:
        return None

    def clock_dependent(self, api: ClusterAPI, owner: Obj) -> bool:
        return waits_out_a_grace_period(owner) or idle_due(
            owner, now=utc_now(), flag_after=self.settings.idle_after_seconds, resync_seconds=RESYNC_SECONDS
        )
