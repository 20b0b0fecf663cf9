"""Argo CD: the Lua health checks against their test resources, the argocd-cm snippet generated
from the same scripts, and the example Applications against the chart they install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubegym_packaging
import pytest
import yaml

from kubegym_api.crdgen import KINDS
from kubegym_api.status import Phase
from kubegym_localcluster import layout
from kubegym_operator.builders.status import Reason
from tests.support.argocd import CUSTOMIZATIONS, LuaHealth, kind_dirs, script_of
from tests.support.helm import CHART, Helm

ARGOCD = layout.REPO / "examples" / "argocd"
KUBEGYM_KINDS = ("TrainingRun", "Benchmark", "Experiment")


def _cases() -> list[Any]:
    cases = []
    for kind_dir in kind_dirs():
        tests = yaml.safe_load((kind_dir / "health_test.yaml").read_text())["tests"]
        for test in tests:
            cases.append(
                pytest.param(
                    kind_dir, test, id=f"{kind_dir.parent.name}/{kind_dir.name}/{Path(test['inputPath']).stem}"
                )
            )
    return cases


@pytest.fixture(scope="module")
def lua() -> LuaHealth:
    return LuaHealth()


def test_argocd_layout_has_every_kind() -> None:
    """Argo CD's layout: <group>/<Kind>/{health.lua, health_test.yaml, testdata/}, one per kind."""
    kinds = {(d.parent.name, d.name) for d in kind_dirs()}
    assert kinds == {("kubegym.io", k) for k in KUBEGYM_KINDS}
    served = {k.kind for k in KINDS}
    assert served <= set(KUBEGYM_KINDS), f"a served kind has no health check: {served - set(KUBEGYM_KINDS)}"
    for d in kind_dirs():
        tests = yaml.safe_load((d / "health_test.yaml").read_text())["tests"]
        referenced = {(d / t["inputPath"]).resolve() for t in tests}
        on_disk = {p.resolve() for p in (d / "testdata").glob("*.yaml")}
        assert referenced == on_disk, f"{d}: testdata not referenced or missing: {referenced ^ on_disk}"


@pytest.mark.parametrize(("kind_dir", "test"), _cases())
def test_health_script(lua: LuaHealth, kind_dir: Path, test: dict[str, Any]) -> None:
    """Each health.lua in a Lua 5.1 VM (base + table libraries only) gives the expected health."""
    obj = yaml.safe_load((kind_dir / test["inputPath"]).read_text())
    assert obj["kind"] == kind_dir.name and obj["apiVersion"].startswith(kind_dir.parent.name + "/")
    got = lua.check((kind_dir / "health.lua").read_text(), obj, name=f"{kind_dir.name}/health.lua")
    want = test["healthStatus"]
    assert (got.status, got.message) == (want["status"], want["message"])


@pytest.mark.parametrize("kind", KUBEGYM_KINDS)
def test_every_phase_has_a_test_resource(kind: str) -> None:
    """A test resource in each phase the operator writes, and one before it wrote any."""
    d = CUSTOMIZATIONS / "kubegym.io" / kind
    phases: set[str | None] = set()
    for path in (d / "testdata").glob("*.yaml"):
        phases.add((yaml.safe_load(path.read_text()).get("status") or {}).get("phase"))
    missing = {p.value for p in Phase} | {None}
    assert missing <= phases, f"{kind}: no test resource in phase(s) {missing - phases}"


def test_stale_status_is_progressing_whatever_the_phase(lua: LuaHealth) -> None:
    """observedGeneration behind metadata.generation: the status is old news, even a Failed one."""
    for kind in KUBEGYM_KINDS:
        for phase in Phase:
            obj = {
                "apiVersion": "kubegym.io/v1alpha1",
                "kind": kind,
                "metadata": {"name": "x", "generation": 5},
                "status": {"phase": phase.value, "observedGeneration": 4, "reason": "R", "message": "m"},
            }
            health = lua.check(script_of(kind), obj)
            assert health.status == "Progressing", (kind, phase, health)
            assert "generation 5" in health.message


