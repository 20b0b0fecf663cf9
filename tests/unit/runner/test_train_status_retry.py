"""Status reports while the API server is away: which failures are retried, the final report's
back-off, deadline and SIGTERM, and periodic reports that coalesce instead of queueing.

A fake clock and sleep make minutes of retrying run in microseconds; a scripted writer fails
the way the Kubernetes client does (``ApiException`` with a status, urllib3 and OS errors).
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kubegym_api.trainingrun import CheckpointStatus, TrainingProgress, TrainingResult
from kubegym_runner.progress import ProgressReporter, is_retriable, make_progress


class FakeTime:
    """A monotonic clock and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


Outcome = BaseException | None


class ScriptedWriter:
    """Fails with the scripted errors in turn (``None``: that try succeeds); after the script,
    every try gets ``then``."""

    def __init__(self, time: FakeTime, script: Sequence[Outcome] = (), then: Outcome = None) -> None:
        self.time = time
        self.script = list(script)
        self.then = then
        self.tries: list[float] = []
        self.delivered: list[Mapping[str, Any]] = []

    def patch(self, body: Mapping[str, Any]) -> None:
        self.tries.append(self.time.now)
        outcome = self.script.pop(0) if self.script else self.then
        if outcome is not None:
            raise outcome
        self.delivered.append(body)


def api(status: int, reason: str = "") -> ApiException:
    return ApiException(status=status, reason=reason or f"HTTP {status}")


def refused() -> BaseException:
    return urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/apis/kubegym.io/v1alpha1/namespaces/ns/trainingruns/run/status",
        reason=urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
    )


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


RESULT = TrainingResult(timesteps=1000, mean_reward=500.0, std_reward=0.0, episodes=10, model_uri="s3://b/r/final")


def _reporter(time: FakeTime, writer: ScriptedWriter, final_timeout: float = 900.0) -> ProgressReporter:
    return ProgressReporter(writer, 10.0, time.clock, final_timeout=final_timeout, sleep=time.sleep)


# --- which failures are worth another try ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (api(404, "Not Found"), False),  # the run was deleted
        (api(403, "Forbidden"), False),
        (api(422, "Unprocessable Entity"), False),
        (api(401, "Unauthorized"), False),
        (api(400, "Bad Request"), False),
        (api(408), True),
        (api(409, "Conflict"), True),
        (api(429, "Too Many Requests"), True),
        (api(500), True),
        (api(503, "Service Unavailable"), True),
        (api(504), True),
        (refused(), True),
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out."), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("Connection aborted."), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (http.client.RemoteDisconnected("Remote end closed connection"), True),
        (http.client.IncompleteRead(b""), True),
        (ApiException(status=0, reason="SSLError\nEOF occurred in violation of protocol"), True),
        (ApiException(status=0, reason="Cannot prepare a request message"), False),
        (ValueError("a bug in the report"), False),
        (RuntimeError("(403) Forbidden"), False),  # no status: not an HTTP answer, not an outage
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_which_failures_are_retried(error: BaseException, retriable: bool) -> None:
    assert is_retriable(error) is retriable


# --- the final report ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "delivered", "tries"),
    [
        pytest.param([None], True, [0.0], id="first-try"),
        pytest.param([refused(), refused(), refused(), None], True, [0.0, 0.5, 1.5, 3.5], id="outage-then-back"),
        pytest.param([api(503), api(429), api(500), None], True, [0.0, 0.5, 1.5, 3.5], id="5xx-and-429-retried"),
        pytest.param([TimeoutError(), None], True, [0.0, 0.5], id="timeout-retried"),
        pytest.param([api(404)], False, [0.0], id="404-run-deleted-stops-at-once"),
        pytest.param([api(403)], False, [0.0], id="403-stops-at-once"),
        pytest.param([api(422)], False, [0.0], id="422-stops-at-once"),
        pytest.param([refused(), refused(), api(404)], False, [0.0, 0.5, 1.5], id="outage-then-404"),
        pytest.param([ValueError("bug")], False, [0.0], id="bug-not-retried"),
    ],
)
def test_final_report_retries_until_an_answer(script: list[Outcome], delivered: bool, tries: list[float]) -> None:
    time = FakeTime()
    writer = ScriptedWriter(time, script, then=AssertionError("no try after the answer"))
    reporter = _reporter(time, writer)
    assert reporter.finish(_progress(1000), RESULT) is delivered
    assert writer.tries == pytest.approx(tries)
    assert reporter.delivered is delivered
    assert (reporter.writes, reporter.failures) == (int(delivered), len(tries) - int(delivered))
    if delivered:
        [body] = writer.delivered
        assert body["status"]["result"]["meanReward"] == 500.0
        assert body["status"]["progress"]["percent"] == 100


def test_final_report_backs_off_to_the_cap_and_gives_up_at_the_deadline() -> None:
    time = FakeTime()
    writer = ScriptedWriter(time, then=refused())
    reporter = _reporter(time, writer, final_timeout=60.0)
    assert reporter.finish(_progress(1000), RESULT) is False
    pauses = [b - a for a, b in zip(writer.tries, writer.tries[1:], strict=False)]
    # 0.5 doubling to the 10 s cap; the last pause is cut to the deadline.
    assert pauses == pytest.approx([0.5, 1, 2, 4, 8, 10, 10, 10, 10, 4.5])
    assert writer.tries[-1] == pytest.approx(60.0)
    assert max(time.slept) <= 0.25  # slept in slices, so SIGTERM is seen quickly


