"""The runner's log kept in the run's folder (``kubegym_runner.runlog``): attempts named in start
order, copies through the background uploader and a last one at exit ending with the exit line,
credentials redacted as on stderr, a long log cut to its newest part."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubegym_runner.errors import StorageError, TerminatedError, UserError
from kubegym_runner.runlog import (
    LOG_UPLOAD_INTERVAL_SECONDS,
    RunLog,
    attempt_name,
    exit_line,
    log_uri,
    stored_copy,
)
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage
from kubegym_runner.uploads import RetryPolicy, Uploader, interval_from_env

ROOT = S3Uri("bkt", "runs/ns/cartpole/uid-1")


class MemoryStorage(Storage):
    """Storage over a dict; ``fail`` makes every write raise a StorageError."""

    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[str, bytes] = {}
        self.types: dict[str, str] = {}
        self.puts = 0
        self.fail = False

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        if self.fail:
            raise StorageError(f"write of {uri} failed: connection refused")
        self.objects[uri.key] = data
        self.types[uri.key] = content_type
        self.puts += 1

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self.objects.get(uri.key)

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return [ObjectInfo(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix.key)]


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_attempts_are_named_in_start_order_under_the_runs_logs_folder() -> None:
    first = attempt_name("cartpole-train-abcde", datetime(2026, 12, 2, 9, 5, 7, tzinfo=UTC))
    second = attempt_name("cartpole-train-fghij", datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC))
    assert first == "20261202T090507Z-cartpole-train-abcde"
    assert sorted([second, first]) == [first, second]
    assert attempt_name(None, datetime(2026, 1, 1, tzinfo=UTC)) == "20260101T000000Z-local"
    assert str(log_uri(ROOT, first)) == f"s3://bkt/runs/ns/cartpole/uid-1/logs/{first}.log"


def test_the_interval_is_30_seconds_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEGYM_LOG_UPLOAD_INTERVAL_SECONDS", raising=False)
    assert RunLog.for_run(None, ROOT, Path("/tmp"))._copies.interval == LOG_UPLOAD_INTERVAL_SECONDS == 30.0  # type: ignore[arg-type]
    for value, expected in (("2.5", 2.5), ("0", 30.0), ("-1", 30.0), ("soon", 30.0)):
        monkeypatch.setenv("KUBEGYM_LOG_UPLOAD_INTERVAL_SECONDS", value)
        assert interval_from_env("KUBEGYM_LOG_UPLOAD_INTERVAL_SECONDS", 30.0) == expected


def test_a_long_log_keeps_its_newest_lines_after_a_note() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(1000))
    assert stored_copy(data, limit=len(data)) == data
    cut = stored_copy(data, limit=100)
    first, *rest = cut.decode().splitlines()
    assert first.startswith("[kubegym: the first ") and first.endswith(" bytes of this log were dropped]")
    assert rest[-1] == "line 999" and all(line.startswith("line ") for line in rest)
    assert len(cut) - len(first) - 1 <= 100


def test_the_exit_line_is_what_the_cli_prints() -> None:
    assert exit_line(None) is None
    assert exit_line(TerminatedError("terminated at timestep 5", 143)) == (
        "kubegym-runner: stopped: terminated at timestep 5"
    )
    assert exit_line(UserError("bad\n  env")) == "kubegym-runner: error: bad env"
    assert exit_line(ValueError("boom")) == "kubegym-runner: error: unexpected error: ValueError: boom"
    assert exit_line(KeyboardInterrupt()) is None


@pytest.fixture
def root_logger() -> logging.Logger:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    return root


def test_periodic_copies_then_a_last_one_at_exit_with_credentials_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_logger: logging.Logger
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key-value")
    store = MemoryStorage()
    uploader = Uploader(store)
    uri = log_uri(ROOT, "20261202T090507Z-pod")
    run_log = RunLog(uploader, uri, tmp_path / "runner.log", interval=0.05)
    run_log.start()
    logging.getLogger("kubegym_runner.train").info("training 64 timesteps (from 0 to 64)")
    logging.getLogger("botocore").warning("endpoint said s3cr3t-key-value")
    # The background copies come without anyone asking, through the uploader.
    eventually(lambda: b"training 64 timesteps" in store.objects.get(uri.key, b""))
    eventually(lambda: store.puts >= 2)
    assert store.types[uri.key].startswith("text/plain")
    logging.getLogger("kubegym_runner.train").info("final evaluation: 500.000 +/- 0.000 over 10 episodes")
    assert run_log.close("kubegym-runner: stopped: terminated at timestep 64")
    lines = store.objects[uri.key].decode().splitlines()
    assert lines[-2].endswith("INFO kubegym_runner.train: final evaluation: 500.000 +/- 0.000 over 10 episodes")
    assert lines[-1] == "kubegym-runner: stopped: terminated at timestep 64"
    assert "s3cr3t-key-value" not in store.objects[uri.key].decode()
    assert "endpoint said ***" in store.objects[uri.key].decode()
    # Closed: the file no longer receives records, no more copies, and a second close does nothing.
    puts = store.puts
    logging.getLogger("kubegym_runner").info("after the end")
    assert "after the end" not in (tmp_path / "runner.log").read_text()
    assert not run_log.close()
    time.sleep(0.2)
    assert store.puts == puts
    uploader.close(5)


def test_storage_down_at_exit_costs_at_most_the_timeout_and_never_raises(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    store = MemoryStorage()
    store.fail = True
    uploader = Uploader(store, retry=RetryPolicy(initial_seconds=0.01, maximum_seconds=0.05, jitter=0.0))
    run_log = RunLog(uploader, log_uri(ROOT, "a"), tmp_path / "runner.log", interval=3600)
    run_log.start()
    logging.getLogger("kubegym_runner").info("something")
    started = time.monotonic()
    assert not run_log.close(timeout=0.5)
    assert time.monotonic() - started < 5
    assert store.objects == {}
    uploader.close(1)


def test_records_captured_before_storage_answered_reach_the_first_copy_and_without_it_nothing_is_uploaded(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    store = MemoryStorage()
    uploader = Uploader(store)
    early = RunLog(uploader, log_uri(ROOT, "early"), tmp_path / "early.log", interval=3600)
    early.capture()
    logging.getLogger("kubegym_runner.plan").info("plan: PPO on CartPole-v1")
    early.start()  # the bucket answered
    assert early.close()
    assert "plan: PPO on CartPole-v1" in store.objects[log_uri(ROOT, "early").key].decode()

    never = RunLog(uploader, log_uri(ROOT, "never"), tmp_path / "never.log", interval=3600)
    never.capture()
    logging.getLogger("kubegym_runner").info("a user error before storage is touched")
    assert not never.close("kubegym-runner: error: unknown env")
    assert log_uri(ROOT, "never").key not in store.objects
    uploader.close(5)
