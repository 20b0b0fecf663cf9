"""Resolve a :class:`TrainConfig` into what training needs, failing early on user errors.

Precedence, from weakest to strongest: the algorithm's defaults, the preset (rl-zoo3),
the spec. ``hyperparameters`` override the preset's key by key; ``policy`` and
``totalTimesteps`` override when set. ``environment.nEnvs`` and ``environment.normalize``
override the preset when they differ from their defaults (1 and false), since a default
cannot be told apart from an omission once the API server has applied it;
``environment.kwargs`` are merged over the preset's ``env_kwargs``; the preset's
``env_wrapper`` wraps each env copy before the spec's ``wrappers``.

``environment.vecEnv`` is resolved here against the pod's CPU share
(:func:`kubegym_runner.compute.choose_vectorization`): ``auto`` becomes ``dummy`` or ``subproc``
(timing a few random steps of one copy when the env's cost decides), and subprocess workers are
capped by the share.

Everything here runs before storage is touched: a typo fails in seconds with
:class:`UserError`, not after downloading a checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from kubegym_api.environment import VecEnvMode
from kubegym_api.runnerconfig import TrainConfig
from kubegym_runner.algorithms import (
    algorithm_class,
    check_action_space,
    check_batch_size,
    hyperparameter_names,
    resolve_hyperparameters,
    resolve_policy,
    validate_hyperparameter_values,
    validate_hyperparameters,
)
from kubegym_runner.compute import Vectorization, available_cpus, choose_vectorization, known_expensive
from kubegym_runner.envs import EnvFactory, EnvPlan, import_module, probe_env, resolve_wrapper
from kubegym_runner.errors import UserError
from kubegym_runner.presets import add_action_noise, parse_preset, preprocess, zoo_entry

log = logging.getLogger(__name__)


@dataclass
class TrainingPlan:
    """The resolved run: algorithm, policy, constructor arguments, envs, length."""

    algorithm: type[BaseAlgorithm]
    policy: str | type
    hyperparameters: dict[str, Any]
    env: EnvPlan
    total_timesteps: int
    observation_space: spaces.Space[Any]
    action_space: spaces.Space[Any]
    #: Callbacks an rl-zoo3 preset asks for (``callback:`` entries).
    extra_callbacks: list[BaseCallback] = field(default_factory=list)
    #: Where the hyperparameters came from, for the log.
    source: str = "spec"
    #: How the training copies are stepped, and why (``status.progress.compute``).
    vectorization: Vectorization = field(
        default_factory=lambda: Vectorization(VecEnvMode.dummy, 0, "vecEnv dummy (spec)")
    )


def _zoo_style(config: TrainConfig, preset_raw: dict[str, Any], spec_hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Merge spec over preset into one rl-zoo3-style dict, for one preprocessing pass (both already
    through :func:`resolve_hyperparameters`, so no string is left for rl-zoo3 to evaluate)."""
    raw = dict(preset_raw)
    raw.update(spec_hyperparameters)
    env = config.environment
    if env.n_envs != 1 or "n_envs" not in raw:
        raw["n_envs"] = env.n_envs
    if config.total_timesteps is not None:
        raw["n_timesteps"] = config.total_timesteps
    elif "n_timesteps" not in raw:
        raise UserError("totalTimesteps is required (the preset does not provide one)")
    if env.normalize and not raw.get("normalize"):
        raw["normalize"] = True
    if env.kwargs:
        preset_kwargs = raw.get("env_kwargs") or {}
        if not isinstance(preset_kwargs, dict):
            raise UserError("the preset's env_kwargs is not a mapping; set environment.kwargs only")
        raw["env_kwargs"] = {**preset_kwargs, **env.kwargs}
    return raw


#: Random-action steps timed to tell a cheap env from an expensive one (``vecEnv: auto``).
PROBE_STEPS = 200


