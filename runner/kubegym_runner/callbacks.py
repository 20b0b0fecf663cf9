"""Hooks into stable-baselines3's ``learn`` loop: periodic actions, progress, termination.

Checkpoints and evaluations run at rollout boundaries (``on_rollout_start``): there the
policy has been updated with every step taken so far, so a checkpoint's weights, its
step count and (off-policy) its replay buffer agree. Thresholds are multiples of
``everySteps`` counted in total timesteps, so a resumed run keeps the same cadence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from kubegym_api.trainingrun import TrainingProgress
from kubegym_runner.progress import ProgressReporter
from kubegym_runner.signals import TerminationRequest


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` strictly after ``step``."""
    return (step // every + 1) * every


class PeriodicCallback(BaseCallback):
    """Calls ``action`` at the first rollout boundary at or past each multiple of ``every``."""

    def __init__(self, every: int, action: Callable[[], None]) -> None:
        super().__init__()
        self.every = every
        self.action = action
        self.next_step = every

    def _on_training_start(self) -> None:
        self.next_step = next_multiple(self.num_timesteps, self.every)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_step:
            self.action()
            self.next_step = next_multiple(self.num_timesteps, self.every)

    def _on_step(self) -> bool:
        return True


class StopOnTermination(BaseCallback):
    """Stops ``learn`` at the next step once SIGTERM has arrived.

    ``stopped`` tells whether it did: stable-baselines3 counts a step (``num_timesteps``)
    before its callbacks and, for off-policy algorithms, stores that step's transition after
    them, so the step ``learn`` stopped on has no transition in the replay buffer.
    """

    def __init__(self, termination: TerminationRequest) -> None:
        super().__init__()
        self.termination = termination
        self.stopped = False

    def _on_step(self) -> bool:
        self.stopped = self.termination.requested
        return not self.stopped


class ProgressCallback(BaseCallback):
    """Counts finished episodes and hands a progress snapshot to the reporter when it is due."""

    def __init__(
        self,
        reporter: ProgressReporter,
        snapshot: Callable[[], TrainingProgress],
        episodes: int = 0,
    ) -> None:
        super().__init__()
        self.reporter = reporter
        self.snapshot = snapshot
        self.episodes = episodes

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos", [])
        self.episodes += sum(1 for info in infos if "episode" in info)
        if self.reporter.due():
            self.reporter.report(self.snapshot())
        return True
