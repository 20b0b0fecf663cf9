"""The objects the operator watches, as its watches last delivered them, with its own writes laid
over them until the watches catch up.

Why: a reconcile used to GET its object and its Job and LIST the Job's pods on every event,
whatever the event said, and the periodic resync did that for every unfinished object every
30 s; with 1,000 runs most of the operator's time went into reading what its watches had
already delivered. Reconciles now read here and make no GET or LIST for what is watched.

**Where the objects come from: kopf's indexes.** :mod:`kubegym_operator.handlers.watched`
registers one ``@kopf.index`` per watched resource (TrainingRuns, Benchmarks, Experiments by
(namespace, name); the Jobs the operator owns by (namespace, name); their pods by (namespace,
``batch.kubernetes.io/job-name``)). kopf lists every indexed resource and indexes the listing
before it runs any handler, keeps the indexes current from the same watch streams that wake
the handlers (an object's index entry is updated before that event's handlers run), and drops
an object on its DELETED event. The indexes are live read-only mappings; :meth:`attach` keeps a
reference to each, for the reconciles (kopf's executor threads) and the resync thread. Values
are :func:`slim` copies: what the reconciles read, without ``managedFields`` and, of pods and Jobs,
only the few fields of their pod spec that are read.

**Read-your-writes.** The API's response to a create, patch or delete the operator made is what
reads see (:meth:`wrote`, :meth:`deleted`) until the watch delivers that resourceVersion or a
newer one (resourceVersions are compared as integers, as etcd issues them; one that is not an
integer leaves the watch in charge). Without that, the status write of a run — whose MODIFIED
event can arrive before its Job's ADDED — would make the next reconcile miss the Job it just
created and POST it again (409, then a GET). A DELETED event (:meth:`forget`) drops the written
copy of that object and is remembered for :data:`DELETION_MEMORY_SECONDS`, so a response that
arrives after the watch already saw the object go cannot bring it back.

Thread safety: kopf changes its indexes in the event loop's thread; a read copies what it needs
in one step (a dict lookup, or ``list()`` over a store, done by C code under the GIL) and retries
if an index changed size under it. The written copies have a lock of their own.

Limit, kopf's: a watch that must re-list (410 Gone, after a long disconnect) delivers the
listing but no DELETED events for what vanished meanwhile, so such an object stays in its index.
The operator's metrics prune those by a slow periodic LIST (``handlers.observability``).
"""

from __future__ import annotations

import copy
import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_operator.kubeapi import Obj

#: (namespace, name), or (namespace, job name) for pods.
Key = tuple[str, str]
#: What a watch feeds: key → the objects under it (normally one; two while an object recreated
#: under the same name has not yet lost its predecessor). ``kopf.Index[Key, Obj]`` is one.
Source = Mapping[Key, Iterable[Obj]]

#: How long a DELETED event is remembered against late API responses.
DELETION_MEMORY_SECONDS = 300.0
#: Reads retry this often when an index changes size under them.
_READ_ATTEMPTS = 5


class Kind(enum.StrEnum):
    """The watched kinds, by their Kubernetes ``kind``."""

    TRAINING_RUN = "TrainingRun"
    BENCHMARK = "Benchmark"
    EXPERIMENT = "Experiment"
    JOB = "Job"
    POD = "Pod"


#: Kinds read by (namespace, name); pods are read by their Job's name instead.
NAMED_KINDS = (Kind.TRAINING_RUN, Kind.BENCHMARK, Kind.EXPERIMENT, Kind.JOB)

