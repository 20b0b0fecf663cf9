"""``kubectl gym upload``: put a local stable-baselines3 model in S3 and print the URI to reference.

The model lands in a content-addressed folder, ``<prefix>/<sha256[:16]>/``, so uploading the
same file twice is harmless and a URI never changes meaning. With ``--algorithm`` a
``manifest.json`` (the checkpoints' format: sha256 and size of every object, and the archive's
observation and action spaces as its ``data`` JSON records them) goes last, and the runner then
verifies the archive, knows how to load it and whether a ``resumeFrom`` of it fits; ``--vecnormalize`` adds the
normalisation statistics the model was trained with.

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
a profile, a web identity); the endpoint from ``--endpoint`` or ``AWS_ENDPOINT_URL``; the bucket
from ``--bucket`` or ``KUBEGYM_BUCKET``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubegym_api.base import Algorithm
from kubegym_api.storage import S3Storage

#: Object names inside a model folder, as the runner reads them.
MODEL_NAME = "model.zip"
VECNORMALIZE_NAME = "vecnormalize.pkl"
MANIFEST_NAME = "manifest.json"


class UploadError(Exception):
    """The upload cannot be done as asked; the message says what to fix."""


@dataclass(frozen=True)
class Upload:
    uri: str
    algorithm: str | None


def check_archive(path: Path) -> None:
    """Refuse files that stable-baselines3 could not load, before anything is uploaded."""
    if not path.is_file():
        raise UploadError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UploadError(f"{path} is not a stable-baselines3 model archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        if "data" not in archive.namelist():
            raise UploadError(f"{path} is not a stable-baselines3 model archive (no 'data' member)")


def upload(
    model: Path,
    *,
    bucket: str | None,
    prefix: str,
    endpoint: str | None,
    algorithm: str | None,
    vecnormalize: Path | None,
) -> Upload:
    """Upload the model (and statistics, and manifest) and return its folder's URI."""
    from kubegym_runner.checkpoints import Manifest, ObjectDigest
    from kubegym_runner.errors import RunnerError
    from kubegym_runner.provenance import archive_spaces
    from kubegym_runner.storage import S3Uri, Storage, sha256_file

    check_archive(model)
    if vecnormalize is not None and not vecnormalize.is_file():
        raise UploadError(f"{vecnormalize}: no such file")
    if algorithm is not None:
        try:
            algorithm = Algorithm(algorithm).value
        except ValueError as e:
            raise UploadError(f"unknown algorithm {algorithm!r}; one of {', '.join(a.value for a in Algorithm)}") from e
    bucket = bucket or os.environ.get("KUBEGYM_BUCKET")
    if not bucket:
        raise UploadError("no bucket: pass --bucket or set KUBEGYM_BUCKET")
    files = {MODEL_NAME: model, **({VECNORMALIZE_NAME: vecnormalize} if vecnormalize else {})}
    digests = {name: ObjectDigest(sha256=sha256_file(path), size=path.stat().st_size) for name, path in files.items()}
    folder = S3Uri(bucket, "/".join(p for p in (prefix.strip("/"), digests[MODEL_NAME].sha256[:16]) if p))
    try:
        storage = Storage.from_config(
            S3Storage(bucket=bucket, endpoint=endpoint or os.environ.get("AWS_ENDPOINT_URL") or None)
        )
        storage.check_bucket(bucket)
        for name, path in files.items():
            storage.upload_file(path, folder.join(name))
        if algorithm is not None:
            observation_space, action_space = archive_spaces(model)
            manifest = Manifest(
                step=0,
                created_at=datetime.now(UTC),
                wall_time_seconds=0.0,
                algorithm=algorithm,
                env_id="",
                observation_space=observation_space,
                action_space=action_space,
                objects=digests,
            )
            storage.put_bytes(
                folder.join(MANIFEST_NAME),
                manifest.model_dump_json(by_alias=True, indent=2, exclude_none=True).encode(),
            )
    except RunnerError as e:
        raise UploadError(str(e)) from e
    return Upload(uri=f"{folder}/", algorithm=algorithm)
