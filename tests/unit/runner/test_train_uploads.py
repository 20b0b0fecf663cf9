"""Uploads beside the training loop (``kubegym_runner.uploads``), on a fake store that can be
slow, failing or frozen: training never waits, at most one upload is queued per kind, a
manifest is never written for an upload that did not finish, failures are retried, and the
last words (final model, SIGTERM checkpoint) wait for S3."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kubegym_api.environment import EnvironmentConfig
from kubegym_api.runnerconfig import TrainConfig
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import CheckpointPolicy, EvaluationConfig
from kubegym_runner.checkpoints import MANIFEST_NAME, RunLayout, scan, write_folder
from kubegym_runner.errors import StorageError, TerminatedError, UserError
from kubegym_runner.progress import ProgressReporter
from kubegym_runner.signals import TerminationRequest
from kubegym_runner.storage import CONNECT_TIMEOUT, READ_TIMEOUT, ObjectInfo, S3Uri, Storage
from kubegym_runner.train import Trainer
from kubegym_runner.uploads import RetryPolicy, StorageHealth, Uploader

FAST = RetryPolicy(initial_seconds=0.01, maximum_seconds=0.05, jitter=0.0)
LAYOUT = RunLayout.of("bkt", "run")


class FakeStore(Storage):
    """An in-memory store whose requests can be frozen (block until thawed) or fail.

    ``freeze`` holds ``upload_file`` only (listings and reads answer), like a store whose
    data path hangs; ``fail`` decides per key whether a request raises ``StorageError``.
    """

    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.requests = 0
        self.failures = 0
        self.thawed = threading.Event()
        self.thawed.set()
        self.blocked = threading.Event()  # an upload is waiting for the thaw
        self.fail: Callable[[str], bool] = lambda key: False
        self.error: type[Exception] = StorageError
        self.lock = threading.Lock()

    def freeze(self) -> None:
        self.thawed.clear()
        self.blocked.clear()

    def thaw(self) -> None:
        self.thawed.set()

    def _request(self, key: str) -> None:
        with self.lock:
            self.requests += 1
            failing = self.fail(key)
            if failing:
                self.failures += 1
        if failing:
            raise self.error(f"S3 request for {key} failed: 503 SlowDown")

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        data = path.read_bytes()
        if not self.thawed.is_set():
            self.blocked.set()
            self.thawed.wait()
        self._request(uri.key)
        if progress is not None:
            progress(len(data))
        self._store(uri.key, data)

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self._request(uri.key)
        self._store(uri.key, data)

    def _store(self, key: str, data: bytes) -> None:
        with self.lock:
            self.objects[key] = data
            self.writes.append(key)

    def download_file(self, uri: S3Uri, path: Path) -> None:
        path.write_bytes(self.objects[uri.key])

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        self._request(uri.key)
        return self.objects.get(uri.key)

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        self._request(prefix.key)
        with self.lock:
            return [ObjectInfo(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix.key)]

    def delete(self, uris: list[S3Uri]) -> None:
        with self.lock:
            for uri in uris:
                self.objects.pop(uri.key, None)

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        pass

    def manifests(self) -> list[str]:
        return sorted(k for k in self.objects if k.endswith(MANIFEST_NAME))


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _checkpoint(tmp_path: Path, step: int) -> tuple[Path, Callable[[Storage], object]]:
    """A local checkpoint folder and the action that uploads it the way the trainer does."""
    directory = tmp_path / f"local-{step}"
    directory.mkdir()
    (directory / "model.zip").write_bytes(f"weights {step}".encode())
    (directory / "vecnormalize.pkl").write_bytes(b"stats")
    files = {"model.zip": directory / "model.zip", "vecnormalize.pkl": directory / "vecnormalize.pkl"}

    def action(storage: Storage) -> object:
        return write_folder(
            storage, LAYOUT.checkpoint(step), files, step=step, wall_time_seconds=1.0, algorithm="PPO", env_id="E"
        )

    return directory, action


def _put(uri: S3Uri, data: bytes) -> Callable[[Storage], object]:
    return lambda storage: storage.put_bytes(uri, data)


def _manifest(step: int) -> str:
    return LAYOUT.checkpoint(step).join(MANIFEST_NAME).key


def _uploader(store: FakeStore, **kwargs: object) -> Uploader:
    return Uploader(store, retry=FAST, **kwargs)  # type: ignore[arg-type]


def test_submit_returns_at_once_while_the_store_is_frozen(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    started = time.monotonic()
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    assert time.monotonic() - started < 0.5
    assert store.blocked.wait(5)  # the worker is inside the frozen upload
    assert uploader.pending == 1 and store.manifests() == []
    store.thaw()
    assert uploader.close(5)
    assert store.manifests() == [_manifest(100)]
    assert store.writes[-1] == _manifest(100)  # the manifest is the last object
    assert not directory.exists()  # the local copy is gone once uploaded


def test_at_most_one_queued_and_a_newer_checkpoint_replaces_only_the_queued_one(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    dirs = {}
    for step in (100, 200, 300):
        dirs[step], action = _checkpoint(tmp_path, step)
        uploader.submit("checkpoint", f"checkpoint {step}", action, cleanup=dirs[step])
        if step == 100:
            assert store.blocked.wait(5)  # 100 is in progress
        assert uploader.pending <= 2  # one in progress, one queued
    # 200 was queued, never started: replaced by 300, and its local folder deleted at once.
    assert not dirs[200].exists() and dirs[300].exists()
    assert uploader.outcomes == {"replaced": 1}
    store.thaw()
    assert uploader.close(5)
    # The upload in progress (100) was completed, not cut; 200 never reached the store.
    assert store.manifests() == [_manifest(100), _manifest(300)]
    assert not any("/000000000200/" in key for key in store.objects)
    assert uploader.outcomes == {"replaced": 1, "uploaded": 2}
    assert not dirs[100].exists() and not dirs[300].exists()


def test_discard_drops_the_queued_checkpoint(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    first, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=first)
    assert store.blocked.wait(5)
    second, action = _checkpoint(tmp_path, 200)
    uploader.submit("checkpoint", "checkpoint 200", action, cleanup=second)
    assert uploader.discard("checkpoint") and not second.exists()
    assert not uploader.discard("checkpoint")
    store.thaw()
    assert uploader.close(5)
    assert store.manifests() == [_manifest(100)]


def test_failures_are_retried_with_back_off_and_reported_as_health(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail = lambda key: True
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    _eventually(lambda: store.failures >= 3)
    health = uploader.health()
    assert not health.ok and health.state == "failing"
    assert health.failures >= 3 and health.failing_since is not None and health.pending == 1
    assert "503 SlowDown" in (health.last_error or "")
    assert health.describe().startswith("failing since ") and "503" in health.describe()
    assert store.manifests() == []  # never while an object is missing
    store.fail = lambda key: False
    assert uploader.close(5)
    assert store.manifests() == [_manifest(100)]
    assert uploader.health() == StorageHealth(ok=True)
    assert uploader.health().describe() == "ok"


def test_a_user_error_is_not_retried(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail = lambda key: True
    store.error = UserError
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    assert uploader.close(5)
    assert store.requests == 1 and uploader.outcomes == {"failed": 1}
    assert not uploader.health().ok and store.manifests() == []
    assert not directory.exists()


def test_a_failing_upload_gives_way_to_a_newer_one_without_its_manifest(tmp_path: Path) -> None:
    store = FakeStore()
    # The old checkpoint's second object cannot be written; everything else can.
    store.fail = lambda key: "/000000000100/vecnormalize" in key
    uploader = _uploader(store)
    old, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=old)
    _eventually(lambda: store.failures >= 2)
    new, action = _checkpoint(tmp_path, 200)
    uploader.submit("checkpoint", "checkpoint 200", action, cleanup=new)
    assert uploader.close(5)
    assert uploader.outcomes == {"abandoned": 1, "uploaded": 1}
    # 100 left its model but no manifest: readers never select it (and pruning removes it).
    assert LAYOUT.checkpoint(100).join("model.zip").key in store.objects
    assert store.manifests() == [_manifest(200)]
    assert [c.step for c in scan(store, LAYOUT.checkpoints).complete] == [200]
    assert not old.exists() and not new.exists()


def test_kinds_queue_independently(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    assert store.blocked.wait(5)
    history = S3Uri("bkt", "run/eval/evaluations.json")
    for n in (1, 2, 3):
        uploader.submit("evaluations", "history", _put(history, str(n).encode()))
    directory, action = _checkpoint(tmp_path, 200)
    uploader.submit("checkpoint", "checkpoint 200", action, cleanup=directory)
    assert uploader.pending == 3  # in progress, one history, one checkpoint
    store.thaw()
    assert uploader.close(5)
    assert store.objects[history.key] == b"3"
    assert store.writes.count(history.key) == 1  # the two older histories were replaced
    assert store.manifests() == [_manifest(100), _manifest(200)]


def test_blocking_waits_for_the_upload_in_progress_then_runs(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    assert store.blocked.wait(5)
    final = S3Uri("bkt", "run/eval/final.json")
    done = threading.Event()

    def last_words() -> None:
        uploader.blocking(10).put_bytes(final, b"{}")
        done.set()

    thread = threading.Thread(target=last_words)
    thread.start()
    assert not done.wait(0.3)  # it waits: the checkpoint in progress goes first
    assert final.key not in store.objects
    store.thaw()
    thread.join(5)
    assert done.is_set()
    assert store.writes.index(_manifest(100)) < store.writes.index(final.key)
    assert uploader.close(1)


def test_blocking_supersedes_the_queued_checkpoint_and_waits_for_the_one_in_progress(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    first, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=first)
    assert store.blocked.wait(5)
    queued, action = _checkpoint(tmp_path, 200)
    uploader.submit("checkpoint", "checkpoint 200", action, cleanup=queued)
    result: list[Storage] = []
    thread = threading.Thread(target=lambda: result.append(uploader.blocking(10, supersede=["checkpoint"])))
    thread.start()
    _eventually(lambda: not queued.exists())  # dropped: the caller writes a newer one itself
    assert not result  # still waiting for 100
    store.thaw()
    thread.join(5)
    assert result and store.manifests() == [_manifest(100)]
    _, action = _checkpoint(tmp_path, 300)
    action(result[0])  # the caller's own checkpoint, through the blocking storage
    assert store.manifests() == [_manifest(100), _manifest(300)]
    assert uploader.close(1)


def test_blocking_abandons_a_failing_superseded_checkpoint(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail = lambda key: "/000000000100/" in key
    uploader = _uploader(store)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    _eventually(lambda: store.failures >= 1)
    started = time.monotonic()
    storage = uploader.blocking(10, supersede=["checkpoint"])
    assert time.monotonic() - started < 2  # no waiting out the retries of a doomed upload
    _, action = _checkpoint(tmp_path, 200)
    action(storage)
    assert store.manifests() == [_manifest(200)]
    assert uploader.outcomes == {"abandoned": 1}


def test_blocking_retries_and_fails_at_its_deadline() -> None:
    store = FakeStore()
    store.fail = lambda key: True
    uploader = _uploader(store)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"503 SlowDown \(attempt \d+; no time left to retry\)"):
        uploader.blocking(0.4).put_bytes(S3Uri("bkt", "run/final/manifest.json"), b"{}")
    assert 0.3 < time.monotonic() - started < 2
    assert store.failures > 2  # retried until the deadline
    store.fail = lambda key: False
    storage = uploader.blocking(5)
    storage.put_bytes(S3Uri("bkt", "x"), b"1")  # the next call retries afresh
    assert store.objects["x"] == b"1"


def test_blocking_returns_at_its_deadline_even_when_a_request_hangs(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    _, action = _checkpoint(tmp_path, 100)
    started = time.monotonic()
    with pytest.raises(StorageError, match="did not succeed within"):
        action(uploader.blocking(0.3))  # the model upload hangs: write_folder stops there
    assert time.monotonic() - started < 2
    store.thaw()
    _eventually(lambda: uploader.pending == 0)
    time.sleep(0.05)
    assert store.manifests() == []  # the abandoned folder never gets its manifest


def test_a_failing_background_upload_steps_aside_for_a_blocking_call() -> None:
    store = FakeStore()
    history = S3Uri("bkt", "run/eval/evaluations.json")
    store.fail = lambda key: key == history.key
    uploader = _uploader(store)
    uploader.submit("evaluations", "history", lambda s: s.put_bytes(history, b"[1]"))
    _eventually(lambda: store.failures >= 1)
    uploader.blocking(5).put_bytes(S3Uri("bkt", "run/eval/final.json"), b"{}")
    assert "run/eval/final.json" in store.objects
    store.fail = lambda key: False
    assert uploader.close(5)  # the history was queued again, not lost
    assert store.objects[history.key] == b"[1]"


def test_close_abandons_what_does_not_finish_in_time(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store)
    first, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=first)
    assert store.blocked.wait(5)
    queued, action = _checkpoint(tmp_path, 200)
    uploader.submit("checkpoint", "checkpoint 200", action, cleanup=queued)
    assert not uploader.close(0.2)
    assert not queued.exists()
    store.thaw()
    _eventually(lambda: not first.exists())
    assert store.manifests() == []  # 100 stopped after the request in flight, before its manifest
    with pytest.raises(RuntimeError):
        uploader.submit("checkpoint", "late", lambda s: None)


def test_a_request_without_an_answer_is_reported_as_stalled(tmp_path: Path) -> None:
    store = FakeStore()
    store.freeze()
    uploader = _uploader(store, stall_seconds=0.1)
    directory, action = _checkpoint(tmp_path, 100)
    uploader.submit("checkpoint", "checkpoint 100", action, cleanup=directory)
    assert store.blocked.wait(5)
    assert uploader.health().ok
    time.sleep(0.25)
    health = uploader.health()
    assert not health.ok and health.failures == 0 and health.failing_since is not None
    assert "no answer for" in (health.last_error or "") and "upload to s3://bkt/run/checkpoints/" in (
        health.last_error or ""
    )
    store.thaw()
    assert uploader.close(5)
    assert uploader.health().ok


def test_retry_policy_is_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(initial_seconds=1, multiplier=2, maximum_seconds=30, jitter=0.5)
    assert [policy.delay(n, 0.0) for n in (1, 2, 3, 6, 20)] == [1, 2, 4, 30, 30]
    assert policy.delay(2, 0.999) == pytest.approx(1.0, abs=0.01)


def test_the_s3_client_cannot_hang_a_request_forever() -> None:
    storage = Storage.from_config(S3Storage(bucket="bkt", endpoint="http://127.0.0.1:9"))
    config = storage.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT, READ_TIMEOUT)
    assert 0 < CONNECT_TIMEOUT <= 30 and 0 < READ_TIMEOUT <= 60


# --- the trainer on a frozen store: training goes on ------------------------------------------


def _train_config(total: int) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "algorithm": "PPO",
            "environment": EnvironmentConfig(id="CartPole-v1", n_envs=2),
            "hyperparameters": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
            "total_timesteps": total,
            "checkpoint": CheckpointPolicy(every_steps=256, keep_last=2),
            "evaluation": EvaluationConfig(every_steps=1_000_000, episodes=1),  # the final evaluation: one episode
            "storage": S3Storage(bucket="bkt"),
            "run_prefix": "run",
            "device": "cpu",
        }
    )


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny networks train fastest on one thread (and torch's spinning threads crawl on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # configure_threads() keeps what is set
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _start_trainer(trainer: Trainer) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(trainer.run())
        except Exception as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_training_goes_on_while_storage_is_frozen_and_the_final_model_waits(tmp_path: Path, one_thread: None) -> None:
    store = FakeStore()
    store.freeze()
    total = 2048
    trainer = Trainer(_train_config(total), store, ProgressReporter(None, 3600), TerminationRequest(), tmp_path)
    thread, outcome = _start_trainer(trainer)
    assert store.blocked.wait(120)  # the first checkpoint's upload hangs...
    # ...and training reaches its end meanwhile (256-step checkpoints: several came and went).
    _eventually(lambda: trainer._model is not None and trainer.model.num_timesteps >= total, timeout=120)
    assert store.manifests() == [] and not outcome  # the final model waits for storage
    assert trainer.uploader.outcomes.get("replaced", 0) >= 1
    assert len(list(tmp_path.glob("checkpoint-*"))) <= 2  # local copies: in progress and queued at most
    store.thaw()
    thread.join(120)
    [result] = outcome
    assert not isinstance(result, Exception), result
    complete = scan(store, LAYOUT.checkpoints).complete
    assert complete[0].step == total  # resume picks the final state
    assert len(complete) <= 2 and LAYOUT.final.join(MANIFEST_NAME).key in store.objects
    assert trainer.uploader.health().ok
    assert not list(tmp_path.glob("checkpoint-*"))


def test_sigterm_checkpoint_waits_for_the_upload_in_progress(
    tmp_path: Path, one_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the runner's level (setup_logging)
    store = FakeStore()
    store.freeze()
    termination = TerminationRequest()
    trainer = Trainer(_train_config(1_000_000), store, ProgressReporter(None, 3600), termination, tmp_path)
    thread, outcome = _start_trainer(trainer)
    assert store.blocked.wait(120)
    _eventually(lambda: trainer.model.num_timesteps >= 1024, timeout=120)  # training went on
    termination.signum = signal.SIGTERM
    time.sleep(0.5)
    assert not outcome and store.manifests() == []  # the last checkpoint waits for the one in progress
    store.thaw()
    thread.join(120)
    [error] = outcome
    assert isinstance(error, TerminatedError) and error.exit_code == 128 + signal.SIGTERM
    stopped = trainer.model.num_timesteps
    complete = scan(store, LAYOUT.checkpoints).complete
    assert complete[0].step == stopped and f"terminated at timestep {stopped}" in str(error)
    # The attempt's log reached the run's folder too, after the SIGTERM checkpoint, ending with the exit line.
    (log_key,) = [k for k in store.objects if k.startswith(LAYOUT.root.join("logs").key + "/")]
    stored = store.objects[log_key].decode()
    assert "training 1000000 timesteps (from 0 to 1000000)" in stored
    assert f"checkpoint s3://bkt/run/checkpoints/{stopped:012d}" in stored
    assert stored.splitlines()[-1] == f"kubegym-runner: stopped: {error}"


class RecordingWriter:
    """A status writer that keeps every patch body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def patch(self, body: Mapping[str, Any]) -> None:
        with self.lock:
            self.bodies.append(dict(body))

    def progress(self) -> list[dict[str, Any]]:
        with self.lock:
            return [b["status"]["progress"] for b in self.bodies if "progress" in b["status"]]


