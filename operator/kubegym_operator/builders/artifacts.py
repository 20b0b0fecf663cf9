"""Where a TrainingRun's artifacts live: the one place that decides a run's S3 prefix (pure).

A run's folder is ``<storage prefix>/<namespace>/<name>/<uid>``. The uid is there because a name
is not an identity: a run deleted and applied again under the same name is another run (another
algorithm, perhaps), and with ``<namespace>/<name>`` alone it found its predecessor's checkpoints
and resumed from them. With the uid in the prefix a new run starts in an empty folder, and the old
run's artifacts stay where they were (deleting a run never deletes its artifacts).

**One source of truth.** The operator chooses the folder when it first renders the run's Job,
writes it on the Job (:data:`ARTIFACTS_ANNOTATION`) and records it in ``status.artifacts``
(immutable once set, by a CEL rule); from then on every reader takes the recorded one: the Job
rendered again, a Benchmark's ``trainingRunRef``, an Experiment's report, ``resumeFrom.trainingRun``.
So an operator upgrade mid-run, or a new default storage, never moves a run's artifacts.

**Runs from before the uid** (rendered by an older operator, ``<prefix>/<namespace>/<name>``):
such a run has no ``status.artifacts``. If its Job still exists it is recorded from the Job (a Job
without the annotation was rendered with the old layout); if its status reports a checkpoint or
final model under the old layout, that layout is kept (:func:`run_location`); otherwise it has
nothing to lose and gets the new layout.

Benchmarks and Experiments keep ``<prefix>/<namespace>/benchmarks/<name>`` and
``.../experiments/<name>`` (:func:`namespaced_prefix`): their reports are rewritten by each
Benchmark or Experiment, and no runner resumes from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import BEST_FOLDER, RunArtifacts

#: On a TrainingRun's Job: ``s3://<bucket>/<prefix>/``, the folder its runner writes (survives a
#: status write lost between the Job's creation and the status patch).
ARTIFACTS_ANNOTATION = "kubegym.io/artifacts"
#: The folders a run's runner writes directly under its prefix (how a URI is told to be in the old layout).
RUN_FOLDERS = ("checkpoints", "final", BEST_FOLDER, "eval")


@dataclass(frozen=True)
class ArtifactLocation:
    """A run's folder: ``s3://<bucket>/<prefix>/``."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        """``s3://<bucket>/<prefix>/``."""
        return f"s3://{self.bucket}/{self.prefix}/"

    def contains(self, uri: str) -> bool:
        """Whether ``uri`` names one of the folders the run's runner writes (checkpoints, final, best, eval)."""
        rest = uri.removeprefix(self.uri) if uri.startswith(self.uri) else None
        return rest is not None and rest.split("/", 1)[0] in RUN_FOLDERS

    def status(self) -> dict[str, str]:
        """As ``status.artifacts`` (camelCase JSON of :class:`~kubegym_api.trainingrun.RunArtifacts`)."""
        model = RunArtifacts(bucket=self.bucket, prefix=self.prefix, uri=self.uri)
        return dict(model.model_dump(mode="json", by_alias=True))

    @classmethod
    def parse(cls, uri: str) -> ArtifactLocation | None:
        """The location an ``s3://bucket/prefix/`` URI names, or None for anything else."""
        if not uri.startswith("s3://"):
            return None
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, prefix) if bucket and prefix else None


def namespaced_prefix(storage: S3Storage, namespace: str, *parts: str) -> str:
    """``<storage prefix>/<namespace>/<parts...>``, empty segments left out."""
    return "/".join(p for p in (storage.prefix.strip("/"), namespace, *parts) if p)


def legacy_location(storage: S3Storage, namespace: str, name: str) -> ArtifactLocation:
    """Where operators before the uid put run ``namespace/name``: ``<prefix>/<namespace>/<name>``."""
    return ArtifactLocation(storage.bucket, namespaced_prefix(storage, namespace, name))


def recorded_location(run: Mapping[str, Any]) -> ArtifactLocation | None:
    """``status.artifacts``, the location the operator recorded, if any."""
    recorded = (run.get("status") or {}).get("artifacts")
    if not isinstance(recorded, Mapping):
        return None
    bucket, prefix = recorded.get("bucket"), recorded.get("prefix")
    if not isinstance(bucket, str) or not isinstance(prefix, str) or not bucket or not prefix.strip("/"):
        return None
    return ArtifactLocation(bucket, prefix.strip("/"))


def reported_uris(run: Mapping[str, Any]) -> list[str]:
    """The URIs the run's runner reported: its newest checkpoint, its best and its final model."""
    status = run.get("status") or {}
    found = [
        ((status.get("checkpoints") or {}).get("latestUri")),
        ((status.get("best") or {}).get("uri")),
        ((status.get("result") or {}).get("modelUri")),
    ]
    return [uri for uri in found if isinstance(uri, str) and uri]


def run_location(run: Mapping[str, Any], storage: S3Storage) -> ArtifactLocation:
    """The run's folder, given the storage it writes to (its own, else the operator's default).

    In order: the recorded ``status.artifacts``; the old layout, for a run that reported
    checkpoints or a final model there (it started under an older operator); else
    ``<prefix>/<namespace>/<name>/<uid>``. Every reader and the Job's rendering call this, so
    there is one answer.
    """
    recorded = recorded_location(run)
    if recorded is not None:
        return recorded
    meta = run["metadata"]
    legacy = legacy_location(storage, meta["namespace"], meta["name"])
    if any(legacy.contains(uri) for uri in reported_uris(run)):
        return legacy
    uid = meta.get("uid")
    if not uid:
        raise ValueError(f"TrainingRun {meta['name']!r} has no metadata.uid")
    return ArtifactLocation(storage.bucket, f"{legacy.prefix}/{uid}")


def location_of_job(
    run: Mapping[str, Any], job: Mapping[str, Any], storage: S3Storage | None
) -> ArtifactLocation | None:
    """Where the run's live ``job`` writes: its annotation, or, for a Job an operator before the
    uid rendered (no annotation), the old layout in ``storage``; None when that cannot be told."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    if ARTIFACTS_ANNOTATION in annotations:
        return ArtifactLocation.parse(str(annotations[ARTIFACTS_ANNOTATION]))
    if storage is None:
        return None
    return legacy_location(storage, run["metadata"]["namespace"], run["metadata"]["name"])


def artifacts_status(
    run: Mapping[str, Any], job: Mapping[str, Any] | None, storage: S3Storage | None
) -> dict[str, Any]:
    """``{"artifacts": ...}`` to write when the run's status has none yet and its Job tells where it
    writes; empty otherwise (a recorded location is never rewritten)."""
    if recorded_location(run) is not None or job is None:
        return {}
    location = location_of_job(run, job, storage)
    return {"artifacts": location.status()} if location is not None else {}
