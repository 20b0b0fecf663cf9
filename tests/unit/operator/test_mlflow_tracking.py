"""spec.tracking.mlflow in the operator: what the runner's configuration says (the experiment, the run's
identity, the Experiment of a trial), the credentials Secret's keys by reference only, trials that
inherit the Experiment's tracking, and the TrackingAvailable condition from the runner's report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.experiment import ExperimentSpec
from kubegym_api.runnerconfig import TrainConfig
from kubegym_operator.builders.experiment import plan, render_run
from kubegym_operator.builders.job import build_train_config, render_job
from kubegym_operator.builders.status import compute_status
from kubegym_operator.settings import Settings
from tests.unit.operator.builders import NOW, STORAGE, ago

SETTINGS = Settings(pending_error_grace_seconds=300)
UID = "6b1c2d3e-0000-4000-8000-000000000001"
MLFLOW = {"trackingUri": "http://mlflow.mlflow:5000"}


def make_run(tracking: dict[str, Any] | None = None, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1"},
        "totalTimesteps": 4096,
        "checkpoint": {"everySteps": 1024, "keepLast": 1, "storage": STORAGE},
        "resources": {"gpu": 0},
        "runPolicy": {"backoffLimit": 3},
    }
    if tracking is not None:
        spec["tracking"] = tracking
    meta: dict[str, Any] = {"name": "cartpole", "namespace": "research", "uid": UID, "generation": 1}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "kubegym.io/v1alpha1", "kind": "TrainingRun", "metadata": meta, "spec": spec}


EXPERIMENT_OWNER = {
    "apiVersion": "kubegym.io/v1alpha1",
    "kind": "Experiment",
    "name": "study",
    "uid": "uid-exp",
    "controller": True,
}


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_no_tracking_no_mlflow_config_and_no_credentials() -> None:
    config = build_train_config(make_run(), SETTINGS)
    assert config.mlflow is None
    assert not [name for name in env_of(render_job(make_run(), SETTINGS)) if name.startswith("MLFLOW_")]


@pytest.mark.parametrize(
    ("mlflow", "owner", "experiment", "parent"),
    [
        (MLFLOW, None, "research/cartpole", None),  # default: <namespace>/<name> of the run
        ({**MLFLOW, "experimentName": "team/cartpole"}, None, "team/cartpole", None),
        (MLFLOW, EXPERIMENT_OWNER, "research/study", ("study", "uid-exp")),  # a trial: its Experiment's
        ({**MLFLOW, "experimentName": "mine"}, EXPERIMENT_OWNER, "mine", ("study", "uid-exp")),
        (MLFLOW, {**EXPERIMENT_OWNER, "controller": False}, "research/cartpole", None),  # not its controller
    ],
)
def test_the_runner_config_names_the_experiment_and_the_runs_identity(
    mlflow: dict[str, Any], owner: dict[str, Any] | None, experiment: str, parent: tuple[str, str] | None
) -> None:
    config = build_train_config(make_run({"mlflow": mlflow}, owner), SETTINGS).mlflow
    assert config is not None
    assert config.tracking_uri == "http://mlflow.mlflow:5000" and config.experiment_name == experiment
    assert (config.run.kind, config.run.namespace, config.run.name, config.run.uid) == (
        "TrainingRun",
        "research",
        "cartpole",
        UID,
    )
    assert (config.parent and (config.parent.name, config.parent.uid)) == parent


def test_credentials_reach_the_pod_by_reference_only() -> None:
    run = make_run({"mlflow": {**MLFLOW, "credentialsSecretRef": "mlflow-creds"}})
    job = render_job(run, SETTINGS)
    env = env_of(job)
    for key, name in (
        ("username", "MLFLOW_TRACKING_USERNAME"),
        ("password", "MLFLOW_TRACKING_PASSWORD"),
        ("token", "MLFLOW_TRACKING_TOKEN"),
    ):
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": "mlflow-creds", "key": key, "optional": True}},
        }
    config = TrainConfig.model_validate_json(env[CONFIG_ENV]["value"])
    assert config.mlflow is not None and config.mlflow.credentials
    assert "mlflow-creds" not in env[CONFIG_ENV]["value"]  # the config says only that there are some


def experiment() -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "study", "namespace": "research", "uid": "uid-exp", "generation": 1},
        "spec": {
            "template": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 2048},
            "seeds": {"count": 2},
            "tracking": {"mlflow": MLFLOW},
        },
    }


def test_trials_inherit_the_experiments_tracking_and_log_as_its_children() -> None:
    exp = experiment()
    runs = [render_run(exp, r, suspend=False) for r in plan(exp).runs]
    assert [r["spec"]["tracking"] for r in runs] == [{"mlflow": MLFLOW}] * 2
    trial = runs[0]
    trial["metadata"]["uid"] = "uid-trial"
    trial["spec"]["checkpoint"] = {"storage": STORAGE}
    config = build_train_config(trial, SETTINGS).mlflow
    assert config is not None and config.experiment_name == "research/study"
    assert config.parent is not None and (config.parent.kind, config.parent.uid) == ("Experiment", "uid-exp")


def test_the_experiment_model_refuses_tracking_in_the_template_only_in_the_schema() -> None:
    # The CEL rule (tests/integration/corpus) refuses it at apply; the model itself parses it.
    spec = ExperimentSpec.model_validate(experiment()["spec"])
    assert spec.tracking is not None and spec.tracking.mlflow is not None
    rules = json.dumps(ExperimentSpec.model_json_schema())
    assert "!has(self.template.tracking)" in rules


# --- the TrackingAvailable condition -------------------------------------------------------------


def _tracking(state: str, message: str = "http://mlflow:5000: ConnectionError: refused") -> dict[str, Any]:
    return {"state": state, "since": ago(60), "message": message, "failedRequests": 3, "runId": "abc"}


def running(tracking: dict[str, Any] | None, before: str | None = None) -> dict[str, Any]:
    run = make_run({"mlflow": MLFLOW})
    status: dict[str, Any] = {"phase": "Running", "reason": "Training", "progress": {"timesteps": 10}}
    if tracking is not None:
        status["progress"]["tracking"] = tracking
    if before is not None:
        reason = "TrackingAvailable" if before == "True" else "TrackingUnreachable"
        status["conditions"] = [
            {
                "type": "TrackingAvailable",
                "status": before,
                "reason": reason,
                "message": "m",
                "lastTransitionTime": ago(600),
            }
        ]
    run["status"] = status
    return run


JOB = {
    "metadata": {"name": "cartpole-train", "namespace": "research", "annotations": {}},
    "spec": {},
    "status": {"active": 1, "startTime": ago(300)},
}
POD = {
    "metadata": {"name": "p", "namespace": "research", "creationTimestamp": ago(300)},
    "spec": {"nodeName": "n"},
    "status": {
        "phase": "Running",
        "containerStatuses": [{"name": "runner", "state": {"running": {"startedAt": ago(300)}}}],
    },
}


@pytest.mark.parametrize(
    ("tracking", "before", "expected", "event"),
    [
        ("ok", None, ("True", "TrackingAvailable"), None),
        ("failing", None, ("False", "TrackingUnreachable"), ("Warning", "TrackingUnreachable")),
        ("failing", "False", ("False", "TrackingUnreachable"), None),  # still: no new Event
        ("ok", "False", ("True", "TrackingAvailable"), ("Normal", "TrackingAvailable")),  # back
        (None, "False", ("False", "TrackingUnreachable"), None),  # no report: kept
        (None, None, None, None),
    ],
)
def test_tracking_condition_follows_the_runners_report(
    tracking: str | None, before: str | None, expected: tuple[str, str] | None, event: tuple[str, str] | None
) -> None:
    update = compute_status(
        running(_tracking(tracking) if tracking else None, before), JOB, [POD], now=NOW, settings=SETTINGS
    )
    assert update.status["phase"] == "Running"  # tracking never changes the phase
    cond = next((c for c in update.status["conditions"] if c["type"] == "TrackingAvailable"), None)
    assert (cond and (cond["status"], cond["reason"])) == expected
    got = update.tracking_event
    assert (got and (got.type, got.reason)) == event
    if got is not None:
        assert got in update.events


def test_the_unreachable_message_says_where_since_when_and_that_training_goes_on_without_secrets() -> None:
    message = "http://user:hunter22@mlflow:5000: HTTP 401 token=abcdef123"
    update = compute_status(running(_tracking("failing", message)), JOB, [POD], now=NOW, settings=SETTINGS)
    cond = next(c for c in update.status["conditions"] if c["type"] == "TrackingAvailable")
    assert cond["message"].startswith(f"the MLflow tracking server is not reached since {ago(60)}: http://***@mlflow")
    assert "training goes on" in cond["message"]
    assert "hunter22" not in cond["message"] and "abcdef123" not in cond["message"]


def test_a_finished_run_keeps_its_tracking_condition() -> None:
    run = running(_tracking("failing"))
    run["status"].update(phase="Succeeded", reason="Completed", result={"meanReward": 10.0})
    done = compute_status(run, None, [], now=NOW, settings=SETTINGS)
    cond = next(c for c in done.status["conditions"] if c["type"] == "TrackingAvailable")
    assert (cond["status"], cond["reason"]) == ("False", "TrackingUnreachable")
