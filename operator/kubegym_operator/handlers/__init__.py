"""kopf handlers, one module per kind; importing this package registers them all.

``RESYNC`` lists each kind's periodic reconcile, run by the operator's resync loop.
"""

from __future__ import annotations

from collections.abc import Callable

from kubegym_operator.handlers import trainingrun

RESYNC: list[Callable[[], None]] = [trainingrun.resync]
