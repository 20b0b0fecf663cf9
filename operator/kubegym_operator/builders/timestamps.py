"""Kubernetes timestamps: RFC 3339 in UTC with a Z, read leniently (any ISO 8601 the API shows).

One module for every builder that reads or writes them (status, cost, idleness), so none keeps a
copy of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes timestamps."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A timestamp from the API (a naive one is taken as UTC); None for a missing or unreadable one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
