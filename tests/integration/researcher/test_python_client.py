"""``kubegym.Client`` on the local cluster: ``examples/python-client.py`` runs end to end (train,
wait with a progress bar, evaluations and the TensorBoard curve as DataFrames, the model loaded and
played), and the client's errors are its own exceptions with one clear message: a spec the models
refuse never reaches the cluster, a name taken, an unknown run, a run that failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.researcher.test_researcher_loop import gym_env
from tests.integration.trainingrun.support import TR

EXAMPLE = Path(__file__).parents[3] / "examples" / "python-client.py"


def test_the_python_client_example_runs_end_to_end(
    cluster: LocalCluster, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--namespace", namespace, "--name", "from-python", "--steps", "8192"],
        env=gym_env(cluster),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "from-python: Succeeded, final mean reward " in out, out
    assert "rollout/ep_rew_mean: 4 points" in out, out  # 8,192 steps in rollouts of 2,048
    assert "one episode with the loaded model: reward " in out, out
    assert "TrainingRun from-python" in done.stderr  # the progress bar
    # The evaluations DataFrame printed by the example: one row per periodic evaluation (every 2,048).
    table = out[out.index(" timesteps ") : out.index("rollout/ep_rew_mean:")].strip().splitlines()
    assert table[0].split() == ["timesteps", "mean_reward", "std_reward"], table
    steps = [int(line.split()[0]) for line in table[1:]]
    assert len(steps) >= 3 and steps == sorted(set(steps)) and all(s % 2048 == 0 for s in steps), table


def test_client_errors(cluster: LocalCluster, kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pydantic

    from kubegym import Client, CliError, RunFailedError

    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    client = Client(namespace=namespace)
    with pytest.raises(pydantic.ValidationError, match="algorithm"):  # refused in Python: nothing created
        client.train("bad", algorithm="ppo", environment={"id": "CartPole-v1"}, total_timesteps=1000)
    assert kube.get(TR.format(ns=namespace))["items"] == []
    spec = {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "total_timesteps": 1000}
    client.train("taken", spec)
    with pytest.raises(CliError, match=f"TrainingRun {namespace}/taken: .*already exists"):
        client.train("taken", spec)
    with pytest.raises(CliError, match=f'trainingrun "no-such-run" not found in namespace {namespace}'):
        client.wait("no-such-run")
    # A run that fails before training (an environment id gymnasium does not know): RunFailedError, with its reason.
    client.train("fails", algorithm="PPO", environment={"id": "NoSuchEnv-v0"}, total_timesteps=1000)
    with pytest.raises(RunFailedError, match=f"TrainingRun {namespace}/fails failed: .*NoSuchEnv-v0"):
        client.wait("fails", timeout=600, progress=False)
