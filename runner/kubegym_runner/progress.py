"""Progress reporting onto the run's own resource: ``status.progress/checkpoints/best/result``.

The runner merge-patches the **status subresource** of the resource named by
``config.reportTo``; a merge patch only touches the keys it carries, so the
operator's ``phase`` and ``conditions`` are never written here. Writes are rate
limited (at most one per ``reportIntervalSeconds`` plus a final one) so that a
thousand runs do not flood the API server.

Reports must survive an API server that is away for minutes (a control-plane upgrade, a
restart) without stopping training and without losing the run's last words:

* A periodic report that fails is not queued: the reporter always holds the newest state
  and sends that at the next due time, so an outage costs one write per interval and
  leaves no backlog to replay.
* The final report (progress 100%, checkpoints, ``result``) is what the run is for, so it
  is retried with exponential back-off until it gets through, the API server refuses it
  for good (404 the run is gone, 403, 422: :func:`is_retriable`), a deadline passes, or
  the pod is told to terminate (SIGTERM: the kubelet's grace period is short).
  Should it still be lost, the operator recovers the result from the pod's termination
  message (:class:`kubegym_api.finalreport.FinalReport`).

The pure parts (the patch body, the rate limiter, throughput, the retry loop) take an
injectable clock and sleep and are tested without a cluster; :class:`KubernetesStatusWriter`
does the I/O.
"""

from __future__ import annotations

import http.client
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import urllib3.exceptions

from kubegym_api.cost import ResourceUsage
from kubegym_api.runnerconfig import RunRef
from kubegym_api.storage import MAX_STORAGE_MESSAGE, StorageState, StorageStatus
from kubegym_api.tracking import TrackingStatus
from kubegym_api.trainingrun import (
    BestModelStatus,
    CheckpointStatus,
    ComputeStatus,
    EvaluationPoint,
    EvaluationResult,
    TrainingProgress,
    TrainingResult,
    thin_evaluations,
)
from kubegym_runner.logs import redact

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
StopCheck = Callable[[], bool]

#: Seconds the API server gets per status write: (connect, read).
REQUEST_TIMEOUT = (3.0, 10.0)
#: How long the final report is retried by default (the Job's deadline and the pod's grace
#: period bound it too): long enough for an API server restart or a control-plane upgrade.
FINAL_REPORT_TIMEOUT = 900.0
#: First pause between tries of the final report; it doubles after every failure...
RETRY_INITIAL_DELAY = 0.5
#: ... up to this.
RETRY_MAX_DELAY = 10.0
#: Longest sleep between two looks at the stop check (SIGTERM) while waiting to retry.
STOP_POLL_SECONDS = 0.25
#: HTTP answers to a write that a later try can get past: timeout, conflict, too early, too many requests.
RETRIABLE_STATUSES = frozenset({408, 409, 425, 429})


def is_retriable(error: BaseException) -> bool:
    """Whether a later try of a failed status write can succeed.

    An HTTP answer (the Kubernetes client's ``ApiException`` carries it as ``status``) is
    retriable if it is a 5xx or in :data:`RETRIABLE_STATUSES`; the other 4xx never will be
    (404: the run was deleted, 403: no right to write, 422: the body is invalid). No answer
    at all (connection refused or reset, DNS, timeouts, TLS: ``OSError``, urllib3's and
    http.client's errors, or the client's ``status=0`` wrapping of an ``SSLError``) is an
    outage and retriable. Anything else is a bug that fails the same way every time.
    """
    status = getattr(error, "status", None)
    if isinstance(status, int) and status >= 100:
        return status >= 500 or status in RETRIABLE_STATUSES
    if status == 0 and "SSLError" in str(getattr(error, "reason", "")):
        return True
    return isinstance(error, (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException))


