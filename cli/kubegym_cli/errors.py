"""The one-line errors of ``kubectl gym``'s researcher commands (status, watch, logs, download).

Why one module: every command must fail the same way — one clear line on stderr, exit 1 — for the
same causes (unknown name, no permission, the API server or storage unreachable), so the wording
is made here once and ``main`` prints whatever :class:`CliError` a command raises.
"""

from __future__ import annotations

from typing import Any


class CliError(Exception):
    """A request that cannot be answered; the message is the one line printed after ``Error: ``."""


def api_error(error: Any, plural: str, name: str, namespace: str) -> CliError:
    """A :class:`CliError` for a Kubernetes ``ApiException`` reading ``plural/name`` in ``namespace``:
    404 not found, 403 no permission, anything else with its status and reason."""
    singular = plural.rstrip("s")
    status = getattr(error, "status", None)
    if status == 404:
        return CliError(f'{singular} "{name}" not found in namespace {namespace}')
    if status == 403:
        return CliError(f"no permission to read {plural} in namespace {namespace} (403 Forbidden)")
    if status == 401:
        return CliError("the Kubernetes API server refused the credentials (401 Unauthorized)")
    return CliError(f"cannot read {singular} {namespace}/{name}: {status} {getattr(error, 'reason', '')}".strip())
