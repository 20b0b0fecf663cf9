"""Algorithm checks against stable-baselines3 itself: hyperparameter names, policies, action spaces."""

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
    hyperparameter_names,
    resolve_hyperparameters,
    resolve_policy,
    supported_action_spaces,
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
