"""Vectorised environments from an :class:`~kubegym_api.environment.EnvironmentConfig`.

An environment is named by a registered gymnasium id (``CartPole-v1``, ``ALE/Pong-v5``,
an id registered by ``environment.module`` on import) or by ``module:Class`` / ``module:factory``
for an env class that registers nothing. Wrappers are gymnasium's by short name
(``AtariPreprocessing``, ``FrameStackObservation``, ``TimeLimit``...), a few of
stable-baselines3/sb3-contrib's (``AtariWrapper``, ``TimeFeatureWrapper``, ``ActionMasker``),
or any importable class as ``module:Class`` (or ``module.Class``, rl-zoo3's spelling).

Each copy is built by a picklable :class:`EnvFactory`, so ``subproc`` workers import the
custom module themselves, as gymnasium's registry does not cross process boundaries. With
``subproc`` and fewer workers than copies (the pod's CPU share caps them), each worker steps a
group of copies (:class:`~kubegym_runner.vecenv.GroupedSubprocVecEnv`).

Wrapper order, bottom to top: the env, the spec's ``wrappers`` (they define the task:
a ``TimeLimit`` must end episodes where ``Monitor`` sees it), SB3's ``Monitor`` (the
episode returns reported in progress and evaluations), then a preset's ``env_wrapper``
(as rl-zoo3 places it, so ``AtariWrapper``'s life-loss episodes and clipped rewards
shape training while scores stay those of whole games).

Importing rl-zoo3 (every plan does) swaps gymnasium's ``TimeLimit`` for its
``PatchedTimeLimit`` subclass, which also sets ``info["TimeLimit.truncated"]``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import multiprocessing
import pickle
import signal
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
)

from kubegym_api.environment import VecEnvMode, Wrapper
from kubegym_runner.errors import UserError
from kubegym_runner.safeload import load_vecnormalize
from kubegym_runner.vecenv import GroupedSubprocVecEnv

log = logging.getLogger(__name__)

EnvWrapper = Callable[[gym.Env], gym.Env]
VecEnvWrapper = Callable[[VecEnv], VecEnv]

#: Names kept for compatibility with older gymnasium spellings.
WRAPPER_ALIASES = {"FrameStack": "FrameStackObservation", "GrayScaleObservation": "GrayscaleObservation"}


def register_builtin_envs() -> None:
    """Register the Atari ids (``ALE/...``) of ale-py with gymnasium."""
    import ale_py

    gym.register_envs(ale_py)


def import_module(name: str, purpose: str) -> Any:
    """Import ``name``; a missing module is a user error (the image lacks it or it is misspelt)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UserError(f"cannot import {purpose} module {name!r}: {e}") from e


