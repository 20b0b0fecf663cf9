"""A Benchmark's status from its referenced runs, its Job and its pods."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubegym_api.base import Algorithm
from kubegym_api.runnerconfig import BenchmarkModel
from kubegym_operator.builders.benchmark import Resolution
from kubegym_operator.builders.benchmark_status import compute_status, failed_status
from kubegym_operator.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings()


def bench(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Benchmark",
        "metadata": {"name": "compare", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {
            "models": [{"name": "a", "trainingRunRef": {"name": "run-a"}}, {"name": "b", "uri": "s3://k/b.zip"}],
            "environments": [{"id": "CartPole-v1"}, {"id": "Acrobot-v1"}],
        },
        "status": status or {},
    }


def job(*conditions: str, active: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "compare-bench", "labels": {}},
        "spec": {"suspend": False, "backoffLimit": 1},
        "status": {
            "active": active,
            "conditions": [
                {"type": c, "status": "True", "lastTransitionTime": "2026-03-01T11:59:00Z"} for c in conditions
            ],
        },
    }


def pod(phase: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "compare-bench-x", "creationTimestamp": "2026-03-01T11:50:00Z"},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "runner", **container}],
        },
    }


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_waiting_for_a_training_run() -> None:
    waiting = Resolution(None, waiting={"run-a": "Running, 40% trained"})
    update = compute_status(bench(), None, [], resolution=waiting, now=NOW, settings=SETTINGS)
    s = update.status
    assert (s["phase"], s["reason"]) == ("Pending", "TrainingRunNotFinished")
    assert "waiting for TrainingRun run-a (Running, 40% trained) to finish" in s["message"]
    ready = conditions(s)["ModelsReady"]
    assert (ready["status"], ready["reason"]) == ("False", "TrainingRunNotFinished")
    assert (s["envs"], s["modelCount"], s["observedGeneration"]) == ("CartPole-v1,Acrobot-v1", 2, 2)
    assert "jobName" not in s
    assert update.event is not None and update.event.type == "Normal"  # waiting is routine


def test_a_failed_training_run_fails_the_benchmark() -> None:
    failing = Resolution(None, failure=("TrainingRunFailed", "model a: TrainingRun run-a failed (UserError)"))
    s = compute_status(bench(), None, [], resolution=failing, now=NOW, settings=SETTINGS).status
    assert (s["phase"], s["reason"]) == ("Failed", "TrainingRunFailed")
    failed = conditions(s)["Failed"]
    assert failed["status"] == "True" and "run-a failed" in failed["message"]
    assert s["completionTime"] == "2026-03-01T12:00:00Z"


def test_running_is_evaluating() -> None:
    running = pod("Running", state={"running": {"startedAt": "2026-03-01T11:51:00Z"}})
    s = compute_status(bench(), job(active=1), [running], resolution=None, now=NOW, settings=SETTINGS).status
    assert (s["phase"], s["reason"]) == ("Running", "Evaluating")
    assert "evaluation pod compare-bench-x on node node-1" in s["message"]
    assert conditions(s)["ModelsReady"]["status"] == "True"
    assert (s["startTime"], s["nodeName"], s["jobName"]) == ("2026-03-01T11:51:00Z", "node-1", "compare-bench")


RESULTS = [
    {"model": "a", "env": "CartPole-v1", "episodes": 10, "iqm": 500.0},
    {"model": "a", "env": "Acrobot-v1", "episodes": 0, "error": "model a does not fit Acrobot-v1: spaces"},
    {"model": "b", "env": "CartPole-v1", "episodes": 0, "error": "model object s3://k/b.zip not found"},
    {"model": "b", "env": "Acrobot-v1", "episodes": 0, "error": "model object s3://k/b.zip not found"},
]


def test_succeeded_with_failed_entries_says_which_and_why() -> None:
    runner_wrote = {"results": RESULTS, "ranking": {"statistic": "IQM"}, "bestModel": "a", "bestScore": 500.0}
    done = pod("Succeeded", state={"terminated": {"exitCode": 0, "startedAt": "2026-03-01T11:51:00Z"}})
    update = compute_status(
        bench(runner_wrote), job("SuccessCriteriaMet", "Complete"), [done], resolution=None, now=NOW, settings=SETTINGS
    )
    s = update.status
    assert (s["phase"], s["reason"]) == ("Succeeded", "Completed")
    assert s["message"] == "evaluated 1 of 4 model x environment entries; best a (IQM 500.0)"
    entries = conditions(s)["EntriesFailed"]
    assert (entries["status"], entries["reason"]) == ("True", "EntryErrors")
    assert entries["message"].startswith("3 of 4 entries failed: a on Acrobot-v1: model a does not fit")
    assert "b on CartPole-v1: model object s3://k/b.zip not found" in entries["message"]
    assert update.event is not None
    assert (update.event.type, update.event.reason) == ("Warning", "EntriesFailed")
    # The runner's fields are never part of the operator's write.
    assert not {"results", "ranking", "bestModel", "bestScore"} & set(s)


def test_all_entries_evaluated() -> None:
    ok = [{"model": "a", "env": "CartPole-v1", "episodes": 10}]
    s = compute_status(bench({"results": ok}), job("Complete"), [], resolution=None, now=NOW, settings=SETTINGS).status
    entries = conditions(s)["EntriesFailed"]
    assert (entries["status"], entries["reason"]) == ("False", "AllEntriesEvaluated")


def test_no_entry_evaluated_is_a_user_error() -> None:
    failed_pod = pod(
        "Failed",
        state={
            "terminated": {"exitCode": 42, "message": "none of the 4 model x environment entries could be evaluated"}
        },
    )
    failed_job = job("FailureTarget", "Failed")
    for cond in failed_job["status"]["conditions"]:
        cond["reason"] = "PodFailurePolicy"
    s = compute_status(
        bench({"results": RESULTS[1:]}), failed_job, [failed_pod], resolution=None, now=NOW, settings=SETTINGS
    ).status
    assert (s["phase"], s["reason"]) == ("Failed", "UserError")
    assert "none of the 4" in s["message"]
    assert conditions(s)["EntriesFailed"]["status"] == "True"


def test_terminal_status_is_kept() -> None:
    final = failed_status(bench(), "TrainingRunFailed", "run-a failed", now=NOW).status
    again = compute_status(bench(final), job("Complete"), [], resolution=None, now=NOW, settings=SETTINGS)
    assert again.status["phase"] == "Failed" and again.status["conditions"] == final["conditions"]
    assert again.event is None and not again.stop_job


def test_lasttransitiontime_moves_only_when_a_condition_flips() -> None:
    waiting = Resolution(None, waiting={"run-a": "Pending"})
    first = compute_status(bench(), None, [], resolution=waiting, now=NOW, settings=SETTINGS).status
    later = NOW.replace(hour=13)
    second = compute_status(bench(first), None, [], resolution=waiting, now=later, settings=SETTINGS).status
    assert conditions(second)["ModelsReady"]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    ready = Resolution([BenchmarkModel(name="a", uri="s3://k/a/", algorithm=Algorithm.PPO)])
    third = compute_status(bench(second), job(), [], resolution=ready, now=later, settings=SETTINGS).status
    assert conditions(third)["ModelsReady"]["status"] == "True"
    assert conditions(third)["ModelsReady"]["lastTransitionTime"] == "2026-03-01T13:00:00Z"
