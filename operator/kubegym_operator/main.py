"""``kubegym-operator``: run the kopf operator with kubegym's handlers.

The operator watches cluster-wide (or the namespaces in ``KUBEGYM_WATCH_NAMESPACES``),
serves kopf's liveness endpoint for the Deployment's probe and Prometheus metrics on
``/metrics`` (``KUBEGYM_METRICS_PORT``, default 8081; empty disables them).

Replicas elect a leader on a Lease (``kubegym_operator.leadership``; on by default in a pod,
``KUBEGYM_LEADER_ELECTION``). A standby runs kopf in full — watches, the view's indexes, the
liveness endpoint — so its view is warm, but reconciles nothing and exports no object metrics
until it holds the Lease; then one pass reconciles every unfinished object. A leader that loses
the Lease exits; on SIGTERM it releases it.
kopf itself runs in standalone mode (no kopf peering).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

from kubegym_operator import leadership, metrics
from kubegym_operator.credentials import Issuer
from kubegym_operator.settings import (
    RESYNC_SECONDS,
    LeaderElection,
    Settings,
    SettingsError,
    load_leader_election,
    load_settings,
    load_storage_key,
)
from kubegym_operator.state import STATE
from kubegym_operator.sts import StsClient
from kubegym_operator.workqueue import REQUESTS

#: Threads that reconcile what the handlers queue (the reconciles wait on the API server, not the CPU).
RECONCILE_WORKERS = 8


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Level-triggered handlers only: nothing of kopf's bookkeeping is written to our objects.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # What still runs on kopf's executor: startup and cleanup; events only queue keys (workqueue).
    settings.execution.max_workers = 2


@kopf.on.startup()
async def lead(memo: kopf.Memo, **_: Any) -> None:
    """Lead at once without leader election; else stand by, warm, until this replica holds the Lease.

    A standby runs everything kopf runs — watches, the indexes of the view, the liveness
    endpoint — but its handlers and resync reconcile nothing (``STATE.leading`` is clear) and its
    metrics export no object. Once the Lease is won, one pass reconciles every unfinished object
    from the already warm view (what the old leader left, and what was created while nobody
    led); the failover is the Lease's expiry plus that pass, not a re-listing of the cluster.
    """
    config: LeaderElection | None = memo.get("leader_election")
    if config is None or not config.enabled:
        STATE.leading.set()
        return
    metrics.OBJECTS.exporting.clear()
    elector = leadership.LeaderElector(config, leadership.KubeLeases.for_config(config))
    memo.elector = elector

    async def stand_by() -> None:
        await leadership.wait_for_leadership(elector)
        memo.leadership = leadership.Leadership.start(elector)
        STATE.leading.set()
        metrics.OBJECTS.exporting.set()
        from kubegym_operator.handlers import resync

        await asyncio.get_running_loop().run_in_executor(None, _take_over, resync.resync)

    memo.standing_by = asyncio.create_task(stand_by(), name="leader-election")


def trim_memory() -> None:
    """Collect cycles and hand freed heap pages back to the system (glibc's ``malloc_trim``).

    A burst of events (1,000 runs applied at once) parses many API answers on several threads;
    CPython frees them, but glibc keeps the pages in its arenas, and the operator's RSS would
    stay at the burst's peak for its whole life. Cheap (milliseconds) once per resync pass.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _take_over(resync: Callable[..., None]) -> None:
    started = time.monotonic()
    try:
        resync(everything=True)
    except Exception:
        logging.getLogger("kubegym").exception("the takeover pass failed; the periodic resync retries")
    trim_memory()
    logging.getLogger("kubegym").info("takeover pass done in %.1fs", time.monotonic() - started)


@kopf.on.probe(id="leadership")
def leadership_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any] | None:
    """The Lease as this replica sees it (leader or standby), in kopf's liveness JSON (absent
    without leader election)."""
    elector: leadership.LeaderElector | None = memo.get("elector")
    return None if elector is None else elector.status()


@kopf.on.startup()
def start_resync(memo: kopf.Memo, **indices: Any) -> None:
    """Hand kopf's indexes to the watch-fed view (kopf passes them to startup handlers by id and
    fills them before any other handler runs), then start the periodic resync of what depends on
    the clock (grace periods) or failed."""
    from kubegym_operator.handlers import RESYNC, watched

    watched.attach(indices)
    REQUESTS.start(RECONCILE_WORKERS)

    stop = threading.Event()
    memo.stop_resync = stop

    def loop() -> None:
        while not stop.wait(RESYNC_SECONDS):
            for resync in RESYNC:
                try:
                    resync()
                except Exception:
                    logging.getLogger("kubegym").exception("periodic resync failed")
            trim_memory()

    threading.Thread(target=loop, name="resync", daemon=True).start()


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    stop: threading.Event | None = memo.get("stop_resync")
    if stop is not None:
        stop.set()
    REQUESTS.stop()


@kopf.on.cleanup()
async def release_leadership(memo: kopf.Memo, **_: Any) -> None:
    """Last of all (cleanup runs after the watches stopped): give the Lease to a standby now."""
    standing_by: asyncio.Task[None] | None = memo.get("standing_by")
    if standing_by is not None and not standing_by.done():
        standing_by.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await standing_by
    held: leadership.Leadership | None = memo.get("leadership")
    if held is not None:
        held.release()


def issuer_of(settings: Settings, env: os._Environ[str] | dict[str, str]) -> Issuer | None:
    """What mints runner pods' storage credentials: STS with the operator's own key from ``env``
    when ``settings`` mint (STS mode with a default storage), else None."""
    key = load_storage_key(env, settings)
    if key is None:
        return None
    client = StsClient(
        endpoint=settings.sts_endpoint(),
        key=key,
        region=settings.storage_region(),
        role_arn=settings.storage_role_arn,
    )
    logging.getLogger("kubegym").info(
        "storage credentials: minted per run by STS at %s (key %s, %d s)",
        client.endpoint,
        key.access_key_id,
        settings.storage_credentials_duration_seconds,
    )
    return Issuer(client, settings.storage_credentials_duration_seconds)


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
    if not args.verbose:
        # kopf logs "Handler '…' succeeded." for every handler of every event: with three watches
        # and one-line handlers that only queue a key, that is most of the log (about 20 lines per
        # run) and a measurable share of the CPU in a burst. Its warnings and errors still show;
        # what the operator does to each object is logged by the reconciles ("kubegym" loggers).
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        STATE.settings = load_settings(os.environ)
        STATE.issuer = issuer_of(STATE.settings, os.environ)
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
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness or None,
            memo=kopf.Memo(leader_election=leader_election),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
