"""Evaluation episodes: the summary, and interruption by termination."""

from __future__ import annotations

import pytest
from stable_baselines3 import PPO

from kubegym_runner.envs import EnvFactory, EnvPlan, build_vec_env
from kubegym_runner.episodes import EpisodeStats, EvaluationInterruptedError, run_episodes


def test_summary_is_mean_and_population_std() -> None:
    stats = EpisodeStats(timesteps=100, rewards=(1.0, 3.0), lengths=(5, 7), deterministic=True)
    summary = stats.summary()
    assert (summary.timesteps, summary.mean_reward, summary.std_reward, summary.episodes) == (100, 2.0, 1.0, 2)
    record = stats.to_json()
    assert record["meanReward"] == 2.0 and record["episodeLengths"] == [5, 7] and record["deterministic"] is True


def test_episodes_run_and_stop_on_request() -> None:
    env = build_vec_env(EnvPlan(EnvFactory("CartPole-v1")), seed=0, evaluation=True)
    try:
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, device="cpu", seed=0)
        stats = run_episodes(model, env, episodes=2, deterministic=True)
        assert len(stats.rewards) == 2 and all(r == n for r, n in zip(stats.rewards, stats.lengths, strict=True))
        with pytest.raises(EvaluationInterruptedError):
            run_episodes(model, env, episodes=2, deterministic=True, should_stop=lambda: True)
    finally:
        env.close()
