"""The evaluation runner on real CartPole with real (untrained) SB3 models, storage in memory.

Bad inputs fail their own entry with a clear error; the run still reports the rest, its status
and reports agree with a recomputation from its own episodes CSV, and every policy call is timed.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from kubegym_api.base import Algorithm, Device
from kubegym_api.environment import BenchmarkEnvironment
from kubegym_api.runnerconfig import BenchmarkModel, EvaluateConfig
from kubegym_api.storage import S3Storage
from kubegym_runner import evaluate, report
from kubegym_runner.checkpoints import Manifest, ObjectDigest
from kubegym_runner.errors import InfraError, UserError
from kubegym_runner.storage import S3Uri, Storage

BUCKET = "kubegym"


class MemoryStorage(Storage):
    """The Storage interface over a dict, for the runner's S3 calls."""

    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[str, bytes] = {}

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        if bucket != BUCKET:
            raise UserError(f"S3 bucket {bucket!r} does not exist")

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        if uri.bucket != BUCKET:
            raise UserError(f"S3 read of {uri} failed: AccessDenied")
        return self.objects.get(uri.key)

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self.objects[uri.key] = data


class RecordingWriter:
    def __init__(self, failures: int = 0) -> None:
        self.patches: list[dict[str, Any]] = []
        self.failures = failures

    def patch(self, body: Mapping[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("503 Service Unavailable")
        self.patches.append(dict(body))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """As the evaluator runs (evaluate.configure_inference); restored for other tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An untrained PPO policy for CartPole (short episodes: fast tests)."""
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    path = tmp_path_factory.mktemp("model") / "model.zip"
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0, device="cpu").save(path)
    env.close()
    return path.read_bytes()


@pytest.fixture
def storage(model_zip: bytes) -> Iterator[MemoryStorage]:
    s = MemoryStorage()
    s.objects["runs/a/final/model.zip"] = model_zip
    digest = ObjectDigest(sha256=hashlib.sha256(model_zip).hexdigest(), size=len(model_zip))
    manifest = Manifest(
        step=64,
        created_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        wall_time_seconds=1.0,
        algorithm="PPO",
        env_id="CartPole-v1",
        objects={"model.zip": digest},
    )
    s.objects["runs/a/final/manifest.json"] = manifest.model_dump_json(by_alias=True).encode()
    s.objects["uploads/b.zip"] = model_zip
    s.objects["uploads/garbage/model.zip"] = b"\x00not a zip at all"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "a zip, but not a model")
    s.objects["uploads/other/model.zip"] = buf.getvalue()
    s.objects["runs/tampered/final/model.zip"] = model_zip + b"x"
    s.objects["runs/tampered/final/manifest.json"] = s.objects["runs/a/final/manifest.json"]
    yield s


def config(models: list[BenchmarkModel], envs: list[str], **kw: Any) -> EvaluateConfig:
    return EvaluateConfig(
        models=models,
        environments=[BenchmarkEnvironment(id=e) for e in envs],
        episodes=kw.pop("episodes", 6),
        seeds=kw.pop("seeds", [0, 1]),
        n_envs=kw.pop("n_envs", 4),
        device=Device.cpu,
        bootstrap_resamples=200,
        storage=S3Storage(bucket=BUCKET),
        run_prefix="bench/ns/benchmarks/b",
        **kw,
    )


def m(name: str, uri: str, algorithm: str | None = "PPO") -> BenchmarkModel:
    return BenchmarkModel(name=name, uri=uri, algorithm=Algorithm(algorithm) if algorithm else None)


def test_fetch_model_from_a_folder_with_manifest_and_from_a_bare_zip(storage: MemoryStorage, tmp_path: Path) -> None:
    files = evaluate.fetch_model(storage, m("a", "s3://kubegym/runs/a/final/", None), tmp_path / "a")
    assert files.algorithm == "PPO"  # from the manifest
    assert files.archive.read_bytes() == storage.objects["runs/a/final/model.zip"]
    assert files.vecnormalize is None
    files = evaluate.fetch_model(storage, m("b", "s3://kubegym/uploads/b.zip"), tmp_path / "b")
    assert files.archive_uri == "s3://kubegym/uploads/b.zip"


