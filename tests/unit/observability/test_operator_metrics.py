"""The operator's metrics from objects and reconciles: which series exist, their values, and
that deleted objects leave nothing behind."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kubegym_operator import metrics
from kubegym_operator.apierrors import ApiError
from kubegym_operator.builders.status import Event
from kubegym_operator.metrics import ObjectMetrics, Sample, object_samples
from kubegym_operator.reconciler import write_status
from tests.unit.operator.fakeapi import FakeCluster


def run(name: str = "cartpole", namespace: str = "research", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-03-01T12:00:00Z"},
        "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 4096},
        "status": status,
    }


RUNNING: dict[str, Any] = {
    "phase": "Running",
    "reason": "Training",
    "conditions": [{"type": "Running", "status": "True", "lastTransitionTime": "2026-03-01T12:00:30Z"}],
    "progress": {
        "timesteps": 2048,
        "totalTimesteps": 4096,
        "fraction": 0.5,
        "stepsPerSecond": 812.5,
        "meanEpisodeReward": 41.5,
        "lastEvaluation": {"timesteps": 2048, "meanReward": 87.0, "stdReward": 3.0, "episodes": 5},
        "updateTime": "2026-03-01T12:02:00Z",
    },
    "checkpoints": {"latestUri": "s3://b/p/checkpoints/000000001024/", "latestStep": 1024, "count": 1},
}


def by_family(samples: tuple[Sample, ...]) -> dict[str, dict[tuple[str, ...], float]]:
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for s in samples:
        out.setdefault(s.family, {})[s.labels] = s.value
    return out


def scrape(objects: ObjectMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {sorted labels → value} of what a scrape of ``objects`` alone returns."""
    registry = CollectorRegistry()
    registry.register(objects)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_training_run_reports_phase_progress_reward_and_checkpoints() -> None:
    got = by_family(object_samples("TrainingRun", run(**RUNNING)))
    key = ("research", "cartpole")
    assert got["kubegym_object_status"] == {("TrainingRun", *key, "Running", "Training"): 1}
    assert got["kubegym_trainingrun_info"] == {(*key, "PPO", "CartPole-v1"): 1}
    assert got["kubegym_trainingrun_timesteps"] == {key: 2048}
    assert got["kubegym_trainingrun_total_timesteps"] == {key: 4096}
    assert got["kubegym_trainingrun_progress_ratio"] == {key: 0.5}
    assert got["kubegym_trainingrun_timesteps_per_second"] == {key: 812.5}
    assert got["kubegym_trainingrun_mean_episode_reward"] == {key: 41.5}
    assert got["kubegym_trainingrun_evaluation_mean_reward"] == {key: 87.0}
    assert got["kubegym_trainingrun_checkpoints"] == {key: 1}
    assert got["kubegym_trainingrun_checkpoint_timesteps"] == {key: 1024}
    # The runner's report is newer than the transition to Running.
    assert got["kubegym_trainingrun_last_progress_timestamp_seconds"] == {key: ts("2026-03-01T12:02:00Z")}
    assert "kubegym_trainingrun_final_mean_reward" not in got


def test_the_stall_clock_restarts_when_a_run_enters_running_again() -> None:
    """A pod restarted after a preemption is not stalled while it loads: its newer Running
    transition counts as progress until it reports."""
    status = copy.deepcopy(RUNNING)
    status["conditions"][0]["lastTransitionTime"] = "2026-03-01T13:00:00Z"
    got = by_family(object_samples("TrainingRun", run(**status)))
    assert got["kubegym_trainingrun_last_progress_timestamp_seconds"] == {
        ("research", "cartpole"): ts("2026-03-01T13:00:00Z")
    }
    # A run that is not Running has only its last report.
    status["phase"] = "Pending"
    got = by_family(object_samples("TrainingRun", run(**status)))
    assert got["kubegym_trainingrun_last_progress_timestamp_seconds"] == {
        ("research", "cartpole"): ts("2026-03-01T12:02:00Z")
    }


