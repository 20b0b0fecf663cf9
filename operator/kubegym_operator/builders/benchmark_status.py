"""A Benchmark's status from what the cluster shows: its referenced runs, its Job and the Job's pods.

The operator owns ``phase``, ``reason``, ``message``, ``conditions``, ``observedGeneration``,
``startTime``, ``completionTime``, ``jobName``, ``nodeName``, ``envs`` and ``modelCount``; the
runner owns ``progress``, ``results``, ``ranking``, ``bestModel``, ``bestScore`` and ``artifacts``.

The Job and pod diagnosis is the TrainingRun's (:func:`~kubegym_operator.builders.status.verdict_of`:
unschedulable, image pull, OOM, user error by exit code, ...), worded for an evaluation. On top:

* ``ModelsReady``: False (reason TrainingRunNotFinished) while a referenced TrainingRun has not
  finished, True once every model has a URI. A referenced run that failed fails the Benchmark.
* ``EntriesFailed``: once results exist, True (reason EntryErrors) when some model x environment
  entries failed, naming them; False (AllEntriesEvaluated) otherwise.

Succeeded and Failed are final, as for a TrainingRun.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kubegym_api.status import TERMINAL_PHASES, Phase
from kubegym_operator.builders.benchmark import Resolution, evaluation_job_name
from kubegym_operator.builders.job import CONTAINER_NAME
from kubegym_operator.builders.status import (
    Event,
    Reason,
    Severity,
    StatusUpdate,
    Verdict,
    condition,
    conditions_for,
    is_terminal,
    verdict_of,
)
from kubegym_operator.builders.timestamps import format_time, parse_time
from kubegym_operator.settings import Settings

Obj = Mapping[str, Any]

EVALUATING = "Evaluating"
WAITING = "TrainingRunNotFinished"
MODELS_RESOLVED = "ModelsResolved"
ENTRY_ERRORS = "EntryErrors"
ALL_EVALUATED = "AllEntriesEvaluated"
#: Most failed entries named in a condition message (all of them are in status.results).
MAX_NAMED_ERRORS = 5

#: Reasons that are routine; every other one is worth a Warning event.
_NORMAL = frozenset(
    {
        Reason.JOB_CREATING,
        Reason.QUEUED,
        Reason.STARTING,
        Reason.CONTAINER_CREATING,
        Reason.COMPLETED,
        EVALUATING,
        WAITING,
    }
)
_KEPT_WHEN_TERMINAL = (
    "phase",
    "reason",
    "message",
    "conditions",
    "startTime",
    "completionTime",
    "jobName",
    "nodeName",
    "envs",
    "modelCount",
)


def _spec(bench: Obj) -> Obj:
    return bench.get("spec") or {}


def summary_fields(bench: Obj) -> dict[str, Any]:
    """The printer columns' ``envs`` and ``modelCount``, from the spec."""
    spec = _spec(bench)
    return {
        "envs": ",".join(str(e.get("id")) for e in spec.get("environments") or []),
        "modelCount": len(spec.get("models") or []),
    }


def _results(bench: Obj) -> list[Obj]:
    return list((bench.get("status") or {}).get("results") or [])


def _outcome_message(bench: Obj) -> str:
    """What the Succeeded phase says: how many entries worked and who leads."""
    status = bench.get("status") or {}
    results = _results(bench)
    if not results:
        return "the runner finished; its results are in S3 (status.artifacts)"
    ok = sum(1 for r in results if not r.get("error"))
    ranking = status.get("ranking") or {}
    best = status.get("bestModel")
    lead = f"; best {best} ({ranking.get('statistic', 'score')} {status.get('bestScore')})" if best else ""
    return f"evaluated {ok} of {len(results)} model x environment entries{lead}"


def _reword(verdict: Verdict, bench: Obj) -> Verdict:
    """The TrainingRun diagnosis in the words of an evaluation (there are no checkpoints)."""
    reason, message = verdict.reason, verdict.message
    if reason == Reason.TRAINING:
        reason = EVALUATING
        message = message.replace("the runner finished; the Job is completing", "the evaluation finished")
    if verdict.phase == Phase.Succeeded.value:
        message = _outcome_message(bench)
    message = message.replace("a new pod resumes from the newest checkpoint", "a new pod restarts the evaluation")
    message = message.replace("runner pod", "evaluation pod")
    return Verdict(verdict.phase, reason, message, verdict.stop_job)


def _condition(
    kind: str, on: bool, reason: str, message: str, previous: Obj, now: datetime, generation: int | None
) -> dict[str, Any]:
    """A Benchmark-only condition, judged against the previous status's conditions of that type."""
    before = {str(c.get("type")): c for c in (previous.get("conditions") or [])}
    return condition(kind, on, reason, message, before, now, generation)


def waiting_message(waiting: Mapping[str, str]) -> str:
    runs = ", ".join(f"{name} ({state})" for name, state in waiting.items())
    return f"waiting for TrainingRun {runs} to finish; the evaluation starts when every referenced run has succeeded"


