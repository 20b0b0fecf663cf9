"""An in-memory cluster behind :class:`~kubegym_operator.clusterapi.ClusterAPI`, for fast tests of
every reconcile path.

:class:`FakeCluster` keeps objects as the API server would — a uid, one resourceVersion counter for
everything, ``generation`` bumped when a spec changes, ``creationTimestamp`` — and records every
call in :attr:`FakeCluster.calls`, reads included, so a test can say "this reconcile wrote
nothing". Creating a name that exists returns the existing object (the live API's
create-if-absent). A Foreground delete leaves the object with a ``deletionTimestamp`` until
:meth:`FakeCluster.finish_deletion`; a Background one removes it at once, with a Job's pods.
:meth:`FakeCluster.fail` makes the next matching call raise an :class:`ApiError`.

:class:`FakeHttp` is the same cluster seen through :mod:`kubegym_operator.kubeapi`'s calls (URL
paths), for tests of the live API (watch-fed reads, HTTP writes): :attr:`FakeHttp.requests` is
what reached the API server. :class:`FakeWatch` plays kopf's indexes: it holds the cluster's
objects as of the last :meth:`FakeWatch.deliver`, so a test chooses when the watch catches up.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubegym_operator.apierrors import ApiError
from kubegym_operator.kubeapi import RESOURCES
from kubegym_operator.watched import JOB_NAME_LABEL, NAMED_KINDS, Kind, Source, WatchedObjects, slim

Obj = dict[str, Any]
#: Verbs that change the cluster (an Event included).
WRITES = frozenset({"create", "put", "merge_patch", "merge_patch_status", "json_patch", "delete", "post_event"})


@dataclass(frozen=True)
class Call:
    """One call of the interface: ``verb`` is the method's name."""

    verb: str
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class PostedEvent:
    """A core/v1 Event the code under test posted."""

    object: str
    type: str
    reason: str
    message: str


def api_error(status: int, reason: str, message: str = "", causes: list[dict[str, str]] | None = None) -> ApiError:
    """The :class:`ApiError` the operator's calls raise for a ``Status`` failure."""
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "reason": reason, "code": status}
    if message:
        body["message"] = message
    if causes:
        body["details"] = {"causes": causes}
    return ApiError(status, reason, json.dumps(body))


