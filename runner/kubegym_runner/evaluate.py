"""``kubegym-runner evaluate``: play every model on every environment and report how they compare.

For each model (downloaded once, with its VecNormalize statistics) and each environment, the
runner plays ``episodes`` episodes per seed on ``nEnvs`` vectorised copies, timing every policy
call. Episodes are split over the copies by fixed quotas (as stable-baselines3's
``evaluate_policy`` does) and each seed reseeds copy *i* with ``seed + i``, so every model meets
the same initial states: the comparison is paired by construction, not by luck.

A broken entry fails alone: a missing object, a corrupt archive, an algorithm that cannot load
it, spaces that do not match the environment, an unknown environment or one that crashes.
Its error is reported on that entry and the others go on. Storage outages are not the model's
fault: they end the run with the storage exit code, so the Job retries it.

Artifacts (under ``<runPrefix>/report/``): ``episodes.csv`` (every episode: the raw data),
``results.csv`` (the table), ``results.json`` (entries, ranking, settings, versions) and
``comparison.png``. Then the status: ``results``, ``ranking``, ``bestModel``, ``bestScore``,
``artifacts``, ``progress``, written on the Benchmark's status subresource with the pod's own
identity, which may patch that status and nothing else.

An SB3 archive holds pickles, and unpickling runs whatever they name; every archive and
statistics file is therefore loaded through :mod:`kubegym_runner.safeload`, which resolves only
spaces, arrays and SB3/torch classes and refuses the rest as that entry's error. A custom
environment's code still runs, with this pod's rights only (see docs/security.md): read the
models, write these results.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import check_for_correct_spaces, set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack

from kubegym_api.benchmark import BenchmarkArtifacts, BenchmarkEntry, BenchmarkProgress, BenchmarkRanking
from kubegym_api.environment import BenchmarkEnvironment
from kubegym_api.runnerconfig import BenchmarkModel, EvaluateConfig
from kubegym_runner import report
from kubegym_runner.algorithms import algorithm_class
from kubegym_runner.checkpoints import MANIFEST_NAME, MODEL_NAME, VECNORMALIZE_NAME, Manifest, read_manifest
from kubegym_runner.compute import resolve_device, user_omp_threads
from kubegym_runner.envs import EnvFactory, EnvPlan, make_single_env
from kubegym_runner.errors import InfraError, UserError
from kubegym_runner.progress import RateLimiter, StatusWriter
from kubegym_runner.safeload import load_algorithm, load_vecnormalize
from kubegym_runner.storage import S3Uri, Storage, sha256_file

log = logging.getLogger(__name__)

REPORT_FOLDER = "report"
EPISODES_NAME = "episodes.csv"
TABLE_NAME = "results.csv"
RESULTS_NAME = "results.json"
PLOT_NAME = "comparison.png"

#: Training-only objects replaced on load: their pickles (schedules) are not needed to act,
#: and not unpickling them removes one source of version trouble.
CUSTOM_OBJECTS: Mapping[str, Any] = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "clip_range_vf": None,
    "exploration_schedule": lambda _: 0.0,
}


class EntryError(Exception):
    """This model, or this model on this environment, cannot be evaluated; the rest can."""


# --- loading models --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """A model downloaded for evaluation."""

    name: str
    uri: str
    algorithm: str
    archive: Path
    vecnormalize: Path | None
    #: The archive's own location, for messages.
    archive_uri: str = ""


def _model_locations(uri: str) -> tuple[S3Uri, S3Uri]:
    """The folder and the archive a model URI names (a folder, or an archive in one)."""
    try:
        location = S3Uri.parse(uri)
    except UserError as e:
        raise EntryError(str(e)) from e
    if location.key.endswith(".zip"):
        parent = location.key.rsplit("/", 1)[0] if "/" in location.key else ""
        return S3Uri(location.bucket, parent), location
    return location, location.join(MODEL_NAME)


def _download(storage: Storage, uri: S3Uri, path: Path, what: str, manifest: Manifest | None) -> bool:
    """Download ``uri`` to ``path``; False when absent. Checked against the manifest if it lists it."""
    data = storage.get_bytes(uri)
    if data is None:
        return False
    path.write_bytes(data)
    digest = manifest.objects.get(uri.key.rsplit("/", 1)[-1]) if manifest else None
    if digest is not None and (path.stat().st_size != digest.size or sha256_file(path) != digest.sha256):
        raise EntryError(f"{what} {uri} does not match the sha256 in its {MANIFEST_NAME} (corrupt or partly written)")
    return True


def fetch_model(storage: Storage, source: BenchmarkModel, directory: Path) -> ModelFiles:
    """Download a model's archive and VecNormalize statistics, and tell which algorithm loads it.

    Storage outages propagate (:class:`~kubegym_runner.errors.InfraError`); everything that is
    the model's or the spec's fault becomes an :class:`EntryError`.
    """
    folder, archive_uri = _model_locations(source.uri)
    directory.mkdir(parents=True, exist_ok=True)
    archive, vecnormalize = directory / MODEL_NAME, directory / VECNORMALIZE_NAME
    try:
        manifest = read_manifest(storage, folder)
        if not _download(storage, archive_uri, archive, "model archive", manifest):
            raise EntryError(f"model object {archive_uri} not found")
        stats_uri = folder.join(VECNORMALIZE_NAME)
        has_stats = _download(storage, stats_uri, vecnormalize, "VecNormalize statistics", manifest)
    except UserError as e:  # access denied, no such bucket: this model's location is wrong
        raise EntryError(str(e)) from e
    algorithm = source.algorithm or (manifest.algorithm if manifest else None)
    if not algorithm:
        raise EntryError(
            f"cannot tell which algorithm saved {source.uri} (no {MANIFEST_NAME} beside it): set the model's algorithm"
        )
    return ModelFiles(
        source.name, source.uri, str(algorithm), archive, vecnormalize if has_stats else None, str(archive_uri)
    )


def load_model(files: ModelFiles, device: str) -> BaseAlgorithm:
    """Load the archive with its algorithm's class; any failure is this model's error."""
    if not zipfile.is_zipfile(files.archive):
        raise EntryError(
            f"{files.archive_uri} is not a stable-baselines3 model archive (not a zip file: corrupt or wrong file)"
        )
    with zipfile.ZipFile(files.archive) as archive:
        names = set(archive.namelist())
    if "data" not in names:
        raise EntryError(f"{files.archive_uri} is not a stable-baselines3 model archive (no 'data' member)")
    try:
        cls = algorithm_class(files.algorithm)
    except UserError as e:
        raise EntryError(str(e)) from e
    try:
        model = load_algorithm(cls, files.archive, replace=CUSTOM_OBJECTS, device=device, print_system_info=False)
    except Exception as e:  # untrusted archive: whatever it raises is its own failure
        raise EntryError(f"cannot load {files.archive_uri} as {cls.__name__}: {type(e).__name__}: {e}") from e
    if not all(bool(p.isfinite().all()) for p in model.policy.parameters()):
        raise EntryError(f"{files.archive_uri} has NaN or infinite weights")
    return model


# --- environments ----------------------------------------------------------------------


def env_factory(spec: BenchmarkEnvironment) -> EnvFactory:
    return EnvFactory(env_id=spec.id, module=spec.module, wrappers=tuple(spec.wrappers))


def check_environment(spec: BenchmarkEnvironment) -> str | None:
    """Why ``spec`` cannot be made (unknown id, bad kwargs or wrappers), or None if it can."""
    try:
        make_single_env(EnvPlan(factory=env_factory(spec), kwargs=spec.kwargs)).close()
    except UserError as e:
        return str(e)
    return None


def build_env(spec: BenchmarkEnvironment, n_envs: int, vecnormalize: Path | None) -> VecEnv:
    """``n_envs`` copies in one process (evaluation steps are cheap; IPC would cost more),
    frozen normalisation with raw rewards, and the spec's frame stacking."""
    factory = env_factory(spec)
    try:
        env: VecEnv = make_vec_env(
            factory, n_envs=n_envs, wrapper_class=factory.wrap, env_kwargs=dict(spec.kwargs), vec_env_cls=DummyVecEnv
        )
    except UserError as e:
        raise EntryError(str(e)) from e
    except Exception as e:  # a custom environment may raise anything
        raise EntryError(f"cannot make environment {spec.id!r}: {type(e).__name__}: {e}") from e
    if vecnormalize is not None:
        try:
            env = load_vecnormalize(vecnormalize, env)
        except Exception as e:  # an untrusted pickle
            env.close()
            raise EntryError(
                f"the model's VecNormalize statistics do not fit {spec.id}: {type(e).__name__}: {e}"
            ) from e
        env.training = False
        env.norm_reward = False
    if spec.frame_stack:
        env = VecFrameStack(env, spec.frame_stack)
    return env


