"""The periodic resync shared by every kind: reconcile each unfinished object once more.

Some verdicts depend on the clock (grace periods), and a watch can miss an event while
the operator restarts; a resync every ``RESYNC_SECONDS`` covers both. One object's
failure is logged and does not stop the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from kubernetes.client.exceptions import ApiException

from kubegym_operator import GROUP, VERSION
from kubegym_operator.kubeapi import Obj, list_items
from kubegym_operator.state import STATE

log = logging.getLogger("kubegym.resync")

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def live_objects(plural: str) -> list[Obj]:
    """All objects of a kind the operator watches: cluster-wide, or per watched namespace."""
    if not STATE.namespaces:
        return list_items(f"/apis/{GROUP}/{VERSION}/{plural}", "")
    out: list[Obj] = []
    for ns in STATE.namespaces:
        out += list_items(f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}", "")
    return out


def resync_unfinished(plural: str, reconcile: Callable[[str, str], None]) -> None:
    for obj in live_objects(plural):
        if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
            continue
        meta = obj["metadata"]
        try:
            reconcile(meta["namespace"], meta["name"])
        except Exception:
            log.exception("resync of %s %s/%s failed", plural, meta["namespace"], meta["name"])


@contextlib.contextmanager
def unless_namespace_terminating(namespace: str, name: str) -> Iterator[None]:
    """Swallow the 403 the API server gives for creating in a namespace being deleted.

    The namespace's deletion will take the object and everything it owns with it: there is
    nothing left to reconcile, and it is not an authorization failure worth a traceback.
    """
    try:
        yield
    except ApiException as e:
        if e.status == 403 and "NamespaceTerminating" in str(e.body or ""):
            log.info("%s/%s: namespace is being deleted; nothing to reconcile", namespace, name)
            return
        raise
