"""Algorithms: the stable-baselines3/sb3-contrib class for each name, and checks against it.

Everything is checked against the algorithm itself rather than a table of ours, so a new
SB3 release changes the rules in one place: hyperparameter names come from the class's
``__init__`` signature, policies from its ``policy_aliases``, and the supported action
spaces from SB3's own ``supported_action_spaces`` check (probed with a throw-away env).

Values are checked against the same signature's annotations (an ``int`` argument gets an
integer, a ``float`` one a number), plus the few bounds SB3 does not check itself but that can
only diverge or silently mean something else (:data:`VALUE_BOUNDS`, and a batch larger than the
buffer it is drawn from): SB3 accepts ``gamma: "high"`` or ``learning_rate: 1e308`` at
construction and fails only once training has started, and then not as a user error.
"""

from __future__ import annotations

import collections.abc
import difflib
import importlib
import inspect
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv

from kubegym_api.base import Algorithm
from kubegym_api.hyperparameters import ACTION_NOISE_KEYS, ImportPath, parse_hyperparameters
from kubegym_api.pyliteral import LiteralError, Symbol
from kubegym_runner.envs import import_object
from kubegym_runner.errors import UserError

#: Where each algorithm lives (the module is imported on first use).
ALGORITHM_MODULES = {
    Algorithm.PPO: "stable_baselines3",
    Algorithm.A2C: "stable_baselines3",
    Algorithm.DQN: "stable_baselines3",
    Algorithm.SAC: "stable_baselines3",
    Algorithm.TD3: "stable_baselines3",
    Algorithm.DDPG: "stable_baselines3",
    Algorithm.RecurrentPPO: "sb3_contrib",
    Algorithm.QRDQN: "sb3_contrib",
    Algorithm.TQC: "sb3_contrib",
    Algorithm.TRPO: "sb3_contrib",
    Algorithm.MaskablePPO: "sb3_contrib",
}

#: Constructor arguments that are not hyperparameters: where they are set instead.
RESERVED_ARGUMENTS = {
    "policy": "spec.policy",
    "env": "spec.environment",
    "seed": "spec.seed",
    "device": "spec.device",
    "tensorboard_log": None,
    "_init_setup_model": None,
}

#: rl-zoo3 keys turned into constructor arguments by its preprocessing (action noise).
ZOO_NOISE_KEYS = ACTION_NOISE_KEYS

#: Action-space types probed to learn what an algorithm supports.
_PROBE_ACTION_SPACES: tuple[spaces.Space[Any], ...] = (
    spaces.Box(-1.0, 1.0, (1,), np.float32),
    spaces.Discrete(2),
    spaces.MultiDiscrete([2, 2]),
    spaces.MultiBinary(2),
)


def algorithm_class(algorithm: Algorithm | str) -> type[BaseAlgorithm]:
    """The SB3/sb3-contrib class of ``algorithm``."""
    try:
        name = Algorithm(algorithm)
    except ValueError as e:
        valid = ", ".join(a.value for a in Algorithm)
        raise UserError(f"unknown algorithm {algorithm!r}; valid: {valid}") from e
    module = importlib.import_module(ALGORITHM_MODULES[name])
    cls: type[BaseAlgorithm] = getattr(module, name.value)
    return cls


