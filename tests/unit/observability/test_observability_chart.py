"""The chart's observability pieces: metrics Service and ServiceMonitor, the PrometheusRule (checked
and unit-tested with promtool against synthetic series), the dashboards and their ConfigMaps."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegym_operator import metrics
from tests.support.helm import CHART, Helm, container_env, find
from tests.unit.observability.support import DOCS, populated, promtool

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = {"KubegymRunFailed", "KubegymRunStalled", "KubegymGpuIdle", "KubegymOperatorDown", "KubegymReconcileErrors"}
ALL_ON = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
METRIC = re.compile(r"\b((?:kubegym|process|python)_[a-z0-9_]+)\b")


@pytest.fixture
def helm(tmp_path: Path) -> Helm:
    return Helm(workdir=tmp_path)


def served_series() -> set[str]:
    """Every sample name the operator serves (with objects of each kind and an error counted)."""
    with populated():
        return {s.name for family in metrics.REGISTRY.collect() for s in family.samples}


def exprs_of(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


# --- Service, ServiceMonitor, Deployment -----------------------------------------------------


def test_defaults_serve_metrics_with_a_service_and_ship_dashboards_but_need_no_prometheus_crds(helm: Helm) -> None:
    manifests = helm.manifests()
    (service,) = find(manifests, "Service")
    (deployment,) = find(manifests, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container_env(deployment)["KUBEGYM_METRICS_PORT"] == "8081"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not find(manifests, "ServiceMonitor") and not find(manifests, "PrometheusRule")
    assert len(find(manifests, "ConfigMap")) == len(DASHBOARDS) == 4


def test_metrics_disabled_renders_nothing_of_it_and_turns_the_endpoint_off(helm: Helm) -> None:
    manifests = helm.manifests({"metrics": {"enabled": False, **ALL_ON["metrics"]}})
    assert not [m for m in manifests if m["kind"] in ("Service", "ServiceMonitor", "PrometheusRule", "ConfigMap")]
    (deployment,) = find(manifests, "Deployment")
    assert container_env(deployment)["KUBEGYM_METRICS_PORT"] == ""
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert [p["name"] for p in ports] == ["health"]


def test_service_monitor_selects_the_metrics_service_and_keeps_the_resources_namespace_label(helm: Helm) -> None:
    values = {"metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}
    manifests = helm.manifests(values)
    (monitor,) = find(manifests, "ServiceMonitor")
    (service,) = find(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kubegym-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and service["spec"]["ports"][0]["port"] == 9100
    assert endpoint["honorLabels"] is True and endpoint["path"] == "/metrics"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"prometheusRule": {"stalledMinutes": 0}}}, "at '/metrics/prometheusRule/stalledMinutes'"),
        ({"metrics": {"prometheusRule": {"operatorDownFor": "5 minutes"}}}, "operatorDownFor"),
        ({"metrics": {"serviceMonitor": {"interval": 30}}}, "at '/metrics/serviceMonitor/interval'"),
        ({"metrics": {"port": 80}}, "at '/metrics/port'"),
        ({"metrics": {"dashboards": {"label": "x"}}}, "additional properties 'label' not allowed"),
    ],
)
def test_bad_metrics_values_are_rejected(helm: Helm, values: dict[str, Any], message: str) -> None:
    proc = helm.template(values, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# --- dashboards ------------------------------------------------------------------------------


def test_dashboards_ship_as_sidecar_configmaps_byte_for_byte(helm: Helm) -> None:
    manifests = helm.manifests({"metrics": {"dashboards": {"namespace": "monitoring"}}})
    maps = find(manifests, "ConfigMap")
    shipped = {key: value for m in maps for key, value in m["data"].items()}
    assert shipped == {p.name: p.read_text().rstrip("\n") for p in DASHBOARDS}
    for m in maps:
        assert m["metadata"]["namespace"] == "monitoring"
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {"grafana_folder": "kubegym"}


def test_dashboards_are_well_formed_and_use_the_datasource_variable() -> None:
    uids = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.append(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (path.name, panel["title"])
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), (path.name, panel["title"])
    assert len(uids) == len(set(uids))
    names = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert names == {"kubegym-fleet", "kubegym-run", "kubegym-benchmarks", "kubegym-operator"}
    run = {v["name"] for v in json.loads((CHART / "dashboards" / "kubegym-run.json").read_text())["templating"]["list"]}
    assert {"namespace", "run"} <= run


def test_dashboards_and_alerts_name_only_metrics_the_operator_serves(helm: Helm) -> None:
    served = served_series()
    rule = find(helm.manifests(ALL_ON), "PrometheusRule")[0]
    texts = [e for p in DASHBOARDS for e in exprs_of(json.loads(p.read_text()))]
    texts += [v["definition"] for p in DASHBOARDS for v in json.loads(p.read_text())["templating"]["list"]
              if v["type"] == "query"]  # fmt: skip
    texts += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    unknown = {name for text in texts for name in METRIC.findall(text) if name not in served}
    assert not unknown, f"not served by the operator: {sorted(unknown)}"


# --- PrometheusRule --------------------------------------------------------------------------


def rules_of(helm: Helm, values: dict[str, Any], path: Path) -> dict[str, Any]:
    """The rendered PrometheusRule's spec, written as a Prometheus rule file at ``path``."""
    (rule,) = find(helm.manifests(values), "PrometheusRule")
    path.write_text(yaml.safe_dump(rule["spec"]))
    return dict(rule["spec"])


