"""kopf handlers, one module per kind; importing this package registers them all.

``RESYNC`` lists each kind's periodic reconcile, run by the operator's resync loop (and the
metrics' pruning of objects whose deletion a re-listed watch missed).
"""

from __future__ import annotations

from collections.abc import Callable

from kubegym_operator.handlers import benchmark, experiment, observability, trainingrun

RESYNC: list[Callable[[], None]] = [trainingrun.resync, benchmark.resync, experiment.resync, observability.resync]
