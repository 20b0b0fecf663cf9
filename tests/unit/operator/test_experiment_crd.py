"""The Experiment CRD: structural, documented, in sync with crds/, with its CEL rules and columns.

The CEL rules themselves are evaluated by the real API server in the bad-input corpus
(tests/integration/corpus); here their presence, wording and the OpenAPI bounds (which
jsonschema can check) are.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from kubegym_api import crdgen
from kubegym_api.crd import build_crd, structural_errors
from kubegym_api.experiment import EXPERIMENT, ExperimentSpec

CRD = build_crd(EXPERIMENT)
(VERSION,) = CRD["spec"]["versions"]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]

GOOD: dict[str, Any] = {
    "template": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 10000},
    "seeds": {"count": 3},
    "search": {"grid": {"learning_rate": [0.0003, 0.001]}},
    "parallelism": 2,
}


def node_at(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.strip(".").split("."):
        node = node["properties"][part]
    return node


def rules_of(node: dict[str, Any]) -> list[dict[str, str]]:
    return list(node.get("x-kubernetes-validations", []))


def test_schema_is_structural_and_documented() -> None:
    assert structural_errors(SCHEMA) == []


def test_committed_crd_matches_the_model() -> None:
    assert crdgen.stale_files(crdgen.DEFAULT_DIR, [EXPERIMENT]) == [], "run python -m kubegym_api.crdgen"
    committed = yaml.safe_load((crdgen.DEFAULT_DIR / "experiments.kubegym.io.yaml").read_text())
    assert committed == CRD
    assert EXPERIMENT in crdgen.KINDS


def test_names_category_and_status_subresource() -> None:
    names = CRD["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "Experiment",
        "experiments",
        ["exp"],
        ["gym"],
    )
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_answer_how_is_it_going() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert [c["name"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")] == [
        "Phase",
        "Runs",
        "Running",
        "Best",
        "Score",
        "Age",
    ]
    for column in columns.values():
        if column["jsonPath"].startswith(".status"):
            node = node_at(column["jsonPath"])  # raises if the path does not exist
            assert node["type"] == {"date": "string"}.get(column["type"], column["type"])


def _validate(spec: dict[str, Any]) -> None:
    jsonschema.validate({"spec": spec}, {"type": "object", "properties": {"spec": SPEC}})


def test_schema_accepts_a_sweep() -> None:
    _validate(GOOD)
    ExperimentSpec.model_validate(GOOD)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"seeds": {"count": 0}}, "minimum"),
        ({"seeds": {"count": -3}}, "minimum"),
        ({"parallelism": 0}, "minimum"),
        ({"parallelism": -1}, "minimum"),
        ({"search": {"grid": {"learning_rate": []}}}, "minItems"),
        ({"seeds": {"values": []}}, "minItems"),
        ({"search": {"random": {"trials": 0, "parameters": {}}}}, "minimum"),
    ],
)
def test_schema_bounds_reject(patch: dict[str, Any], needle: str) -> None:
    spec = {**copy.deepcopy(GOOD), **patch}
    with pytest.raises(jsonschema.ValidationError) as err:
        _validate(spec)
    assert needle in str(err.value.validator)


def test_cel_rules_say_what_to_fix() -> None:
    messages = {r["message"] for node in (SPEC, node_at(".spec.seeds")) for r in rules_of(node)}
    random = node_at(".spec.search.random")
    messages |= {r["message"] for r in rules_of(random)}
    assert any("search.random.trials is required" in m and "trial budget" in m for m in messages)
    assert any("seeds.count" in m and "seeds.values" in m for m in messages)
    assert any("earlyStopping" in m and "template.evaluation" in m for m in messages)
    assert any("benchmark.checkpoint best" in m and "template.evaluation" in m for m in messages)
    assert node_at(".spec.benchmark.checkpoint")["enum"] == ["final", "best", "latest"]
    # CEL cannot type the grid's values: its shape is bounded by OpenAPI keywords instead.
    search = node_at(".spec.search")
    assert (search["minProperties"], search["maxProperties"]) == (1, 1)
    assert search["properties"]["grid"]["minProperties"] == 1
    assert "grid" not in json.dumps(rules_of(search))


def test_the_template_keeps_its_checks_but_not_its_runner_job_wording() -> None:
    rules = rules_of(node_at(".spec.template"))
    assert any("totalTimesteps" in r["rule"] for r in rules)
    assert not any("oldSelf" in r["rule"] for r in rules)


@pytest.mark.parametrize(
    "search",
    [{}, {"grid": {}}, {"grid": {"learning_rate": [0.1]}, "random": {"trials": 1, "parameters": {}}}],
    ids=["no-kind", "empty-grid", "both"],
)
def test_search_shape_is_bounded(search: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validate({**copy.deepcopy(GOOD), "search": search})


@pytest.mark.parametrize(
    "field", ["template", "seeds", "search", "earlyStopping", "benchmark", "objective", "tracking"]
)
def test_study_defining_fields_are_immutable(field: str) -> None:
    (rule,) = [r for r in rules_of(SPEC) if r.get("fieldPath") == f".{field}" and "oldSelf" in r["rule"]]
    assert "immutable" in rule["message"]


@pytest.mark.parametrize("field", ["parallelism", "suspend"])
def test_parallelism_and_suspend_are_mutable(field: str) -> None:
    assert not [r for r in rules_of(SPEC) if field in r["rule"] and "oldSelf" in r["rule"]]


def test_model_mirrors_the_one_of_rules() -> None:
    assert ExperimentSpec.model_validate({**GOOD, "seeds": {"values": [7, 11]}}).seeds.resolved() == [7, 11]
    assert ExperimentSpec.model_validate(GOOD).seeds.resolved() == [0, 1, 2]
