"""Experiment tracking beside TensorBoard: an optional MLflow tracking server a run logs to.

Why here: the spec (:class:`TrackingSpec`, ``spec.tracking`` of a TrainingRun or an Experiment),
what the runner is given (:class:`MlflowRunConfig`, part of the runner's configuration) and what
it reports back (:class:`TrackingStatus`, ``status.progress.tracking``, which the operator turns
into the ``TrackingAvailable`` condition) are one contract between operator and runner, so they
are declared once. The credentials never travel in any of them: the spec names a Secret, the
operator passes its keys to the pod as ``secretKeyRef`` environment variables
(:data:`CREDENTIAL_ENV`, the names MLflow's own clients read), and the configuration only says
which run and experiment to log to.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

from pydantic import Field

from kubegym_api.base import Model
from kubegym_api.validation import DNS_SUBDOMAIN_PATTERN

#: Environment variable of the runner pod for each key of the credentials Secret (MLflow's own names).
CREDENTIAL_ENV = {
    "username": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
    "token": "MLFLOW_TRACKING_TOKEN",
}
#: A tracking URI: an http(s) URL with a host (MLflow's REST API is all the runner speaks).
TRACKING_URI_PATTERN = r"^https?://[^\s/?#]+(/[^\s]*)?$"
#: Longest experiment name the runner sends (MLflow keeps names in a 256-character column).
MAX_EXPERIMENT_NAME = 256


class MlflowTarget(Model):
    """Where a run logs: the tracking server."""

    tracking_uri: str = Field(
        min_length=8,
        max_length=2048,
        pattern=TRACKING_URI_PATTERN,
        description="http(s) URL of the MLflow tracking server (http://mlflow.mlflow:5000). The runner uses "
        "its REST API; artifacts go through the server's proxied artifact API (`mlflow server "
        "--serve-artifacts`).",
    )


class MlflowSpec(MlflowTarget):
    """An MLflow tracking server, the experiment to log to and the credentials, by Secret reference."""

    experiment_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EXPERIMENT_NAME,
        pattern=r"\S",
        description="MLflow experiment the run logs to (created if missing). Defaults to <namespace>/<name> "
        "of the TrainingRun, or of the Experiment for its trials.",
    )
    credentials_secret_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a Secret in the run's namespace with keys username and password (HTTP basic "
        "auth) or token (bearer), passed to the runner pod as MLFLOW_TRACKING_USERNAME, "
        "MLFLOW_TRACKING_PASSWORD and MLFLOW_TRACKING_TOKEN by reference; never copied into a status or "
        "a configuration.",
    )


class TrackingSpec(Model):
    """Experiment tracking sinks besides the run's TensorBoard curves (always kept in its S3 folder)."""

    mlflow: MlflowSpec | None = Field(
        default=None,
        description="Log parameters, metrics as they come and the final model to an MLflow tracking server. "
        "Best effort: an unreachable server never fails training; the TrackingAvailable condition says so.",
    )


class RunIdentity(Model):
    """The custom resource an MLflow run stands for; its uid finds the run again (tag kubegym.uid)."""

    kind: Literal["TrainingRun", "Experiment"]
    namespace: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=128)


class MlflowRunConfig(MlflowTarget):
    """What the runner needs to log a TrainingRun to MLflow, rendered by the operator."""

    experiment_name: str = Field(min_length=1, max_length=MAX_EXPERIMENT_NAME)
    run: RunIdentity = Field(description="The TrainingRun this MLflow run stands for.")
    parent: RunIdentity | None = Field(
        default=None,
        description="The Experiment whose parent MLflow run this run is a child of (a trial), if any.",
    )
    credentials: bool = Field(
        default=False, description="Whether the spec names a credentials Secret (its keys arrive as env)."
    )


#: Longest ``status.progress.tracking.message``.
MAX_TRACKING_MESSAGE = 1024


class TrackingState(enum.StrEnum):
    ok = "ok"
    failing = "failing"


class TrackingStatus(Model):
    """Whether the runner's requests reach the tracking server, as ``status.progress.tracking``; the
    operator turns it into the TrackingAvailable condition. Every field but the ids is always present,
    so a merge patch of a newer state replaces an older one."""

    state: TrackingState = Field(description="ok, or failing while tracking requests fail or get no answer.")
    since: datetime = Field(description="When the current state began (the first failure, or the recovery).")
    message: str = Field(max_length=MAX_TRACKING_MESSAGE, description="What fails (the last error), or what works.")
    failed_requests: int = Field(default=0, ge=0, description="Tracking requests failed in a row.")
    pending_metrics: int = Field(default=0, ge=0, description="Metric points waiting to be sent.")
    experiment_id: str | None = Field(default=None, max_length=64, description="The MLflow experiment's id.")
    run_id: str | None = Field(default=None, max_length=64, description="The MLflow run's id.")
