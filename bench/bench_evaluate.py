"""Evaluation throughput: the Benchmark runner's loop against stable-baselines3's ``evaluate_policy``.

Same model (PPO on CartPole-v1, trained here with rl-zoo3's preset through the runner's own plan,
so its episodes are long), same episode count, same seed, one torch thread for all, on 1 env and
on ``--n-envs`` envs:

* ``evaluate_policy`` with SB3's defaults (DummyVecEnv + Monitor, as SB3 documents) — the baseline;
* ``evaluate_policy`` with the runner's torch settings, to show what the loop itself is worth;
* the runner's :func:`kubegym_runner.evaluate.play` (which also times every policy call) on the env
  the runner's own ``build_env`` makes.

Goals (issue 4): runner at n envs >= 8x ``evaluate_policy`` at 1 env, and >= 1.0x
``evaluate_policy`` at n envs. ``--write`` puts the table into docs/benchmarks.md between markers.

    python bench/bench_evaluate.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from benchdoc import markers, write_section

REPO = Path(__file__).resolve().parents[1]
for folder in ("api", "runner", "operator"):
    sys.path.insert(0, str(REPO / folder))

BEGIN, END = markers("bench_evaluate")


def train_model(path: Path, steps: int) -> None:
    """PPO with rl-zoo3's CartPole preset, built by the runner's plan (as a TrainingRun would)."""
    from kubegym_api.environment import EnvironmentConfig
    from kubegym_api.runnerconfig import TrainConfig
    from kubegym_api.storage import S3Storage
    from kubegym_runner.envs import build_vec_env
    from kubegym_runner.plan import build_plan

    config = TrainConfig(
        algorithm="PPO",
        environment=EnvironmentConfig(id="CartPole-v1"),
        preset="rl-zoo3",
        total_timesteps=steps,
        seed=1,
        device="cpu",
        storage=S3Storage(bucket="unused"),
        run_prefix="bench",
    )
    plan = build_plan(config)
    env = build_vec_env(plan.env, seed=1)
    model = plan.algorithm(plan.policy, env, seed=1, device="cpu", verbose=0, **plan.hyperparameters)
    model.learn(plan.total_timesteps)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    env.close()


@dataclass(frozen=True)
class Result:
    name: str
    n_envs: int
    #: Median over repeats of episodes per CPU second of this process (the primary number).
    cpu_rate: float
    #: Best over repeats of episodes per wall-clock second.
    wall_rate: float
    mean_return: float
    policy_calls: int | None = None


Run = Callable[[], tuple[int, float, int | None]]


def measure(runs: dict[str, Run], repeats: int) -> dict[str, tuple[float, float, float, int | None]]:
    """Interleaved repeats (drift hits every contender alike); CPU time is what the process used,
    so other tenants of a shared machine barely move it, unlike wall time."""
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    last: dict[str, tuple[int, float, int | None]] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            last[name] = run()
            c1, w1 = time.process_time(), time.perf_counter()
            cpu[name].append(last[name][0] / (c1 - c0))
            wall[name].append(last[name][0] / (w1 - w0))
    return {k: (statistics.median(cpu[k]), max(wall[k]), last[k][1], last[k][2]) for k in runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a PPO CartPole-v1 model.zip (default: train one, cached)")
    parser.add_argument("--train-steps", type=int, default=100_000, help="rl-zoo3's budget for CartPole")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--n-envs", type=int, default=16, help="the runner's default nEnvs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_evaluate markers)")
    args = parser.parse_args()

    import stable_baselines3
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

    from kubegym_api.environment import BenchmarkEnvironment
    from kubegym_runner.evaluate import build_env, configure_inference, play, predictor

    load = os.getloadavg()[0]
    torch.set_num_threads(1)
    cache = Path(os.environ.get("KUBEGYM_CACHE", Path.home() / ".cache" / "kubegym")) / "bench"
    model_path = args.model or cache / f"cartpole-ppo-{args.train_steps}.zip"
    if not model_path.exists():
        print(f"training {model_path} ({args.train_steps} steps)...", file=sys.stderr)
        train_model(model_path, args.train_steps)
    model = PPO.load(model_path, device="cpu")
    episodes = args.episodes

    def sb3(env: VecEnv, runner_torch: bool) -> Run:
        def run() -> tuple[int, float, int | None]:
            torch.distributions.Distribution.set_default_validate_args(not runner_torch)
            env.seed(0)
            returns, _ = evaluate_policy(
                model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
            )
            return len(returns), float(np.mean(returns)), None  # type: ignore[arg-type]

        return run

    def runner(env: VecEnv) -> Run:
        def run() -> tuple[int, float, int | None]:
            configure_inference()
            env.seed(0)
            played = play(env, predictor(model, env, deterministic=True), episodes)
            return len(played.returns), float(np.mean(played.returns)), len(played.latencies_ns)

        return run

    contenders = (
        ("evaluate_policy", "SB3 defaults"),
        ("evaluate_policy", "runner's torch settings"),
        ("kubegym runner", "runner's torch settings"),
    )
    results: list[Result] = []
    for n in (1, args.n_envs):
        sb3_env = make_vec_env("CartPole-v1", n_envs=n, vec_env_cls=DummyVecEnv)
        runner_env = build_env(BenchmarkEnvironment(id="CartPole-v1"), n, None)
        runs = {
            contenders[0]: sb3(sb3_env, runner_torch=False),
            contenders[1]: sb3(sb3_env, runner_torch=True),
            contenders[2]: runner(runner_env),
        }
        measured = measure({f"{a} ({b})": r for (a, b), r in runs.items()}, args.repeats)
        for name, (cpu_rate, wall_rate, mean, calls) in measured.items():
            results.append(Result(name, n, cpu_rate, wall_rate, mean, calls))
            print(
                f"{name:50s} n_envs={n:3d}: {cpu_rate:7.1f} episodes/CPU-s, best {wall_rate:7.1f} episodes/s",
                file=sys.stderr,
            )
        sb3_env.close()
        runner_env.close()

    base = f"{contenders[0][0]} ({contenders[0][1]})"
    ours = f"{contenders[2][0]} ({contenders[2][1]})"
    by = {(r.name, r.n_envs): r for r in results}
    one_env = by[(base, 1)].cpu_rate
    vs_one = by[(ours, args.n_envs)].cpu_rate / one_env
    vs_equal = by[(ours, args.n_envs)].cpu_rate / by[(base, args.n_envs)].cpu_rate
    vs_equal_wall = by[(ours, args.n_envs)].wall_rate / by[(base, args.n_envs)].wall_rate
    lines = [
        BEGIN,
        "## Evaluation throughput (Benchmark runner vs `evaluate_policy`)",
        "",
        f"Command: `python bench/bench_evaluate.py --episodes {episodes} --n-envs {args.n_envs} "
        f"--repeats {args.repeats} --write docs/benchmarks.md`",
        "",
        f"Model: PPO on CartPole-v1, rl-zoo3 preset, {args.train_steps} timesteps (`{model_path.name}`); "
        f"{episodes} deterministic episodes per measurement, seed 0, same envs (DummyVecEnv + Monitor) for "
        f"both; {args.repeats} interleaved repeats; one torch thread for all. Timed: the evaluation call "
        "(reset and every step); env construction and model loading are not. *episodes/CPU-s* (median) "
        "divides by the CPU time of the process, which other tenants of a shared machine barely move; "
        "*best episodes/s* is wall-clock, best repeat. The runner's torch settings "
        "(`configure_inference`): one thread, distribution argument validation off (the runner checks "
        "once per model that its weights are finite instead).",
        "",
        "| evaluator | envs | episodes/CPU-s | vs `evaluate_policy` 1 env | best episodes/s | mean return | "
        "timed policy calls |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        calls = str(r.policy_calls) if r.policy_calls is not None else "-"
        lines.append(
            f"| {r.name} | {r.n_envs} | {r.cpu_rate:.1f} | {r.cpu_rate / one_env:.1f}x | {r.wall_rate:.1f} | "
            f"{r.mean_return:.1f} | {calls} |"
        )
    goal_one = "met" if vs_one >= 8 else "NOT met"
    goal_equal = "met" if vs_equal >= 1.0 else "NOT met"
    lines += [
        "",
        f"- Runner at {args.n_envs} envs vs `evaluate_policy` at 1 env: **{vs_one:.1f}x** (goal >= 8x: {goal_one}).",
        f"- Runner vs `evaluate_policy`, both at {args.n_envs} envs: **{vs_equal:.2f}x** by CPU time, "
        f"{vs_equal_wall:.2f}x by best wall time (goal >= 1.0x while timing every policy call: {goal_equal}).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, load average "
        f"{load:.1f} at the start (shared with other jobs); Python {platform.python_version()}, "
        f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d')}.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
