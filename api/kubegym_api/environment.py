"""Which environment a run trains or a Benchmark evaluates on, and how its copies are built.

A TrainingRun's ``environment`` is passed to the runner as it is (an :class:`EnvironmentConfig`
in the spec is the same object in the runner's configuration); a Benchmark's environments have
no vectorisation of their own (the Benchmark's ``nEnvs`` copies are stepped together) but can
stack frames like the models were trained with.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field

from kubegym_api.base import Model


class VecEnvMode(enum.StrEnum):
    """How the training env copies are stepped: ``auto`` chooses ``dummy`` or ``subproc``."""

    auto = "auto"
    dummy = "dummy"
    subproc = "subproc"


class Wrapper(Model):
    """A gymnasium wrapper applied to every environment copy."""

    name: str = Field(
        description=(
            "Wrapper to apply: a short name (AtariPreprocessing, FrameStack, "
            "TimeLimit, ...) or an importable 'module:Class'."
        ),
        min_length=1,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the wrapper.")


class EnvironmentConfig(Model):
    """Which environment to train or evaluate on, and how many copies to run."""

    id: str = Field(
        description="Registered gymnasium id, e.g. CartPole-v1 or ALE/Pong-v5.",
        min_length=1,
        max_length=256,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for gymnasium.make.")
    module: str | None = Field(
        default=None,
        description=(
            "Python module imported before the env is made, for custom environments "
            "that register their ids on import ('my_pkg.envs')."
        ),
    )
    wrappers: list[Wrapper] = Field(default_factory=list, description="Wrappers applied in order to each env copy.")
    n_envs: int = Field(default=1, ge=1, le=256, description="Number of parallel environment copies.")
    vec_env: VecEnvMode = Field(
        default=VecEnvMode.auto,
        description="Vectorisation of the training copies: 'auto' (default) picks 'subproc' when the pod's CPU "
        "request allows 2 or more workers and the env is expensive to step (Atari, MuJoCo, Box2D ids, or a "
        "measured step above 0.2 ms), else 'dummy'; 'dummy' steps every copy in the trainer's process; "
        "'subproc' steps them in worker processes, never more workers than the CPU request allows (copies are "
        "grouped per worker). status.progress.compute shows the choice.",
    )
    normalize: bool = Field(
        default=False,
        description="Wrap in VecNormalize (observation and reward normalisation).",
    )


class BenchmarkEnvironment(Model):
    """One environment of a Benchmark; its parallel copies are the Benchmark's ``nEnvs``."""

    id: str = Field(
        description="Registered gymnasium id (CartPole-v1, ALE/Pong-v5) or 'module:Class'.",
        min_length=1,
        max_length=256,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for gymnasium.make.")
    module: str | None = Field(
        default=None,
        max_length=256,
        description="Python module imported before the env is made (custom envs that register on import).",
    )
    wrappers: list[Wrapper] = Field(
        default_factory=list,
        max_length=32,
        description="Wrappers applied in order to each copy; use the ones the models were trained with.",
    )
    frame_stack: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Stack this many frames (VecFrameStack), for models trained with frame stacking.",
    )