def test_a_long_outage_is_outlasted() -> None:
    """The API server away for 4 minutes: the report gets through within one back-off of its return."""
    time = FakeTime()
    back_at = 240.0

    class Outage(ScriptedWriter):
        def patch(self, body: Mapping[str, Any]) -> None:
            self.then = refused() if self.time.now < back_at else None
            super().patch(body)

    writer = Outage(time)
    reporter = _reporter(time, writer)
    assert reporter.finish(_progress(1000), RESULT) is True
    assert back_at <= writer.tries[-1] <= back_at + 10
    assert len(writer.tries) < 40  # capped back-off: no hammering of a recovering API server


@pytest.mark.parametrize(
    ("stop_at", "tries", "returned_by"),
    [
        pytest.param(0.0, [0.0], 0.0, id="already-terminating-one-try"),
        pytest.param(1.0, [0.0, 0.5], 1.25, id="sigterm-during-a-pause"),
        pytest.param(3.5, [0.0, 0.5, 1.5], 3.5, id="sigterm-at-the-end-of-a-pause"),
    ],
)
def test_sigterm_ends_the_final_retries(stop_at: float, tries: list[float], returned_by: float) -> None:
    time = FakeTime()
    writer = ScriptedWriter(time, then=refused())
    reporter = _reporter(time, writer)
    assert reporter.finish(_progress(1000), RESULT, should_stop=lambda: time.now >= stop_at) is False
    assert writer.tries == pytest.approx(tries)
    assert time.now <= returned_by


def test_sigterm_during_a_try_ends_the_retries() -> None:
    time = FakeTime()
    stop = False

    class TermDuringSecondTry(ScriptedWriter):
        def patch(self, body: Mapping[str, Any]) -> None:
            nonlocal stop
            stop = len(self.tries) == 1
            super().patch(body)

    writer = TermDuringSecondTry(time, then=refused())
    assert _reporter(time, writer).finish(result=RESULT, should_stop=lambda: stop) is False
    assert writer.tries == [0.0, 0.5]


def test_retries_log_one_line_each_without_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    long_body = api(503, "Service Unavailable")
    long_body.body = "x" * 10_000
    writer = ScriptedWriter(time, [refused(), long_body, None])
    with caplog.at_level(logging.INFO, logger="kubegym_runner.progress"):
        assert _reporter(time, writer).finish(result=RESULT)
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.exc_info is None and "\n" not in r.getMessage() and len(r.getMessage()) < 500 for r in retries)
    assert "attempt 1, MaxRetryError" in retries[0].getMessage()
    assert any("delivered at attempt 3" in r.getMessage() for r in caplog.records)


def test_refusals_and_giving_up_are_logged_as_errors(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    with caplog.at_level(logging.WARNING, logger="kubegym_runner.progress"):
        _reporter(time, ScriptedWriter(time, [api(404, "Not Found")])).finish(result=RESULT)
        _reporter(time, ScriptedWriter(time, then=refused()), final_timeout=1.0).finish(result=RESULT)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "refused, not retrying" in errors[0] and "Not Found" in errors[0]
    assert "giving up" in errors[1] and "termination message" in errors[1]


def test_no_writer_no_retry() -> None:
    time = FakeTime()
    reporter = ProgressReporter(None, 10.0, time.clock, sleep=time.sleep)
    assert reporter.finish(_progress(1000), RESULT) is False
    assert time.slept == []


# --- periodic reports ----------------------------------------------------------------------------


def test_periodic_reports_coalesce_during_an_outage() -> None:
    """API down from t=5 to t=35: one try per interval, no sleeping, and the first write after
    the outage carries the newest progress and the checkpoint made during it; no backlog."""
    time = FakeTime()

    class Outage(ScriptedWriter):
        def patch(self, body: Mapping[str, Any]) -> None:
            self.then = refused() if 5 <= self.time.now < 35 else None
            super().patch(body)

    writer = Outage(time)
    reporter = _reporter(time, writer)
    for second in range(61):
        time.now = float(second)
        if second == 12:
            reporter.set_checkpoints(CheckpointStatus(latest_uri="s3://b/r/checkpoints/12", latest_step=12, count=1))
        if reporter.due():
            reporter.report(_progress(second * 10))
        if second == 25:
            assert reporter.pending
    assert writer.tries == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]  # the rate limit holds throughout
    assert time.slept == []  # training is never held up by retries
    assert [b["status"]["progress"]["timesteps"] for b in writer.delivered] == [0, 400, 500, 600]
    assert writer.delivered[1]["status"]["checkpoints"]["latestStep"] == 12
    assert not reporter.pending
    assert (reporter.writes, reporter.failures) == (4, 3)


def test_a_failed_periodic_report_is_sent_by_the_final_one() -> None:
    time = FakeTime()
    writer = ScriptedWriter(time, [refused(), None])
    reporter = _reporter(time, writer)
    reporter.report(_progress(990))
    assert reporter.pending
    time.now = 1.0  # within the interval: the final report ignores the limit
    assert reporter.finish(_progress(1000), RESULT)
    [body] = writer.delivered
    assert body["status"]["progress"]["timesteps"] == 1000 and body["status"]["result"]["timesteps"] == 1000
