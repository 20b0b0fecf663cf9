"""Where artifacts go (an S3-compatible bucket), and whether the runner's uploads get there.

:class:`S3Storage` is what the runner is given and what the operator's default storage is;
:class:`StorageSpec` is the same in a custom resource, stricter (an endpoint with a scheme, a
credentials Secret that must be named), because a spec is user input and the credentials are
passed to the pod by reference only. :class:`StorageStatus` is the runner's report of its
uploads, which the operator turns into the StorageAvailable condition.

:class:`SessionCredentials` is the file the operator writes into a run's own credentials Secret
when it mints short-lived credentials for the run (the default storage, STS mode): the operator
writes it, the runner reads it, so its shape is part of the contract. It is the JSON that AWS
tools read from a ``credential_process`` (``Version`` 1), so any AWS SDK in a runner image can
use the same file.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

from kubegym_api.base import Model
from kubegym_api.validation import DNS_SUBDOMAIN_PATTERN


class S3Storage(Model):
    """Where artifacts go: an S3-compatible bucket and prefix."""

    bucket: str = Field(description="Bucket name.", min_length=3, max_length=63)
    prefix: str = Field(
        default="",
        description="Key prefix under which the run's folder is created.",
        max_length=512,
    )
    endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL (MinIO, Ceph, ...); empty for AWS S3.",
    )
    region: str | None = Field(default=None, description="S3 region name.")
    secret_ref: str | None = Field(
        default=None,
        description=(
            "Name of a Secret in the run's namespace with keys AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, passed to the pod by reference; none: the pod gets credentials "
            "the operator minted for its run alone (STS mode)."
        ),
    )


class StorageSpec(S3Storage):
    """S3-compatible storage for checkpoints and the final model; credentials by reference."""

    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="S3 endpoint URL with scheme (http://minio.minio:9000); empty for AWS S3.",
    )
    secret_ref: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "Name of a Secret in the run's namespace with keys AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN). Passed to the runner pod "
            "by reference; credentials are never written into a TrainingRun."
        ),
    )


#: Longest ``status.progress.storage.message`` (the runner shortens the error to fit).
MAX_STORAGE_MESSAGE = 1024


class StorageState(enum.StrEnum):
    ok = "ok"
    failing = "failing"


class StorageStatus(Model):
    """Whether the runner's uploads reach storage, as ``status.progress.storage``; the operator turns
    it into the StorageAvailable condition. Every field is always present, so a merge patch of a newer
    state replaces all of an older one."""

    state: StorageState = Field(description="ok, or failing while storage requests fail or get no answer.")
    since: datetime = Field(description="When the current state began (the first failure, or the recovery).")
    message: str = Field(
        max_length=MAX_STORAGE_MESSAGE, description="What fails (the last error), or that uploads succeed."
    )
    pending_uploads: int = Field(default=0, ge=0, description="Uploads queued or in progress.")
    failed_requests: int = Field(default=0, ge=0, description="Storage requests failed in a row.")


#: Key of :class:`SessionCredentials` in a run's credentials Secret (and its file name in the volume).
SESSION_CREDENTIALS_KEY = "credentials.json"


class SessionCredentials(BaseModel):
    """Temporary S3 credentials of one runner pod, as AWS's ``credential_process`` JSON (PascalCase,
    ``Version`` 1). ``expiration`` is when they stop working; the operator writes new ones before."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, alias_generator=to_pascal)

    version: Literal[1] = 1
    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1, repr=False)
    session_token: str = Field(min_length=1, repr=False)
    expiration: datetime

    def dump(self) -> str:
        """The file's text (by alias, the format AWS tools read)."""
        return self.model_dump_json(by_alias=True)
