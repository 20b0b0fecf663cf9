"""An Optuna search's proposals: each configuration proposed once, from the scores before it, kept
in its runs so that a restart or a lost write proposes the same again, and refused inputs."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from typing import Any

import optuna
import pytest

from kubegym_api.base import Statistic
from kubegym_api.experiment import Direction, ObjectiveMetric, OptunaSearch
from kubegym_operator.builders.experiment import PlanError, plan, proposed_trials
from kubegym_operator.builders.sampling import TRIAL_ANNOTATION, TrialRecord, aggregate, propose, run_score
from kubegym_operator.controllers import experiment
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, STORAGE, now
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]

SPACE: dict[str, Any] = {
    "learning_rate": {"type": "Float", "low": 1e-5, "high": 1e-1, "log": True},
    "n_steps": {"type": "Int", "low": 16, "high": 256, "step": 16},
    "policy_kwargs": {"type": "Categorical", "choices": ["dict(net_arch=[64])", "dict(net_arch=[64, 64])"]},
}


def optuna_search(**fields: Any) -> Obj:
    return {"trials": 6, "startupTrials": 2, "parameters": SPACE, **fields}


def make_experiment(search: Obj | None = None, seeds: int = 1, parallelism: int = 1, **spec: Any) -> Obj:
    body: Obj = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 10000,
            "checkpoint": {"storage": dict(STORAGE)},
        },
        "seeds": {"count": seeds},
        "parallelism": parallelism,
        "search": {"optuna": search if search is not None else optuna_search()},
        **spec,
    }
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "tpe", "namespace": NAMESPACE, "uid": "uid-exp", "generation": 1},
        "spec": body,
    }


def reconcile(cluster: FakeCluster) -> None:
    experiment.reconcile(cluster, NAMESPACE, "tpe", SETTINGS, now=now, gate=ReconcileGate())


def runs(cluster: FakeCluster) -> dict[str, Obj]:
    return {r["metadata"]["name"]: r for r in cluster.of_kind(Kind.TRAINING_RUN)}


def score_of(hp: dict[str, Any]) -> float:
    """A smooth objective with its peak at learning_rate 1e-3, n_steps 128 (and gamma 0.99)."""
    lr, n_steps, gamma = hp.get("learning_rate", 1e-3), hp.get("n_steps", 128), hp.get("gamma", 0.99)
    return float(500 - 40 * (math.log10(lr) + 3) ** 2 - abs(n_steps - 128) / 4 - 100 * abs(gamma - 0.99))


def finish(cluster: FakeCluster, run: Obj, reward: float | None = None) -> None:
    value = score_of(run["spec"]["hyperparameters"]) if reward is None else reward
    run["status"] = {"phase": "Succeeded", "reason": "Completed", "result": {"meanReward": value}}
    cluster.update(run)


def drive(cluster: FakeCluster, rounds: int = 40) -> list[str]:
    """Reconcile, finishing every unfinished run, until nothing is left to train; the runs in
    creation order."""
    order: list[str] = []
    for _ in range(rounds):
        reconcile(cluster)
        fresh = [n for n in sorted(runs(cluster)) if n not in order]
        order += fresh
        unfinished = [r for r in runs(cluster).values() if not r.get("status")]
        if not unfinished and not fresh:
            break
        for run in unfinished:
            finish(cluster, run)
    return order


def status(cluster: FakeCluster) -> Obj:
    exp = cluster.obj(Kind.EXPERIMENT, NAMESPACE, "tpe")
    assert exp is not None
    return dict(exp.get("status") or {})


def test_configurations_are_proposed_one_by_one_and_each_run_carries_its_trial() -> None:
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    assert list(runs(cluster)) == ["tpe-c0-s0"]  # only what a slot allows is proposed
    assert [c["id"] for c in status(cluster)["configurations"]] == ["c0"]
    assert [r["phase"] for r in status(cluster)["runs"]] == ["Pending", *["Waiting"] * 5]
    order = drive(cluster)
    assert order == [f"tpe-c{k}-s0" for k in range(6)]
    trials = [json.loads(r["metadata"]["annotations"][TRIAL_ANNOTATION]) for r in runs(cluster).values()]
    assert sorted(t["number"] for t in trials) == list(range(6))
    st = status(cluster)
    configs = st["configurations"]
    assert [c["id"] for c in configs] == [f"c{k}" for k in range(6)]
    for config in configs:
        hp = config["hyperparameters"]
        assert 1e-5 <= hp["learning_rate"] <= 1e-1
        assert hp["n_steps"] in range(16, 257, 16)
        assert hp["policy_kwargs"] in SPACE["policy_kwargs"]["choices"]
        run = runs(cluster)[f"tpe-{config['id']}-s0"]
        assert {k: run["spec"]["hyperparameters"][k] for k in SPACE} == hp
        assert config["score"] == pytest.approx(score_of(hp))
    assert len({json.dumps(c["hyperparameters"], sort_keys=True) for c in configs}) == 6
    assert st["reason"] == "Reporting"  # every run done: the report Job is next


def test_a_lost_create_proposes_the_same_configuration_again() -> None:
    """The operator dies after proposing c2 and before its run exists, or the create is lost: the
    next reconcile, from the same history, proposes exactly the same."""
    cluster = FakeCluster(make_experiment())
    for _ in range(2):
        reconcile(cluster)
        for run in runs(cluster).values():
            if not run.get("status"):
                finish(cluster, run)
    reconcile(cluster)
    first = copy.deepcopy(runs(cluster)["tpe-c2-s0"])
    cluster.remove(Kind.TRAINING_RUN, NAMESPACE, "tpe-c2-s0")
    reconcile(cluster)
    again = runs(cluster)["tpe-c2-s0"]
    assert again["metadata"]["annotations"][TRIAL_ANNOTATION] == first["metadata"]["annotations"][TRIAL_ANNOTATION]
    assert again["spec"]["hyperparameters"] == first["spec"]["hyperparameters"]


def test_a_proposal_is_read_back_never_made_again() -> None:
    cluster = FakeCluster(make_experiment(seeds=2, parallelism=1))
    reconcile(cluster)
    (run,) = runs(cluster).values()
    finish(cluster, run)
    reconcile(cluster)  # c0's second seed: the same configuration, read back from the first run
    assert sorted(runs(cluster)) == ["tpe-c0-s0", "tpe-c0-s1"]
    a, b = runs(cluster).values()
    assert a["metadata"]["annotations"][TRIAL_ANNOTATION] == b["metadata"]["annotations"][TRIAL_ANNOTATION]
    assert a["spec"]["hyperparameters"] == b["spec"]["hyperparameters"]
    assert "score" not in status(cluster)["configurations"][0]  # not every seed done yet


def test_parallel_proposals_differ() -> None:
    cluster = FakeCluster(make_experiment(parallelism=3))
    reconcile(cluster)
    assert sorted(runs(cluster)) == ["tpe-c0-s0", "tpe-c1-s0", "tpe-c2-s0"]
    values = {json.dumps(r["spec"]["hyperparameters"], sort_keys=True) for r in runs(cluster).values()}
    assert len(values) == 3


@pytest.mark.parametrize("sampler", ["TPE", "GP", "QMC", "Random"])
def test_every_sampler_proposes_inside_the_space(sampler: str) -> None:
    cluster = FakeCluster(make_experiment(optuna_search(sampler=sampler, trials=5)))
    drive(cluster)
    configs = status(cluster)["configurations"]
    assert len(configs) == 5
    for config in configs:
        hp = config["hyperparameters"]
        assert 1e-5 <= hp["learning_rate"] <= 1e-1
        assert hp["n_steps"] in range(16, 257, 16)


def test_tpe_learns_from_the_scores() -> None:
    """Past its random start, TPE proposes closer to the peak than its random start did."""
    search = optuna_search(trials=24, startupTrials=6, parameters={k: SPACE[k] for k in ("learning_rate", "n_steps")})
    cluster = FakeCluster(make_experiment(search))
    drive(cluster, rounds=60)
    scores = [c["score"] for c in status(cluster)["configurations"]]
    assert len(scores) == 24
    assert max(scores[6:]) > max(scores[:6])
    assert sorted(scores[12:])[6] > sorted(scores[:6])[3]  # the later half's median beats the start's


def test_grid_sampler_visits_every_point_once() -> None:
    grid = {
        "gamma": {"type": "Categorical", "choices": [0.9, 0.99, 0.999]},
        "policy_kwargs": {"type": "Categorical", "choices": ["dict(net_arch=[64])", "dict(net_arch=[32])"]},
    }
    cluster = FakeCluster(make_experiment({"sampler": "Grid", "trials": 6, "parameters": grid}, parallelism=2))
    drive(cluster)
    points = sorted(json.dumps(c["hyperparameters"], sort_keys=True) for c in status(cluster)["configurations"])
    assert len(points) == 6 and len(set(points)) == 6


def test_qmc_continues_its_sequence_across_rebuilds() -> None:
    """Rebuilt for every proposal, QMC proposes what one long-lived Optuna study would."""
    search = OptunaSearch.model_validate(
        optuna_search(sampler="QMC", parameters={"learning_rate": SPACE["learning_rate"]})
    )
    history: list[TrialRecord] = []
    for _ in range(5):
        trial = propose(search, Direction.Maximize, history)
        history.append(TrialRecord(trial, "complete", float(trial.number)))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        qmc = optuna.samplers.QMCSampler(seed=0, scramble=True)
    live = optuna.create_study(direction="maximize", sampler=qmc)
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    }
    expected = []
    for i in range(5):
        t = live.ask(dist)
        expected.append(t.params["learning_rate"])
        live.tell(t, float(i))
    assert [r.trial.params["learning_rate"] for r in history] == pytest.approx(expected)


def test_an_edited_trial_record_fails_the_experiment() -> None:
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    (run,) = runs(cluster).values()
    record = json.loads(run["metadata"]["annotations"][TRIAL_ANNOTATION])
    record["params"]["learning_rate"] = 5.0  # outside [1e-5, 1e-1]
    run["metadata"]["annotations"][TRIAL_ANNOTATION] = json.dumps(record)
    cluster.update(run)
    reconcile(cluster)
    st = status(cluster)
    assert (st["phase"], st["reason"]) == ("Failed", "InvalidTrialRecord")
    assert "learning_rate=5.0 is outside the search's range" in st["message"]
    assert list(runs(cluster)) == ["tpe-c0-s0"]  # nothing deleted


def test_deleting_an_earlier_configurations_runs_fails_instead_of_guessing() -> None:
    cluster = FakeCluster(make_experiment(parallelism=2))
    reconcile(cluster)
    cluster.remove(Kind.TRAINING_RUN, NAMESPACE, "tpe-c0-s0")
    finish(cluster, runs(cluster)["tpe-c1-s0"])
    reconcile(cluster)
    st = status(cluster)
    assert (st["phase"], st["reason"]) == ("Failed", "TrialLost")


def test_an_optuna_search_is_pruned_by_hyperband() -> None:
    """Brackets are per configuration id, so configurations not proposed yet have theirs too."""
    exp = make_experiment(parallelism=2, earlyStopping={"rule": "Hyperband", "minResource": 2000, "reductionFactor": 3})
    exp["spec"]["template"]["evaluation"] = {"everySteps": 1000, "episodes": 2}
    cluster = FakeCluster(exp)
    reconcile(cluster)
    assert sorted(runs(cluster)) == ["tpe-c0-s0", "tpe-c1-s0"]
    st = status(cluster)
    assert st["phase"] == "Pending" and len(st["runs"]) == 6
    assert all(isinstance(r.get("bracket"), int) for r in st["runs"])


# --- plan-time refusals -----------------------------------------------------------------------


def test_unknown_hyperparameter_is_refused_before_any_run() -> None:
    space = {"learning_rat": SPACE["learning_rate"]}
    with pytest.raises(PlanError) as e:
        plan(make_experiment(optuna_search(parameters=space)))
    assert e.value.reason == "UnknownHyperparameter"
    assert "spec.search.optuna.parameters: unknown hyperparameter 'learning_rat'" in e.value.message
    assert "did you mean learning_rate" in e.value.message


def test_code_in_a_choice_is_refused_before_any_run() -> None:
    space = {"policy_kwargs": {"type": "Categorical", "choices": ["dict(net_arch=[64])", "__import__('os')"]}}
    with pytest.raises(PlanError) as e:
        plan(make_experiment(optuna_search(parameters=space)))
    assert e.value.reason == "InvalidHyperparameters"
    assert "spec.search.optuna.parameters.policy_kwargs.choices[1]" in e.value.message


def test_a_grid_smaller_than_the_trials_is_refused() -> None:
    space = {"gamma": {"type": "Categorical", "choices": [0.9, 0.99]}}
    with pytest.raises(PlanError) as e:
        plan(make_experiment(optuna_search(sampler="Grid", trials=3, parameters=space)))
    assert (e.value.reason, "the Grid sampler's grid has 2 points" in e.value.message) == ("InvalidSearch", True)


def test_a_sampler_without_its_library_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(PlanError) as e:
        plan(make_experiment(optuna_search(sampler="GP")))
    assert e.value.reason == "SamplerUnavailable"
    assert "the GP sampler needs torch where the operator runs" in e.value.message
    plan(make_experiment(optuna_search(sampler="TPE")))  # TPE needs no torch


def test_too_many_runs() -> None:
    with pytest.raises(PlanError) as e:
        plan(make_experiment(optuna_search(trials=300), seeds=2))
    assert e.value.reason == "TooManyRuns"


def test_runs_are_configuration_major() -> None:
    p = plan(make_experiment(optuna_search(trials=2), seeds=2))
    assert [r.name for r in p.runs] == ["tpe-c0-s0", "tpe-c0-s1", "tpe-c1-s0", "tpe-c1-s1"]
    assert p.configurations == []  # nothing proposed yet


def test_proposed_trials_ignores_runs_without_a_record() -> None:
    exp = make_experiment()
    run = {"metadata": {"labels": {"kubegym.io/configuration": "c0"}, "annotations": {}}}
    assert proposed_trials(exp, {"tpe-c0-s0": run}) == {}


# --- scores ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "direction", "final", "curve", "stopped", "expected"),
    [
        (ObjectiveMetric.FinalReward, Direction.Maximize, 200.0, [10.0, 50.0], False, 200.0),
        (ObjectiveMetric.FinalReward, Direction.Maximize, None, [10.0, 50.0], True, 50.0),
        (ObjectiveMetric.FinalReward, Direction.Maximize, None, [10.0, 50.0], False, None),
        (ObjectiveMetric.BestEvaluation, Direction.Maximize, 20.0, [10.0, 50.0], False, 50.0),
        (ObjectiveMetric.BestEvaluation, Direction.Minimize, 20.0, [10.0, 50.0], False, 10.0),
        (ObjectiveMetric.MeanEvaluation, Direction.Maximize, 20.0, [10.0, 50.0], False, 30.0),
        (ObjectiveMetric.MeanEvaluation, Direction.Maximize, 20.0, [], False, 20.0),
        (ObjectiveMetric.FinalReward, Direction.Maximize, float("nan"), [], False, None),
    ],
)
def test_run_score(
    metric: ObjectiveMetric,
    direction: Direction,
    final: float | None,
    curve: list[float],
    stopped: bool,
    expected: float | None,
) -> None:
    assert run_score(metric, direction, final=final, curve=curve, stopped_early=stopped) == expected


@pytest.mark.parametrize(
    ("statistic", "scores", "expected"),
    [
        (Statistic.IQM, [1.0, 2.0, 3.0, 100.0], 2.5),
        (Statistic.IQM, [1.0, 2.0, 3.0], 2.0),
        (Statistic.Mean, [1.0, 2.0, 3.0, 100.0], 26.5),
        (Statistic.Median, [1.0, 2.0, 3.0, 100.0], 2.5),
    ],
)
def test_aggregate_matches_the_report(statistic: Statistic, scores: list[float], expected: float) -> None:
    from scipy import stats

    assert aggregate(statistic, scores) == pytest.approx(expected)
    if statistic == Statistic.IQM:
        assert aggregate(statistic, scores) == pytest.approx(stats.trim_mean(scores, 0.25))