@pytest.mark.parametrize(
    ("uri", "algorithm", "error"),
    [
        ("s3://kubegym/runs/nothing/", "PPO", "model object s3://kubegym/runs/nothing/model.zip not found"),
        ("s3://kubegym/uploads/b.zip", None, "cannot tell which algorithm saved"),
        ("s3://kubegym/runs/tampered/final/", "PPO", "does not match the sha256"),
        ("s3://elsewhere/m.zip", "PPO", "AccessDenied"),
        ("https://example.com/m.zip", "PPO", "not an s3:// URI"),
    ],
)
def test_fetch_model_errors(
    storage: MemoryStorage, tmp_path: Path, uri: str, algorithm: str | None, error: str
) -> None:
    with pytest.raises(evaluate.EntryError, match=error.replace("(", r"\(")):
        evaluate.fetch_model(storage, m("x", uri, algorithm), tmp_path)


@pytest.mark.parametrize(
    ("key", "algorithm", "error"),
    [
        ("uploads/garbage/model.zip", "PPO", "not a zip file"),
        ("uploads/other/model.zip", "PPO", "no 'data' member"),
        ("uploads/b.zip", "DQN", "cannot load s3://kubegym/uploads/b.zip as DQN"),
    ],
)
def test_load_model_errors(storage: MemoryStorage, tmp_path: Path, key: str, algorithm: str, error: str) -> None:
    files = evaluate.fetch_model(storage, m("x", f"s3://kubegym/{key}", algorithm), tmp_path)
    with pytest.raises(evaluate.EntryError, match=error):
        evaluate.load_model(files, "cpu")


def test_a_model_with_non_finite_weights_is_refused(model_zip: bytes, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "nan.zip"
    path.write_bytes(model_zip)
    model = PPO.load(path, device="cpu")
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))
    model.save(path)
    files = evaluate.ModelFiles("nan", "s3://kubegym/nan/", "PPO", path, None, "s3://kubegym/nan/model.zip")
    with pytest.raises(evaluate.EntryError, match="has NaN or infinite weights"):
        evaluate.load_model(files, "cpu")


def test_check_environment() -> None:
    assert evaluate.check_environment(BenchmarkEnvironment(id="CartPole-v1")) is None
    assert "unknown environment id 'CartPole-v0000'" in str(
        evaluate.check_environment(BenchmarkEnvironment(id="CartPole-v0000"))
    )
    bad_kwargs = evaluate.check_environment(BenchmarkEnvironment(id="CartPole-v1", kwargs={"no_such_kwarg": 1}))
    assert bad_kwargs is not None and "no_such_kwarg" in bad_kwargs


