"""A TrainingRun's status from its Job and pods: phase, causes, conditions, times, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubegym_api.finalreport import FinalReport, final_report_message
from kubegym_api.trainingrun import CheckpointStatus, TrainingResult, TrainingRunStatus
from kubegym_operator.builders.status import StatusUpdate, compute_status, failed_status, is_terminal
from kubegym_operator.builders.timestamps import format_time
from kubegym_operator.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(pending_error_grace_seconds=300)


def ago(seconds: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds))


def make_run(status: dict[str, Any] | None = None, *, suspend: bool = False, generation: int = 3) -> dict[str, Any]:
    run: dict[str, Any] = {
        "metadata": {"name": "cartpole", "namespace": "research", "generation": generation},
        "spec": {
            "algorithm": "PPO",
            "suspend": suspend,
            "runPolicy": {"backoffLimit": 2, "activeDeadlineSeconds": 600},
        },
    }
    if status is not None:
        run["status"] = status
    return run


def make_job(
    *conditions: tuple[str, str],
    suspend: bool = False,
    queue: str | None = None,
    failed: int = 0,
    active: int = 0,
    completion: str | None = None,
) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": queue} if queue else {}
    status: dict[str, Any] = {
        "startTime": ago(900),
        "failed": failed,
        "active": active,
        "conditions": [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": f"job says {reason}",
                "lastTransitionTime": ago(5),
            }
            for kind, reason in conditions
        ],
    }
    if completion:
        status["completionTime"] = completion
    return {
        "metadata": {"name": "cartpole-train", "labels": labels},
        "spec": {"suspend": suspend},
        "status": status,
    }


def make_pod(
    name: str,
    phase: str,
    *,
    created: float = 60,
    node: str | None = "node-1",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": name, "creationTimestamp": ago(created)},
        "spec": {
            "containers": [{"name": "runner", "resources": {"limits": {"memory": "4Gi"}}}],
        },
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            "containerStatuses": [{"name": "runner", "state": state or {}, "lastState": last_state or {}}],
        },
    }
    if node:
        pod["spec"]["nodeName"] = node
    if deleting:
        pod["metadata"]["deletionTimestamp"] = ago(1)
    if reason:
        pod["status"]["reason"] = reason
    return pod


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def terminated(code: int, reason: str = "Error", message: str = "", started: float = 120) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "message": message,
            "startedAt": ago(started),
            "finishedAt": ago(10),
        }
    }


def failed_pod(
    name: str,
    code: int,
    reason: str = "Error",
    message: str = "",
    *,
    created: float = 100,
    started: float = 90,
) -> dict[str, Any]:
    state = terminated(code, reason, message, started=started)
    return make_pod(name, "Failed", created=created, state=state)


def compute(run: dict[str, Any], job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> StatusUpdate:
    update = compute_status(run, job, pods, now=NOW, settings=SETTINGS)
    # Every status the operator writes must pass the CRD's own model.
    TrainingRunStatus.model_validate(update.status)
    return update


def conditions(update: StatusUpdate) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in update.status["conditions"]}


def summary(update: StatusUpdate) -> tuple[str, str]:
    return update.status["phase"], update.status["reason"]


# --- before the pod runs -------------------------------------------------------------------


def test_no_job_yet_is_pending() -> None:
    update = compute(make_run(), None, [])
    assert summary(update) == ("Pending", "JobCreating")
    assert update.status["jobName"] == "cartpole-train"
    assert update.status["observedGeneration"] == 3
    assert "startTime" not in update.status


def test_active_job_without_pods_is_starting() -> None:
    assert summary(compute(make_run(), make_job(), [])) == ("Pending", "Starting")


def test_unschedulable_pod_condition() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pod = make_pod(
        "cartpole-train-abcde",
        "Pending",
        node=None,
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    )
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Pending", "Unschedulable")
    assert message in update.status["message"]
    running = conditions(update)["Running"]
    assert (running["status"], running["reason"]) == ("False", "Unschedulable")
    assert not update.stop_job


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_errors_wait_within_the_grace(reason: str) -> None:
    pod = make_pod("p", "Pending", state=waiting(reason, 'Back-off pulling image "nope:1"'))
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Pending", "ImagePullFailed")
    assert "nope:1" in update.status["message"]
    assert not update.stop_job


def test_image_pull_errors_fail_the_run_after_the_grace() -> None:
    pod = make_pod("p", "Pending", created=301, state=waiting("ImagePullBackOff", "x"))
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Failed", "ImagePullFailed")
    assert update.stop_job
    assert update.status["completionTime"] == format_time(NOW)


def test_invalid_image_name_fails_at_once() -> None:
    pod = make_pod("p", "Pending", created=5, state=waiting("InvalidImageName", "bad ref"))
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Failed", "ImagePullFailed")
    assert update.stop_job
    assert conditions(update)["Failed"]["status"] == "True"


def test_missing_storage_secret() -> None:
    pod = make_pod(
        "p",
        "Pending",
        state=waiting("CreateContainerConfigError", 'secret "minio-creds" not found'),
    )
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Pending", "SecretNotFound")
    assert "minio-creds" in update.status["message"]
    assert "secretRef" in update.status["message"]
    late = make_pod(
        "p",
        "Pending",
        created=600,
        state=waiting("CreateContainerConfigError", 'secret "minio-creds" not found'),
    )
    assert summary(compute(make_run(), make_job(active=1), [late])) == ("Failed", "SecretNotFound")


def test_bad_command_while_creating_the_container() -> None:
    pod = make_pod("p", "Pending", state=waiting("CreateContainerError", 'exec: "kubegym-runner": not found'))
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Pending", "ContainerCannotRun")
    assert "kubegym-runner" in update.status["message"]


def test_scheduled_pod_creating_its_container() -> None:
    pod = make_pod("p", "Pending", state=waiting("ContainerCreating"))
    assert summary(compute(make_run(), make_job(active=1), [pod])) == (
        "Pending",
        "ContainerCreating",
    )


# --- running and succeeding ----------------------------------------------------------------


def test_running_pod() -> None:
    pod = make_pod("p", "Running", node="gpu-7", state={"running": {"startedAt": ago(42)}})
    update = compute(make_run(), make_job(active=1), [pod])
    assert summary(update) == ("Running", "Training")
    assert update.status["startTime"] == ago(42)
    assert update.status["nodeName"] == "gpu-7"
    running = conditions(update)["Running"]
    assert (running["status"], running["observedGeneration"]) == ("True", 3)
    assert update.event is not None and update.event.type == "Normal"


def test_start_time_is_the_first_start_and_is_kept() -> None:
    old = failed_pod("p1", 43, started=500, created=510)
    new = make_pod("p2", "Running", created=50, state={"running": {"startedAt": ago(40)}})
    update = compute(make_run(), make_job(active=1, failed=1), [new, old])
    assert update.status["startTime"] == ago(500)
    kept = compute(make_run({"startTime": ago(9999)}), make_job(active=1), [new])
    assert kept.status["startTime"] == ago(9999)


def test_job_complete_is_succeeded() -> None:
    pod = make_pod("p", "Succeeded", state=terminated(0, "Completed", started=300))
    job = make_job(("Complete", "CompletionsReached"), completion=ago(3))
    update = compute(make_run(), job, [pod])
    assert summary(update) == ("Succeeded", "Completed")
    assert update.status["completionTime"] == ago(3)
    assert conditions(update)["Succeeded"]["status"] == "True"
    assert conditions(update)["Running"]["status"] == "False"
    assert "Failed" not in conditions(update)
    assert is_terminal({"status": update.status})


# --- failures --------------------------------------------------------------------------------


def test_user_error_exit_code_with_termination_message() -> None:
    text = "unknown environment id 'CartPol-v1'; did you mean CartPole-v1?"
    pod = failed_pod("p", 42, message=text)
    job = make_job(("Failed", "PodFailurePolicy"), failed=1)
    update = compute(make_run(), job, [pod])
    assert summary(update) == ("Failed", "UserError")
    assert update.status["message"] == text
    assert conditions(update)["Failed"]["reason"] == "UserError"
    assert update.event is not None and update.event.type == "Warning"
    assert not update.stop_job


def test_failure_target_counts_as_failed_before_the_job_is() -> None:
    job = make_job(("FailureTarget", "PodFailurePolicy"), failed=1)
    update = compute(make_run(), job, [failed_pod("p", 42, message="bad hyperparameter 'lr'")])
    assert summary(update) == ("Failed", "UserError")


def test_oom_killed_after_retries() -> None:
    pods = [
        failed_pod("p1", 137, "OOMKilled", created=300),
        failed_pod("p2", 137, "OOMKilled", created=200),
        failed_pod("p3", 137, "OOMKilled", created=100),
    ]
    job = make_job(("Failed", "BackoffLimitExceeded"), failed=3)
    update = compute(make_run(), job, pods)
    assert summary(update) == ("Failed", "OOMKilled")
    assert "4Gi" in update.status["message"]
    assert "spec.resources.memory" in update.status["message"]
    assert "failed 3 times" in update.status["message"]


def test_deadline_exceeded() -> None:
    pod = make_pod("p", "Failed", state=terminated(143, "Error"))
    update = compute(make_run(), make_job(("Failed", "DeadlineExceeded")), [pod])
    assert summary(update) == ("Failed", "DeadlineExceeded")
    assert "600s" in update.status["message"]


def test_storage_unreachable() -> None:
    pods = [failed_pod(f"p{i}", 44, message="could not connect to http://minio:9000") for i in (1, 2, 3)]
    update = compute(make_run(), make_job(("Failed", "BackoffLimitExceeded"), failed=3), pods)
    assert summary(update) == ("Failed", "StorageUnreachable")
    assert "minio:9000" in update.status["message"]


def test_the_attempts_count_the_pod_that_exceeded_the_limit() -> None:
    # FailureTarget comes before the Job's counter counts the last pod; that status is final.
    pods = [failed_pod(f"p{i}", 44, message="could not connect", created=100 + i) for i in (1, 2)]
    run = make_run()
    run["spec"]["runPolicy"] = {"backoffLimit": 1}
    update = compute(run, make_job(("FailureTarget", "BackoffLimitExceeded"), failed=1), pods)
    assert summary(update) == ("Failed", "StorageUnreachable")
    assert update.status["message"].endswith("[failed 2 times (runPolicy.backoffLimit 1)]"), update.status["message"]


def test_bad_command_that_failed_to_start() -> None:
    pods = [failed_pod("p", 128, "StartError", message='exec: "kubegym-runner": not found')]
    update = compute(make_run(), make_job(("Failed", "BackoffLimitExceeded"), failed=3), pods)
    assert summary(update) == ("Failed", "ContainerCannotRun")
    assert "startTime" not in update.status


def test_generic_crash_names_the_backoff_limit_and_the_exit_code() -> None:
    pods = [failed_pod("p", 1, message="Traceback ... ZeroDivisionError")]
    update = compute(make_run(), make_job(("Failed", "BackoffLimitExceeded"), failed=3), pods)
    assert summary(update) == ("Failed", "BackoffLimitExceeded")
    assert "exit" in update.status["message"] and "code 1" in update.status["message"]
    assert "ZeroDivisionError" in update.status["message"]
    assert "backoffLimit 2" in update.status["message"]


def test_long_termination_messages_keep_their_end() -> None:
    text = "x" * 10_000 + " the actual error"
    update = compute(make_run(), make_job(("Failed", "PodFailurePolicy")), [failed_pod("p", 42, message=text)])
    assert update.status["message"].endswith("the actual error")
    assert len(update.status["message"]) < 2100


def test_render_errors_fail_the_run_without_a_job() -> None:
    update = failed_status(make_run(), "StorageNotConfigured", "set spec.checkpoint.storage", now=NOW)
    TrainingRunStatus.model_validate(update.status)
    assert summary(update) == ("Failed", "StorageNotConfigured")
    assert update.status["completionTime"] == format_time(NOW)


# --- disruptions, retries, suspension --------------------------------------------------------


def disrupted_pod(name: str, created: float = 100, **kw: Any) -> dict[str, Any]:
    cond = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": "preempted by a higher-priority pod",
    }
    return make_pod(
        name,
        kw.pop("phase", "Failed"),
        created=created,
        conditions=[cond],
        state=terminated(143),
        **kw,
    )


def test_disrupted_pod_awaiting_replacement() -> None:
    update = compute(make_run(), make_job(), [disrupted_pod("p1")])
    assert summary(update) == ("Pending", "Disrupted")
    assert "PreemptionByScheduler" in update.status["message"]
    assert "checkpoint" in update.status["message"]


def test_disruptions_are_not_the_failure_cause() -> None:
    pods = [disrupted_pod("p1", created=300), failed_pod("p2", 137, "OOMKilled", created=100)]
    update = compute(make_run(), make_job(("Failed", "BackoffLimitExceeded"), failed=3), pods)
    assert summary(update) == ("Failed", "OOMKilled")


def test_terminating_pod_after_disruption() -> None:
    pod = disrupted_pod("p1", phase="Running", deleting=True)
    assert summary(compute(make_run(), make_job(active=1), [pod])) == ("Pending", "Disrupted")


def test_replacement_pod_is_what_counts() -> None:
    pods = [
        disrupted_pod("p1", created=300),
        make_pod("p2", "Running", created=30, state={"running": {"startedAt": ago(20)}}),
    ]
    assert summary(compute(make_run(), make_job(active=1), pods)) == ("Running", "Training")


def test_restarting_after_an_infrastructure_error() -> None:
    update = compute(make_run(), make_job(failed=1), [failed_pod("p1", 43, message="API 503")])
    assert summary(update) == ("Pending", "Restarting")
    assert "InfrastructureError" in update.status["message"]


def test_suspended_by_the_user() -> None:
    update = compute(make_run(suspend=True), make_job(suspend=True), [])
    assert summary(update) == ("Suspended", "Suspended")
    assert conditions(update)["Suspended"]["status"] == "True"
    assert summary(compute(make_run(suspend=True), None, [])) == ("Suspended", "Suspended")


def test_resumed_run_keeps_a_false_suspended_condition() -> None:
    suspended = compute(make_run(suspend=True), make_job(suspend=True), [])
    pod = make_pod("p", "Running", state={"running": {"startedAt": ago(1)}})
    resumed = compute(make_run(suspended.status), make_job(active=1), [pod])
    cond = conditions(resumed)["Suspended"]
    assert (cond["status"], cond["reason"]) == ("False", "Resumed")


def test_waiting_for_kueue_admission() -> None:
    update = compute(make_run(), make_job(suspend=True, queue="team-a"), [])
    assert summary(update) == ("Pending", "Queued")
    assert "team-a" in update.status["message"]


# --- what stays ------------------------------------------------------------------------------


def test_terminal_phases_are_final() -> None:
    done = compute(make_run(), make_job(("Complete", "CompletionsReached"), completion=ago(60)), []).status
    later = compute(make_run(done, generation=4), None, [])  # the Job's TTL removed it
    assert summary(later) == ("Succeeded", "Completed")
    assert later.status["completionTime"] == done["completionTime"]
    assert later.status["observedGeneration"] == 4
    assert later.event is None


def test_failed_run_whose_job_still_retries_asks_to_stop_it() -> None:
    failed = compute(
        make_run(),
        make_job(active=1),
        [make_pod("p", "Pending", state=waiting("InvalidImageName"))],
    ).status
    again = compute(make_run(failed), make_job(active=1), [])
    assert summary(again) == ("Failed", "ImagePullFailed")
    assert again.stop_job
    assert not compute(make_run(failed), None, []).stop_job


def test_transition_time_moves_only_when_status_flips() -> None:
    first = compute(make_run(), make_job(), [])  # Running False (Starting)
    pending_pod = make_pod("p", "Pending", state=waiting("ContainerCreating"))
    later_now = NOW + timedelta(minutes=5)
    second = compute_status(make_run(first.status), make_job(active=1), [pending_pod], now=later_now, settings=SETTINGS)
    running_1, running_2 = conditions(first)["Running"], conditions(second)["Running"]
    assert running_2["reason"] == "ContainerCreating" != running_1["reason"]
    assert running_2["lastTransitionTime"] == running_1["lastTransitionTime"] == format_time(NOW)
    pod = make_pod("p", "Running", state={"running": {"startedAt": ago(1)}})
    third = compute_status(make_run(second.status), make_job(active=1), [pod], now=later_now, settings=SETTINGS)
    assert conditions(third)["Running"]["lastTransitionTime"] == format_time(later_now)


def test_events_only_on_transitions() -> None:
    pod = make_pod(
        "p",
        "Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    )
    first = compute(make_run(), make_job(active=1), [pod])
    assert first.event is not None
    assert (first.event.type, first.event.reason) == ("Warning", "Unschedulable")
    assert compute(make_run(first.status), make_job(active=1), [pod]).event is None


# --- the result, when the runner's final status report was lost ---------------------------------

FINAL_REPORT = FinalReport(
    result=TrainingResult(
        timesteps=1024,
        mean_reward=487.25,
        std_reward=12.5,
        episodes=10,
        model_uri="s3://kubegym/runs/research/cp/final",
    ),
    total_timesteps=1000,
    checkpoints=CheckpointStatus(
        latest_uri="s3://kubegym/runs/research/cp/checkpoints/000000001024", latest_step=1024, count=2
    ),
)
SUMMARY_LINE = "trained 1024 timesteps; final evaluation 487.25 +/- 12.5 over 10 episodes; model s3://…/final"
WITH_REPORT = final_report_message(SUMMARY_LINE, FINAL_REPORT, 4096)
#: What the runner last got through before the API server went away.
LAST_PROGRESS = {"timesteps": 768, "totalTimesteps": 1000, "fraction": 0.768, "percent": 76, "stepsPerSecond": 900.0}
LAST_CHECKPOINTS = {
    "latestUri": "s3://kubegym/runs/research/cp/checkpoints/000000000512",
    "latestStep": 512,
    "count": 1,
}


def succeeded_pod(message: str, name: str = "cartpole-train-ok", created: float = 60) -> dict[str, Any]:
    return make_pod(name, "Succeeded", created=created, state=terminated(0, "Completed", message, started=300))


def complete_job() -> dict[str, Any]:
    return make_job(("Complete", "CompletionsReached"), completion=ago(3))


def merged(status: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``status`` after a JSON merge patch (what the API server does with the operator's write)."""
    out = dict(status)
    for key, value in patch.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize(
    ("previous", "message", "recovers"),
    [
        pytest.param({"progress": LAST_PROGRESS}, WITH_REPORT, True, id="report-lost-recovered"),
        pytest.param({}, WITH_REPORT, True, id="nothing-ever-arrived-recovered"),
        pytest.param(
            {"progress": {**LAST_PROGRESS, "percent": 100}, "result": {"meanReward": 1.0, "timesteps": 1000}},
            WITH_REPORT,
            False,
            id="report-arrived-untouched",
        ),
        pytest.param({"progress": LAST_PROGRESS}, SUMMARY_LINE, False, id="older-runner-no-report"),
        pytest.param({"progress": LAST_PROGRESS}, "", False, id="no-message"),
    ],
)
def test_succeeded_run_result_with_and_without_the_runners_report(
    previous: dict[str, Any], message: str, recovers: bool
) -> None:
    update = compute(make_run(previous), complete_job(), [succeeded_pod(message)])
    assert summary(update) == ("Succeeded", "Completed")
    succeeded = conditions(update)["Succeeded"]
    assert update.event is not None
    if recovers:
        assert update.status["result"] == FINAL_REPORT.result.model_dump(mode="json", by_alias=True, exclude_none=True)
        progress = update.status["progress"]
        assert (progress["percent"], progress["fraction"], progress["timesteps"]) == (100, 1.0, 1024)
        assert progress["totalTimesteps"] == 1000
        if "progress" in previous:
            assert progress["stepsPerSecond"] == 900.0  # what the runner wrote stays
        assert update.status["checkpoints"]["latestStep"] == 1024
        assert "recovered from the runner pod's termination message" in succeeded["message"]
        assert "final/manifest.json" in update.event.message
    else:
        assert not {"result", "progress", "checkpoints"} & update.status.keys()  # the runner's fields, untouched
        assert succeeded["message"] == "the runner finished training"


