"""Algorithm checks against stable-baselines3 itself: hyperparameter names and values, policies, action spaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer

from kubegym_api.base import Algorithm
from kubegym_api.hyperparameter_table import HYPERPARAMETER_NAMES
from kubegym_api.runnerconfig import TrainConfig
from kubegym_runner.algorithms import (
    algorithm_class,
    check_action_space,
    check_batch_size,
    hyperparameter_names,
    resolve_hyperparameters,
    resolve_policy,
    supported_action_spaces,
    validate_hyperparameter_values,
    validate_hyperparameters,
)
from kubegym_runner.errors import UserError
from kubegym_runner.plan import build_plan


def _train_config(algorithm: str, env_id: str, **extra: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "algorithm": algorithm,
            "environment": {"id": env_id},
            "totalTimesteps": 100,
            "storage": {"bucket": "kubegym"},
            "runPrefix": "p",
            **extra,
        }
    )


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_algorithm_resolves_and_matches_the_operators_table(algorithm: Algorithm) -> None:
    # HYPERPARAMETER_NAMES (kubegym_api) is what the operator validates with (it cannot import SB3).
    cls = algorithm_class(algorithm)
    assert cls.__name__ == algorithm.value
    assert set(hyperparameter_names(cls)) == set(HYPERPARAMETER_NAMES[algorithm.value])


def test_unknown_algorithm_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown algorithm 'PPO2'"):
        algorithm_class("PPO2")


def test_known_hyperparameters_pass() -> None:
    validate_hyperparameters(PPO, {"n_steps": 64, "learning_rate": 1e-3, "policy_kwargs": {}})
    validate_hyperparameters(TD3, {"noise_type": "normal", "noise_std": 0.1})  # rl-zoo3's noise keys


def test_unknown_hyperparameter_names_close_and_valid_ones() -> None:
    with pytest.raises(UserError) as info:
        validate_hyperparameters(PPO, {"learning_rat": 1e-3})
    message = str(info.value)
    assert "unknown hyperparameter 'learning_rat' for PPO" in message
    assert "did you mean learning_rate?" in message
    assert "n_epochs" in message  # the valid names are listed


def test_reserved_arguments_point_to_the_spec_field() -> None:
    with pytest.raises(UserError, match=r"spec\.seed"):
        validate_hyperparameters(PPO, {"seed": 3})
    with pytest.raises(UserError, match="managed by the runner"):
        validate_hyperparameters(PPO, {"tensorboard_log": "/tmp"})


def test_noise_keys_are_for_off_policy_algorithms_only() -> None:
    with pytest.raises(UserError, match="noise_std"):
        validate_hyperparameters(PPO, {"noise_std": 0.1})


def test_supported_action_spaces_come_from_sb3() -> None:
    assert supported_action_spaces(DQN) == (spaces.Discrete,)
    assert supported_action_spaces(SAC) == (spaces.Box,)
    assert spaces.MultiDiscrete in supported_action_spaces(PPO)


def test_dqn_on_pendulum_is_a_user_error_before_training() -> None:
    with pytest.raises(UserError, match=r"DQN does not support the action space of Pendulum-v1.*Discrete"):
        check_action_space(DQN, spaces.Box(-2.0, 2.0, (1,), np.float32), "Pendulum-v1")
    with pytest.raises(UserError, match="DQN does not support the action space of Pendulum-v1"):
        build_plan(_train_config("DQN", "Pendulum-v1"))
    with pytest.raises(UserError, match="SAC does not support the action space of CartPole-v1"):
        build_plan(_train_config("SAC", "CartPole-v1"))


def test_policy_follows_the_observation_space() -> None:
    box = spaces.Box(-1.0, 1.0, (4,), np.float32)
    image = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    nested = spaces.Dict({"a": box})
    assert resolve_policy(PPO, None, box) == "MlpPolicy"
    assert resolve_policy(PPO, None, image) == "CnnPolicy"
    assert resolve_policy(PPO, None, nested) == "MultiInputPolicy"
    assert resolve_policy(algorithm_class("RecurrentPPO"), None, box) == "MlpLstmPolicy"
    assert resolve_policy(PPO, "CnnPolicy", box) == "CnnPolicy"
    with pytest.raises(UserError, match="unknown policy 'MlpLstmPolicy' for PPO"):
        resolve_policy(PPO, "MlpLstmPolicy", box)


def test_class_names_in_json_become_classes() -> None:
    resolved = resolve_hyperparameters(
        {
            "policy_kwargs": {"activation_fn": "nn.ReLU", "optimizer_class": "RMSpropTFLike", "net_arch": [8]},
            "replay_buffer_class": "ReplayBuffer",
            "gamma": 0.9,
        },
        "spec.hyperparameters",
    )
    assert resolved["policy_kwargs"]["activation_fn"] is torch.nn.ReLU
    assert resolved["policy_kwargs"]["optimizer_class"].__name__ == "RMSpropTFLike"
    assert resolved["policy_kwargs"]["net_arch"] == [8]
    assert resolved["replay_buffer_class"] is ReplayBuffer
    assert (
        resolve_hyperparameters({"policy_kwargs": {"activation_fn": "torch.nn:Tanh"}}, "h")["policy_kwargs"][
            "activation_fn"
        ]
        is torch.nn.Tanh
    )
    with pytest.raises(UserError, match="activation_fn"):
        resolve_hyperparameters({"policy_kwargs": {"activation_fn": "NoSuchActivation"}}, "h")


def test_a_bad_value_fails_the_plan_not_the_pod() -> None:
    with pytest.raises(UserError, match="invalid hyperparameters"):
        build_plan(_train_config("PPO", "CartPole-v1", hyperparameters={"learning_rate": "fast"}))


@pytest.mark.parametrize(
    ("algorithm", "hyperparameters", "message"),
    [
        (PPO, {"n_steps": "2048"}, "n_steps must be an integer, got '2048' (str)"),
        (PPO, {"n_steps": 64.5}, "n_steps must be an integer, got 64.5 (float)"),
        (PPO, {"batch_size": True}, "batch_size must be an integer, got True (bool)"),
        (PPO, {"gamma": "high"}, "gamma must be a number, got 'high' (str)"),
        (PPO, {"use_sde": 1}, "use_sde must be true or false, got 1 (int)"),
        (PPO, {"learning_rate": "fast"}, "learning_rate must be a number or a linear schedule 'lin_<initial value>'"),
        (PPO, {"learning_rate": [0.1]}, "learning_rate must be a number or a linear schedule"),
        (PPO, {"policy_kwargs": [64, 64]}, "policy_kwargs must be a mapping of keyword arguments, got [64, 64] (list)"),
        (PPO, {"learning_rate": 1e308}, "learning_rate must satisfy 0 < x <= 1, got 1e+308"),
        (PPO, {"learning_rate": 0}, "learning_rate must satisfy 0 < x <= 1, got 0"),
        (PPO, {"learning_rate": -0.001}, "learning_rate must satisfy 0 < x <= 1, got -0.001"),
        (PPO, {"learning_rate": "lin_5"}, "learning_rate must satisfy 0 < x <= 1, got 5.0"),
        (PPO, {"gamma": 1.5}, "gamma must satisfy 0 <= x <= 1, got 1.5"),
        (SAC, {"tau": 2}, "tau must satisfy 0 <= x <= 1, got 2"),
        (DQN, {"buffer_size": 0}, "buffer_size must satisfy 1 <= x <= inf, got 0"),
        (DQN, {"exploration_fraction": float("inf")}, "exploration_fraction must be finite, got inf"),
    ],
)
def test_values_of_the_wrong_type_or_out_of_bounds_name_the_hyperparameter(
    algorithm: type, hyperparameters: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError) as info:
        validate_hyperparameter_values(algorithm, hyperparameters)
    assert str(info.value).startswith(f"invalid hyperparameters for {algorithm.__name__}: "), info.value
    assert message in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(UserError) as info:
        validate_hyperparameter_values(PPO, {"gamma": 2, "n_steps": "x", "learning_rate": 1e-3})
    assert str(info.value) == (
        "invalid hyperparameters for PPO: gamma must satisfy 0 <= x <= 1, got 2; n_steps must be an integer, got 'x' (str)"
    )


def test_values_sb3_and_rl_zoo3_take_pass() -> None:
    validate_hyperparameter_values(
        PPO,
        {
            "learning_rate": "lin_3e-4",
            "clip_range": 0.2,
            "clip_range_vf": None,
            "n_steps": 64,
            "gamma": 1,
            "policy_kwargs": "dict(net_arch=[8])",  # rl-zoo3's literal form: parsed by its preprocessing
            "target_kl": None,
            "normalize_advantage": False,
        },
    )
    validate_hyperparameter_values(SAC, {"ent_coef": "auto_0.1", "train_freq": [1, "episode"], "learning_rate": 1})
    validate_hyperparameter_values(DQN, {"buffer_size": 1, "policy_kwargs": {"net_arch": [8]}})


def test_a_batch_larger_than_its_buffer_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"batch_size 128 is larger than the rollout buffer of PPO \(n_steps 64 x 1"):
        check_batch_size(PPO, {"n_steps": 64, "batch_size": 128}, n_envs=1)
    check_batch_size(PPO, {"n_steps": 64, "batch_size": 128}, n_envs=2)  # 128 transitions per rollout
    with pytest.raises(UserError, match=r"rollout buffer of PPO \(n_steps 2048 x 1 env copies = 2048"):
        check_batch_size(PPO, {"batch_size": 4096}, n_envs=1)  # n_steps: PPO's default
    with pytest.raises(UserError, match=r"batch_size 1000 is larger than the replay buffer of DQN \(buffer_size 100\)"):
        check_batch_size(DQN, {"buffer_size": 100, "batch_size": 1000}, n_envs=4)
    check_batch_size(DQN, {"batch_size": 1000}, n_envs=1)  # default buffer: 1,000,000
    check_batch_size(algorithm_class("A2C"), {"n_steps": 5}, n_envs=1)  # A2C has no batch size


def test_the_specs_batch_size_is_checked_in_the_plan_the_presets_is_not() -> None:
    with pytest.raises(UserError, match="batch_size 256 is larger than the rollout buffer of PPO"):
        build_plan(_train_config("PPO", "CartPole-v1", hyperparameters={"n_steps": 64, "batch_size": 256}))
    with pytest.raises(UserError, match="invalid hyperparameters for PPO: learning_rate must satisfy"):
        build_plan(_train_config("PPO", "CartPole-v1", hyperparameters={"learning_rate": 1e308}))
    # rl-zoo3's CartPole-v1 entry (batches of 256) with 2 copies x 32 steps: a batch the preset
    # chose stays SB3's business (it trains on the whole rollout), as it always was.
    plan = build_plan(
        _train_config(
            "PPO", "CartPole-v1", preset="rl-zoo3", environment={"id": "CartPole-v1", "nEnvs": 2}, totalTimesteps=64
        )
    )
    assert (plan.env.n_envs, plan.hyperparameters["n_steps"], plan.hyperparameters["batch_size"]) == (2, 32, 256)
