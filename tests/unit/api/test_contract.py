"""The contract package: one definition per field, for the CRD and for the runner's configuration.

A TrainingRun's spec and the runner's ``TrainConfig`` both derive from ``AgentSpec``; a
Benchmark's spec and ``EvaluateConfig`` from ``BenchmarkSettings`` (and share one environments
type). These tests fail when a shared field is declared again on one side, where its bounds
could drift from the other's, and check that what the operator renders carries every shared
field exactly as the spec has it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kubegym_api.base import Algorithm, fields_of
from kubegym_api.benchmark import BenchmarkSettings, BenchmarkSpec
from kubegym_api.runnerconfig import BenchmarkModel, EvaluateConfig, TrainConfig
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import AgentSpec, TrainingRunSpec
from kubegym_localcluster import layout
from kubegym_operator.builders.benchmark import build_evaluate_config
from kubegym_operator.builders.job import build_train_config
from kubegym_operator.settings import load_settings

DERIVED: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (TrainingRunSpec, AgentSpec),
    (TrainConfig, AgentSpec),
    (BenchmarkSpec, BenchmarkSettings),
    (EvaluateConfig, BenchmarkSettings),
]


def _own_annotations(model: type[BaseModel]) -> dict[str, Any]:
    """The fields a class declares in its own body (not those it inherits)."""
    return dict(vars(model).get("__annotations__", {}))


@pytest.mark.parametrize(("model", "base"), DERIVED, ids=lambda m: m.__name__)
def test_shared_fields_are_declared_once(model: type[BaseModel], base: type[BaseModel]) -> None:
    assert issubclass(model, base)
    again = set(_own_annotations(model)) & set(base.model_fields)
    assert not again, f"{model.__name__} declares {sorted(again)} again; they come from {base.__name__}"


def test_benchmark_environments_are_one_type_on_both_sides() -> None:
    spec, config = _own_annotations(BenchmarkSpec)["environments"], _own_annotations(EvaluateConfig)["environments"]
    assert spec == config == "BenchmarkEnvironments"


def test_the_runner_config_has_the_specs_bounds() -> None:
    """The drift that made this package: TrainConfig once took any seed, the CRD only 0 .. 2^32-1."""
    base = {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "storage": {"bucket": "abc"}, "runPrefix": "p"}
    for bad in ({"seed": 2**32}, {"seed": -1}, {"policy": ""}, {"totalTimesteps": 0}):
        with pytest.raises(ValidationError):
            TrainingRunSpec.model_validate({**base, **bad})
        with pytest.raises(ValidationError):
            TrainConfig.model_validate({**base, **bad})
    assert TrainConfig.model_validate({**base, "seed": 2**32 - 1}).seed == 2**32 - 1


def test_fields_of_refuses_a_model_of_another_kind() -> None:
    with pytest.raises(TypeError, match="S3Storage does not derive from AgentSpec"):
        fields_of(S3Storage(bucket="abc"), AgentSpec)


SETTINGS = load_settings(
    {
        "KUBEGYM_STORAGE_BUCKET": "kubegym",
        "KUBEGYM_STORAGE_ENDPOINT": "http://minio:9000",
        "KUBEGYM_STORAGE_CREDENTIALS": "static",
        "KUBEGYM_STORAGE_SECRET": "kubegym-s3",
    }
)


def _aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _object(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "x", "namespace": "ns", "uid": "u", "generation": 1}
    return {"apiVersion": "kubegym.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


def test_the_train_config_carries_every_agent_field_as_the_spec_has_it() -> None:
    spec = {
        "algorithm": "SAC",
        "environment": {"id": "Pendulum-v1", "nEnvs": 2, "vecEnv": "dummy", "normalize": True},
        "policy": "MlpPolicy",
        "hyperparameters": {"learning_rate": 0.001, "buffer_size": 5000},
        "preset": "rl-zoo3",
        "totalTimesteps": 20_000,
        "seed": 7,
        "device": "cpu",
        "evaluation": {"everySteps": 1000, "episodes": 3, "deterministic": False},
        "checkpoint": {"everySteps": 500, "keepLast": 2, "saveReplayBuffer": True},
    }
    parsed = TrainingRunSpec.model_validate(spec)
    config = build_train_config(_object("TrainingRun", spec), SETTINGS)
    assert set(spec) - {"checkpoint"} == _aliases(AgentSpec), "the test sets every AgentSpec field"
    assert fields_of(config, AgentSpec) == fields_of(parsed, AgentSpec)
    assert config.checkpoint.model_dump() == {"every_steps": 500, "keep_last": 2, "save_replay_buffer": True}


def test_the_evaluate_config_carries_every_benchmark_setting_as_the_spec_has_it() -> None:
    spec = {
        "models": [{"name": "m", "uri": "s3://kubegym/m/model.zip", "algorithm": "PPO"}],
        "environments": [{"id": "CartPole-v1", "frameStack": 2}],
        "episodes": 12,
        "seeds": [3, 4],
        "deterministic": False,
        "nEnvs": 4,
        "statistic": "Median",
        "device": "auto",
    }
    parsed = BenchmarkSpec.model_validate(spec)
    models = [BenchmarkModel(name="m", uri="s3://kubegym/m/model.zip", algorithm=Algorithm.PPO)]
    config = build_evaluate_config(_object("Benchmark", spec), models, SETTINGS)
    assert set(spec) - {"models", "environments"} == _aliases(BenchmarkSettings), "it sets every setting"
    assert fields_of(config, BenchmarkSettings) == fields_of(parsed, BenchmarkSettings)
    assert config.environments == parsed.environments


def test_the_contract_imports_nothing_heavy() -> None:
    """The operator image has no torch, SB3, gymnasium or boto3 (import-linter says the same statically)."""
    heavy = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "numpy", "boto3", "kopf", "kubernetes")
    code = (
        "import importlib, json, pkgutil, sys, kubegym_api\n"
        "for m in pkgutil.iter_modules(kubegym_api.__path__): importlib.import_module('kubegym_api.' + m.name)\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    env = {"PYTHONPATH": str(layout.REPO / "api"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == []
