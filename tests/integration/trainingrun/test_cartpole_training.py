"""The heart of the product on the local cluster: examples/cartpole-ppo.yaml trains for real.

One run carries the story a user lives through: the rl-zoo3 preset trains CartPole; the
operator restarts mid-run (no duplicate Job, status catches up); the runner pod is deleted
mid-run (a new pod resumes from the newest checkpoint); the run still succeeds with an
evaluation reward of at least 475, and its checkpoints and final model are in MinIO and load
with stable-baselines3.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import example, get_run, keys, s3_client, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "cartpole-ppo"


def runner_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return list(kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"kubegym.io/training-run={NAME}")["items"])


def test_cartpole_preset_trains_survives_disruption_and_succeeds(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    kubectl.apply(example("cartpole-ppo.yaml"))

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-3000:] + "\n--- operator:\n" + operator.tail(20)

    # Training starts and writes its first checkpoint.
    wait_until(
        lambda: (status(kube, ns, NAME).get("checkpoints") or {}).get("count", 0) >= 1,
        300,
        "a first checkpoint",
        describe=describe,
    )

    # The operator restarts mid-run: same single Job, and status keeps moving.
    jobs_before = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    assert len(jobs_before) == 1
    operator.restart()
    steps = (status(kube, ns, NAME).get("progress") or {}).get("timesteps", 0)
    wait_until(
        lambda: (status(kube, ns, NAME).get("progress") or {}).get("timesteps", 0) > steps,
        120,
        "progress after the operator restart",
        describe=describe,
    )
    jobs_after = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    assert [j["metadata"]["uid"] for j in jobs_after] == [j["metadata"]["uid"] for j in jobs_before]

    # The runner pod is lost mid-training: the Job replaces it and the new pod resumes.
    (first,) = [p for p in runner_pods(kube, ns) if p["status"].get("phase") == "Running"]
    checkpoint_step = status(kube, ns, NAME)["checkpoints"]["latestStep"]
    assert checkpoint_step > 0
    kubectl.run("delete", "pod", first["metadata"]["name"], "--wait=false")
    resumed = wait_until(
        lambda: (status(kube, ns, NAME).get("progress") or {}).get("resumedFromStep"),
        240,
        "the new pod to report its resume step",
        describe=describe,
    )
    assert resumed >= checkpoint_step > 0
    second = wait_until(
        lambda: [p for p in runner_pods(kube, ns) if p["metadata"]["uid"] != first["metadata"]["uid"]],
        60,
        "the replacement pod",
    )
    log = kubectl.run("logs", second[0]["metadata"]["name"]).stdout
    assert "resuming from" in log and str(resumed) in log, log[-2000:]

    # The run succeeds with a solved evaluation.
    wait_until(
        lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        1500,
        "the run to finish",
        describe=describe,
    )
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    assert (
        st["observedGeneration"]
        == kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns/{NAME}")["metadata"]["generation"]
    )
    assert st["progress"]["lastEvaluation"]["meanReward"] >= 475, st["progress"]
    assert st["result"]["meanReward"] >= 475, st["result"]
    assert st["progress"]["timesteps"] >= 100_000  # the preset's budget, continued across the resume
    assert st["startTime"] and st["completionTime"]
    ready = next(c for c in st["conditions"] if c["type"] == "Succeeded")
    assert ready["status"] == "True"

    # `kubectl get trainingruns` answers "how did it go" at a glance.
    table = kubectl.run("get", "trainingruns").stdout
    header, row = table.splitlines()[:2]
    for column in ("PHASE", "ALGORITHM", "ENV", "PROGRESS", "REWARD", "AGE"):
        assert column in header
    for value in (NAME, "Succeeded", "PPO", "CartPole-v1", "100"):
        assert value in row
    assert NAME in kubectl.run("get", "gym").stdout

    # Checkpoints (with manifests) and the final model are in MinIO and load with SB3.
    s3, bucket = s3_client(kube, ns)
    run = get_run(kube, ns, NAME)
    prefix = f"{ns}/{NAME}/{run['metadata']['uid']}"  # the run's own folder: its uid in the name
    assert st["artifacts"] == {"bucket": bucket, "prefix": prefix, "uri": f"s3://{bucket}/{prefix}/"}
    objects = keys(s3, bucket, f"{prefix}/")
    manifests = [k for k in objects if k.startswith(f"{prefix}/checkpoints/") and k.endswith("manifest.json")]
    assert 1 <= len(manifests) <= 3  # keepLast: 3
    final = st["result"]["modelUri"]
    assert final.startswith(f"s3://{bucket}/{prefix}/final")
    model_key = next(k for k in objects if k.startswith(f"{prefix}/final/") and k.endswith(".zip"))
    from stable_baselines3 import PPO

    blob = s3.get_object(Bucket=bucket, Key=model_key)["Body"].read()
    assert zipfile.is_zipfile(io.BytesIO(blob))
    model = PPO.load(io.BytesIO(blob), device="cpu")
    assert model.num_timesteps >= 100_000
