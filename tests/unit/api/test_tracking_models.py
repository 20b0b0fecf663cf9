"""The tracking models of the contract package: what the spec accepts (the model and the CRD agree,
since the CRD is generated from it), and what travels to the runner and back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kubegym_api.base import Algorithm
from kubegym_api.runnerconfig import TrainConfig, dump_config
from kubegym_api.tracking import CREDENTIAL_ENV, MlflowRunConfig, MlflowSpec, RunIdentity, TrackingStatus
from kubegym_api.trainingrun import TrainingRunSpec


@pytest.mark.parametrize(
    "uri",
    ["http://mlflow:5000", "https://mlflow.example.com", "https://example.com/mlflow/", "http://10.0.0.7:5000/x?y"],
)
def test_tracking_uris_that_are_http_urls_are_accepted(uri: str) -> None:
    assert MlflowSpec(tracking_uri=uri).tracking_uri == uri


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"trackingUri": "mlflow:5000"}, "trackingUri"),
        ({"trackingUri": "ftp://mlflow"}, "trackingUri"),
        ({"trackingUri": "http://"}, "trackingUri"),
        ({"trackingUri": "http://a b"}, "trackingUri"),
        ({"trackingUri": "file:///tmp/mlruns"}, "trackingUri"),  # the runner speaks REST only
        ({}, "trackingUri"),
        ({"trackingUri": "http://m", "experimentName": ""}, "experimentName"),
        ({"trackingUri": "http://m", "experimentName": " \t"}, "experimentName"),
        ({"trackingUri": "http://m", "experimentName": "x" * 257}, "experimentName"),
        ({"trackingUri": "http://m", "credentialsSecretRef": "Not_A_Name"}, "credentialsSecretRef"),
        ({"trackingUri": "http://m", "password": "inline"}, "password"),  # credentials only by reference
    ],
)
def test_bad_tracking_input_is_refused_by_the_model(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as e:
        MlflowSpec.model_validate(fields)
    assert {str(err["loc"][0]) for err in e.value.errors()} == {where}


def test_a_training_run_spec_carries_tracking_and_the_runner_config_its_resolved_form() -> None:
    spec = TrainingRunSpec.model_validate(
        {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 100,
            "tracking": {"mlflow": {"trackingUri": "http://m:5000", "credentialsSecretRef": "creds"}},
        }
    )
    assert spec.tracking is not None and spec.tracking.mlflow is not None
    assert spec.tracking.mlflow.credentials_secret_ref == "creds"
    run = RunIdentity(kind="TrainingRun", namespace="ns", name="r", uid="u")
    config = TrainConfig(
        algorithm=Algorithm.PPO,
        environment={"id": "CartPole-v1"},  # type: ignore[arg-type]
        storage={"bucket": "kubegym"},  # type: ignore[arg-type]
        run_prefix="p",
        mlflow=MlflowRunConfig(tracking_uri="http://m:5000", experiment_name="ns/r", run=run, credentials=True),
    )
    text = dump_config(config)
    assert '"mlflow":{"trackingUri":"http://m:5000","experimentName":"ns/r"' in text
    assert "creds" not in text  # the Secret's name stays in the spec; its keys come as env
    assert TrainConfig.model_validate_json(text).mlflow == config.mlflow


def test_the_credential_variables_are_mlflows_own_names() -> None:
    assert CREDENTIAL_ENV == {
        "username": "MLFLOW_TRACKING_USERNAME",
        "password": "MLFLOW_TRACKING_PASSWORD",
        "token": "MLFLOW_TRACKING_TOKEN",
    }


def test_the_tracking_status_is_bounded() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    TrackingStatus(state="ok", since=since, message="fine")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TrackingStatus(state="ok", since=since, message="x" * 1025)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TrackingStatus(state="broken", since=since, message="m")  # type: ignore[arg-type]


def test_the_mlflow_example_is_a_valid_training_run() -> None:
    import jsonschema
    import yaml

    from kubegym_api.crd import build_crd
    from kubegym_api.trainingrun import TRAINING_RUN

    manifest = yaml.safe_load((Path(__file__).parents[3] / "examples" / "cartpole-ppo-mlflow.yaml").read_text())
    (version,) = build_crd(TRAINING_RUN)["spec"]["versions"]
    jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"]).validate(manifest)
    spec = TrainingRunSpec.model_validate(manifest["spec"])
    assert spec.tracking is not None and spec.tracking.mlflow is not None
    assert spec.tracking.mlflow.credentials_secret_ref == "mlflow-creds"
