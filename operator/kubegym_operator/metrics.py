"""Prometheus metrics of the operator (``kubegym_*``), served over HTTP on ``KUBEGYM_METRICS_PORT``.

Two sources feed them:

* the operator's own work — reconciles, their duration and failures, how long a resource waits
  for its Job and the Job for a running pod, errors by reason — as ordinary counters and
  histograms, recorded by the reconciles through :func:`observe_reconcile` (or :func:`instrument`),
  :func:`count_event`, :func:`job_created` and :func:`job_started`;
* the state of the live resources — phase, progress, reward, checkpoints, benchmark scores —
  taken from the watch events kopf delivers anyway (:data:`OBJECTS`, fed by
  ``handlers.observability``) and turned into gauges at scrape time. A deleted object's series
  go with its DELETED event, so they are absent from the next scrape, and per-object label sets
  are bounded by the live objects (namespace/name, plus a few values from their spec/status).

Everything lives in a dedicated registry (:data:`REGISTRY`) with the process, platform and GC
collectors: what is served is exactly what ``docs/observability.md`` documents, whatever a
library registers in the default registry, and tests can read it in isolation.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubegym_api.status import Phase
from kubegym_operator.apierrors import ApiError
from kubegym_operator.builders.idle import IDLE_CONDITION, last_progress
from kubegym_operator.builders.status import Event
from kubegym_operator.builders.timestamps import parse_time

log = logging.getLogger("kubegym.metrics")

Obj = Mapping[str, Any]

#: The kinds the operator reconciles, as their label value.
KINDS = ("TrainingRun", "Benchmark", "Experiment")
#: Phases every kind reports; ``kubegym_objects`` has a series (maybe 0) for each.
PHASES = tuple(p.value for p in Phase)
#: Label value of a reason that is not a CamelCase word (never a free-text message).
OTHER_REASON = "Other"
#: Reason counted in ``kubegym_errors_total`` for a reconcile that raised something other than
#: an API error.
RECONCILE_ERROR = "ReconcileError"
_CAMEL_CASE = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")

# ``_created`` series double every counter and histogram and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

RECONCILES = Counter(
    "kubegym_reconciles",
    "Reconciles of a resource, by kind and result (success or error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "kubegym_reconcile_duration_seconds",
    "Time one reconcile took (API reads and writes included), by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
APPLY_TO_JOB = Histogram(
    "kubegym_apply_to_job_duration_seconds",
    "Time from a resource's creation to the creation of its Job, by kind (a Benchmark's includes "
    "waiting for the TrainingRuns it evaluates).",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0),
    registry=REGISTRY,
)
JOB_TO_RUNNING = Histogram(
    "kubegym_job_to_running_duration_seconds",
    "Time from a Job's creation to its first runner container running (scheduling, Kueue "
    "admission, image pull), by kind.",
    ["kind"],
    buckets=(1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
    registry=REGISTRY,
)
ERRORS = Counter(
    "kubegym_errors",
    "Errors by kind and CamelCase reason: Warning transitions of a resource (UserError, OOMKilled, "
    "ImagePullFailed, ...) and failed reconciles (the API's Status reason, e.g. Forbidden, or ReconcileError).",
    ["kind", "reason"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "kubegym_api_requests",
    "Requests the operator's reconciles made to the API server (kubeapi.py; kopf's watches and the "
    "leader's Lease renewals excluded), by HTTP verb and status code (0: no answer).",
    ["verb", "code"],
    registry=REGISTRY,
)
BUILD_INFO = Info("kubegym_build", "Version of the running operator.", registry=REGISTRY)


def _version() -> str:
    try:
        return importlib.metadata.version("kubegym")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.info({"version": _version()})
# Known label values start at 0, so that rates and ratios have data before the first event.
for _kind in KINDS:
    for _result in ("success", "error"):
        RECONCILES.labels(_kind, _result)
    RECONCILE_DURATION.labels(_kind)
for _kind in ("TrainingRun", "Benchmark"):
    APPLY_TO_JOB.labels(_kind)
    JOB_TO_RUNNING.labels(_kind)


def reason_label(reason: Any) -> str:
    """A reason as a label value: CamelCase words pass, anything else is ``Other``."""
    text = str(reason or "")
    return text if _CAMEL_CASE.match(text) else OTHER_REASON


def _error_reason(error: BaseException) -> str:
    """The Kubernetes Status reason of a failed API call (Forbidden, Conflict, ...), else ReconcileError."""
    if isinstance(error, ApiError):
        try:
            body = json.loads(error.body or "{}")
        except (TypeError, ValueError):
            body = {}
        reason = body.get("reason") if isinstance(body, dict) else None
        return reason_label(reason) if reason else "ApiError"
    return RECONCILE_ERROR


# --- the operator's own work -----------------------------------------------------------------


@contextmanager
def observe_reconcile(kind: str) -> Iterator[None]:
    """Count and time one reconcile of ``kind``; an exception counts as an error and propagates."""
    start = time.perf_counter()
    try:
        yield
    except Exception as e:
        RECONCILES.labels(kind, "error").inc()
        ERRORS.labels(kind, _error_reason(e)).inc()
        raise
    else:
        RECONCILES.labels(kind, "success").inc()
    finally:
        RECONCILE_DURATION.labels(kind).observe(time.perf_counter() - start)


def count_event(kind: str, event: Event) -> None:
    """A Warning transition is an error a person should look at: count it by its reason."""
    if event.type == "Warning":
        ERRORS.labels(kind, reason_label(event.reason)).inc()


P = ParamSpec("P")
R = TypeVar("R")


def instrument(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that reconciles one ``kind`` object: each call is counted and timed
    (:func:`observe_reconcile`)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def reconcile(*args: P.args, **kwargs: P.kwargs) -> R:
            with observe_reconcile(kind):
                return fn(*args, **kwargs)

        return reconcile

    return decorate


def _created(obj: Obj) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def job_created(kind: str, owner: Obj, now: float | None = None) -> None:
    """The operator just created ``owner``'s Job: observe the time since ``owner`` was created."""
    created = _created(owner)
    if created is not None:
        APPLY_TO_JOB.labels(kind).observe(max(0.0, (time.time() if now is None else now) - created.timestamp()))