# --- playing ---------------------------------------------------------------------------


Predict = Callable[[Any, Any, np.ndarray], tuple[np.ndarray, Any]]


def predictor(model: BaseAlgorithm, env: VecEnv, deterministic: bool) -> Predict:
    """``predict(obs, state, episode_start)`` for the model: with action masks for MaskablePPO,
    with the recurrent state for recurrent policies (``predict`` carries it)."""
    from sb3_contrib import MaskablePPO

    if isinstance(model, MaskablePPO):
        from sb3_contrib.common.maskable.utils import get_action_masks

        def masked(obs: Any, state: Any, starts: np.ndarray) -> tuple[np.ndarray, Any]:
            return model.predict(
                obs, state=state, episode_start=starts, deterministic=deterministic, action_masks=get_action_masks(env)
            )

        return masked

    def plain(obs: Any, state: Any, starts: np.ndarray) -> tuple[np.ndarray, Any]:
        return model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)

    return plain


@dataclass
class Played:
    """What one seed's (or one entry's) episodes gave: returns in (env copy, episode) order."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    env_index: list[int] = field(default_factory=list)
    episode_index: list[int] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0


def play(env: VecEnv, predict: Predict, episodes: int) -> Played:
    """Play ``episodes`` episodes, copy *i* playing ``(episodes + i) // n`` of them.

    Returns are Monitor's (the true environment's, below any reward-shaping wrapper) and an
    episode counts only when Monitor ends it, so life-loss resets of Atari wrappers are not
    episodes. Only the policy call is timed, with ``perf_counter_ns``; the bookkeeping is
    vectorised so that timing every call costs less than ``evaluate_policy``'s per-env loop.
    """
    n = env.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)], dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    found: list[tuple[int, int, float, int]] = []
    latencies: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    obs = env.reset()
    state: Any = None
    starts = np.ones(n, dtype=bool)
    while (counts < targets).any():
        t0 = clock()
        actions, state = predict(obs, state, starts)
        latencies.append(clock() - t0)
        obs, _rewards, dones, infos = env.step(actions)
        starts = dones
        if dones.any():
            for i in np.flatnonzero(dones):
                info = infos[i].get("episode")
                if info is not None and counts[i] < targets[i]:
                    found.append((int(i), int(counts[i]), float(info["r"]), int(info["l"])))
                    counts[i] += 1
    seconds = time.perf_counter() - started
    found.sort()
    return Played(
        returns=[f[2] for f in found],
        lengths=[f[3] for f in found],
        env_index=[f[0] for f in found],
        episode_index=[f[1] for f in found],
        latencies_ns=latencies,
        seconds=seconds,
    )


@dataclass(frozen=True)
class Timing:
    """Measured, not derived: throughput of the loop and latency of the policy calls."""

    episodes_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float

    @classmethod
    def of(cls, episodes: int, seconds: float, latencies_ns: Sequence[int]) -> Timing:
        ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
        return cls(
            episodes_per_second=episodes / seconds if seconds > 0 else 0.0,
            latency_p50_ms=float(np.percentile(ms, 50)) if ms.size else 0.0,
            latency_p99_ms=float(np.percentile(ms, 99)) if ms.size else 0.0,
        )


def evaluate_entry(
    model: BaseAlgorithm,
    files: ModelFiles,
    spec: BenchmarkEnvironment,
    config: EvaluateConfig,
) -> tuple[list[report.Episode], Timing]:
    """All episodes of one model on one environment, every seed; raises :class:`EntryError`."""
    n_envs = min(config.n_envs, config.episodes)
    env = build_env(spec, n_envs, files.vecnormalize)
    try:
        try:
            check_for_correct_spaces(env, model.observation_space, model.action_space)
        except ValueError as e:
            raise EntryError(f"model {files.name} does not fit {spec.id}: {e}") from e
        predict = predictor(model, env, config.deterministic)
        episodes: list[report.Episode] = []
        seconds, latencies = 0.0, []
        for seed in config.seeds:
            env.seed(seed)
            set_random_seed(seed)
            try:
                played = play(env, predict, config.episodes)
            except Exception as e:  # the policy or the environment crashed
                raise EntryError(f"evaluation of {files.name} on {spec.id} failed: {type(e).__name__}: {e}") from e
            seconds += played.seconds
            latencies += played.latencies_ns
            episodes += [
                report.Episode(files.name, spec.id, seed, i, k, r, n)
                for i, k, r, n in zip(
                    played.env_index, played.episode_index, played.returns, played.lengths, strict=True
                )
            ]
        return episodes, Timing.of(len(episodes), seconds, latencies)
    finally:
        env.close()


# --- the run ---------------------------------------------------------------------------


def configure_inference() -> None:
    """Torch set up for many small batched policy calls.

    One intra-op thread unless ``OMP_NUM_THREADS`` says otherwise: a call on nEnvs observations
    of a small policy is latency-bound, and threads cost more than they save there (large
    convolutional policies belong on a GPU). No argument validation in torch distributions: it
    re-checks every policy output (about a tenth of a CartPole step, see bench/bench_evaluate.py);
    :func:`load_model` rejects non-finite weights once instead.
    """
    import torch

    torch.set_num_threads(user_omp_threads() or 1)
    torch.distributions.Distribution.set_default_validate_args(False)


class BenchmarkReporter:
    """Writes the runner's status fields: progress rate limited and best effort; the results
    with retries, since they are what the Benchmark is for (failing, the pod is retried)."""

    def __init__(self, writer: StatusWriter | None, interval: float, attempts: int = 4, backoff: float = 2.0) -> None:
        self.writer = writer
        self.limiter = RateLimiter(interval)
        self.attempts = attempts
        self.backoff = backoff

    def progress(self, progress: BenchmarkProgress) -> None:
        if not self.limiter.ready():
            return
        self.limiter.mark()
        try:
            self._patch({"progress": _dump(progress)})
        except Exception as e:  # noqa: BLE001 - progress must never stop the evaluation
            log.warning("progress write failed (%s): %s", type(e).__name__, _first_line(e))

    def finish(self, status: dict[str, Any]) -> None:
        """Write the results; raises :class:`InfraError` when the API server keeps refusing."""
        for attempt in range(1, self.attempts + 1):
            try:
                self._patch(status)
                return
            except Exception as e:  # retried, then reported as an infrastructure error
                if attempt == self.attempts:
                    raise InfraError(f"cannot write the results to the Benchmark's status: {_first_line(e)}") from e
                log.warning("results write failed (%s), retrying: %s", type(e).__name__, _first_line(e))
                time.sleep(self.backoff * attempt)

    def _patch(self, status: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.patch({"status": status})


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else ""


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass
class Outcome:
    """Everything the run produced."""

    entries: list[BenchmarkEntry]
    ranking: BenchmarkRanking
    artifacts: BenchmarkArtifacts
    episodes: list[report.Episode]

    @property
    def failed(self) -> list[BenchmarkEntry]:
        return [e for e in self.entries if e.error is not None]


class Evaluator:
    """One attempt (pod) of a Benchmark."""

    def __init__(self, config: EvaluateConfig, storage: Storage, reporter: BenchmarkReporter, workdir: Path) -> None:
        self.config = config
        self.storage = storage
        self.reporter = reporter
        self.workdir = workdir
        self.folder = S3Uri(config.storage.bucket, config.run_prefix.strip("/")).join(REPORT_FOLDER)
        self.total = len(config.models) * len(config.environments)
        self.done = 0
        self.episode_count = 0

    def run(self) -> Outcome:
        config = self.config
        device = resolve_device(config.device)
        configure_inference()
        self.storage.check_bucket(config.storage.bucket, config.run_prefix)
        env_errors = {spec.id: error for spec in config.environments if (error := check_environment(spec)) is not None}
        errors: dict[report.EntryKey, str] = {}
        timings: dict[report.EntryKey, Timing] = {}
        episodes: list[report.Episode] = []
        for index, source in enumerate(config.models):
            model, files, model_error = None, None, None
            try:
                files = fetch_model(self.storage, source, self.workdir / f"model-{index}")
                model = load_model(files, device)
            except EntryError as e:
                model_error = str(e)
            for spec in config.environments:
                key = (source.name, spec.id)
                error = env_errors.get(spec.id) or model_error
                if error is None:
                    assert model is not None and files is not None
                    try:
                        played, timing = evaluate_entry(model, files, spec, config)
                        episodes += played
                        timings[key] = timing
                        self.episode_count += len(played)
                    except EntryError as e:
                        error = str(e)
                if error is not None:
                    log.warning("%s on %s failed: %s", source.name, spec.id, error)
                    errors[key] = error
                else:
                    t = timings[key]
                    log.info(
                        "%s on %s: %.1f episodes/s, policy p50 %.3f ms",
                        source.name,
                        spec.id,
                        t.episodes_per_second,
                        t.latency_p50_ms,
                    )
                self.done += 1
                self.reporter.progress(self._progress())
            if files is not None:
                shutil.rmtree(files.archive.parent, ignore_errors=True)
        settings = report.RankingSettings(
            statistic=config.statistic,
            confidence=config.confidence_level,
            resamples=config.bootstrap_resamples,
            seed=config.bootstrap_seed,
        )
        names = [m.name for m in config.models]
        envs = [e.id for e in config.environments]
        entries, ranking = report.compute_results(names, envs, episodes, errors, settings)
        entries = [_with_timing(e, timings.get((e.model, e.env))) for e in entries]
        artifacts = self._write_reports(entries, ranking, episodes, envs)
        outcome = Outcome(entries, ranking, artifacts, episodes)
        self.reporter.finish(self._status(outcome))
        return outcome

    def _progress(self) -> BenchmarkProgress:
        return BenchmarkProgress(
            entries_done=self.done,
            entries_total=self.total,
            episodes=self.episode_count,
            update_time=datetime.now(UTC).replace(microsecond=0),
        )

    def _write_reports(
        self,
        entries: list[BenchmarkEntry],
        ranking: BenchmarkRanking,
        episodes: list[report.Episode],
        envs: list[str],
    ) -> BenchmarkArtifacts:
        """The episodes first (the raw data), the plot, the table, then the JSON that indexes them."""
        uris = {name: self.folder.join(name) for name in (EPISODES_NAME, PLOT_NAME, TABLE_NAME, RESULTS_NAME)}
        artifacts = BenchmarkArtifacts(
            episodes=str(uris[EPISODES_NAME]),
            table=str(uris[TABLE_NAME]),
            results=str(uris[RESULTS_NAME]),
            plot=str(uris[PLOT_NAME]),
        )
        self.storage.put_bytes(uris[EPISODES_NAME], report.episodes_csv(episodes), "text/csv")
        self.storage.put_bytes(uris[PLOT_NAME], report.comparison_png(entries, ranking, episodes, envs), "image/png")
        self.storage.put_bytes(uris[TABLE_NAME], report.table_csv(entries), "text/csv")
        document = {
            "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "settings": self.config.model_dump(
                mode="json",
                by_alias=True,
                exclude={"kind", "storage", "report_to", "report_interval_seconds", "run_prefix", "models"},
            ),
            "models": [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in self.config.models],
            "entries": [_dump(e) for e in entries],
            "ranking": _dump(ranking),
            "artifacts": _dump(artifacts),
            "versions": versions(),
        }
        self.storage.put_bytes(uris[RESULTS_NAME], json.dumps(document, indent=2).encode())
        log.info("reports in %s", self.folder)
        return artifacts

    def _status(self, outcome: Outcome) -> dict[str, Any]:
        best = outcome.ranking.models[0] if outcome.ranking.models else None
        return {
            "progress": _dump(self._progress()),
            "results": [_dump(e) for e in outcome.entries],
            "ranking": _dump(outcome.ranking),
            "bestModel": best.model if best else None,
            "bestScore": best.score if best else None,
            "artifacts": _dump(outcome.artifacts),
        }


def _with_timing(entry: BenchmarkEntry, timing: Timing | None) -> BenchmarkEntry:
    if timing is None or entry.error is not None:
        return entry
    return entry.model_copy(
        update={
            "episodes_per_second": report.rounded(timing.episodes_per_second),
            "latency_p50_ms": report.rounded(timing.latency_p50_ms),
            "latency_p99_ms": report.rounded(timing.latency_p99_ms),
        }
    )


def versions() -> dict[str, str]:
    """Library versions behind the numbers (a different scipy may draw other bootstrap samples)."""
    import gymnasium
    import scipy
    import stable_baselines3
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "stable-baselines3": stable_baselines3.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
    }


def evaluate(config: EvaluateConfig, storage: Storage, reporter: BenchmarkReporter) -> Outcome:
    """Run a Benchmark; raises :class:`UserError` when not a single entry could be evaluated."""
    workdir = Path(tempfile.mkdtemp(prefix="kubegym-eval-"))
    try:
        outcome = Evaluator(config, storage, reporter, workdir).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if len(outcome.failed) == len(outcome.entries):
        first = outcome.failed[0]
        raise UserError(
            f"none of the {len(outcome.entries)} model x environment entries could be evaluated; "
            f"first: {first.model} on {first.env}: {first.error} (all errors in status.results)"
        )
    return outcome
