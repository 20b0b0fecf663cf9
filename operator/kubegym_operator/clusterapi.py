"""What a reconcile may ask of the cluster, as an interface the reconciles are handed.

:class:`ClusterAPI` is the whole surface: reads of watched objects by kind, namespace and name
(and a Job's pods), and the writes the operator makes (create, patches, delete, Events, and the
per-run credentials Secrets it writes but never reads). The
reconciles take it as a parameter, so every reconcile path runs in unit tests against an
in-memory fake (``tests/unit/operator/fakeapi.py``) exactly as it runs against a cluster.

:class:`LiveClusterAPI` is the operator's: reads come from :class:`~kubegym_operator.watched.
WatchedObjects` (fed by kopf's watches; no GET or LIST), writes go through
:mod:`kubegym_operator.kubeapi` — still the one module that talks HTTP — and each response is
handed back to the view, so the next read sees the operator's own write before the watch
delivers it.

Errors are the Kubernetes client's :class:`~kubernetes.client.exceptions.ApiException`, with the
API's status code and ``Status`` body (a fake raises the same).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from kubegym_operator import kubeapi
from kubegym_operator.kubeapi import Obj, collection_path, object_path
from kubegym_operator.watched import Kind, WatchedObjects

log = logging.getLogger("kubegym.api")

#: Deletion propagation: "Background" (the object goes now, the garbage collector takes its
#: dependents) or "Foreground" (the object stays, with a deletionTimestamp, until they are gone).
Propagation = str


class ClusterAPI(Protocol):
    """The cluster as a reconcile sees it. ``kind`` is a :class:`~kubegym_operator.watched.Kind`."""

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object of ``kind`` named ``namespace/name``, or None when there is none."""
        ...

    def read(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """Like :meth:`get`, but asked of the API server itself, past the watch-fed view: for the rare
        decision that a lagging view must not make (see ``reconciler._converge``)."""
        ...

    def pods_of_job(self, namespace: str, job: str) -> list[Obj]:
        """The pods of Job ``namespace/job``, in any order."""
        ...

    def objects(self, kind: Kind) -> Iterator[Obj]:
        """Every object of ``kind`` (the periodic resync walks these)."""
        ...

    def create(self, manifest: Obj) -> Obj:
        """Create ``manifest`` (any namespaced kind the operator creates); an object that already
        exists under its name is returned unchanged."""
        ...

    def put(self, manifest: Obj) -> None:
        """Create ``manifest`` (a Secret the operator writes), or replace an existing one's data,
        labels, annotations and owners; the answer (which holds the data) is not kept."""
        ...

    def merge_patch(self, kind: Kind, namespace: str, name: str, patch: Obj) -> Obj:
        """Merge-patch (RFC 7386) the object's main resource; returns the patched object."""
        ...

    def merge_patch_status(self, obj: Obj, status: Obj) -> Obj:
        """Merge ``status`` (the changed fields only) into ``obj``'s status subresource."""
        ...

    def json_patch(self, kind: Kind, namespace: str, name: str, ops: list[Obj]) -> Obj:
        """Apply a JSON Patch (RFC 6902) to the object; returns the patched object."""
        ...

    def delete(self, kind: Kind, namespace: str, name: str, *, propagation: Propagation = "Background") -> None:
        """Delete the object (an absent one is not an error)."""
        ...

    def post_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event (``Normal`` or ``Warning``) on ``obj``; best effort, never raises."""
        ...


class HttpApi(Protocol):
    """The calls :class:`LiveClusterAPI` makes, by URL path: :mod:`kubegym_operator.kubeapi`'s."""

    def get_or_none(self, path: str) -> Obj | None: ...

    def create_if_absent(self, path: str, body: Obj) -> Obj: ...

    def create_or_replace(self, path: str, body: Obj) -> None: ...

    def merge_patch(self, path: str, body: Obj) -> Obj: ...

    def json_patch(self, path: str, ops: list[Obj]) -> Obj: ...

    def delete(self, path: str, propagation: str = "Background") -> Obj | None: ...

    def post_event(
        self, obj: Obj, type_: str, reason: str, message: str, component: str = "kubegym-operator"
    ) -> None: ...


class LiveClusterAPI:
    """:class:`ClusterAPI` on a running operator: ``view`` for reads, ``http`` (the
    :mod:`~kubegym_operator.kubeapi` module unless a test passes another) for writes."""

    def __init__(self, view: WatchedObjects, http: HttpApi = kubeapi) -> None:
        self.view = view
        self._http = http

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self.view.get(kind, namespace, name)

    def read(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self._http.get_or_none(object_path(kind, namespace, name))

    def pods_of_job(self, namespace: str, job: str) -> list[Obj]:
        return self.view.pods_of_job(namespace, job)

    def objects(self, kind: Kind) -> Iterator[Obj]:
        return self.view.objects(kind)

    def create(self, manifest: Obj) -> Obj:
        meta = manifest["metadata"]
        created = self._http.create_if_absent(collection_path(manifest["kind"], meta["namespace"]), manifest)
        self.view.wrote(manifest["kind"], created)
        return created

    def put(self, manifest: Obj) -> None:
        self._http.create_or_replace(collection_path(manifest["kind"], manifest["metadata"]["namespace"]), manifest)

    def merge_patch(self, kind: Kind, namespace: str, name: str, patch: Obj) -> Obj:
        patched = self._http.merge_patch(object_path(kind, namespace, name), patch)
        self.view.wrote(kind, patched)
        return patched

    def merge_patch_status(self, obj: Obj, status: Obj) -> Obj:
        meta = obj["metadata"]
        path = object_path(obj["kind"], meta["namespace"], meta["name"]) + "/status"
        patched = self._http.merge_patch(path, {"status": status})
        self.view.wrote(obj["kind"], patched)
        return patched

    def json_patch(self, kind: Kind, namespace: str, name: str, ops: list[Obj]) -> Obj:
        patched = self._http.json_patch(object_path(kind, namespace, name), ops)
        self.view.wrote(kind, patched)
        return patched

    def delete(self, kind: Kind, namespace: str, name: str, *, propagation: Propagation = "Background") -> None:
        response = self._http.delete(object_path(kind, namespace, name), propagation)
        self.view.deleted(kind, namespace, name, response)

    def post_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        try:
            self._http.post_event(obj, type_, reason, message)
        except Exception as e:  # noqa: BLE001 - an Event is best effort; the status is the truth
            log.warning("could not post event %s on %s: %s", reason, _name(obj), e)


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
