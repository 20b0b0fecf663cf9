"""A TrainingRun's status from what the cluster shows: its Job and that Job's pods.

The operator owns ``phase``, ``reason``, ``message``, ``conditions``, ``observedGeneration``,
``startTime``, ``completionTime``, ``jobName``, ``nodeName``, ``artifacts`` (where the run's
folder is, recorded once from its Job: :mod:`kubegym_operator.builders.artifacts`) and
``estimatedRemainingSeconds`` (:func:`estimated_remaining_seconds`, from the progress the runner
reports: the runner reports what it measured, the operator states what follows); the runner owns ``progress``,
``checkpoints`` and ``result``. Reasons name the cause a person can act on (Unschedulable,
ImagePullFailed, OOMKilled, UserError, ...) rather than the Job's generic failure, so they
are dug out of pod conditions, container states and the runner's exit code.

Succeeded and Failed are final: a run never leaves them, even when its Job is deleted later
(ttlSecondsAfterFinished) or a stale pod update arrives.

The runner's fields have one fallback the operator fills: when the Job succeeded but
``status.result`` never arrived (the API server was unreachable while the runner reported its
end), :func:`recover_result` rebuilds ``result``, ``progress`` at 100% and ``checkpoints`` from the
:class:`~kubegym_api.finalreport.FinalReport` the runner left in its pod's termination message (the
result its ``final/manifest.json`` records), which the kubelet keeps in the pod status the operator
already reads. That needs no access to storage, so the operator stays without S3 credentials.

Storage health is the runner's to observe and the operator's to state: the runner reports
``status.progress.storage`` (ok, or failing since when and why), and :func:`storage_condition`
turns it into the ``StorageAvailable`` condition (False with reason StorageUnavailable while
uploads fail, True again once they succeed, an Event at each flip), with anything that looks
like a credential scrubbed from the message. Tracking health follows the same pattern: the runner
reports ``status.progress.tracking`` for a run with ``spec.tracking.mlflow`` and
:func:`tracking_condition` states ``TrackingAvailable`` (False with reason TrackingUnreachable).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from kubegym_api.exitcodes import EXIT_INFRA_ERROR, EXIT_STORAGE_ERROR, EXIT_USER_ERROR
from kubegym_api.finalreport import FinalReport, parse_final_report
from kubegym_api.status import TERMINAL_PHASES, Phase
from kubegym_api.storage import S3Storage
from kubegym_operator.builders.artifacts import artifacts_status, recorded_location
from kubegym_operator.builders.idle import IDLE_CONDITION, Idleness, IdleReason, idleness
from kubegym_operator.builders.job import CONTAINER_NAME, QUEUE_LABEL, RenderError, parse_spec, storage_of
from kubegym_operator.builders.naming import training_job_name
from kubegym_operator.builders.timestamps import format_time, parse_time
from kubegym_operator.settings import Settings

Obj = Mapping[str, Any]

#: Longest message kept from a termination message or log tail (its end holds the error).
MAX_MESSAGE = 2048


class Reason:
    """CamelCase reasons of the phase and of the conditions."""

    JOB_CREATING = "JobCreating"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    QUEUED = "Queued"
    RESUMING = "Resuming"
    STARTING = "Starting"
    CONTAINER_CREATING = "ContainerCreating"
    TRAINING = "Training"
    RESTARTING = "Restarting"
    DISRUPTED = "Disrupted"
    COMPLETED = "Completed"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    SECRET_NOT_FOUND = "SecretNotFound"
    CONFIG_ERROR = "CreateContainerConfigError"
    CONTAINER_CANNOT_RUN = "ContainerCannotRun"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    USER_ERROR = "UserError"
    STORAGE_UNREACHABLE = "StorageUnreachable"
    INFRASTRUCTURE_ERROR = "InfrastructureError"
    RUNNER_ERROR = "RunnerError"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    EARLY_STOPPED = "EarlyStopped"
    #: Event reason: status.result was rebuilt from the runner pod's termination message.
    RESULT_RECOVERED = "ResultRecovered"
    #: StorageAvailable condition (and Event) reasons, from the runner's status.progress.storage.
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    STORAGE_AVAILABLE = "StorageAvailable"
    #: TrackingAvailable condition (and Event) reasons, from the runner's status.progress.tracking.
    TRACKING_UNREACHABLE = "TrackingUnreachable"
    TRACKING_AVAILABLE = "TrackingAvailable"


#: Set (with the reason as value) by an Experiment that stopped this run early; with
#: ``spec.suspend`` it makes the run Suspended with reason EarlyStopped and an EarlyStopped
#: condition, so the run itself says why it holds its remaining budget.
EARLY_STOPPED_ANNOTATION = "kubegym.io/early-stopped"


#: Reasons that are routine; every other one is worth a Warning event.
_NORMAL_REASONS = frozenset(
    {
        Reason.JOB_CREATING,
        Reason.SUSPENDED,
        Reason.QUEUED,
        Reason.RESUMING,
        Reason.STARTING,
        Reason.CONTAINER_CREATING,
        Reason.TRAINING,
        Reason.COMPLETED,
        Reason.EARLY_STOPPED,
    }
)
#: Failure causes that explain a BackoffLimitExceeded better than the Job's own reason.
_SPECIFIC_CAUSES = frozenset(
    {
        Reason.OOM_KILLED,
        Reason.STORAGE_UNREACHABLE,
        Reason.CONTAINER_CANNOT_RUN,
        Reason.USER_ERROR,
        Reason.INFRASTRUCTURE_ERROR,
    }
)
_PULL_RETRYING = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable", "SignatureValidationFailed"})
_PULL_PERMANENT = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_CANNOT_RUN = frozenset({"CreateContainerError", "RunContainerError"})
_CANNOT_RUN_TERMINATED = frozenset({"ContainerCannotRun", "StartError"})
#: Shell conventions: 126 not executable, 127 command not found.
_CANNOT_RUN_CODES = frozenset({126, 127})
#: Pending reasons that fail a run once ``pending_error_grace_seconds`` have passed (see
#: :func:`_pending`): only the clock moves such a run on, so the periodic resync reconciles it.
GRACE_LIMITED_REASONS = frozenset(
    {Reason.IMAGE_PULL_FAILED, Reason.SECRET_NOT_FOUND, Reason.CONFIG_ERROR, Reason.CONTAINER_CANNOT_RUN}
)

Severity = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Verdict:
    """Phase with its cause; ``stop_job`` when the run failed while its Job still has pods."""

    phase: str
    reason: str
    message: str
    stop_job: bool = False


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to record on the run (``kubectl describe`` tells the story)."""

    type: Severity
    reason: str
    message: str