def test_promtool_accepts_the_rules_and_each_alert_has_a_runbook_section(helm: Helm, tmp_path: Path) -> None:
    spec = rules_of(helm, ALL_ON, tmp_path / "rules.yaml")
    proc = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = [r for g in spec["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    headings = {h.strip().lower() for h in re.findall(r"^### (\w+)", DOCS.read_text(), re.M)}
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        anchor = r["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == r["alert"].lower() and anchor in headings, r["alert"]


JOB = "kubegym-metrics"


def test_alerts_fire_on_synthetic_series_exactly_when_they_should(helm: Helm, tmp_path: Path) -> None:
    """promtool's rule unit tests: a stuck run but not a moving one or a fresh one; a failed run;
    an operator that stops being scraped; reconciles that keep failing but not a single blip."""
    values = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "stalledMinutes": 2,
                "operatorDownFor": "1m",
                "reconcileErrorsFor": "12m",
                "runbookURL": "https://docs.example.com/observability",
            }
        }
    }
    rules_of(helm, values, tmp_path / "rules.yaml")
    run = f'job="{JOB}", namespace="team", kind="TrainingRun"'
    operator = f'job="{JOB}", namespace="kubegym-system"'
    stuck = {"job": JOB, "namespace": "team", "name": "stuck"}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                "input_series": [
                    # Running from t=0; reports once at t=0 (timestamp 0), then nothing.
                    {
                        "series": f'kubegym_object_status{{{run}, name="stuck", phase="Running", reason="Training"}}',
                        "values": "1x20",
                    },
                    {
                        "series": f'kubegym_trainingrun_last_progress_timestamp_seconds{{job="{JOB}", namespace="team", name="stuck"}}',
                        "values": "0x20",
                    },
                    # Running and reporting every 30 s.
                    {
                        "series": f'kubegym_object_status{{{run}, name="moving", phase="Running", reason="Training"}}',
                        "values": "1x20",
                    },
                    {
                        "series": f'kubegym_trainingrun_last_progress_timestamp_seconds{{job="{JOB}", namespace="team", name="moving"}}',
                        "values": "0+30x20",
                    },
                    # Stale progress but Pending (e.g. restarting): not stalled.
                    {
                        "series": f'kubegym_object_status{{{run}, name="waiting", phase="Pending", reason="Restarting"}}',
                        "values": "1x20",
                    },
                    {
                        "series": f'kubegym_trainingrun_last_progress_timestamp_seconds{{job="{JOB}", namespace="team", name="waiting"}}',
                        "values": "0x20",
                    },
                    {
                        "series": f'kubegym_object_status{{{run}, name="broken", phase="Failed", reason="UserError"}}',
                        "values": "_ _ 1x18",
                    },
                    # Flagged Idle from t=60s, holding a GPU: alerts. Idle on CPU only: does not.
                    {
                        "series": f'kubegym_trainingrun_idle{{job="{JOB}", namespace="team", name="gpu-idle"}}',
                        "values": "0 0 1x18",
                    },
                    {
                        "series": f'kubegym_trainingrun_requested_gpus{{job="{JOB}", namespace="team", name="gpu-idle"}}',
                        "values": "1x20",
                    },
                    {
                        "series": f'kubegym_trainingrun_idle{{job="{JOB}", namespace="team", name="cpu-idle"}}',
                        "values": "1x20",
                    },
                    {
                        "series": f'kubegym_trainingrun_requested_gpus{{job="{JOB}", namespace="team", name="cpu-idle"}}',
                        "values": "0x20",
                    },
                    {"series": f"up{{{operator}}}", "values": "1 1 1 1 0 0 0 0 0 0"},
                    # TrainingRun reconciles fail every 30 s; one Benchmark blip at t=30s, which leaves
                    # the 10-minute window before reconcileErrorsFor (12m) has passed.
                    {
                        "series": f'kubegym_reconciles_total{{{operator}, kind="TrainingRun", result="error"}}',
                        "values": "0+1x30",
                    },
                    {
                        "series": f'kubegym_reconciles_total{{{operator}, kind="Benchmark", result="error"}}',
                        "values": "0 1x29",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "90s", "alertname": "KubegymRunStalled", "exp_alerts": []},
                    {
                        "eval_time": "150s",
                        "alertname": "KubegymRunStalled",
                        "exp_alerts": [
                            {
                                "exp_labels": {**stuck, "severity": "warning"},
                                "exp_annotations": {
                                    "summary": "TrainingRun team/stuck made no progress for 2 minutes",
                                    "description": "The run is Running but its runner has reported no new timesteps "
                                    "for 2m 30s: a hung environment, a stuck storage upload or a frozen process.",
                                    "runbook_url": "https://docs.example.com/observability#kubegymrunstalled",
                                },
                            }
                        ],
                    },
                    {"eval_time": "30s", "alertname": "KubegymGpuIdle", "exp_alerts": []},
                    {
                        "eval_time": "90s",
                        "alertname": "KubegymGpuIdle",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": JOB,
                                    "namespace": "team",
                                    "name": "gpu-idle",
                                    "severity": "warning",
                                },
                                "exp_annotations": {
                                    "summary": "TrainingRun team/gpu-idle holds a GPU and trains nothing",
                                    "description": "The run has the condition Idle: its runner reported no new "
                                    "timesteps for longer than the operator's idle threshold while its pod holds a "
                                    "GPU. kubectl -n team describe trainingrun gpu-idle says since when; "
                                    "runPolicy.idleTimeoutSeconds stops such a run by itself.",
                                    "runbook_url": "https://docs.example.com/observability#kubegymgpuidle",
                                },
                            }
                        ],
                    },
                    {"eval_time": "30s", "alertname": "KubegymRunFailed", "exp_alerts": []},
                    {
                        "eval_time": "90s",
                        "alertname": "KubegymRunFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "job": JOB,
                                    "namespace": "team",
                                    "name": "broken",
                                    "kind": "TrainingRun",
                                    "phase": "Failed",
                                    "reason": "UserError",
                                    "severity": "warning",
                                },
                                "exp_annotations": {
                                    "summary": "TrainingRun team/broken failed: UserError",
                                    "description": "The TrainingRun failed with reason UserError; kubectl -n team "
                                    "describe trainingrun broken tells why. The alert clears when the resource is "
                                    "deleted.",
                                    "runbook_url": "https://docs.example.com/observability#kubegymrunfailed",
                                },
                            }
                        ],
                    },
                    {"eval_time": "150s", "alertname": "KubegymOperatorDown", "exp_alerts": []},
                    {
                        "eval_time": "180s",
                        "alertname": "KubegymOperatorDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"job": JOB, "namespace": "kubegym-system", "severity": "critical"},
                                "exp_annotations": {
                                    "summary": "The kubegym operator is down or not scraped",
                                    "description": "Prometheus has not scraped the operator's metrics (kubegym) for "
                                    "1m: nothing reconciles kubegym resources.",
                                    "runbook_url": "https://docs.example.com/observability#kubegymoperatordown",
                                },
                            }
                        ],
                    },
                    {"eval_time": "11m", "alertname": "KubegymReconcileErrors", "exp_alerts": []},
                    {
                        "eval_time": "13m",
                        "alertname": "KubegymReconcileErrors",
                        "exp_alerts": [
                            {
                                "exp_labels": {"kind": "TrainingRun", "severity": "warning"},
                                "exp_annotations": {
                                    "summary": "Reconciles of TrainingRun keep failing",
                                    "description": "20 failed reconciles of TrainingRun in the last 10 minutes, "
                                    "without pause for 12m; kubegym_errors_total and the operator log say why.",
                                    "runbook_url": "https://docs.example.com/observability#kubegymreconcileerrors",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
