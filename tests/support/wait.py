"""Polling with deadlines: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.25,
    describe: Callable[[], str] | None = None,
) -> T:
    """Returns the first truthy result of ``check``; fails with ``what`` (and a description) at the deadline.

    Exceptions of ``check`` count as "not yet" until the deadline, then the last one is raised.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
            last_exc = None
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe else ""
            msg = f"timed out after {timeout:.0f}s waiting for {what}{detail}"
            raise AssertionError(msg) from last_exc
        time.sleep(interval)
