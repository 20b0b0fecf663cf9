"""``kubegym-operator``: run the kopf operator with kubegym's handlers.

The operator watches cluster-wide (or the namespaces in ``KUBEGYM_WATCH_NAMESPACES``),
serves kopf's liveness endpoint for the Deployment's probe and Prometheus metrics on
``/metrics`` (``KUBEGYM_METRICS_PORT``, default 8081; empty disables them).

Replicas elect a leader on a Lease (``kubegym_operator.leadership``; on by default in a pod,
``KUBEGYM_LEADER_ELECTION``): the first startup handler after ``configure`` blocks until this
replica holds the Lease, so a standby starts no watch and no resync, and serves only its
liveness endpoint and metrics. A leader that loses the Lease exits; on SIGTERM it releases it.
kopf itself runs in standalone mode (no kopf peering).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
from typing import Any

import kopf

from kubegym_operator import leadership, metrics
from kubegym_operator.settings import LeaderElection, SettingsError, load_leader_election, load_settings
from kubegym_operator.state import STATE

RESYNC_SECONDS = 30.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Level-triggered handlers only: nothing of kopf's bookkeeping is written to our objects.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 8


@kopf.on.startup()
async def lead(memo: kopf.Memo, **_: Any) -> None:
    """Wait here until this replica holds the Lease, then keep renewing it in a thread.

    Startup handlers run one after another in the order they are registered, and kopf starts
    watching only once they all returned: everything below (the resync thread, every watch)
    happens on the leader only.
    """
    config: LeaderElection | None = memo.get("leader_election")
    if config is None or not config.enabled:
        return
    elector = leadership.LeaderElector(config, leadership.KubeLeases.for_config(config))
    await leadership.wait_for_leadership(elector, memo.get("liveness"))
    memo.leadership = leadership.Leadership.start(elector)


@kopf.on.probe(id="leadership")
def leadership_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any] | None:
    """The Lease as the leader holds it, in kopf's liveness JSON (absent without leader election)."""
    held: leadership.Leadership | None = memo.get("leadership")
    return None if held is None else held.elector.status()


@kopf.on.startup()
def start_resync(memo: kopf.Memo, **indices: Any) -> None:
    """Hand kopf's indexes to the watch-fed view (kopf passes them to startup handlers by id and
    fills them before any other handler runs), then start the periodic resync of what depends on
    the clock (grace periods) or failed."""
    from kubegym_operator.handlers import RESYNC, watched

    watched.attach(indices)

    stop = threading.Event()
    memo.stop_resync = stop

    def loop() -> None:
        while not stop.wait(RESYNC_SECONDS):
            for resync in RESYNC:
                try:
                    resync()
                except Exception:
                    logging.getLogger("kubegym").exception("periodic resync failed")

    threading.Thread(target=loop, name="resync", daemon=True).start()


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    stop: threading.Event | None = memo.get("stop_resync")
    if stop is not None:
        stop.set()


@kopf.on.cleanup()
def release_leadership(memo: kopf.Memo, **_: Any) -> None:
    """Last of all (cleanup runs after the watches stopped): give the Lease to a standby now."""
    held: leadership.Leadership | None = memo.get("leadership")
    if held is not None:
        held.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubegym-operator", description=__doc__)
    parser.add_argument("--liveness", default=os.environ.get("KUBEGYM_LIVENESS", "http://0.0.0.0:8080/healthz"))
    parser.add_argument("--namespace", action="append", default=None, help="watch only these namespaces")
    parser.add_argument(
        "--metrics-port",
        default=os.environ.get("KUBEGYM_METRICS_PORT", "8081"),
        help="port of the Prometheus /metrics endpoint; empty disables it",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        STATE.settings = load_settings(os.environ)
        leader_election = load_leader_election(os.environ)
    except SettingsError as e:
        logging.error("invalid operator settings: %s", e)
        return 2
    if args.metrics_port:
        try:
            metrics.serve(int(args.metrics_port))
        except (ValueError, OSError) as e:
            logging.error("cannot serve metrics on port %r: %s", args.metrics_port, e)
            return 2
    import kubegym_operator.handlers  # noqa: F401 - registers every kind's handlers

    namespaces = args.namespace or [n for n in os.environ.get("KUBEGYM_WATCH_NAMESPACES", "").split(",") if n]
    STATE.namespaces = tuple(namespaces)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness or None,
            memo=kopf.Memo(leader_election=leader_election, liveness=args.liveness or None),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