def test_a_new_run_has_status_and_info_but_no_made_up_numbers() -> None:
    got = by_family(object_samples("TrainingRun", run()))
    assert got["kubegym_object_status"] == {("TrainingRun", "research", "cartpole", "Pending", ""): 1}
    # totalTimesteps comes from the spec until the runner reports.
    assert set(got) == {"kubegym_object_status", "kubegym_trainingrun_info", "kubegym_trainingrun_total_timesteps"}


@pytest.mark.parametrize("bad", [None, "NaN", True, float("nan"), float("inf"), [1]])
def test_values_that_are_not_finite_numbers_make_no_series(bad: Any) -> None:
    status = copy.deepcopy(RUNNING)
    status["progress"]["meanEpisodeReward"] = bad
    assert "kubegym_trainingrun_mean_episode_reward" not in by_family(object_samples("TrainingRun", run(**status)))


def test_a_free_text_reason_never_becomes_a_label_value() -> None:
    got = by_family(object_samples("TrainingRun", run(phase="Failed", reason="exit code 3: boom")))
    assert got["kubegym_object_status"] == {("TrainingRun", "research", "cartpole", "Failed", "Other"): 1}
    assert metrics.reason_label("OOMKilled") == "OOMKilled"
    assert metrics.reason_label("x" * 10) == "Other"


def test_a_finished_run_reports_its_final_reward() -> None:
    got = by_family(object_samples("TrainingRun", run(phase="Succeeded", result={"meanReward": 500.0})))
    assert got["kubegym_trainingrun_final_mean_reward"] == {("research", "cartpole"): 500.0}
    assert "kubegym_trainingrun_best_mean_reward" not in got  # no periodic evaluation: no best


def test_a_run_reports_its_best_evaluation() -> None:
    best = {"uri": "s3://b/r/best", "step": 3000, "meanReward": 500.0}
    got = by_family(object_samples("TrainingRun", run(phase="Succeeded", result={"meanReward": 20.5}, best=best)))
    assert got["kubegym_trainingrun_best_mean_reward"] == {("research", "cartpole"): 500.0}
    assert got["kubegym_trainingrun_final_mean_reward"] == {("research", "cartpole"): 20.5}


def benchmark(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Benchmark",
        "metadata": {"name": "agents", "namespace": "research"},
        "spec": {"statistic": "IQM"},
        "status": status,
    }


def test_a_benchmark_reports_scores_intervals_ranks_and_latency_in_seconds() -> None:
    status = {
        "phase": "Succeeded",
        "reason": "Completed",
        "progress": {"entriesDone": 1, "entriesTotal": 2},
        "results": [
            {
                "model": "strong",
                "env": "CartPole-v1",
                "mean": 480.0,
                "iqm": 500.0,
                "ciLower": 490.0,
                "ciUpper": 500.0,
                "latencyP50Ms": 1.5,
                "latencyP99Ms": 4.0,
            },
            {"model": "broken", "env": "CartPole-v1", "error": "cannot load"},
        ],
        "ranking": {"statistic": "IQM", "models": [{"rank": 1, "model": "strong", "score": 500.0}]},
    }
    got = by_family(object_samples("Benchmark", benchmark(**status)))
    entry = ("research", "agents", "strong", "CartPole-v1", "IQM")
    assert got["kubegym_benchmark_score"] == {entry: 500.0}
    assert got["kubegym_benchmark_score_ci_lower"] == {entry: 490.0}
    assert got["kubegym_benchmark_score_ci_upper"] == {entry: 500.0}
    assert got["kubegym_benchmark_rank"] == {("research", "agents", "strong"): 1}
    assert got["kubegym_benchmark_policy_latency_seconds"] == {
        ("research", "agents", "strong", "CartPole-v1", "50"): 0.0015,
        ("research", "agents", "strong", "CartPole-v1", "99"): 0.004,
    }
    assert got["kubegym_benchmark_progress_ratio"] == {("research", "agents"): 0.5}


def test_a_benchmark_ranked_by_the_mean_reports_the_mean() -> None:
    status = {"results": [{"model": "m", "env": "E", "mean": 1.0, "iqm": 2.0}], "ranking": {"statistic": "Mean"}}
    got = by_family(object_samples("Benchmark", benchmark(**status)))
    assert got["kubegym_benchmark_score"] == {("research", "agents", "m", "E", "Mean"): 1.0}


