"""The Benchmark CRD: structural, documented, in sync with crds/, printer columns, apply-time rules."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from kubegym_api import crdgen
from kubegym_api.benchmark import BENCHMARK, BenchmarkEntry, BenchmarkRanking, BenchmarkSpec, BenchmarkStatus
from kubegym_api.crd import build_crd, structural_errors

CRD = build_crd(BENCHMARK)
(VERSION,) = CRD["spec"]["versions"]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]


def node_at(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.strip(".").split("."):
        node = node["properties"][part]
    return node


def test_schema_is_structural_and_committed() -> None:
    assert structural_errors(SCHEMA) == []
    assert crdgen.stale_files(crdgen.DEFAULT_DIR, (BENCHMARK,)) == [], "run python -m kubegym_api.crdgen"
    committed = yaml.safe_load((crdgen.DEFAULT_DIR / "benchmarks.kubegym.io.yaml").read_text())
    assert committed == CRD
    assert BENCHMARK in crdgen.KINDS


def test_names_and_subresources() -> None:
    names = CRD["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "Benchmark",
        "benchmarks",
        ["bench"],
        ["gym"],
    )
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_answer_how_it_went_from_top_level_status_fields() -> None:
    columns = VERSION["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == ["Phase", "Envs", "Models", "Best", "Score", "Age"]
    types = {"integer": "integer", "number": "number", "string": "string"}
    for column in columns:
        if column["jsonPath"].startswith(".metadata"):
            continue
        assert node_at(column["jsonPath"])["type"] == types[column["type"]], column["name"]
        if not column.get("priority"):
            assert column["jsonPath"].count(".") == 2, "default columns read top-level status fields"


def test_status_carries_the_statistics_the_issue_asks_for() -> None:
    entry = STATUS["properties"]["results"]["items"]["properties"]
    wanted = {"mean", "std", "median", "iqm", "min", "max", "meanEpisodeLength", "episodesPerSecond"}
    assert wanted | {"latencyP50Ms", "latencyP99Ms", "ciLower", "ciUpper", "error"} <= set(entry)
    ranking = STATUS["properties"]["ranking"]["properties"]
    assert {"statistic", "confidenceLevel", "models", "probabilityOfImprovement", "bootstrapSeed"} <= set(ranking)
    assert {"episodes", "table", "results", "plot"} <= set(STATUS["properties"]["artifacts"]["properties"])
    assert STATUS["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert "default" not in yaml.safe_dump(STATUS)
    # The runner's models and the CRD's status are the same models.
    assert BenchmarkStatus.model_fields["results"].annotation == list[BenchmarkEntry]
    assert BenchmarkStatus.model_fields["ranking"].annotation == BenchmarkRanking | None


def test_lists_are_keyed_so_duplicates_are_rejected_by_the_api_server() -> None:
    props = SPEC["properties"]
    assert props["models"]["x-kubernetes-list-map-keys"] == ["name"]
    assert props["environments"]["x-kubernetes-list-map-keys"] == ["id"]
    assert props["seeds"]["x-kubernetes-list-type"] == "set"
    assert props["models"]["maxItems"] == 32 and props["environments"]["maxItems"] == 8


def test_rules() -> None:
    model_rules = SPEC["properties"]["models"]["items"]["x-kubernetes-validations"]
    assert model_rules[0]["rule"] == "has(self.uri) != has(self.trainingRunRef)"
    assert model_rules[1]["rule"] == "!has(self.checkpoint) || has(self.trainingRunRef)"
    assert model_rules[1]["fieldPath"] == ".checkpoint" and "remove checkpoint" in model_rules[1]["message"]
    checkpoint = SPEC["properties"]["models"]["items"]["properties"]["checkpoint"]
    assert checkpoint["enum"] == ["final", "best", "latest"] and "default" not in checkpoint
    transitions = [r for r in SPEC["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    frozen = {r["fieldPath"] for r in transitions}
    assert {".models", ".environments", ".episodes", ".seeds", ".nEnvs", ".statistic", ".scheduling"} <= frozen
    assert ".runPolicy.ttlSecondsAfterFinished" not in frozen
    assert all("create a new Benchmark" in r["message"] for r in transitions)


def validate(spec: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(SCHEMA).validate(
        {"apiVersion": "kubegym.io/v1alpha1", "kind": "Benchmark", "spec": spec}
    )


BASE: dict[str, Any] = {
    "models": [{"name": "a", "trainingRunRef": {"name": "run-a"}}, {"name": "b", "uri": "s3://bucket/m/model.zip"}],
    "environments": [{"id": "CartPole-v1"}],
}


def test_a_minimal_spec_is_valid_and_gets_defaults() -> None:
    validate(BASE)
    spec = BenchmarkSpec.model_validate(BASE)
    assert (spec.episodes, spec.seeds, spec.n_envs, spec.statistic, spec.deterministic) == (50, [0], 16, "IQM", True)


@pytest.mark.parametrize("episodes", [0, -5])
def test_episodes_must_be_positive(episodes: int) -> None:
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 1"):
        validate({**BASE, "episodes": episodes})


@pytest.mark.parametrize(
    "spec",
    [
        {**BASE, "models": []},
        {**BASE, "environments": []},
        {**BASE, "seeds": []},
        {**BASE, "statistic": "Max"},
        {**BASE, "nEnvs": 0},
        {**BASE, "models": [{"name": "bad name", "uri": "s3://b/k"}]},
        {**BASE, "models": [{"name": "a", "uri": "https://example.com/model.zip"}]},
        {**BASE, "models": [{"name": "a", "trainingRunRef": {"name": "r"}, "checkpoint": "top"}]},
    ],
    ids=["no-models", "no-envs", "no-seeds", "statistic", "n-envs", "model-name", "uri-scheme", "checkpoint"],
)
def test_invalid_specs(spec: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(spec)
