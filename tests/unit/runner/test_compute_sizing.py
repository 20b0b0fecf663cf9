"""The runner sizes itself to its CPU request: OpenMP/MKL/torch threads and vectorised env workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from kubegym_api.environment import EnvironmentConfig, VecEnvMode
from kubegym_api.envvars import CPU_LIMIT_ENV, CPU_REQUEST_ENV
from kubegym_api.runnerconfig import TrainConfig
from kubegym_runner.compute import (
    EXPENSIVE_STEP_SECONDS,
    EXPORTED_ENV,
    CpuShare,
    choose_vectorization,
    cpu_share,
    export_thread_env,
    known_expensive,
    omp_threads,
    thread_count,
)
from kubegym_runner.envs import EnvFactory, EnvPlan, build_vec_env, probe_env, time_steps
from kubegym_runner.plan import build_plan, needs_step_probe
from kubegym_runner.vecenv import GroupedSubprocVecEnv, split_evenly

REPO = Path(__file__).resolve().parents[3]
#: The table below runs as on a 4-CPU machine (the affinity mask is patched), whatever this one has.
EVERY = 4


def _cpu_max(tmp_path: Path, text: str = "max 100000") -> Path:
    f = tmp_path / "cpu.max"
    f.write_text(text)
    return f


# --- the CPU share and where it comes from ----------------------------------------------------


@pytest.mark.parametrize(
    ("cpu_max", "env", "cpus", "source"),
    [
        ("max 100000", {}, EVERY, "cpus"),
        ("max 100000", {CPU_REQUEST_ENV: "1000"}, 1, "cpu request 1000m"),
        ("max 100000", {CPU_REQUEST_ENV: "900"}, 1, "cpu request 900m"),  # below a core: one thread
        ("max 100000", {CPU_LIMIT_ENV: "1000"}, 1, "cpu limit 1000m"),
        ("max 100000", {CPU_REQUEST_ENV: "512000"}, EVERY, "cpus"),  # never more than the CPUs it may use
        ("100000 100000", {}, 1, "cgroup quota"),
        ("max 100000", {CPU_REQUEST_ENV: "0"}, EVERY, "cpus"),  # no request
    ],
)
def test_the_cpu_share_says_which_constraint_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, env: dict[str, str], cpus: int, source: str
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(EVERY)))
    share = cpu_share(_cpu_max(tmp_path, cpu_max), env)
    assert (share.cpus, share.source) == (cpus, source)


def test_the_share_keeps_request_and_limit_for_the_status(tmp_path: Path) -> None:
    share = cpu_share(_cpu_max(tmp_path), {CPU_REQUEST_ENV: "1500", CPU_LIMIT_ENV: "4000"})
    assert (share.request_millicores, share.limit_millicores) == (1500, 4000)


# --- OMP_NUM_THREADS / MKL_NUM_THREADS exported before numpy and torch load ----------------------


@pytest.mark.parametrize(
    ("environ", "modules", "exported"),
    [
        ({CPU_REQUEST_ENV: "1000"}, {}, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
        ({CPU_REQUEST_ENV: "1000", "OMP_NUM_THREADS": "3"}, {}, {}),  # the user's OMP_NUM_THREADS wins
        ({CPU_REQUEST_ENV: "1000", "MKL_NUM_THREADS": "2"}, {}, {"OMP_NUM_THREADS": "1"}),  # and their MKL too
        ({CPU_REQUEST_ENV: "1000"}, {"numpy": object()}, {}),  # too late: the pools are sized
        ({CPU_REQUEST_ENV: "1000"}, {"torch": object()}, {}),
    ],
)
def test_thread_variables_are_exported_only_where_unset_and_in_time(
    environ: dict[str, str], modules: dict[str, object], exported: dict[str, str]
) -> None:
    before = dict(environ)
    assert export_thread_env(environ, modules) == exported
    assert environ == ({**before, **exported, EXPORTED_ENV: ",".join(sorted(exported))} if exported else before)


def test_an_exported_figure_is_not_taken_for_the_users(tmp_path: Path) -> None:
    environ = {CPU_REQUEST_ENV: "1000"}
    export_thread_env(environ, {}, cpus=5)
    assert omp_threads(environ) == 5
    share = CpuShare(1, "cpu request 1000m", 1000)
    assert thread_count(environ, share) == (1, "cpu request 1000m")
    assert thread_count({"OMP_NUM_THREADS": "3"}, share) == (3, "OMP_NUM_THREADS")
    assert thread_count({"OMP_NUM_THREADS": "4,2"}, share) == (4, "OMP_NUM_THREADS")
    assert thread_count({"OMP_NUM_THREADS": "lots"}, share) == (1, "cpu request 1000m")


def test_the_entry_point_loads_neither_numpy_nor_torch() -> None:
    code = "import sys, kubegym_runner.cli; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env({}))
    assert out.stdout.strip() == "[]"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", EXPORTED_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / p) for p in ("api", "runner", "operator"))
    return {**env, **extra}


def test_torch_gets_the_request_in_a_fresh_runner_process() -> None:
    """What the pod does: the CLI exports the share, then torch loads and configure_threads sets it."""
    code = (
        "import json, os\n"
        "from kubegym_runner.compute import configure_threads, export_thread_env\n"
        "export_thread_env()\n"
        "import numpy, torch\n"
        "default = torch.get_num_threads()\n"
        "s = configure_threads()\n"
        "print(json.dumps({'default': default, 'threads': s.threads, 'interop': s.interop_threads,\n"
        "  'source': s.source, 'omp': os.environ['OMP_NUM_THREADS'], 'mkl': os.environ['MKL_NUM_THREADS']}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env({CPU_REQUEST_ENV: "1000"})
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    # torch's own default already follows the exported OMP_NUM_THREADS (not every core of the node).
    assert figures == {
        "default": 1,
        "threads": 1,
        "interop": 1,
        "source": "cpu request 1000m" if len(os.sched_getaffinity(0)) > 1 else "cpus",
        "omp": "1",
        "mkl": "1",
    }


# --- vectorization -------------------------------------------------------------------------------

CHEAP = EXPENSIVE_STEP_SECONDS / 10
COSTLY = EXPENSIVE_STEP_SECONDS * 5


@pytest.mark.parametrize(
    ("requested", "n_envs", "cpus", "env_id", "step", "mode", "workers", "why"),
    [
        # auto: subproc only for expensive envs with room for two workers
        ("auto", 8, 4, "CartPole-v1", CHEAP, "dummy", 0, "cheap"),
        ("auto", 8, 4, "ALE/Pong-v5", None, "subproc", 4, "expensive env family; 8 copies in 4 worker(s)"),
        ("auto", 8, 1, "ALE/Pong-v5", None, "dummy", 0, "allows one process"),
        ("auto", 1, 8, "ALE/Pong-v5", None, "dummy", 0, "one env copy"),
        ("auto", 4, 8, "HalfCheetah-v5", None, "subproc", 4, "one worker per copy (4)"),
        ("auto", 4, 2, "my_pkg.envs:SlowSim", COSTLY, "subproc", 2, "expensive (1000 us per step"),
        ("auto", 4, 2, "my_pkg.envs:FastSim", CHEAP, "dummy", 0, "cheap"),
        ("auto", 4, 2, "my_pkg.envs:Unmeasured", None, "dummy", 0, "not measured"),
        ("auto", 16, 2, "PongNoFrameskip-v4", None, "subproc", 2, "16 copies in 2 worker(s)"),
        # an explicit value wins...
        ("dummy", 8, 8, "ALE/Pong-v5", None, "dummy", 0, "vecEnv dummy (spec)"),
        ("subproc", 4, 8, "CartPole-v1", CHEAP, "subproc", 4, "vecEnv subproc (spec): one worker per copy"),
        # ...but subprocess workers never exceed the request
        ("subproc", 8, 2, "CartPole-v1", CHEAP, "subproc", 2, "8 copies in 2 worker(s), capped by the CPU share"),
        ("subproc", 8, 1, "CartPole-v1", CHEAP, "subproc", 1, "capped by the CPU share of 1"),
    ],
)
def test_vectorization_follows_the_request_and_the_env_cost(
    requested: str,
    n_envs: int,
    cpus: int,
    env_id: str,
    step: float | None,
    mode: str,
    workers: int,
    why: str,
) -> None:
    choice = choose_vectorization(requested, n_envs, cpus, env_id, step)
    assert (choice.mode.value, choice.workers) == (mode, workers)
    assert why in choice.reason
    assert choice.workers <= cpus


@pytest.mark.parametrize(
    ("env_id", "expensive"),
    [
        ("ALE/Breakout-v5", True),
        ("BreakoutNoFrameskip-v4", True),
        ("Humanoid-v5", True),
        ("BipedalWalker-v3", True),
        ("CartPole-v1", False),
        ("Pendulum-v1", False),
        ("gymnasium.envs.mujoco:Hopper-v5", True),
    ],
)
def test_known_expensive_env_families(env_id: str, expensive: bool) -> None:
    assert known_expensive(env_id) is expensive


@pytest.mark.parametrize(
    ("requested", "n_envs", "cpus", "env_id", "probe"),
    [
        ("auto", 8, 2, "CartPole-v1", True),
        ("auto", 8, 2, "ALE/Pong-v5", False),  # known without measuring
        ("auto", 8, 1, "CartPole-v1", False),  # one worker at most: nothing to decide
        ("auto", 1, 8, "CartPole-v1", False),
        ("dummy", 8, 8, "CartPole-v1", False),
        ("subproc", 8, 8, "CartPole-v1", False),
    ],
)
def test_the_step_cost_is_measured_only_when_it_decides(
    requested: str, n_envs: int, cpus: int, env_id: str, probe: bool
) -> None:
    assert needs_step_probe(requested, n_envs, cpus, env_id) is probe


def test_the_probe_times_a_cheap_env_and_survives_one_that_fails() -> None:
    probe = probe_env(EnvPlan(EnvFactory("CartPole-v1")), steps=50)
    assert probe.step_seconds is not None and probe.step_seconds > 0
    assert probe.action_space == gym.spaces.Discrete(2)

    class Broken(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,))
        action_space = gym.spaces.Discrete(2)

        def reset(
            self, *, seed: int | None = None, options: dict[str, object] | None = None
        ) -> tuple[np.ndarray, dict]:
            return np.zeros(1, dtype=np.float32), {}

        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
            raise ValueError("this env wants masked actions")

    assert time_steps(Broken(), 10) is None


def _config(env: dict[str, object]) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "algorithm": "PPO",
            "environment": env,
            "totalTimesteps": 1000,
            "storage": {"bucket": "unused"},
            "runPrefix": "x",
            "device": "cpu",
        }
    )


@pytest.mark.parametrize(
    ("env", "cpus", "measured", "mode", "workers"),
    [
        ({"id": "CartPole-v1", "nEnvs": 4}, 4, CHEAP, "dummy", 0),  # cheap, as measured
        ({"id": "CartPole-v1", "nEnvs": 4}, 4, COSTLY, "subproc", 4),  # (as if it were not)
        ({"id": "ALE/Pong-v5", "nEnvs": 4}, 2, None, "subproc", 2),  # expensive: grouped two per worker
        ({"id": "ALE/Pong-v5", "nEnvs": 4}, 1, None, "dummy", 0),
        ({"id": "ALE/Pong-v5", "nEnvs": 4, "vecEnv": "dummy"}, 4, None, "dummy", 0),
        ({"id": "CartPole-v1", "nEnvs": 4, "vecEnv": "subproc"}, 3, None, "subproc", 3),
    ],
)
def test_the_plan_resolves_vectorization(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, object], cpus: int, measured: float | None, mode: str, workers: int
) -> None:
    timed: list[int] = []

    def fake_time_steps(_: object, steps: int) -> float | None:
        timed.append(steps)
        return measured

    monkeypatch.setattr("kubegym_runner.envs.time_steps", fake_time_steps)
    plan = build_plan(_config(env), cpus=cpus)
    assert bool(timed) is (measured is not None)  # measured only where it decides
    assert (plan.env.vec_env, plan.env.workers) == (mode, workers)
    assert (plan.vectorization.mode.value, plan.vectorization.workers) == (mode, workers)


def test_auto_is_the_default_and_explicit_values_stay_explicit() -> None:
    assert EnvironmentConfig(id="CartPole-v1").vec_env == VecEnvMode.auto.value
    assert EnvironmentConfig.model_validate({"id": "CartPole-v1", "vecEnv": "dummy"}).vec_env == "dummy"


# --- grouped subprocess workers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "groups", "sizes"),
    [(8, 2, [4, 4]), (5, 2, [3, 2]), (3, 8, [1, 1, 1]), (7, 3, [3, 2, 2]), (4, 0, [4])],
)
def test_copies_are_split_evenly_and_in_order(n: int, groups: int, sizes: list[int]) -> None:
    parts = split_evenly(n, groups)
    assert [len(p) for p in parts] == sizes
    assert [i for p in parts for i in p] == list(range(n))


def test_grouped_workers_step_like_one_process() -> None:
    """5 CartPole copies in 2 workers: the same observations, rewards, episode ends, infos and
    reset seeds as a DummyVecEnv of the same plan (make_vec_env's per-copy seeds)."""
    factory = EnvFactory("CartPole-v1")
    grouped = build_vec_env(EnvPlan(factory, n_envs=5, vec_env="subproc", workers=2), seed=7)
    single = build_vec_env(EnvPlan(factory, n_envs=5), seed=7)
    try:
        assert isinstance(grouped, GroupedSubprocVecEnv) and grouped.workers == 2
        np.testing.assert_array_equal(grouped.reset(), single.reset())
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(120):
            actions = rng.integers(0, 2, size=5)
            a, b = grouped.step(actions), single.step(actions)
            for x, y in zip(a[:3], b[:3], strict=True):
                np.testing.assert_array_equal(x, y)
            for info_a, info_b in zip(a[3], b[3], strict=True):
                assert info_a.keys() == info_b.keys()
                if "terminal_observation" in info_a:
                    ends += 1
                    np.testing.assert_array_equal(info_a["terminal_observation"], info_b["terminal_observation"])
                    assert info_a["episode"]["r"] == info_b["episode"]["r"]
        assert ends > 0
        assert grouped.get_attr("spec", [4, 0])[0].id == "CartPole-v1"
        specs = grouped.env_method("get_wrapper_attr", "spec", indices=[3, 1])
        assert [spec.id for spec in specs] == ["CartPole-v1"] * 2
        from stable_baselines3.common.monitor import Monitor

        assert grouped.env_is_wrapped(Monitor) == [True] * 5
        grouped.set_attr("kubegym_mark", 3, indices=[2])
        assert grouped.get_attr("kubegym_mark", [2]) == [3]
    finally:
        grouped.close()
        single.close()
    assert grouped.closed and all(not p.is_alive() for p in grouped.processes)


def test_a_slow_env_costs_the_probe_one_budget() -> None:
    import time

    class Slow(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (1,))
        action_space = gym.spaces.Discrete(2)

        def reset(
            self, *, seed: int | None = None, options: dict[str, object] | None = None
        ) -> tuple[np.ndarray, dict]:
            return np.zeros(1, dtype=np.float32), {}

        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
            time.sleep(0.03)
            return np.zeros(1, dtype=np.float32), 0.0, False, False, {}

    t0 = time.perf_counter()
    cost = time_steps(Slow(), 200, budget=0.1)
    assert cost is not None and cost >= 0.03
    assert time.perf_counter() - t0 < 1.0  # not 205 steps