def test_degraded_pending_reasons_are_the_operators() -> None:
    """The Pending reasons the scripts call Degraded are reasons the operator really writes."""
    known = {v for k, v in vars(Reason).items() if k.isupper()}
    for kind in KUBEGYM_KINDS:
        script = script_of(kind)
        table = script.split("local stuck = {", 1)[1].split("}", 1)[0]
        names = {line.split("=")[0].strip() for line in table.splitlines() if "=" in line}
        assert names and names <= known, f"{kind}: unknown reasons {names - known}"


def test_failed_condition_wins_over_phase(lua: LuaHealth) -> None:
    obj = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "x", "generation": 1},
        "status": {
            "phase": "Running",
            "observedGeneration": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": "UserError", "message": "bad env"}],
        },
    }
    assert lua.check(script_of("TrainingRun"), obj).status == "Degraded"


# --- argocd-cm -------------------------------------------------------------------------------


def test_generated_argocd_files_are_up_to_date() -> None:
    """argocd-cm.yaml and the snippet in docs/argocd.md are rendered from the health.lua files."""
    stale = [p for p in kubegym_packaging.stale() if p in (kubegym_packaging.ARGOCD_CM, kubegym_packaging.ARGOCD_DOC)]
    assert not stale, f"stale: {[str(p.relative_to(layout.REPO)) for p in stale]}; run `make packaging`"


def _snippet_data() -> dict[str, str]:
    doc = kubegym_packaging.ARGOCD_DOC.read_text()
    block = doc.split(kubegym_packaging.DOC_BEGIN, 1)[1].split(kubegym_packaging.DOC_END, 1)[0]
    body = block.strip().removeprefix("```yaml").removesuffix("```")
    data: dict[str, str] = yaml.safe_load(body)["data"]
    return data


def test_argocd_cm_holds_the_scripts_verbatim() -> None:
    """Parsed as YAML, every argocd-cm key (file and docs) is byte for byte its health.lua."""
    cm = yaml.safe_load(kubegym_packaging.ARGOCD_CM.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    for data in (cm["data"], _snippet_data()):
        assert data["application.resourceTrackingMethod"] == "annotation"
        for kind in KUBEGYM_KINDS:
            assert data[f"resource.customizations.health.kubegym.io_{kind}"] == script_of(kind)
        health_keys = {k for k in data if k.startswith("resource.customizations.health.")}
        assert len(health_keys) == len(KUBEGYM_KINDS)


# --- Applications ----------------------------------------------------------------------------


def _applications() -> dict[str, dict[str, Any]]:
    apps = {}
    for path in sorted(ARGOCD.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Application":
                apps[doc["metadata"]["name"]] = doc
    return apps


def test_chart_application_values_pass_the_chart_schema(tmp_path: Path) -> None:
    """The chart Application's valuesObject is valid for values.schema.json and renders."""
    app = _applications()["kubegym"]
    source = app["spec"]["source"]
    assert (layout.REPO / source["path"]).resolve() == CHART.resolve()
    values = source["helm"]["valuesObject"]
    # helm validates the values against values.schema.json before rendering.
    manifests = Helm(workdir=tmp_path).manifests(values, release=source["helm"]["releaseName"])
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "kubegym-system" == app["spec"]["destination"]["namespace"]


def test_team_application_syncs_only_kubegym_resources_into_its_namespace() -> None:
    """The team Application's folder holds kubegym resources that name no namespace of their
    own (so the destination namespace applies) and nothing of Argo CD's configuration."""
    app = _applications()["team-a-experiments"]
    source = app["spec"]["source"]
    folder = layout.REPO / source["path"]
    assert folder.is_dir()
    assert source["directory"]["recurse"] is False and source["directory"]["include"] == "*.yaml"
    files = sorted(folder.glob("*.yaml"))
    assert files, f"{folder} has no manifests"
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            assert doc["apiVersion"].startswith("kubegym.io/"), f"{path.name}: {doc['apiVersion']}"
            assert "namespace" not in doc["metadata"], f"{path.name} names its namespace"
    for app_ in _applications().values():
        options = app_["spec"]["syncPolicy"]["syncOptions"]
        assert "ServerSideApply=true" in options
        assert app_["metadata"]["annotations"]["argocd.argoproj.io/compare-options"] == "ServerSideDiff=true"
        assert "ignoreDifferences" not in app_["spec"]
