"""Benchmark results from episodes: entries, ranking rules, CSV round trip, the plot."""

from __future__ import annotations

import numpy as np
import pytest

from kubegym_api.base import Statistic
from kubegym_runner import report, stats

SETTINGS = report.RankingSettings(statistic=Statistic.IQM, confidence=0.95, resamples=500, seed=0)


def episodes_of(model: str, env: str, returns: list[float], seed: int = 0) -> list[report.Episode]:
    return [report.Episode(model, env, seed, i % 4, i // 4, r, int(r) + 1) for i, r in enumerate(returns)]


def test_entries_carry_the_statistics_of_their_returns() -> None:
    rng = np.random.default_rng(0)
    good = list(rng.normal(400, 30, 40))
    weak = list(rng.normal(50, 10, 40))
    eps = episodes_of("good", "CartPole-v1", good) + episodes_of("weak", "CartPole-v1", weak)
    entries, ranking = report.compute_results(["good", "weak"], ["CartPole-v1"], eps, {}, SETTINGS)
    g = entries[0]
    assert (g.model, g.env, g.episodes, g.error) == ("good", "CartPole-v1", 40, None)
    assert g.mean == round(float(np.mean(good)), 4)
    assert g.std == round(float(np.std(good)), 4)
    assert g.median == round(float(np.median(good)), 4)
    assert g.iqm == round(float(stats.iqm(good)), 4)
    assert (g.min, g.max) == (round(min(good), 4), round(max(good), 4))
    assert g.mean_episode_length == round(float(np.mean([int(r) + 1 for r in good])), 4)
    assert g.ci_lower is not None and g.ci_upper is not None and g.ci_lower < g.iqm < g.ci_upper
    assert [m.model for m in ranking.models] == ["good", "weak"]
    assert ranking.normalization == "None" and ranking.envs == ["CartPole-v1"]
    assert ranking.models[0].score == g.iqm
    assert ranking.probability_of_improvement is not None
    assert ranking.probability_of_improvement.leader == "good"
    assert ranking.probability_of_improvement.probability == 1.0


def test_a_failed_entry_keeps_its_error_and_leaves_the_ranking() -> None:
    eps = episodes_of("a", "E1", [1.0, 2, 3]) + episodes_of("a", "E2", [5.0, 6, 7]) + episodes_of("b", "E1", [9.0, 9])
    errors = {("b", "E2"): "model b does not fit E2", ("c", "E1"): "model object missing", ("c", "E2"): "missing"}
    entries, ranking = report.compute_results(["a", "b", "c"], ["E1", "E2"], eps, errors, SETTINGS)
    assert [(e.model, e.env, e.error) for e in entries if e.error] == [
        ("b", "E2", "model b does not fit E2"),
        ("c", "E1", "model object missing"),
        ("c", "E2", "missing"),
    ]
    assert all(e.mean is None for e in entries if e.error)
    # b could not be evaluated on E2, so it cannot be ranked against a on both environments.
    assert [m.model for m in ranking.models] == ["a"]
    assert ranking.unranked == ["b", "c"]
    assert ranking.probability_of_improvement is None


def test_long_errors_are_cut_to_fit_the_status_schema() -> None:
    entries, _ = report.compute_results(["a"], ["E"], [], {("a", "E"): "x" * 5000 + "\nend"}, SETTINGS)
    error = entries[0].error
    assert error is not None and len(error) == report.MAX_ERROR and error.endswith("…")


def test_an_environment_nobody_could_play_is_left_out_of_the_ranking() -> None:
    eps = episodes_of("a", "E1", [1.0, 2, 3]) + episodes_of("b", "E1", [4.0, 5, 6])
    errors = {("a", "Bad-v0"): "unknown environment id", ("b", "Bad-v0"): "unknown environment id"}
    _, ranking = report.compute_results(["a", "b"], ["E1", "Bad-v0"], eps, errors, SETTINGS)
    assert ranking.envs == ["E1"]
    assert [m.model for m in ranking.models] == ["b", "a"]


def test_several_environments_rank_on_min_max_normalised_scores() -> None:
    # Env "big" has a 100x larger scale; b wins there by a little, a wins on "small" by a lot.
    eps = (
        episodes_of("a", "small", [1.0, 1.0, 1.0, 1.0])
        + episodes_of("b", "small", [0.0, 0.0, 0.0, 0.0])
        + episodes_of("a", "big", [900.0, 900, 900, 900])
        + episodes_of("b", "big", [1000.0, 1000, 1000, 1000])
    )
    _, ranking = report.compute_results(["a", "b"], ["small", "big"], eps, {}, SETTINGS)
    assert ranking.normalization == "MinMax"
    assert "stratified" in ranking.method
    # Normalised: a = (1, 0), b = (0, 1) -> a tie at 0.5, broken by name; raw means would pick b.
    assert [(m.model, m.score) for m in ranking.models] == [("a", 0.5), ("b", 0.5)]
    assert ranking.probability_of_improvement is not None
    assert ranking.probability_of_improvement.probability == 0.5


def test_episodes_csv_round_trips_exactly() -> None:
    eps = [report.Episode("m", "CartPole-v1", 3, 1, 0, 0.1 + 0.2, 17), report.Episode("n", "E", 0, 0, 2, -1e-17, 1)]
    assert report.read_episodes_csv(report.episodes_csv(eps)) == eps
    with pytest.raises(ValueError):
        report.read_episodes_csv("a,b\n1,2\n")


def test_recomputing_from_the_csv_gives_the_same_results() -> None:
    rng = np.random.default_rng(3)
    eps = episodes_of("a", "E", list(rng.normal(10, 3, 30))) + episodes_of("b", "E", list(rng.normal(9, 3, 30)))
    first = report.compute_results(["a", "b"], ["E"], eps, {}, SETTINGS)
    again = report.compute_results(["a", "b"], ["E"], report.read_episodes_csv(report.episodes_csv(eps)), {}, SETTINGS)
    assert first == again


def test_table_and_plot() -> None:
    eps = episodes_of("a", "E", [1.0, 2, 3]) + episodes_of("b", "E", [4.0, 5, 6])
    entries, ranking = report.compute_results(["a", "b", "c"], ["E"], eps, {("c", "E"): "boom, with a comma"}, SETTINGS)
    table = report.table_csv(entries).decode().splitlines()
    assert table[0].split(",") == list(report.TABLE_COLUMNS)
    assert table[1].startswith("a,E,3,2.0,")
    assert table[3] == 'c,E,0,,,,,,,,,,,,,"boom, with a comma"'
    png = report.comparison_png(entries, ranking, eps, ["E"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
