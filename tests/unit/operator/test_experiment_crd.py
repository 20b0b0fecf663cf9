"""The Experiment CRD: structural, documented, in sync with crds/, with its CEL rules and columns.

The CEL rules themselves are evaluated by the real API server in the bad-input corpus
(tests/integration/corpus); here their presence, wording and the OpenAPI bounds (which
jsonschema can check) are, and the early-stopping rules are evaluated on specs by the small
CEL-subset evaluator of tests/support/cel.py (with the API server's defaulting first).
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
from tests.support import cel

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


# --- early-stopping rules: ASHA and Hyperband --------------------------------------------------

EVALUATED: dict[str, Any] = {
    **GOOD,
    "template": {**GOOD["template"], "evaluation": {"everySteps": 2048, "episodes": 5}},
}


def with_early_stopping(early_stopping: dict[str, Any], **template: Any) -> dict[str, Any]:
    spec = copy.deepcopy(EVALUATED)
    spec["template"].update(template)
    spec["earlyStopping"] = early_stopping
    return spec


def test_the_rules_and_their_fields_are_in_the_schema() -> None:
    node = node_at(".spec.earlyStopping")
    assert node["properties"]["rule"]["enum"] == ["Median", "ASHA", "Hyperband"]
    assert (
        node["properties"]["reductionFactor"]["default"],
        node["properties"]["minEarlyStoppingRate"]["default"],
    ) == (
        3,
        0,
    )
    assert "default" not in node["properties"]["minResource"]
    for name in ("minEvaluations", "minRuns"):
        assert node["properties"][name]["description"].startswith("Median only")
    assert node["properties"]["minEarlyStoppingRate"]["description"].startswith("ASHA only")
    runs = node_at(".status.runs")["items"]["properties"]
    assert runs["rung"]["type"] == runs["bracket"]["type"] == "integer"


@pytest.mark.parametrize(
    "early_stopping",
    [
        {"rule": "ASHA", "minResource": 2048},
        {"rule": "ASHA", "minResource": 4096, "reductionFactor": 2, "minEarlyStoppingRate": 1},
        {"rule": "Hyperband", "minResource": 2048, "reductionFactor": 4},
        {"rule": "Median", "minEvaluations": 2, "minRuns": 1},
        {},
    ],
    ids=["asha", "asha-all-fields", "hyperband", "median", "default-median"],
)
def test_valid_early_stopping_is_accepted(early_stopping: dict[str, Any]) -> None:
    spec = with_early_stopping(early_stopping)
    _validate(spec)
    assert cel.violations(cel.apply_defaults({"spec": spec}, SCHEMA), SCHEMA) == []
    ExperimentSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("early_stopping", "needle"),
    [
        ({"rule": "ASHA", "minResource": 2048, "reductionFactor": 1}, "minimum"),
        ({"rule": "ASHA", "minResource": 2048, "reductionFactor": 101}, "maximum"),
        ({"rule": "ASHA", "minResource": 0}, "minimum"),
        ({"rule": "ASHA", "minResource": 2048, "minEarlyStoppingRate": -1}, "minimum"),
        ({"rule": "asha", "minResource": 2048}, "enum"),
    ],
)
def test_early_stopping_bounds_reject(early_stopping: dict[str, Any], needle: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as err:
        _validate(with_early_stopping(early_stopping))
    assert needle in str(err.value.validator)


#: Specs the CEL rules refuse at apply, each with words its message must hold; the model mirrors
#: the rules it can (the operator validates the spec with it), and those cases say which.
CEL_REJECTS = {
    "asha-without-min-resource": ({"rule": "ASHA"}, {}, "minResource is required for ASHA and Hyperband", True),
    "hyperband-without-min-resource": ({"rule": "Hyperband"}, {}, "minResource is required", True),
    "median-with-min-resource": ({"rule": "Median", "minResource": 2048}, {}, "minResource is for ASHA", True),
    "hyperband-with-min-early-stopping-rate": (
        {"rule": "Hyperband", "minResource": 2048, "minEarlyStoppingRate": 1},
        {},
        "minEarlyStoppingRate is for ASHA only",
        True,
    ),
    "min-resource-at-total-timesteps": (
        {"rule": "ASHA", "minResource": 10000},
        {},
        "minResource must be below template.totalTimesteps",
        False,
    ),
    "min-resource-before-the-first-evaluation": (
        {"rule": "ASHA", "minResource": 1024},
        {},
        "minResource must be at least template.evaluation.everySteps",
        False,
    ),
    "hyperband-without-total-timesteps": (
        {"rule": "Hyperband", "minResource": 2048},
        {"totalTimesteps": None, "preset": "rl-zoo3"},
        "Hyperband spreads its brackets up to template.totalTimesteps",
        False,
    ),
}


@pytest.mark.parametrize(("early_stopping", "template", "needle", "mirrored"), CEL_REJECTS.values(), ids=CEL_REJECTS)
def test_cel_rules_refuse_what_a_rule_cannot_use(
    early_stopping: dict[str, Any], template: dict[str, Any], needle: str, mirrored: bool
) -> None:
    """The committed rules, evaluated on the defaulted spec (tests/support/cel.py; the API server
    evaluates the same cases in the bad-input corpus), refuse it with exactly that message, which
    the OpenAPI bounds alone would not; the model mirrors the rules about one node's own fields."""
    spec = with_early_stopping(early_stopping, **template)
    spec["template"] = {k: v for k, v in spec["template"].items() if v is not None}
    _validate(spec)  # the OpenAPI bounds let it through: only the CEL rule catches it
    broken = cel.violations(cel.apply_defaults({"spec": spec}, SCHEMA), SCHEMA)
    assert len(broken) == 1 and needle in broken[0], broken
    if mirrored:
        with pytest.raises(ValueError, match=needle.split(" is ")[0].removeprefix("earlyStopping.")):
            ExperimentSpec.model_validate(spec)
