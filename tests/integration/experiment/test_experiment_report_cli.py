"""A seeds-only Experiment (no search: the template is the one configuration) ends with a report,
and ``kubectl gym report`` prints its tables and downloads its files from MinIO."""

from __future__ import annotations

import json
from pathlib import Path

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import kubectl_gym
from tests.integration.experiment.support import experiment, status
from tests.integration.trainingrun.support import status as run_status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "seeds-only"


def test_seeds_only_experiment_and_kubectl_gym_report(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, cluster: LocalCluster, tmp_path: Path
) -> None:
    manifest = experiment(NAME, seeds={"count": 2})
    del manifest["spec"]["search"]
    manifest["spec"]["template"].update({"totalTimesteps": 2048, "evaluation": {"everySteps": 1024, "episodes": 3}})
    kubectl.apply(manifest)
    wait_until(
        lambda: status(kube, namespace, NAME).get("phase") in ("Succeeded", "Failed"),
        600,
        "the experiment to finish",
        interval=2,
        describe=lambda: json.dumps(status(kube, namespace, NAME), indent=1)[-3000:] + "\n" + operator.tail(20),
    )
    st = status(kube, namespace, NAME)
    assert st["phase"] == "Succeeded", st
    assert st["configurations"] == [{"id": "c0", "summary": "template", "hyperparameters": {}}]
    (result,) = st["results"]
    assert result["configuration"] == "c0" and result["runs"] == 2
    assert st["best"]["summary"] == "template"
    assert st["estimatedRemainingSeconds"] == 0
    # Its cost is the sum of its runs' (each counted from its own pod by the operator).
    runs = [f"{NAME}-c0-s0", f"{NAME}-c0-s1"]

    def summed() -> bool:
        costs = [run_status(kube, namespace, run).get("cost") or {} for run in runs]
        total = status(kube, namespace, NAME).get("cost") or {}
        return all(c.get("cpuSeconds") and not c.get("asOf") for c in costs) and total == {
            "cpuSeconds": round(sum(c["cpuSeconds"] for c in costs), 1),
            "gpuSeconds": 0,
            "measuredCpuSeconds": round(sum(c["measuredCpuSeconds"] for c in costs), 1),
            "pods": 2,
        }

    wait_until(summed, 120, "the Experiment's cost to sum its runs'", interval=2,
               describe=lambda: json.dumps([status(kube, namespace, NAME).get("cost")]
                                           + [run_status(kube, namespace, r).get("cost") for r in runs]))  # fmt: skip

    env = {k: v for k, v in cluster.storage_env().items() if k.startswith("AWS_")}
    out = tmp_path / "report"
    done = kubectl_gym(tmp_path, cluster.kubeconfig, "report", NAME, "-n", namespace, "--dir", str(out), env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"Experiment {namespace}/{NAME}: Succeeded (2/2 runs done)" in text
    assert "RANK" in text and "best: c0 (template)" in text
    assert f"{NAME}-c0-s0" in text and f"{NAME}-c0-s1" in text  # the per-run table from runs.csv
    for name in ("runs.csv", "configurations.csv", "curves.csv", "learning_curves.png", "final_scores.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
