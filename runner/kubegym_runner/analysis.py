"""An Experiment's answer from its runs' raw data: per-run scores, per-configuration aggregates
across seeds, learning curves and plots (pure: pandas, numpy, the shared stats module).

Every run gets one score (the objective's metric, rounded to ``report.DIGITS`` places as in
every table); a configuration's score is the objective's statistic (IQM by default) of its runs'
scores, with a percentile bootstrap confidence interval over those runs. This is rliable's
aggregate with a single task: the stratified bootstrap resamples runs within each environment,
and an Experiment has one. The interval is therefore about seeds, the variance that single-run
comparisons hide. Recomputing a status number needs only ``runs.csv`` and the bootstrap
settings stated in the report.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kubegym_api.base import Statistic
from kubegym_api.experiment import (
    BestConfiguration,
    ConfigurationResult,
    Direction,
    MemberStatus,
    Objective,
    ObjectiveMetric,
)
from kubegym_api.runnerconfig import ReportConfiguration, ReportRun, RunOutcome
from kubegym_runner import stats
from kubegym_runner.report import rounded

#: Columns of ``runs.csv`` before the hyperparameter columns, and after them.
RUN_COLUMNS = ("run", "configuration", "seed", "outcome")
SCORE_COLUMNS = (
    "timesteps",
    "total_timesteps",
    "evaluations",
    "last_evaluation",
    "best_evaluation",
    "mean_evaluation",
    "final_reward",
    "final_std",
    "final_episodes",
    "benchmark_score",
    "score",
)
CONFIGURATION_COLUMNS = (
    "rank",
    "configuration",
    "summary",
    "runs",
    "failed",
    "early_stopped",
    "score",
    "ci_lower",
    "ci_upper",
    "mean",
    "std",
    "min",
    "max",
)
CURVE_COLUMNS = ("run", "configuration", "seed", "timesteps", "mean_reward")
#: Most points of a learning curve (a bootstrap interval is computed at each).
MAX_CURVE_POINTS = 200


@dataclass(frozen=True)
class BootstrapSettings:
    """The interval's coverage and the bootstrap behind it (stated in the report)."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    @property
    def method(self) -> str:
        return f"{stats.BOOTSTRAP_METHOD} bootstrap over run scores, stratified by environment (scipy.stats)"


@dataclass(frozen=True)
class RunData:
    """One run's raw numbers, as read from its ``eval/`` folder and the final Benchmark."""

    run: ReportRun
    #: Periodic evaluations: (timesteps, mean return), in order.
    evaluations: tuple[tuple[int, float], ...] = ()
    #: Returns of the final evaluation's episodes, if the run finished.
    final_returns: tuple[float, ...] | None = None
    final_timesteps: int | None = None
    #: Returns of the run's model's episodes in the final Benchmark, if it was benchmarked.
    benchmark_returns: tuple[float, ...] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def summary_of(hyperparameters: Mapping[str, Any]) -> str:
    """``name=value, ...`` in name order (as the operator writes it); ``template`` when empty."""
    if not hyperparameters:
        return "template"
    return ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'), sort_keys=True)}"
        for k, v in sorted(hyperparameters.items())
    )


def _better(a: float, b: float, direction: Direction) -> bool:
    return a > b if direction == Direction.Maximize else a < b


def run_score(data: RunData, objective: Objective) -> float | None:
    """The run's score under the objective; None when the run has none (it failed, say).

    FinalReward: the final evaluation's mean return; a run stopped early scores its last
    evaluation (it has no final one), so stopping never hides a bad configuration's runs.
    BestEvaluation and MeanEvaluation: over the periodic evaluations and the final one.
    Benchmark: the objective's statistic of the run's episodes in the final Benchmark.
    """
    curve = [r for _, r in data.evaluations]
    final = float(np.mean(data.final_returns)) if data.final_returns else None
    metric = ObjectiveMetric(objective.metric)
    value: float | None
    if metric == ObjectiveMetric.FinalReward:
        value = final
        if value is None and data.run.outcome == RunOutcome.EarlyStopped and curve:
            value = curve[-1]
    elif metric == ObjectiveMetric.BestEvaluation:
        points = [*curve, *([final] if final is not None else [])]
        value = (max(points) if objective.direction == Direction.Maximize else min(points)) if points else None
    elif metric == ObjectiveMetric.MeanEvaluation:
        value = float(np.mean(curve)) if curve else final
    else:
        returns = data.benchmark_returns
        value = float(stats.statistic_fn(objective.statistic)(np.asarray(returns))) if returns else None
    return rounded(value) if value is not None and math.isfinite(value) else None


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else json.dumps(value, sort_keys=True)


