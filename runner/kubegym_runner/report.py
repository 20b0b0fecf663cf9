"""A Benchmark's results from its episodes: per-entry statistics, the ranking, and the report files.

Pure (numpy and scipy; matplotlib only for the plot). The runner calls :func:`compute_results` on
the episodes it played, and anyone can call it on the saved ``episodes.csv`` and get the very same
numbers: the statistics depend only on the returns, their order (seed, env copy, episode) and the
bootstrap settings stated in the ranking. Timing fields (episodes/s, policy latency) are measured,
not derived, and are merged in by the runner.

An *entry* is one model on one environment. A failed entry carries its error and no numbers. The
ranking covers the environments on which at least one model could be evaluated and the models
evaluated on all of them; the others are listed as unranked, so a broken model cannot win by
having fewer, easier environments.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kubegym_api.base import Statistic
from kubegym_api.benchmark import BenchmarkEntry, BenchmarkRanking, ImprovementProbability, RankedModel
from kubegym_runner import stats

#: Decimal places of every number in the status and the reports.
DIGITS = 4
#: Longest error kept for an entry (``BenchmarkEntry.error`` allows 2048).
MAX_ERROR = 2000
EPISODE_COLUMNS = ("model", "env", "seed", "env_index", "episode", "return", "length")
TABLE_COLUMNS = (
    "model",
    "env",
    "episodes",
    "mean",
    "std",
    "median",
    "iqm",
    "min",
    "max",
    "ci_lower",
    "ci_upper",
    "mean_episode_length",
    "episodes_per_second",
    "latency_p50_ms",
    "latency_p99_ms",
    "error",
)

EntryKey = tuple[str, str]


def shorten(error: str, limit: int = MAX_ERROR) -> str:
    """One line of at most ``limit`` characters (the status schema's bound), its start kept."""
    line = " ".join(error.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def rounded(value: float) -> float:
    """``value`` to :data:`DIGITS` places (the status and the reports hold these)."""
    return round(float(value), DIGITS)


@dataclass(frozen=True)
class Episode:
    """One evaluation episode: which model, environment, seed and env copy played it, and how it went."""

    model: str
    env: str
    seed: int
    env_index: int
    #: Index of the episode among those of its env copy and seed.
    episode: int
    ret: float
    length: int

    @property
    def key(self) -> EntryKey:
        return (self.model, self.env)


@dataclass(frozen=True)
class RankingSettings:
    """The statistic and the bootstrap behind a ranking (stated in it, for recomputation)."""

    statistic: Statistic = Statistic.IQM
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0


def episodes_csv(episodes: Sequence[Episode]) -> bytes:
    """The per-episode CSV; returns are written with ``repr`` so they read back bit for bit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EPISODE_COLUMNS)
    for e in episodes:
        writer.writerow((e.model, e.env, e.seed, e.env_index, e.episode, repr(float(e.ret)), e.length))
    return out.getvalue().encode()


def read_episodes_csv(data: bytes | str) -> list[Episode]:
    """Parse :func:`episodes_csv` output, keeping the row order."""
    text = data.decode() if isinstance(data, bytes) else data
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != EPISODE_COLUMNS:
        raise ValueError(f"not a Benchmark episodes CSV: columns {reader.fieldnames}")
    return [
        Episode(
            model=row["model"],
            env=row["env"],
            seed=int(row["seed"]),
            env_index=int(row["env_index"]),
            episode=int(row["episode"]),
            ret=float(row["return"]),
            length=int(row["length"]),
        )
        for row in reader
    ]


def group(episodes: Sequence[Episode]) -> dict[EntryKey, tuple[np.ndarray, np.ndarray]]:
    """Returns and lengths per entry, in the order given."""
    rets: dict[EntryKey, list[float]] = {}
    lens: dict[EntryKey, list[float]] = {}
    for e in episodes:
        rets.setdefault(e.key, []).append(e.ret)
        lens.setdefault(e.key, []).append(float(e.length))
    return {k: (np.asarray(rets[k], dtype=np.float64), np.asarray(lens[k], dtype=np.float64)) for k in rets}


def _entry(model: str, env: str, returns: np.ndarray, lengths: np.ndarray, settings: RankingSettings) -> BenchmarkEntry:
    summary = stats.summarize(returns, lengths)
    interval = stats.interval_estimate(
        [returns], settings.statistic, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
    )
    return BenchmarkEntry(
        model=model,
        env=env,
        episodes=summary.episodes,
        mean=rounded(summary.mean),
        std=rounded(summary.std),
        median=rounded(summary.median),
        iqm=rounded(summary.iqm),
        min=rounded(summary.min),
        max=rounded(summary.max),
        ci_lower=rounded(interval.low),
        ci_upper=rounded(interval.high),
        mean_episode_length=rounded(summary.mean_length) if summary.mean_length is not None else None,
    )


def compute_results(
    models: Sequence[str],
    envs: Sequence[str],
    episodes: Sequence[Episode],
    errors: Mapping[EntryKey, str],
    settings: RankingSettings,
) -> tuple[list[BenchmarkEntry], BenchmarkRanking]:
    """Per-entry statistics (models x envs, in that order) and the ranking."""
    samples = group(episodes)
    entries: list[BenchmarkEntry] = []
    for model in models:
        for env in envs:
            key = (model, env)
            if key in errors:
                entries.append(BenchmarkEntry(model=model, env=env, error=shorten(errors[key])))
            elif key in samples:
                entries.append(_entry(model, env, *samples[key], settings))
            else:
                entries.append(BenchmarkEntry(model=model, env=env, error="no episode was recorded"))
    ok = {(e.model, e.env) for e in entries if e.error is None}
    return entries, compute_ranking(models, envs, {k: samples[k][0] for k in ok}, settings)


def compute_ranking(
    models: Sequence[str],
    envs: Sequence[str],
    returns: Mapping[EntryKey, np.ndarray],
    settings: RankingSettings,
) -> BenchmarkRanking:
    """Rank the models evaluated on every environment that any model could be evaluated on.

    One environment: the statistic of the raw returns. Several: of the min-max normalised returns
    pooled over environments, with a bootstrap stratified by environment.
    """
    ranked_envs = [env for env in envs if any((m, env) in returns for m in models)]
    rankable = [m for m in models if ranked_envs and all((m, env) in returns for env in ranked_envs)]
    unranked = [m for m in models if m not in rankable]
    normalization: Literal["None", "MinMax"] = "MinMax" if len(ranked_envs) > 1 else "None"
    if normalization == "MinMax":
        scaled = stats.min_max_normalize({env: {m: returns[(m, env)] for m in rankable} for env in ranked_envs})
        scores = {m: [scaled[env][m] for env in ranked_envs] for m in rankable}
    else:
        scores = {m: [returns[(m, env)] for env in ranked_envs] for m in rankable}
    ranked = stats.rank(
        scores, settings.statistic, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
    )
    improvement = None
    if len(ranked) >= 2:
        leader, runner_up = ranked[0].agent, ranked[1].agent
        p = stats.probability_of_improvement(
            [returns[(leader, env)] for env in ranked_envs],
            [returns[(runner_up, env)] for env in ranked_envs],
            confidence=settings.confidence,
            resamples=settings.resamples,
            seed=settings.seed,
        )
        improvement = ImprovementProbability(
            leader=leader,
            runner_up=runner_up,
            probability=rounded(p.value),
            ci_lower=rounded(p.low),
            ci_upper=rounded(p.high),
        )
    return BenchmarkRanking(
        statistic=settings.statistic,
        confidence_level=settings.confidence,
        method=f"{'stratified ' if len(ranked_envs) > 1 else ''}{stats.BOOTSTRAP_METHOD} bootstrap (scipy.stats)",
        bootstrap_resamples=settings.resamples,
        bootstrap_seed=settings.seed,
        normalization=normalization,
        envs=ranked_envs,
        models=[
            RankedModel(
                rank=i + 1,
                model=r.agent,
                score=rounded(r.estimate.value),
                ci_lower=rounded(r.estimate.low),
                ci_upper=rounded(r.estimate.high),
            )
            for i, r in enumerate(ranked)
        ],
        unranked=unranked,
        probability_of_improvement=improvement,
    )


def table_csv(entries: Sequence[BenchmarkEntry]) -> bytes:
    """The per-entry statistics as a CSV table (one row per model x environment)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for entry in entries:
        row = entry.model_dump()
        writer.writerow(["" if row[c] is None else row[c] for c in TABLE_COLUMNS])
    return out.getvalue().encode()


def comparison_png(
    entries: Sequence[BenchmarkEntry],
    ranking: BenchmarkRanking,
    episodes: Sequence[Episode],
    envs: Sequence[str],
) -> bytes:
    """One panel per environment (every episode's return, and the ranking statistic with its
    interval) plus, for several environments, the aggregate ranking on normalised scores."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    samples = group(episodes)
    order = [r.model for r in ranking.models] + list(ranking.unranked)
    models = order or list(dict.fromkeys(e.model for e in entries))
    by_key = {(e.model, e.env): e for e in entries}
    panels: list[str | None] = list(envs) + ([None] if len(ranking.envs) > 1 else [])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 0.6 * len(models) + 1.6), squeeze=False, sharey=True
    )
    stat = ranking.statistic
    level = f"{ranking.confidence_level:.0%} CI"
    rng = np.random.default_rng(0)
    for ax, env in zip(axes[0], panels, strict=True):
        ax.set_yticks(range(len(models)), models)
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        if env is None:
            for y, r in enumerate(ranking.models):
                ax.errorbar(r.score, y, xerr=[[r.score - r.ci_lower], [r.ci_upper - r.score]], fmt="o", capsize=4)
            ax.set_title(f"all environments: {stat} ({level})", fontsize=9)
            ax.set_xlabel("min-max normalised return")
            continue
        for y, model in enumerate(models):
            entry = by_key.get((model, env))
            if entry is None or entry.error is not None:
                ax.text(0.02, y, "failed", transform=ax.get_yaxis_transform(), va="center", color="tab:red")
                continue
            returns = samples[(model, env)][0]
            jitter = y + rng.uniform(-0.18, 0.18, returns.size)
            ax.scatter(returns, jitter, s=6, alpha=0.25, color="grey")
            score = {"IQM": entry.iqm, "Mean": entry.mean, "Median": entry.median}[str(stat)]
            if score is not None and entry.ci_lower is not None and entry.ci_upper is not None:
                ax.errorbar(
                    score, y, xerr=[[score - entry.ci_lower], [entry.ci_upper - score]], fmt="o", capsize=4, color="k"
                )
        ax.set_title(f"{env}: {stat} ({level})", fontsize=9)
        ax.set_xlabel("episode return")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
