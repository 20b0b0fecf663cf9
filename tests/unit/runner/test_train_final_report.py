"""The runner's last words outlive a lost status patch: the final report in the termination
message (bounded to what the kubelet keeps) and the result in ``final/manifest.json``."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kubegym_api.base import Algorithm
from kubegym_api.environment import EnvironmentConfig, Wrapper
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.finalreport import FINAL_REPORT_PREFIX, FinalReport, final_report_message, parse_final_report
from kubegym_api.runnerconfig import RunRef, TrainConfig, dump_config
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import CheckpointStatus, EvaluationConfig, TrainingResult
from kubegym_runner import cli, progress, storage
from kubegym_runner.checkpoints import MANIFEST_NAME, Manifest
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage

LIMIT = cli.TERMINATION_MESSAGE_LIMIT
SUMMARY = "trained 1000 timesteps; final evaluation 500.0 +/- 0.0 over 10 episodes; model s3://b/r/final"


def _report(uri: str = "s3://kubegym/runs/ns/run/final") -> FinalReport:
    return FinalReport(
        result=TrainingResult(timesteps=1024, mean_reward=487.25, std_reward=12.5, episodes=10, model_uri=uri),
        total_timesteps=1000,
        checkpoints=CheckpointStatus(latest_uri=uri.replace("final", "checkpoints/000000001024"), latest_step=1024),
    )


def test_the_report_round_trips_after_the_summary() -> None:
    message = final_report_message(SUMMARY, _report(), LIMIT)
    summary, line = message.splitlines()
    assert summary == SUMMARY  # kubectl describe still reads as before
    assert line.startswith(FINAL_REPORT_PREFIX)
    assert parse_final_report(message) == _report()


@pytest.mark.parametrize(
    ("summary", "uri", "limit", "keeps_checkpoints", "keeps_report"),
    [
        pytest.param(SUMMARY, "s3://b/final", LIMIT, True, True, id="fits"),
        pytest.param("é" * 5000, "s3://b/final", LIMIT, True, True, id="long-summary-shortened"),
        pytest.param(SUMMARY, "s3://b/" + "k" * 2500, LIMIT, False, True, id="long-uris-drop-checkpoints"),
        pytest.param(SUMMARY, "s3://b/" + "k" * 5000, LIMIT, False, False, id="too-long-summary-only"),
        pytest.param(SUMMARY, "s3://b/final", 200, False, True, id="small-limit"),
    ],
)
def test_the_message_fits_the_kubelets_limit(
    summary: str, uri: str, limit: int, keeps_checkpoints: bool, keeps_report: bool
) -> None:
    message = final_report_message(summary, _report(uri), limit)
    assert len(message.encode()) <= limit
    message.encode().decode()  # never a split UTF-8 character
    report = parse_final_report(message)
    assert (report is not None) is keeps_report
    if report is not None:
        assert report.result == _report(uri).result
        assert (report.checkpoints is not None) is keeps_checkpoints


@pytest.mark.parametrize(
    "message",
    [
        None,
        "",
        "the runner rejected the spec: unknown env CartPol-v1",
        f"{SUMMARY}\n{FINAL_REPORT_PREFIX}{{not json",
        f"{SUMMARY}\n{FINAL_REPORT_PREFIX}{{}}",  # no result
        f"{SUMMARY}\n{FINAL_REPORT_PREFIX}" + '{"result": {"meanReward": "high"}}',
    ],
)
def test_messages_without_a_valid_report(message: str | None) -> None:
    assert parse_final_report(message) is None


def test_a_newer_runners_report_still_parses() -> None:
    line = json.dumps({"result": {"meanReward": 1.5, "timesteps": 10}, "somethingNew": {"x": 1}})
    report = parse_final_report(f"{SUMMARY}\n{FINAL_REPORT_PREFIX}{line}")
    assert report is not None and report.result.mean_reward == 1.5


# --- the whole train command with the API server away ----------------------------------------------


class MemoryStorage(Storage):
    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[tuple[str, str], bytes] = {}

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        pass

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        self.put_bytes(uri, path.read_bytes())

    def download_file(self, uri: S3Uri, path: Path) -> None:
        path.write_bytes(self.objects[(uri.bucket, uri.key)])

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self.objects[(uri.bucket, uri.key)] = data

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self.objects.get((uri.bucket, uri.key))

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return [
            ObjectInfo(key, len(data))
            for (bucket, key), data in sorted(self.objects.items())
            if bucket == prefix.bucket and key.startswith(prefix.key)
        ]

    def delete(self, uris: list[S3Uri]) -> None:
        for uri in uris:
            self.objects.pop((uri.bucket, uri.key), None)


class ApiDown:
    def __init__(self) -> None:
        self.tries = 0

    def patch(self, body: Mapping[str, Any]) -> None:
        self.tries += 1
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """``train`` installs SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("signal_handlers")
def test_train_leaves_the_result_in_the_termination_message_and_the_final_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory, api = MemoryStorage(), ApiDown()
    monkeypatch.setattr(storage.Storage, "from_config", lambda config: memory)
    monkeypatch.setattr(progress.KubernetesStatusWriter, "connect", lambda ref: api)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    log = tmp_path / "termination-log"
    monkeypatch.setenv(cli.TERMINATION_LOG_ENV, str(log))
    config = TrainConfig(
        algorithm=Algorithm.PPO,
        environment=EnvironmentConfig(
            id="CartPole-v1", n_envs=2, wrappers=[Wrapper(name="TimeLimit", kwargs={"max_episode_steps": 20})]
        ),
        hyperparameters={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        total_timesteps=64,
        evaluation=EvaluationConfig(every_steps=1000, episodes=2),
        storage=S3Storage(bucket="kubegym"),
        run_prefix="runs/ns/run",
        report_to=RunRef(plural="trainingruns", namespace="ns", name="run"),
        final_report_timeout_seconds=0,  # one try: this test is not about the back-off
    )
    monkeypatch.setenv(CONFIG_ENV, dump_config(config))

    assert cli.main(["train"]) == 0  # a lost status report does not fail a finished run
    assert api.tries >= 1

    report = parse_final_report(log.read_text())
    assert report is not None
    assert report.result.model_uri == "s3://kubegym/runs/ns/run/final"
    assert report.result.timesteps == 64 and report.result.episodes == 2
    assert report.total_timesteps == 64
    assert report.checkpoints is not None and report.checkpoints.latest_step == 64
    assert log.read_text().splitlines()[0].startswith("trained 64 timesteps")

    manifest = Manifest.model_validate_json(memory.objects[("kubegym", f"runs/ns/run/final/{MANIFEST_NAME}")])
    assert manifest.result == report.result  # the manifest is the durable record of status.result
    assert manifest.step == 64 and "model.zip" in manifest.objects
    checkpoint = memory.objects[("kubegym", f"runs/ns/run/checkpoints/000000000064/{MANIFEST_NAME}")]
    assert "result" not in json.loads(checkpoint)