def runs_table(
    runs: Sequence[RunData], configurations: Sequence[ReportConfiguration], objective: Objective
) -> pd.DataFrame:
    """One row per run: identity, its configuration's hyperparameters (one column each),
    what its curve and final evaluation say, and its score."""
    by_id = {c.id: c for c in configurations}
    names = sorted({k for c in configurations for k in c.hyperparameters})
    reserved = set(RUN_COLUMNS) | set(SCORE_COLUMNS)
    hp_columns = {n: (f"hp_{n}" if n in reserved else n) for n in names}
    rows = []
    for data in runs:
        run, curve = data.run, [r for _, r in data.evaluations]
        final = data.final_returns
        steps = data.final_timesteps or (data.evaluations[-1][0] if data.evaluations else None)
        best = None
        if curve:
            best = max(curve) if objective.direction == Direction.Maximize else min(curve)
        row: dict[str, Any] = {
            "run": run.name,
            "configuration": run.configuration,
            "seed": run.seed,
            "outcome": str(run.outcome),
        }
        hyperparameters = by_id[run.configuration].hyperparameters if run.configuration in by_id else {}
        for name, column in hp_columns.items():
            row[column] = _cell(hyperparameters.get(name))
        row.update(
            {
                "timesteps": steps,
                "total_timesteps": run.total_timesteps,
                "evaluations": len(curve),
                "last_evaluation": rounded(curve[-1]) if curve else None,
                "best_evaluation": rounded(best) if best is not None else None,
                "mean_evaluation": rounded(float(np.mean(curve))) if curve else None,
                "final_reward": rounded(float(np.mean(final))) if final else None,
                "final_std": rounded(float(np.std(final))) if final else None,
                "final_episodes": len(final) if final else None,
                "benchmark_score": (
                    rounded(float(stats.statistic_fn(objective.statistic)(np.asarray(data.benchmark_returns))))
                    if data.benchmark_returns
                    else None
                ),
                "score": run_score(data, objective),
            }
        )
        rows.append(row)
    columns = [*RUN_COLUMNS, *hp_columns.values(), *SCORE_COLUMNS]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("timesteps", "total_timesteps", "final_episodes"):
        table[column] = table[column].astype("Int64")
    return table


def aggregate(
    table: pd.DataFrame,
    configurations: Sequence[ReportConfiguration],
    objective: Objective,
    settings: BootstrapSettings,
) -> list[ConfigurationResult]:
    """Per-configuration statistic of the run scores with its bootstrap interval, best first.

    Configurations whose runs all lack a score (all failed) are left out; ties keep the
    configurations' order.
    """
    statistic = Statistic(objective.statistic)
    scored: list[tuple[float, int, ConfigurationResult]] = []
    for index, config in enumerate(configurations):
        rows = table[table["configuration"] == config.id].sort_values("seed", kind="stable")
        scores = np.asarray([s for s in rows["score"] if s is not None and not pd.isna(s)], dtype=np.float64)
        if scores.size == 0:
            continue
        estimate = stats.interval_estimate(
            [scores], statistic, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
        )
        result = ConfigurationResult(
            rank=1,
            configuration=config.id,
            hyperparameters=config.hyperparameters,
            runs=int(scores.size),
            failed=int((rows["outcome"] == RunOutcome.Failed.value).sum()),
            early_stopped=int((rows["outcome"] == RunOutcome.EarlyStopped.value).sum()),
            score=rounded(estimate.value),
            ci_lower=rounded(estimate.low),
            ci_upper=rounded(estimate.high),
            mean=rounded(float(np.mean(scores))),
            std=rounded(float(np.std(scores))),
            min=rounded(float(np.min(scores))),
            max=rounded(float(np.max(scores))),
        )
        key = -result.score if objective.direction == Direction.Maximize else result.score
        scored.append((key, index, result))
    ordered = [r for _, _, r in sorted(scored, key=lambda t: (t[0], t[1]))]
    return [r.model_copy(update={"rank": i + 1}) for i, r in enumerate(ordered)]