def job_started(kind: str, job: Obj | None, previous: Obj, status: Obj) -> None:
    """Observe Job-to-Running when ``status`` sets ``startTime`` for the first time."""
    if job is None or previous.get("startTime") or not status.get("startTime"):
        return
    started, created = parse_time(status.get("startTime")), _created(job)
    if started is not None and created is not None:
        JOB_TO_RUNNING.labels(kind).observe(max(0.0, (started - created).total_seconds()))


# --- the live resources ----------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A family computed from the live objects; ``labels`` in exposition order. A ``counter`` is
    a figure of the object's status that only grows (its cost): exported as ``<name>_total``, its
    value survives an operator restart because the status holds it."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    type: Literal["gauge", "counter"] = "gauge"


_RUN = ("namespace", "name")
_OWNER = ("kind", "namespace", "name")
#: Every per-object family; docs/observability.md lists the same.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "kubegym_object_status",
            "1 for each live resource, with its current phase and reason.",
            ("kind", "namespace", "name", "phase", "reason"),
        ),
        Family(
            "kubegym_trainingrun_info",
            "1 for each TrainingRun, with its algorithm and environment id.",
            (*_RUN, "algorithm", "environment"),
        ),
        Family("kubegym_trainingrun_timesteps", "Timesteps trained so far (status.progress).", _RUN),
        Family("kubegym_trainingrun_total_timesteps", "Timesteps the run trains for in total.", _RUN),
        Family("kubegym_trainingrun_progress_ratio", "Fraction of totalTimesteps trained, 0 to 1.", _RUN),
        Family("kubegym_trainingrun_timesteps_per_second", "Recent training throughput reported by the runner.", _RUN),
        Family(
            "kubegym_trainingrun_mean_episode_reward",
            "Mean return of the most recent training episodes (up to 100).",
            _RUN,
        ),
        Family(
            "kubegym_trainingrun_evaluation_mean_reward", "Mean return of the most recent periodic evaluation.", _RUN
        ),
        Family("kubegym_trainingrun_final_mean_reward", "Mean return of the final evaluation of a finished run.", _RUN),
        Family(
            "kubegym_trainingrun_best_mean_reward",
            "Mean return of the best periodic evaluation so far (the model kept in best/).",
            _RUN,
        ),
        Family("kubegym_trainingrun_checkpoints", "Complete checkpoints currently kept in storage.", _RUN),
        Family("kubegym_trainingrun_checkpoint_timesteps", "Timestep of the newest complete checkpoint.", _RUN),
        Family(
            "kubegym_trainingrun_last_progress_timestamp_seconds",
            "Unix time of the latest sign of progress: the runner's last progress report or the run's "
            "latest transition to Running, whichever is later.",
            _RUN,
        ),
        Family(
            "kubegym_trainingrun_idle",
            "1 while a Running run has the condition Idle (no new timesteps past the operator's threshold).",
            _RUN,
        ),
        Family("kubegym_trainingrun_requested_gpus", "GPUs the run's current (or last) runner pod requested.", _RUN),
        Family(
            "kubegym_cpu_seconds",
            "Requested CPU cores x seconds the resource's pods ran (status.cost.cpuSeconds; an Experiment's "
            "is the sum of its runs').",
            _OWNER,
            "counter",
        ),
        Family(
            "kubegym_gpu_seconds",
            "Requested GPUs x seconds the resource's pods ran (status.cost.gpuSeconds).",
            _OWNER,
            "counter",
        ),
        Family(
            "kubegym_measured_cpu_seconds",
            "CPU time the runners measured of their own process trees (status.cost.measuredCpuSeconds).",
            _OWNER,
            "counter",
        ),
        Family(
            "kubegym_benchmark_score",
            "A model's value of the Benchmark's ranking statistic on one environment.",
            (*_RUN, "model", "env", "statistic"),
        ),
        Family(
            "kubegym_benchmark_score_ci_lower",
            "Lower end of the bootstrap confidence interval of kubegym_benchmark_score.",
            (*_RUN, "model", "env", "statistic"),
        ),
        Family(
            "kubegym_benchmark_score_ci_upper",
            "Upper end of the bootstrap confidence interval of kubegym_benchmark_score.",
            (*_RUN, "model", "env", "statistic"),
        ),
        Family("kubegym_benchmark_rank", "A model's place in the Benchmark's ranking (1 is best).", (*_RUN, "model")),
        Family(
            "kubegym_benchmark_policy_latency_seconds",
            "Time of one policy call (a batch of nEnvs observations) at a percentile (50, 99).",
            (*_RUN, "model", "env", "percentile"),
        ),
        Family("kubegym_benchmark_progress_ratio", "Fraction of model x environment entries evaluated.", _RUN),
        Family("kubegym_experiment_runs", "An Experiment's runs by phase (status.counts).", (*_RUN, "phase")),
        Family("kubegym_experiment_best_score", "Score of an Experiment's best configuration.", _RUN),
    )
}


