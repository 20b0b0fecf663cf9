"""The researcher's loop on the local cluster, with the real ``kubectl-gym`` executable: a short
CartPole PPO run is followed live with ``kubectl gym logs -f``; once it succeeded ``kubectl gym
status`` says so at 100%; after its pod is deleted ``kubectl gym logs`` reads the runner's log
back from S3; ``kubectl gym download`` writes the final model whose sha256s match its manifest,
and the two lines it prints load the model in a fresh Python; a model changed by one byte in S3
fails the download with one line; an unknown run, storage unreachable and no permission (a
ServiceAccount without a Role) are one line and exit 1. A second run is followed across a deleted
pod, and ``--previous`` reads the deleted attempt's copy, uploaded at SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import s3_client, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "cartpole-loop"
TOTAL = 4096


def gym_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment a researcher has: the cluster's kubeconfig and an S3 key that reads the bucket."""
    storage = {k: v for k, v in cluster.storage_env().items() if k != "BUCKET"}
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), **storage}


def gym(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubegym_cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_status_logs_and_download_of_a_short_run(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns, env = namespace, gym_env(cluster)
    kubectl.apply(training_run(NAME, totalTimesteps=TOTAL, checkpoint={"everySteps": 2048}))

    # Followed live from before its pod exists until the run ends: kubectl gym logs -f exits by itself.
    follower = subprocess.Popen(
        [sys.executable, "-m", "kubegym_cli", "logs", NAME, "-n", ns, "-f"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        live, live_err = follower.communicate(timeout=900)
    finally:
        follower.kill()
    assert follower.returncode == 0, live_err
    assert f"training {TOTAL} timesteps (from 0 to {TOTAL})" in live, live[-2000:]
    assert "final evaluation:" in live, live[-2000:]
    assert "stored copy" not in live_err  # it was the pod's log, through the API

    wait_until(lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"), 300, "the run to finish")
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", st
    assert st["estimatedRemainingSeconds"] == 0
    shown = gym(env, "status", NAME, "-n", ns)
    assert shown.returncode == 0, shown.stderr
    assert f"TrainingRun {ns}/{NAME}: Succeeded" in shown.stdout
    assert "100%" in shown.stdout and f"{TOTAL:,}/{TOTAL:,} steps" in shown.stdout
    assert "last checkpoint: step 4,096" in shown.stdout, shown.stdout
    watched = gym(env, "watch", NAME, "-n", ns)  # a finished run: one view, exit 0
    assert watched.returncode == 0 and "Succeeded" in watched.stdout

    # The pod is deleted: the log comes from the run's folder in S3, the runner's known lines in it.
    job = st["jobName"]
    kubectl.run("delete", "pod", "-l", f"batch.kubernetes.io/job-name={job}", "--wait=true", timeout=120)
    wait_until(
        lambda: (
            not kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"batch.kubernetes.io/job-name={job}")["items"]
        ),
        120,
        "the run's pods to be gone",
    )
    stored = gym(env, "logs", NAME, "-n", ns)
    assert stored.returncode == 0, stored.stderr
    assert "==> stored copy of attempt " in stored.stderr
    assert f"training {TOTAL} timesteps (from 0 to {TOTAL})" in stored.stdout
    assert "INFO kubegym_runner.train: final evaluation: " in stored.stdout, stored.stdout[-2000:]
    assert "AWS_SECRET_ACCESS_KEY" not in stored.stdout
    assert env["AWS_SECRET_ACCESS_KEY"] not in stored.stdout
    unreachable = gym(env, "logs", NAME, "-n", ns, "--endpoint", "http://127.0.0.1:9")  # nothing listens there
    assert unreachable.returncode == 1 and unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert unreachable.stderr.startswith("Error: cannot read the stored logs of "), unreachable.stderr
    previous = gym(env, "logs", NAME, "-n", ns, "--previous")  # one attempt only: no previous one
    assert previous.returncode == 1 and previous.stderr.strip().count("\n") == 0
    assert "has no previous attempt" in previous.stderr

    # Download: the files match the manifest's sha256s, and the printed lines load the model.
    out = tmp_path / "model"
    done = gym(env, "download", NAME, "-n", ns, "--dir", str(out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["objects"], manifest
    for name, digest in manifest["objects"].items():
        assert sha256(out / name) == digest["sha256"], name
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0] == "from stable_baselines3 import PPO", lines
    loaded = subprocess.run(
        [sys.executable, "-c", "\n".join([*lines, "print(type(model).__name__, model.num_timesteps)"])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split()[:2] == ["PPO", str(st["result"]["timesteps"])], loaded.stdout

    # One byte changed in S3: the download fails with one line, and the bad file is not left behind.
    s3, bucket = s3_client(kube, ns)
    key = st["result"]["modelUri"].removeprefix(f"s3://{bucket}/").rstrip("/") + "/model.zip"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    corrupt = tmp_path / "corrupt"
    bad = gym(env, "download", NAME, "-n", ns, "--dir", str(corrupt))
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: ") and "sha256" in bad.stderr, bad.stderr
    assert not (corrupt / "model.zip").exists()

    # An unknown run: one line, exit 1, for each command.
    for command in (["status"], ["logs"], ["download"]):
        unknown = gym(env, *command, "no-such-run", "-n", ns)
        assert unknown.returncode == 1, (command, unknown.stdout, unknown.stderr)
        assert unknown.stderr.count("\n") == 1 and unknown.stderr.startswith("Error: "), unknown.stderr
        assert "no-such-run" in unknown.stderr


def test_logs_follow_the_run_across_a_deleted_pod_and_keep_the_sigterm_attempt(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns, env, name = namespace, gym_env(cluster), "cartpole-moved"
    kubectl.apply(training_run(name, totalTimesteps=40_000, checkpoint={"everySteps": 2048}))
    follower = subprocess.Popen(
        [sys.executable, "-m", "kubegym_cli", "logs", name, "-n", ns, "-f"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (status(kube, ns, name).get("checkpoints") or {}).get("count", 0) >= 1, 300, "a first checkpoint"
        )
        job = status(kube, ns, name)["jobName"]
        (first,) = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"batch.kubernetes.io/job-name={job}")[
            "items"
        ]
        kubectl.run("delete", "pod", first["metadata"]["name"], "--wait=true", timeout=180)
        # While the next pod trains, --previous is the deleted attempt: its copy, uploaded at SIGTERM.
        wait_until(lambda: (status(kube, ns, name).get("progress") or {}).get("resumedFromStep"), 300, "the next pod")
        previous = gym(env, "logs", name, "-n", ns, "--previous")
        assert previous.returncode == 0, previous.stderr
        assert f"-{first['metadata']['name']} (s3://" in previous.stderr  # the stored copy of the deleted pod
        assert "received SIGTERM: stopping after a checkpoint" in previous.stdout, previous.stdout[-2000:]
        assert previous.stdout.splitlines()[-1].startswith("kubegym-runner: stopped: terminated at timestep ")
        live, live_err = follower.communicate(timeout=900)
    finally:
        follower.kill()
    assert follower.returncode == 0, live_err
    # One stream: the first pod up to its SIGTERM, then the next pod from its resume to the end.
    assert "received SIGTERM" in live and "resuming from" in live, live[-3000:]
    assert live.index("received SIGTERM") < live.index("resuming from") < live.index("final evaluation:")
    assert "==> pod " in live_err
    assert status(kube, ns, name)["phase"] == "Succeeded"


def test_no_permission_is_one_line_and_exit_1(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, tmp_path: Path
) -> None:
    """A ServiceAccount with no Role: the API server answers 403 to each command, which says so in one line."""
    import yaml

    ns = namespace
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "nobody"}})
    token = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/nobody/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )["status"]["token"]
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "nobody", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "nobody"
    kubeconfig = tmp_path / "nobody.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {**gym_env(cluster), "KUBECONFIG": str(kubeconfig)}
    for command in (["status", "trainingrun/anything"], ["logs", "anything"], ["download", "anything"]):
        denied = gym(env, *command, "-n", ns)
        assert denied.returncode == 1, (command, denied.stdout, denied.stderr)
        assert denied.stderr == f"Error: no permission to read trainingruns in namespace {ns} (403 Forbidden)\n"
