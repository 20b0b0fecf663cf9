"""Status conventions shared by the kinds: the ``phase`` summary and Kubernetes-style conditions.

The operator is the only writer of phase and conditions; both follow the Kubernetes API
conventions (CamelCase reasons, ``lastTransitionTime``, ``observedGeneration``), and
``conditions`` is a list map keyed by ``type`` so that server-side apply merges it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from kubegym_api.base import Model


class Phase(enum.StrEnum):
    """Summary of a resource's lifecycle, for printer columns; conditions carry the detail."""

    Pending = "Pending"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Suspended = "Suspended"


#: Phases a run never leaves.
TERMINAL_PHASES = frozenset({Phase.Succeeded.value, Phase.Failed.value})


class Condition(Model):
    """One aspect of the resource's state, following the Kubernetes API conventions."""

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Condition type in CamelCase, e.g. Running, Succeeded, Failed.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable cause in CamelCase, e.g. Unschedulable or OOMKilled.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details of the cause.")
    last_transition_time: datetime = Field(description="When status last changed (not when reason or message did).")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation of the resource this condition was computed for.",
    )


def condition_list_field(description: str) -> Any:
    """A ``conditions`` field, declared as a map keyed by ``type`` for server-side apply."""
    return Field(
        default_factory=list,
        max_length=32,
        description=description,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
