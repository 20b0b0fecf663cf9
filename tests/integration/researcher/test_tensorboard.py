"""``kubectl gym tensorboard`` on the local cluster, with the real executable and a real TensorBoard:
a CartPole PPO run whose pod is deleted twice while it trains (each attempt resumes from its last
checkpoint) ends Succeeded; TensorBoard, asked through its own HTTP API, has the run's
``rollout/ep_rew_mean`` curve continuous in steps (each step once, rising to the end of training,
no restart at 0) and its last point is the mean episode reward the run's status reports. The error
paths — the port in use, a run with no curves yet, storage unreachable, an unknown name — are one
line and exit 1."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.researcher.test_researcher_loop import gym, gym_env
from tests.integration.trainingrun.support import status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "cartpole-curves"
#: PPO's default rollout is 2,048 steps on one env: one point per rollout, ten in all.
TOTAL = 20_480


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def delete_pod_and_wait_for_resume(kube: Kube, kubectl: Kubectl, ns: str, resumes: int) -> None:
    """Delete the run's pod once it has a checkpoint newer than the last resume, then wait until the
    next pod has resumed (``resumedFromStep`` set by a new attempt)."""
    last = (status(kube, ns, NAME).get("progress") or {}).get("resumedFromStep") or 0
    wait_until(
        lambda: ((status(kube, ns, NAME).get("checkpoints") or {}).get("latestStep") or 0) > last,
        600,
        "a checkpoint past the last resume",
    )
    job = status(kube, ns, NAME)["jobName"]
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"batch.kubernetes.io/job-name={job}")["items"]
    running = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert running, pods
    kubectl.run("delete", "pod", *running, "--wait=true", timeout=180)
    wait_until(
        lambda: ((status(kube, ns, NAME).get("progress") or {}).get("resumedFromStep") or 0) > last,
        600,
        f"resume number {resumes}",
    )


def scalars(port: int, run: str, tag: str) -> list[list[float]]:
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", timeout=10) as resp:
        data: list[list[float]] = json.loads(resp.read())
        return data


def runs(port: int) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=10) as resp:
            names: list[str] = json.loads(resp.read())
            return names
    except OSError:
        return []


def test_curves_of_a_run_whose_pod_was_deleted_twice_are_continuous_in_tensorboard(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns, env = namespace, gym_env(cluster)
    kubectl.apply(training_run(NAME, totalTimesteps=TOTAL, checkpoint={"everySteps": 2048}))
    wait_until(lambda: status(kube, ns, NAME).get("jobName"), 120, "the run's Job")

    # No curves yet while nothing has trained: one line, exit 1 (or a run that has already begun
    # training: then there are curves, and this check is not what the test is about).
    early = gym(env, "tensorboard", NAME, "-n", ns, "--sync-only", "--dir", str(tmp_path / "early"))
    if early.returncode == 1:
        assert early.stderr.count("\n") == 1 and "has no TensorBoard curves yet" in early.stderr, early.stderr

    delete_pod_and_wait_for_resume(kube, kubectl, ns, 1)
    delete_pod_and_wait_for_resume(kube, kubectl, ns, 2)
    wait_until(lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"), 900, "the run to finish")
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", st

    port = free_port()
    cache = tmp_path / "cache"
    server = subprocess.Popen(
        [sys.executable, "-m", "kubegym_cli", "tensorboard", NAME, "-n", ns, "--port", str(port), "--dir", str(cache)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: NAME in runs(port) or server.poll() is not None, 120, "TensorBoard to serve the run")
        assert server.poll() is None, server.communicate()
        assert len(list((cache / NAME).glob("events.out.tfevents.*"))) == 3  # one event file per attempt
        points = scalars(port, NAME, "rollout/ep_rew_mean")

        # The port is TensorBoard's now: a second one is refused with one line.
        taken = gym(env, "tensorboard", NAME, "-n", ns, "--port", str(port), "--dir", str(tmp_path / "second"))
        assert taken.returncode == 1, taken.stdout
        assert taken.stderr == f"Error: port {port} is in use: choose another with --port\n"
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"TensorBoard on http://127.0.0.1:{port}/" in out, (out, err)

    # A point per rollout. An attempt stopped by SIGTERM mid-rollout resumes from that step, so the
    # points after a restart are off the 2,048 grid, and the last rollout overshoots the budget.
    steps = [int(step) for _, step, _ in points]
    assert steps == sorted(set(steps)), steps  # each step once, in order: no restart at 0
    assert steps[0] == 2048 and steps[-1] == st["result"]["timesteps"] >= TOTAL, steps
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 2 * 2048, steps  # nothing lost
    assert points[-1][2] == pytest.approx(st["progress"]["meanEpisodeReward"], rel=1e-3, abs=1e-2)

    # Storage unreachable and an unknown name: one line, exit 1.
    away = gym(env, "tensorboard", NAME, "-n", ns, "--sync-only", "--endpoint", "http://127.0.0.1:9")
    assert away.returncode == 1 and away.stderr.count("\n") == 1, away.stderr
    assert away.stderr.startswith(f"Error: cannot read the curves of {NAME} in s3://"), away.stderr
    unknown = gym(env, "tensorboard", "no-such-run", "-n", ns, "--sync-only")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "no-such-run" in unknown.stderr