def test_progress_reports_storage_failing_while_training_goes_on_then_ok(tmp_path: Path, one_thread: None) -> None:
    store = FakeStore()
    store.freeze()
    writer = RecordingWriter()
    trainer = Trainer(_train_config(4096), store, ProgressReporter(writer, 0.05), TerminationRequest(), tmp_path)
    trainer.uploader.stall_seconds = 0.2  # a request without an answer for 0.2 s counts as failing
    thread, outcome = _start_trainer(trainer)
    assert store.blocked.wait(120)

    def failing() -> list[dict[str, Any]]:
        return [p for p in writer.progress() if p.get("storage", {}).get("state") == "failing"]

    _eventually(lambda: len({p["timesteps"] for p in failing()}) >= 2, timeout=120)  # steps rise meanwhile
    first = failing()[0]["storage"]
    assert "no answer for" in first["message"] and first["pendingUploads"] >= 1
    assert len({p["storage"]["since"] for p in failing()}) == 1  # since holds while the state does
    store.thaw()
    thread.join(120)
    [result] = outcome
    assert not isinstance(result, Exception), result
    last = writer.progress()[-1]
    assert last["storage"]["state"] == "ok" and last["storage"]["since"] >= first["since"]
    # The figures the runner chose, in every report.
    compute = last["compute"]
    assert {k: compute[k] for k in ("threads", "threadsFrom", "nEnvs", "vectorization", "envWorkers")} == {
        "threads": 1,  # OMP_NUM_THREADS (the fixture's) wins over the CPU share
        "threadsFrom": "OMP_NUM_THREADS",
        "nEnvs": 2,
        "vectorization": "dummy",  # CartPole is cheap (or the share is one CPU)
        "envWorkers": 0,
    }
    assert compute["vectorizationReason"].startswith("auto: ")
    assert all(p.get("compute") == last["compute"] for p in writer.progress())


