"""An Experiment's plan: configurations, run order and names, validation before any run exists,
and the TrainingRuns it renders."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from kubegym_api.experiment import RandomSearch
from kubegym_operator.builders.experiment import (
    EXPERIMENT_NAME_ANNOTATION,
    PlanError,
    grid_configurations,
    owned_by,
    plan,
    random_configurations,
    render_run,
    run_name,
)


def experiment(name: str = "sweep", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 10000,
            "hyperparameters": {"n_steps": 256, "learning_rate": 0.1},
            "checkpoint": {"everySteps": 2048, "keepLast": 3},
            "seed": 99,
            "suspend": True,
        },
        "seeds": {"count": 3},
        "search": {"grid": {"learning_rate": [0.0003, 0.001]}},
        "parallelism": 2,
    }
    base.update(spec)
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "lab", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


def test_grid_is_the_cartesian_product_in_name_order() -> None:
    configs = grid_configurations({"n_steps": [128, 256], "gamma": [0.9, 0.99, 0.999]})
    assert len(configs) == 6
    assert configs[0] == {"gamma": 0.9, "n_steps": 128}
    assert configs[1] == {"gamma": 0.9, "n_steps": 256}
    assert configs[-1] == {"gamma": 0.999, "n_steps": 256}


def test_runs_are_seed_major_with_deterministic_names() -> None:
    p = plan(experiment())
    assert [r.name for r in p.runs] == [
        "sweep-c0-s0",
        "sweep-c1-s0",
        "sweep-c0-s1",
        "sweep-c1-s1",
        "sweep-c0-s2",
        "sweep-c1-s2",
    ]
    assert [c.hyperparameters for c in p.configurations] == [{"learning_rate": 0.0003}, {"learning_rate": 0.001}]
    assert p.configurations[1].summary == "learning_rate=0.001"
    assert plan(experiment()).runs == p.runs  # recomputed identically


def test_explicit_seed_list() -> None:
    p = plan(experiment(seeds={"values": [11, 7]}))
    assert [(r.configuration.id, r.seed) for r in p.runs] == [("c0", 11), ("c1", 11), ("c0", 7), ("c1", 7)]


def test_no_search_is_one_configuration() -> None:
    p = plan(experiment(search=None))
    assert [c.id for c in p.configurations] == ["c0"]
    assert p.configurations[0].summary == "template"
    assert len(p.runs) == 3


def test_long_names_stay_unique_dns_labels_with_their_suffix() -> None:
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    name_a = run_name(long_a, "c12", 4294967295)
    name_b = run_name(long_b, "c12", 4294967295)
    for name in (name_a, name_b):
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
        assert name.endswith("-c12-s4294967295")
    assert name_a != name_b
    assert run_name("short", "c0", 1) == "short-c0-s1"


def test_random_search_is_reproducible_within_bounds_and_distinct() -> None:
    search = RandomSearch.model_validate(
        {
            "trials": 20,
            "seed": 5,
            "parameters": {
                "learning_rate": {"distribution": "LogUniform", "low": 1e-5, "high": 1e-2},
                "gamma": {"distribution": "Uniform", "low": 0.9, "high": 0.999},
                "n_steps": {"distribution": "IntUniform", "low": 64, "high": 66},
                "batch_size": {"distribution": "Choice", "values": [32, 64]},
            },
        }
    )
    a, b = random_configurations(search), random_configurations(search)
    assert a == b and len(a) == 20
    assert len({tuple(sorted(c.items())) for c in a}) == 20
    for c in a:
        assert 1e-5 <= c["learning_rate"] <= 1e-2
        assert 0.9 <= c["gamma"] <= 0.999
        assert c["n_steps"] in (64, 65, 66)
        assert c["batch_size"] in (32, 64)
        assert c["learning_rate"] == float(f"{c['learning_rate']:.6g}")  # 6 significant digits
    # LogUniform spreads over the decades, not only the top one.
    assert min(c["learning_rate"] for c in a) < 1e-3
    other = random_configurations(search.model_copy(update={"seed": 6}))
    assert other != a


def test_random_search_over_a_small_space_stops_at_its_size() -> None:
    search = RandomSearch.model_validate(
        {"trials": 10, "parameters": {"batch_size": {"distribution": "Choice", "values": [32, 64]}}}
    )
    assert sorted(c["batch_size"] for c in random_configurations(search)) == [32, 64]


def test_random_search_without_an_integer_in_range() -> None:
    search = RandomSearch.model_validate(
        {"trials": 2, "parameters": {"n_steps": {"distribution": "IntUniform", "low": 1.2, "high": 1.8}}}
    )
    with pytest.raises(PlanError) as err:
        random_configurations(search)
    assert err.value.reason == "InvalidSearch"


def test_unknown_hyperparameter_in_the_grid_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(PlanError) as err:
        plan(experiment(search={"grid": {"learning_rat": [0.001]}}))
    assert err.value.reason == "UnknownHyperparameter"
    assert "spec.search.grid" in err.value.message
    assert "'learning_rat'" in err.value.message and "did you mean learning_rate" in err.value.message


def test_unknown_names_in_random_search_and_template_are_rejected() -> None:
    random = {"random": {"trials": 2, "parameters": {"tau": {"distribution": "Uniform", "low": 0, "high": 1}}}}
    with pytest.raises(PlanError, match=r"spec.search.random.parameters: unknown hyperparameter 'tau' for PPO"):
        plan(experiment(search=random))
    exp = experiment()
    exp["spec"]["template"]["hyperparameters"]["buffer_size"] = 10
    with pytest.raises(PlanError, match=r"spec.template.hyperparameters: unknown hyperparameter 'buffer_size'"):
        plan(exp)


def test_reserved_names_point_where_they_belong() -> None:
    with pytest.raises(PlanError, match=r"'seed' is not a hyperparameter here; set it in spec.seeds"):
        plan(experiment(search={"grid": {"seed": [1, 2]}}))


def test_off_policy_algorithms_take_rl_zoo_noise_keys() -> None:
    exp = experiment(search={"grid": {"noise_std": [0.1, 0.2], "tau": [0.005]}})
    exp["spec"]["template"].update({"algorithm": "SAC", "hyperparameters": {}})
    assert len(plan(exp).configurations) == 2


def test_too_many_runs() -> None:
    with pytest.raises(PlanError) as err:
        plan(experiment(seeds={"count": 100}, search={"grid": {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]}}))
    assert err.value.reason == "TooManyRuns" and "600 runs" in err.value.message


@pytest.mark.parametrize(
    ("where", "fields"),
    [
        ("template", {"template": {"hyperparameters": {"policy_kwargs": "exec('x')"}}}),
        ("spec.search", {"search": {"grid": {"policy_kwargs": ["dict(net_arch=[64])", "open('/etc/passwd')"]}}}),
    ],
    ids=["template", "grid-value"],
)
def test_code_in_a_hyperparameter_string_fails_the_plan(where: str, fields: dict[str, Any]) -> None:
    exp = experiment()
    for key, value in fields.items():
        if key == "template":
            exp["spec"]["template"].update(value)
        else:
            exp["spec"][key] = value
    with pytest.raises(PlanError) as err:
        plan(exp)
    assert err.value.reason == "InvalidHyperparameters"
    assert where in err.value.message and "never evaluated" in err.value.message


def test_a_spec_the_model_rejects_is_an_invalid_spec() -> None:
    with pytest.raises(PlanError) as err:
        plan(experiment(parallelism=0))
    assert err.value.reason == "InvalidSpec" and "spec.parallelism" in err.value.message


def test_rendered_run_is_the_template_with_seed_and_configuration() -> None:
    exp = experiment()
    p = plan(exp)
    run = p.runs[3]  # c1, seed 1
    manifest = render_run(exp, run, suspend=False)
    assert manifest["kind"] == "TrainingRun" and manifest["metadata"]["name"] == "sweep-c1-s1"
    spec = manifest["spec"]
    assert spec["seed"] == 1 and spec["suspend"] is False
    assert spec["hyperparameters"] == {"n_steps": 256, "learning_rate": 0.001}  # the search wins over the template
    assert spec["checkpoint"] == {"everySteps": 2048, "keepLast": 3}
    labels = manifest["metadata"]["labels"]
    assert labels["kubegym.io/experiment"] == "sweep"
    assert labels["kubegym.io/configuration"] == "c1" and labels["kubegym.io/seed"] == "1"
    assert manifest["metadata"]["annotations"][EXPERIMENT_NAME_ANNOTATION] == "sweep"
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "name": "sweep",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert owned_by(manifest, exp)
    assert not owned_by(manifest, {"metadata": {"uid": "another"}})
    # Rendering never mutates the Experiment.
    assert exp == experiment()


def test_rendered_values_are_copies() -> None:
    exp = experiment(search={"grid": {"policy_kwargs": [{"net_arch": [64, 64]}]}})
    manifest = render_run(exp, plan(exp).runs[0], suspend=True)
    manifest["spec"]["hyperparameters"]["policy_kwargs"]["net_arch"].append(1)
    assert plan(exp).configurations[0].hyperparameters == {"policy_kwargs": {"net_arch": [64, 64]}}
    assert manifest["spec"]["suspend"] is True


def test_a_huge_grid_is_refused_without_expanding_it() -> None:
    # 10 values in each of 6 dimensions: 10^6 configurations. Expanded, they took 2 s and 450 MB,
    # on every reconcile; the schema allows 32 dimensions of 64 values, which no memory holds.
    names = ["learning_rate", "gamma", "gae_lambda", "ent_coef", "vf_coef", "n_epochs"]
    grid = {name: [i + 1 for i in range(10)] for name in names}
    started = time.monotonic()
    with pytest.raises(PlanError) as err:
        plan(experiment(seeds={"count": 3}, search={"grid": grid}))
    assert time.monotonic() - started < 0.5
    assert err.value.reason == "TooManyRuns"
    assert "1000000 configurations x 3 seeds = 3000000 runs" in err.value.message