def namespace_terminating(namespace: str) -> ApiError:
    """What creating in a namespace that is being deleted gets (403 with a NamespaceTerminating cause)."""
    return api_error(
        403,
        "Forbidden",
        f"unable to create new content in namespace {namespace} because it is being terminated",
        [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated"}],
    )


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch`` (None removes a key)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_json_patch(obj: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 ``add``, ``replace`` and ``remove`` on objects (what the operator sends)."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del node[last]
        else:
            raise ValueError(f"unsupported JSON Patch op {op['op']!r}")
    return out


class FakeCluster:
    """Objects by (kind, namespace, name), with the call log of the code under test.

    ``now`` stamps ``creationTimestamp`` and ``deletionTimestamp``.
    """

    def __init__(self, *objects: Mapping[str, Any], now: datetime = datetime(2026, 3, 1, 12, tzinfo=UTC)) -> None:
        self.now = now
        self.store: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[Call] = []
        self.events: list[PostedEvent] = []
        self._versions = itertools.count(100)
        self._uids = itertools.count(1)
        self._failures: list[tuple[str, str, ApiError]] = []
        for obj in objects:
            self.add(obj)

    # --- arranging a test -----------------------------------------------------------------------

    def add(self, obj: Mapping[str, Any]) -> Obj:
        """Put ``obj`` in the cluster as it is (not logged), filling in what the API server sets."""
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uids):04d}")
        meta.setdefault("creationTimestamp", self._stamp())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._versions))
        self.store[self._key(stored)] = stored
        return copy.deepcopy(stored)

    def update(self, obj: Mapping[str, Any]) -> Obj:
        """Replace an object (a controller's or the user's change; not logged): a new resourceVersion."""
        return self.add(obj)

    def obj(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The stored object, as a copy (not logged)."""
        found = self.store.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def of_kind(self, kind: str) -> list[Obj]:
        """Every stored object of ``kind`` (not logged)."""
        return [copy.deepcopy(o) for (k, _, _), o in sorted(self.store.items()) if k == kind]

    def remove(self, kind: str, namespace: str, name: str) -> Obj | None:
        """Delete an object now, as someone else would (not logged); returns what was stored."""
        return self.store.pop((kind, namespace, name), None)

    def finish_deletion(self, kind: str, namespace: str, name: str) -> None:
        """The garbage collector finished a Foreground deletion: the object is gone."""
        self.store.pop((kind, namespace, name), None)
        if kind == Kind.JOB:
            for pod in self._pods(namespace, name):
                self.store.pop(self._key(pod), None)

    def fail(self, verb: str, kind: str, error: ApiError) -> None:
        """Make the next ``verb`` call on a ``kind`` object raise ``error``."""
        self._failures.append((verb, kind, error))

    def writes(self) -> list[Call]:
        """The calls that changed something (an Event included)."""
        return [c for c in self.calls if c.verb in WRITES]

    def reset_calls(self) -> None:
        """Forget the calls and Events so far (after arranging a state by reconciling)."""
        self.calls.clear()
        self.events.clear()

    # --- ClusterAPI -----------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        self._log("get", kind, namespace, name)
        return self.obj(kind, namespace, name)

    def read(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        self._log("read", kind, namespace, name)
        return self.obj(kind, namespace, name)

    def pods_of_job(self, namespace: str, job: str) -> list[Obj]:
        self._log("pods_of_job", Kind.POD, namespace, job)
        return [copy.deepcopy(p) for p in self._pods(namespace, job)]

    def objects(self, kind: Kind) -> Iterator[Obj]:
        self._log("objects", kind, "", "")
        return iter(self.of_kind(kind))

    def create(self, manifest: Obj) -> Obj:
        meta = manifest["metadata"]
        self._log("create", manifest["kind"], meta["namespace"], meta["name"])
        existing = self.store.get(self._key(manifest))
        if existing is not None:
            return copy.deepcopy(existing)
        return self.add(manifest)

    def put(self, manifest: Obj) -> None:
        meta = manifest["metadata"]
        self._log("put", manifest["kind"], meta["namespace"], meta["name"])
        self.store_or_replace(manifest)

    def merge_patch(self, kind: Kind, namespace: str, name: str, patch: Obj) -> Obj:
        self._log("merge_patch", kind, namespace, name)
        current = self._existing(kind, namespace, name)
        patched = merge(current, {k: v for k, v in patch.items() if k != "status"})
        if patched.get("spec") != current.get("spec"):
            patched["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        return self.update(patched)

    def merge_patch_status(self, obj: Obj, status: Obj) -> Obj:
        meta = obj["metadata"]
        self._log("merge_patch_status", obj["kind"], meta["namespace"], meta["name"])
        current = self._existing(obj["kind"], meta["namespace"], meta["name"])
        current["status"] = merge(current.get("status") or {}, status)
        return self.update(current)

    def json_patch(self, kind: Kind, namespace: str, name: str, ops: list[Obj]) -> Obj:
        self._log("json_patch", kind, namespace, name)
        current = self._existing(kind, namespace, name)
        return self.update(apply_json_patch(current, ops))

    def delete(self, kind: Kind, namespace: str, name: str, *, propagation: str = "Background") -> None:
        self._log("delete", kind, namespace, name)
        self.delete_returning(kind, namespace, name, propagation)

    def post_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        self._log("post_event", obj["kind"], meta["namespace"], meta["name"])
        self.events.append(PostedEvent(f"{obj['kind']}/{meta['name']}", type_, reason, message))

    # --- shared with FakeHttp -------------------------------------------------------------------

    def store_or_replace(self, manifest: Obj) -> None:
        """Create, or replace an existing object's data, labels, annotations and owners (a Secret's put)."""
        current = self.store.get(self._key(manifest))
        if current is None:
            self.add(manifest)
            return
        meta = manifest["metadata"]
        patch = {
            "metadata": {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta},
            **({"data": manifest["data"]} if "data" in manifest else {}),
        }
        self.update(merge(current, patch))

    def delete_returning(self, kind: str, namespace: str, name: str, propagation: str) -> Obj | None:
        """Delete as the API server does; returns the object it answers with (None: not found)."""
        current = self.store.get((kind, namespace, name))
        if current is None:
            return None
        if propagation == "Foreground":
            current = copy.deepcopy(current)
            current["metadata"]["deletionTimestamp"] = self._stamp()
            current["metadata"].setdefault("finalizers", []).append("foregroundDeletion")
            return self.update(current)
        self.finish_deletion(kind, namespace, name)
        return copy.deepcopy(current)

    # --- internals --------------------------------------------------------------------------------

    def _log(self, verb: str, kind: str, namespace: str, name: str) -> None:
        self.calls.append(Call(verb, str(kind), namespace, name))
        for i, (v, k, error) in enumerate(self._failures):
            if v == verb and k == kind:
                del self._failures[i]
                raise error

    def _existing(self, kind: str, namespace: str, name: str) -> Obj:
        current = self.store.get((kind, namespace, name))
        if current is None:
            raise api_error(404, "NotFound", f"{kind} {namespace}/{name} not found")
        return copy.deepcopy(current)

    def _pods(self, namespace: str, job: str) -> list[Obj]:
        return [
            p
            for (k, ns, _), p in sorted(self.store.items())
            if k == Kind.POD and ns == namespace and (p["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job
        ]

    def _stamp(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return (str(obj["kind"]), str(meta["namespace"]), str(meta["name"]))


# --- the same cluster over HTTP paths ---------------------------------------------------------------

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?P<status>/status)?$"
)
_KINDS = {plural: kind for kind, (_, plural) in RESOURCES.items()}


@dataclass(frozen=True)
class Request:
    """One HTTP request that reached the fake API server."""

    method: str
    path: str


class FakeHttp:
    """:class:`FakeCluster` behind :mod:`kubegym_operator.kubeapi`'s functions (paths and verbs).

    Implements :class:`~kubegym_operator.clusterapi.HttpApi`, and ``get_or_none``/``list_items`` for
    code that still reads over HTTP. :attr:`requests` logs every request.
    """

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.requests: list[Request] = []

    def reads(self) -> list[Request]:
        """The GETs (and LISTs) that reached the API server."""
        return [r for r in self.requests if r.method == "GET"]

    def get_or_none(self, path: str) -> Obj | None:
        self.requests.append(Request("GET", path))
        kind, namespace, name, _ = self._parse(path)
        assert name, path
        return self.cluster.obj(kind, namespace, name)

    def list_items(self, path: str, label_selector: str) -> list[Obj]:
        self.requests.append(Request("GET", f"{path}?labelSelector={label_selector}"))
        kind, namespace, _, _ = self._parse(path)
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if "=" in part)
        return [
            o
            for o in self.cluster.of_kind(kind)
            if o["metadata"]["namespace"] == namespace
            and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def create_if_absent(self, path: str, body: Obj) -> Obj:
        self.requests.append(Request("POST", path))
        kind, namespace, _, _ = self._parse(path)
        existing = self.cluster.obj(kind, namespace, body["metadata"]["name"])
        if existing is not None:
            self.requests.append(Request("GET", f"{path}/{body['metadata']['name']}"))  # 409, then a GET
            return existing
        return self.cluster.add(body)

    def create_or_replace(self, path: str, body: Obj) -> None:
        self.requests.append(Request("POST", path))
        kind, namespace, _, _ = self._parse(path)
        if self.cluster.obj(kind, namespace, body["metadata"]["name"]) is not None:
            self.requests.append(Request("PATCH", f"{path}/{body['metadata']['name']}"))  # 409, then a PATCH
        self.cluster.store_or_replace(body)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        self.requests.append(Request("PATCH", path))
        kind, namespace, name, status = self._parse(path)
        assert name, path
        if status:
            obj = self.cluster.obj(kind, namespace, name)
            assert obj is not None, path
            return self.cluster.merge_patch_status(obj, body["status"])
        return self.cluster.merge_patch(Kind(kind), namespace, name, body)

    def json_patch(self, path: str, ops: list[Obj]) -> Obj:
        self.requests.append(Request("PATCH", path))
        kind, namespace, name, _ = self._parse(path)
        assert name, path
        return self.cluster.json_patch(Kind(kind), namespace, name, ops)

    def delete(self, path: str, propagation: str = "Background") -> Obj | None:
        self.requests.append(Request("DELETE", path))
        kind, namespace, name, _ = self._parse(path)
        assert name, path
        return self.cluster.delete_returning(kind, namespace, name, propagation)

    def post_event(self, obj: Obj, type_: str, reason: str, message: str, component: str = "kubegym-operator") -> None:
        self.requests.append(Request("POST", f"/api/v1/namespaces/{obj['metadata']['namespace']}/events"))
        self.cluster.events.append(PostedEvent(f"{obj['kind']}/{obj['metadata']['name']}", type_, reason, message))

    @staticmethod
    def _parse(path: str) -> tuple[str, str, str | None, bool]:
        match = _PATH.match(path)
        assert match is not None, path
        return _KINDS[match["plural"]], match["namespace"], match["name"], bool(match["status"])


# --- kopf's indexes, delivered when the test says --------------------------------------------------


class FakeWatch:
    """What kopf's indexes would hold: :func:`~kubegym_operator.watched.slim` copies of
    ``cluster``'s objects as of the last :meth:`deliver`.

    :attr:`view` reads from it (a :class:`~kubegym_operator.watched.WatchedObjects`); objects that
    vanished since the previous delivery get their DELETED event (:meth:`WatchedObjects.forget`).
    """

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.sources: dict[Kind, dict[tuple[str, str], list[Obj]]] = {kind: {} for kind in NAMED_KINDS}
        self.pods: dict[tuple[str, str], list[Obj]] = {}
        sources: dict[Kind, Source] = dict(self.sources)
        self.view = WatchedObjects(sources, self.pods)

    def deliver(self, *kinds: Kind) -> None:
        """Bring the indexes of ``kinds`` (all by default) up to the cluster's state."""
        for kind in kinds or (*NAMED_KINDS, Kind.POD):
            if kind == Kind.POD:
                self.pods.clear()
                for pod in self.cluster.of_kind(Kind.POD):
                    job = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
                    if job:
                        self.pods.setdefault((pod["metadata"]["namespace"], job), []).append(slim(Kind.POD, pod))
                continue
            source = self.sources[kind]
            live = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in self.cluster.of_kind(kind)}
            for key in [k for k in source if k not in live]:
                for gone in source.pop(key):
                    self.view.forget(kind, gone)
            for key, obj in live.items():
                source[key] = [slim(kind, obj)]
