"""kopf handlers; importing this package registers them all.

:mod:`~kubegym_operator.handlers.watched` registers first — every module that reconciles imports
it (for the live API) before registering anything — because kopf runs an event's handlers in the
order they were registered, and the view must forget a DELETED object before anything reconciles
on that event. Then the kinds that own a Job (:mod:`~kubegym_operator.handlers.jobowners`, one
registration per kind), Experiments, and the metrics of the live objects; and kopf's login
(:mod:`~kubegym_operator.handlers.login`), the operator's own credentials.

``RESYNC`` lists what the operator's periodic loop runs: the reconciles that depend on the clock
(or retry a failure), and the metrics' pruning of objects whose deletion a re-listed watch missed.
"""

from __future__ import annotations

from collections.abc import Callable

from kubegym_operator.handlers import experiment, jobowners, login, observability, resync, watched

RESYNC: list[Callable[[], None]] = [resync.resync, observability.resync]
__all__ = ["RESYNC", "experiment", "jobowners", "login", "observability", "resync", "watched"]