#: The label the Job controller puts on a Job's pods.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def resource_version(obj: Mapping[str, Any] | None) -> int | None:
    """``metadata.resourceVersion`` as an integer; None when absent or not an integer."""
    value = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def uid_of(obj: Mapping[str, Any] | None) -> str | None:
    """``metadata.uid``, or None."""
    uid = ((obj or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None


#: What reconciles read of a pod's spec (or a Job's pod template): where it runs, its scheduling
#: (drift is judged on these), each container's name and resources (the memory limit an OOM kill is
#: reported against) and each volume's name (whether the storage credentials are mounted).
POD_SPEC_READ = ("nodeName", "priorityClassName", "nodeSelector", "tolerations", "affinity")
CONTAINER_READ = ("name", "resources")
VOLUME_READ = ("name",)


def _items(values: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(values, list):
        return values
    return [{k: copy.deepcopy(v[k]) for k in keys if k in v} if isinstance(v, dict) else v for v in values]


def _pod_spec(spec: Mapping[str, Any]) -> Obj:
    out: Obj = {k: copy.deepcopy(spec[k]) for k in POD_SPEC_READ if k in spec}
    for field in ("containers", "initContainers"):
        if field in spec:
            out[field] = _items(spec[field], CONTAINER_READ)
    if "volumes" in spec:
        out["volumes"] = _items(spec["volumes"], VOLUME_READ)
    return out


def slim(kind: str, body: Mapping[str, Any]) -> Obj:
    """A deep copy of ``body`` holding what reconciles read, never sharing structure with ``body``
    (which kopf keeps using).

    Every kind loses ``metadata.managedFields``. Pods and Jobs keep of their pod spec only
    :data:`POD_SPEC_READ`, the containers' :data:`CONTAINER_READ` and the volumes'
    :data:`VOLUME_READ`: images, commands, mounts, security contexts and the runner's whole
    configuration (its environment) are what a pod spec mostly holds, and nothing reads them
    back. The reconcile tests read the view through this function too (their fake watch slims
    what it delivers), so a read of a dropped field fails there first.
    """
    obj: Obj = {k: copy.deepcopy(v) for k, v in body.items() if k not in ("metadata", "spec")}
    obj["metadata"] = {k: copy.deepcopy(v) for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    spec = body.get("spec")
    if "spec" not in body:
        return obj
    if kind == Kind.POD and isinstance(spec, Mapping):
        obj["spec"] = _pod_spec(spec)
    elif kind == Kind.JOB and isinstance(spec, Mapping):
        job_spec: Obj = {k: copy.deepcopy(v) for k, v in spec.items() if k != "template"}
        template = spec.get("template")
        if isinstance(template, Mapping):
            job_spec["template"] = {
                "metadata": copy.deepcopy(template.get("metadata") or {}),
                "spec": _pod_spec(template.get("spec") or {}),
            }
        obj["spec"] = job_spec
    else:
        obj["spec"] = copy.deepcopy(spec)
    return obj


def _snapshot(values: Callable[[], Iterable[Obj]]) -> list[Obj]:
    """``list(values())``, retried while kopf's loop thread resizes the dict under it."""
    for _ in range(_READ_ATTEMPTS - 1):
        try:
            return list(values())
        except RuntimeError:  # dictionary changed size during iteration
            continue
    return list(values())


def newest(objects: Iterable[Obj]) -> Obj | None:
    """The object with the highest resourceVersion (the newest incarnation of a name)."""
    best: Obj | None = None
    for obj in objects:
        if best is None or (resource_version(obj) or 0) > (resource_version(best) or 0):
            best = obj
    return best


@dataclass(frozen=True)
class _Written:
    """The operator's own write of one object: the response (None once it deleted the object)."""

    obj: Obj | None
    uid: str | None
    version: int | None


@dataclass(frozen=True)
class _Gone:
    uid: str | None
    version: int | None
    at: float


class WatchedObjects:
    """Reads of the watched objects: the watches' copy, or the operator's newer write of it.

    ``sources`` maps each of :data:`NAMED_KINDS` to its index (missing ones read as empty until
    :meth:`attach`), ``pods`` is the pod index by (namespace, job name), ``clock`` the monotonic
    clock that ages remembered deletions.
    """

    def __init__(
        self,
        sources: Mapping[Kind, Source] | None = None,
        pods: Source | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources: dict[Kind, Source] = {kind: {} for kind in NAMED_KINDS}
        self._sources.update(sources or {})
        self._pods: Source = pods if pods is not None else {}
        self._clock = clock
        self._guard = threading.Lock()
        self._written: dict[tuple[Kind, str, str], _Written] = {}
        self._gone: dict[tuple[Kind, str, str], _Gone] = {}

    # --- feeding -----------------------------------------------------------------------------

    def attach(self, kind: Kind, source: Source) -> None:
        """Read ``kind`` (one of :data:`NAMED_KINDS`, or :attr:`Kind.POD` for the pods by job name)
        from ``source`` from now on: kopf's live index, handed over at startup."""
        if kind == Kind.POD:
            self._pods = source
        else:
            self._sources[kind] = source

    def wrote(self, kind: str, response: Mapping[str, Any]) -> None:
        """``response`` (to a create or patch of one object) is what reads of it see until the watch
        delivers its resourceVersion or a newer one. Kinds that are not watched are ignored."""
        watched = _named_kind(kind)
        meta = response.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if watched is None or not namespace or not name:
            return
        entry = _Written(slim(watched, response), uid_of(response), resource_version(response))
        self._remember(watched, namespace, name, entry)

    def deleted(self, kind: str, namespace: str, name: str, response: Mapping[str, Any] | None) -> None:
        """The operator deleted ``namespace/name``: reads see it gone, or — when ``response`` is the
        object with a ``deletionTimestamp`` (finalizers or foreground deletion hold it) — being
        deleted, until the watch catches up."""
        watched = _named_kind(kind)
        if watched is None:
            return
        current = self.get(watched, namespace, name)
        if response is not None and response.get("kind") == watched and _deleting(response):
            self.wrote(watched, response)
            return
        uid = uid_of(response) if response is not None and response.get("kind") == watched else uid_of(current)
        self._remember(watched, namespace, name, _Written(None, uid, None))

    def forget(self, kind: str, body: Mapping[str, Any]) -> None:
        """The watch delivered ``body``'s DELETED event: drop the operator's copy of that object, and
        remember the deletion against responses still on their way."""
        watched = _named_kind(kind)
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if watched is None or not namespace or not name:
            return
        key = (watched, str(namespace), str(name))
        uid, version = uid_of(body), resource_version(body)
        with self._guard:
            written = self._written.get(key)
            same = written is not None and (written.uid is None or written.uid == uid)
            if same and written is not None and _not_newer(written.version, version):
                del self._written[key]
            self._gone[key] = _Gone(uid, version, self._clock())
            self._prune_gone()

    # --- reads -------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object ``namespace/name`` of ``kind`` (one of :data:`NAMED_KINDS`), or None."""
        key = (namespace, name)
        source = self._sources[kind]
        watched = newest(_snapshot(lambda: source.get(key) or ()))
        with self._guard:
            written = self._written.get((kind, namespace, name))
            if written is None:
                return watched
            if _caught_up(written, watched):
                del self._written[(kind, namespace, name)]
                return watched
            return written.obj

    def pods_of_job(self, namespace: str, job: str) -> list[Obj]:
        """The pods of Job ``namespace/job`` (label ``batch.kubernetes.io/job-name``), in any order."""
        pods = self._pods
        return _snapshot(lambda: pods.get((namespace, job)) or ())

    def keys(self, kind: Kind) -> list[Key]:
        """(namespace, name) of every watched object of ``kind``."""
        source = self._sources[kind]
        for _ in range(_READ_ATTEMPTS - 1):
            try:
                return list(source.keys())
            except RuntimeError:
                continue
        return list(source.keys())

    def objects(self, kind: Kind) -> Iterator[Obj]:
        """Every watched object of ``kind``, as :meth:`get` reads it."""
        for namespace, name in self.keys(kind):
            obj = self.get(kind, namespace, name)
            if obj is not None:
                yield obj

    # --- internals ---------------------------------------------------------------------------

    def _remember(self, kind: Kind, namespace: str, name: str, entry: _Written) -> None:
        key = (kind, namespace, name)
        source = self._sources[kind]
        watched = newest(_snapshot(lambda: source.get((namespace, name)) or ()))
        with self._guard:
            self._prune_gone()
            gone = self._gone.get(key)
            seen_gone = gone is not None and gone.uid == entry.uid and _not_newer(entry.version, gone.version)
            if entry.obj is not None and seen_gone:
                return  # the watch already saw this object deleted
            if entry.obj is not None and _caught_up(entry, watched):
                self._written.pop(key, None)
                return
            before = self._written.get(key)
            if (
                before is not None
                and entry.obj is not None
                and before.uid == entry.uid
                and before.version is not None
                and entry.version is not None
                and before.version > entry.version
            ):
                return  # a slower response to an earlier write
            self._written[key] = entry

    def _prune_gone(self) -> None:
        horizon = self._clock() - DELETION_MEMORY_SECONDS
        for key in [k for k, g in self._gone.items() if g.at < horizon]:
            del self._gone[key]


def _named_kind(kind: str) -> Kind | None:
    try:
        watched = Kind(kind)
    except ValueError:
        return None
    return watched if watched in NAMED_KINDS else None


def _not_newer(version: int | None, than: int | None) -> bool:
    """``version <= than``, and True when either is unknown (the watch is in charge)."""
    return version is None or than is None or version <= than


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _caught_up(written: _Written, watched: Obj | None) -> bool:
    """Whether the watch's copy supersedes the operator's write."""
    if written.obj is None:  # deleted by the operator: until the watch shows it gone or replaced
        return watched is None or (written.uid is not None and uid_of(watched) != written.uid)
    if watched is None:
        return False
    seen, ours = resource_version(watched), written.version
    if seen is None or ours is None:
        return True  # versions that cannot be compared: the watch is in charge
    if uid_of(watched) == written.uid:
        return seen >= ours
    return seen > ours  # another object under this name, newer than the one written
