"""Every example manifest is a valid object of its kind: the models accept its spec, the
generated CRD's OpenAPI schema (bounds, enums, required fields) accepts it, and an Experiment's
plan can be made from it (hyperparameter names, literals, run count)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubegym_api.crd import build_crd
from kubegym_api.crdgen import KINDS
from kubegym_operator.builders.experiment import plan

EXAMPLES = Path(__file__).parents[3] / "examples"
BY_KIND = {k.kind: k for k in KINDS}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in BY_KIND:
                found.append((f"{path.name}:{doc['kind']}", doc))
    return found


MANIFESTS = manifests()


def test_the_examples_cover_every_kind() -> None:
    assert {doc["kind"] for _, doc in MANIFESTS} == set(BY_KIND)
    assert any((doc["spec"].get("search") or {}).get("optuna") for _, doc in MANIFESTS if doc["kind"] == "Experiment")


@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_example_is_valid(name: str, doc: dict[str, Any]) -> None:
    kind = BY_KIND[doc["kind"]]
    kind.spec_model.model_validate(doc["spec"])
    (version,) = build_crd(kind)["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.Draft7Validator(schema).validate(doc["spec"])
    if doc["kind"] == "Experiment":
        exp = {**doc, "metadata": {**doc["metadata"], "namespace": "lab", "uid": "u"}}
        assert plan(exp).runs
