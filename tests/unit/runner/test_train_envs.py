"""Environment resolution: ids, close matches, wrappers, module:Class, the wrapper order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

from kubegym_api.environment import Wrapper
from kubegym_api.envvars import CPU_LIMIT_ENV, CPU_REQUEST_ENV
from kubegym_runner.compute import available_cpus, cgroup_cpu_limit, resolve_device
from kubegym_runner.envs import EnvFactory, EnvPlan, build_vec_env, probe_spaces, resolve_wrapper
from kubegym_runner.errors import UserError


def test_unknown_env_id_lists_close_matches() -> None:
    with pytest.raises(UserError, match=r"unknown environment id 'CartPol-v1'; did you mean CartPole-v1"):
        probe_spaces(EnvPlan(EnvFactory("CartPol-v1")))


def test_atari_ids_are_registered() -> None:
    observation, action = probe_spaces(EnvPlan(EnvFactory("ALE/Pong-v5")))
    assert isinstance(action, spaces.Discrete)
    assert observation.shape == (210, 160, 3)


def test_module_class_env_ids_and_kwargs() -> None:
    plan = EnvPlan(EnvFactory("sb3_contrib.common.envs:InvalidActionEnvDiscrete"), kwargs={"dim": 4})
    _, action = probe_spaces(plan)
    assert action == spaces.Discrete(4)
    with pytest.raises(UserError, match="cannot import environment module"):
        probe_spaces(EnvPlan(EnvFactory("no_such_module_xyz:Env")))
    with pytest.raises(UserError, match="cannot import environment module"):
        probe_spaces(EnvPlan(EnvFactory("CartPole-v1", module="no_such_module_xyz")))


def test_wrappers_by_short_name_and_path() -> None:
    # rl-zoo3 swaps gymnasium's TimeLimit for its subclass PatchedTimeLimit when imported.
    time_limit = resolve_wrapper("TimeLimit")
    assert isinstance(time_limit, type)
    assert issubclass(time_limit, TimeLimit) or issubclass(TimeLimit, time_limit)
    assert resolve_wrapper("FrameStack").__name__ == "FrameStackObservation"
    assert resolve_wrapper("AtariWrapper").__name__ == "AtariWrapper"
    assert resolve_wrapper("gymnasium.wrappers:ClipAction").__name__ == "ClipAction"
    assert resolve_wrapper("sb3_contrib.common.wrappers.TimeFeatureWrapper").__name__ == "TimeFeatureWrapper"
    with pytest.raises(UserError, match="did you mean TimeLimit"):
        resolve_wrapper("TimeLimt")


def test_spec_wrappers_sit_below_monitor_so_episode_ends_are_seen() -> None:
    plan = EnvPlan(
        EnvFactory("CartPole-v1", wrappers=(Wrapper(name="TimeLimit", kwargs={"max_episode_steps": 7}),)),
        n_envs=2,
        normalize={"gamma": 0.9},
        frame_stack=2,
    )
    env = build_vec_env(plan, seed=1)
    try:
        assert isinstance(env, VecFrameStack) and isinstance(env.venv, VecNormalize)
        monitor = env.venv.venv.envs[0]  # type: ignore[attr-defined]
        assert isinstance(monitor, Monitor) and isinstance(monitor.env, TimeLimit)
        env.reset()
        infos: list[dict[str, object]] = []
        for _ in range(7):
            _, _, _, infos = env.step(np.zeros(2, dtype=np.int64))
        assert all("episode" in info for info in infos)  # Monitor saw the TimeLimit's truncation
    finally:
        env.close()
    evaluation = build_vec_env(plan, seed=1, evaluation=True)
    try:
        normalize = evaluation.venv  # type: ignore[attr-defined]
        assert evaluation.num_envs == 1 and not normalize.training and not normalize.norm_reward
    finally:
        evaluation.close()


def test_bad_env_kwargs_are_user_errors() -> None:
    with pytest.raises(UserError, match="cannot make environment 'CartPole-v1'"):
        probe_spaces(EnvPlan(EnvFactory("CartPole-v1"), kwargs={"no_such_kwarg": 1}))


def test_cpu_quota_parsing() -> None:
    assert cgroup_cpu_limit("200000 100000") == 2.0
    assert cgroup_cpu_limit("50000 100000") == 0.5
    assert cgroup_cpu_limit("max 100000") is None
    assert available_cpus() >= 1


@pytest.mark.parametrize(
    ("cpu_max", "env", "expected"),
    [
        ("max 100000", {}, "all"),  # nothing known: every CPU the process may use
        ("max 100000", {CPU_REQUEST_ENV: "500"}, 1),  # below one core: one thread
        ("max 100000", {CPU_REQUEST_ENV: "900", CPU_LIMIT_ENV: "64000"}, 1),
        ("max 100000", {CPU_REQUEST_ENV: "1999"}, 1),  # rounded down: never more than the request
        ("max 100000", {CPU_REQUEST_ENV: "0"}, "all"),  # no request set
        ("50000 100000", {}, 1),  # a cgroup quota of half a core
        ("max 100000", {CPU_LIMIT_ENV: "500"}, 1),
        ("max 100000", {CPU_REQUEST_ENV: "garbage"}, "all"),
    ],
)
def test_threads_follow_the_cpu_request(tmp_path: Path, cpu_max: str, env: dict[str, str], expected: object) -> None:
    f = tmp_path / "cpu.max"
    f.write_text(cpu_max)
    every = len(os.sched_getaffinity(0))
    assert available_cpus(f, env) == (every if expected == "all" else expected)


def test_threads_never_exceed_the_cpus_the_process_may_use(tmp_path: Path) -> None:
    f = tmp_path / "cpu.max"
    f.write_text("max 100000")
    assert available_cpus(f, {CPU_REQUEST_ENV: "512000"}) == len(os.sched_getaffinity(0))


def test_cuda_demanded_without_a_gpu_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="'cuda' was requested"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