def test_play_splits_episodes_over_copies_and_times_every_call(model_zip: bytes, tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    path.write_bytes(model_zip)
    model = PPO.load(path, device="cpu")
    env = evaluate.build_env(BenchmarkEnvironment(id="CartPole-v1"), 3, None)
    calls = 0
    predict = evaluate.predictor(model, env, deterministic=True)

    def counting(obs: Any, state: Any, starts: np.ndarray) -> Any:
        nonlocal calls
        calls += 1
        return predict(obs, state, starts)

    env.seed(0)
    played = evaluate.play(env, counting, 7)
    env.seed(0)
    again = evaluate.play(env, predict, 7)
    env.close()
    # Copies play (7 + i) // 3 episodes: 2, 2, 3.
    assert [played.env_index.count(i) for i in range(3)] == [2, 2, 3]
    assert len(played.returns) == 7 and all(r == n for r, n in zip(played.returns, played.lengths, strict=True))
    assert len(played.latencies_ns) == calls and all(t > 0 for t in played.latencies_ns)
    assert calls >= max(played.lengths)
    assert again.returns == played.returns  # same seed, deterministic policy: the same episodes


def test_space_mismatch_fails_the_entry(storage: MemoryStorage, tmp_path: Path) -> None:
    files = evaluate.fetch_model(storage, m("a", "s3://kubegym/runs/a/final/"), tmp_path)
    model = evaluate.load_model(files, "cpu")
    cfg = config([m("a", "s3://kubegym/runs/a/final/")], ["MountainCar-v0"])
    with pytest.raises(
        evaluate.EntryError, match="model a does not fit MountainCar-v0: Observation spaces do not match"
    ):
        evaluate.evaluate_entry(model, files, cfg.environments[0], cfg)


def test_a_benchmark_reports_good_entries_and_bad_ones(storage: MemoryStorage) -> None:
    cfg = config(
        [
            m("a", "s3://kubegym/runs/a/final/", None),
            m("b", "s3://kubegym/uploads/b.zip"),
            m("missing", "s3://kubegym/runs/nothing/"),
            m("corrupt", "s3://kubegym/uploads/garbage/model.zip"),
        ],
        ["CartPole-v1", "MountainCar-v0", "NoSuchEnv-v0"],
    )
    writer = RecordingWriter()
    outcome = evaluate.evaluate(cfg, storage, evaluate.BenchmarkReporter(writer, interval=3600))
    by_key = {(e.model, e.env): e for e in outcome.entries}
    assert by_key[("a", "CartPole-v1")].error is None
    assert by_key[("a", "CartPole-v1")].episodes == 12  # 6 episodes x 2 seeds
    assert "Observation spaces do not match" in str(by_key[("a", "MountainCar-v0")].error)
    assert "unknown environment id 'NoSuchEnv-v0'" in str(by_key[("b", "NoSuchEnv-v0")].error)
    assert "not found" in str(by_key[("missing", "CartPole-v1")].error)
    assert "not a zip file" in str(by_key[("corrupt", "CartPole-v1")].error)
    assert outcome.ranking.envs == ["CartPole-v1"]
    assert {r.model for r in outcome.ranking.models} == {"a", "b"}
    assert outcome.ranking.unranked == ["missing", "corrupt"]
    ok = by_key[("a", "CartPole-v1")]
    assert ok.episodes_per_second and ok.episodes_per_second > 0
    assert ok.latency_p50_ms is not None and ok.latency_p99_ms is not None
    assert 0 < ok.latency_p50_ms <= ok.latency_p99_ms

    # The final status write carries everything; the reports are in storage.
    final = writer.patches[-1]["status"]
    assert final["bestModel"] == outcome.ranking.models[0].model
    assert final["bestScore"] == outcome.ranking.models[0].score
    assert final["progress"]["entriesDone"] == final["progress"]["entriesTotal"] == 12
    assert len(final["results"]) == 12
    folder = "bench/ns/benchmarks/b/report/"
    assert final["artifacts"]["episodes"] == f"s3://kubegym/{folder}episodes.csv"
    assert storage.objects[f"{folder}comparison.png"].startswith(b"\x89PNG")
    document = json.loads(storage.objects[f"{folder}results.json"])
    assert document["settings"]["episodes"] == 6 and "storage" not in document["settings"]
    assert document["versions"]["scipy"]

    # Every statistic in the status is a recomputation from the saved episodes.
    episodes = report.read_episodes_csv(storage.objects[f"{folder}episodes.csv"])
    errors = {(e.model, e.env): e.error for e in outcome.entries if e.error}
    settings = report.RankingSettings(cfg.statistic, cfg.confidence_level, cfg.bootstrap_resamples, cfg.bootstrap_seed)
    entries, ranking = report.compute_results(
        ["a", "b", "missing", "corrupt"], [e.id for e in cfg.environments], episodes, errors, settings
    )
    timing = {"episodes_per_second", "latency_p50_ms", "latency_p99_ms"}
    assert [e.model_dump(exclude=timing) for e in entries] == [e.model_dump(exclude=timing) for e in outcome.entries]
    assert ranking == outcome.ranking


def test_all_entries_failing_is_a_user_error_after_reporting(storage: MemoryStorage) -> None:
    cfg = config([m("missing", "s3://kubegym/runs/nothing/")], ["CartPole-v1"])
    writer = RecordingWriter()
    with pytest.raises(UserError, match="none of the 1 model x environment entries could be evaluated; first: missing"):
        evaluate.evaluate(cfg, storage, evaluate.BenchmarkReporter(writer, interval=3600))
    assert writer.patches[-1]["status"]["results"][0]["error"].startswith("model object")


def test_the_results_write_is_retried_then_an_infrastructure_error() -> None:
    writer = RecordingWriter(failures=2)
    evaluate.BenchmarkReporter(writer, interval=1, backoff=0).finish({"bestModel": "a"})
    assert writer.patches == [{"status": {"bestModel": "a"}}]
    with pytest.raises(InfraError, match="cannot write the results"):
        evaluate.BenchmarkReporter(RecordingWriter(failures=9), interval=1, attempts=3, backoff=0).finish({})
