"""Errors the runner reports, split by whether retrying the pod can help.

The Job's ``podFailurePolicy`` fails a run at once on :data:`EXIT_USER_ERROR`
(a bad spec stays bad however often it is retried) and counts
:data:`EXIT_INFRA_ERROR` and :data:`EXIT_STORAGE_ERROR` against ``backoffLimit``
(outages pass); the latter tells the operator to point the user at the S3 endpoint.
Raise these from anywhere; :mod:`kubegym_runner.cli` turns them into exit codes.
"""

from __future__ import annotations

from kubegym_api.exitcodes import EXIT_INFRA_ERROR, EXIT_STORAGE_ERROR, EXIT_USER_ERROR


class RunnerError(Exception):
    """Base of errors with a message meant for the person who wrote the spec."""

    exit_code: int = EXIT_INFRA_ERROR


class UserError(RunnerError):
    """The spec cannot work as written: unknown env, bad hyperparameter, missing checkpoint..."""

    exit_code = EXIT_USER_ERROR


class InfraError(RunnerError):
    """The infrastructure failed (storage unreachable, API errors): a retry may succeed."""

    exit_code = EXIT_INFRA_ERROR


class StorageError(InfraError):
    """S3 cannot be reached or fails (endpoint down, DNS, timeouts, 5xx): retried."""

    exit_code = EXIT_STORAGE_ERROR


class TerminatedError(RunnerError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; exits ``128 + signal``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
