"""Tuned hyperparameters by name, read through the rl-zoo3 package (never retyped here).

``spec.preset`` values:

* ``rl-zoo3``: rl-zoo3's entry for the run's algorithm and environment id, as its
  ``train.py`` picks it: the env id's own entry, else ``atari`` for an ALE env.
* ``rl-zoo3:<entry>``: a named entry of the algorithm's table, e.g. ``rl-zoo3:CartPole-v1``
  to reuse CartPole's tuning on a custom env, or ``rl-zoo3:default``.

The table is the ``hyperparams/<algo>.yml`` shipped inside the installed rl-zoo3 package
(``<algo>`` is rl-zoo3's own name for the class, from ``rl_zoo3.utils.ALGOS``), and the
entry goes through rl-zoo3's own preprocessing: ``lin_<x>`` schedules,
``policy_kwargs``/``normalize`` given as Python literals, ``env_wrapper``,
``frame_stack``, ``n_envs``, ``n_timesteps``, action noise. Without a preset the spec's
hyperparameters go through the same preprocessing, so ``lin_3e-4`` works everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import yaml
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from kubegym_runner.envs import register_builtin_envs
from kubegym_runner.errors import UserError

log = logging.getLogger(__name__)

ZOO = "rl-zoo3"
_ZOO_SPELLINGS = frozenset({"rl-zoo3", "rl_zoo3", "rlzoo3", "zoo"})


@dataclass(frozen=True)
class PresetRef:
    """A parsed ``spec.preset``: where to look and which entry (``None``: by env id)."""

    source: str
    entry: str | None = None


def parse_preset(name: str) -> PresetRef:
    """Parse ``rl-zoo3`` or ``rl-zoo3:<entry>``."""
    source, _, entry = name.strip().partition(":")
    if source.lower() not in _ZOO_SPELLINGS:
        raise UserError(f"unknown preset {name!r}: use 'rl-zoo3' or 'rl-zoo3:<entry>'")
    return PresetRef(ZOO, entry.strip() or None)


def zoo_algorithm_name(cls: type[BaseAlgorithm]) -> str:
    """rl-zoo3's name for ``cls`` (``ppo``, ``ppo_lstm``...), from its own ``ALGOS`` table."""
    from rl_zoo3.utils import ALGOS

    for name, algo in ALGOS.items():
        if algo is cls:
            return name
    raise UserError(f"rl-zoo3 has no tuned hyperparameters for {cls.__name__}")


def zoo_table(cls: type[BaseAlgorithm]) -> dict[str, Any]:
    """The algorithm's ``hyperparams/<algo>.yml`` of the installed rl-zoo3 package."""
    path = resources.files("rl_zoo3") / "hyperparams" / f"{zoo_algorithm_name(cls)}.yml"
    if not path.is_file():
        raise UserError(f"rl-zoo3 ships no hyperparameter table for {cls.__name__}")
    table = yaml.safe_load(path.read_text())
    if not isinstance(table, dict):
        raise UserError(f"rl-zoo3's table for {cls.__name__} is not a mapping")
    return table


def _is_atari(env_id: str) -> bool:
    from rl_zoo3.exp_manager import ExperimentManager

    register_builtin_envs()
    return env_id in gym.registry and ExperimentManager.is_atari(env_id)


def zoo_entry(cls: type[BaseAlgorithm], env_id: str, entry: str | None = None) -> dict[str, Any]:
    """The raw (unprocessed) rl-zoo3 entry for ``cls`` on ``env_id`` (or the named entry)."""
    table = zoo_table(cls)
    if entry is not None:
        key = entry
    elif env_id in table:
        key = env_id
    elif "atari" in table and _is_atari(env_id):
        key = "atari"
    else:
        key = env_id
    if key not in table:
        matches = difflib.get_close_matches(key, list(table), n=5, cutoff=0.5)
        hint = f" (close: {', '.join(matches)})" if matches else ""
        raise UserError(
            f"rl-zoo3 has no {cls.__name__} hyperparameters for {key!r}{hint}; "
            f"name an entry with preset 'rl-zoo3:<entry>' or drop the preset"
        )
    raw = table[key]
    if not isinstance(raw, dict):
        raise UserError(f"rl-zoo3's {cls.__name__} entry {key!r} is not a mapping")
    return copy.deepcopy(raw)