def test_recovery_merges_over_what_the_runner_reported_and_is_written_once() -> None:
    previous = {"progress": LAST_PROGRESS, "checkpoints": LAST_CHECKPOINTS}
    update = compute(make_run(previous), complete_job(), [succeeded_pod(WITH_REPORT)])
    # The report's checkpoints are newer than the runner's last write; keys it lacks stay.
    assert update.status["checkpoints"] == {
        **LAST_CHECKPOINTS,
        "latestUri": "s3://kubegym/runs/research/cp/checkpoints/000000001024",
        "latestStep": 1024,
        "count": 2,
    }
    after = merged(previous, update.status)
    TrainingRunStatus.model_validate(after)
    again = compute(make_run(after), None, [succeeded_pod(WITH_REPORT)])  # terminal now; the Job may be gone
    assert again.event is None
    assert all(after.get(key) == value for key, value in again.status.items() if key != "observedGeneration")


def test_a_run_already_succeeded_without_a_result_recovers_it_with_an_event() -> None:
    done = compute(make_run({"progress": LAST_PROGRESS}), complete_job(), []).status  # the pod was not listed yet
    assert "result" not in done
    later = compute(make_run({**done, "progress": LAST_PROGRESS}), complete_job(), [succeeded_pod(WITH_REPORT)])
    assert summary(later) == ("Succeeded", "Completed")
    assert later.status["result"]["meanReward"] == 487.25
    assert later.status["progress"]["percent"] == 100
    assert later.event is not None
    assert (later.event.type, later.event.reason) == ("Normal", "ResultRecovered")
    assert "termination message" in later.event.message