class RateLimiter:
    """Allows one event per ``interval`` seconds of ``clock``; the first is allowed at once."""

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        """Whether an event now would respect the interval."""
        return self._last is None or self.clock() - self._last >= self.interval

    def mark(self) -> None:
        """Record that an event happened now."""
        self._last = self.clock()


class Throughput:
    """Timesteps per second between successive samples (recent, not since the start)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._last: tuple[float, int] | None = None

    def start(self, timesteps: int) -> None:
        """Set the reference point (when training starts or resumes)."""
        self._last = (self.clock(), timesteps)

    def sample(self, timesteps: int) -> float | None:
        """Rate since the previous sample; ``None`` before any time has passed."""
        now = self.clock()
        previous, self._last = self._last, (now, timesteps)
        if previous is None or now <= previous[0]:
            return None
        return max(0.0, (timesteps - previous[1]) / (now - previous[0]))


class Health(Protocol):
    """What :class:`StorageReport` reads of :class:`kubegym_runner.uploads.StorageHealth`."""

    @property
    def ok(self) -> bool: ...
    @property
    def failing_since(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def pending(self) -> int: ...


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StorageReport:
    """The uploader's health as ``status.progress.storage``, with since when its state holds.

    ``since`` moves only when the state flips: to the first failure's time when storage starts
    failing, to now when it recovers. The message is redacted (no credential values) and short.
    """

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = now
        self.state = StorageState.ok
        self.since = now().replace(microsecond=0)

    def status(self, health: Health) -> StorageStatus:
        state = StorageState.ok if health.ok else StorageState.failing
        if state != self.state:
            self.state = state
            since = health.failing_since if state is StorageState.failing and health.failing_since else self.now()
            self.since = since.replace(microsecond=0)
        if state is StorageState.ok:
            message = "uploads succeed" + (f"; {health.pending} queued or in progress" if health.pending else "")
        else:
            message = redact(health.last_error or "storage requests fail")
        return StorageStatus(
            state=state,
            since=self.since,
            message=_shorten(message, MAX_STORAGE_MESSAGE),
            pending_uploads=health.pending,
            failed_requests=health.failures,
        )


def finite(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded, or ``None`` for NaN/Infinity (which JSON and the API server reject)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def make_progress(
    *,
    timesteps: int,
    total_timesteps: int,
    steps_per_second: float | None,
    episode_rewards: Iterable[float],
    episode_lengths: Iterable[float],
    episodes: int,
    last_evaluation: EvaluationResult | None,
    resumed_from_step: int,
    evaluations: Iterable[EvaluationPoint] = (),
    compute: ComputeStatus | None = None,
    storage: StorageStatus | None = None,
    usage: ResourceUsage | None = None,
    tracking: TrackingStatus | None = None,
    now: datetime | None = None,
) -> TrainingProgress:
    """A ``status.progress`` snapshot; the fraction is clamped (rollouts overshoot the total).

    ``evaluations`` is the run's evaluation history, thinned to a status-sized curve.
    """
    rewards, lengths = list(episode_rewards), list(episode_lengths)
    fraction = min(1.0, timesteps / total_timesteps) if total_timesteps > 0 else 0.0
    return TrainingProgress(
        timesteps=timesteps,
        total_timesteps=total_timesteps,
        fraction=round(fraction, 4),
        percent=math.floor(fraction * 100),
        steps_per_second=finite(steps_per_second, 1),
        mean_episode_reward=finite(sum(rewards) / len(rewards)) if rewards else None,
        mean_episode_length=finite(sum(lengths) / len(lengths), 1) if lengths else None,
        episodes=episodes,
        last_evaluation=last_evaluation,
        evaluations=thin_evaluations(list(evaluations)),
        resumed_from_step=resumed_from_step,
        compute=compute,
        storage=storage,
        usage=usage,
        tracking=tracking,
        update_time=(now or datetime.now(UTC)).replace(microsecond=0),
    )


def build_status_patch(
    progress: TrainingProgress | None = None,
    checkpoints: CheckpointStatus | None = None,
    result: TrainingResult | None = None,
    best: BestModelStatus | None = None,
    *,
    clear_best: bool = False,
) -> dict[str, Any]:
    """The JSON merge patch for the status subresource: only the runner's keys. ``clear_best``
    removes ``best`` (``null`` in a merge patch): a restarted run dropped a best of a lost timeline."""
    status: dict[str, Any] = {}
    parts = (("progress", progress), ("checkpoints", checkpoints), ("best", best), ("result", result))
    for key, part in parts:
        if part is not None:
            status[key] = part.model_dump(mode="json", by_alias=True, exclude_none=True)
    if best is None and clear_best:
        status["best"] = None
    return {"status": status}


class StatusWriter(Protocol):
    """Sends a merge patch to the status subresource of the run's resource."""

    def patch(self, body: Mapping[str, Any]) -> None: ...


