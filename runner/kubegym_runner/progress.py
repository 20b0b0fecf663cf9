"""Progress reporting onto the run's own resource: ``status.progress/checkpoints/result``.

The runner merge-patches the **status subresource** of the resource named by
``config.reportTo``; a merge patch only touches the keys it carries, so the
operator's ``phase`` and ``conditions`` are never written here. Writes are rate
limited (at most one per ``reportIntervalSeconds`` plus a final one) so that a
thousand runs do not flood the API server. Reporting is best effort: failures are
logged and training goes on.

The pure parts (the patch body, the rate limiter, throughput) take an injectable
clock and are tested without a cluster; :class:`KubernetesStatusWriter` does the I/O.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubegym_runner.config import (
    CheckpointStatus,
    EvaluationPoint,
    EvaluationResult,
    RunRef,
    TrainingProgress,
    TrainingResult,
    thin_evaluations,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: Seconds the API server gets per status write: (connect, read).
REQUEST_TIMEOUT = (3.0, 10.0)


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
        update_time=(now or datetime.now(UTC)).replace(microsecond=0),
    )


def build_status_patch(
    progress: TrainingProgress | None = None,
    checkpoints: CheckpointStatus | None = None,
    result: TrainingResult | None = None,
) -> dict[str, Any]:
    """The JSON merge patch for the status subresource: only the runner's three keys."""
    status: dict[str, Any] = {}
    for key, part in (("progress", progress), ("checkpoints", checkpoints), ("result", result)):
        if part is not None:
            status[key] = part.model_dump(mode="json", by_alias=True, exclude_none=True)
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
    """Keeps the latest progress, checkpoint and result state and writes it, rate limited."""

    def __init__(self, writer: StatusWriter | None, interval: float, clock: Clock = time.monotonic) -> None:
        self.writer = writer
        self.limiter = RateLimiter(interval, clock)
        self.progress: TrainingProgress | None = None
        self.checkpoints: CheckpointStatus | None = None
        self.result: TrainingResult | None = None
        self.writes = 0
        self.failures = 0

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

    def finish(self, progress: TrainingProgress | None = None, result: TrainingResult | None = None) -> None:
        """The final write, regardless of the rate limit."""
        if progress is not None:
            self.progress = progress
        if result is not None:
            self.result = result
        self.flush()

    def flush(self) -> None:
        """Write the current state now; log, never raise, on failure."""
        self.limiter.mark()
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
        if self.writer is None:
            return
        body = build_status_patch(self.progress, self.checkpoints, self.result)
        try:
            self.writer.patch(body)
        except Exception as e:  # noqa: BLE001 - reporting must never stop training
            self.failures += 1
            log.warning("status write failed (%s): %s", type(e).__name__, _short(e))
        else:
            self.writes += 1


def _short(error: Exception) -> str:
    """First line of an exception (ApiException bodies are long)."""
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
