"""Evaluation episodes: run a policy on a separate env and summarise the returns.

Returns are those recorded by ``Monitor`` (innermost wrapper), i.e. of the true
environment: with Atari's life-loss wrappers an episode is a whole game, not a life.
MaskablePPO is evaluated with its action masks, recurrent policies with their state
(both through the evaluation helpers of their libraries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from kubegym_api.trainingrun import EvaluationResult


@dataclass(frozen=True)
class EpisodeStats:
    """Returns and lengths of evaluation episodes, and the training step they belong to."""

    timesteps: int
    rewards: tuple[float, ...]
    lengths: tuple[int, ...]
    deterministic: bool

    def summary(self) -> EvaluationResult:
        """Mean and (population) standard deviation of the returns, as in SB3's EvalCallback."""
        rewards = np.asarray(self.rewards, dtype=np.float64)
        return EvaluationResult(
            timesteps=self.timesteps,
            mean_reward=round(float(rewards.mean()), 4) if rewards.size else 0.0,
            std_reward=round(float(rewards.std()), 4) if rewards.size else 0.0,
            episodes=int(rewards.size),
        )

    def to_json(self) -> dict[str, object]:
        """The record written to ``eval/`` (camelCase like the status)."""
        return {
            **self.summary().model_dump(mode="json", by_alias=True),
            "deterministic": self.deterministic,
            "episodeRewards": [round(r, 4) for r in self.rewards],
            "episodeLengths": list(self.lengths),
        }


class EvaluationInterruptedError(Exception):
    """``should_stop`` turned true during an evaluation (SIGTERM): its episodes are discarded."""


def run_episodes(
    model: BaseAlgorithm,
    env: VecEnv,
    episodes: int,
    deterministic: bool,
    should_stop: Callable[[], bool] | None = None,
) -> EpisodeStats:
    """Play ``episodes`` episodes with ``model`` on ``env`` (its VecNormalize already synced).

    ``should_stop`` is polled every step: a long evaluation (Atari games) must not outlast
    the pod's termination grace period.
    """
    from sb3_contrib import MaskablePPO

    def check(_locals: dict[str, Any], _globals: dict[str, Any]) -> None:
        if should_stop is not None and should_stop():
            raise EvaluationInterruptedError

    if isinstance(model, MaskablePPO):
        from sb3_contrib.common.maskable.evaluation import evaluate_policy as maskable_evaluate

        rewards, lengths = maskable_evaluate(
            model,
            env,
            n_eval_episodes=episodes,
            deterministic=deterministic,
            return_episode_rewards=True,
            warn=False,
            callback=check,
        )
    else:
        from stable_baselines3.common.evaluation import evaluate_policy

        rewards, lengths = evaluate_policy(
            model,
            env,
            n_eval_episodes=episodes,
            deterministic=deterministic,
            return_episode_rewards=True,
            warn=False,
            callback=check,
        )
    return EpisodeStats(
        timesteps=model.num_timesteps,
        rewards=tuple(float(r) for r in rewards),  # type: ignore[union-attr]
        lengths=tuple(int(n) for n in lengths),  # type: ignore[union-attr]
        deterministic=deterministic,
    )
