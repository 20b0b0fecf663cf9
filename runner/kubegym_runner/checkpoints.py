"""Checkpoint folders in S3: layout, manifests, completeness, keep-last pruning.

A run's artifacts live under ``s3://<bucket>/<runPrefix>/``::

    checkpoints/<step:012d>/  model.zip, vecnormalize.pkl?, replay_buffer.pkl?, manifest.json
    final/                    same shape, the model at the end of training
    best/                     same shape, the model of the best periodic evaluation (its manifest says which)
    eval/                     evaluations.json (history), final.json (final evaluation)

A folder is written object by object with ``manifest.json`` last, and the manifest
lists the sha256 and size of every object. Readers therefore see a folder as
complete iff its manifest exists and the objects match it; a pod killed mid-upload
leaves an incomplete folder that is ignored and later pruned. Zero-padded step
folders sort lexically in step order, which keeps listings readable in any S3 browser.

``final/manifest.json`` is written twice: when the model is uploaded (the folder is usable
from then on, e.g. as a ``resumeFrom``), and again after the final evaluation with the
run's ``result`` added (one PUT, so readers see the old or the new manifest, never a mix).
That makes the final manifest the durable record of ``status.result``. Likewise ``best/manifest.json``
carries the evaluation that chose the model (``evaluation``: step, mean and std reward, episodes), the
durable record of ``status.best`` (:mod:`kubegym_runner.best`).

Every manifest also says whose the folder is and what it fits: the run's uid, algorithm, env id
and observation/action spaces (format 2; :mod:`kubegym_runner.provenance` decides from them
whether a run may load it). Format-1 manifests (no uid, no spaces) are still read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from kubegym_api.trainingrun import BEST_FOLDER, EvaluationResult, TrainingResult
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage, sha256_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.zip"
VECNORMALIZE_NAME = "vecnormalize.pkl"
REPLAY_BUFFER_NAME = "replay_buffer.pkl"
#: 2: ``runUid``, ``observationSpace`` and ``actionSpace`` added.
MANIFEST_FORMAT_VERSION = 2


class _Wire(BaseModel):
    # Readers ignore unknown keys so newer runners can add fields to manifests.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ObjectDigest(_Wire):
    """What a reader checks an object against."""

    sha256: str
    size: int


class Manifest(_Wire):
    """The ``manifest.json`` of a checkpoint folder; its presence marks the folder complete."""

    format_version: int = MANIFEST_FORMAT_VERSION
    step: int
    created_at: datetime
    #: Training wall-clock seconds accumulated over all pods of the run up to this step.
    wall_time_seconds: float
    algorithm: str
    env_id: str
    #: ``metadata.uid`` of the TrainingRun that wrote the folder (None: format 1, or an upload).
    run_uid: str | None = None
    #: The model's spaces (:func:`kubegym_runner.provenance.describe_space`; None: format 1).
    observation_space: str | None = None
    action_space: str | None = None
    #: Training episodes finished up to this step (progress continues counting from it).
    episodes: int = 0
    objects: dict[str, ObjectDigest]
    #: ``final/`` only, once the final evaluation ran: the run's ``status.result``.
    result: TrainingResult | None = None
    #: ``best/`` only: the periodic evaluation that made this model the best so far.
    evaluation: EvaluationResult | None = None


def step_folder_name(step: int) -> str:
    """Folder name of the checkpoint at ``step``: zero-padded so lexical order is step order."""
    return f"{step:012d}"


@dataclass(frozen=True)
class RunLayout:
    """Where a run's artifacts go, relative to its root ``s3://bucket/runPrefix``."""

    root: S3Uri

    @classmethod
    def of(cls, bucket: str, run_prefix: str) -> RunLayout:
        return cls(S3Uri(bucket, run_prefix.strip("/")))

    @property
    def checkpoints(self) -> S3Uri:
        return self.root.join("checkpoints")

    def checkpoint(self, step: int) -> S3Uri:
        return self.checkpoints.join(step_folder_name(step))

    @property
    def final(self) -> S3Uri:
        return self.root.join("final")

    @property
    def best(self) -> S3Uri:
        return self.root.join(BEST_FOLDER)

    @property
    def eval(self) -> S3Uri:
        return self.root.join("eval")


# --- pure selection logic ------------------------------------------------------------


def group_by_step(objects: Iterable[ObjectInfo], checkpoints: S3Uri) -> dict[int, dict[str, int]]:
    """Group a listing of ``checkpoints/`` into ``{step: {object name: size}}``.

    Keys that are not ``<checkpoints>/<digits>/<name>`` are ignored.
    """
    prefix = checkpoints.folder().key
    folders: dict[int, dict[str, int]] = {}
    for obj in objects:
        if not obj.key.startswith(prefix):
            continue
        folder, sep, name = obj.key[len(prefix) :].partition("/")
        if not sep or not folder.isdigit() or not name or "/" in name:
            continue
        folders.setdefault(int(folder), {})[name] = obj.size
    return folders


def is_complete(manifest: Manifest, present: Mapping[str, int]) -> bool:
    """Whether every object the manifest lists is present with the listed size.

    Hashes are verified on download (:func:`download_folder`); sizes are what a
    listing can check cheaply.
    """
    return all(present.get(name) == digest.size for name, digest in manifest.objects.items())