def entries_failed(results: Sequence[Obj]) -> tuple[bool, str]:
    """Whether entries failed, and a message naming the first few."""
    failed = [r for r in results if r.get("error")]
    if not failed:
        return False, f"all {len(results)} model x environment entries were evaluated"
    named = "; ".join(f"{r.get('model')} on {r.get('env')}: {r.get('error')}" for r in failed[:MAX_NAMED_ERRORS])
    more = f" (+{len(failed) - MAX_NAMED_ERRORS} more in status.results)" if len(failed) > MAX_NAMED_ERRORS else ""
    return True, f"{len(failed)} of {len(results)} entries failed: {named}{more}"


def _first_start(pods: Iterable[Obj]) -> datetime | None:
    starts = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != CONTAINER_NAME:
                continue
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                for key in ("running", "terminated"):
                    started = parse_time((state.get(key) or {}).get("startedAt"))
                    if started is not None and started.year > 1970:
                        starts.append(started)
    return min(starts) if starts else None


def _event(previous: Obj, verdict: Verdict, results: Sequence[Obj]) -> Event | None:
    if previous.get("phase") == verdict.phase and previous.get("reason") == verdict.reason:
        return None
    if verdict.phase == Phase.Succeeded.value:
        failed, message = entries_failed(results)
        if failed:
            return Event("Warning", "EntriesFailed", f"Succeeded: {message}")
    severity: Severity = "Warning" if verdict.phase == Phase.Failed.value or verdict.reason not in _NORMAL else "Normal"
    return Event(severity, verdict.reason, f"{verdict.phase}: {verdict.message}")


def compute_status(
    bench: Obj,
    job: Obj | None,
    pods: Sequence[Obj],
    *,
    resolution: Resolution | None,
    now: datetime,
    settings: Settings,
) -> StatusUpdate:
    """The operator-owned status of a Benchmark.

    ``resolution`` is how its models resolved this time; None once its Job exists (they were
    resolved when it was created).
    """
    previous: Obj = bench.get("status") or {}
    generation = (bench.get("metadata") or {}).get("generation")
    if is_terminal(bench):
        kept = {key: previous[key] for key in _KEPT_WHEN_TERMINAL if key in previous}
        kept.update(summary_fields(bench))
        kept["observedGeneration"] = generation
        return StatusUpdate(status=kept)
    if job is None and resolution is not None and resolution.failure is not None:
        return failed_status(bench, *resolution.failure, now=now)
    if job is None and resolution is not None and resolution.waiting:
        verdict = Verdict(Phase.Pending.value, WAITING, waiting_message(resolution.waiting))
    else:
        grace = timedelta(seconds=settings.pending_error_grace_seconds)
        verdict = _reword(verdict_of(bench, job, pods, now=now, grace=grace), bench)
    return _update(bench, verdict, job, pods, now=now)


def failed_status(bench: Obj, reason: str, message: str, *, now: datetime) -> StatusUpdate:
    """Status of a Benchmark that fails before it has a Job (a failed TrainingRun, no storage)."""
    return _update(bench, Verdict(Phase.Failed.value, reason, message), None, [], now=now)


def _update(bench: Obj, verdict: Verdict, job: Obj | None, pods: Sequence[Obj], *, now: datetime) -> StatusUpdate:
    previous: Obj = bench.get("status") or {}
    generation = (bench.get("metadata") or {}).get("generation")
    conditions = conditions_for(verdict, previous.get("conditions") or [], now=now, generation=generation)
    if verdict.reason == WAITING:
        ready = _condition("ModelsReady", False, WAITING, verdict.message, previous, now, generation)
    elif job is not None:
        ready = _condition("ModelsReady", True, MODELS_RESOLVED, "every model has a URI", previous, now, generation)
    else:
        ready = None
    if ready is not None:
        conditions.insert(0, ready)
    results = _results(bench)
    if results and verdict.phase in TERMINAL_PHASES:
        failed, message = entries_failed(results)
        reason = ENTRY_ERRORS if failed else ALL_EVALUATED
        conditions.append(_condition("EntriesFailed", failed, reason, message, previous, now, generation))
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "reason": verdict.reason,
        "message": verdict.message,
        "conditions": conditions,
        "observedGeneration": generation,
        **summary_fields(bench),
    }
    if job is not None:
        status["jobName"] = (job.get("metadata") or {}).get("name") or evaluation_job_name(bench["metadata"]["name"])
    started = previous.get("startTime")
    if not started:
        first = _first_start(pods)
        started = format_time(first) if first is not None else None
    if started:
        status["startTime"] = started
    if verdict.phase in TERMINAL_PHASES:
        status["completionTime"] = _completion(job, now)
    node = next(
        (
            (p.get("spec") or {}).get("nodeName")
            for p in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
            if (p.get("spec") or {}).get("nodeName")
        ),
        previous.get("nodeName"),
    )
    if node:
        status["nodeName"] = node
    return StatusUpdate(status=status, stop_job=verdict.stop_job, event=_event(previous, verdict, results))


def _completion(job: Obj | None, now: datetime) -> str:
    job_status = (job or {}).get("status") or {}
    if job_status.get("completionTime"):
        return str(job_status["completionTime"])
    for cond in job_status.get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget", "Complete", "SuccessCriteriaMet") and cond.get(
            "lastTransitionTime"
        ):
            return str(cond["lastTransitionTime"])
    return format_time(now)