class KubernetesStatusWriter:
    """Patches ``<plural>/<name>/status`` with the pod's service account (least privilege:
    the operator grants ``patch`` on that one resource's status and nothing else)."""

    def __init__(self, ref: RunRef, api: Any) -> None:
        self.ref = ref
        self.api = api

    @classmethod
    def connect(cls, ref: RunRef) -> KubernetesStatusWriter | None:
        """In-cluster config (the pod's token); a kubeconfig outside a cluster; else ``None``."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as e:
                log.warning("no Kubernetes credentials (%s): progress is not reported", e)
                return None
        return cls(ref, client.CustomObjectsApi())

    def patch(self, body: Mapping[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status(
            self.ref.group,
            self.ref.version,
            self.ref.namespace,
            self.ref.plural,
            self.ref.name,
            dict(body),
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )


class ProgressReporter:
    """Keeps the latest progress, checkpoint and result state and writes it, rate limited.

    ``writer``: where the status goes (``None``: nowhere, only logged).
    ``interval``: seconds between periodic writes (at most one per interval).
    ``clock``: monotonic seconds, for the rate limit and the final report's deadline.
    ``final_timeout``: seconds the final report is retried while it fails retriably.
    ``retry_initial``, ``retry_max``: the final report's back-off, doubling from the first to the second.
    ``sleep``: waits between tries of the final report (tests pass a fake that moves ``clock``).
    """

    def __init__(
        self,
        writer: StatusWriter | None,
        interval: float,
        clock: Clock = time.monotonic,
        *,
        final_timeout: float = FINAL_REPORT_TIMEOUT,
        retry_initial: float = RETRY_INITIAL_DELAY,
        retry_max: float = RETRY_MAX_DELAY,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.limiter = RateLimiter(interval, clock)
        self.final_timeout = final_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.sleep = sleep
        self.progress: TrainingProgress | None = None
        self.checkpoints: CheckpointStatus | None = None
        self.best: BestModelStatus | None = None
        #: ``best`` was dropped (set to None) and the status may still hold an older one.
        self.best_cleared = False
        self.result: TrainingResult | None = None
        #: Successful and failed writes (every try counts).
        self.writes = 0
        self.failures = 0
        #: Writes failed in a row since the last one that got through.
        self.failing = 0
        #: Whether the final report got through.
        self.delivered = False

    @property
    def pending(self) -> bool:
        """Whether the last write failed: the state it carried (or newer) goes out with the next write."""
        return self.failing > 0

    def due(self) -> bool:
        """Whether the next :meth:`report` would write (callers skip building a snapshot if not)."""
        return self.limiter.ready()

    def report(self, progress: TrainingProgress) -> None:
        """Record ``progress`` and write it if the interval has passed."""
        self.progress = progress
        if self.limiter.ready():
            self.flush()

    def set_checkpoints(self, checkpoints: CheckpointStatus) -> None:
        """Record the checkpoint state; it goes out with the next write."""
        self.checkpoints = checkpoints

    def set_best(self, best: BestModelStatus | None) -> None:
        """Record the best model (None: drop the one the status holds); it goes out with the next write."""
        self.best = best
        self.best_cleared = best is None

    def flush(self) -> None:
        """Write the current state now, once; log, never raise, on failure (the next due
        write sends the then newest state)."""
        self.limiter.mark()
        self._log_progress()
        if self.writer is None:
            return
        error = self._write()
        if error is not None:
            log.warning(
                "status write failed (%s: %s); the newest status goes out in %.0fs",
                type(error).__name__,
                _short(error),
                self.limiter.interval,
            )

    def finish(
        self,
        progress: TrainingProgress | None = None,
        result: TrainingResult | None = None,
        should_stop: StopCheck | None = None,
    ) -> bool:
        """The final write, regardless of the rate limit, retried while it fails retriably.

        ``should_stop``: polled between tries; once true (SIGTERM), no further try is made, so
        a terminating pod makes one attempt and leaves within its grace period.
        Returns whether the report got through; never raises.
        """
        if progress is not None:
            self.progress = progress
        if result is not None:
            self.result = result
        self.limiter.mark()
        self._log_progress()
        if self.writer is None:
            return False
        stop = should_stop or (lambda: False)
        deadline = self.clock() + self.final_timeout
        delay = self.retry_initial
        attempt = 0
        while True:
            attempt += 1
            error = self._write()
            if error is None:
                if attempt > 1:
                    log.info("final status report delivered at attempt %d", attempt)
                self.delivered = True
                return True
            what = f"{type(error).__name__}: {_short(error)}"
            if not is_retriable(error):
                log.error("final status report refused, not retrying (%s)", what)
                return False
            if stop():
                log.warning("final status report failed (%s); not retried: the pod is terminating", what)
                return False
            remaining = deadline - self.clock()
            if remaining <= 0:
                log.error(
                    "final status report failed %d times in %.0fs, giving up (%s)%s",
                    attempt,
                    self.final_timeout,
                    what,
                    "; the result stays in the termination message and final/manifest.json" if self.result else "",
                )
                return False
            pause = min(delay, remaining)
            log.warning("final status report failed (attempt %d, %s); retrying in %.1fs", attempt, what, pause)
            if not self._pause(pause, stop):
                log.warning("final status report not retried: the pod is terminating")
                return False
            delay = min(delay * 2, self.retry_max)

    def _write(self) -> Exception | None:
        """One patch of the current state; the error if it failed."""
        assert self.writer is not None
        body = build_status_patch(self.progress, self.checkpoints, self.result, self.best, clear_best=self.best_cleared)
        try:
            self.writer.patch(body)
        except Exception as e:  # noqa: BLE001 - reporting must never stop training
            self.failures += 1
            self.failing += 1
            return e
        if self.failing:
            log.info("status write got through again after %d failed", self.failing)
        self.writes += 1
        self.failing = 0
        return None

    def _pause(self, seconds: float, stop: StopCheck) -> bool:
        """Sleep ``seconds`` in short slices; False as soon as ``stop`` says so."""
        left = seconds
        while left > 0:
            if stop():
                return False
            step = min(STOP_POLL_SECONDS, left)
            self.sleep(step)
            left -= step
        return not stop()

    def _log_progress(self) -> None:
        if self.progress is not None:
            p = self.progress
            log.info(
                "progress: %d/%s timesteps (%d%%), %s steps/s, mean episode reward %s",
                p.timesteps,
                p.total_timesteps,
                p.percent,
                p.steps_per_second,
                p.mean_episode_reward,
            )


def _short(error: Exception) -> str:
    """One short line for an exception: ``(status) reason`` of an ``ApiException`` (its body is
    long), else the first line of its text."""
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if isinstance(status, int) and status > 0 and isinstance(reason, str) and reason:
        return f"({status}) {reason.splitlines()[0]}"[:300]
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