def test_the_newest_succeeded_pod_with_a_report_counts() -> None:
    older = FinalReport(result=TrainingResult(timesteps=1, mean_reward=-1.0))
    pods = [
        succeeded_pod(final_report_message("old", older, 4096), name="a", created=500),
        failed_pod("b", 43, message="storage down", created=300),
        succeeded_pod(WITH_REPORT, name="c", created=100),
        make_pod("d", "Succeeded", created=50, state=terminated(1, "Error", WITH_REPORT)),  # not exit 0
    ]
    update = compute(make_run(), complete_job(), pods)
    assert update.status["result"]["meanReward"] == 487.25


def test_a_failed_run_gets_no_result() -> None:
    failed = compute(make_run(), make_job(("Failed", "BackoffLimitExceeded"), failed=3), [succeeded_pod(WITH_REPORT)])
    assert failed.status["phase"] == "Failed" and "result" not in failed.status
    later = compute(make_run(failed.status), None, [succeeded_pod(WITH_REPORT)])
    assert "result" not in later.status and later.event is None


# --- the StorageAvailable condition, from the runner's status.progress.storage -------------------


def _storage(state: str, message: str = "ReadTimeoutError: no answer", since: float = 120) -> dict[str, Any]:
    return {"state": state, "since": ago(since), "message": message, "pendingUploads": 1, "failedRequests": 2}


