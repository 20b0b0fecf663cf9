"""The researcher's loop from Python with ``kubegym.Client``: train, follow, read the results as
DataFrames, load the trained model and use it.

    python examples/python-client.py [--namespace NS] [--name NAME] [--steps N]

It needs what ``kubectl gym`` needs: a kubeconfig (``$KUBECONFIG``) and, for the results in S3,
the ``AWS_*`` variables (``eval "$(make env)"`` on the local cluster). The test tier runs it
(``tests/integration/researcher/test_python_client.py``).
"""

from __future__ import annotations

import argparse

import gymnasium as gym

from kubegym import Client

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--namespace", help="namespace (default: the kubeconfig context's)")
parser.add_argument("--name", default="cartpole-from-python")
parser.add_argument("--steps", type=int, default=8192)
args = parser.parse_args()

gym_client = Client(namespace=args.namespace)
gym_client.train(
    args.name,
    algorithm="PPO",
    environment={"id": "CartPole-v1"},
    total_timesteps=args.steps,
    device="cpu",
    evaluation={"every_steps": 2048, "episodes": 5},
    checkpoint={"every_steps": 4096},
)
run = gym_client.wait(args.name)  # a progress bar; raises RunFailedError if the run fails
print(f"{args.name}: {run['status']['phase']}, final mean reward {run['status']['result']['meanReward']:.1f}")

evaluations = gym_client.evaluations(args.name)
print(evaluations[["timesteps", "mean_reward", "std_reward"]].to_string(index=False))
curve = gym_client.curves(args.name, "rollout/ep_rew_mean")
print(f"rollout/ep_rew_mean: {len(curve)} points, last {curve['value'].iloc[-1]:.1f} at step {curve['step'].iloc[-1]}")

model = gym_client.load_model(args.name)
env = gym.make("CartPole-v1")
obs, _ = env.reset(seed=0)
total, done = 0.0, False
while not done:
    action, _ = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, _ = env.step(action)
    total, done = total + float(reward), terminated or truncated
print(f"one episode with the loaded model: reward {total:.0f}")