def best_of(results: Sequence[ConfigurationResult]) -> BestConfiguration | None:
    """The rank-1 configuration."""
    if not results:
        return None
    top = results[0]
    return BestConfiguration(
        configuration=top.configuration,
        summary=summary_of(top.hyperparameters),
        hyperparameters=top.hyperparameters,
        score=top.score,
        ci_lower=top.ci_lower,
        ci_upper=top.ci_upper,
    )


def configurations_table(
    configurations: Sequence[ReportConfiguration], results: Sequence[ConfigurationResult]
) -> pd.DataFrame:
    """Every configuration with its aggregate (empty cells for one without a score)."""
    by_id = {r.configuration: r for r in results}
    rows = []
    for config in configurations:
        result = by_id.get(config.id)
        row: dict[str, Any] = {"configuration": config.id, "summary": summary_of(config.hyperparameters)}
        if result is not None:
            dumped = result.model_dump()
            row.update({c: dumped[c] for c in CONFIGURATION_COLUMNS if c not in row})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(CONFIGURATION_COLUMNS))
    table["rank"] = table["rank"].astype("Int64")
    return table.sort_values("rank", kind="stable", na_position="last").reset_index(drop=True)


def curves_table(runs: Sequence[RunData]) -> pd.DataFrame:
    """Every periodic evaluation of every run (long format)."""
    rows = [
        {"run": d.run.name, "configuration": d.run.configuration, "seed": d.run.seed, "timesteps": t, "mean_reward": r}
        for d in runs
        for t, r in d.evaluations
    ]
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


@dataclass(frozen=True)
class CurveBand:
    """A configuration's learning curve: mean across runs with its interval, on a common grid."""

    configuration: str
    timesteps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int


def curve_band(curves: pd.DataFrame, configuration: str, settings: BootstrapSettings) -> CurveBand | None:
    """Each run interpolated on the union of its configuration's evaluation steps, within its
    own range (a run stopped early contributes only where it got to); the mean across the runs
    present at a step, and a bootstrap interval of that mean where two or more are."""
    rows = curves[curves["configuration"] == configuration]
    if rows.empty:
        return None
    grid = np.unique(rows["timesteps"].to_numpy(dtype=np.float64))
    if grid.size > MAX_CURVE_POINTS:
        grid = grid[np.linspace(0, grid.size - 1, MAX_CURVE_POINTS).round().astype(int)]
    per_run = []
    for _, run in rows.groupby("run", sort=True):
        t = run["timesteps"].to_numpy(dtype=np.float64)
        r = run["mean_reward"].to_numpy(dtype=np.float64)
        values = np.interp(grid, t, r)
        values[(grid < t.min()) | (grid > t.max())] = np.nan
        per_run.append(values)
    matrix = np.vstack(per_run)
    mean = np.full(grid.size, np.nan)
    low = np.full(grid.size, np.nan)
    high = np.full(grid.size, np.nan)
    for i in range(grid.size):
        column = matrix[:, i][~np.isnan(matrix[:, i])]
        if column.size == 0:
            continue
        estimate = stats.interval_estimate(
            [column], Statistic.Mean, confidence=settings.confidence, resamples=settings.resamples, seed=settings.seed
        )
        mean[i], low[i], high[i] = estimate.value, estimate.low, estimate.high
    return CurveBand(configuration, grid, mean, low, high, len(per_run))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    _pyplot().close(fig)
    return out.getvalue()


