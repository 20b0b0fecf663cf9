"""kubegym_runner.stats against known values and independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from kubegym_api.base import Statistic
from kubegym_runner import stats


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    # 1..8: the middle half is 3, 4, 5, 6.
    assert stats.iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    # An outlier moves the mean, not the IQM.
    x = np.array([10.0, 10, 10, 10, 10, 10, 10, 1000])
    assert stats.iqm(x) == pytest.approx(10.0)
    assert np.mean(x) > 100
    # Unequal quarter: 10 values, 2.5 cut each side -> scipy trims 2 (floor), as rliable does.
    y = np.arange(10.0)
    assert stats.iqm(y) == pytest.approx(np.mean(y[2:8]))


def test_iqm_works_along_the_last_axis() -> None:
    batch = np.array([[1.0, 2, 3, 4, 100], [0.0, 0, 0, 0, 0]])
    assert stats.iqm(batch) == pytest.approx([3.0, 0.0])


def test_summary_matches_numpy() -> None:
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    s = stats.summarize(x, [10, 20, 30, 40, 50, 60, 70, 80])
    assert s.episodes == 8
    assert s.mean == pytest.approx(3.875)
    assert s.std == pytest.approx(np.std(x))  # population std, as evaluate_policy
    assert s.median == pytest.approx(3.5)
    assert s.iqm == pytest.approx(np.mean(np.sort(x)[2:6]))
    assert (s.min, s.max) == (1.0, 9.0)
    assert s.mean_length == pytest.approx(45.0)
    with pytest.raises(ValueError):
        stats.summarize([])


@pytest.mark.parametrize("statistic", list(Statistic))
def test_interval_matches_scipy_percentile_bootstrap(statistic: Statistic) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(100, 15, size=60)
    est = stats.interval_estimate([x], statistic, confidence=0.95, resamples=3000, seed=7)
    fn = stats.statistic_fn(statistic)
    reference = sps.bootstrap(
        (x,),
        lambda s, axis: fn(s, axis=axis),
        n_resamples=3000,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(7),
        vectorized=True,
    ).confidence_interval
    assert est.value == pytest.approx(float(fn(x)))
    assert (est.low, est.high) == pytest.approx((reference.low, reference.high))
    assert est.low < est.value < est.high


def test_interval_is_deterministic_given_the_seed_and_covers_the_truth() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=400)
    a = stats.interval_estimate([x], seed=3)
    b = stats.interval_estimate([x], seed=3)
    c = stats.interval_estimate([x], seed=4)
    assert a == b and a != c
    assert a.low < 0.0 < a.high  # the true IQM of N(0, 1) is 0
    assert a.high - a.low < 0.4


def test_stratified_bootstrap_keeps_each_stratum_whole() -> None:
    # Two strata of constant values: a pooled resample can only ever contain 5 zeros and 5 ones,
    # so the stratified interval of the mean is the single point 0.5. Pooled resampling would vary.
    strata = [np.zeros(5), np.ones(5)]
    est = stats.interval_estimate(strata, Statistic.Mean, seed=0)
    assert (est.value, est.low, est.high) == (0.5, 0.5, 0.5)
    pooled = stats.interval_estimate([np.concatenate(strata)], Statistic.Mean, seed=0)
    assert pooled.low < 0.5 < pooled.high


def test_degenerate_samples_give_a_point_interval() -> None:
    assert stats.interval_estimate([np.full(20, 500.0)]) == stats.Estimate(500.0, 500.0, 500.0)
    assert stats.interval_estimate([[42.0]]) == stats.Estimate(42.0, 42.0, 42.0)
    with pytest.raises(ValueError):
        stats.interval_estimate([[]])


def test_probability_of_improvement_known_values() -> None:
    # Every x beats every y.
    assert stats.probability_of_improvement([[5.0, 6, 7]], [[1.0, 2, 3]]).value == 1.0
    # Identical samples: every comparison a tie, counted one half.
    assert stats.probability_of_improvement([[1.0, 1, 1]], [[1.0, 1, 1]]).value == 0.5
    # x = [1, 3], y = [2]: P(x > y) = 1/2.
    assert stats.probability_of_improvement([[1.0, 3.0]], [[2.0, 2.0]]).value == 0.5
    # Averaged over strata: 1 in the first, 0 in the second.
    two = stats.probability_of_improvement([[5.0, 6], [0.0, 0]], [[1.0, 2], [9.0, 9]])
    assert two.value == 0.5


def test_probability_of_improvement_equals_mann_whitney_u() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 20, 50).astype(float), rng.integers(0, 20, 70).astype(float)  # with ties
    u = sps.mannwhitneyu(x, y).statistic
    est = stats.probability_of_improvement([x], [y], seed=1)
    assert est.value == pytest.approx(u / (50 * 70))
    assert 0 <= est.low <= est.value <= est.high <= 1


def test_min_max_normalisation_per_stratum() -> None:
    scaled = stats.min_max_normalize({"a": {"m1": [0.0, 10.0], "m2": [5.0]}, "b": {"m1": [3.0], "m2": [3.0]}})
    assert scaled["a"]["m1"].tolist() == [0.0, 1.0]
    assert scaled["a"]["m2"].tolist() == [0.5]
    assert scaled["b"]["m1"].tolist() == [0.0]  # nothing to tell apart


def test_rank_orders_by_score_then_name() -> None:
    ranked = stats.rank({"b": [[1.0, 2.0, 3.0]], "a": [[1.0, 2.0, 3.0]], "c": [[9.0, 9.5, 10.0]]}, seed=0)
    assert [r.agent for r in ranked] == ["c", "a", "b"]
    assert ranked[0].estimate.value == pytest.approx(9.5)
