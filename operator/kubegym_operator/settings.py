"""Operator settings, read once from environment variables (set by the Helm chart's values).

They hold what a platform engineer decides once for the whole cluster: the runner image, the
default storage, how GPU runs find GPU nodes, the default Kueue queue, default resources.
Everything here is a default; a TrainingRun's own fields win. :class:`LeaderElection` holds how
the operator's replicas elect the one that reconciles (``kubegym_operator.leadership``).

How runner pods of the default storage get credentials (``KUBEGYM_STORAGE_CREDENTIALS``): ``sts``
(the default) has the operator mint short-lived credentials for each run with its own key
(:func:`load_storage_key`, never in :class:`Settings` nor in any runner pod); ``static`` is the
opt-in for stores without STS, where every run's namespace holds the Secret
``KUBEGYM_STORAGE_SECRET`` names and runner pods get its keys by reference.
"""

from __future__ import annotations

import enum
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kubegym_api.storage import S3Storage
from kubegym_api.workload import Quantity, Toleration
from kubegym_operator.sts import MAX_DURATION_SECONDS, MIN_DURATION_SECONDS, AccessKey

DEFAULT_RUNNER_IMAGE = "ghcr.io/kubegym/kubegym-runner:0.1.0"

#: Tolerates the taint that GKE, AKS and the NVIDIA GPU operator put on GPU nodes.
DEFAULT_GPU_TOLERATIONS = (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),)


#: Seconds between two passes of the periodic resync (``main.start_resync``): it reconciles what only
#: the clock moves on (grace periods, idle runs) and what failed to reconcile.
RESYNC_SECONDS = 30.0


class StorageCredentials(enum.StrEnum):
    """How runner pods of the default storage get S3 credentials."""

    #: The operator mints credentials for each run (STS AssumeRole with a session policy).
    sts = "sts"
    #: The runner pod reads ``default_storage.secret_ref``'s keys by reference (stores without STS).
    static = "static"


#: The endpoint of AWS STS in a region (when the default storage has no endpoint: AWS S3).
AWS_STS_ENDPOINT = "https://sts.{region}.amazonaws.com"
DEFAULT_REGION = "us-east-1"


class Settings(BaseModel):
    """Cluster-wide defaults of the operator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner_image: str = DEFAULT_RUNNER_IMAGE
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    image_pull_secrets: tuple[str, ...] = ()
    #: Storage for runs that name none. In ``static`` mode its secretRef must exist in the run's
    #: namespace; in ``sts`` mode it has none (the operator mints each run's credentials).
    default_storage: S3Storage | None = None
    storage_credentials: StorageCredentials = StorageCredentials.sts
    #: Lifetime of a run's minted credentials; the operator mints new ones when a third is left.
    storage_credentials_duration_seconds: int = Field(default=3600, ge=MIN_DURATION_SECONDS, le=MAX_DURATION_SECONDS)
    #: STS endpoint; None: the default storage's endpoint (MinIO serves STS there), else AWS's regional one.
    storage_sts_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    #: The role AssumeRole assumes (required on AWS; MinIO assumes the calling user).
    storage_role_arn: str | None = None
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
    #: Seconds a Running run may report no new timesteps before it is flagged Idle (builders.idle).
    idle_after_seconds: int = Field(default=600, ge=10)

    @model_validator(mode="after")
    def _storage_credentials_are_consistent(self) -> Settings:
        storage = self.default_storage
        if self.storage_credentials != StorageCredentials.sts or storage is None:
            return self
        if storage.secret_ref:
            raise ValueError(
                "KUBEGYM_STORAGE_SECRET is for KUBEGYM_STORAGE_CREDENTIALS=static; with sts the operator "
                "mints each run's credentials and runner pods never get the storage key"
            )
        if storage.endpoint is None and self.storage_sts_endpoint is None and not self.storage_role_arn:
            raise ValueError("STS on AWS needs the role to assume: set KUBEGYM_STORAGE_ROLE_ARN")
        return self

    @property
    def mints_credentials(self) -> bool:
        """Whether runs of the default storage get operator-minted credentials (STS mode)."""
        return self.storage_credentials == StorageCredentials.sts and self.default_storage is not None

    def sts_endpoint(self) -> str:
        """Where AssumeRole goes: the setting, else the default storage's endpoint, else AWS STS."""
        if self.storage_sts_endpoint:
            return self.storage_sts_endpoint
        storage = self.default_storage
        if storage is not None and storage.endpoint:
            return storage.endpoint
        return AWS_STS_ENDPOINT.format(region=self.storage_region())

    def storage_region(self) -> str:
        """The region requests to the default storage (and its STS) are signed for."""
        storage = self.default_storage
        return (storage.region if storage is not None else None) or DEFAULT_REGION


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
    "KUBEGYM_IDLE_AFTER_SECONDS": "idle_after_seconds",
    "KUBEGYM_STORAGE_CREDENTIALS": "storage_credentials",
    "KUBEGYM_STORAGE_CREDENTIALS_DURATION_SECONDS": "storage_credentials_duration_seconds",
    "KUBEGYM_STORAGE_STS_ENDPOINT": "storage_sts_endpoint",
    "KUBEGYM_STORAGE_ROLE_ARN": "storage_role_arn",
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
#: The operator's own storage key (STS mode): what AssumeRole is signed with. Read by
#: :func:`load_storage_key`, never part of :class:`Settings` (which is logged and compared).
STORAGE_KEY_ENV_VARS = ("KUBEGYM_STORAGE_ACCESS_KEY_ID", "KUBEGYM_STORAGE_SECRET_ACCESS_KEY")


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
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in err.errors(include_url=False))
        raise SettingsError(f"invalid operator settings: {problems}") from err


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    if not loc:  # a rule across fields names its variables itself
        return message.removeprefix("Value error, ")
    return f"{_var_of(str(loc[0]))}: {message}"


