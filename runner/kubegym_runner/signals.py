"""Graceful termination: SIGTERM (pod deletion, preemption, drain) asks training to stop.

The handler only sets a flag; the training callback sees it at the next environment
step, stops ``learn``, and the runner saves a checkpoint before exiting with
``128 + signal`` (143 for SIGTERM). Within the pod's grace period that loses at most one
environment step instead of a whole checkpoint interval.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)


class TerminationRequest:
    """Records the first SIGTERM/SIGINT; later ones are ignored (the checkpoint is on its way)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The conventional exit status of a process ended by the signal."""
        return 128 + (self.signum or signal.SIGTERM)

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this (main) thread."""
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            log.warning("received %s: stopping after a checkpoint", signal.Signals(signum).name)
            self.signum = signum
