"""``status.cost`` of any kind that owns a Job's pods (TrainingRun, Benchmark), from those pods.

Pure: (the status as it is, the pods the view holds, the runner's own measurement, the time) →
the new :class:`~kubegym_api.cost.Cost`. The generic reconciler applies it to every owner, so the
kinds share one way of counting. The rules, and why:

* A pod counts from its runner container's start to its end (``state.terminated.finishedAt``);
  a pod that never started a container costs nothing (an unschedulable pod holds no node).
* Requested CPU (``resources.requests.cpu``) and GPUs (``nvidia.com/gpu``) of the runner container
  times that time: what the pod reserved, whether it used it or not.
* A pod seen running and then gone (deleted, preempted, its Job deleted) ends when the operator
  noticed it gone (at :data:`~kubegym_api.cost.COST_RESOLUTION_SECONDS` resolution); the entry is
  then final, like one that ended normally, so no later reconcile changes it.
* A running pod counts up to ``asOf``, the time rounded down to the resolution: the same pods give
  the same figures within a minute, so a status write does not trigger another one.
* The runner's ``status.progress.usage`` (CPU time of its own process tree) goes to its pod's entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from kubegym_api.cost import COST_RESOLUTION_SECONDS, MAX_COST_ATTEMPTS, AttemptCost, Cost, CostTotals, ResourceUsage
from kubegym_operator.builders.job import CONTAINER_NAME, GPU_RESOURCE
from kubegym_operator.builders.timestamps import parse_time

Obj = Mapping[str, Any]

#: Multipliers of the decimal suffixes a CPU quantity may carry.
_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal("1e3")}


def cpu_cores(quantity: Any) -> float:
    """Cores of a Kubernetes CPU quantity (``500m`` → 0.5, ``2`` → 2.0); 0 for none or nonsense."""
    if quantity is None:
        return 0.0
    text = str(quantity).strip()
    scale = Decimal(1)
    if text and text[-1] in _SUFFIXES:
        scale, text = _SUFFIXES[text[-1]], text[:-1]
    try:
        value = Decimal(text) * scale
    except InvalidOperation:
        return 0.0
    return float(value) if value.is_finite() and value >= 0 else 0.0


def _count(quantity: Any) -> int:
    try:
        return max(0, int(str(quantity)))
    except (TypeError, ValueError):
        return 0


def as_of(now: datetime) -> datetime:
    """``now`` rounded down to :data:`COST_RESOLUTION_SECONDS`."""
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % COST_RESOLUTION_SECONDS, UTC)


def _runner(pod: Obj) -> tuple[Obj, Obj]:
    """The runner container's spec and status in ``pod`` (empty when absent)."""
    empty: Obj = {}
    spec: Obj = next(
        (c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == CONTAINER_NAME), empty
    )
    status: Obj = next(
        (c for c in (pod.get("status") or {}).get("containerStatuses") or [] if c.get("name") == CONTAINER_NAME),
        empty,
    )
    return spec, status


