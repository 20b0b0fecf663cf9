"""``spec.tracking.mlflow`` against a real ``mlflow server`` (PyPI, its own venv, started here): what a
CartPole PPO run logs (params, tags, ``rollout/ep_rew_mean`` at rising steps, ``eval/mean_reward``
whose last point is ``status.result.meanReward``, the model under ``model/``, status FINISHED, the
TrackingAvailable condition True); a run whose pod is deleted mid-training continues the same MLflow
run; an Experiment's two trials are children of one parent run; and a run whose tracking server is
unreachable Succeeds with TrackingAvailable False, reason TrackingUnreachable. Everything is read
back from the server's REST API."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import experiment, runs_of
from tests.integration.experiment.support import status as experiment_status
from tests.integration.trainingrun.support import condition, get_run, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.mlflow import MlflowServer, params, tags
from tests.support.wait import wait_until

#: PPO's default rollout: one SB3 dump (one point per metric) every 2,048 steps.
ROLLOUT = 2048


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def tracked(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    return training_run(name, tracking={"mlflow": {"trackingUri": uri}}, **spec)


def finished(kube: Kube, ns: str, name: str, operator: OperatorProcess, timeout: float = 900) -> dict[str, Any]:
    wait_until(
        lambda: status(kube, ns, name).get("phase") in ("Succeeded", "Failed"),
        timeout,
        f"{name} to finish",
        describe=lambda: json.dumps(status(kube, ns, name), indent=1)[-3000:] + "\n" + operator.tail(20),
    )
    return status(kube, ns, name)


def only_run(mlflow: MlflowServer, experiment_name: str, uid: str) -> dict[str, Any]:
    found = mlflow.runs(experiment_name, f"tags.`kubegym.uid` = '{uid}'")
    assert len(found) == 1, found
    return found[0]


def test_a_run_logs_params_metrics_and_its_model(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, mlflow: MlflowServer
) -> None:
    ns, name = namespace, "tracked"
    kubectl.apply(
        tracked(
            name,
            mlflow.url,
            totalTimesteps=3 * ROLLOUT,
            seed=3,
            hyperparameters={"gamma": 0.98, "policy_kwargs": {"net_arch": [32]}},
            evaluation={"everySteps": ROLLOUT, "episodes": 3},
        )
    )
    st = finished(kube, ns, name, operator)
    assert st["phase"] == "Succeeded", st
    uid = get_run(kube, ns, name)["metadata"]["uid"]

    run = only_run(mlflow, f"{ns}/{name}", uid)
    assert run["info"]["status"] == "FINISHED", run["info"]
    assert st["progress"]["tracking"]["runId"] == run["info"]["run_id"]
    got = params(run)
    assert got["algorithm"] == "PPO" and got["env_id"] == "CartPole-v1", got
    assert got["seed"] == "3" and got["total_timesteps"] == str(3 * ROLLOUT) and got["n_envs"] == "1", got
    assert got["gamma"] == "0.98" and json.loads(got["policy_kwargs"]) == {"net_arch": [32]}, got
    assert {k: v for k, v in tags(run).items() if k.startswith("kubegym.")} == {
        "kubegym.namespace": ns,
        "kubegym.name": name,
        "kubegym.uid": uid,
        "kubegym.kind": "TrainingRun",
    }

    rewards = mlflow.history(run["info"]["run_id"], "rollout/ep_rew_mean")
    steps = [int(p["step"]) for p in rewards]
    assert steps == sorted(set(steps)) and steps[0] == ROLLOUT and steps[-1] == st["result"]["timesteps"], steps
    assert mlflow.history(run["info"]["run_id"], "time/fps"), "no time/fps"
    assert mlflow.history(run["info"]["run_id"], "train/loss"), "no train/loss"
    evaluations = mlflow.history(run["info"]["run_id"], "eval/mean_reward")
    assert len(evaluations) >= 2, evaluations  # periodic ones, then the final one
    assert round(evaluations[-1]["value"], 4) == st["result"]["meanReward"], (evaluations, st["result"])
    assert int(evaluations[-1]["step"]) == st["result"]["timesteps"]
    assert mlflow.artifacts(run["info"]["run_id"], "model") == ["model/model.zip"]

    cond = condition(st, "TrackingAvailable")
    assert cond is not None and cond["status"] == "True" and cond["reason"] == "TrackingAvailable", st["conditions"]


def test_a_run_whose_pod_is_deleted_continues_the_same_mlflow_run(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, mlflow: MlflowServer
) -> None:
    ns, name = namespace, "tracked-resumed"
    total = 8 * ROLLOUT
    kubectl.apply(tracked(name, mlflow.url, totalTimesteps=total, checkpoint={"everySteps": ROLLOUT}))
    wait_until(
        lambda: ((status(kube, ns, name).get("checkpoints") or {}).get("latestStep") or 0) >= 2 * ROLLOUT,
        600,
        "a second checkpoint",
        describe=lambda: json.dumps(status(kube, ns, name), indent=1)[-2000:],
    )
    job = status(kube, ns, name)["jobName"]
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"batch.kubernetes.io/job-name={job}")["items"]
    running = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert running, pods
    kubectl.run("delete", "pod", *running, "--wait=true", timeout=180)
    st = finished(kube, ns, name, operator)
    assert st["phase"] == "Succeeded", st
    assert st["progress"]["resumedFromStep"] > 0, st["progress"]

    uid = get_run(kube, ns, name)["metadata"]["uid"]
    run = only_run(mlflow, f"{ns}/{name}", uid)  # one MLflow run for both attempts
    assert run["info"]["status"] == "FINISHED", run["info"]
    steps = sorted({int(p["step"]) for p in mlflow.history(run["info"]["run_id"], "rollout/ep_rew_mean")})
    assert steps[0] == ROLLOUT and steps[-1] == st["result"]["timesteps"] >= total, steps
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 2 * ROLLOUT, steps  # no restart at 0, no gap


def test_an_experiments_trials_are_child_runs_of_one_parent(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, mlflow: MlflowServer
) -> None:
    ns, name = namespace, "tracked-study"
    template = {**experiment(name)["spec"]["template"], "totalTimesteps": 1024}
    study = experiment(
        name, template=template, seeds={"count": 2}, parallelism=2, tracking={"mlflow": {"trackingUri": mlflow.url}}
    )
    del study["spec"]["search"]  # one configuration, two seeds: two trials
    kubectl.apply(study)
    wait_until(
        lambda: experiment_status(kube, ns, name).get("phase") in ("Succeeded", "Failed"),
        900,
        f"{name} to finish",
        describe=lambda: json.dumps(experiment_status(kube, ns, name), indent=1)[-3000:] + "\n" + operator.tail(20),
    )
    trials = runs_of(kube, ns, name)
    assert [t["status"]["phase"] for t in trials] == ["Succeeded", "Succeeded"], [t["status"] for t in trials]
    exp_uid = kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/experiments/{name}")["metadata"]["uid"]

    parents = mlflow.runs(f"{ns}/{name}", f"tags.`kubegym.uid` = '{exp_uid}'")
    assert len(parents) == 1, parents
    parent = parents[0]
    assert tags(parent)["kubegym.kind"] == "Experiment" and tags(parent)["kubegym.name"] == name
    children = mlflow.runs(f"{ns}/{name}", f"tags.`mlflow.parentRunId` = '{parent['info']['run_id']}'")
    assert sorted(tags(c)["kubegym.uid"] for c in children) == sorted(t["metadata"]["uid"] for t in trials)
    assert all(c["info"]["status"] == "FINISHED" for c in children), [c["info"] for c in children]
    assert len(mlflow.runs(f"{ns}/{name}")) == 3  # the parent and its two children, nothing else


def test_an_unreachable_tracking_server_never_fails_the_run(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns, name = namespace, "tracked-away"
    kubectl.apply(tracked(name, "http://127.0.0.1:9", totalTimesteps=1024))
    st = finished(kube, ns, name, operator)
    assert st["phase"] == "Succeeded", st
    assert st["result"]["meanReward"] is not None
    cond = condition(st, "TrackingAvailable")
    assert cond is not None, st["conditions"]
    assert cond["status"] == "False" and cond["reason"] == "TrackingUnreachable", cond
    assert "http://127.0.0.1:9" in cond["message"] and "training goes on" in cond["message"], cond
    assert st["progress"]["tracking"]["state"] == "failing", st["progress"]["tracking"]


def test_a_server_down_mid_run_is_a_condition_and_the_points_arrive_once_it_is_back(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns, name = namespace, "tracked-outage"
    server = MlflowServer(tmp_path)  # a server of its own, stopped and started again on its port
    server.start()
    try:
        kubectl.apply(tracked(name, server.url, totalTimesteps=40 * ROLLOUT))

        def describe() -> str:
            return json.dumps(status(kube, ns, name), indent=1)[-2500:]

        def tracking_state() -> str | None:
            return ((status(kube, ns, name).get("progress") or {}).get("tracking") or {}).get("state")

        wait_until(lambda: tracking_state() == "ok", 300, "the run to reach MLflow", describe=describe)
        server.stop()
        wait_until(lambda: tracking_state() == "failing", 120, "the runner to notice the outage", describe=describe)
        cond = condition(status(kube, ns, name), "TrackingAvailable")
        assert cond is not None and (cond["status"], cond["reason"]) == ("False", "TrackingUnreachable"), cond
        assert status(kube, ns, name)["phase"] == "Running"  # training goes on
        server.start()
        st = finished(kube, ns, name, operator)
        assert st["phase"] == "Succeeded", st
        cond = condition(st, "TrackingAvailable")
        assert cond is not None and (cond["status"], cond["reason"]) == ("True", "TrackingAvailable"), cond

        uid = get_run(kube, ns, name)["metadata"]["uid"]
        run = only_run(server, f"{ns}/{name}", uid)
        assert run["info"]["status"] == "FINISHED", run["info"]
        steps = [int(p["step"]) for p in server.history(run["info"]["run_id"], "rollout/ep_rew_mean")]
        # Every rollout's point, those of the outage included (they waited in the runner).
        assert steps == list(range(ROLLOUT, st["result"]["timesteps"] + 1, ROLLOUT)), steps
    finally:
        server.stop()
