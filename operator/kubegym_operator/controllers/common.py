"""What every kind's reconcile shares: per-object locks, API paths, and the status write."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from kubegym_operator import GROUP, VERSION
from kubegym_operator.builders.status import Event
from kubegym_operator.kubeapi import Obj, merge_patch

#: Called with (object, event) for every transition; the handler layer posts it as a k8s Event.
EventSink = Callable[[Obj, Event], None]


class ObjectLocks:
    """One lock per (namespace, name), so an object's own and its children's events never reconcile it twice at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def __call__(self, namespace: str, name: str) -> threading.Lock:
        """The object's lock, created on first use."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


def object_path(plural: str, namespace: str, name: str) -> str:
    """API path of a namespaced kubegym object."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"


def job_path(namespace: str, name: str) -> str:
    """API path of a ``batch/v1`` Job."""
    return f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"


def write_status(obj: Obj, path: str, status: Obj, events: Iterable[Event], emit: EventSink) -> Obj | None:
    """Emit the events, then merge-patch only the changed status fields: a no-op reconcile makes no write.

    Returns ``status`` when something was written, else None.
    """
    previous = obj.get("status") or {}
    changed = {k: v for k, v in status.items() if previous.get(k) != v}
    for event in events:
        emit(obj, event)
    if not changed:
        return None
    merge_patch(f"{path}/status", {"status": changed})
    return status