@dataclass(frozen=True)
class StatusUpdate:
    """Result of :func:`compute_status`.

    ``status``: the operator-owned status fields, to merge-patch into ``status``.
    ``stop_job``: the run is Failed but its Job still runs or retries pods (a permanent
    image or configuration error): delete the Job (propagation Background).
    ``event``: the transition to record, if phase or reason changed.
    ``storage_event``: the StorageAvailable condition flipped (storage failing, or back).
    ``idle_event``: the Idle condition flipped (no progress, or progress again).
    ``tracking_event``: the TrackingAvailable condition flipped (tracking server unreachable, or back).
    """

    status: dict[str, Any]
    stop_job: bool = False
    event: Event | None = None
    storage_event: Event | None = None
    idle_event: Event | None = None
    tracking_event: Event | None = None

    @property
    def events(self) -> list[Event]:
        """Every Event to record, in order."""
        return [e for e in (self.idle_event, self.event, self.storage_event, self.tracking_event) if e is not None]


def _tail(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_MESSAGE else "…" + text[-MAX_MESSAGE:]


# --- pods ----------------------------------------------------------------------------------


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _runner_status(pod: Obj) -> Obj:
    for cs in _status(pod).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            return dict(cs)
    return {}


def _condition(obj: Obj, kind: str) -> Obj | None:
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _newest(pods: Iterable[Obj]) -> Obj | None:
    ordered = sorted(
        pods,
        key=lambda p: (
            (p.get("metadata") or {}).get("creationTimestamp") or "",
            (p.get("metadata") or {}).get("name") or "",
        ),
    )
    return ordered[-1] if ordered else None


def _pod_name(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _memory_limit(pod: Obj) -> str | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            return str(limit) if limit is not None else None
    return None


def _disruption(pod: Obj) -> Obj | None:
    cond = _condition(pod, "DisruptionTarget")
    return cond if cond and cond.get("status") == "True" else None


def pod_failure(pod: Obj) -> tuple[str, str]:
    """Reason and message of a failed runner pod, from the most specific evidence."""
    name = _pod_name(pod)
    disruption = _disruption(pod)
    if disruption is not None or _status(pod).get("reason") == "Evicted":
        why = disruption or {"reason": "Evicted", "message": _status(pod).get("message", "")}
        detail = ": ".join(s for s in (why.get("reason"), why.get("message")) if s)
        return Reason.DISRUPTED, f"runner pod {name} was disrupted ({detail})"
    runner = _runner_status(pod)
    term = (runner.get("state") or {}).get("terminated") or (runner.get("lastState") or {}).get("terminated")
    if not term:
        message = _status(pod).get("message") or "the pod failed before the runner ran"
        return Reason.RUNNER_ERROR, f"runner pod {name}: {message}"
    code = term.get("exitCode")
    why_term = term.get("reason") or ""
    text = _tail(term.get("message"))
    if why_term == "OOMKilled":
        limit = _memory_limit(pod)
        return Reason.OOM_KILLED, (
            f"the runner ran out of memory (limit {limit or 'unset'}); raise "
            "spec.resources.memory or lower environment.nEnvs / the batch size"
        )
    if code == EXIT_USER_ERROR:
        return Reason.USER_ERROR, text or "the runner rejected the spec"
    if code == EXIT_STORAGE_ERROR:
        return Reason.STORAGE_UNREACHABLE, text or "the runner could not reach its storage"
    if why_term in _CANNOT_RUN_TERMINATED or code in _CANNOT_RUN_CODES:
        return Reason.CONTAINER_CANNOT_RUN, (
            f"the runner container could not start (exit code {code}): {text or why_term}; check spec.image"
        )
    if code == EXIT_INFRA_ERROR:
        return Reason.INFRASTRUCTURE_ERROR, text or "the runner hit an infrastructure error"
    return Reason.RUNNER_ERROR, f"the runner exited with code {code}" + (f": {text}" if text else "")


def _pending(pod: Obj, now: datetime, grace: timedelta) -> Verdict:
    """Why a pod has not started, failing the run if the cause cannot pass by itself."""
    name = _pod_name(pod)
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reason = scheduled.get("reason") or Reason.UNSCHEDULABLE
        message = scheduled.get("message") or "no node fits the runner pod"
        return Verdict(Phase.Pending.value, str(reason), f"runner pod {name}: {message}")
    waiting = (_runner_status(pod).get("state") or {}).get("waiting") or {}
    kind = waiting.get("reason") or ""
    detail = _tail(waiting.get("message")) or kind
    if kind in _PULL_PERMANENT:
        return Verdict(
            Phase.Failed.value,
            Reason.IMAGE_PULL_FAILED,
            f"{kind}: {detail}; fix spec.image or the operator's runner image",
            stop_job=True,
        )
    if kind in _PULL_RETRYING:
        verdict = Verdict(Phase.Pending.value, Reason.IMAGE_PULL_FAILED, f"{kind}: {detail}")
    elif kind == "CreateContainerConfigError":
        missing_secret = "secret" in detail.lower() and "not found" in detail.lower()
        reason = Reason.SECRET_NOT_FOUND if missing_secret else Reason.CONFIG_ERROR
        hint = "; create it or fix spec.checkpoint.storage.secretRef" if missing_secret else ""
        verdict = Verdict(Phase.Pending.value, reason, f"{detail}{hint}")
    elif kind in _CANNOT_RUN:
        verdict = Verdict(
            Phase.Pending.value,
            Reason.CONTAINER_CANNOT_RUN,
            f"{kind}: {detail}; check spec.image",
        )
    else:
        return Verdict(
            Phase.Pending.value,
            Reason.CONTAINER_CREATING,
            f"runner pod {name} on node {(pod.get('spec') or {}).get('nodeName', '?')} is starting",
        )
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    if created is not None and now - created > grace:
        return Verdict(
            Phase.Failed.value,
            verdict.reason,
            f"{verdict.message} (unresolved for {int(grace.total_seconds())}s)",
            stop_job=True,
        )
    return verdict


# --- the Job -------------------------------------------------------------------------------


def _true_conditions(job: Obj) -> dict[str, Obj]:
    return {str(c.get("type")): dict(c) for c in _status(job).get("conditions") or [] if c.get("status") == "True"}


def job_finished(job: Obj) -> bool:
    """The Job reached (or is committed to) Complete or Failed."""
    done = _true_conditions(job)
    return bool(done.keys() & {"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"})


def _failed_pods(pods: Sequence[Obj]) -> list[Obj]:
    return [p for p in pods if _status(p).get("phase") == "Failed" and _disruption(p) is None]


def _finished(run: Obj, job: Obj, pods: Sequence[Obj]) -> Verdict:
    done = _true_conditions(job)
    if "Complete" in done or "SuccessCriteriaMet" in done:
        return Verdict(Phase.Succeeded.value, Reason.COMPLETED, "the runner finished training")
    failed = done.get("Failed") or done.get("FailureTarget") or {}
    job_reason = str(failed.get("reason") or "")
    job_message = str(failed.get("message") or "the runner Job failed")
    policy = (run.get("spec") or {}).get("runPolicy") or {}
    if job_reason == "DeadlineExceeded":
        return Verdict(
            Phase.Failed.value,
            Reason.DEADLINE_EXCEEDED,
            "the run exceeded runPolicy.activeDeadlineSeconds "
            f"({policy.get('activeDeadlineSeconds', '?')}s); raise it or train fewer timesteps",
        )
    failed_pods = _failed_pods(pods)
    last = _newest(failed_pods)
    cause = pod_failure(last) if last is not None else None
    if job_reason == "PodFailurePolicy":
        if cause is not None and cause[0] == Reason.USER_ERROR:
            return Verdict(Phase.Failed.value, *cause)
        return Verdict(Phase.Failed.value, Reason.USER_ERROR, job_message)
    if job_reason == "BackoffLimitExceeded":
        # The Job is FailureTarget before its counter counts the pod that exceeded the limit, and a
        # finished run's status is not written again: count the failed pods too.
        attempts = max(int(_status(job).get("failed") or 0), len(failed_pods)) or "?"
        limit = policy.get("backoffLimit", "?")
        tried = f"failed {attempts} times (runPolicy.backoffLimit {limit})"
        if cause is not None and cause[0] in _SPECIFIC_CAUSES:
            return Verdict(Phase.Failed.value, cause[0], f"{cause[1]} [{tried}]")
        last_words = f"; last: {cause[1]}" if cause is not None else ""
        return Verdict(Phase.Failed.value, Reason.BACKOFF_LIMIT_EXCEEDED, f"the runner {tried}{last_words}")
    return Verdict(Phase.Failed.value, job_reason or "JobFailed", job_message)


def _active(run: Obj, job: Obj, pods: Sequence[Obj], now: datetime, grace: timedelta) -> Verdict:
    """Verdict for a Job that is neither finished nor suspended."""
    live = [p for p in pods if _status(p).get("phase") in ("Pending", "Running")]
    pod = _newest(live)
    if pod is None:
        last = _newest(pods)
        if last is not None and _status(last).get("phase") == "Succeeded":
            return Verdict(Phase.Running.value, Reason.TRAINING, "the runner finished; the Job is completing")
        if last is not None and _status(last).get("phase") == "Failed":
            reason, message = pod_failure(last)
            if reason == Reason.DISRUPTED:
                return Verdict(
                    Phase.Pending.value,
                    Reason.DISRUPTED,
                    f"{message}; a new pod resumes from the newest checkpoint",
                )
            return Verdict(
                Phase.Pending.value,
                Reason.RESTARTING,
                f"retrying after {reason}: {message}",
            )
        return Verdict(Phase.Pending.value, Reason.STARTING, "waiting for the runner pod")
    name = _pod_name(pod)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        why = Reason.DISRUPTED if _disruption(pod) is not None else Reason.RESTARTING
        return Verdict(
            Phase.Pending.value,
            why,
            f"runner pod {name} is terminating; a new pod resumes from the newest checkpoint",
        )
    if _status(pod).get("phase") == "Running":
        node = (pod.get("spec") or {}).get("nodeName", "?")
        return Verdict(Phase.Running.value, Reason.TRAINING, f"runner pod {name} on node {node}")
    return _pending(pod, now, grace)


def _suspend_verdict(run: Obj, detail: str) -> Verdict:
    """Suspended by the user, or stopped early by its Experiment (the annotation says why)."""
    stopped = ((run.get("metadata") or {}).get("annotations") or {}).get(EARLY_STOPPED_ANNOTATION)
    if stopped:
        return Verdict(Phase.Suspended.value, Reason.EARLY_STOPPED, f"stopped early by its Experiment: {stopped}")
    return Verdict(Phase.Suspended.value, Reason.SUSPENDED, detail)


def _suspended(run: Obj, job: Obj) -> Verdict | None:
    if (run.get("spec") or {}).get("suspend"):
        return _suspend_verdict(run, "spec.suspend is true; setting it to false resumes from the newest checkpoint")
    if not (job.get("spec") or {}).get("suspend"):
        return None
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
    if queue:
        return Verdict(Phase.Pending.value, Reason.QUEUED, f"waiting for Kueue to admit the run ({queue})")
    return Verdict(Phase.Pending.value, Reason.RESUMING, "resuming the runner Job")


def verdict_of(run: Obj, job: Obj | None, pods: Sequence[Obj], *, now: datetime, grace: timedelta) -> Verdict:
    """The phase and cause the cluster shows, ignoring what the status said before."""
    if job is None:
        if (run.get("spec") or {}).get("suspend"):
            return _suspend_verdict(run, "spec.suspend is true")
        return Verdict(Phase.Pending.value, Reason.JOB_CREATING, "creating the runner Job")
    if job_finished(job):
        return _finished(run, job, pods)
    suspended = _suspended(run, job)
    if suspended is not None:
        return suspended
    return _active(run, job, pods, now, grace)


# --- times and conditions --------------------------------------------------------------------


def _first_start(pods: Iterable[Obj]) -> datetime | None:
    """When a runner container first ran (StartError containers report the Unix epoch)."""
    starts: list[datetime] = []
    for pod in pods:
        runner = _runner_status(pod)
        for state in (runner.get("state") or {}, runner.get("lastState") or {}):
            for phase in ("running", "terminated"):
                info = state.get(phase) or {}
                if info.get("reason") in _CANNOT_RUN_TERMINATED:
                    continue
                started = parse_time(info.get("startedAt"))
                if started is not None and started.year > 1970:
                    starts.append(started)
    return min(starts) if starts else None


def _completion(job: Obj | None, verdict: Verdict, now: datetime) -> str:
    if job is not None:
        done = _true_conditions(job)
        if verdict.phase == Phase.Succeeded.value and _status(job).get("completionTime"):
            return str(_status(job)["completionTime"])
        for kind in ("Failed", "FailureTarget", "Complete", "SuccessCriteriaMet"):
            moment = done.get(kind, {}).get("lastTransitionTime")
            if moment:
                return str(moment)
    return format_time(now)


def condition(
    kind: str,
    on: bool,
    reason: str,
    message: str,
    previous: Mapping[str, Obj],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """One status condition; ``previous`` (conditions by type) keeps its lastTransitionTime while the status holds."""
    status = "True" if on else "False"
    before = previous.get(kind)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or format_time(now),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def conditions_for(
    verdict: Verdict,
    previous: Sequence[Obj],
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Running always; Suspended and EarlyStopped once they have been true; Succeeded and
    Failed when true.

    lastTransitionTime moves only when a condition's status flips.
    """
    before = {str(c.get("type")): c for c in previous}
    phase, reason, message = verdict.phase, verdict.reason, verdict.message
    out = [condition("Running", phase == Phase.Running.value, reason, message, before, now, generation)]
    if phase == Phase.Suspended.value:
        out.append(condition("Suspended", True, reason, message, before, now, generation))
    elif "Suspended" in before:
        out.append(
            condition(
                "Suspended",
                False,
                Reason.RESUMED,
                "the run is no longer suspended",
                before,
                now,
                generation,
            )
        )
    if reason == Reason.EARLY_STOPPED:
        out.append(condition("EarlyStopped", True, reason, message, before, now, generation))
    elif "EarlyStopped" in before:
        out.append(
            condition("EarlyStopped", False, Reason.RESUMED, "the run is no longer stopped", before, now, generation)
        )
    if phase == Phase.Succeeded.value:
        out.append(condition("Succeeded", True, reason, message, before, now, generation))
    if phase == Phase.Failed.value:
        out.append(condition("Failed", True, reason, message, before, now, generation))
    return out


def transition_event(previous: Obj, verdict: Verdict) -> Event | None:
    """An Event when phase or reason changed; Warning for anything a person should look at."""
    if previous.get("phase") == verdict.phase and previous.get("reason") == verdict.reason:
        return None
    severity: Severity = (
        "Warning" if verdict.phase == Phase.Failed.value or verdict.reason not in _NORMAL_REASONS else "Normal"
    )
    return Event(severity, verdict.reason, f"{verdict.phase}: {verdict.message}")


# --- storage health, from the runner's progress ----------------------------------------------

STORAGE_CONDITION = "StorageAvailable"
#: Longest StorageAvailable message.
MAX_STORAGE_MESSAGE = 1024
#: What must never reach a condition or an Event even if an error message quotes it: the user
#: info of a URL, AWS access key ids, and presigned-URL or header credentials.
_SECRETS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@"), r"\1***@"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),
    (
        re.compile(
            r"(?i)\b(X-Amz-(?:Credential|Signature|Security-Token)|AWSAccessKeyId|Signature|"
            r"aws_secret_access_key|aws_access_key_id|aws_session_token|secret_?key|access_?key|password|token)"
            r"(\s*[=:]\s*)[^\s&,;]+"
        ),
        r"\1\2***",
    ),
)


def scrub(text: str) -> str:
    """``text`` without credential-looking parts (the runner redacts its own credentials too)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def storage_condition(
    previous: Obj, *, now: datetime, generation: int | None
) -> tuple[dict[str, Any] | None, Event | None]:
    """The StorageAvailable condition from the runner's last ``status.progress.storage``, and an
    Event when it flips (Warning StorageUnavailable, then Normal StorageAvailable).

    False (reason StorageUnavailable) while the runner reports its uploads failing: training goes
    on and checkpoints wait on the pod's disk, but a pod lost now would resume from an older
    checkpoint. True once they succeed again. Without a report (an older runner, no pod yet)
    the previous condition stays as it was, or there is none.
    """
    before = {str(c.get("type")): c for c in previous.get("conditions") or []}
    storage = (previous.get("progress") or {}).get("storage")
    if not isinstance(storage, Mapping) or storage.get("state") not in ("ok", "failing"):
        kept = before.get(STORAGE_CONDITION)
        return (dict(kept) if kept is not None else None), None
    failing = storage["state"] == "failing"
    if failing:
        detail = " ".join(str(storage.get("message") or "storage requests fail").split())
        message = scrub(
            f"checkpoint uploads fail since {storage.get('since', '?')}: {detail}; training goes on and the newest "
            "checkpoint waits on the pod's disk (a pod lost now resumes from the last uploaded one)"
        )
        if len(message) > MAX_STORAGE_MESSAGE:
            message = message[: MAX_STORAGE_MESSAGE - 1] + "…"
        reason = Reason.STORAGE_UNAVAILABLE
    else:
        message, reason = "checkpoint uploads reach storage", Reason.STORAGE_AVAILABLE
    cond = condition(STORAGE_CONDITION, not failing, reason, message, before, now, generation)
    was = (before.get(STORAGE_CONDITION) or {}).get("status")
    event = None
    if failing and was != "False":
        event = Event("Warning", Reason.STORAGE_UNAVAILABLE, message)
    elif not failing and was == "False":
        event = Event("Normal", Reason.STORAGE_AVAILABLE, "checkpoint uploads reach storage again")
    return cond, event


TRACKING_CONDITION = "TrackingAvailable"


def tracking_condition(
    previous: Obj, *, now: datetime, generation: int | None
) -> tuple[dict[str, Any] | None, Event | None]:
    """The TrackingAvailable condition from the runner's last ``status.progress.tracking``, and an
    Event when it flips (Warning TrackingUnreachable, then Normal TrackingAvailable).

    False (reason TrackingUnreachable) while the runner's requests to the MLflow tracking server fail:
    training goes on and its metrics wait in the runner's queue. True once they get through. Without a
    report (no spec.tracking.mlflow, no pod yet) the previous condition stays as it was, or there is none.
    """
    before = {str(c.get("type")): c for c in previous.get("conditions") or []}
    tracking = (previous.get("progress") or {}).get("tracking")
    if not isinstance(tracking, Mapping) or tracking.get("state") not in ("ok", "failing"):
        kept = before.get(TRACKING_CONDITION)
        return (dict(kept) if kept is not None else None), None
    failing = tracking["state"] == "failing"
    if failing:
        detail = " ".join(str(tracking.get("message") or "tracking requests fail").split())
        message = scrub(
            f"the MLflow tracking server is not reached since {tracking.get('since', '?')}: {detail}; training "
            "goes on and its metrics wait in the runner"
        )
        if len(message) > MAX_STORAGE_MESSAGE:
            message = message[: MAX_STORAGE_MESSAGE - 1] + "…"
        reason = Reason.TRACKING_UNREACHABLE
    else:
        run_id = tracking.get("runId")
        message = "metrics reach the MLflow tracking server" + (f" (run {run_id})" if run_id else "")
        reason = Reason.TRACKING_AVAILABLE
    cond = condition(TRACKING_CONDITION, not failing, reason, message, before, now, generation)
    was = (before.get(TRACKING_CONDITION) or {}).get("status")
    event = None
    if failing and was != "False":
        event = Event("Warning", Reason.TRACKING_UNREACHABLE, message)
    elif not failing and was == "False":
        event = Event("Normal", Reason.TRACKING_AVAILABLE, "the MLflow tracking server is reached again")
    return cond, event


def _with_storage(update: StatusUpdate, previous: Obj, *, now: datetime, generation: int | None) -> StatusUpdate:
    """``update`` with the StorageAvailable and TrackingAvailable conditions appended to its conditions,
    and their Events."""
    storage, storage_event = storage_condition(previous, now=now, generation=generation)
    tracking, tracking_event = tracking_condition(previous, now=now, generation=generation)
    if storage is None and tracking is None:
        return update
    status = dict(update.status)
    kinds = {STORAGE_CONDITION, TRACKING_CONDITION}
    others = [c for c in status.get("conditions") or [] if c.get("type") not in kinds]
    status["conditions"] = [*others, *(c for c in (storage, tracking) if c is not None)]
    return StatusUpdate(
        status=status,
        stop_job=update.stop_job,
        event=update.event,
        storage_event=storage_event,
        tracking_event=tracking_event,
    )


# --- the result, when the runner's final report was lost --------------------------------------

#: Why a recovered result is in the status (the Succeeded condition's message and the Event).
RECOVERED_NOTE = (
    "status.result recovered from the runner pod's termination message (the result final/manifest.json "
    "records): the runner's final status report did not reach the API server"
)


def final_report_of(pods: Iterable[Obj]) -> FinalReport | None:
    """The :class:`FinalReport` a succeeded runner pod left in its termination message (the
    newest such pod first), or ``None``."""
    succeeded = [p for p in pods if _status(p).get("phase") == "Succeeded"]
    for pod in sorted(succeeded, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        term = (_runner_status(pod).get("state") or {}).get("terminated") or {}
        if term.get("exitCode") == 0:
            report = parse_final_report(term.get("message"))
            if report is not None:
                return report
    return None


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def recover_result(previous: Obj, pods: Sequence[Obj]) -> dict[str, Any]:
    """``result``, ``progress`` (at 100%) and ``checkpoints`` from the runner's termination
    message, for a run whose status has no ``result``; empty when it has one or no pod left a report.

    Progress and checkpoints are merged over what the runner last reported, so what it wrote
    stays and a second reconcile finds nothing to change.
    """
    if previous.get("result"):
        return {}
    report = final_report_of(pods)
    if report is None:
        return {}
    recovered: dict[str, Any] = {"result": _dump(report.result)}
    progress: dict[str, Any] = {**(previous.get("progress") or {}), "fraction": 1.0, "percent": 100}
    if report.result.timesteps is not None:
        progress["timesteps"] = report.result.timesteps
    if report.total_timesteps is not None:
        progress["totalTimesteps"] = report.total_timesteps
    recovered["progress"] = progress
    if report.checkpoints is not None:
        recovered["checkpoints"] = {**(previous.get("checkpoints") or {}), **_dump(report.checkpoints)}
    return recovered


# --- the time left, from the runner's progress -------------------------------------------------


#: An estimate within this many seconds, or this fraction, of the one in the status is not written
#: again: each write is an API request and a watch event, and a few seconds either way tell nothing.
ESTIMATE_TOLERANCE_SECONDS = 5
ESTIMATE_TOLERANCE_FRACTION = 0.1


def estimated_remaining_seconds(phase: str | None, progress: Obj | None, previous: Any = None) -> int | None:
    """``status.estimatedRemainingSeconds``: the timesteps left over the recent throughput, rounded up.

    0 once the run Succeeded; None (the field is removed) while it cannot be known: no throughput
    reported yet, or a phase that is not training (Pending, Suspended, Failed). ``previous`` (the
    status' current value) is kept while the new estimate is within :data:`ESTIMATE_TOLERANCE_SECONDS`
    or :data:`ESTIMATE_TOLERANCE_FRACTION` of it. Pure, so a reconcile of an unchanged progress writes nothing.
    """
    if phase == Phase.Succeeded.value:
        return 0
    if phase != Phase.Running.value or not progress:
        return None
    total, done, rate = progress.get("totalTimesteps"), progress.get("timesteps") or 0, progress.get("stepsPerSecond")
    if not isinstance(total, int) or not isinstance(rate, int | float) or rate <= 0:
        return None
    estimate = max(0, math.ceil((total - int(done)) / float(rate)))
    close = isinstance(previous, int) and abs(estimate - previous) <= max(
        ESTIMATE_TOLERANCE_SECONDS, ESTIMATE_TOLERANCE_FRACTION * previous
    )
    if close and estimate > 0 and isinstance(previous, int) and previous > 0:
        return previous
    return estimate


# --- entry points ----------------------------------------------------------------------------


def is_terminal(run: Obj) -> bool:
    """The run has succeeded or failed; it must never get a new Job."""
    return (run.get("status") or {}).get("phase") in TERMINAL_PHASES


def _terminal_job_still_running(job: Obj | None) -> bool:
    if job is None or job_finished(job):
        return False
    spec = job.get("spec") or {}
    return not spec.get("suspend") or bool(_status(job).get("active"))


def compute_status(
    run: Obj,
    job: Obj | None,
    pods: Sequence[Obj],
    *,
    now: datetime,
    settings: Settings,
) -> StatusUpdate:
    """The operator-owned status of a run from its Job and that Job's pods.

    ``pods`` are the Job's pods (label ``batch.kubernetes.io/job-name``), in any order. For a
    Succeeded run without ``status.result`` it also carries the runner's fields rebuilt by
    :func:`recover_result` (and says so in the Succeeded condition, or in a ResultRecovered Event).
    A run whose status does not say where its artifacts are yet gets ``artifacts`` from its Job
    (:func:`~kubegym_operator.builders.artifacts.artifacts_status`), once.
    """
    update = _compute_status(run, job, pods, now=now, settings=settings)
    if job is not None and recorded_location(run) is None:
        update.status.update(artifacts_status(run, job, _storage(run, settings)))
    return update


def _storage(run: Obj, settings: Settings) -> S3Storage | None:
    """The storage the run writes to, None when its spec names none and the operator has no default."""
    try:
        return storage_of(parse_spec(run), settings)
    except (RenderError, ValueError):
        return None


def _compute_status(
    run: Obj,
    job: Obj | None,
    pods: Sequence[Obj],
    *,
    now: datetime,
    settings: Settings,
) -> StatusUpdate:
    previous: Obj = run.get("status") or {}
    generation = (run.get("metadata") or {}).get("generation")
    if is_terminal(run):
        kept = {
            key: previous[key]
            for key in (
                "phase",
                "reason",
                "message",
                "conditions",
                "startTime",
                "completionTime",
                "jobName",
                "nodeName",
            )
            if key in previous
        }
        kept["observedGeneration"] = generation
        kept["estimatedRemainingSeconds"] = estimated_remaining_seconds(previous.get("phase"), previous.get("progress"))
        stop = previous.get("phase") == Phase.Failed.value and _terminal_job_still_running(job)
        event = None
        if previous.get("phase") == Phase.Succeeded.value:
            recovered = recover_result(previous, pods)
            if recovered:
                kept.update(recovered)
                event = Event("Normal", Reason.RESULT_RECOVERED, RECOVERED_NOTE)
        return _with_storage(
            StatusUpdate(status=kept, stop_job=stop, event=event), previous, now=now, generation=generation
        )

    grace = timedelta(seconds=settings.pending_error_grace_seconds)
    verdict = verdict_of(run, job, pods, now=now, grace=grace)
    idle = None
    if verdict.phase == Phase.Running.value:
        idle = idleness(run, pods, now=now, flag_after=settings.idle_after_seconds)
        if idle is not None and idle.timed_out:
            verdict = Verdict(Phase.Failed.value, IdleReason.IDLE_TIMEOUT, idle.message, stop_job=True)
    recovered = recover_result(previous, pods) if verdict.phase == Phase.Succeeded.value else {}
    if recovered:
        verdict = Verdict(verdict.phase, verdict.reason, f"{verdict.message}; {RECOVERED_NOTE}", verdict.stop_job)
    update = _update(run, verdict, job, pods, now=now)
    update.status.update(recovered)
    update.status["estimatedRemainingSeconds"] = estimated_remaining_seconds(
        verdict.phase, recovered.get("progress") or previous.get("progress"), previous.get("estimatedRemainingSeconds")
    )
    update = _with_storage(update, previous, now=now, generation=generation)
    return _with_idle(update, previous, idle, running=verdict.phase == Phase.Running.value, now=now)


def _with_idle(
    update: StatusUpdate, previous: Obj, idle: Idleness | None, *, running: bool, now: datetime
) -> StatusUpdate:
    """``update`` with the Idle condition (:mod:`kubegym_operator.builders.idle`): True while the run
    trains nothing past the threshold (and when it failed for it), False once it has been True and
    is not any more; and an Event at each flip."""
    before = {str(c.get("type")): c for c in previous.get("conditions") or []}
    was = (before.get(IDLE_CONDITION) or {}).get("status")
    generation = update.status.get("observedGeneration")
    if idle is not None and idle.flagged:
        cond = condition(IDLE_CONDITION, True, IdleReason.NO_PROGRESS, idle.message, before, now, generation)
        event = Event("Warning", IdleReason.NO_PROGRESS, idle.message) if was != "True" else None
    elif was is not None:
        message = "timesteps advance" if running else "the run is not running"
        cond = condition(IDLE_CONDITION, False, IdleReason.PROGRESSING, message, before, now, generation)
        event = Event("Normal", IdleReason.PROGRESSING, f"{message} again") if was == "True" else None
    else:
        return update
    status = dict(update.status)
    others = [c for c in status.get("conditions") or [] if c.get("type") != IDLE_CONDITION]
    status["conditions"] = [*others, cond]
    return replace(update, status=status, idle_event=event)


def failed_status(run: Obj, reason: str, message: str, *, now: datetime) -> StatusUpdate:
    """Status of a run that fails before it has a Job (e.g. a ``RenderError``)."""
    return _update(run, Verdict(Phase.Failed.value, reason, message), None, [], now=now)


def _update(run: Obj, verdict: Verdict, job: Obj | None, pods: Sequence[Obj], *, now: datetime) -> StatusUpdate:
    previous: Obj = run.get("status") or {}
    generation = (run.get("metadata") or {}).get("generation")
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "reason": verdict.reason,
        "message": verdict.message,
        "conditions": conditions_for(verdict, previous.get("conditions") or [], now=now, generation=generation),
        "observedGeneration": generation,
        "jobName": (job or {}).get("metadata", {}).get("name") or training_job_name(run["metadata"]["name"]),
    }
    started = previous.get("startTime")
    if not started:
        first = _first_start(pods)
        started = format_time(first) if first is not None else None
    if started:
        status["startTime"] = started
    if verdict.phase in TERMINAL_PHASES:
        status["completionTime"] = _completion(job, verdict, now)
    newest = _newest(pods)
    node = ((newest or {}).get("spec") or {}).get("nodeName") or previous.get("nodeName")
    if node:
        status["nodeName"] = node
    return StatusUpdate(status=status, stop_job=verdict.stop_job, event=transition_event(previous, verdict))