def hyperparameter_names(cls: type[BaseAlgorithm]) -> list[str]:
    """Names the spec may set in ``hyperparameters``: the constructor's keyword arguments."""
    params = inspect.signature(cls.__init__).parameters
    return sorted(
        name
        for name, p in params.items()
        if name != "self" and name not in RESERVED_ARGUMENTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def is_off_policy(cls: type[BaseAlgorithm]) -> bool:
    """Whether the algorithm learns from a replay buffer."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    return issubclass(cls, OffPolicyAlgorithm)


def validate_hyperparameters(cls: type[BaseAlgorithm], hyperparameters: Mapping[str, Any]) -> None:
    """Reject names the algorithm does not take, naming the closest valid ones."""
    valid = hyperparameter_names(cls)
    allowed = set(valid) | (ZOO_NOISE_KEYS if is_off_policy(cls) else set())
    for name in hyperparameters:
        if name in allowed:
            continue
        if name in RESERVED_ARGUMENTS:
            where = RESERVED_ARGUMENTS[name]
            hint = f"set {where} instead" if where else "it is managed by the runner"
            raise UserError(f"hyperparameter {name!r} is not allowed for {cls.__name__}: {hint}")
        matches = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(matches)}? " if matches else ""
        raise UserError(f"unknown hyperparameter {name!r} for {cls.__name__}: {hint}valid: {', '.join(valid)}")


@dataclass(frozen=True)
class Bound:
    """The closed interval ``[low, high]`` (``low`` excluded when ``low_open``)."""

    low: float
    high: float
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def __str__(self) -> str:
        return f"{self.low:g} {'<' if self.low_open else '<='} x <= {self.high:g}"


#: Bounds of numeric hyperparameters that SB3 accepts outside them and then diverges (a
#: learning rate of 1e308 turns the first update into NaN), computes nonsense (a discount
#: above 1) or quietly replaces (a replay buffer of 0 becomes 1). For learning_rate they bound
#: the number or the schedule's initial value.
VALUE_BOUNDS: dict[str, Bound] = {
    "learning_rate": Bound(0.0, 1.0, low_open=True),
    "gamma": Bound(0.0, 1.0),
    "gae_lambda": Bound(0.0, 1.0),
    "tau": Bound(0.0, 1.0),
    "exploration_fraction": Bound(0.0, 1.0),
    "exploration_initial_eps": Bound(0.0, 1.0),
    "exploration_final_eps": Bound(0.0, 1.0),
    "buffer_size": Bound(1.0, math.inf),
}

#: Hyperparameters whose string form is rl-zoo3's linear schedule ``lin_<initial value>``.
SCHEDULES = frozenset({"learning_rate", "clip_range", "clip_range_vf"})


def _is_callable_type(annotation: Any) -> bool:
    return annotation is collections.abc.Callable or typing.get_origin(annotation) is collections.abc.Callable


def _expected(annotation: Any) -> tuple[str | None, bool]:
    """What an ``__init__`` annotation asks for: ``bool``, ``int``, ``float``, ``schedule`` (a number
    or a schedule), ``mapping``, or None (not checked here); and whether None is allowed."""
    args = (
        set(typing.get_args(annotation))
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else {annotation}
    )
    optional = type(None) in args
    args.discard(type(None))
    if args in ({bool}, {int}, {float}):
        return next(iter(args)).__name__, optional
    if float in args and len(args) == 2 and any(_is_callable_type(a) for a in args):
        return "schedule", optional
    if len(args) == 1 and typing.get_origin(next(iter(args))) is dict:
        return "mapping", optional
    return None, optional


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe_value(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _schedule_start(value: str) -> float | None:
    """The initial value of rl-zoo3's ``lin_<initial value>``, None if ``value`` is not one."""
    kind, _, initial = value.partition("_")
    if kind != "lin":
        return None
    try:
        start = float(initial)
    except ValueError:
        return None
    return start if math.isfinite(start) else None


def _value_problem(name: str, value: Any, annotation: Any) -> str | None:
    """Why ``value`` cannot be ``name`` (typed ``annotation``), or None."""
    expected, optional = _expected(annotation)
    if value is None:
        return None if optional or expected is None else "must be set (null given)"
    number: float | None = None
    if expected == "bool":
        if not isinstance(value, bool):
            return f"must be true or false, got {_describe_value(value)}"
    elif expected == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {_describe_value(value)}"
        number = value
    elif expected == "float":
        if not _number(value):
            return f"must be a number, got {_describe_value(value)}"
        number = value
    elif expected == "schedule":
        if isinstance(value, str):
            number = _schedule_start(value)
            if number is None:
                return f"must be a number or a linear schedule 'lin_<initial value>' (e.g. lin_3e-4), got {value!r}"
        elif _number(value):
            number = value
        else:
            return f"must be a number or a linear schedule 'lin_<initial value>', got {_describe_value(value)}"
    elif expected == "mapping":
        if not isinstance(value, Mapping | str):  # a string is rl-zoo3's literal form, parsed later
            return f"must be a mapping of keyword arguments, got {_describe_value(value)}"
    elif _number(value):
        number = value
    if number is not None:
        if not math.isfinite(number):
            return f"must be finite, got {number!r}"
        bound = VALUE_BOUNDS.get(name)
        if bound is not None and number not in bound:
            return f"must satisfy {bound}, got {number!r}"
    return None


def validate_hyperparameter_values(cls: type[BaseAlgorithm], hyperparameters: Mapping[str, Any]) -> None:
    """Reject values of the wrong type for the constructor's annotation, and values outside
    :data:`VALUE_BOUNDS`, naming the hyperparameter (names are checked first, by
    :func:`validate_hyperparameters`)."""
    params = inspect.signature(cls.__init__).parameters
    problems = [
        f"{name} {problem}"
        for name, value in sorted(hyperparameters.items())
        if name in params and (problem := _value_problem(name, value, params[name].annotation)) is not None
    ]
    if problems:
        raise UserError(f"invalid hyperparameters for {cls.__name__}: {'; '.join(problems)}")


def _argument(cls: type[BaseAlgorithm], hyperparameters: Mapping[str, Any], name: str) -> Any:
    """The value the constructor will get for ``name``: the given one, else its default."""
    if name in hyperparameters:
        return hyperparameters[name]
    param = inspect.signature(cls.__init__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def check_batch_size(cls: type[BaseAlgorithm], hyperparameters: Mapping[str, Any], n_envs: int) -> None:
    """Fail when ``batch_size`` exceeds the buffer its batches are drawn from: SB3 trains on
    anyway (a rollout smaller than the batch is used whole; a replay buffer is sampled with
    repetition), so the run would not train as its spec says."""
    batch = _argument(cls, hyperparameters, "batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool):
        return
    n_steps = _argument(cls, hyperparameters, "n_steps")
    if isinstance(n_steps, int) and not is_off_policy(cls) and batch > n_steps * n_envs:
        raise UserError(
            f"batch_size {batch} is larger than the rollout buffer of {cls.__name__} "
            f"(n_steps {n_steps} x {n_envs} env copies = {n_steps * n_envs} transitions); "
            "lower batch_size or raise n_steps"
        )
    buffer = _argument(cls, hyperparameters, "buffer_size")
    if isinstance(buffer, int) and is_off_policy(cls) and batch > buffer:
        raise UserError(
            f"batch_size {batch} is larger than the replay buffer of {cls.__name__} (buffer_size {buffer}); "
            "lower batch_size or raise buffer_size"
        )


class _ProbeEnv(gym.Env[np.ndarray, Any]):
    """A do-nothing env with a given action space, for SB3's constructor checks."""

    def __init__(self, action_space: spaces.Space[Any]) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return np.zeros(2, np.float32), 0.0, True, False, {}


@cache
def supported_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space[Any]], ...]:
    """Action-space types ``cls`` accepts, as SB3's constructor decides (no network is built)."""
    policy = next(iter(cls.policy_aliases))
    supported = []
    for space in _PROBE_ACTION_SPACES:
        env = DummyVecEnv([lambda space=space: _ProbeEnv(space)])  # type: ignore[misc]
        try:
            cls(policy, env, _init_setup_model=False)  # type: ignore[call-arg]
        except AssertionError:
            continue
        finally:
            env.close()
        supported.append(type(space))
    return tuple(supported)


def check_action_space(cls: type[BaseAlgorithm], action_space: spaces.Space[Any], env_id: str) -> None:
    """Fail before training when ``cls`` cannot act in ``action_space`` (DQN on Pendulum)."""
    supported = supported_action_spaces(cls)
    if not isinstance(action_space, supported):
        names = ", ".join(s.__name__ for s in supported)
        raise UserError(
            f"{cls.__name__} does not support the action space of {env_id} ({action_space}); it supports: {names}"
        )


def resolve_policy(
    cls: type[BaseAlgorithm], policy: str | type | None, observation_space: spaces.Space[Any]
) -> str | type:
    """The policy to construct: the spec's (an alias or ``module:Class``) or one that fits
    the observations (MultiInput for dicts, Cnn for images, Mlp otherwise)."""
    aliases = list(cls.policy_aliases)
    if isinstance(policy, type):
        return policy
    if policy is None:
        if isinstance(observation_space, spaces.Dict):
            prefix = "MultiInput"
        elif is_image_space(observation_space, check_channels=False):
            prefix = "Cnn"
        else:
            prefix = "Mlp"
        return next((a for a in aliases if a.startswith(prefix)), aliases[0])
    if policy in aliases:
        return policy
    if ":" in policy or "." in policy:
        from stable_baselines3.common.policies import BasePolicy

        resolved = import_object(policy, "policy")
        if not isinstance(resolved, type) or not issubclass(resolved, BasePolicy):
            raise UserError(f"policy {policy!r} is not a stable-baselines3 policy class")
        return resolved
    raise UserError(f"unknown policy {policy!r} for {cls.__name__}; valid: {', '.join(aliases)}")


def _class_bases() -> dict[str, type]:
    """The kind of class each class-valued argument must be, checked after import."""
    import torch
    from stable_baselines3.common.buffers import BaseBuffer
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    return {
        "activation_fn": torch.nn.Module,
        "optimizer_class": torch.optim.Optimizer,
        "features_extractor_class": BaseFeaturesExtractor,
        "replay_buffer_class": BaseBuffer,
        "rollout_buffer_class": BaseBuffer,
    }


def _resolve_names(value: Any, key: str, bases: Mapping[str, type]) -> Any:
    """A parsed value with every :class:`Symbol`/:class:`ImportPath` replaced by its class."""
    if isinstance(value, Symbol | ImportPath):
        written = value.name if isinstance(value, Symbol) else value.path
        obj = import_object(value.target if isinstance(value, Symbol) else value.path, key)
        if not isinstance(obj, type):
            raise UserError(f"{key} {written!r} is not a class")
        base = bases.get(key)
        if base is not None and not issubclass(obj, base):
            raise UserError(f"{key} {written!r} is not a {base.__module__}.{base.__qualname__}")
        return obj
    if isinstance(value, Mapping):
        return {k: _resolve_names(v, str(k), bases) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_resolve_names(v, key, bases) for v in value)
    return value


def resolve_hyperparameters(hyperparameters: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``hyperparameters`` with their Python-literal strings parsed (never evaluated) and class
    names turned into classes: ``"dict(net_arch=[64], activation_fn=nn.ReLU)"`` → a dict holding
    ``torch.nn.ReLU``, ``"replay_buffer_class": "HerReplayBuffer"`` → the class.

    Parsing is :func:`kubegym_api.hyperparameters.parse_hyperparameters`, the operator's check too;
    rl-zoo3's preprocessing then only sees values, so its ``eval`` never runs. ``where`` names the
    source in errors (``spec.hyperparameters``, the preset). Raises :class:`UserError`.
    """
    try:
        parsed = parse_hyperparameters(hyperparameters, where)
    except LiteralError as e:
        raise UserError(str(e)) from e
    bases = _class_bases()
    return {key: _resolve_names(value, key, bases) for key, value in parsed.items()}