def _var_of(field: str) -> str:
    if field == "default_storage":
        return "KUBEGYM_STORAGE_*"
    return next((var for var, name in ENV_VARS.items() if name == field), field)


def load_storage_key(env: Mapping[str, str], settings: Settings) -> AccessKey | None:
    """The operator's own storage key when ``settings`` mint credentials (STS mode with a default
    storage), from ``KUBEGYM_STORAGE_ACCESS_KEY_ID`` and ``KUBEGYM_STORAGE_SECRET_ACCESS_KEY``;
    None when nothing is minted. Missing variables are a :class:`SettingsError`."""
    if not settings.mints_credentials:
        return None
    key_id, secret = (env.get(var, "").strip() for var in STORAGE_KEY_ENV_VARS)
    if not key_id or not secret:
        raise SettingsError(
            "KUBEGYM_STORAGE_CREDENTIALS=sts needs the operator's own storage key in "
            f"{' and '.join(STORAGE_KEY_ENV_VARS)} (or set KUBEGYM_STORAGE_CREDENTIALS=static)"
        )
    return AccessKey(key_id, secret)


# --- leader election ---------------------------------------------------------------------------

#: Name of the Lease that the operator's replicas compete for.
DEFAULT_LEASE_NAME = "kubegym-operator"


class LeaderElection(BaseModel):
    """How the operator's replicas elect the one that reconciles (``kubegym_operator.leadership``).

    client-go's timings: the holder renews every ``retry_period_seconds`` and gives up (exits)
    once it could not renew for ``renew_deadline_seconds``; a standby retries every
    ``retry_period_seconds`` and takes over once the Lease has not changed, by its own clock,
    for ``lease_duration_seconds``. The holder therefore stops before anyone may take over.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    lease_name: str = Field(default=DEFAULT_LEASE_NAME, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    #: The holderIdentity this replica writes: its pod name, else hostname_pid.
    identity: str = Field(min_length=1, max_length=253)
    lease_duration_seconds: int = Field(default=10, ge=1)
    renew_deadline_seconds: float = Field(default=8.0, gt=0)
    retry_period_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _timings_are_ordered(self) -> LeaderElection:
        if not self.lease_duration_seconds > self.renew_deadline_seconds > self.retry_period_seconds:
            raise ValueError(
                "need lease duration > renew deadline > retry period, got "
                f"{self.lease_duration_seconds} / {self.renew_deadline_seconds:g} / {self.retry_period_seconds:g}"
            )
        return self


#: Environment variable → LeaderElection field.
LEADER_ELECTION_ENV_VARS: Mapping[str, str] = {
    "KUBEGYM_LEADER_ELECTION": "enabled",
    "KUBEGYM_LEASE_NAME": "lease_name",
    "KUBEGYM_LEASE_DURATION_SECONDS": "lease_duration_seconds",
    "KUBEGYM_LEASE_RENEW_DEADLINE_SECONDS": "renew_deadline_seconds",
    "KUBEGYM_LEASE_RETRY_PERIOD_SECONDS": "retry_period_seconds",
}
#: Fallback of the Lease's namespace when POD_NAMESPACE (the downward API's) is not set.
LEADER_ELECTION_NAMESPACE_VAR = "KUBEGYM_LEADER_ELECTION_NAMESPACE"


def load_leader_election(env: Mapping[str, str], hostname: str | None = None, pid: int | None = None) -> LeaderElection:
    """Leader-election settings from environment variables; unset or empty ones keep the defaults.

    ``POD_NAME`` and ``POD_NAMESPACE`` come from the downward API in a pod: the identity is the
    pod name (else ``<hostname>_<pid>``), the Lease lives in the pod's namespace (else
    ``KUBEGYM_LEADER_ELECTION_NAMESPACE``, else ``default``). ``KUBEGYM_LEADER_ELECTION``
    (true/false) defaults to true in a pod (``POD_NAMESPACE`` set) and false elsewhere, so an
    operator started by hand or by the integration tests runs alone as it always did.
    """
    pod_namespace = env.get("POD_NAMESPACE", "").strip()
    values: dict[str, Any] = {
        "enabled": bool(pod_namespace),
        "namespace": pod_namespace or env.get(LEADER_ELECTION_NAMESPACE_VAR, "").strip() or "default",
        "identity": env.get("POD_NAME", "").strip()
        or f"{hostname if hostname is not None else socket.gethostname()}_{pid if pid is not None else os.getpid()}",
    }
    for var, name in LEADER_ELECTION_ENV_VARS.items():
        raw = env.get(var, "").strip()
        if raw:
            values[name] = raw
    try:
        return LeaderElection.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{_leader_var(e['loc'])}: {e['msg']}" for e in err.errors(include_url=False))
        raise SettingsError(f"invalid leader-election settings: {problems}") from err


def _leader_var(loc: tuple[int | str, ...]) -> str:
    """The variable behind a LeaderElection field; the cross-field timing rule names them all."""
    if not loc:
        return "KUBEGYM_LEASE_*_SECONDS"
    field = str(loc[0])
    pod = {"namespace": "POD_NAMESPACE", "identity": "POD_NAME"}
    return pod.get(field) or next((var for var, name in LEADER_ELECTION_ENV_VARS.items() if name == field), field)
