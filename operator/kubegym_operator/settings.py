"""Operator settings, read once from environment variables (set by the Helm chart's values).

They hold what a platform engineer decides once for the whole cluster: the runner image, the
default storage, how GPU runs find GPU nodes, the default Kueue queue, default resources.
Everything here is a default; a TrainingRun's own fields win.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubegym_operator.api.common import Quantity, Toleration
from kubegym_runner.config import S3Storage

DEFAULT_RUNNER_IMAGE = "ghcr.io/kubegym/kubegym-runner:0.1.0"

#: Tolerates the taint that GKE, AKS and the NVIDIA GPU operator put on GPU nodes.
DEFAULT_GPU_TOLERATIONS = (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),)


class Settings(BaseModel):
    """Cluster-wide defaults of the operator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner_image: str = DEFAULT_RUNNER_IMAGE
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    image_pull_secrets: tuple[str, ...] = ()
    #: Storage for runs that name none; its secretRef must exist in the run's namespace.
    default_storage: S3Storage | None = None
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    gpu_tolerations: tuple[Toleration, ...] = DEFAULT_GPU_TOLERATIONS
    default_queue_name: str | None = None
    default_cpu: Quantity = "1"
    default_memory: Quantity = "2Gi"
    #: Size limit of the runner's writable /tmp (checkpoints are staged there before upload).
    tmp_size_limit: Quantity = "10Gi"
    #: Job ttlSecondsAfterFinished when the run sets none; None keeps finished Jobs.
    default_ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    #: Time the runner gets after SIGTERM (preemption, suspend) to write a last checkpoint.
    termination_grace_period_seconds: int = Field(default=60, ge=0)
    #: How long a pod may stay stuck on a fixable error (image pull, missing Secret) before
    #: the run is failed instead of waiting for someone to fix it.
    pending_error_grace_seconds: int = Field(default=300, ge=0)
    #: Minimum seconds between two progress writes of a runner.
    progress_interval_seconds: float = Field(default=10.0, ge=1.0)


#: Environment variable → Settings field. JSON-valued ones are marked in ``_JSON_FIELDS``.
ENV_VARS: Mapping[str, str] = {
    "KUBEGYM_RUNNER_IMAGE": "runner_image",
    "KUBEGYM_RUNNER_IMAGE_PULL_POLICY": "image_pull_policy",
    "KUBEGYM_IMAGE_PULL_SECRETS": "image_pull_secrets",
    "KUBEGYM_GPU_NODE_SELECTOR": "gpu_node_selector",
    "KUBEGYM_GPU_TOLERATIONS": "gpu_tolerations",
    "KUBEGYM_DEFAULT_QUEUE": "default_queue_name",
    "KUBEGYM_DEFAULT_CPU": "default_cpu",
    "KUBEGYM_DEFAULT_MEMORY": "default_memory",
    "KUBEGYM_TMP_SIZE_LIMIT": "tmp_size_limit",
    "KUBEGYM_JOB_TTL_SECONDS_AFTER_FINISHED": "default_ttl_seconds_after_finished",
    "KUBEGYM_TERMINATION_GRACE_PERIOD_SECONDS": "termination_grace_period_seconds",
    "KUBEGYM_PENDING_ERROR_GRACE_SECONDS": "pending_error_grace_seconds",
    "KUBEGYM_PROGRESS_INTERVAL_SECONDS": "progress_interval_seconds",
}
_JSON_FIELDS = frozenset({"gpu_node_selector", "gpu_tolerations"})
_LIST_FIELDS = frozenset({"image_pull_secrets"})

#: The default storage, one variable per S3Storage field.
STORAGE_ENV_VARS: Mapping[str, str] = {
    "KUBEGYM_STORAGE_BUCKET": "bucket",
    "KUBEGYM_STORAGE_PREFIX": "prefix",
    "KUBEGYM_STORAGE_ENDPOINT": "endpoint",
    "KUBEGYM_STORAGE_REGION": "region",
    "KUBEGYM_STORAGE_SECRET": "secret_ref",
}


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use; names the variable."""


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings from environment variables; unset or empty variables keep the defaults.

    ``KUBEGYM_GPU_NODE_SELECTOR`` is a JSON object, ``KUBEGYM_GPU_TOLERATIONS`` a JSON list of
    tolerations (``[]`` disables the default), ``KUBEGYM_IMAGE_PULL_SECRETS`` comma-separated.
    The default storage needs at least ``KUBEGYM_STORAGE_BUCKET``.
    """
    values: dict[str, Any] = {}
    for var, name in ENV_VARS.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if name in _JSON_FIELDS:
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as err:
                raise SettingsError(f"{var} is not valid JSON: {err}") from err
        elif name in _LIST_FIELDS:
            values[name] = tuple(item.strip() for item in raw.split(",") if item.strip())
        else:
            values[name] = raw
    storage = {field: env[var].strip() for var, field in STORAGE_ENV_VARS.items() if env.get(var, "").strip()}
    if storage:
        if "bucket" not in storage:
            raise SettingsError("KUBEGYM_STORAGE_* is set but KUBEGYM_STORAGE_BUCKET is not")
        values["default_storage"] = storage
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{_var_of(str(e['loc'][0]))}: {e['msg']}" for e in err.errors(include_url=False))
        raise SettingsError(f"invalid operator settings: {problems}") from err


def _var_of(field: str) -> str:
    if field == "default_storage":
        return "KUBEGYM_STORAGE_*"
    return next((var for var, name in ENV_VARS.items() if name == field), field)
