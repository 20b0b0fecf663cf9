"""Archives, statistics and replay buffers load without running code they name: everything every
algorithm saves loads, and a pickle naming anything outside the allow-list is refused before it
is called (the same archive loaded SB3's way would run it, which the control case shows)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from kubegym_runner.algorithms import algorithm_class
from kubegym_runner.safeload import UnsafePickle, load_algorithm, load_replay_buffer, load_vecnormalize, loads


class _Touch:
    """Unpickling this runs ``touch <path>``: what a hostile archive would carry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def _train(algorithm: str, env_id: str, tmp: Path) -> tuple[BaseAlgorithm, Path, Path]:
    cls = algorithm_class(algorithm)
    venv = VecNormalize(make_vec_env(env_id, n_envs=1))
    off_policy = algorithm in {"DQN", "SAC", "TD3", "DDPG", "QRDQN", "TQC"}
    kwargs: dict[str, Any] = {"learning_starts": 0, "buffer_size": 64} if off_policy else {"n_steps": 16}
    if algorithm in {"PPO", "RecurrentPPO", "MaskablePPO", "TRPO"}:
        kwargs["batch_size"] = 16
    policy = "MlpLstmPolicy" if algorithm == "RecurrentPPO" else "MlpPolicy"
    model = cls(policy, venv, seed=0, **kwargs)
    if algorithm != "MaskablePPO":  # CartPole has no action masks; an untrained model saves the same objects
        model.learn(32)
    model.save(tmp / "model.zip")
    venv.save(str(tmp / "vecnormalize.pkl"))
    return model, tmp / "model.zip", tmp / "vecnormalize.pkl"


@pytest.mark.parametrize(
    ("algorithm", "env_id"),
    [
        ("PPO", "CartPole-v1"), ("A2C", "Pendulum-v1"), ("DQN", "CartPole-v1"), ("SAC", "Pendulum-v1"),
        ("TD3", "Pendulum-v1"), ("DDPG", "Pendulum-v1"), ("QRDQN", "CartPole-v1"), ("TQC", "Pendulum-v1"),
        ("TRPO", "CartPole-v1"), ("RecurrentPPO", "CartPole-v1"), ("MaskablePPO", "CartPole-v1"),
    ],
)  # fmt: skip
def test_what_every_algorithm_saves_loads_safely(algorithm: str, env_id: str, tmp_path: Path) -> None:
    model, archive, stats = _train(algorithm, env_id, tmp_path)
    venv = make_vec_env(env_id, n_envs=1)
    loaded = load_algorithm(type(model), archive, env=load_vecnormalize(stats, venv), device="cpu")
    assert loaded.num_timesteps == model.num_timesteps
    assert loaded.observation_space == model.observation_space and loaded.action_space == model.action_space
    if hasattr(model, "replay_buffer"):
        model.save_replay_buffer(tmp_path / "replay_buffer.pkl")  # type: ignore[attr-defined]
        load_replay_buffer(loaded, tmp_path / "replay_buffer.pkl")
        assert loaded.replay_buffer.size() == model.replay_buffer.size()  # type: ignore[attr-defined]


def test_an_rl_zoo3_linear_schedule_loads(tmp_path: Path) -> None:
    from rl_zoo3.utils import linear_schedule

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, learning_rate=linear_schedule(3e-4))
    model.save(tmp_path / "model.zip")
    loaded = load_algorithm(PPO, tmp_path / "model.zip", device="cpu")
    assert type(loaded.learning_rate).__name__ == "SimpleLinearSchedule"


def _inject(archive: Path, key: str, payload: Any) -> Path:
    """A copy of ``archive`` whose data[key] is ``payload`` pickled, as SB3 stores objects."""
    out = archive.with_name(f"hostile-{key}.zip")
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "data":
                data = json.loads(content)
                data[key] = {
                    ":type:": "<class 'object'>",
                    ":serialized:": base64.b64encode(pickle.dumps(payload)).decode(),
                }
                content = json.dumps(data).encode()
            dst.writestr(item, content)
    return out


@pytest.mark.parametrize("key", ["observation_space", "policy_kwargs", "lr_schedule", "an_extra_key"])
def test_a_hostile_archive_is_refused_before_its_code_runs(key: str, tmp_path: Path) -> None:
    _, archive, _ = _train("PPO", "CartPole-v1", tmp_path)
    marker = tmp_path / "pwned"
    hostile = _inject(archive, key, _Touch(marker))
    with pytest.raises(UnsafePickle, match=rf"the archive's '{key}' refers to posix:system"):
        load_algorithm(PPO, hostile, device="cpu")
    assert not marker.exists()
    # The control: loaded SB3's own way, the same archive runs its payload (then fails or not).
    with contextlib.suppress(Exception):
        PPO.load(hostile, device="cpu")
    assert marker.exists()


def test_the_evaluator_replacements_are_not_unpickled_at_all(tmp_path: Path) -> None:
    _, archive, _ = _train("PPO", "CartPole-v1", tmp_path)
    marker = tmp_path / "pwned"
    hostile = _inject(archive, "lr_schedule", _Touch(marker))
    model = load_algorithm(PPO, hostile, replace={"lr_schedule": lambda _: 0.0}, device="cpu")
    assert model.num_timesteps == 32 and not marker.exists()


def test_hostile_statistics_and_replay_buffers_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "vecnormalize.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    (tmp_path / "replay_buffer.pkl").write_bytes(pickle.dumps({"buffer": _Touch(marker)}))
    with pytest.raises(UnsafePickle, match=r"vecnormalize\.pkl refers to posix:system"):
        load_vecnormalize(tmp_path / "vecnormalize.pkl", make_vec_env("CartPole-v1", n_envs=1))
    model = DQN("MlpPolicy", "CartPole-v1", buffer_size=64)
    with pytest.raises(UnsafePickle, match=r"replay_buffer\.pkl refers to posix:system"):
        load_replay_buffer(model, tmp_path / "replay_buffer.pkl")
    assert not marker.exists()


class _Call:
    """A pickle that calls ``target(*args)`` on load."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.target, self.args


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (_Call(eval, "1"), "builtins:eval"),
        (_Call(getattr, SAC, "load"), "builtins:getattr"),
        (_Call(__import__("subprocess").getoutput, "id"), "subprocess:getoutput"),
        (_Call(__import__("stable_baselines3.common.utils", fromlist=["x"]).get_schedule_fn, 1.0), "stable_baselines3.common.utils:get_schedule_fn"),
        (_Call(__import__("stable_baselines3.common.logger", fromlist=["x"]).HumanOutputFormat, "/tmp/x"), "stable_baselines3.common.logger:HumanOutputFormat"),
        (_Call(A2C.load, "/tmp/x"), "builtins:getattr"),
    ],
    ids=["eval", "getattr", "subprocess", "sb3-function", "sb3-logger-class", "a-method"],
)  # fmt: skip
def test_only_allowed_globals_resolve(payload: Any, refused: str) -> None:
    with pytest.raises(UnsafePickle) as err:
        loads(pickle.dumps(payload), "the pickle")
    assert refused in str(err.value)