def import_object(path: str, purpose: str) -> Any:
    """Resolve ``module:attr`` or ``module.attr`` to the object it names."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise UserError(f"{purpose} {path!r} is not of the form 'module:Name'")
    module = import_module(module_name, purpose)
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise UserError(f"module {module_name!r} has no {purpose} {attr!r}") from e


def check_env_id(env_id: str) -> None:
    """Fail with close matches when ``env_id`` is not registered."""
    if env_id in gym.registry:
        return
    matches = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    raise UserError(f"unknown environment id {env_id!r}{hint}")


#: Wrappers of stable-baselines3 and sb3-contrib known by short name (gymnasium's are too).
SB3_WRAPPERS = {
    "AtariWrapper": "stable_baselines3.common.atari_wrappers:AtariWrapper",
    "TimeFeatureWrapper": "sb3_contrib.common.wrappers:TimeFeatureWrapper",
    "ActionMasker": "sb3_contrib.common.wrappers:ActionMasker",
}


def short_wrapper_names() -> list[str]:
    """Every wrapper name that needs no module path."""
    import gymnasium.wrappers

    gym_names = [n for n in gymnasium.wrappers.__all__ if n[:1].isupper()]
    return sorted({*gym_names, *SB3_WRAPPERS, *WRAPPER_ALIASES})


def resolve_wrapper(name: str) -> Callable[..., gym.Env]:
    """The wrapper class for a short name or an importable ``module:Class``/``module.Class``."""
    import gymnasium.wrappers

    name = WRAPPER_ALIASES.get(name, name)
    if name in SB3_WRAPPERS:
        return import_object(SB3_WRAPPERS[name], "wrapper")  # type: ignore[no-any-return]
    if name in gymnasium.wrappers.__all__ and name[:1].isupper():
        try:
            return getattr(gymnasium.wrappers, name)  # type: ignore[no-any-return]
        except ImportError as e:  # lazily imported wrappers with optional dependencies
            raise UserError(f"wrapper {name!r} needs a package the image lacks: {e}") from e
    if ":" in name or "." in name:
        obj = import_object(name, "wrapper")
        if not isinstance(obj, type) or not issubclass(obj, gym.Wrapper):
            raise UserError(f"wrapper {name!r} is not a gymnasium.Wrapper class")
        return obj
    known = short_wrapper_names()
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(matches)}? " if matches else ""
    raise UserError(f"unknown wrapper {name!r}: {hint}use one of {', '.join(known)} or 'module:Class'")


def _ignore_termination_in_worker() -> None:
    # A pod's SIGTERM may reach subprocess workers too; they must keep stepping until the
    # main process has saved its checkpoint and closes them.
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class EnvFactory:
    """Makes one environment copy: imports the custom module, makes the env, wraps it.

    Called by stable-baselines3's ``make_vec_env``, which puts ``Monitor`` on what
    :meth:`__call__` returns and :meth:`wrap` on top of that.
    """

    env_id: str
    module: str | None = None
    wrappers: tuple[Wrapper, ...] = ()
    #: rl-zoo3's ``env_wrapper`` of a preset, applied before the spec's wrappers.
    preset_wrapper: EnvWrapper | None = None

    def make(self, **kwargs: Any) -> gym.Env:
        """The bare environment, from the registry or a ``module:Class``."""
        register_builtin_envs()
        if self.module:
            import_module(self.module, "environment")
        if ":" in self.env_id:
            module_name, _, name = self.env_id.partition(":")
            module = import_module(module_name, "environment")
            target = getattr(module, name, None)
            if callable(target):
                env = target(**kwargs)
                if not isinstance(env, gym.Env):
                    raise UserError(f"{self.env_id} did not return a gymnasium.Env")
                return env
            # gymnasium's own 'module:EnvId' form: the module registers EnvId on import.
            check_env_id(name)
            return gym.make(name, **kwargs)
        check_env_id(self.env_id)
        return gym.make(self.env_id, **kwargs)

    def __call__(self, **kwargs: Any) -> gym.Env:
        """The env with the spec's wrappers applied in order (what ``Monitor`` measures)."""
        _ignore_termination_in_worker()
        env = self.make(**kwargs)
        for wrapper in self.wrappers:
            env = resolve_wrapper(wrapper.name)(env, **wrapper.kwargs)
        return env

    def wrap(self, env: gym.Env) -> gym.Env:
        """The preset's wrapper, above ``Monitor``."""
        return self.preset_wrapper(env) if self.preset_wrapper is not None else env


@dataclass(frozen=True)
class EnvPlan:
    """Everything needed to build the training or evaluation VecEnv (spec merged with preset)."""

    factory: EnvFactory
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    n_envs: int = 1
    #: ``dummy`` or ``subproc`` (``auto`` is resolved by the plan; here it means dummy).
    vec_env: str = VecEnvMode.dummy.value
    #: subproc worker processes; fewer than ``n_envs`` groups the copies; 0: one per copy.
    workers: int = 0
    #: VecNormalize keyword arguments, or ``None`` for no normalisation.
    normalize: Mapping[str, Any] | None = None
    frame_stack: int | None = None
    vec_env_wrapper: VecEnvWrapper | None = None

    @property
    def env_id(self) -> str:
        return self.factory.env_id


def make_single_env(plan: EnvPlan) -> gym.Env:
    """One wrapped copy, to read the observation and action spaces before training."""
    try:
        return plan.factory.wrap(plan.factory(**plan.kwargs))
    except UserError:
        raise
    except Exception as e:  # gymnasium raises many types for bad ids, kwargs and wrappers
        raise UserError(f"cannot make environment {plan.env_id!r}: {type(e).__name__}: {e}") from e


