"""The GPU and off-policy examples run for real as short CPU smokes.

examples/atari-ppo-gpu.yaml asks for a GPU, CUDA and a Kueue queue; here it runs with a tiny
budget on CPU (no GPU, no queue) to prove the rest of it — rl-zoo3's Atari preset, the CNN
policy, ale-py's ROMs, frame stacking — works end to end. examples/pendulum-sac.yaml runs with
a tiny budget and checkpoints its replay buffer.
"""

from __future__ import annotations

import functools
from typing import Any

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.trainingrun.support import artifacts_prefix, example, keys, s3_client, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


def _smoke(manifest: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec_ = manifest["spec"]
    spec_.update(spec)
    spec_.pop("scheduling", None)  # no Kueue on the local cluster: the Job would wait for admission
    return manifest


def _describe(kube: Kube, ns: str, name: str, operator: OperatorProcess) -> str:
    return f"{status(kube, ns, name)}\n{operator.tail(10)}"


def _finished(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def test_atari_and_pendulum_examples_as_cpu_smokes(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    atari = _smoke(
        example("atari-ppo-gpu.yaml"),
        totalTimesteps=256,
        device="cpu",
        resources={"cpu": "1", "memory": "4Gi", "gpu": 0},
        evaluation={"everySteps": 100000, "episodes": 1},
    )
    atari["spec"]["environment"].update({"nEnvs": 2, "vecEnv": "dummy"})
    pendulum = _smoke(
        example("pendulum-sac.yaml"),
        totalTimesteps=600,
        evaluation={"everySteps": 100000, "episodes": 1},
        checkpoint={"everySteps": 300, "keepLast": 2, "saveReplayBuffer": True},
    )
    for manifest in (atari, pendulum):
        kubectl.apply(manifest)
    for manifest in (atari, pendulum):
        name = manifest["metadata"]["name"]
        st = wait_until(
            functools.partial(_finished, kube, namespace, name),
            600,
            f"{name} to finish",
            describe=functools.partial(_describe, kube, namespace, name, operator),
        )
        assert st["phase"] == "Succeeded", st
        assert st["result"]["modelUri"]
    s3, bucket = s3_client(kube, namespace)
    prefix = artifacts_prefix(kube, namespace, "pendulum-sac")
    buffers = [k for k in keys(s3, bucket, f"{prefix}/checkpoints/") if k.endswith("replay_buffer.pkl")]
    assert buffers, "the SAC checkpoints hold no replay buffer"
    log = kubectl.run("logs", "job/breakout-ppo-train").stdout
    assert "CnnPolicy" in log, log[-1500:]