@dataclass(frozen=True)
class Sample:
    """One series of a :data:`FAMILIES` gauge: label values in the family's order."""

    family: str
    labels: tuple[str, ...]
    value: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class _Samples:
    """Collects one object's samples; absent or non-finite values make no series."""

    def __init__(self, namespace: str, name: str) -> None:
        self.key = (namespace, name)
        self.out: list[Sample] = []

    def add(self, family: str, value: Any, *extra: str) -> None:
        number = _number(value)
        if number is not None:
            labels = (*self.key, *extra)
            assert len(labels) == len(FAMILIES[family].labels), family
            self.out.append(Sample(family, labels, number))


def _last_progress(status: Obj) -> float | None:
    moment = last_progress(status)
    return moment.timestamp() if moment is not None else None


def _trainingrun(s: _Samples, spec: Obj, status: Obj) -> None:
    environment = spec.get("environment") or {}
    s.out.append(
        Sample("kubegym_trainingrun_info", (*s.key, str(spec.get("algorithm", "")), str(environment.get("id", ""))), 1)
    )
    progress = status.get("progress") or {}
    s.add("kubegym_trainingrun_timesteps", progress.get("timesteps"))
    s.add("kubegym_trainingrun_total_timesteps", progress.get("totalTimesteps", spec.get("totalTimesteps")))
    s.add("kubegym_trainingrun_progress_ratio", progress.get("fraction"))
    s.add("kubegym_trainingrun_timesteps_per_second", progress.get("stepsPerSecond"))
    s.add("kubegym_trainingrun_mean_episode_reward", progress.get("meanEpisodeReward"))
    s.add("kubegym_trainingrun_evaluation_mean_reward", (progress.get("lastEvaluation") or {}).get("meanReward"))
    s.add("kubegym_trainingrun_final_mean_reward", (status.get("result") or {}).get("meanReward"))
    s.add("kubegym_trainingrun_best_mean_reward", (status.get("best") or {}).get("meanReward"))
    checkpoints = status.get("checkpoints") or {}
    s.add("kubegym_trainingrun_checkpoints", checkpoints.get("count"))
    s.add("kubegym_trainingrun_checkpoint_timesteps", checkpoints.get("latestStep"))
    s.add("kubegym_trainingrun_last_progress_timestamp_seconds", _last_progress(status))
    idle = any(c.get("type") == IDLE_CONDITION and c.get("status") == "True" for c in status.get("conditions") or [])
    if status.get("phase") == Phase.Running.value:
        s.add("kubegym_trainingrun_idle", 1 if idle else 0)
    attempts = (status.get("cost") or {}).get("attempts") or []
    if attempts:
        s.add("kubegym_trainingrun_requested_gpus", attempts[-1].get("gpu", 0))