def _running_with(storage: dict[str, Any] | None, before: str | None) -> dict[str, Any]:
    """A Running run whose runner last reported ``storage``, with a StorageAvailable condition ``before``."""
    status: dict[str, Any] = {"phase": "Running", "reason": "Training", "progress": {"timesteps": 100}}
    if storage is not None:
        status["progress"]["storage"] = storage
    if before is not None:
        status["conditions"] = [
            {
                "type": "StorageAvailable",
                "status": before,
                "reason": "StorageAvailable" if before == "True" else "StorageUnavailable",
                "message": "before",
                "lastTransitionTime": ago(600),
            }
        ]
    return make_run(status)


RUNNING = make_pod("p", "Running", state={"running": {"startedAt": ago(300)}})


@pytest.mark.parametrize(
    ("storage", "before", "status", "reason", "event"),
    [
        ("ok", None, "True", "StorageAvailable", None),  # the first report: no transition to tell
        ("failing", None, "False", "StorageUnavailable", ("Warning", "StorageUnavailable")),
        ("failing", "True", "False", "StorageUnavailable", ("Warning", "StorageUnavailable")),
        ("failing", "False", "False", "StorageUnavailable", None),  # still failing: no new Event
        ("ok", "False", "True", "StorageAvailable", ("Normal", "StorageAvailable")),  # back
        ("ok", "True", "True", "StorageAvailable", None),
        (None, "False", "False", "StorageUnavailable", None),  # no report (an older runner): kept as it was
        (None, None, None, None, None),  # and none at all without one
    ],
)
def test_storage_condition_follows_the_runners_report(
    storage: str | None,
    before: str | None,
    status: str | None,
    reason: str | None,
    event: tuple[str, str] | None,
) -> None:
    update = compute(_running_with(_storage(storage) if storage else None, before), make_job(active=1), [RUNNING])
    assert summary(update) == ("Running", "Training")  # storage never changes the phase
    cond = conditions(update).get("StorageAvailable")
    assert (cond and (cond["status"], cond["reason"])) == ((status, reason) if status else None)
    got = update.storage_event
    assert (got and (got.type, got.reason)) == event
    if event is not None:
        assert got in update.events
    if cond is not None and before == status:
        assert cond["lastTransitionTime"] == ago(600)  # moves only when the status flips
    elif cond is not None:
        assert cond["lastTransitionTime"] == format_time(NOW)


