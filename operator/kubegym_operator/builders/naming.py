"""Deterministic, DNS-safe names and label values for the objects a run owns.

A restarted operator must find the Job it created before, so names derive from the run's name
alone (no random suffix). Names longer than a DNS label, or changed by sanitising, get a short
hash of the original so that two runs never map to the same name.
"""

from __future__ import annotations

import hashlib
import re

#: Longest DNS-1123 label, and the longest label value.
MAX_LABEL = 63
_HASH_LEN = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def dns_label(base: str, max_length: int = MAX_LABEL) -> str:
    """``base`` as a DNS-1123 label of at most ``max_length`` characters.

    Returned unchanged when already valid and short enough; otherwise lower-cased, with
    invalid characters turned into '-', truncated, and suffixed with a hash of ``base``.
    """
    if max_length <= _HASH_LEN + 1:
        raise ValueError(f"max_length must exceed {_HASH_LEN + 1}")
    clean = _INVALID.sub("-", base.lower()).strip("-")
    if clean == base and 0 < len(base) <= max_length:
        return base
    head = clean[: max_length - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{_digest(base)}" if head else _digest(base)


def label_value(value: str) -> str:
    """``value`` as a label value (≤ 63 characters, alphanumeric ends), hashed if needed."""
    return dns_label(value, MAX_LABEL)


def training_job_name(run_name: str) -> str:
    """Name of a TrainingRun's runner Job (a label, since pods carry it in job-name)."""
    return dns_label(f"{run_name}-train")


def runner_identity_name(run_name: str) -> str:
    """Name of the ServiceAccount, Role and RoleBinding of a TrainingRun's runner."""
    return dns_label(f"{run_name}-runner")
