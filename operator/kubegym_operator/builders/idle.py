"""A Running TrainingRun that makes no progress: the ``Idle`` condition, and ``runPolicy.idleTimeoutSeconds``.

A run can hold its pod — and a GPU — while it trains nothing: an environment that hangs in
``step()``, a frozen process, a wait on something that never comes. The runner cannot report that
itself (it is the one stuck), so the operator judges it from the outside: the runner reports
progress only as timesteps advance (at most every ``progressIntervalSeconds``), so the time since
its last report — or since its pod started, before the first one — is the time without progress.

* Past the operator's threshold (``KUBEGYM_IDLE_AFTER_SECONDS``, Helm ``runner.idleAfterSeconds``,
  default 10 minutes) the run gets the condition ``Idle`` True with reason ``NoProgress``, a Warning
  Event, and the ``KubegymRunIdle`` alert; once timesteps advance again the condition turns False
  (reason ``Progressing``).
* Past ``spec.runPolicy.idleTimeoutSeconds`` (when set) the run fails with reason ``IdleTimeout``
  and its Job is stopped; its checkpoints stay in its folder (``resumeFrom`` it to go on).

Only the clock moves such a run on, so the periodic resync reconciles a run whose threshold falls
before the next pass (:func:`idle_due`). Pure; the times come in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubegym_api.status import Phase
from kubegym_operator.builders.cost import attempt_of
from kubegym_operator.builders.timestamps import parse_time

Obj = Mapping[str, Any]

IDLE_CONDITION = "Idle"


class IdleReason:
    """Reasons of the Idle condition, and of the run's failure past its idle timeout."""

    NO_PROGRESS = "NoProgress"
    PROGRESSING = "Progressing"
    IDLE_TIMEOUT = "IdleTimeout"


def last_progress(status: Obj, pods: Sequence[Obj] = ()) -> datetime | None:
    """The latest sign of progress of a run: the runner's last progress report, the run's latest
    transition to Running, or the start of a runner container in ``pods``, whichever is latest
    (a new attempt starts the clock again). None when there is none."""
    moments = [parse_time((status.get("progress") or {}).get("updateTime"))]
    if status.get("phase") == Phase.Running.value:
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Running" and cond.get("status") == "True":
                moments.append(parse_time(cond.get("lastTransitionTime")))
    for pod in pods:
        entry = attempt_of(pod)
        if entry is not None and entry.end_time is None:
            moments.append(entry.start_time)
    known = [m for m in moments if m is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Idleness:
    """How long a Running run has gone without progress, and what follows from it."""

    seconds: int
    since: datetime
    #: Past the operator's threshold: the Idle condition is True.
    flagged: bool
    #: Past ``runPolicy.idleTimeoutSeconds``: the run fails with reason IdleTimeout.
    timed_out: bool
    message: str


def _held(pods: Sequence[Obj]) -> str:
    running = [a for a in (attempt_of(p) for p in pods) if a is not None and a.end_time is None]
    if not running:
        return ""
    cpu = sum(a.cpu for a in running)
    gpu = sum(a.gpu for a in running)
    parts = ([f"{gpu} GPU" + ("s" if gpu != 1 else "")] if gpu else []) + [f"{cpu:g} CPU cores"]
    return " while holding " + " and ".join(parts)


def idle_timeout_of(run: Obj) -> int | None:
    """``spec.runPolicy.idleTimeoutSeconds``, or None."""
    value = ((run.get("spec") or {}).get("runPolicy") or {}).get("idleTimeoutSeconds")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def idleness(run: Obj, pods: Sequence[Obj], *, now: datetime, flag_after: int) -> Idleness | None:
    """How long the Running ``run`` (its verdict is Running now) has trained nothing; None when
    nothing tells when it last did."""
    status = run.get("status") or {}
    since = last_progress(status, pods)
    if since is None:
        return None
    seconds = max(0, int((now - since).total_seconds()))
    timeout = idle_timeout_of(run)
    steps = (status.get("progress") or {}).get("timesteps")
    at = f" (timestep {steps:,})" if isinstance(steps, int) else ""
    # No moving figure in the message: a condition whose message changed is a status write, and
    # that write's watch event another reconcile, for as long as the run stays idle.
    message = f"no new timesteps since {since.strftime('%Y-%m-%dT%H:%M:%SZ')}{at}{_held(pods)}"
    timed_out = timeout is not None and seconds >= timeout
    if timed_out:
        message += (
            f"; stopped after runPolicy.idleTimeoutSeconds ({timeout} s); its checkpoints are kept "
            "(spec.resumeFrom.trainingRun continues from the newest)"
        )
    return Idleness(seconds, since, seconds >= flag_after or timed_out, timed_out, message)


def idle_due(run: Obj, *, now: datetime, flag_after: int, resync_seconds: float) -> bool:
    """Whether a Running run's idleness can flag or fail it before the next periodic resync."""
    status = run.get("status") or {}
    if status.get("phase") != Phase.Running.value:
        return False
    since = last_progress(status)
    if since is None:
        return False
    idle = (now - since).total_seconds() + resync_seconds
    timeout = idle_timeout_of(run)
    flagged = any(c.get("type") == IDLE_CONDITION and c.get("status") == "True" for c in status.get("conditions") or [])
    return (not flagged and idle >= flag_after) or (timeout is not None and idle >= timeout)
