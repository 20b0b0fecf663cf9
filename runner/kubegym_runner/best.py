"""The best model by periodic evaluation: which evaluation wins, and what a restarted pod keeps.

A run's final model is only its last state: DQN on CartPole with rl-zoo3's preset evaluates 94, 88,
500, 97 at its periodic evaluations and 20.5 at the end. So, as rl-zoo3's ``EvalCallback`` does,
the runner keeps the model of the best periodic evaluation in ``best/`` beside ``final/`` and
reports it as ``status.best``. The rules, pure here so they are tested without a model:

* An evaluation becomes the best when its mean reward beats the best so far: strictly, so a tie
  keeps the earlier model (fewer steps to the same score). A NaN mean never wins.
* The final evaluation is not a candidate: its model is ``final/`` already.
* A restarted pod (its own checkpoint at step S) continues from the best that ``best/manifest.json``
  records if that evaluation's step is at most S; a best from past S belonged to a timeline that
  was lost with the pod (the evaluation history drops those steps too), so it is dropped, and the
  next evaluation of the new timeline replaces it. A run started by ``resumeFrom`` has a folder of
  its own and starts with no best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kubegym_api.trainingrun import BestModelStatus, EvaluationResult


def improves(candidate: EvaluationResult, best: EvaluationResult | None) -> bool:
    """Whether ``candidate`` becomes the best: a finite mean above the best's (ties keep the earlier)."""
    if not math.isfinite(candidate.mean_reward):
        return False
    return best is None or candidate.mean_reward > best.mean_reward


def kept_on_resume(stored: EvaluationResult | None, resumed_step: int) -> EvaluationResult | None:
    """The stored best a run restarted from its own checkpoint at ``resumed_step`` goes on with."""
    if stored is None or stored.timesteps > resumed_step:
        return None
    return stored


@dataclass
class BestTracker:
    """The best periodic evaluation of this run so far (``None``: none yet)."""

    best: EvaluationResult | None = None

    def offer(self, candidate: EvaluationResult) -> bool:
        """Record ``candidate`` if it is the new best; True when it is (its model is to be kept)."""
        if not improves(candidate, self.best):
            return False
        self.best = candidate
        return True


def best_status(evaluation: EvaluationResult, uri: str) -> BestModelStatus:
    """``status.best`` for the model of ``evaluation`` kept at ``uri``."""
    return BestModelStatus(
        uri=uri,
        step=evaluation.timesteps,
        mean_reward=evaluation.mean_reward,
        std_reward=evaluation.std_reward,
        episodes=evaluation.episodes,
    )