@dataclass
class ZooSettings:
    """A hyperparameter dict after rl-zoo3's preprocessing, split by where each part goes."""

    #: Constructor keyword arguments of the algorithm.
    hyperparameters: dict[str, Any]
    policy: str | type | None
    n_envs: int
    n_timesteps: int
    #: VecNormalize keyword arguments, ``None`` when not normalising.
    normalize: dict[str, Any] | None
    frame_stack: int | None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_wrapper: Callable[[gym.Env], gym.Env] | None = None
    vec_env_wrapper: Callable[[Any], Any] | None = None
    callbacks: list[BaseCallback] = field(default_factory=list)


def _zoo_manager() -> Any:
    """An rl-zoo3 ``ExperimentManager`` holding only the state its preprocessing reads.

    Its ``__init__`` sets up log folders and CLI arguments the runner has no use for; the
    preprocessing methods only read and write the attributes below.
    """
    from rl_zoo3.exp_manager import ExperimentManager

    manager = ExperimentManager.__new__(ExperimentManager)
    manager.verbose = 0
    manager.n_timesteps = 0
    manager.n_evaluations = 1
    manager.optimize_hyperparameters = False
    manager.normalize = False
    manager.normalize_kwargs = {}
    manager.monitor_kwargs = {}
    manager.env_kwargs = {}
    manager.frame_stack = None
    manager.specified_callbacks = []
    manager.n_actions = 0
    return manager


@contextlib.contextmanager
def _quiet() -> Any:
    """rl-zoo3 prints to stdout; route it to the log instead."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        log.info("rl-zoo3: %s", line)


def preprocess(raw: Mapping[str, Any]) -> ZooSettings:
    """Run rl-zoo3's preprocessing on a zoo-style dict (must contain ``n_timesteps``)."""
    manager = _zoo_manager()
    try:
        with _quiet():
            hyperparams, env_wrapper, callbacks, vec_env_wrapper = manager._preprocess_hyperparams(
                copy.deepcopy(dict(raw))
            )
    except UserError:
        raise
    except Exception as e:  # schedules, eval'd literals and imports all fail differently
        raise UserError(f"invalid hyperparameters: {type(e).__name__}: {e}") from e
    policy = hyperparams.pop("policy", None)
    return ZooSettings(
        hyperparameters=hyperparams,
        policy=policy,
        n_envs=int(raw.get("n_envs", 1)),
        n_timesteps=int(manager.n_timesteps),
        normalize=dict(manager.normalize_kwargs) if manager.normalize else None,
        frame_stack=manager.frame_stack,
        env_kwargs=dict(manager.env_kwargs),
        env_wrapper=env_wrapper,
        vec_env_wrapper=vec_env_wrapper,
        callbacks=list(callbacks),
    )


def add_action_noise(hyperparameters: dict[str, Any], action_space: spaces.Space[Any]) -> dict[str, Any]:
    """Turn rl-zoo3's ``noise_type``/``noise_std`` into an ``action_noise`` object."""
    if hyperparameters.get("noise_type") is None:
        hyperparameters.pop("noise_type", None)
        hyperparameters.pop("noise_std", None)
        return hyperparameters
    manager = _zoo_manager()
    try:
        with _quiet():
            result: dict[str, Any] = manager._preprocess_action_noise(
                hyperparameters, {}, SimpleNamespace(action_space=action_space)
            )
    except Exception as e:  # an assertion for non-Box spaces, RuntimeError for unknown types
        raise UserError(f"invalid action noise: {type(e).__name__}: {e}") from e
    return result