def test_an_experiment_reports_its_runs_by_phase_and_best_score() -> None:
    exp = {
        "kind": "Experiment",
        "metadata": {"name": "study", "namespace": "research"},
        "status": {
            "phase": "Running",
            "counts": {"total": 4, "running": 2, "earlyStopped": 1, "succeeded": 1},
            "best": {"score": 321.0},
        },
    }
    got = by_family(object_samples("Experiment", exp))
    assert got["kubegym_experiment_runs"] == {
        ("research", "study", "Running"): 2,
        ("research", "study", "EarlyStopped"): 1,
        ("research", "study", "Succeeded"): 1,
    }
    assert got["kubegym_experiment_best_score"] == {("research", "study"): 321.0}


def test_objects_by_phase_count_every_kind_and_phase_of_a_namespace() -> None:
    objects = ObjectMetrics()
    objects.observe("TrainingRun", None, run("a", **RUNNING))
    objects.observe("TrainingRun", "ADDED", run("b", phase="Failed", reason="UserError"))
    objects.observe("Benchmark", "ADDED", benchmark(phase="Pending"))
    got = scrape(objects)["kubegym_objects"]
    assert len(got) == 3 * 5  # kinds x phases, zeros included
    assert got[(("kind", "TrainingRun"), ("namespace", "research"), ("phase", "Running"))] == 1
    assert got[(("kind", "TrainingRun"), ("namespace", "research"), ("phase", "Failed"))] == 1
    assert got[(("kind", "Benchmark"), ("namespace", "research"), ("phase", "Pending"))] == 1
    assert sum(got.values()) == 3


def test_a_deleted_object_leaves_no_series_behind() -> None:
    objects = ObjectMetrics()
    objects.observe("TrainingRun", None, run("keep", **RUNNING))
    objects.observe("TrainingRun", None, run("gone", namespace="other", **RUNNING))
    before = scrape(objects)
    assert any(("name", "gone") in labels for series in before.values() for labels in series)
    objects.observe("TrainingRun", "DELETED", run("gone", namespace="other", **RUNNING))
    after = scrape(objects)
    assert not [(n, s) for n, series in after.items() for s in series if ("name", "gone") in s]
    # The namespace had nothing else: its phase counts and throughput counter go too.
    assert not [(n, s) for n, series in after.items() for s in series if ("namespace", "other") in s]
    assert any(("name", "keep") in labels for labels in after["kubegym_trainingrun_timesteps"])


def test_prune_forgets_objects_a_listing_no_longer_shows_but_not_newer_ones() -> None:
    objects = ObjectMetrics()
    objects.observe("TrainingRun", None, run("missed-delete", **RUNNING))
    objects.observe("TrainingRun", None, run("listed", **RUNNING))
    objects.observe("Benchmark", None, benchmark(phase="Running"))
    listed_since = time.monotonic()
    objects.observe("TrainingRun", "ADDED", run("created-after-the-list", **RUNNING))
    assert objects.prune("TrainingRun", [("research", "listed")], listed_since) == 1
    names = {dict(s)["name"] for s in scrape(objects)["kubegym_object_status"]}
    assert names == {"listed", "created-after-the-list", "agents"}


def test_trained_timesteps_count_increases_only() -> None:
    objects = ObjectMetrics()
    key = (("namespace", "research"),)

    def at(steps: int) -> dict[str, Any]:
        status = copy.deepcopy(RUNNING)
        status["progress"]["timesteps"] = steps
        return run(**status)

    objects.observe("TrainingRun", None, at(1000))  # the baseline of a run this process first sees
    assert scrape(objects)["kubegym_trained_timesteps_total"][key] == 0
    objects.observe("TrainingRun", "MODIFIED", at(3000))
    objects.observe("TrainingRun", "MODIFIED", at(2048))  # resumed from a checkpoint
    objects.observe("TrainingRun", "MODIFIED", at(4096))
    assert scrape(objects)["kubegym_trained_timesteps_total"][key] == 2000 + 2048


def counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_instrument_counts_reconciles_and_errors_by_reason() -> None:
    @metrics.instrument("Experiment")
    def reconcile(namespace: str, name: str, fail: str = "") -> str:
        if fail == "api":
            raise ApiError(403, "Forbidden")
        if fail == "api-body":
            raise ApiError(422, "Unprocessable Entity", json.dumps({"kind": "Status", "reason": "Invalid"}))
        if fail:
            raise RuntimeError("bug")
        return name

    base = {
        "ok": counter("kubegym_reconciles_total", kind="Experiment", result="success"),
        "err": counter("kubegym_reconciles_total", kind="Experiment", result="error"),
        "invalid": counter("kubegym_errors_total", kind="Experiment", reason="Invalid"),
        "api": counter("kubegym_errors_total", kind="Experiment", reason="ApiError"),
        "bug": counter("kubegym_errors_total", kind="Experiment", reason="ReconcileError"),
        "timed": counter("kubegym_reconcile_duration_seconds_count", kind="Experiment"),
    }
    assert reconcile("ns", "x") == "x"
    for fail in ("api", "api-body", "bug"):
        with pytest.raises((ApiError, RuntimeError)):
            reconcile("ns", "x", fail=fail)
    assert counter("kubegym_reconciles_total", kind="Experiment", result="success") - base["ok"] == 1
    assert counter("kubegym_reconciles_total", kind="Experiment", result="error") - base["err"] == 3
    assert counter("kubegym_errors_total", kind="Experiment", reason="Invalid") - base["invalid"] == 1
    assert counter("kubegym_errors_total", kind="Experiment", reason="ApiError") - base["api"] == 1
    assert counter("kubegym_errors_total", kind="Experiment", reason="ReconcileError") - base["bug"] == 1
    assert counter("kubegym_reconcile_duration_seconds_count", kind="Experiment") - base["timed"] == 4


def test_warning_events_a_reconcile_posts_are_counted_by_reason() -> None:
    cluster = FakeCluster({"kind": "Experiment", "metadata": {"name": "x", "namespace": "ns"}})
    exp = cluster.obj("Experiment", "ns", "x")
    assert exp is not None
    before = counter("kubegym_errors_total", kind="Experiment", reason="UserError")
    events = [Event("Normal", "Training", "fine"), Event("Warning", "UserError", "bad env")]
    write_status(cluster, "Experiment", exp, {"phase": "Failed"}, events)
    assert [e.reason for e in cluster.events] == ["Training", "UserError"]  # every event is posted
    assert counter("kubegym_errors_total", kind="Experiment", reason="UserError") - before == 1


def test_job_latencies_are_observed_once_from_the_api_timestamps() -> None:
    def hist(name: str) -> tuple[float, float]:
        return (
            counter(f"{name}_count", kind="TrainingRun"),
            counter(f"{name}_sum", kind="TrainingRun"),
        )

    apply_before = hist("kubegym_apply_to_job_duration_seconds")
    metrics.job_created("TrainingRun", run(), now=ts("2026-03-01T12:00:02Z"))
    count, total = hist("kubegym_apply_to_job_duration_seconds")
    assert count - apply_before[0] == 1
    assert total - apply_before[1] == pytest.approx(2.0)

    job = {"metadata": {"name": "j", "creationTimestamp": "2026-03-01T12:00:02Z"}}
    running_before = hist("kubegym_job_to_running_duration_seconds")
    metrics.job_started("TrainingRun", job, {}, {"startTime": "2026-03-01T12:00:09Z"})
    # Already started before: nothing more.
    metrics.job_started(
        "TrainingRun", job, {"startTime": "2026-03-01T12:00:09Z"}, {"startTime": "2026-03-01T12:00:09Z"}
    )
    metrics.job_started("TrainingRun", None, {}, {"startTime": "2026-03-01T12:00:09Z"})
    count, total = hist("kubegym_job_to_running_duration_seconds")
    assert count - running_before[0] == 1
    assert total - running_before[1] == pytest.approx(7.0)


def test_the_global_registry_serves_the_objects_and_the_process() -> None:
    names = {family.name for family in metrics.REGISTRY.collect()}
    assert {"kubegym_objects", "kubegym_object_status", "kubegym_reconciles", "process_cpu_seconds"} <= names
