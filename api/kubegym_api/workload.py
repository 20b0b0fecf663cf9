"""Compute, placement and retries of the pods kubegym runs, shared by TrainingRun and Benchmark.

``resources`` (CPU, memory, GPUs), ``scheduling`` (node selector, tolerations, affinity,
priority, Kueue queue) and ``runPolicy`` (retries, deadline, clean-up) mean the same in every
kind that runs a Job, so they are declared once; the operator also reads its own defaults
(:data:`Quantity`, :class:`Toleration`) through them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from kubegym_api.base import Model
from kubegym_api.validation import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, rules, validation_rule

#: Kubernetes' own quantity syntax (what kubebuilder emits for resource.Quantity), without a
#: sign: a negative request is never meaningful and would only fail later, at pod creation.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(f"{value!r} is not a non-negative quantity")
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2, 4Gi")
    return value


#: A Kubernetes resource quantity: an integer (``2``) or a string (``500m``, ``4Gi``).
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            # CEL rather than a pattern: it also bounds integers and its message is readable.
            "x-kubernetes-validations": [
                validation_rule(
                    "type(self) == int ? self >= 0 : isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
                    "must be a non-negative Kubernetes quantity such as 2, 500m or 4Gi",
                    reason="FieldValueInvalid",
                )
            ],
        }
    ),
]


class Resources(Model):
    """Compute for the runner pod. CPU and memory are requests; memory is also the limit."""

    cpu: Quantity | None = Field(
        default=None,
        description=(
            "CPU request of the runner container (e.g. 2 or 500m). No CPU limit is set, so "
            "training is never throttled below what the node has spare. Defaults to the "
            "operator's setting."
        ),
    )
    memory: Quantity | None = Field(
        default=None,
        description=(
            "Memory request and limit of the runner container (e.g. 4Gi). Exceeding it ends "
            "the run with reason OOMKilled. Defaults to the operator's setting."
        ),
    )
    gpu: int = Field(
        default=0,
        ge=0,
        le=16,
        description=(
            "Number of NVIDIA GPUs, requested as the extended resource nvidia.com/gpu. "
            "Required (at least 1) when device is cuda."
        ),
    )


class Toleration(Model):
    """A pod toleration, as in the Pod API."""

    model_config = rules(
        validation_rule(
            "has(self.key) && self.key != '' || has(self.operator) && self.operator == 'Exists'",
            "a toleration without a key must use operator: Exists (it matches every taint)",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "a toleration with operator: Exists must not set a value",
            field_path=".value",
            reason="FieldValueForbidden",
        ),
        validation_rule(
            "!has(self.tolerationSeconds) || has(self.effect) && self.effect == 'NoExecute'",
            "tolerationSeconds applies only to effect: NoExecute",
            field_path=".tolerationSeconds",
            reason="FieldValueForbidden",
        ),
    )

    key: str | None = Field(
        default=None,
        max_length=316,
        description="Taint key to tolerate; empty with operator Exists tolerates every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None,
        description="Exists matches any value; Equal (the default) matches value exactly.",
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )


class Scheduling(Model):
    """Where the runner pod may run and through which queue it is admitted."""

    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description=(
            "Node labels the runner pod requires. Merged over the operator's GPU node "
            "selector when gpu > 0 (these win)."
        ),
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=64,
        description=("Tolerations of the runner pod. The operator's GPU tolerations are added when gpu > 0."),
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Pod affinity rules (the Pod API's affinity object), copied to the pod.",
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="PriorityClass of the runner pod (preemption order under contention).",
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description=(
            "Kueue LocalQueue that admits the run (label kueue.x-k8s.io/queue-name on the "
            "Job). Defaults to the operator's queue; empty means no Kueue."
        ),
    )


class RunPolicy(Model):
    """How the runner Job retries, how long it may run and how long it is kept."""

    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description=(
            "Retries after infrastructure failures (storage, crashes, OOM). Disruptions "
            "(preemption, eviction, drain) do not count; user errors are never retried."
        ),
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Wall-clock limit of the whole run, retries included; past it the run fails with reason DeadlineExceeded."
        ),
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Delete the finished runner Job (and its pods and logs) this many seconds after it "
            "ended; the TrainingRun and its artifacts stay. Mutable."
        ),
    )
