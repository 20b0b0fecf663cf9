"""The one error of the pure builders: the owner cannot work as specified.

Its own module so that every builder can raise it without importing another builder (the Job
builder and the credentials builder use each other's parts). An Experiment's plan raises it as
``PlanError`` and its Optuna search as ``TrialError``, the same error under the names their
callers catch.
"""

from __future__ import annotations


class RenderError(ValueError):
    """The run cannot be rendered as it stands; ``reason`` is CamelCase for the status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
