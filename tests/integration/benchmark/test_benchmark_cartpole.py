"""examples/benchmark-cartpole.yaml for real: a trained CartPole agent against an under-trained one.

The Benchmark waits for both TrainingRuns (ModelsReady=False), then one evaluation Job ranks
them: the trained agent first with non-overlapping 95% intervals, the CSV, table, JSON and PNG
are in MinIO, and every statistic in the status equals a recomputation from the saved
per-episode returns. ``kubectl gym compare`` prints the ranking through kubectl's plugin
mechanism.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from kubegym_api.benchmark import BenchmarkEntry, BenchmarkRanking
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from kubegym_runner import report
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import (
    REPO,
    condition,
    kubectl_gym,
    read_s3,
    s3_client,
    s3_env,
    status,
)
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "cartpole-agents"
TIMING = {"episodes_per_second", "latency_p50_ms", "latency_p99_ms"}


def test_trained_agent_beats_undertrained_one_and_every_number_is_recomputable(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns = namespace
    docs = list(yaml.safe_load_all((REPO / "examples" / "benchmark-cartpole.yaml").read_text()))
    kubectl.apply("\n---\n".join(yaml.safe_dump(d) for d in docs))
    spec = next(d for d in docs if d["kind"] == "Benchmark")["spec"]

    def describe() -> str:
        runs = kubectl.run("get", "trainingruns,benchmarks", "-o", "wide", check=False).stdout
        return f"{runs}\n{json.dumps(status(kube, ns, NAME), indent=1)[-3000:]}\n--- operator:\n{operator.tail(15)}"

    # While the runs train, the Benchmark waits and says for what; no Job exists yet.
    waiting = wait_until(
        lambda: condition(status(kube, ns, NAME), "ModelsReady"), 60, "the ModelsReady condition", describe=describe
    )
    assert (waiting["status"], waiting["reason"]) == ("False", "TrainingRunNotFinished"), waiting
    assert "cartpole-strong" in waiting["message"]
    assert status(kube, ns, NAME)["phase"] == "Pending"
    assert not kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector="kubegym.io/benchmark")["items"]

    def finished() -> dict[str, Any] | None:
        st = status(kube, ns, NAME)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    st = wait_until(
        finished,
        1500,
        "the Benchmark to finish",
        interval=2,
        describe=describe,
    )
    assert st["phase"] == "Succeeded", describe()
    assert condition(st, "ModelsReady")["status"] == "True"  # type: ignore[index]
    entries_failed = condition(st, "EntriesFailed")
    assert entries_failed is not None and entries_failed["status"] == "False", entries_failed

    # The ranking: strong first, intervals apart, and a confident probability of improvement.
    ranking = BenchmarkRanking.model_validate(st["ranking"])
    assert ranking.statistic == "IQM" and ranking.confidence_level == 0.95 and ranking.envs == ["CartPole-v1"]
    strong, weak = ranking.models
    assert (strong.model, weak.model) == ("strong", "weak"), ranking
    assert strong.ci_lower > weak.ci_upper, ranking
    assert strong.ci_lower <= strong.score <= strong.ci_upper and weak.ci_lower <= weak.score <= weak.ci_upper
    assert ranking.probability_of_improvement is not None
    assert ranking.probability_of_improvement.leader == "strong"
    assert ranking.probability_of_improvement.probability >= 0.9, ranking.probability_of_improvement
    assert (st["bestModel"], st["bestScore"]) == ("strong", strong.score)
    assert strong.score > 4 * weak.score, ranking

    # Every entry: all statistics, timing measured, episodes as asked.
    results = [BenchmarkEntry.model_validate(r) for r in st["results"]]
    assert [(r.model, r.env) for r in results] == [("strong", "CartPole-v1"), ("weak", "CartPole-v1")]
    for r in results:
        assert r.error is None and r.episodes == spec["episodes"] * len(spec["seeds"])
        assert r.min is not None and r.max is not None and r.mean is not None and r.iqm is not None
        assert r.min <= r.iqm <= r.max and r.min <= r.mean <= r.max
        assert r.episodes_per_second and r.episodes_per_second > 0
        assert r.latency_p50_ms is not None and r.latency_p99_ms is not None
        assert 0 < r.latency_p50_ms <= r.latency_p99_ms

    # The reports are in MinIO, and the status is a recomputation from the per-episode CSV.
    s3 = s3_client(s3_env(kube, ns))
    artifacts = st["artifacts"]
    assert artifacts["episodes"].endswith(f"/{ns}/benchmarks/{NAME}/report/episodes.csv")
    assert read_s3(s3, artifacts["plot"]).startswith(b"\x89PNG\r\n\x1a\n")
    table = read_s3(s3, artifacts["table"]).decode().splitlines()
    assert table[0].split(",") == list(report.TABLE_COLUMNS) and len(table) == 3
    document = json.loads(read_s3(s3, artifacts["results"]))
    assert document["ranking"] == st["ranking"] and document["entries"] == st["results"]
    episodes = report.read_episodes_csv(read_s3(s3, artifacts["episodes"]))
    assert len(episodes) == sum(r.episodes for r in results)
    assert {(e.model, e.seed) for e in episodes} == {(m, s) for m in ("strong", "weak") for s in spec["seeds"]}
    settings = report.RankingSettings(
        ranking.statistic, ranking.confidence_level, ranking.bootstrap_resamples, ranking.bootstrap_seed
    )
    entries, recomputed = report.compute_results(["strong", "weak"], ["CartPole-v1"], episodes, {}, settings)
    assert [e.model_dump(exclude=TIMING) for e in entries] == [r.model_dump(exclude=TIMING) for r in results]
    assert recomputed == ranking

    # One Job, run by the evaluator identity; kubectl shows the answer at a glance.
    (job,) = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector="kubegym.io/benchmark")["items"]
    assert job["metadata"]["name"] == f"{NAME}-bench"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{NAME}-evaluator"
    row = kubectl.run("get", "benchmarks").stdout.splitlines()[1].split()
    assert row[:5] == [NAME, "Succeeded", "CartPole-v1", "2", "strong"], row

    # kubectl gym compare, found by kubectl on PATH.
    shown = kubectl_gym(tmp_path, cluster.kubeconfig, "compare", NAME, "-n", ns)
    assert shown.returncode == 0, shown.stderr
    assert "Ranking by IQM over CartPole-v1" in shown.stdout
    lines = shown.stdout.splitlines()
    first = lines[next(i for i, line in enumerate(lines) if line.startswith("RANK")) + 1].split()
    assert first[:2] == ["1", "strong"], shown.stdout
    assert "P(strong > weak)" in shown.stdout
    as_json: dict[str, Any] = json.loads(
        kubectl_gym(tmp_path, cluster.kubeconfig, "compare", NAME, "-n", ns, "-o", "json").stdout
    )
    assert as_json["ranking"] == st["ranking"]
