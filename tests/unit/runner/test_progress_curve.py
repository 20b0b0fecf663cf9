"""The evaluation curve on ``status.progress``: bounded, evenly thinned, first and last kept."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from kubegym_api.trainingrun import MAX_EVALUATION_POINTS, EvaluationPoint, thin_evaluations
from kubegym_runner.progress import build_status_patch, make_progress


def points(n: int) -> list[EvaluationPoint]:
    return [EvaluationPoint(timesteps=1000 * (i + 1), mean_reward=float(i)) for i in range(n)]


def test_short_curves_are_kept_whole() -> None:
    assert thin_evaluations(points(5)) == points(5)


def test_long_curves_are_thinned_evenly() -> None:
    thinned = thin_evaluations(points(1000))
    assert len(thinned) == MAX_EVALUATION_POINTS
    assert thinned[0] == points(1000)[0] and thinned[-1] == points(1000)[-1]
    gaps = {b.timesteps - a.timesteps for a, b in itertools.pairwise(thinned)}
    assert max(gaps) - min(gaps) <= 1000
    assert thin_evaluations(points(10), limit=1) == points(10)[-1:]


def test_progress_carries_the_curve_in_the_patch() -> None:
    progress = make_progress(
        timesteps=4096,
        total_timesteps=10000,
        steps_per_second=None,
        episode_rewards=[],
        episode_lengths=[],
        episodes=0,
        last_evaluation=None,
        resumed_from_step=0,
        evaluations=points(3),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    patch = build_status_patch(progress)
    assert patch["status"]["progress"]["evaluations"] == [
        {"timesteps": 1000, "meanReward": 0.0},
        {"timesteps": 2000, "meanReward": 1.0},
        {"timesteps": 3000, "meanReward": 2.0},
    ]
