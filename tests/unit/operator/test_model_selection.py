"""Choosing a TrainingRun's model (issue 15 item 1): ``final``, ``best`` or ``latest`` for a Benchmark
model's ``trainingRunRef``, ``resumeFrom.trainingRun`` and an Experiment's final Benchmark. One table per
resolution: what each choice resolves to, that a URI outside the run's own folder is never taken, and
what happens when the chosen model does not exist (a Benchmark fails naming the model, the run and the
choice; a resume fails before any Job with ResumeSourceNotFound)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubegym_api.base import Algorithm
from kubegym_api.runnerconfig import BenchmarkModel
from kubegym_api.trainingrun import ModelSelection
from kubegym_operator.builders.benchmark import parse_spec as parse_benchmark
from kubegym_operator.builders.benchmark import resolve_models
from kubegym_operator.builders.experiment_report import render_benchmark
from kubegym_operator.builders.experiment_status import ChildView, stopped_run_model, view
from kubegym_operator.builders.job import RenderError, build_train_config, model_uri_of
from kubegym_operator.settings import Settings, load_settings
from tests.unit.operator.test_runner_job import make_run as make_training_run

FOLDER = "s3://kubegym/runs/research/old/uid-old"
ARTIFACTS = {"bucket": "kubegym", "prefix": "runs/research/old/uid-old", "uri": f"{FOLDER}/"}
LATEST = f"{FOLDER}/checkpoints/000000050000"
BEST = f"{FOLDER}/best"
FINAL = f"{FOLDER}/final"
FULL_STATUS: dict[str, Any] = {
    "phase": "Succeeded",
    "artifacts": ARTIFACTS,
    "checkpoints": {"latestUri": LATEST, "latestStep": 50000, "count": 1},
    "best": {"uri": BEST, "step": 30000, "meanReward": 500.0, "stdReward": 0.0, "episodes": 10},
    "result": {"timesteps": 50000, "meanReward": 20.5, "modelUri": FINAL},
}
#: A run without periodic evaluation: no best.
NO_BEST = {k: v for k, v in FULL_STATUS.items() if k != "best"}


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        {
            "KUBEGYM_STORAGE_BUCKET": "kubegym",
            "KUBEGYM_STORAGE_PREFIX": "runs",
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": "kubegym-s3",
        }
    )


def source_run(status: dict[str, Any]) -> dict[str, Any]:
    run = make_training_run()
    run["metadata"].update(name="old", uid="uid-old")
    run["status"] = copy.deepcopy(status)
    return run


def _elsewhere(section: str, key: str) -> dict[str, Any]:
    status = copy.deepcopy(FULL_STATUS)
    status[section][key] = "s3://kubegym/runs/other-team/secret/best"
    return status


# --- the other run's reported models ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "selection", "uri"),
    [
        (FULL_STATUS, ModelSelection.latest, LATEST),
        (FULL_STATUS, ModelSelection.best, BEST),
        (FULL_STATUS, ModelSelection.final, FINAL),
        (NO_BEST, ModelSelection.best, None),  # no periodic evaluation: no best
        ({"artifacts": ARTIFACTS, "phase": "Running"}, ModelSelection.final, None),  # not finished: no final
        ({"artifacts": ARTIFACTS}, ModelSelection.latest, None),  # no checkpoint yet
        (_elsewhere("best", "uri"), ModelSelection.best, None),  # outside its own folder: not believed
        (_elsewhere("result", "modelUri"), ModelSelection.final, None),
    ],
    ids=["latest", "best", "final", "no-best", "no-final", "no-checkpoint", "best-elsewhere", "final-elsewhere"],
)
def test_a_runs_chosen_model_is_the_one_its_status_reports_in_its_own_folder(
    settings: Settings, status: dict[str, Any], selection: ModelSelection, uri: str | None
) -> None:
    assert model_uri_of(source_run(status), selection, settings) == uri


# --- resumeFrom.trainingRun ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resume_from", "status", "resumed", "missing"),
    [
        ({"trainingRun": "old"}, FULL_STATUS, LATEST, None),  # default: latest, as before
        ({"trainingRun": "old", "checkpoint": "latest"}, FULL_STATUS, LATEST, None),
        ({"trainingRun": "old", "checkpoint": "best"}, FULL_STATUS, BEST, None),
        ({"trainingRun": "old", "checkpoint": "final"}, FULL_STATUS, FINAL, None),
        ({"trainingRun": "old", "checkpoint": "best"}, NO_BEST, None, "has no best model"),
        ({"trainingRun": "old", "checkpoint": "final"}, {"artifacts": ARTIFACTS}, None, "has no final model"),
        ({"trainingRun": "old"}, {"artifacts": ARTIFACTS}, None, "has no checkpoint"),
    ],
    ids=["default", "latest", "best", "final", "no-best", "no-final", "no-checkpoint"],
)
def test_resume_from_a_run_starts_from_the_chosen_model_or_fails_before_any_job(
    settings: Settings, resume_from: dict[str, Any], status: dict[str, Any], resumed: str | None, missing: str | None
) -> None:
    run = make_training_run(resumeFrom=resume_from)
    selection = ModelSelection(resume_from.get("checkpoint", "latest"))
    resume_uri = model_uri_of(source_run(status), selection, settings)
    if missing is None:
        assert build_train_config(run, settings, resume_uri=resume_uri).resume_from == resumed
        return
    with pytest.raises(RenderError) as err:
        build_train_config(run, settings, resume_uri=resume_uri)
    assert err.value.reason == "ResumeSourceNotFound"
    assert "TrainingRun 'old'" in err.value.message and missing in err.value.message
    assert f"resumeFrom.checkpoint: {selection}" in err.value.message


# --- a Benchmark's trainingRunRef ---------------------------------------------------------------


def bench(checkpoint: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "m", "trainingRunRef": {"name": "old"}}
    if checkpoint is not None:
        model["checkpoint"] = checkpoint
    return {
        "metadata": {"name": "b", "namespace": "research", "uid": "b-1"},
        "spec": {"models": [model], "environments": [{"id": "CartPole-v1"}]},
    }


@pytest.mark.parametrize(
    ("checkpoint", "status", "uri", "failure"),
    [
        (None, FULL_STATUS, FINAL, None),  # default: final, as before
        ("final", FULL_STATUS, FINAL, None),
        ("best", FULL_STATUS, BEST, None),
        ("latest", FULL_STATUS, LATEST, None),
        ("best", NO_BEST, None, "model m: TrainingRun old succeeded with no best model"),
        ("best", _elsewhere("best", "uri"), None, "model m: TrainingRun old succeeded with no best model"),
    ],
    ids=["default", "final", "best", "latest", "no-best", "best-elsewhere"],
)
def test_a_benchmark_model_evaluates_the_chosen_model_of_its_run(
    settings: Settings, checkpoint: str | None, status: dict[str, Any], uri: str | None, failure: str | None
) -> None:
    resolution = resolve_models(parse_benchmark(bench(checkpoint)), {"old": source_run(status)}, settings)
    if failure is None:
        assert resolution.failure is None and resolution.waiting == {}
        assert uri is not None
        assert resolution.models == [BenchmarkModel(name="m", uri=uri, algorithm=Algorithm.PPO)]
        return
    assert resolution.models is None and resolution.failure is not None
    reason, message = resolution.failure
    assert reason == "ModelNotAvailable" and message.startswith(failure) and "(checkpoint: best)" in message


@pytest.mark.parametrize("checkpoint", ["best", "latest", None])
def test_a_benchmark_waits_for_its_run_to_succeed_whatever_the_choice(
    settings: Settings, checkpoint: str | None
) -> None:
    running = {**FULL_STATUS, "phase": "Running"}
    resolution = resolve_models(parse_benchmark(bench(checkpoint)), {"old": source_run(running)}, settings)
    assert resolution.models is None and resolution.failure is None and resolution.waiting == {"old": "Running"}


# --- an Experiment's final Benchmark --------------------------------------------------------------


def _experiment(checkpoint: str | None) -> dict[str, Any]:
    benchmark: dict[str, Any] = {"episodes": 5}
    if checkpoint is not None:
        benchmark["checkpoint"] = checkpoint
    return {
        "metadata": {"name": "e", "namespace": "research", "uid": "e-1"},
        "spec": {
            "template": {
                "algorithm": "PPO",
                "environment": {"id": "CartPole-v1"},
                "totalTimesteps": 1000,
                "evaluation": {"everySteps": 100},
            },
            "seeds": {"count": 1},
            "benchmark": benchmark,
        },
    }


@pytest.mark.parametrize(
    ("checkpoint", "model"),
    [
        (None, {"name": "r", "trainingRunRef": {"name": "r"}}),
        ("best", {"name": "r", "trainingRunRef": {"name": "r"}, "checkpoint": "best"}),
        ("final", {"name": "r", "trainingRunRef": {"name": "r"}, "checkpoint": "final"}),
    ],
)
def test_the_final_benchmark_evaluates_the_model_the_experiment_chose(
    checkpoint: str | None, model: dict[str, Any]
) -> None:
    from kubegym_operator.builders.experiment import parse_spec as parse_experiment

    exp = _experiment(checkpoint)
    manifest = render_benchmark(exp, parse_experiment(exp), "e-final-0", [("r", None)])
    assert manifest["spec"]["models"] == [model]


@pytest.mark.parametrize(
    ("selection", "best", "uri"),
    [
        (ModelSelection.best, BEST, BEST),
        (ModelSelection.best, None, LATEST),  # stopped before its first evaluation: its newest checkpoint
        (None, BEST, LATEST),
        (ModelSelection.final, BEST, LATEST),
    ],
)
def test_a_run_stopped_early_is_benchmarked_at_its_best_when_asked(
    selection: ModelSelection | None, best: str | None, uri: str
) -> None:
    status = {**FULL_STATUS, "phase": "Suspended"}
    if best is None:
        status = {k: v for k, v in status.items() if k != "best"}
    child = view(source_run(status))
    assert isinstance(child, ChildView) and child.latest_checkpoint == LATEST
    assert stopped_run_model(child, selection) == uri