def needs_step_probe(requested: VecEnvMode | str, n_envs: int, cpus: int, env_id: str) -> bool:
    """Whether ``auto`` vectorization depends on the env's measured step cost."""
    return VecEnvMode(requested) is VecEnvMode.auto and n_envs >= 2 and cpus >= 2 and not known_expensive(env_id)


def build_plan(config: TrainConfig, cpus: int | None = None) -> TrainingPlan:
    """Validate the config against the algorithm, the preset and the environment.

    ``cpus``: the pod's CPU share, which caps subprocess env workers (default: :func:`available_cpus`).
    """
    cls = algorithm_class(config.algorithm)
    validate_hyperparameters(cls, config.hyperparameters)
    validate_hyperparameter_values(cls, config.hyperparameters)
    env = config.environment
    if env.module:
        import_module(env.module, "environment")
    for wrapper in env.wrappers:
        resolve_wrapper(wrapper.name)

    preset_raw: dict[str, Any] = {}
    source = "spec"
    if config.preset:
        ref = parse_preset(config.preset)
        source = f"{ref.source}:{ref.entry or env.id}"
        preset_raw = resolve_hyperparameters(zoo_entry(cls, env.id, ref.entry), f"preset {source}")
    spec_hyperparameters = resolve_hyperparameters(config.hyperparameters, "spec.hyperparameters")
    settings = preprocess(_zoo_style(config, preset_raw, spec_hyperparameters))
    if "batch_size" in config.hyperparameters:  # the spec's own batch size (a preset's is tuned for its n_envs)
        check_batch_size(cls, settings.hyperparameters, settings.n_envs)

    env_plan = EnvPlan(
        factory=EnvFactory(
            env_id=env.id,
            module=env.module,
            wrappers=tuple(env.wrappers),
            preset_wrapper=settings.env_wrapper,
        ),
        kwargs=settings.env_kwargs,
        n_envs=settings.n_envs,
        normalize=settings.normalize,
        frame_stack=settings.frame_stack,
        vec_env_wrapper=settings.vec_env_wrapper,
    )
    share = cpus if cpus is not None else available_cpus()
    probe = probe_env(env_plan, PROBE_STEPS if needs_step_probe(env.vec_env, env_plan.n_envs, share, env.id) else 0)
    observation_space, action_space = probe.observation_space, probe.action_space
    check_action_space(cls, action_space, env.id)
    vectorization = choose_vectorization(env.vec_env, env_plan.n_envs, share, env.id, probe.step_seconds)
    env_plan = replace(env_plan, vec_env=vectorization.mode.value, workers=vectorization.workers)
    log.info(
        "vectorization: %s with %d worker(s) for %d env copies (%s)",
        vectorization.mode.value,
        vectorization.workers,
        env_plan.n_envs,
        vectorization.reason,
    )

    hyperparameters = add_action_noise(settings.hyperparameters, action_space)
    unknown = sorted(set(hyperparameters) - set(hyperparameter_names(cls)))
    if unknown:  # a preset written for another SB3 version
        raise UserError(f"{source} sets {', '.join(unknown)}, which {cls.__name__} does not take")
    policy = resolve_policy(cls, config.policy or settings.policy, observation_space)
    log.info(
        "plan: %s (%s) on %s x%d, policy %s, %d timesteps, hyperparameters %s",
        cls.__name__,
        source,
        env.id,
        env_plan.n_envs,
        getattr(policy, "__name__", policy),
        settings.n_timesteps,
        _describe(hyperparameters),
    )
    return TrainingPlan(
        algorithm=cls,
        policy=policy,
        hyperparameters=hyperparameters,
        env=env_plan,
        total_timesteps=settings.n_timesteps,
        observation_space=observation_space,
        action_space=action_space,
        extra_callbacks=settings.callbacks,
        source=source,
        vectorization=vectorization,
    )


def _describe(hyperparameters: dict[str, Any]) -> str:
    """One log line: classes and functions by name, values by repr."""
    return ", ".join(f"{k}={getattr(v, '__name__', None) or repr(v)}" for k, v in sorted(hyperparameters.items()))
