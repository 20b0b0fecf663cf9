"""The periodic resync: reconcile again only what the clock, or a failure, can move on.

Events drive every other change, so the pass every ``RESYNC_SECONDS`` (``main.start_resync``)
walks the watch-fed view — no LIST — and reconciles an unfinished object only when its verdict
depends on the clock (a pod stuck on an error that fails it once the pending-error grace period
ends; an Experiment's report Job likewise; a pod whose minted storage credentials have a third
of their lifetime left) or when its last reconcile raised (kopf does not retry
an event handler, and an API outage must not leave a run without its Job). 1,000 idle runs cost
1,000 in-memory checks and no API call. A restarted operator needs no resync: kopf's initial
listing delivers an event for every object. One object's failure is logged and does not stop the
others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubegym_operator.clusterapi import ClusterAPI
from kubegym_operator.controllers import experiment
from kubegym_operator.handlers import experiment as experiment_handlers
from kubegym_operator.handlers import jobowners
from kubegym_operator.handlers.watched import CLUSTER
from kubegym_operator.kubeapi import Obj
from kubegym_operator.reconciler import JobOwner, due_for_resync, needs_resync, utc_now
from kubegym_operator.state import STATE
from kubegym_operator.watched import Kind

log = logging.getLogger("kubegym.resync")


def _reconcile_each(kind: Kind, due: list[tuple[str, str]], reconcile: Callable[[str, str], None]) -> None:
    for namespace, name in due:
        try:
            reconcile(namespace, name)
        except Exception:
            log.exception("resync of %s %s/%s failed", kind, namespace, name)


def _unstarted_first(due: list[tuple[str, str]], kind: Kind) -> list[tuple[str, str]]:
    """Objects without a status yet (just created, maybe while no replica led) before the others."""

    def started(key: tuple[str, str]) -> bool:
        obj = CLUSTER.get(kind, key[0], key[1])
        return bool(obj and (obj.get("status") or {}).get("phase"))

    return sorted(due, key=started)


def resync(everything: bool = False) -> None:
    """One pass over every kind's due objects; ``everything``: every unfinished one (a takeover).

    A replica that just became the leader runs the ``everything`` pass once: as a standby it kept
    its view warm but dropped the events, so whatever changed meanwhile (a run created while the
    old leader was dying) is reconciled now, runs without a status first.
    """
    if not STATE.leading.is_set():
        return
    settings = STATE.settings

    def always(api: ClusterAPI, obj: Obj) -> bool:
        return True

    now = utc_now()
    for owner in jobowners.OWNERS:
        adapter = owner.adapter(settings)

        def reconcile(namespace: str, name: str, owner: jobowners.OwnerWatch = owner) -> None:
            jobowners.reconcile(owner, namespace, name)

        def clock(api: ClusterAPI, obj: Obj, adapter: JobOwner[Any] = adapter) -> bool:
            return needs_resync(adapter, api, obj, now)

        due = due_for_resync(adapter.kind, CLUSTER, always if everything else clock)
        _reconcile_each(adapter.kind, _unstarted_first(due, adapter.kind) if everything else due, reconcile)

    def experiment_clock(api: ClusterAPI, exp: Obj) -> bool:
        return experiment.clock_dependent(api, exp, settings, now)

    due = due_for_resync(Kind.EXPERIMENT, CLUSTER, always if everything else experiment_clock)
    _reconcile_each(Kind.EXPERIMENT, due, experiment_handlers.reconcile)
