"""Bad Experiments are refused with a message that says what to fix: at apply time where the
schema can know (the real API server evaluates the CEL rules and bounds), else by the operator
before it creates a single run."""

from __future__ import annotations

from typing import Any

import pytest

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import experiment, runs_of, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

RANDOM_WITHOUT_TRIALS = {
    "random": {"parameters": {"learning_rate": {"distribution": "LogUniform", "low": 1e-5, "high": 1e-2}}}
}


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ({"search": {"grid": {}}}, ["spec.search.grid", "at least 1"]),
        ({"search": {"grid": {"learning_rate": []}}}, ["spec.search.grid.learning_rate", "at least 1"]),
        ({"seeds": {"count": 0}}, ["spec.seeds.count", "greater than or equal to 1"]),
        ({"seeds": {"count": -2}}, ["spec.seeds.count", "greater than or equal to 1"]),
        ({"seeds": {}}, ["seeds.count", "seeds.values"]),
        ({"parallelism": 0}, ["spec.parallelism", "greater than or equal to 1"]),
        ({"search": RANDOM_WITHOUT_TRIALS}, ["search.random.trials is required", "trial budget"]),
        (
            {
                "search": {
                    "random": {"trials": 2, "parameters": {"gamma": {"distribution": "Uniform", "low": 1, "high": 0.9}}}
                }
            },
            ["low must be below high"],
        ),
        (
            {"search": {"grid": {"gamma": [0.9]}, "random": RANDOM_WITHOUT_TRIALS["random"]}},
            ["spec.search", "at most 1"],
        ),
        ({"earlyStopping": {"minEvaluations": 2}}, ["earlyStopping compares evaluation curves"]),
        ({"objective": {"metric": "Benchmark"}}, ["objective.metric Benchmark needs spec.benchmark"]),
    ],
    ids=[
        "empty-grid",
        "grid-without-values",
        "zero-seeds",
        "negative-seeds",
        "no-seeds",
        "zero-parallelism",
        "random-without-trials",
        "inverted-bounds",
        "grid-and-random",
        "early-stopping-without-evaluation",
        "benchmark-objective-without-benchmark",
    ],
)
def test_rejected_at_apply_time(kubectl: Kubectl, spec: dict[str, Any], needles: list[str]) -> None:
    result = kubectl.apply(experiment("bad", **spec), check=False)
    assert result.returncode != 0, result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "bad" not in kubectl.run("get", "experiments", "-o", "name").stdout


def test_only_parallelism_and_suspend_change_after_creation(kubectl: Kubectl) -> None:
    exp = experiment("frozen", suspend=True)
    kubectl.apply(exp)
    changed = experiment("frozen", suspend=True, search={"grid": {"learning_rate": [0.01]}})
    result = kubectl.apply(changed, check=False)
    assert result.returncode != 0 and "spec.search is immutable" in result.stderr, result.stderr
    seeds = kubectl.apply(experiment("frozen", suspend=True, seeds={"count": 5}), check=False)
    assert seeds.returncode != 0 and "spec.seeds is immutable" in seeds.stderr
    kubectl.apply(experiment("frozen", suspend=False, parallelism=3))


@pytest.mark.usefixtures("operator")
def test_unknown_hyperparameter_fails_before_any_run(
    kubectl: Kubectl, kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    kubectl.apply(experiment("typo", search={"grid": {"learning_rat": [0.001, 0.003]}}))
    st = wait_until(
        lambda: (s := status(kube, namespace, "typo")).get("phase") == "Failed" and s,
        60,
        "the Experiment to fail",
        describe=lambda: f"{status(kube, namespace, 'typo')}\n{operator.tail(20)}",
    )
    assert st["reason"] == "UnknownHyperparameter"
    assert "spec.search.grid: unknown hyperparameter 'learning_rat' for PPO" in st["message"]
    assert "did you mean learning_rate" in st["message"]
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "UnknownHyperparameter"
    assert runs_of(kube, namespace, "typo") == []
    events = kubectl.run("get", "events", "--field-selector", "involvedObject.name=typo").stdout
    assert "UnknownHyperparameter" in events
    row = kubectl.run("get", "experiments", "typo").stdout.splitlines()[1]
    assert "Failed" in row