def learning_curves_png(
    curves: pd.DataFrame,
    configurations: Sequence[ReportConfiguration],
    settings: BootstrapSettings,
    title: str,
) -> bytes:
    """Evaluation return against timesteps: per configuration the mean across seeds and its
    confidence band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for config in configurations:
        band = curve_band(curves, config.id, settings)
        if band is None:
            continue
        label = f"{config.id}: {summary_of(config.hyperparameters)} ({band.runs} runs)"
        (line,) = ax.plot(band.timesteps, band.mean, label=label)
        ax.fill_between(band.timesteps, band.low, band.high, alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set_xlabel("timesteps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{title}: mean across seeds, {settings.confidence:.0%} bootstrap CI", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def final_scores_png(
    table: pd.DataFrame,
    configurations: Sequence[ReportConfiguration],
    results: Sequence[ConfigurationResult],
    objective: Objective,
    settings: BootstrapSettings,
    title: str,
) -> bytes:
    """Every run's score (dots) and each configuration's statistic with its interval, best on top."""
    plt = _pyplot()
    ranked = [r.configuration for r in results]
    order = ranked + [c.id for c in configurations if c.id not in ranked]
    summaries = {c.id: summary_of(c.hyperparameters) for c in configurations}
    by_id = {r.configuration: r for r in results}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(order) + 1.6))
    ax.set_yticks(range(len(order)), [f"{c}: {summaries[c]}"[:60] for c in order])
    ax.invert_yaxis()
    rng = np.random.default_rng(0)
    for y, config in enumerate(order):
        scores = [s for s in table[table["configuration"] == config]["score"] if s is not None and not pd.isna(s)]
        if scores:
            ax.scatter(scores, y + rng.uniform(-0.15, 0.15, len(scores)), s=14, alpha=0.5, color="grey")
        result = by_id.get(config)
        if result is None:
            ax.text(0.02, y, "no score", transform=ax.get_yaxis_transform(), va="center", color="tab:red")
            continue
        ax.errorbar(
            result.score,
            y,
            xerr=[[result.score - result.ci_lower], [result.ci_upper - result.score]],
            fmt="o",
            capsize=4,
            color="k",
        )
    ax.set_xlabel(f"run score ({objective.metric})")
    ax.set_title(
        f"{title}: {objective.statistic} across seeds, {settings.confidence:.0%} bootstrap CI ({objective.direction})",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def lineage_table(population: Sequence[MemberStatus]) -> pd.DataFrame:
    """Every segment of every PBT member, one row each: where it started, from what, with what."""
    rows = []
    for member in population:
        for step in member.lineage:
            rows.append(
                {
                    "member": member.member,
                    "seed": member.seed,
                    "generation": step.generation,
                    "step": step.step,
                    "run": step.run,
                    "source": step.source,
                    "copied_from": step.copied_from,
                    "score": step.score,
                    **{f"hp.{k}": _cell(v) for k, v in sorted(step.hyperparameters.items())},
                }
            )
    return pd.DataFrame(rows)


def population_png(curves: pd.DataFrame, population: Sequence[MemberStatus], title: str) -> bytes:
    """Top: each member's evaluation curve over its segments, a dot where it copied another member.
    Below: one panel per numeric hyperparameter, each member's value against timesteps (its schedule)."""
    plt = _pyplot()
    names = sorted(
        {
            k
            for m in population
            for s in m.lineage
            for k, v in s.hyperparameters.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    fig, axes = plt.subplots(1 + len(names), 1, figsize=(8, 3.2 * (1 + len(names))), sharex=True, squeeze=False)
    ax = axes[0][0]
    for member in population:
        runs = [s.run for s in member.lineage]
        points = curves[curves["run"].isin(runs)].sort_values("timesteps")
        (line,) = ax.plot(points["timesteps"], points["mean_reward"], label=member.member, marker=".", markersize=3)
        for s in member.lineage:
            if s.copied_from is not None:
                ax.axvline(s.step, color=line.get_color(), alpha=0.25, linestyle=":")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{title}: the population (dotted: a member copied another)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", ncol=2)
    # Each schedule runs on to the end of its last segment (the last evaluation of the population).
    end = float(curves["timesteps"].max()) if len(curves) else None
    for i, name in enumerate(names, start=1):
        ax = axes[i][0]
        for member in population:
            steps: list[float] = [s.step for s in member.lineage]
            values = [s.hyperparameters.get(name) for s in member.lineage]
            if end is not None and steps and end > steps[-1]:
                steps, values = [*steps, end], [*values, values[-1]]
            ax.step(steps, values, where="post", label=member.member)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
        values = [s.hyperparameters.get(name) for m in population for s in m.lineage]
        positive = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]
        if len(positive) == len(values) and max(positive) / min(positive) > 20:
            ax.set_yscale("log")
    axes[-1][0].set_xlabel("timesteps")
    fig.tight_layout()
    return _png(fig)


def csv_bytes(table: pd.DataFrame) -> bytes:
    """CSV with floats written exactly (``repr``), so numbers read back bit for bit."""
    text: str = table.to_csv(index=False, lineterminator="\n")
    return text.encode()


def parquet_bytes(table: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    table.to_parquet(out, index=False, engine="pyarrow")
    return out.getvalue()
