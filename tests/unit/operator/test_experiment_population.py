"""Population-Based Training: the schedule (who copies whom, with what), its segments as runs that
resume from one another, the lineage in status, and the inputs refused before any run."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from kubegym_api.experiment import Direction, PopulationParameter, PopulationSearch
from kubegym_operator.builders.experiment import SEGMENT_ANNOTATION, PlanError, plan
from kubegym_operator.builders.population import draw, explore, generations, schedule
from kubegym_operator.controllers import experiment
from kubegym_operator.reconciler import ReconcileGate
from kubegym_operator.watched import Kind
from tests.unit.operator.builders import NAMESPACE, SETTINGS, STORAGE, now
from tests.unit.operator.fakeapi import FakeCluster

Obj = dict[str, Any]

PARAMETERS: dict[str, Any] = {
    "learning_rate": {"type": "Float", "low": 1e-4, "high": 1e-2, "log": True},
    "n_epochs": {"type": "Int", "low": 2, "high": 10},
    "gae_lambda": {"type": "Categorical", "choices": [0.9, 0.95, 0.98]},
}


def pbt(**fields: Any) -> Obj:
    return {"population": 4, "interval": 2048, "seed": 1, "parameters": PARAMETERS, **fields}


def search(**fields: Any) -> PopulationSearch:
    return PopulationSearch.model_validate(pbt(**fields))


def make_experiment(total: int = 6144, parallelism: int = 4, **fields: Any) -> Obj:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "pbt", "namespace": NAMESPACE, "uid": "uid-exp", "generation": 1},
        "spec": {
            "template": {
                "algorithm": "PPO",
                "environment": {"id": "CartPole-v1"},
                "totalTimesteps": total,
                "checkpoint": {"storage": dict(STORAGE)},
            },
            "seeds": {"values": [10]},
            "parallelism": parallelism,
            "search": {"pbt": pbt(**fields)},
        },
    }


# --- the schedule ------------------------------------------------------------------------------


def test_the_first_generation_is_drawn_from_the_ranges_and_is_the_same_every_time() -> None:
    s = search()
    first = schedule(s, 6144, Direction.Maximize, {})
    assert [seg.id for seg in first.segments] == ["m0g0", "m1g0", "m2g0", "m3g0"]
    assert first == schedule(s, 6144, Direction.Maximize, {})  # recomputed identically
    for seg in first.segments:
        hp = seg.hyperparameters
        assert (
            1e-4 <= hp["learning_rate"] <= 1e-2 and 2 <= hp["n_epochs"] <= 10 and hp["gae_lambda"] in (0.9, 0.95, 0.98)
        )
        assert (seg.start, seg.target, seg.source, seg.copied_from) == (0, 2048, None, None)
    assert len({json.dumps(seg.hyperparameters, sort_keys=True) for seg in first.segments}) == 4


@pytest.mark.parametrize(
    ("direction", "scores", "bottom", "top"),
    [
        (Direction.Maximize, {"m0g0": 10.0, "m1g0": 200.0, "m2g0": 50.0, "m3g0": 400.0}, 0, 3),
        (Direction.Minimize, {"m0g0": 10.0, "m1g0": 200.0, "m2g0": 50.0, "m3g0": 400.0}, 3, 0),
    ],
)
def test_the_bottom_quantile_copies_the_top_with_explored_hyperparameters(
    direction: Direction, scores: dict[str, float], bottom: int, top: int
) -> None:
    s = search()
    decided = schedule(s, 6144, direction, scores)
    gen0 = {seg.member: seg for seg in decided.segments if seg.generation == 0}
    gen1 = {seg.member: seg for seg in decided.segments if seg.generation == 1}
    assert sorted(gen1) == [0, 1, 2, 3] and not [seg for seg in decided.segments if seg.generation == 2]
    copier = gen1[bottom]
    assert (copier.copied_from, copier.source) == (top, (top, 0))  # one top member of 4 at quantile 0.25
    assert copier.hyperparameters != gen0[top].hyperparameters  # explored
    assert (copier.start, copier.target) == (2048, 4096)
    for member in set(gen1) - {bottom}:
        kept = gen1[member]
        assert (kept.source, kept.copied_from, kept.hyperparameters) == (
            (member, 0),
            None,
            gen0[member].hyperparameters,
        )


def test_a_failed_segment_always_copies_and_a_generation_without_scores_ends_the_population() -> None:
    s = search(quantile=0.0)  # no exploitation among the scored ones
    decided = schedule(s, 6144, Direction.Maximize, {"m0g0": None, "m1g0": 100.0, "m2g0": 20.0, "m3g0": 30.0})
    gen1 = {seg.member: seg for seg in decided.segments if seg.generation == 1}
    assert gen1[0].copied_from == 1 and gen1[2].copied_from is None and gen1[3].copied_from is None
    ended = schedule(s, 6144, Direction.Maximize, dict.fromkeys(["m0g0", "m1g0", "m2g0", "m3g0"]))
    assert ended.ended is not None and "no member of generation 0 has a score" in ended.ended


def test_the_last_segment_ends_at_the_budget() -> None:
    s = search(interval=4000)
    assert generations(s, 10000) == 3
    scores = {f"m{i}g0": float(i) for i in range(4)} | {f"m{i}g1": float(i) for i in range(4)}
    last = [seg for seg in schedule(s, 10000, Direction.Maximize, scores).segments if seg.generation == 2]
    assert {(seg.start, seg.target) for seg in last} == {(8000, 10000)}


def test_explore_perturbs_within_the_range_and_resamples_with_its_probability() -> None:
    s = search(resample_probability=0.0, perturb_factors=[2.0])
    rng = random.Random(0)
    hp = {"learning_rate": 8e-3, "n_epochs": 7, "gae_lambda": 0.95}
    out = explore(s, hp, rng)
    assert out["learning_rate"] == 1e-2  # 1.6e-2 clipped to high
    assert out["n_epochs"] == 10  # 14 clipped
    assert out["gae_lambda"] in (0.9, 0.98)  # a neighbouring choice
    resampling = search(resample_probability=1.0)
    drawn = [explore(resampling, hp, random.Random(i))["n_epochs"] for i in range(40)]
    assert len(set(drawn)) > 3 and all(2 <= n <= 10 for n in drawn)


def test_a_resample_only_parameter_is_kept_unless_resampled() -> None:
    params = {
        "policy_kwargs": {
            "type": "Categorical",
            "choices": ["dict(net_arch=[8])", "dict(net_arch=[64])"],
            "explore": "Resample",
        }
    }
    s = search(parameters=params, resample_probability=0.0)
    assert explore(s, {"policy_kwargs": "dict(net_arch=[8])"}, random.Random(0)) == {
        "policy_kwargs": "dict(net_arch=[8])"
    }


def test_draw_respects_step_and_log() -> None:
    stepped = PopulationParameter.model_validate({"type": "Float", "low": 0.1, "high": 0.3, "step": 0.05})
    values = {draw(stepped, random.Random(i)) for i in range(50)}
    assert values <= {0.1, 0.15, 0.2, 0.25, 0.3} and len(values) > 2
    log_int = PopulationParameter.model_validate({"type": "Int", "low": 16, "high": 4096, "log": True})
    assert all(16 <= draw(log_int, random.Random(i)) <= 4096 for i in range(50))


# --- the plan ----------------------------------------------------------------------------------


def test_segments_are_planned_generation_major_each_member_with_its_seed() -> None:
    p = plan(make_experiment())
    assert [r.name for r in p.runs][:5] == [
        "pbt-m0g0-s10",
        "pbt-m1g0-s11",
        "pbt-m2g0-s12",
        "pbt-m3g0-s13",
        "pbt-m0g1-s10",
    ]
    assert len(p.runs) == 12 and len(p.configurations) == 4  # only generation 0 decided


def test_perturbing_a_non_numeric_choice_is_refused() -> None:
    params = {"policy_kwargs": {"type": "Categorical", "choices": ["dict(net_arch=[8])", "dict(net_arch=[64])"]}}
    with pytest.raises(PlanError) as e:
        plan(make_experiment(parameters=params))
    assert e.value.reason == "InvalidSearch"
    assert "policy_kwargs: Perturb moves a Categorical to a neighbouring number" in e.value.message
    assert "set explore: Resample" in e.value.message


def test_too_many_segments_are_refused() -> None:
    with pytest.raises(PlanError) as e:
        plan(make_experiment(total=1_000_000, population=8, interval=10_000))
    assert e.value.reason == "TooManyRuns" and "8 members x 100 segments" in e.value.message


def test_an_unknown_hyperparameter_is_refused() -> None:
    with pytest.raises(PlanError) as e:
        plan(make_experiment(parameters={"n_epoch": {"type": "Int", "low": 1, "high": 4}}))
    assert e.value.reason == "UnknownHyperparameter" and "spec.search.pbt.parameters" in e.value.message


# --- against the fake API ------------------------------------------------------------------------


def reconcile(cluster: FakeCluster) -> None:
    experiment.reconcile(cluster, NAMESPACE, "pbt", SETTINGS, now=now, gate=ReconcileGate())


def runs(cluster: FakeCluster) -> dict[str, Obj]:
    return {r["metadata"]["name"]: r for r in cluster.of_kind(Kind.TRAINING_RUN)}


def finish(cluster: FakeCluster, run: Obj) -> None:
    lr = run["spec"]["hyperparameters"]["learning_rate"]
    total = run["spec"]["totalTimesteps"]
    run["status"] = {
        "phase": "Succeeded",
        "reason": "Completed",
        "result": {"meanReward": round(1000 * lr, 3)},
        "progress": {"timesteps": total, "totalTimesteps": total},
    }
    cluster.update(run)


def status(cluster: FakeCluster) -> Obj:
    exp = cluster.obj(Kind.EXPERIMENT, NAMESPACE, "pbt")
    assert exp is not None
    return dict(exp.get("status") or {})


def test_a_population_trains_in_generations_each_resuming_from_its_parent() -> None:
    cluster = FakeCluster(make_experiment())
    reconcile(cluster)
    assert sorted(runs(cluster)) == ["pbt-m0g0-s10", "pbt-m1g0-s11", "pbt-m2g0-s12", "pbt-m3g0-s13"]
    st = status(cluster)
    assert [r["phase"] for r in st["runs"]][4:] == ["Waiting"] * 8
    assert st["budget"]["totalTimesteps"] == 4 * 6144
    for generation in (1, 2):
        for run in list(runs(cluster).values()):
            if not run.get("status"):
                finish(cluster, run)
        reconcile(cluster)
        fresh = {n: r for n, r in runs(cluster).items() if f"g{generation}-" in n}
        assert len(fresh) == 4
        for run in fresh.values():
            assert run["spec"]["totalTimesteps"] == 2048 * (generation + 1)
            lineage = json.loads(run["metadata"]["annotations"][SEGMENT_ANNOTATION])
            source = run["spec"]["resumeFrom"]
            assert source["checkpoint"] == "final"
            parent = lineage.get("copiedFrom", lineage["member"])
            assert source["trainingRun"] == f"pbt-m{parent}g{generation - 1}-s{10 + parent}"
        assert sum("copiedFrom" in r["metadata"]["annotations"][SEGMENT_ANNOTATION] for r in fresh.values()) == 1
    for run in list(runs(cluster).values()):
        if not run.get("status"):
            finish(cluster, run)
    reconcile(cluster)
    st = status(cluster)
    assert st["reason"] == "Reporting" and len(runs(cluster)) == 12
    assert st["budget"]["trainedTimesteps"] == 4 * 6144  # each segment counts its own part only
    population = {m["member"]: m for m in st["population"]}
    assert sorted(population) == ["m0", "m1", "m2", "m3"] and population["m2"]["seed"] == 12
    for member in population.values():
        steps = member["lineage"]
        assert [s["generation"] for s in steps] == [0, 1, 2] and [s["step"] for s in steps] == [0, 2048, 4096]
        assert all("score" in s for s in steps)
    copies = [s for m in population.values() for s in m["lineage"] if "copiedFrom" in s]
    assert len(copies) == 2 and all(c["source"].startswith(f"pbt-{c['copiedFrom']}g") for c in copies)


def test_a_restarted_operator_decides_the_same_generation() -> None:
    """The next generation is a function of the finished one: deciding it twice (a lost create,
    a restart between two creates) gives the same runs."""
    cluster = FakeCluster(make_experiment(parallelism=4))
    reconcile(cluster)
    for run in runs(cluster).values():
        finish(cluster, run)
    reconcile(cluster)
    first = {n: (r["spec"], r["metadata"]["annotations"]) for n, r in runs(cluster).items() if "g1-" in n}
    for name in first:
        cluster.remove(Kind.TRAINING_RUN, NAMESPACE, name)
    reconcile(cluster)
    again = {n: (r["spec"], r["metadata"]["annotations"]) for n, r in runs(cluster).items() if "g1-" in n}
    assert again == first
