"""``kubegym.Client``'s pure parts: resources built from the typed models, why a run failed, and
what its progress bar counts."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from kubegym import manifest
from kubegym_api.trainingrun import TrainingRunSpec
from kubegym_cli.client import _done_and_total, failure


def test_manifest_from_keywords_a_mapping_or_a_model_is_the_same_resource() -> None:
    keywords = manifest(
        "TrainingRun", "r", "ns", None, algorithm="PPO", environment={"id": "CartPole-v1"}, total_timesteps=5000
    )
    assert keywords == {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 5000},
    }
    camel = {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 5000}
    assert manifest("TrainingRun", "r", "ns", camel) == keywords
    model = TrainingRunSpec.model_validate(camel)
    assert manifest("TrainingRun", "r", "ns", model) == keywords


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"algorithm": "ppo", "environment": {"id": "CartPole-v1"}, "total_timesteps": 10}, "algorithm"),
        ({"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "total_timesteps": 10, "lr": 1}, "lr"),
        (
            {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "total_timesteps": -1},
            "total_timesteps|totalTimesteps",
        ),
    ],
)
def test_a_bad_spec_fails_in_python(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        manifest("TrainingRun", "r", "ns", None, **fields)


def test_manifest_refuses_an_unknown_kind_and_both_spec_and_keywords() -> None:
    with pytest.raises(ValueError, match="unknown kind 'Job'"):
        manifest("Job", "r", "ns", {})
    with pytest.raises(ValueError, match="not both"):
        manifest("TrainingRun", "r", "ns", {"algorithm": "PPO"}, seed=1)


def test_failure_is_the_failed_condition() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Ready", "reason": "X"},
                {"type": "Failed", "reason": "UserError", "message": "bad env"},
            ]
        }
    }
    assert failure(obj) == "UserError: bad env"
    assert failure({}) == "no reason given"


def test_progress_bar_counts() -> None:
    run = {"spec": {"totalTimesteps": 100}, "status": {"progress": {"timesteps": 40, "totalTimesteps": 100}}}
    assert _done_and_total("TrainingRun", run) == (40, 100)
    assert _done_and_total("TrainingRun", {"spec": {"totalTimesteps": 100}}) == (0, 100)
    assert _done_and_total("Experiment", {"status": {"completions": "2/6"}}) == (2, 6)
    assert _done_and_total("Benchmark", {}) == (0, 0)