#: Benchmark ranking statistic → the field of a results entry that holds it.
_STATISTIC_FIELDS = {"IQM": "iqm", "Mean": "mean", "Median": "median"}


def _benchmark(s: _Samples, spec: Obj, status: Obj) -> None:
    ranking = status.get("ranking") or {}
    statistic = str(ranking.get("statistic") or spec.get("statistic") or "IQM")
    field = _STATISTIC_FIELDS.get(statistic)
    for entry in status.get("results") or []:
        model, env = entry.get("model"), entry.get("env")
        if not model or not env:
            continue
        labels = (str(model), str(env))
        if field is not None:
            s.add("kubegym_benchmark_score", entry.get(field), *labels, statistic)
            s.add("kubegym_benchmark_score_ci_lower", entry.get("ciLower"), *labels, statistic)
            s.add("kubegym_benchmark_score_ci_upper", entry.get("ciUpper"), *labels, statistic)
        # A "quantile" label is reserved for summaries (promtool rejects it on a gauge).
        for key, percentile in (("latencyP50Ms", "50"), ("latencyP99Ms", "99")):
            millis = _number(entry.get(key))
            if millis is not None:
                s.add("kubegym_benchmark_policy_latency_seconds", millis / 1000.0, *labels, percentile)
    for ranked in ranking.get("models") or []:
        if ranked.get("model"):
            s.add("kubegym_benchmark_rank", ranked.get("rank"), str(ranked["model"]))
    progress = status.get("progress") or {}
    done, total = _number(progress.get("entriesDone")), _number(progress.get("entriesTotal"))
    if done is not None and total:
        s.add("kubegym_benchmark_progress_ratio", done / total)


#: status.counts key → phase label of an Experiment's runs.
_RUN_COUNTS = {
    "waiting": "Waiting",
    "pending": "Pending",
    "running": "Running",
    "suspended": "Suspended",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "earlyStopped": "EarlyStopped",
    "skipped": "Skipped",
}


def _experiment(s: _Samples, status: Obj) -> None:
    counts = status.get("counts") or {}
    for key, phase in _RUN_COUNTS.items():
        s.add("kubegym_experiment_runs", counts.get(key), phase)
    s.add("kubegym_experiment_best_score", (status.get("best") or {}).get("score"))


def phase_of(obj: Obj) -> str:
    """The object's phase; one the operator has not reconciled yet is Pending."""
    return str((obj.get("status") or {}).get("phase") or Phase.Pending.value)


def object_samples(kind: str, obj: Obj) -> tuple[Sample, ...]:
    """The per-object series of one resource as the API shows it (pure; unit-tested)."""
    meta = obj.get("metadata") or {}
    s = _Samples(str(meta.get("namespace", "")), str(meta.get("name", "")))
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    reason = status.get("reason")
    s.out.append(
        Sample("kubegym_object_status", (kind, *s.key, phase_of(obj), reason_label(reason) if reason else ""), 1)
    )
    cost = status.get("cost") or {}
    for family, field in (
        ("kubegym_cpu_seconds", "cpuSeconds"),
        ("kubegym_gpu_seconds", "gpuSeconds"),
        ("kubegym_measured_cpu_seconds", "measuredCpuSeconds"),
    ):
        value = _number(cost.get(field))
        if value is not None:
            s.out.append(Sample(family, (kind, *s.key), value))
    if kind == "TrainingRun":
        _trainingrun(s, spec, status)
    elif kind == "Benchmark":
        _benchmark(s, spec, status)
    elif kind == "Experiment":
        _experiment(s, status)
    return tuple(s.out)