def test_storage_condition_says_since_when_and_why_and_carries_no_credentials() -> None:
    message = (
        "Could not connect to http://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@minio:9000/bkt?X-Amz-Signature=abcdef&x=1 "
        "(aws_secret_access_key=wJalrXUtnFEMI, key AKIAIOSFODNN7EXAMPLE)"
    )
    update = compute(_running_with(_storage("failing", message), "True"), make_job(active=1), [RUNNING])
    cond = conditions(update)["StorageAvailable"]
    assert cond["message"].startswith(
        f"checkpoint uploads fail since {ago(120)}: Could not connect to http://***@minio"
    )
    assert "training goes on" in cond["message"]
    for secret in ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "abcdef"):
        assert secret not in cond["message"]
        assert update.storage_event is not None and secret not in update.storage_event.message
    long = compute(_running_with(_storage("failing", "x" * 5000), None), make_job(active=1), [RUNNING])
    assert len(conditions(long)["StorageAvailable"]["message"]) <= 1024


def test_the_storage_condition_sits_beside_the_phase_conditions_and_a_finished_run_keeps_it() -> None:
    update = compute(_running_with(_storage("failing"), None), make_job(active=1), [RUNNING])
    assert [c["type"] for c in update.status["conditions"]] == ["Running", "StorageAvailable"]
    assert update.events == [e for e in (update.event, update.storage_event) if e is not None]
    finished = make_run(
        {
            "phase": "Succeeded",
            "reason": "Completed",
            "conditions": update.status["conditions"],
            "progress": {"storage": _storage("ok", "uploads succeed", since=5)},
            "result": {"meanReward": 500.0},
        }
    )
    done = compute(finished, make_job(("Complete", "Completed")), [])
    assert conditions(done)["StorageAvailable"]["status"] == "True"
    assert done.storage_event is not None and done.storage_event.reason == "StorageAvailable"