def steps_to_prune(complete: Iterable[int], present: Iterable[int], keep_last: int) -> list[int]:
    """Checkpoint steps to delete so that the newest ``keep_last`` complete ones remain.

    Incomplete folders older than the newest complete checkpoint are leftovers of a
    killed pod and go too; an incomplete folder newer than every complete one is
    left alone (it may be a write in progress).
    """
    complete_sorted = sorted(set(complete), reverse=True)
    keep = set(complete_sorted[:keep_last])
    if not complete_sorted:
        return []
    newest = complete_sorted[0]
    return sorted(step for step in set(present) if step not in keep and step < newest)


# --- I/O -------------------------------------------------------------------------------


class IncompleteCheckpointError(Exception):
    """A folder's objects do not match its manifest (or the manifest is missing)."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder and its manifest."""

    folder: S3Uri
    manifest: Manifest

    @property
    def step(self) -> int:
        return self.manifest.step


def read_manifest(storage: Storage, folder: S3Uri) -> Manifest | None:
    """The folder's manifest, or ``None`` if it has none (or an unreadable one)."""
    data = storage.get_bytes(folder.join(MANIFEST_NAME))
    if data is None:
        return None
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as e:
        log.warning("ignoring unreadable manifest in %s: %s", folder, e)
        return None


def write_folder(
    storage: Storage,
    folder: S3Uri,
    files: Mapping[str, Path],
    *,
    step: int,
    wall_time_seconds: float,
    algorithm: str,
    env_id: str,
    episodes: int = 0,
    run_uid: str | None = None,
    observation_space: str | None = None,
    action_space: str | None = None,
    evaluation: EvaluationResult | None = None,
) -> Manifest:
    """Upload ``files`` (name → local path) into ``folder``, then its manifest (with the step,
    wall time, episodes and provenance given: the run's uid, algorithm, env id and spaces; for
    ``best/``, the evaluation that chose the model).

    An existing manifest is removed first so that, while objects are replaced,
    no reader takes the folder for complete.
    """
    storage.delete([folder.join(MANIFEST_NAME)])
    objects: dict[str, ObjectDigest] = {}
    for name, path in files.items():
        objects[name] = ObjectDigest(sha256=sha256_file(path), size=path.stat().st_size)
        storage.upload_file(path, folder.join(name))
    manifest = Manifest(
        step=step,
        created_at=datetime.now(UTC),
        wall_time_seconds=wall_time_seconds,
        algorithm=algorithm,
        env_id=env_id,
        run_uid=run_uid,
        observation_space=observation_space,
        action_space=action_space,
        episodes=episodes,
        objects=objects,
        evaluation=evaluation,
    )
    write_manifest(storage, folder, manifest)
    return manifest


def write_manifest(storage: Storage, folder: S3Uri, manifest: Manifest) -> None:
    """Put ``folder``'s manifest (one object, so the replacement is atomic for readers)."""
    storage.put_bytes(
        folder.join(MANIFEST_NAME), manifest.model_dump_json(by_alias=True, indent=2, exclude_none=True).encode()
    )


def download_folder(storage: Storage, folder: S3Uri, dest: Path) -> Manifest:
    """Download a complete folder into ``dest`` and verify every object against the manifest."""
    manifest = read_manifest(storage, folder)
    if manifest is None:
        raise IncompleteCheckpointError(f"{folder} has no {MANIFEST_NAME}")
    dest.mkdir(parents=True, exist_ok=True)
    for name, digest in manifest.objects.items():
        path = dest / name
        storage.download_file(folder.join(name), path)
        if path.stat().st_size != digest.size or sha256_file(path) != digest.sha256:
            raise IncompleteCheckpointError(f"{folder.join(name)} does not match its manifest")
    return manifest


@dataclass(frozen=True)
class Listing:
    """What a scan of ``checkpoints/`` found."""

    #: ``{step: {object name: size}}`` of every step folder, complete or not.
    folders: dict[int, dict[str, int]]
    #: The complete checkpoints, newest first.
    complete: list[Checkpoint]


def scan(storage: Storage, checkpoints: S3Uri) -> Listing:
    """List ``checkpoints/`` and read the manifests to tell complete folders from partial ones."""
    folders = group_by_step(storage.list_objects(checkpoints.folder()), checkpoints)
    complete: list[Checkpoint] = []
    for step in sorted(folders, reverse=True):
        if MANIFEST_NAME not in folders[step]:
            continue
        folder = checkpoints.join(step_folder_name(step))
        manifest = read_manifest(storage, folder)
        if manifest is not None and is_complete(manifest, folders[step]):
            complete.append(Checkpoint(folder, manifest))
    return Listing(folders, complete)


def prune(
    storage: Storage,
    checkpoints: S3Uri,
    keep_last: int,
    is_own: Callable[[Manifest], bool] | None = None,
) -> tuple[list[int], list[Checkpoint]]:
    """Delete all but the newest ``keep_last`` complete checkpoints.

    ``is_own`` tells the run's own checkpoints from another run's (found in an old-layout folder):
    those are neither counted nor deleted. Returns the deleted steps and the complete checkpoints
    kept (newest first).
    """
    listing = scan(storage, checkpoints)
    foreign = {c.step for c in listing.complete if is_own is not None and not is_own(c.manifest)}
    own = [c for c in listing.complete if c.step not in foreign]
    present = [step for step in listing.folders if step not in foreign]
    doomed = steps_to_prune((c.step for c in own), present, keep_last)
    for step in doomed:
        folder = checkpoints.join(step_folder_name(step))
        # The manifest goes first: from then on no reader takes the folder for complete.
        names = sorted(listing.folders[step], key=lambda name: name != MANIFEST_NAME)
        storage.delete([folder.join(name) for name in names])
    kept = [c for c in own if c.step not in set(doomed)]
    return doomed, kept