@dataclass(frozen=True)
class _Entry:
    phase: str
    samples: tuple[Sample, ...]
    timesteps: int | None
    seen: float


class ObjectMetrics(Collector):
    """The live resources' gauges, fed by watch events and read at scrape time (thread safe).

    Also counts ``kubegym_trained_timesteps_total`` per namespace: the increases of every run's
    timesteps between two events this process saw (a resumed run that re-trains steps counts them
    again: they are work done).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str], _Entry] = {}
        self._trained: dict[str, float] = {}
        #: Set on the replica that leads (at once without leader election): a standby observes
        #: its watches too, to be ready, but exports nothing, so no object is counted twice.
        self.exporting = threading.Event()
        self.exporting.set()

    def observe(self, kind: str, event_type: str | None, obj: Obj) -> None:
        """Apply one watch event (``type`` None: kopf's initial listing)."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name:
            return
        key = (kind, str(namespace), str(name))
        if event_type == "DELETED":
            with self._lock:
                self._objects.pop(key, None)
                self._forget_empty_namespaces()
            return
        timesteps = _number(((obj.get("status") or {}).get("progress") or {}).get("timesteps"))
        steps = int(timesteps) if timesteps is not None and kind == "TrainingRun" else None
        entry = _Entry(phase_of(obj), object_samples(kind, obj), steps, time.monotonic())
        with self._lock:
            before = self._objects.get(key)
            self._objects[key] = entry
            if kind == "TrainingRun":
                gained = 0 if before is None or before.timesteps is None or steps is None else steps - before.timesteps
                self._trained[key[1]] = self._trained.get(key[1], 0.0) + max(0, gained)

    def prune(self, kind: str, live: Iterable[tuple[str, str]], listed_since: float) -> int:
        """Forget objects of ``kind`` absent from a listing started at ``listed_since`` (monotonic):
        a DELETED event can be lost when a watch is re-listed. Returns how many were forgotten."""
        alive = set(live)
        with self._lock:
            gone = [
                key
                for key, entry in self._objects.items()
                if key[0] == kind and (key[1], key[2]) not in alive and entry.seen < listed_since
            ]
            for key in gone:
                del self._objects[key]
            self._forget_empty_namespaces()
        return len(gone)

    def namespaces(self, kind: str) -> set[str]:
        with self._lock:
            return {key[1] for key in self._objects if key[0] == kind}

    def _forget_empty_namespaces(self) -> None:
        used = {key[1] for key in self._objects}
        for namespace in [n for n in self._trained if n not in used]:
            del self._trained[namespace]

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self._trained.clear()

    def collect(self) -> Iterator[Metric]:
        if not self.exporting.is_set():
            return
        with self._lock:
            entries = list(self._objects.items())
            trained = dict(self._trained)
        counts: dict[tuple[str, str, str], int] = {}
        for namespace in {key[1] for key, _ in entries}:
            for kind in KINDS:
                for phase in PHASES:
                    counts[(namespace, kind, phase)] = 0
        for (kind, namespace, _), entry in entries:
            counts[(namespace, kind, entry.phase)] = counts.get((namespace, kind, entry.phase), 0) + 1
        objects = GaugeMetricFamily(
            "kubegym_objects", "Live resources by namespace, kind and phase.", labels=["namespace", "kind", "phase"]
        )
        for (namespace, kind, phase), count in sorted(counts.items()):
            objects.add_metric([namespace, kind, phase], count)
        yield objects
        steps = CounterMetricFamily(
            "kubegym_trained_timesteps",
            "Timesteps trained by the runs of a namespace, as seen in their progress reports.",
            labels=["namespace"],
        )
        for namespace, total in sorted(trained.items()):
            steps.add_metric([namespace], total)
        yield steps
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            name: (CounterMetricFamily if f.type == "counter" else GaugeMetricFamily)(
                name, f.documentation, labels=list(f.labels)
            )
            for name, f in FAMILIES.items()
        }
        for _, entry in sorted(entries, key=lambda item: item[0]):
            for sample in entry.samples:
                families[sample.family].add_metric(list(sample.labels), sample.value)
        yield from families.values()


OBJECTS = ObjectMetrics()
REGISTRY.register(OBJECTS)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` of :data:`REGISTRY` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
    log.info("serving metrics on %s:%d/metrics", addr, port)
