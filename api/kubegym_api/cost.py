"""What a resource's pods cost, as ``status.cost``: CPU-seconds and GPU-seconds, shared by every kind.

A TrainingRun and a Benchmark own a Job whose pods hold CPUs and GPUs; an Experiment holds what its
runs hold. Platform teams charge (and researchers compare) by what was *reserved* — requested cores
and GPUs times the seconds a pod ran, every attempt counted (a preempted attempt's work is paid for
even when it is redone) — and want to see how much of the reservation was used. So each figure has
two sides: ``cpuSeconds``/``gpuSeconds`` from the pod specs and their containers' start and end
times, which the operator observes for any pod on any node, and ``measuredCpuSeconds`` (and a GPU's
utilisation where the node exposes it), which the runner measures of its own process tree and
reports in ``status.progress.usage``.

The ledger (``attempts``) is what keeps the sum level-triggered: one entry per pod the operator has
seen, so a pod that is gone (a preempted attempt, a Job deleted after ``ttlSecondsAfterFinished``)
still counts with the times it was last seen with, and recomputing from the same pods gives the
same figures (no write loop). A running pod's share is counted up to ``asOf``, which moves in
steps of :data:`COST_RESOLUTION_SECONDS` — one status write a minute at most for a running pod.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kubegym_api.base import Model

#: Seconds between two values of ``asOf`` while a pod runs: the cost of a running pod is written
#: at most this often (each write is an API request and a watch event).
COST_RESOLUTION_SECONDS = 60
#: Pods kept one by one in ``status.cost.attempts``; older finished ones are folded into ``earlier``.
MAX_COST_ATTEMPTS = 20


class ResourceUsage(Model):
    """What the runner measured of its own pod, as ``status.progress.usage``."""

    pod: str = Field(min_length=1, max_length=253, description="The runner pod these figures are of.")
    cpu_seconds: float = Field(
        ge=0,
        description="CPU time (user + system) of the runner's process tree so far: the trainer, its "
        "environment worker processes, and the children they have finished.",
    )
    gpu_utilization_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="The GPU's utilisation when last sampled (NVML through torch), where the node exposes it.",
    )
    gpu_memory_peak_bytes: int | None = Field(
        default=None, ge=0, description="Peak GPU memory torch allocated in this pod (CUDA runs)."
    )


class CostTotals(Model):
    """Summed figures: of a set of pods, or of an Experiment's runs."""

    cpu_seconds: float = Field(
        default=0.0, ge=0, description="Requested CPU cores x seconds the pods ran, every attempt counted."
    )
    gpu_seconds: float = Field(default=0.0, ge=0, description="Requested GPUs x seconds the pods ran.")
    measured_cpu_seconds: float | None = Field(
        default=None,
        ge=0,
        description="CPU time the runners measured of themselves (absent where none reported it).",
    )
    pods: int = Field(default=0, ge=0, description="Pods these figures cover.")


class AttemptCost(Model):
    """One pod of the resource, in the ledger ``status.cost.attempts``."""

    pod: str = Field(min_length=1, max_length=253, description="Pod name.")
    cpu: float = Field(ge=0, description="CPU cores its runner container requested.")
    gpu: int = Field(default=0, ge=0, description="GPUs its runner container requested (nvidia.com/gpu).")
    start_time: datetime = Field(description="When its runner container started.")
    end_time: datetime | None = Field(
        default=None,
        description="When its runner container ended (or the pod was last seen, for a pod deleted while it "
        "ran); absent while it runs.",
    )
    measured_cpu_seconds: float | None = Field(
        default=None, ge=0, description="CPU time its runner last reported (status.progress.usage)."
    )
    gpu_utilization_percent: float | None = Field(
        default=None, ge=0, le=100, description="GPU utilisation its runner last reported, where measured."
    )


class Cost(CostTotals):
    """``status.cost`` of a kind that owns pods (TrainingRun, Benchmark): the totals of its ledger."""

    cpu_utilization: float | None = Field(
        default=None,
        ge=0,
        description="measuredCpuSeconds / cpuSeconds of the pods that reported both: how much of the "
        "requested CPU was used (above 1: the pod ran past its request, on idle cores).",
    )
    as_of: datetime | None = Field(
        default=None,
        description="The time the running pods' shares are counted up to (finished pods count in full).",
    )
    attempts: list[AttemptCost] = Field(
        default_factory=list,
        max_length=MAX_COST_ATTEMPTS,
        description=f"The pods, oldest first (the newest {MAX_COST_ATTEMPTS}; older finished ones are in earlier).",
    )
    earlier: CostTotals | None = Field(
        default=None, description="Totals of the finished pods folded out of attempts (a run retried many times)."
    )