def test_an_off_policy_sigterm_checkpoint_has_one_transition_per_step(tmp_path: Path, one_thread: None) -> None:
    """SB3 counts a step before its callbacks and stores its transition after them: the step
    ``learn`` stopped on is uncounted, so the checkpoint's step and its replay buffer agree."""
    config = TrainConfig.model_validate(
        {
            "algorithm": "DQN",
            "environment": EnvironmentConfig(id="CartPole-v1", n_envs=1),
            "hyperparameters": {"learning_starts": 50, "buffer_size": 10_000},
            "total_timesteps": 1_000_000,
            "checkpoint": CheckpointPolicy(every_steps=1_000_000, keep_last=2, save_replay_buffer=True),
            "storage": S3Storage(bucket="bkt"),
            "run_prefix": "run",
            "device": "cpu",
        }
    )
    store = FakeStore()
    termination = TerminationRequest()
    trainer = Trainer(config, store, ProgressReporter(None, 3600), termination, tmp_path)
    thread, outcome = _start_trainer(trainer)
    _eventually(lambda: trainer._model is not None and trainer.model.num_timesteps >= 300, timeout=120)
    termination.signum = signal.SIGTERM
    thread.join(120)
    [error] = outcome
    assert isinstance(error, TerminatedError)
    [checkpoint] = scan(store, LAYOUT.checkpoints).complete
    assert checkpoint.step == trainer.model.num_timesteps
    assert trainer.model.replay_buffer.size() == checkpoint.step  # type: ignore[attr-defined]
