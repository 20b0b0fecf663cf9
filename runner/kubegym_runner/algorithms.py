"""Algorithms: the stable-baselines3/sb3-contrib class for each name, and checks against it.

Everything is checked against the algorithm itself rather than a table of ours, so a new
SB3 release changes the rules in one place: hyperparameter names come from the class's
``__init__`` signature, policies from its ``policy_aliases``, and the supported action
spaces from SB3's own ``supported_action_spaces`` check (probed with a throw-away env).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
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
