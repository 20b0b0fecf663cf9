"""Progress reporting: the patch body, the rate limit and failure handling, with a fake clock."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubegym_api.runnerconfig import RunRef
from kubegym_api.trainingrun import CheckpointStatus, EvaluationResult, TrainingProgress, TrainingResult
from kubegym_runner.callbacks import next_multiple
from kubegym_runner.progress import (
    KubernetesStatusWriter,
    ProgressReporter,
    RateLimiter,
    StorageReport,
    Throughput,
    build_status_patch,
    finite,
    make_progress,
)
from kubegym_runner.uploads import StorageHealth


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingWriter:
    def __init__(self, fail: bool = False) -> None:
        self.bodies: list[Mapping[str, Any]] = []
        self.fail = fail

    def patch(self, body: Mapping[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("(403) Forbidden\nlong body")
        self.bodies.append(body)


def _progress(timesteps: int) -> TrainingProgress:
    return make_progress(
        timesteps=timesteps,
        total_timesteps=1000,
        steps_per_second=None,
        episode_rewards=[],
        episode_lengths=[],
        episodes=0,
        last_evaluation=None,
        resumed_from_step=0,
    )


def test_rate_limiter_allows_one_event_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock)
    assert limiter.ready()
    limiter.mark()
    clock.now += 9.9
    assert not limiter.ready()
    clock.now += 0.1
    assert limiter.ready()


def test_throughput_is_recent() -> None:
    clock = FakeClock()
    meter = Throughput(clock)
    assert meter.sample(0) is None  # no reference yet
    meter.start(100)
    clock.now += 2
    assert meter.sample(300) == pytest.approx(100.0)
    clock.now += 1
    assert meter.sample(1300) == pytest.approx(1000.0)
    assert meter.sample(1300) is None  # no time passed


def test_progress_snapshot() -> None:
    evaluation = EvaluationResult(timesteps=500, mean_reward=42.0, std_reward=1.5, episodes=5)
    progress = make_progress(
        timesteps=1536,
        total_timesteps=1000,
        steps_per_second=1234.5678,
        episode_rewards=[1.0, 2.0, 4.5],
        episode_lengths=[10, 20],
        episodes=7,
        last_evaluation=evaluation,
        resumed_from_step=512,
        now=datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
    )
    # Rollouts overshoot the total; the fraction does not.
    assert (progress.fraction, progress.percent) == (1.0, 100)
    assert progress.steps_per_second == 1234.6
    assert progress.mean_episode_reward == 2.5
    assert progress.mean_episode_length == 15.0
    assert progress.update_time == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _progress(333).percent == 33
    assert _progress(0).mean_episode_reward is None


def test_non_finite_values_are_dropped() -> None:
    assert finite(math.nan) is None and finite(math.inf) is None and finite(1.23456) == 1.235


def test_patch_touches_only_the_runners_status_keys() -> None:
    evaluation = EvaluationResult(timesteps=500, mean_reward=42.0, std_reward=1.5, episodes=5)
    body = build_status_patch(
        make_progress(
            timesteps=500,
            total_timesteps=1000,
            steps_per_second=None,
            episode_rewards=[1.0],
            episode_lengths=[3.0],
            episodes=2,
            last_evaluation=evaluation,
            resumed_from_step=0,
        ),
        CheckpointStatus(latest_uri="s3://b/run/checkpoints/000000000500", latest_step=500, count=2),
        TrainingResult(timesteps=1000, mean_reward=9.5, std_reward=0.5, episodes=10, model_uri="s3://b/run/final"),
    )
    assert set(body) == {"status"}
    status = body["status"]
    assert set(status) == {"progress", "checkpoints", "result"}  # never phase or conditions
    assert status["progress"]["totalTimesteps"] == 1000
    assert status["progress"]["lastEvaluation"] == {
        "timesteps": 500,
        "meanReward": 42.0,
        "stdReward": 1.5,
        "episodes": 5,
    }
    assert "stepsPerSecond" not in status["progress"]  # None is left out, not nulled
    assert status["checkpoints"] == {"latestUri": "s3://b/run/checkpoints/000000000500", "latestStep": 500, "count": 2}
    assert status["result"]["modelUri"] == "s3://b/run/final"
    assert build_status_patch() == {"status": {}}


def test_reporter_writes_at_most_once_per_interval_plus_the_final_write() -> None:
    clock, writer = FakeClock(), RecordingWriter()
    reporter = ProgressReporter(writer, 10.0, clock)
    for step in range(100):  # 100 steps in 5 s
        clock.now += 0.05
        if reporter.due():
            reporter.report(_progress(step))
    assert len(writer.bodies) == 1
    reporter.set_checkpoints(CheckpointStatus(latest_uri="s3://b/c", latest_step=50, count=1))
    clock.now += 10
    assert reporter.due()
    reporter.report(_progress(150))
    assert len(writer.bodies) == 2
    assert writer.bodies[1]["status"]["checkpoints"]["latestStep"] == 50
    reporter.finish(_progress(1000), TrainingResult(timesteps=1000, mean_reward=1.0))
    assert len(writer.bodies) == 3  # the final write ignores the limit
    assert writer.bodies[2]["status"]["result"]["meanReward"] == 1.0


def test_reporting_failures_do_not_raise() -> None:
    reporter = ProgressReporter(RecordingWriter(fail=True), 1.0, FakeClock())
    reporter.report(_progress(1))
    reporter.finish(result=TrainingResult(timesteps=1))
    assert (reporter.failures, reporter.writes) == (2, 0)
    ProgressReporter(None, 1.0).finish(_progress(3))  # no writer (no cluster): only logs


def test_kubernetes_writer_merge_patches_the_status_subresource() -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Api:
        def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
            calls.append((args, kwargs))

    writer = KubernetesStatusWriter(RunRef(plural="trainingruns", namespace="ns", name="run"), Api())
    writer.patch({"status": {"progress": {"timesteps": 1}}})
    [(args, kwargs)] = calls
    assert args == ("kubegym.io", "v1alpha1", "ns", "trainingruns", "run", {"status": {"progress": {"timesteps": 1}}})
    assert kwargs["_content_type"] == "application/merge-patch+json"
    assert kwargs["_request_timeout"]


@pytest.mark.parametrize(
    ("step", "every", "expected"), [(0, 100, 100), (99, 100, 100), (100, 100, 200), (1536, 1024, 2048)]
)
def test_periodic_thresholds_are_multiples(step: int, every: int, expected: int) -> None:
    assert next_multiple(step, every) == expected


# --- storage health in status.progress.storage -----------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_storage_report_keeps_since_while_the_state_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    moments = iter(T0 + timedelta(seconds=s) for s in range(0, 1000, 10))
    report = StorageReport(now=lambda: next(moments))
    broke = T0 + timedelta(seconds=15)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    steps = [
        (StorageHealth(ok=True), "ok", T0, "uploads succeed"),
        (StorageHealth(ok=True, pending=1), "ok", T0, "uploads succeed; 1 queued or in progress"),
        (
            StorageHealth(ok=False, failing_since=broke, last_error="timeout s3cr3t-value", failures=2, pending=1),
            "failing",
            broke,
            "timeout ***",  # credential values are redacted
        ),
        (
            StorageHealth(ok=False, failing_since=broke + timedelta(seconds=9), last_error="503"),
            "failing",
            broke,
            "503",
        ),
        (StorageHealth(ok=True), "ok", T0 + timedelta(seconds=10), "uploads succeed"),  # recovered: since moves
    ]
    for health, state, since, message in steps:
        status = report.status(health)
        assert (status.state, status.since, status.message) == (state, since, message)
        assert (status.pending_uploads, status.failed_requests) == (health.pending, health.failures)


def test_storage_status_is_complete_in_every_patch() -> None:
    """A merge patch only replaces the keys it carries: every field is sent, so no stale error stays."""
    report = StorageReport(now=lambda: T0)
    status = report.status(StorageHealth(ok=True))
    patch = build_status_patch(
        make_progress(
            timesteps=1,
            total_timesteps=2,
            steps_per_second=None,
            episode_rewards=[],
            episode_lengths=[],
            episodes=0,
            last_evaluation=None,
            resumed_from_step=0,
            storage=status,
        )
    )
    assert patch["status"]["progress"]["storage"] == {
        "state": "ok",
        "since": "2026-03-01T12:00:00Z",
        "message": "uploads succeed",
        "pendingUploads": 0,
        "failedRequests": 0,
    }
    long = report.status(StorageHealth(ok=False, failing_since=T0, last_error="x" * 5000))
    assert len(long.message) <= 1024
