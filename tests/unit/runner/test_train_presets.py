"""Presets: rl-zoo3's tuned hyperparameters, read through the installed package."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml
from rl_zoo3.utils import SimpleLinearSchedule
from stable_baselines3 import PPO

from kubegym_api.runnerconfig import TrainConfig
from kubegym_runner.algorithms import algorithm_class
from kubegym_runner.errors import UserError
from kubegym_runner.plan import build_plan
from kubegym_runner.presets import PresetRef, parse_preset, preprocess, zoo_entry


def _zoo_yaml(name: str) -> dict[str, Any]:
    """The shipped table, read independently of the code under test."""
    table: dict[str, Any] = yaml.safe_load((resources.files("rl_zoo3") / "hyperparams" / name).read_text())
    return table


def _config(**fields: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1"},
        "preset": "rl-zoo3",
        "storage": {"bucket": "kubegym"},
        "runPrefix": "p",
    }
    base.update(fields)
    return TrainConfig.model_validate(base)


def test_preset_names() -> None:
    assert parse_preset("rl-zoo3") == PresetRef("rl-zoo3", None)
    assert parse_preset("rl-zoo3:CartPole-v1") == PresetRef("rl-zoo3", "CartPole-v1")
    with pytest.raises(UserError, match="unknown preset"):
        parse_preset("cleanrl")


def test_ppo_cartpole_preset_is_rl_zoo3s_entry() -> None:
    entry = _zoo_yaml("ppo.yml")["CartPole-v1"]
    assert zoo_entry(PPO, "CartPole-v1") == entry
    plan = build_plan(_config())
    assert plan.source == "rl-zoo3:CartPole-v1"
    assert plan.total_timesteps == int(entry["n_timesteps"])
    assert plan.env.n_envs == entry["n_envs"]
    assert plan.policy == entry["policy"]
    for key in ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef"):
        assert plan.hyperparameters[key] == entry[key]
    # 'lin_0.001' goes through rl-zoo3's schedule preprocessing.
    lr = plan.hyperparameters["learning_rate"]
    assert isinstance(lr, SimpleLinearSchedule)
    assert lr(1.0) == pytest.approx(float(entry["learning_rate"].split("_")[1]))
    assert lr(0.5) == pytest.approx(lr(1.0) / 2)


def test_spec_overrides_the_preset() -> None:
    plan = build_plan(
        _config(
            hyperparameters={"n_steps": 64, "learning_rate": 1e-4},
            totalTimesteps=5000,
            environment={"id": "CartPole-v1", "nEnvs": 3},
            policy="MlpPolicy",
        )
    )
    assert plan.hyperparameters["n_steps"] == 64
    assert plan.hyperparameters["learning_rate"](0.3) == pytest.approx(1e-4)  # constant schedule
    assert plan.hyperparameters["batch_size"] == _zoo_yaml("ppo.yml")["CartPole-v1"]["batch_size"]
    assert plan.total_timesteps == 5000
    assert plan.env.n_envs == 3


def test_preprocessing_without_preset_supports_zoo_syntax() -> None:
    settings = preprocess(
        {
            "n_timesteps": 100,
            "learning_rate": "lin_3e-4",
            "normalize": "dict(norm_reward=False)",
            "gamma": 0.95,
            "policy_kwargs": "dict(net_arch=[16])",
            "train_freq": [1, "episode"],
        }
    )
    assert isinstance(settings.hyperparameters["learning_rate"], SimpleLinearSchedule)
    assert settings.normalize == {"norm_reward": False, "gamma": 0.95}
    assert settings.hyperparameters["policy_kwargs"] == {"net_arch": [16]}
    assert settings.hyperparameters["train_freq"] == (1, "episode")


def test_preset_normalisation_and_noise_reach_the_plan() -> None:
    # TD3 on Pendulum-v1: rl-zoo3 sets noise_type/noise_std, turned into an action_noise object.
    plan = build_plan(_config(algorithm="TD3", environment={"id": "Pendulum-v1"}))
    assert type(plan.hyperparameters["action_noise"]).__name__ == "NormalActionNoise"
    assert "noise_type" not in plan.hyperparameters
    # The spec's normalize adds VecNormalize with rl-zoo3's gamma handling.
    plan = build_plan(_config(environment={"id": "CartPole-v1", "normalize": True}))
    assert plan.env.normalize == {"gamma": _zoo_yaml("ppo.yml")["CartPole-v1"]["gamma"]}


def test_atari_envs_use_the_atari_entry() -> None:
    assert zoo_entry(PPO, "ALE/Pong-v5") == _zoo_yaml("ppo.yml")["atari"]
    settings = preprocess(zoo_entry(PPO, "ALE/Pong-v5"))
    assert settings.frame_stack == _zoo_yaml("ppo.yml")["atari"]["frame_stack"]
    assert settings.env_wrapper is not None


def test_named_entry_for_a_custom_env() -> None:
    assert zoo_entry(PPO, "my_pkg:MyEnv", "CartPole-v1") == _zoo_yaml("ppo.yml")["CartPole-v1"]


def test_missing_entries_are_user_errors() -> None:
    with pytest.raises(UserError, match="no PPO hyperparameters for 'CartPole-v9'"):
        zoo_entry(PPO, "CartPole-v9")
    with pytest.raises(UserError, match="rl-zoo3 has no tuned hyperparameters for MaskablePPO"):
        zoo_entry(algorithm_class("MaskablePPO"), "CartPole-v1")
    with pytest.raises(UserError, match="totalTimesteps is required"):
        build_plan(_config(preset=None))
