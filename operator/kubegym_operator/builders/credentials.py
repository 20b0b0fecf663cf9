"""What a runner pod may touch in S3, as an STS session policy, and the per-run Secret that carries
its short-lived credentials (pure: no API or STS calls).

Why: a pod holding the bucket's long-lived key can read and overwrite every namespace's
checkpoints, and a custom environment module or an unpickled model runs inside that pod. With
the operator's default storage (STS mode), the operator instead turns its own key into
credentials for one pod through ``AssumeRole`` with the session policy :func:`session_policy`
writes from the runner's configuration alone:

- **write** (Put, Delete, multipart, and Get) only under the configuration's ``run_prefix``;
- **read** (Get) under that prefix and exactly what the configuration names: a training run's
  ``resume_from`` folder, a Benchmark's model folders (a ``.zip`` URI's folder), an Experiment
  report's trials (``runs[].run_prefix``) and final Benchmarks (``benchmark_prefixes``);
- **list** (ListBucket) only with an ``s3:prefix`` condition on those folders.

Nothing here knows the artifact layout: every prefix comes from the configuration the operator
already rendered (:mod:`kubegym_api.runnerconfig`), so a change of layout changes the policy with it.
Reads are what the spec asks for — a user who names another namespace's URI in ``resumeFrom.uri``
or a Benchmark's model can have it read (docs/security.md); what the policy stops is the pod
reaching anything *else*.

STS limits a session policy to 2,048 characters. A Benchmark of 32 models or an Experiment report
over many trials names more folders than fit, so :func:`session_policy` merges read folders inside
the owner's own namespace folder into wildcard patterns (longest common prefix first: an
Experiment's trials ``<ns>/<experiment>-*``), never broader than that namespace folder, and
fails with :class:`~kubegym_operator.builders.errors.RenderError` when even that does not fit.

The Secret (:func:`credentials_secret`) holds one key, ``credentials.json``
(:class:`~kubegym_api.storage.SessionCredentials`), so a refresh replaces all of it at once; it is
owned by the run (garbage-collected with it) and mounted as a volume, which the kubelet refreshes
in running pods. The Job records when the credentials were issued and when they expire
(:data:`ISSUED_ANNOTATION`, :data:`EXPIRATION_ANNOTATION`): :func:`refresh_due` says when a
reconcile must mint new ones (a third of their lifetime left).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_api.envvars import STORAGE_CREDENTIALS_FILE_ENV
from kubegym_api.runnerconfig import EvaluateConfig, ExperimentReportConfig, TrainConfig
from kubegym_api.storage import SESSION_CREDENTIALS_KEY, SessionCredentials
from kubegym_operator.builders.errors import RenderError
from kubegym_operator.builders.naming import dns_label

Manifest = dict[str, Any]
RunnerConfig = TrainConfig | EvaluateConfig | ExperimentReportConfig

#: STS's limit on a session policy (AWS and MinIO), in characters of its JSON.
MAX_POLICY_CHARS = 2048
#: What :func:`session_policy` writes at most: MinIO checks its own re-serialisation of the
#: policy, which may differ a little from ours, so some room is left.
POLICY_BUDGET = MAX_POLICY_CHARS - 128
POLICY_VERSION = "2012-10-17"
#: What a pod may do under its own prefix: everything an upload, a resume and pruning need.
WRITE_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
READ_ACTIONS = ("s3:GetObject",)

#: On the Job: when its pod's credentials were issued and when they expire (RFC 3339, UTC).
ISSUED_ANNOTATION = "kubegym.io/storage-credentials-issued"
EXPIRATION_ANNOTATION = "kubegym.io/storage-credentials-expiration"
#: On the per-run Secret, to find what the operator minted.
CREDENTIALS_LABEL = "kubegym.io/storage-credentials"
#: Refresh when less than this share of the credentials' lifetime is left.
REFRESH_WHEN_LEFT = 1 / 3
#: The credentials volume in the runner pod, and where it is mounted.
VOLUME_NAME = "storage-credentials"
MOUNT_PATH = "/var/run/secrets/kubegym.io/storage"


@dataclass(frozen=True)
class Folder:
    """A key prefix in ``bucket``: a folder (``key`` without slashes at its ends), or — when
    ``wildcard`` — every key that starts with ``key`` (a merge of folders)."""

    bucket: str
    key: str
    wildcard: bool = False

    @property
    def pattern(self) -> str:
        """The keys it covers, as an IAM pattern (no bucket)."""
        return f"{self.key}*" if self.wildcard else f"{self.key}/*"

    @property
    def literal(self) -> str:
        """The fixed beginning of every key it covers."""
        return self.key if self.wildcard else f"{self.key}/"

    def covers(self, other: Folder) -> bool:
        return self.bucket == other.bucket and other.literal.startswith(self.literal)


@dataclass(frozen=True)
class StorageAccess:
    """What one runner pod may touch: ``write`` (its own folder) and ``read`` (what it names).

    ``namespace_folder`` is the owner's namespace folder inside ``write``'s key (the segments up
    to the namespace), the widest that read folders may be merged to; None: never merged.
    """

    write: Folder
    read: tuple[Folder, ...] = ()
    namespace_folder: str | None = None


def parse_uri(uri: str, what: str) -> Folder:
    """The folder an ``s3://bucket/key`` URI names (an archive ``….zip``: the folder it is in).

    A URI that names a whole bucket is refused (``RenderError``): a pod never gets all of one.
    """
    scheme, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not sep or not bucket:
        raise RenderError("InvalidStorageURI", f"{what}: {uri!r} is not an s3://bucket/key URI")
    key = key.strip("/")
    if key.endswith(".zip"):
        key = key.rsplit("/", 1)[0] if "/" in key else ""
    if not key:
        raise RenderError(
            "InvalidStorageURI", f"{what}: {uri!r} names a whole bucket; name a run, checkpoint or model folder"
        )
    return Folder(bucket, key)


def _namespace_folder(write_key: str, namespace: str | None) -> str | None:
    if not namespace:
        return None
    segments = write_key.split("/")
    if namespace not in segments[:-1]:
        return None
    return "/".join(segments[: segments.index(namespace) + 1])


def access_of(config: RunnerConfig, namespace: str | None = None) -> StorageAccess:
    """The access the runner needs for ``config``, from its prefixes and URIs alone.

    ``namespace`` is the owner's: read folders under its namespace folder may be merged to fit
    the policy (:func:`session_policy`).
    """
    bucket = config.storage.bucket
    write_key = config.run_prefix.strip("/")
    if not write_key:
        raise RenderError("StorageNotConfigured", "the run's storage prefix is empty; it would be the whole bucket")
    write = Folder(bucket, write_key)
    read: list[Folder] = []
    if isinstance(config, TrainConfig):
        if config.resume_from:
            read.append(parse_uri(config.resume_from, "resumeFrom"))
    elif isinstance(config, EvaluateConfig):
        read += [parse_uri(model.uri, f"model {model.name}") for model in config.models]
    else:
        read += [Folder(bucket, run.run_prefix.strip("/")) for run in config.runs if run.run_prefix.strip("/")]
        read += [Folder(bucket, prefix.strip("/")) for prefix in config.benchmark_prefixes if prefix.strip("/")]
    return StorageAccess(write, _minimal([write, *read])[1:], _namespace_folder(write_key, namespace))


def _minimal(folders: Iterable[Folder]) -> tuple[Folder, ...]:
    """``folders`` without the ones another covers (the first, the pod's own, always stays first)."""
    kept: list[Folder] = []
    for folder in folders:
        if any(k.covers(folder) for k in kept):
            continue
        kept = [k for n, k in enumerate(kept) if n == 0 or not folder.covers(k)]
        kept.append(folder)
    return tuple(kept)


def _arn(bucket: str, pattern: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{pattern}" if pattern is not None else "")


def policy_document(write: Folder, read: Iterable[Folder]) -> Manifest:
    """The session policy granting ``write`` and ``read`` (see the module's docstring)."""
    reads = list(read)
    statements: list[Manifest] = [
        {"Effect": "Allow", "Action": list(WRITE_ACTIONS), "Resource": [_arn(write.bucket, write.pattern)]}
    ]
    if reads:
        statements.append(
            {"Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": [_arn(f.bucket, f.pattern) for f in reads]}
        )
    by_bucket: dict[str, list[str]] = {}
    for folder in [write, *reads]:
        by_bucket.setdefault(folder.bucket, []).append(folder.pattern)
    for bucket, patterns in by_bucket.items():
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [_arn(bucket)],
                "Condition": {"StringLike": {"s3:prefix": patterns}},
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def dump_policy(policy: Mapping[str, Any]) -> str:
    """The policy as STS receives it (compact JSON; its length is what STS limits)."""
    return json.dumps(policy, separators=(",", ":"))


def _common_prefix(a: str, b: str) -> str:
    """The longest string both start with (character by character: a wildcard may end mid-name)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def session_policy(access: StorageAccess, limit: int = POLICY_BUDGET) -> str:
    """The session policy of ``access`` as compact JSON of at most ``limit`` characters.

    When the exact policy is too long, the two read folders (of one bucket, inside the owner's
    namespace folder) with the longest common prefix become one wildcard pattern, again and
    again, until it fits; :class:`RenderError` (StoragePolicyTooLarge) when it cannot.
    """
    reads = list(access.read)
    text = dump_policy(policy_document(access.write, reads))
    floor = f"{access.namespace_folder}/" if access.namespace_folder else None
    while len(text) > limit:
        best: tuple[int, int] | None = None
        best_prefix = ""
        ordered = sorted(range(len(reads)), key=lambda i: (reads[i].bucket, reads[i].literal))
        for i, j in itertools.pairwise(ordered):
            a, b = reads[i], reads[j]
            prefix = _common_prefix(a.literal, b.literal)
            if a.bucket != b.bucket or floor is None or not prefix.startswith(floor):
                continue
            if best is None or len(prefix) > len(best_prefix):
                best, best_prefix = (i, j), prefix
        if best is None:
            raise RenderError(
                "StoragePolicyTooLarge",
                f"the {len(reads)} storage locations this pod reads do not fit in an STS session policy "
                f"({len(text)} > {limit} characters); name fewer models or split the resource",
            )
        merged = Folder(reads[best[0]].bucket, best_prefix, wildcard=True)
        reads = [f for f in reads if not merged.covers(f)] + [merged]
        text = dump_policy(policy_document(access.write, reads))
    return text


# --- the per-run Secret and how the pod gets it -----------------------------------------------


def credentials_secret_name(job_name: str) -> str:
    """The per-run Secret of a Job's pod (Job names are unique across kinds)."""
    return dns_label(f"{job_name}-storage")


def credentials_secret(job: Mapping[str, Any], owner_reference: Manifest, credentials: SessionCredentials) -> Manifest:
    """The Secret holding ``credentials`` for ``job``'s pod, owned by the run (``owner_reference``),
    labelled like the Job. ``data`` is base64 as the API wants it; nothing else holds the values."""
    meta = job["metadata"]
    labels = {**(meta.get("labels") or {}), CREDENTIALS_LABEL: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": credentials_secret_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {EXPIRATION_ANNOTATION: rfc3339(credentials.expiration)},
            "ownerReferences": [owner_reference],
        },
        "data": {SESSION_CREDENTIALS_KEY: base64.b64encode(credentials.dump().encode()).decode()},
    }


def volume(job_name: str) -> Manifest:
    """The pod volume of the credentials Secret (read-only files, mode 0440 for the runner's group)."""
    return {
        "name": VOLUME_NAME,
        "secret": {"secretName": credentials_secret_name(job_name), "defaultMode": 0o440},
    }


def volume_mount() -> Manifest:
    return {"name": VOLUME_NAME, "mountPath": MOUNT_PATH, "readOnly": True}


def env() -> list[Manifest]:
    """Where the runner finds the credentials file."""
    return [{"name": STORAGE_CREDENTIALS_FILE_ENV, "value": f"{MOUNT_PATH}/{SESSION_CREDENTIALS_KEY}"}]


# --- when to refresh --------------------------------------------------------------------------


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def issued_annotations(issued: dt.datetime, credentials: SessionCredentials) -> dict[str, str]:
    """The Job's record of its pod's current credentials."""
    return {ISSUED_ANNOTATION: rfc3339(issued), EXPIRATION_ANNOTATION: rfc3339(credentials.expiration)}


def minted_for(job: Mapping[str, Any]) -> bool:
    """Whether ``job``'s pod gets operator-minted credentials (it mounts the credentials volume)."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return any(v.get("name") == VOLUME_NAME for v in pod.get("volumes") or [])


def refresh_due(job: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether the credentials of ``job``'s pod must be minted anew: less than a third of their
    lifetime left (or no record of them on a Job that mounts them)."""
    if not minted_for(job):
        return False
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    issued = _parse_time(annotations.get(ISSUED_ANNOTATION))
    expiration = _parse_time(annotations.get(EXPIRATION_ANNOTATION))
    if issued is None or expiration is None or expiration <= issued:
        return True
    return (expiration - now) < (expiration - issued) * REFRESH_WHEN_LEFT
