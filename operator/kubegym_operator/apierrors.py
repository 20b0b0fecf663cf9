"""The one error of the operator's API calls (:mod:`kubegym_operator.kubeapi`).

A module of its own so that the modules :mod:`~kubegym_operator.kubeapi` itself imports (the
metrics) can name it too.
"""

from __future__ import annotations


class ApiError(Exception):
    """A request the API server answered with an error, or that got no answer.

    ``status``: the HTTP status code, 0 when no answer came (refused, reset, timed out).
    ``reason``: the HTTP reason phrase, or what went wrong when no answer came.
    ``body``: the answer's body, a ``Status`` object as JSON text for the API's own errors.
    """

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"({status}) {reason}" + (f": {body[:500]}" if body else ""))
        self.status = status
        self.reason = reason
        self.body = body
