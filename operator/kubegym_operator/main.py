"""``kubegym-operator``: run the kopf operator with kubegym's handlers.

The operator watches cluster-wide (or the namespaces in ``KUBEGYM_WATCH_NAMESPACES``),
runs standalone (one replica; the chart uses the Recreate strategy), serves kopf's
liveness endpoint for the Deployment's probe and Prometheus metrics on ``/metrics``
(``KUBEGYM_METRICS_PORT``, default 8081; empty disables them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
from typing import Any

import kopf

from kubegym_operator import metrics
from kubegym_operator.settings import SettingsError, load_settings
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
def start_resync(memo: kopf.Memo, **_: Any) -> None:
    """Reconcile every live run periodically: some verdicts depend on the clock (grace periods)."""
    from kubegym_operator.handlers import RESYNC

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
    memo.stop_resync.set()


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
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
