"""Robust statistics for comparing agents: IQM, stratified bootstrap intervals, probability of improvement.

The methods are those of Agarwal et al. (2021), *Deep RL at the Edge of the Statistical Precipice*
(the rliable library): rank by the interquartile mean, which is robust to a few outlier episodes
yet uses half the data (the median uses one point); report a percentile bootstrap confidence
interval that resamples **within** each stratum (environment), so every environment keeps its
weight in every resample; and state the probability that one agent beats another on a random
episode rather than only comparing point estimates.

The computations are scipy's (``trim_mean``, ``bootstrap``, ``rankdata``), not rliable's: rliable
pins an old ``arch`` that does not build on current toolchains, while scipy is maintained, already
a runner dependency, and its ``bootstrap`` with several independent samples *is* the stratified
bootstrap. Every function is deterministic given its ``seed``, so a number in a Benchmark's status
can be recomputed from the saved per-episode returns. Pure numpy in, floats out: Experiment uses
the same functions on per-seed scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from kubegym_api.base import Statistic

Array = npt.NDArray[np.float64]
#: A statistic reduces the last axis: ``f(samples, axis=-1)``; it must accept batched input.
StatisticFn = Callable[..., Array]

#: Fraction trimmed from each end for the interquartile mean.
IQM_TRIM = 0.25
#: scipy's name of the interval method, stated in every ranking.
BOOTSTRAP_METHOD = "percentile"
#: Values per bootstrap batch (resamples x sample size), to bound memory on large samples.
BATCH_VALUES = 4_000_000


def iqm(samples: npt.ArrayLike, axis: int = -1) -> Array:
    """Interquartile mean: the mean of the middle 50% (scipy's 25% trimmed mean, as rliable)."""
    return np.asarray(sps.trim_mean(samples, IQM_TRIM, axis=axis), dtype=np.float64)


def _mean(samples: npt.ArrayLike, axis: int = -1) -> Array:
    return np.asarray(np.mean(np.asarray(samples, dtype=np.float64), axis=axis), dtype=np.float64)


def _median(samples: npt.ArrayLike, axis: int = -1) -> Array:
    return np.asarray(np.median(np.asarray(samples, dtype=np.float64), axis=axis), dtype=np.float64)


STATISTICS: Mapping[Statistic, StatisticFn] = {
    Statistic.IQM: iqm,
    Statistic.Mean: _mean,
    Statistic.Median: _median,
}


def statistic_fn(statistic: Statistic | str) -> StatisticFn:
    """The function computing ``statistic`` along the last axis."""
    return STATISTICS[Statistic(statistic)]


def as_array(values: npt.ArrayLike) -> Array:
    """A 1-d float64 copy of ``values``."""
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample of episode returns (and lengths)."""

    episodes: int
    mean: float
    std: float
    median: float
    iqm: float
    min: float
    max: float
    mean_length: float | None


def summarize(returns: npt.ArrayLike, lengths: npt.ArrayLike | None = None) -> Summary:
    """Mean, population std (as stable-baselines3's evaluate_policy), median, IQM, extremes."""
    x = as_array(returns)
    if x.size == 0:
        raise ValueError("no episodes to summarize")
    mean_length = float(np.mean(as_array(lengths))) if lengths is not None and np.size(lengths) else None
    return Summary(
        episodes=int(x.size),
        mean=float(np.mean(x)),
        std=float(np.std(x)),
        median=float(np.median(x)),
        iqm=float(iqm(x)),
        min=float(np.min(x)),
        max=float(np.max(x)),
        mean_length=mean_length,
    )


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float


def _bootstrap(
    samples: Sequence[Array],
    statistic: Callable[..., Array],
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(*samples)``, each sample resampled independently."""
    size = sum(s.size for s in samples)
    result = sps.bootstrap(
        tuple(samples),
        statistic,
        n_resamples=resamples,
        batch=max(1, min(resamples, BATCH_VALUES // size)),
        vectorized=True,
        paired=False,
        axis=-1,
        confidence_level=confidence,
        method=BOOTSTRAP_METHOD,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval_estimate(
    strata: Sequence[npt.ArrayLike],
    statistic: Statistic | str = Statistic.IQM,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic`` of the pooled strata with a stratified percentile bootstrap interval.

    Each stratum (one environment's returns, say) is resampled with replacement on its own and
    the statistic is taken over the pooled resample. With one stratum this is the ordinary
    percentile bootstrap. A stratum of fewer than two values has no sampling distribution to
    estimate; the interval then collapses to the point.
    """
    fn = statistic_fn(statistic)
    samples = [as_array(s) for s in strata]
    if not samples or any(s.size == 0 for s in samples):
        raise ValueError("every stratum needs at least one value")
    point = float(fn(np.concatenate(samples)))
    if any(s.size < 2 for s in samples):
        return Estimate(point, point, point)

    def pooled(*resampled: Array, axis: int = -1) -> Array:
        return fn(np.concatenate(resampled, axis=axis), axis=axis)

    low, high = _bootstrap(samples, pooled, confidence=confidence, resamples=resamples, seed=seed)
    return Estimate(point, low, high)


def _probability_greater(x: Array, y: Array) -> Array:
    """P(X > Y) + P(X = Y) / 2 along the last axis: the Mann-Whitney U of x over (n m)."""
    n, m = x.shape[-1], y.shape[-1]
    ranks = sps.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    u = ranks[..., :n].sum(axis=-1) - n * (n + 1) / 2.0
    return np.asarray(u / (n * m), dtype=np.float64)


def probability_of_improvement(
    x_strata: Sequence[npt.ArrayLike],
    y_strata: Sequence[npt.ArrayLike],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Probability that X scores higher than Y on a random episode, averaged over strata.

    Per stratum it is the Mann-Whitney U statistic normalised to [0, 1] (ties count one half),
    as rliable's ``probability_of_improvement``; the interval comes from a bootstrap that
    resamples X and Y independently within each stratum.
    """
    xs, ys = [as_array(s) for s in x_strata], [as_array(s) for s in y_strata]
    if len(xs) != len(ys) or not xs:
        raise ValueError("x and y need the same, non-zero number of strata")
    if any(s.size == 0 for s in (*xs, *ys)):
        raise ValueError("every stratum needs at least one value")
    point = float(np.mean([_probability_greater(x, y) for x, y in zip(xs, ys, strict=True)]))
    if any(s.size < 2 for s in (*xs, *ys)):
        return Estimate(point, point, point)
    k = len(xs)

    def averaged(*resampled: Array, axis: int = -1) -> Array:
        per_stratum = [_probability_greater(resampled[i], resampled[k + i]) for i in range(k)]
        return np.asarray(np.mean(per_stratum, axis=0), dtype=np.float64)

    low, high = _bootstrap([*xs, *ys], averaged, confidence=confidence, resamples=resamples, seed=seed)
    return Estimate(point, low, high)


def min_max_normalize(by_stratum: Mapping[str, Mapping[str, npt.ArrayLike]]) -> dict[str, dict[str, Array]]:
    """Scale each stratum's scores to [0, 1] by the lowest and highest score of any agent there.

    Aggregating raw returns over environments would let the one with the largest scale decide
    the ranking; without reference scores (random, human) min-max over the compared agents is
    the neutral choice. A stratum where every score is equal carries no information and maps to 0.
    """
    out: dict[str, dict[str, Array]] = {}
    for stratum, by_agent in by_stratum.items():
        arrays = {agent: as_array(v) for agent, v in by_agent.items()}
        lo = min(float(a.min()) for a in arrays.values())
        hi = max(float(a.max()) for a in arrays.values())
        span = hi - lo
        out[stratum] = {agent: (a - lo) / span if span > 0 else np.zeros_like(a) for agent, a in arrays.items()}
    return out


@dataclass(frozen=True)
class Ranked:
    """An agent's score (the statistic over its pooled strata) and interval."""

    agent: str
    estimate: Estimate


def rank(
    scores: Mapping[str, Sequence[npt.ArrayLike]],
    statistic: Statistic | str = Statistic.IQM,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[Ranked]:
    """Agents ordered by ``statistic`` (best first; ties by name), each with its interval.

    ``scores[agent]`` lists the agent's samples per stratum, strata in the same order for all.
    """
    ranked = [
        Ranked(agent, interval_estimate(strata, statistic, confidence=confidence, resamples=resamples, seed=seed))
        for agent, strata in scores.items()
    ]
    return sorted(ranked, key=lambda r: (-r.estimate.value, r.agent))
