"""S3 access for run artifacts: ``s3://`` URIs, uploads and downloads, error mapping.

Credentials: with the operator's default storage (STS mode) the pod has only its own run's
short-lived credentials, a file in a Secret volume the operator refreshes before they expire
(``KUBEGYM_STORAGE_CREDENTIALS_FILE``, :class:`~kubegym_api.storage.SessionCredentials`). The
client reads them through :class:`CredentialsFile`, a botocore ``RefreshableCredentials`` whose
refresh re-reads the file: from 15 minutes before expiry (botocore's advisory window; the
operator writes new ones with a third of the lifetime left, and the kubelet updates the volume
within about a minute) every request takes the newest file, so a long run never restarts for
new credentials. Otherwise credentials come from boto3's default chain: environment variables
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` filled from the Secret named by
``storage.secretRef`` (or a web identity on AWS). The endpoint and region come from
:class:`~kubegym_api.storage.S3Storage`.
Failures become :class:`UserError` when the spec is at fault (no such bucket,
rejected credentials) and :class:`StorageError` (an :class:`InfraError`)
otherwise, so Job retries only happen where they can help.

Every request is bounded in time (:data:`CONNECT_TIMEOUT`, :data:`READ_TIMEOUT`, times
botocore's attempts): an endpoint that accepts connections but never answers (a frozen
MinIO) fails a request instead of hanging it forever. The read timeout is the socket's
timeout, so it also bounds a send stuck on a full TCP window. Training never waits for
these requests anyway (:mod:`kubegym_runner.uploads` makes them beside the training loop).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
from boto3.exceptions import Boto3Error
from pydantic import ValidationError

from kubegym_api.envvars import STORAGE_CREDENTIALS_FILE_ENV
from kubegym_api.storage import S3Storage, SessionCredentials
from kubegym_runner.errors import InfraError, StorageError, UserError

#: boto3 clients are generated at runtime; without boto3-stubs they are untyped.
S3Client = Any

#: S3 error codes that retrying cannot fix: the spec names the wrong bucket or credentials.
USER_ERROR_CODES = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: Seconds to open a connection to the endpoint.
CONNECT_TIMEOUT = 10
#: Seconds a request waits for the endpoint's next bytes (or to send its own) before failing.
READ_TIMEOUT = 30


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/key`` location; ``key`` has no leading slash."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Parse ``s3://bucket[/key]``; anything else is the user's mistake."""
        scheme, sep, rest = uri.partition("://")
        if scheme != "s3" or not sep:
            raise UserError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise UserError(f"s3 URI without a bucket: {uri!r}")
        return cls(bucket=bucket, key=key.lstrip("/"))

    def join(self, *parts: str) -> S3Uri:
        """The location ``parts`` below this one (empty parts and extra slashes dropped)."""
        return S3Uri(self.bucket, join_key(self.key, *parts))

    def folder(self) -> S3Uri:
        """This location as a folder prefix (trailing slash), for listing."""
        key = self.key.rstrip("/")
        return S3Uri(self.bucket, f"{key}/" if key else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def join_key(*parts: str) -> str:
    """Join key segments with single slashes, ignoring empty segments."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its full key and size in bytes."""

    key: str
    size: int


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (replay buffers can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _error_code(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def translate_errors(action: str, uri: S3Uri | str) -> Iterator[None]:
    """Turn boto exceptions into :class:`UserError`/:class:`InfraError` with a readable message."""
    try:
        yield
    except (UserError, InfraError):
        raise
    except (
        botocore.exceptions.NoCredentialsError,
        botocore.exceptions.PartialCredentialsError,
    ) as e:
        raise UserError(
            f"S3 {action} {uri}: no credentials ({e}); set storage.secretRef to a Secret "
            "with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from e
    except botocore.exceptions.ClientError as e:
        code = _error_code(e)
        kind = UserError if code in USER_ERROR_CODES else StorageError
        raise kind(f"S3 {action} {uri} failed: {e}") from e
    except Boto3Error as e:  # S3UploadFailedError and friends carry the code in the text
        kind = UserError if any(code in str(e) for code in USER_ERROR_CODES) else StorageError
        raise kind(f"S3 {action} {uri} failed: {e}") from e
    except (botocore.exceptions.BotoCoreError, OSError) as e:
        raise StorageError(f"S3 {action} {uri} failed: {e}") from e


class CredentialsFile(botocore.credentials.CredentialProvider):  # type: ignore[misc]
    """botocore credentials from a :class:`~kubegym_api.storage.SessionCredentials` file, re-read
    whenever botocore refreshes them (from ``advisory_seconds`` before they expire; every request
    blocks for a re-read from ``mandatory_seconds`` before). ``clock`` is botocore's time source
    (tests pass one). A file that cannot be read is a :class:`StorageError` at the start (the Job
    retries it) and, later, a refresh botocore tries again."""

    METHOD = "kubegym-credentials-file"
    CANONICAL_NAME = "KubegymCredentialsFile"

    def __init__(
        self,
        path: Path,
        *,
        advisory_seconds: float | None = None,
        mandatory_seconds: float | None = None,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.advisory_seconds = advisory_seconds
        self.mandatory_seconds = mandatory_seconds
        self.clock = clock

    def read(self) -> dict[str, str]:
        """The file as botocore's refresh metadata."""
        creds = SessionCredentials.model_validate_json(self.path.read_bytes())
        return {
            "access_key": creds.access_key_id,
            "secret_key": creds.secret_access_key,
            "token": creds.session_token,
            "expiry_time": creds.expiration.isoformat(),
        }

    def load(self) -> botocore.credentials.RefreshableCredentials:
        try:
            metadata = self.read()
        except (OSError, ValidationError) as e:
            raise StorageError(f"storage credentials file {self.path} cannot be read: {e}") from e
        extra: dict[str, Any] = {}
        if self.clock is not None:
            extra["time_fetcher"] = self.clock
        return botocore.credentials.RefreshableCredentials(
            access_key=metadata["access_key"],
            secret_key=metadata["secret_key"],
            token=metadata["token"],
            expiry_time=datetime.fromisoformat(metadata["expiry_time"]),
            refresh_using=self.read,
            method=self.METHOD,
            advisory_timeout=self.advisory_seconds,
            mandatory_timeout=self.mandatory_seconds,
            **extra,
        )


def session_for(env: Mapping[str, str], credentials_file: CredentialsFile | None = None) -> boto3.session.Session:
    """A boto3 session whose credentials are the operator-minted file ``env`` names
    (``KUBEGYM_STORAGE_CREDENTIALS_FILE``) ahead of everything else, or boto3's default chain
    when it names none. ``credentials_file`` replaces the provider (tests)."""
    path = env.get(STORAGE_CREDENTIALS_FILE_ENV, "").strip()
    if credentials_file is None and not path:
        return boto3.session.Session()
    core = botocore.session.Session()
    provider = credentials_file or CredentialsFile(Path(path))
    resolver = core.get_component("credential_provider")
    resolver.insert_before("env", provider)
    return boto3.session.Session(botocore_session=core)


class Storage:
    """Thin wrapper over a boto3 S3 client that speaks :class:`S3Uri` and runner errors."""

    def __init__(self, client: S3Client) -> None:
        self.client = client

    @classmethod
    def from_config(
        cls, storage: S3Storage, env: Mapping[str, str] | None = None, credentials_file: CredentialsFile | None = None
    ) -> Storage:
        """A client for the configured endpoint; path-style addressing for S3-compatible stores.

        Credentials: the minted file ``env`` (default: the process environment) names, else
        boto3's default chain (:func:`session_for`); ``credentials_file`` replaces the file's provider.
        """
        config = botocore.config.Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard"},  # attempts: AWS_MAX_ATTEMPTS, default 3
            s3={"addressing_style": "path"} if storage.endpoint else {},
        )
        session = session_for(os.environ if env is None else env, credentials_file)
        try:
            client = session.client(
                "s3",
                endpoint_url=storage.endpoint or None,
                region_name=storage.region or None,
                config=config,
            )
        except ValueError as e:  # malformed endpoint URL
            raise UserError(f"invalid S3 endpoint {storage.endpoint!r}: {e}") from e
        return cls(client)

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        """Fail fast, before any training, when the bucket is unreachable or absent.

        With ``prefix`` (the run's own folder) it lists one key there instead of asking for the
        bucket (HeadBucket): credentials scoped to a run may list only their own folders.
        """
        with translate_errors("access to bucket", f"s3://{bucket}"):
            try:
                if prefix.strip("/"):
                    self.client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix.strip('/')}/", MaxKeys=1)
                else:
                    self.client.head_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as e:
                if _error_code(e) in {"404", "NoSuchBucket", "NotFound"}:
                    raise UserError(f"S3 bucket {bucket!r} does not exist") from e
                if _error_code(e) in {"403", "AccessDenied"}:
                    where = f"s3://{bucket}/{prefix.strip('/')}/" if prefix.strip("/") else f"S3 bucket {bucket!r}"
                    raise UserError(f"{where}: access denied") from e
                raise

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        """Upload a local file (multipart for large ones); ``progress`` gets each chunk's byte count."""
        with translate_errors("upload to", uri):
            self.client.upload_file(str(path), uri.bucket, uri.key, Callback=progress)

    def download_file(self, uri: S3Uri, path: Path) -> None:
        """Download an object to a local file."""
        with translate_errors("download of", uri):
            self.client.download_file(uri.bucket, uri.key, str(path))

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        """Write a small object in one request."""
        with translate_errors("write of", uri):
            self.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=data, ContentType=content_type)

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        """Read a small object; ``None`` when it does not exist."""
        with translate_errors("read of", uri):
            try:
                response = self.client.get_object(Bucket=uri.bucket, Key=uri.key)
            except botocore.exceptions.ClientError as e:
                if _error_code(e) in _MISSING_CODES:
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        """All objects whose key starts with ``prefix.key`` (paginated)."""
        objects: list[ObjectInfo] = []
        with translate_errors("listing of", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
                for item in page.get("Contents", []):
                    objects.append(ObjectInfo(key=item["Key"], size=int(item["Size"])))
        return objects

    def delete(self, uris: list[S3Uri]) -> None:
        """Delete objects, in order (callers put a folder's manifest first)."""
        for uri in uris:
            with translate_errors("delete of", uri):
                self.client.delete_object(Bucket=uri.bucket, Key=uri.key)