def _span(status: Obj) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the runner container; end None while it runs. StartError containers
    report the Unix epoch as their start: they never ran."""
    state = status.get("state") or {}
    info = state.get("running") or state.get("terminated") or {}
    start = parse_time(info.get("startedAt"))
    if start is None or start.year <= 1970:
        return None, None
    return start, parse_time((state.get("terminated") or {}).get("finishedAt"))


def attempt_of(pod: Obj) -> AttemptCost | None:
    """The ledger entry of one pod as it shows now; None before its runner container started."""
    spec, status = _runner(pod)
    start, end = _span(status)
    if start is None:
        return None
    resources = spec.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    return AttemptCost(
        pod=str((pod.get("metadata") or {}).get("name")),
        cpu=cpu_cores(requests.get("cpu", limits.get("cpu"))),
        gpu=_count(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE, 0))),
        start_time=start,
        end_time=end if end is None or end >= start else start,
    )


def _previous(status: Obj) -> Cost | None:
    raw = status.get("cost")
    if not isinstance(raw, Mapping):
        return None
    try:
        return Cost.model_validate(raw)
    except ValidationError:
        return None  # written by something else: counted again from the pods the view holds


def _usage(status: Obj) -> ResourceUsage | None:
    raw = (status.get("progress") or {}).get("usage")
    try:
        return ResourceUsage.model_validate(raw) if isinstance(raw, Mapping) else None
    except ValidationError:
        return None


def _seconds(entry: AttemptCost, until: datetime) -> float:
    end = entry.end_time or until
    return max(0.0, (end - entry.start_time).total_seconds())


def cost_of(status: Obj, pods: Sequence[Obj], now: datetime) -> Cost | None:
    """The new ``status.cost`` from the current ``status`` (its ledger and the runner's usage), the
    owner's ``pods`` and ``now``; None while no pod has started and none was counted before."""
    previous = _previous(status)
    ledger: dict[str, AttemptCost] = {a.pod: a for a in (previous.attempts if previous else [])}
    earlier = previous.earlier if previous else None
    until = as_of(now)
    seen: set[str] = set()
    for pod in pods:
        entry = attempt_of(pod)
        if entry is None:
            continue
        seen.add(entry.pod)
        known = ledger.get(entry.pod)
        if known is not None and known.end_time is not None:
            continue  # final: a stale pod update never changes a finished entry
        if known is not None:
            entry = entry.model_copy(
                update={
                    "measured_cpu_seconds": known.measured_cpu_seconds,
                    "gpu_utilization_percent": known.gpu_utilization_percent,
                }
            )
        ledger[entry.pod] = entry
    for name, entry in list(ledger.items()):
        if entry.end_time is None and name not in seen:
            ledger[name] = entry.model_copy(update={"end_time": max(until, entry.start_time)})
    usage = _usage(status)
    if usage is not None and usage.pod in ledger:
        entry = ledger[usage.pod]
        measured = max(usage.cpu_seconds, entry.measured_cpu_seconds or 0.0)
        ledger[usage.pod] = entry.model_copy(
            update={
                "measured_cpu_seconds": round(measured, 1),
                "gpu_utilization_percent": usage.gpu_utilization_percent,
            }
        )
    if not ledger and earlier is None:
        return None
    attempts = sorted(ledger.values(), key=lambda a: (a.start_time, a.pod))
    while len(attempts) > MAX_COST_ATTEMPTS:
        oldest = next((a for a in attempts if a.end_time is not None), None)
        if oldest is None:
            break
        attempts.remove(oldest)
        earlier = _fold(earlier, oldest)
    return _totals(attempts, earlier, until)


def _fold(earlier: CostTotals | None, entry: AttemptCost) -> CostTotals:
    base = earlier or CostTotals()
    seconds = _seconds(entry, entry.end_time or entry.start_time)
    measured = base.measured_cpu_seconds
    if entry.measured_cpu_seconds is not None:
        measured = (measured or 0.0) + entry.measured_cpu_seconds
    return CostTotals(
        cpu_seconds=round(base.cpu_seconds + entry.cpu * seconds, 1),
        gpu_seconds=round(base.gpu_seconds + entry.gpu * seconds, 1),
        measured_cpu_seconds=None if measured is None else round(measured, 1),
        pods=base.pods + 1,
    )


def _totals(attempts: list[AttemptCost], earlier: CostTotals | None, until: datetime) -> Cost:
    cpu = sum(a.cpu * _seconds(a, until) for a in attempts) + (earlier.cpu_seconds if earlier else 0.0)
    gpu = sum(a.gpu * _seconds(a, until) for a in attempts) + (earlier.gpu_seconds if earlier else 0.0)
    measured_parts = [a.measured_cpu_seconds for a in attempts if a.measured_cpu_seconds is not None]
    if earlier is not None and earlier.measured_cpu_seconds is not None:
        measured_parts.append(earlier.measured_cpu_seconds)
    reserved = sum(a.cpu * _seconds(a, until) for a in attempts if a.measured_cpu_seconds is not None)
    used = sum(a.measured_cpu_seconds or 0.0 for a in attempts)
    running = any(a.end_time is None for a in attempts)
    return Cost(
        cpu_seconds=round(cpu, 1),
        gpu_seconds=round(gpu, 1),
        measured_cpu_seconds=round(sum(measured_parts), 1) if measured_parts else None,
        pods=len(attempts) + (earlier.pods if earlier else 0),
        cpu_utilization=round(used / reserved, 3) if reserved > 0 else None,
        as_of=until if running else None,
        attempts=attempts,
        earlier=earlier,
    )


def cost_status(status: Obj, pods: Sequence[Obj], now: datetime) -> dict[str, Any] | None:
    """:func:`cost_of` as the API shows it (camelCase JSON), for the status patch."""
    cost = cost_of(status, pods, now)
    return None if cost is None else cost.model_dump(mode="json", by_alias=True, exclude_none=True)


#: The fields of :class:`CostTotals` as the API spells them (a ``Cost`` carries more).
_TOTALS = ("cpuSeconds", "gpuSeconds", "measuredCpuSeconds", "pods")


def sum_costs(costs: Sequence[Any]) -> CostTotals | None:
    """The totals of several resources' ``status.cost`` (an Experiment's runs); None when none has one."""
    parsed: list[CostTotals] = []
    for raw in costs:
        if isinstance(raw, Mapping):
            try:
                parsed.append(CostTotals.model_validate({k: raw[k] for k in _TOTALS if k in raw}))
            except ValidationError:
                continue
    if not parsed:
        return None
    measured = [c.measured_cpu_seconds for c in parsed if c.measured_cpu_seconds is not None]
    return CostTotals(
        cpu_seconds=round(sum(c.cpu_seconds for c in parsed), 1),
        gpu_seconds=round(sum(c.gpu_seconds for c in parsed), 1),
        measured_cpu_seconds=round(sum(measured), 1) if measured else None,
        pods=sum(c.pods for c in parsed),
    )
