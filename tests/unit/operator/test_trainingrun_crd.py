"""The TrainingRun CRD: structural, documented, in sync with crds/, with its CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import Field, ValidationError

from kubegym_api import crdgen
from kubegym_api.base import Model
from kubegym_api.crd import SchemaError, build_crd, model_schema, structural_errors
from kubegym_api.trainingrun import TRAINING_RUN, TrainingRunSpec
from kubegym_api.workload import Resources

CRD = build_crd(TRAINING_RUN)
(VERSION,) = CRD["spec"]["versions"]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]


def rule_at(node: dict[str, Any], field_path: str, *, transition: bool = False) -> dict[str, str]:
    """The CEL rule of ``node`` reporting on ``field_path``: the transition (oldSelf) one or
    the other."""
    (rule,) = [
        r
        for r in node.get("x-kubernetes-validations", [])
        if r.get("fieldPath") == field_path and ("oldSelf" in r["rule"]) == transition
    ]
    return dict(rule)


def node_at(path: str) -> dict[str, Any]:
    """The schema node of a printer-column JSONPath such as .status.progress.percent."""
    node = SCHEMA
    for part in path.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_schema_is_structural_and_documented() -> None:
    assert structural_errors(SCHEMA) == []


def test_committed_crds_match_the_models() -> None:
    assert crdgen.stale_files(crdgen.DEFAULT_DIR) == [], "run python -m kubegym_api.crdgen"
    committed = yaml.safe_load((crdgen.DEFAULT_DIR / "trainingruns.kubegym.io.yaml").read_text())
    assert committed == CRD


def test_check_mode_fails_on_drift(tmp_path: Path) -> None:
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 1
    assert crdgen.main(["--dir", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "trainingruns.kubegym.io.yaml"
    path.write_text(path.read_text().replace("minimum: 1", "minimum: 0", 1))
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 1


def test_names_scope_and_subresources() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "trainingruns.kubegym.io"
    assert (spec["group"], spec["scope"]) == ("kubegym.io", "Namespaced")
    assert spec["names"]["kind"] == "TrainingRun"
    assert spec["names"]["plural"] == "trainingruns"
    assert spec["names"]["shortNames"] == ["trun"]
    assert spec["names"]["categories"] == ["gym"]
    assert VERSION["name"] == "v1alpha1"
    assert VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_read_existing_top_level_fields() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    default = [c["name"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["Phase", "Algorithm", "Env", "Progress%", "Reward", "Age"]
    assert {"Steps", "Steps/s", "Checkpoint", "Node", "Reason", "Eval", "Best"} <= {
        c["name"] for c in VERSION["additionalPrinterColumns"] if c.get("priority") == 1
    }
    json_types = {"integer": "integer", "number": "number", "string": "string"}
    for column in columns.values():
        assert "conditions" not in column["jsonPath"]
        if column["jsonPath"].startswith(".metadata"):
            continue
        node = node_at(column["jsonPath"])
        assert node["type"] == json_types[column["type"]], column["name"]


def test_every_kubectl_explain_field_has_a_description() -> None:
    def walk(node: dict[str, Any], path: str) -> list[str]:
        missing = [] if node.get("description") else [path]
        for name, child in node.get("properties", {}).items():
            missing += walk(child, f"{path}.{name}")
        if "items" in node:
            missing += walk(node["items"], f"{path}[]")
        return missing

    assert walk(SPEC, "spec") == []
    assert walk(STATUS, "status") == []


def test_camel_case_fields_enums_ranges_and_defaults() -> None:
    props = SPEC["properties"]
    assert {"totalTimesteps", "resumeFrom", "runPolicy"} <= set(props)
    assert props["totalTimesteps"]["minimum"] == 1
    assert props["algorithm"]["enum"][:3] == ["PPO", "A2C", "DQN"]
    assert props["device"]["enum"] == ["auto", "cpu", "cuda"]
    assert props["device"]["default"] == "auto"
    resources = props["resources"]
    assert resources["default"] == {}
    assert resources["properties"]["gpu"]["minimum"] == 0
    assert resources["properties"]["cpu"]["x-kubernetes-int-or-string"] is True
    assert props["environment"]["properties"]["nEnvs"]["default"] == 1
    assert props["hyperparameters"]["x-kubernetes-preserve-unknown-fields"] is True
    assert props["scheduling"]["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"]
    storage = props["checkpoint"]["properties"]["storage"]
    assert set(storage["required"]) == {"bucket", "secretRef"}
    assert SPEC["required"] == ["algorithm", "environment"]
    conditions = STATUS["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "default" not in yaml.safe_dump(STATUS)  # status is observed, never defaulted


def test_cross_field_rules() -> None:
    cuda = rule_at(SPEC, ".resources.gpu")
    assert "self.device != 'cuda'" in cuda["rule"] and "self.resources.gpu > 0" in cuda["rule"]
    assert "resources.gpu" in cuda["message"]
    steps = rule_at(SPEC, ".totalTimesteps")
    assert steps["rule"] == "has(self.totalTimesteps) || has(self.preset)"
    replay = rule_at(SPEC, ".checkpoint.saveReplayBuffer")["rule"]
    assert "'SAC'" in replay and "'PPO'" not in replay
    resume = SPEC["properties"]["resumeFrom"]["x-kubernetes-validations"]
    assert resume[0]["rule"] == "has(self.uri) != has(self.trainingRun)"
    choice = rule_at(SPEC["properties"]["resumeFrom"], ".checkpoint")
    assert choice["rule"] == "!has(self.checkpoint) || has(self.trainingRun)"
    assert choice["reason"] == "FieldValueForbidden" and "remove checkpoint" in choice["message"]


def test_the_model_choice_is_one_enum_without_a_schema_default() -> None:
    checkpoint = SPEC["properties"]["resumeFrom"]["properties"]["checkpoint"]
    assert checkpoint["enum"] == ["final", "best", "latest"]
    assert "default" not in checkpoint  # absent means latest; a default would trip the rule beside a uri
    best = STATUS["properties"]["best"]
    assert set(best["required"]) == {"uri", "step", "meanReward"}
    assert {"uri", "step", "meanReward", "stdReward", "episodes"} == set(best["properties"])


IMMUTABLE = [
    "algorithm",
    "environment",
    "policy",
    "hyperparameters",
    "preset",
    "totalTimesteps",
    "seed",
    "device",
    "evaluation",
    "checkpoint",
    "resumeFrom",
    "tracking",
    "resources",
    "image",
    "runPolicy.backoffLimit",
    "runPolicy.activeDeadlineSeconds",
]


@pytest.mark.parametrize("field", IMMUTABLE)
def test_immutable_fields_have_transition_rules(field: str) -> None:
    rule = rule_at(SPEC, f".{field}", transition=True)
    assert f"self.{field} == oldSelf.{field}" in rule["rule"]
    assert "immutable" in rule["message"] and "new TrainingRun" in rule["message"]


def test_mutable_fields_have_no_transition_rule() -> None:
    every_rule = yaml.safe_dump(SCHEMA)
    for field in ("suspend", "ttlSecondsAfterFinished"):
        assert f"self.{field} == oldSelf" not in every_rule
        assert f"self.runPolicy.{field} == oldSelf" not in every_rule
    scheduling = rule_at(SCHEMA, ".spec.scheduling", transition=True)
    assert scheduling["rule"].startswith("!has(oldSelf.status) || !has(oldSelf.status.startTime)")
    assert "self.spec.scheduling == oldSelf.spec.scheduling" in scheduling["rule"]
    self_resume = rule_at(SCHEMA, ".spec.resumeFrom.trainingRun")["rule"]
    assert "self.spec.resumeFrom.trainingRun != self.metadata.name" in self_resume


# --- the schema as a validator (OpenAPI 3.0 keywords match JSON Schema draft 4) -----------


def validate(spec: dict[str, Any]) -> None:
    obj = {"apiVersion": "kubegym.io/v1alpha1", "kind": "TrainingRun", "spec": spec}
    jsonschema.Draft4Validator(SCHEMA).validate(obj)


BASE = {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 1000}


def test_schema_accepts_a_full_spec() -> None:
    validate(
        {
            **BASE,
            "hyperparameters": {"learning_rate": 3e-4, "policy_kwargs": {"net_arch": [64, 64]}},
            "resources": {"cpu": 2, "memory": "4Gi", "gpu": 1},
            "device": "cuda",
            "checkpoint": {"everySteps": 5000, "storage": {"bucket": "abc", "secretRef": "s"}},
            "scheduling": {"tolerations": [{"key": "k", "operator": "Exists"}]},
            "tracking": {
                "mlflow": {
                    "trackingUri": "https://mlflow.example.com/tracking",
                    "experimentName": "team/cartpole",
                    "credentialsSecretRef": "mlflow-creds",
                }
            },
        }
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"algorithm": "PPO2"},
        {"totalTimesteps": 0},
        {"resources": {"gpu": -1}},
        {"device": "tpu"},
        {"environment": {"id": "CartPole-v1", "nEnvs": 0}},
        {"checkpoint": {"storage": {"bucket": "abc"}}},  # credentials only via secretRef
        {"checkpoint": {"storage": {"bucket": "abc", "secretRef": "Bad_Name"}}},
        {"resumeFrom": {"uri": "http://not-s3/x"}},
        {"resumeFrom": {"trainingRun": "other", "checkpoint": "newest"}},
        {"scheduling": {"queueName": "Team A"}},
        {"tracking": {"mlflow": {}}},  # no trackingUri
        {"tracking": {"mlflow": {"trackingUri": "mlflow:5000"}}},  # no scheme
        {"tracking": {"mlflow": {"trackingUri": "http://"}}},  # no host
        {"tracking": {"mlflow": {"trackingUri": "http://mlflow server:5000"}}},
        {"tracking": {"mlflow": {"trackingUri": "http://m:5000", "experimentName": ""}}},
        {"tracking": {"mlflow": {"trackingUri": "http://m:5000", "experimentName": "  "}}},
        {"tracking": {"mlflow": {"trackingUri": "http://m:5000", "credentialsSecretRef": "Bad_Name"}}},
    ],
)
def test_schema_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({**BASE, **bad})


def test_spec_model_agrees_with_the_schema() -> None:
    TrainingRunSpec.model_validate({**BASE, "resources": {"cpu": "500m", "memory": 1024}})
    for bad in ({"resources": {"gpu": -1}}, {"resources": {"memory": "lots"}}):
        with pytest.raises(ValidationError):
            TrainingRunSpec.model_validate({**BASE, **bad})
    with pytest.raises(ValidationError):
        Resources.model_validate({"cpu": -1})


# --- the converter and the checker themselves ---------------------------------------------


class _Sample(Model):
    """Sample."""

    count: int = Field(gt=0, description="Positive.")
    note: str | None = Field(default=None, description="Optional.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Anything.")
    labels: dict[str, str] = Field(default_factory=dict, description="Strings.")


def test_converter_output() -> None:
    schema = model_schema(_Sample)
    props = schema["properties"]
    assert props["count"] == {
        "description": "Positive.",
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert props["note"] == {"description": "Optional.", "type": "string"}
    assert props["extra"]["x-kubernetes-preserve-unknown-fields"] is True
    assert props["labels"]["additionalProperties"] == {"type": "string"}
    assert "title" not in yaml.safe_dump(schema)
    assert "additionalProperties" not in schema  # extra="forbid" has no structural form


def test_converter_refuses_real_unions() -> None:
    class Union(Model):
        value: int | str = Field(description="Either.")

    with pytest.raises(SchemaError, match="int-or-string"):
        model_schema(Union)


def test_checker_finds_non_structural_nodes() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/x", "description": "ref"},
            "b": {"description": "untyped"},
            "c": {
                "type": "object",
                "description": "both",
                "properties": {},
                "additionalProperties": {"type": "string"},
            },
            "d": {"type": "string"},
            "e": {"description": "alt", "anyOf": [{"type": "string"}, {"type": "integer"}]},
            "f": {"type": "array", "description": "no items"},
            "metadata": {"type": "object", "description": "not allowed"},
        },
    }
    problems = "\n".join(structural_errors(bad))
    for expected in (
        ".a: $ref is not allowed",
        ".b: no type",
        ".c: properties and additionalProperties",
        ".d: no description",
        ".e: anyOf outside int-or-string",
        ".f: array without a single items schema",
        ".metadata: the API server allows only type: object here",
    ):
        assert expected in problems
