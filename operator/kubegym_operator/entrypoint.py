"""The operator's process entry point: ``kubegym-operator`` and ``python -m kubegym_operator``.

It keeps the ``kubernetes`` client library out of the operator's process before anything imports
kopf. The operator never uses it (:mod:`kubegym_operator.kubeapi` speaks HTTP itself), and the
operator image does not install it; but where it is installed beside the operator (a development
environment that also holds the runner and the CLI, as the local cluster's), kopf imports it at
once, only to recognise its model objects, and that import alone holds about 60 MB. Marking the
name as not importable (``sys.modules[name] = None``, Python's own way) makes kopf take its
fallback, as in the image.
"""

from __future__ import annotations

import sys

#: Libraries the operator's process never loads, though they may be installed.
NOT_LOADED = ("kubernetes",)


def main(argv: list[str] | None = None) -> int:
    """Run the operator (see :func:`kubegym_operator.main.main` for its arguments)."""
    for name in NOT_LOADED:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
    from kubegym_operator.main import main as run

    return run(argv)
