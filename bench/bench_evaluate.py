"""Evaluation throughput: the Benchmark runner's loop against stable-baselines3's ``evaluate_policy``.

Same model (PPO on CartPole-v1, trained here with rl-zoo3's preset through the runner's own plan,
so its episodes last the full 500 steps), same episode count, same seed, one torch thread for
both (the runner's setting). Four measurements, each the median of ``--repeats``:

* ``evaluate_policy`` on 1 env and on ``--n-envs`` envs (DummyVecEnv + Monitor, as SB3 documents);
* the runner's :func:`kubegym_runner.evaluate.play` (which also times every policy call) on the
  same two env counts, with the env built by the runner's own ``build_env``.

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

REPO = Path(__file__).resolve().parents[1]
for folder in ("runner", "operator"):
    sys.path.insert(0, str(REPO / folder))

BEGIN = "<!-- bench_evaluate:begin -->"
END = "<!-- bench_evaluate:end -->"


def train_model(path: Path, steps: int) -> None:
    """PPO with rl-zoo3's CartPole preset, built by the runner's plan (as a TrainingRun would)."""
    from kubegym_runner.config import EnvironmentConfig, S3Storage, TrainConfig
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
    episodes_per_second: float
    mean_return: float
    policy_calls: int | None = None


def measure(run: Callable[[], tuple[int, float, int | None]], repeats: int) -> tuple[float, float, int | None]:
    """Median episodes/s over repeats (wall time around the whole call, resets included)."""
    rates, last = [], (0, 0.0, None)
    for _ in range(repeats):
        start = time.perf_counter()
        last = run()
        rates.append(last[0] / (time.perf_counter() - start))
    return statistics.median(rates), last[1], last[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a PPO CartPole-v1 model.zip (default: train one, cached)")
    parser.add_argument("--train-steps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--n-envs", type=int, default=16, help="the runner's default nEnvs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, help="markdown file to update (between bench_evaluate markers)")
    args = parser.parse_args()

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from kubegym_runner.config import BenchmarkEnvironment
    from kubegym_runner.evaluate import build_env, play, predictor, single_threaded

    single_threaded()
    load = os.getloadavg()[0]
    cache = Path(os.environ.get("KUBEGYM_CACHE", Path.home() / ".cache" / "kubegym")) / "bench"
    model_path = args.model or cache / f"cartpole-ppo-{args.train_steps}.zip"
    if not model_path.exists():
        print(f"training {model_path} ({args.train_steps} steps)...", file=sys.stderr)
        train_model(model_path, args.train_steps)
    model = PPO.load(model_path, device="cpu")
    episodes = args.episodes

    def sb3(n: int) -> Callable[[], tuple[int, float, int | None]]:
        def run() -> tuple[int, float, int | None]:
            env = make_vec_env("CartPole-v1", n_envs=n, vec_env_cls=DummyVecEnv)
            env.seed(0)
            returns, _ = evaluate_policy(
                model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
            )
            env.close()
            return len(returns), float(np.mean(returns)), None  # type: ignore[arg-type]

        return run

    def runner(n: int) -> Callable[[], tuple[int, float, int | None]]:
        def run() -> tuple[int, float, int | None]:
            env = build_env(BenchmarkEnvironment(id="CartPole-v1"), n, None)
            env.seed(0)
            played = play(env, predictor(model, env, deterministic=True), episodes)
            env.close()
            return len(played.returns), float(np.mean(played.returns)), len(played.latencies_ns)

        return run

    results = []
    for name, factory in (("evaluate_policy", sb3), ("kubegym runner", runner)):
        for n in (1, args.n_envs):
            rate, mean, calls = measure(factory(n), args.repeats)
            results.append(Result(name, n, rate, mean, calls))
            print(f"{name:16s} n_envs={n:3d}: {rate:7.1f} episodes/s (mean return {mean:.1f})", file=sys.stderr)

    by = {(r.name, r.n_envs): r.episodes_per_second for r in results}
    one_env = by[("evaluate_policy", 1)]
    vs_one = by[("kubegym runner", args.n_envs)] / one_env
    vs_equal = by[("kubegym runner", args.n_envs)] / by[("evaluate_policy", args.n_envs)]
    lines = [
        BEGIN,
        "## Evaluation throughput (Benchmark runner vs `evaluate_policy`)",
        "",
        f"Command: `python bench/bench_evaluate.py --episodes {episodes} --n-envs {args.n_envs} "
        f"--repeats {args.repeats} --write docs/benchmarks.md`",
        "",
        f"Model: PPO on CartPole-v1, rl-zoo3 preset, {args.train_steps} timesteps (`{model_path.name}`); "
        f"{episodes} deterministic episodes per measurement, seed 0; median of {args.repeats} repeats; "
        "one torch thread for both. Wall time around each whole evaluation, env construction and reset "
        "included for both, model loading excluded.",
        "",
        "| evaluator | envs | episodes/s | vs `evaluate_policy` 1 env | mean return | timed policy calls |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        calls = str(r.policy_calls) if r.policy_calls is not None else "-"
        lines.append(
            f"| {r.name} | {r.n_envs} | {r.episodes_per_second:.1f} | {r.episodes_per_second / one_env:.1f}x | "
            f"{r.mean_return:.1f} | {calls} |"
        )
    goal_one = "met" if vs_one >= 8 else "NOT met"
    goal_equal = "met" if vs_equal >= 1.0 else "NOT met"
    lines += [
        "",
        f"- Runner at {args.n_envs} envs vs `evaluate_policy` at 1 env: **{vs_one:.1f}x** (goal >= 8x: {goal_one}).",
        f"- Runner vs `evaluate_policy`, both at {args.n_envs} envs: **{vs_equal:.2f}x** (goal >= 1.0x while timing "
        f"every policy call: {goal_equal}).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, load average "
        f"{load:.1f} at the start (shared: absolute numbers vary, ratios are what to read); "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"stable-baselines3 {__import__('stable_baselines3').__version__}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d')}.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        text = args.write.read_text() if args.write.exists() else "# Benchmarks\n\nResults of the `bench/` scripts.\n"
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