def probe_spaces(plan: EnvPlan) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """Observation and action space of the wrapped env (before vectorisation wrappers)."""
    probe = probe_env(plan)
    return probe.observation_space, probe.action_space


@dataclass(frozen=True)
class EnvProbe:
    """One wrapped copy, looked at before training: its spaces and, if timed, its step cost."""

    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]
    #: Median wall seconds of a random-action step (resets included), or ``None`` if not timed.
    step_seconds: float | None = None


#: Untimed steps before timing (lazy initialisation, caches).
PROBE_WARMUP_STEPS = 5
#: Most wall seconds the step-cost probe may take.
PROBE_BUDGET_SECONDS = 0.5


def time_steps(env: gym.Env, steps: int, budget: float = PROBE_BUDGET_SECONDS) -> float | None:
    """Median seconds of a step with random actions over at most ``steps`` steps (after a few
    untimed ones) and ``budget`` seconds in all; an episode that ends is reset within its step's
    time. The median, not the mean, so that the process being preempted on a busy node does not
    make a cheap env look expensive. ``None`` if stepping fails (an env that wants other actions
    than its space samples, say): the caller decides without it."""
    try:
        env.action_space.seed(0)
        env.reset(seed=0)
        durations: list[float] = []
        began = time.perf_counter()
        for i in range(PROBE_WARMUP_STEPS + steps):
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
            took = time.perf_counter() - t0
            if i >= PROBE_WARMUP_STEPS:
                durations.append(took)
            if time.perf_counter() - began > budget:  # warm-up included: a slow env costs one budget
                durations = durations or [took]
                break
    except Exception as e:  # noqa: BLE001 - the probe is advisory; training will show the real error
        log.info("step cost not measured: %s: %s", type(e).__name__, e)
        return None
    return statistics.median(durations) if durations else None


def probe_env(plan: EnvPlan, steps: int = 0) -> EnvProbe:
    """The wrapped env's spaces and, for ``steps`` > 0, the median cost of a step (:func:`time_steps`)."""
    env = make_single_env(plan)
    try:
        step_seconds = time_steps(env, steps) if steps > 0 else None
        return EnvProbe(env.observation_space, env.action_space, step_seconds)
    finally:
        env.close()


def build_vec_env(
    plan: EnvPlan,
    *,
    seed: int,
    evaluation: bool = False,
    vecnormalize: Path | None = None,
) -> VecEnv:
    """The VecEnv for training, or for evaluation (one dummy copy, frozen normalisation).

    ``vecnormalize`` restores saved normalisation statistics (from a checkpoint).
    """
    n_envs = 1 if evaluation else plan.n_envs
    vec_cls: type[VecEnv] = DummyVecEnv
    vec_kwargs: dict[str, Any] = {}
    if plan.vec_env == VecEnvMode.subproc.value and not evaluation:
        if 0 < plan.workers < n_envs:
            vec_cls, vec_kwargs = GroupedSubprocVecEnv, {"workers": plan.workers}
        else:
            vec_cls = SubprocVecEnv
    try:
        env: VecEnv = make_vec_env(
            plan.factory,
            n_envs=n_envs,
            seed=seed,
            wrapper_class=plan.factory.wrap,
            env_kwargs=dict(plan.kwargs),
            vec_env_cls=vec_cls,  # type: ignore[arg-type]
            vec_env_kwargs=vec_kwargs,
        )
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"cannot make environment {plan.env_id!r}: {type(e).__name__}: {e}") from e
    if vecnormalize is not None:
        try:
            env = load_vecnormalize(vecnormalize, env)
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
            env.close()
            raise UserError(
                f"cannot restore the VecNormalize statistics {vecnormalize}: {type(e).__name__}: {e}"
            ) from e
    elif plan.normalize is not None:
        env = VecNormalize(env, **dict(plan.normalize))
    if isinstance(env, VecNormalize) and evaluation:
        # Evaluation uses the training statistics (synced before each run) and raw rewards.
        env.training = False
        env.norm_reward = False
    if plan.frame_stack:
        env = VecFrameStack(env, plan.frame_stack)
    if plan.vec_env_wrapper is not None:
        env = plan.vec_env_wrapper(env)
    return env
