"""examples/experiment-cartpole-sweep.yaml end to end: 3 seeds x 2 learning rates, parallelism 2.

Six TrainingRuns train for real, never more than two runner pods at once (from the pods'
own start and end times), their models are evaluated in the final Benchmark, the report Job
writes the tables and plots to MinIO, and the per-configuration IQM and its confidence
interval in the status equal a recomputation from the runs' raw final evaluations.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from kubegym_localcluster.kube import Kube
from kubegym_runner import stats
from tests.e2e.conftest import ReleaseOperator
from tests.integration.experiment.support import run_pods, runs_of, status
from tests.integration.trainingrun.support import example, keys, s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "cartpole-sweep"
REPORT_FILES = {
    "runs.csv",
    "runs.parquet",
    "configurations.csv",
    "curves.csv",
    "learning_curves.png",
    "final_scores.png",
    "report.json",
}


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pod_intervals(pods: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """(start, end, pod) of every runner container that ran, from its state and last state."""
    out = []
    for pod in pods:
        for cs in pod["status"].get("containerStatuses", []):
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated") or {}
                if term.get("startedAt") and term.get("finishedAt"):
                    out.append((_time(term["startedAt"]), _time(term["finishedAt"]), pod["metadata"]["name"]))
    return out


def max_overlap(intervals: list[tuple[float, float, str]]) -> int:
    """Most intervals alive at one instant (an end at t frees the slot for a start at t)."""
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    alive = peak = 0
    for _, delta in events:
        alive += delta
        peak = max(peak, alive)
    return peak


def test_cartpole_sweep(kube: Kube, namespace: str, kubectl: Kubectl, operator: ReleaseOperator) -> None:
    ns = namespace
    manifest = example("experiment-cartpole-sweep.yaml")
    kubectl.apply(manifest)

    def describe() -> str:
        st = status(kube, ns, NAME)
        st.pop("configurations", None)
        return json.dumps(st, indent=1)[-4000:] + "\n--- operator:\n" + operator.tail(20)

    wait_until(
        lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        1500,
        "the sweep to finish",
        interval=2,
        describe=describe,
    )
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    assert st["completions"] == "6/6" and st["counts"]["succeeded"] == 6

    # Six owned TrainingRuns, all succeeded.
    runs = runs_of(kube, ns, NAME)
    assert [r["metadata"]["name"] for r in runs] == sorted(f"{NAME}-c{c}-s{s}" for c in (0, 1) for s in (0, 1, 2))
    uid = kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/experiments/{NAME}")["metadata"]["uid"]
    for run in runs:
        assert run["status"]["phase"] == "Succeeded"
        assert run["metadata"]["ownerReferences"][0]["uid"] == uid
        assert run["spec"]["hyperparameters"]["learning_rate"] in (0.0003, 0.003)

    # Never more than `parallelism` runner pods alive at once, from their own start and end times.
    names = {r["metadata"]["name"] for r in runs}
    pods = [p for p in run_pods(kube, ns) if p["metadata"]["labels"]["kubegym.io/training-run"] in names]
    intervals = pod_intervals(pods)
    assert len(intervals) >= 6, intervals
    assert max_overlap(intervals) == manifest["spec"]["parallelism"] == 2, sorted(intervals)

    # The final Benchmark evaluated every run's model.
    bench = kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks/{NAME}-benchmark")
    assert bench["status"]["phase"] == "Succeeded", bench["status"]
    assert {m["trainingRunRef"]["name"] for m in bench["spec"]["models"]} == names
    assert st["benchmark"] == {"name": f"{NAME}-benchmark", "phase": "Succeeded"}

    # The report's files are in MinIO.
    s3, bucket = s3_client(kube, ns)
    folder = f"{ns}/experiments/{NAME}/report/"
    assert {k[len(folder) :] for k in keys(s3, bucket, folder)} == REPORT_FILES
    for key in ("learning_curves.png", "final_scores.png"):
        assert s3.get_object(Bucket=bucket, Key=folder + key)["Body"].read().startswith(b"\x89PNG")
    runs_csv = pd.read_csv(io.BytesIO(s3.get_object(Bucket=bucket, Key=folder + "runs.csv")["Body"].read()))
    assert sorted(runs_csv["run"]) == sorted(names) and runs_csv["benchmark_score"].notna().all()
    assert st["report"]["runsCsv"] == f"s3://{bucket}/{folder}runs.csv"

    # The status aggregates equal a recomputation from the raw final evaluations.
    scores: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        final = json.loads(
            s3.get_object(Bucket=bucket, Key=f"{run['status']['artifacts']['prefix']}/eval/final.json")["Body"].read()
        )
        score = round(float(np.mean(final["episodeRewards"])), 4)
        config = run["metadata"]["labels"]["kubegym.io/configuration"]
        scores.setdefault(config, []).append((run["spec"]["seed"], score))
    expected = {}
    for config, values in scores.items():
        raw = [s for _, s in sorted(values)]
        e = stats.interval_estimate([raw], "IQM", confidence=0.95, resamples=2000, seed=0)
        expected[config] = (round(e.value, 4), round(e.low, 4), round(e.high, 4))
    got = {r["configuration"]: (r["score"], r["ciLower"], r["ciUpper"]) for r in st["results"]}
    assert got == expected
    best = max(expected, key=lambda c: (expected[c][0], c == "c0"))
    assert st["best"]["configuration"] == st["results"][0]["configuration"]
    assert expected[st["best"]["configuration"]][0] == expected[best][0]

    # `kubectl get experiments` answers how it went; `kubectl get gym` lists it.
    header, row = kubectl.run("get", "experiments").stdout.splitlines()[:2]
    for column in ("PHASE", "RUNS", "RUNNING", "BEST", "SCORE", "AGE"):
        assert column in header
    assert "Succeeded" in row and "6/6" in row and "learning_rate=" in row
    assert NAME in kubectl.run("get", "gym").stdout

    # Deleting the Experiment deletes its runs and Benchmark (owner references).
    kubectl.run("delete", "experiment", NAME, "--wait=false")
    wait_until(lambda: runs_of(kube, ns, NAME) == [], 120, "the runs to be garbage-collected")
