"""Metrics, dashboards and alerts against a real Prometheus scraping the real operator.

Prometheus (Debian's package) scrapes the operator every second as the chart's ServiceMonitor
would, and evaluates the chart's PrometheusRule rendered with short thresholds. Meanwhile, on the
local cluster: a small run trains and a Benchmark evaluates it; a run fails with a user error
(unknown env id); a run's runner process is frozen with SIGSTOP (Running, no progress); a run in
a namespace whose ResourceQuota forbids Jobs makes its reconciles fail. Then: each alert fires
for the right object, every PromQL expression of every dashboard panel and variable returns
data, a deleted run's series are gone at the first scrape after its deletion, and stopping the
operator fires KubegymOperatorDown.

The tests run in order and share the module's scenario.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from kubegym_operator.builders.job import CONTAINER_NAME, RUN_LABEL
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import benchmark
from tests.integration.observability.prometheus import SCRAPE_INTERVAL, Prometheus, wait_for_scrape_after
from tests.integration.trainingrun.support import status, training_run
from tests.support.helm import CHART, Helm, find
from tests.support.wait import wait_until

TRAINED, BROKEN, FROZEN, NO_JOBS, BENCH = "trained", "broken", "frozen", "no-jobs", "leaderboard"
VALUES = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "stalledMinutes": 1, "operatorDownFor": "0s", "reconcileErrorsFor": "0s"},
    }
}
TR = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns"
BM = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks"


@dataclass
class Scenario:
    ns: str
    quota_ns: str
    job: str
    prom: Prometheus
    operator: OperatorProcess
    kube: Kube
    frozen_pgid: int | None = None
    frozen_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        runs = {
            name: {k: v for k, v in status(self.kube, self.ns, name).items() if k in ("phase", "reason", "message")}
            for name in (TRAINED, BROKEN, FROZEN)
        }
        return f"{json.dumps(runs, indent=1)}\n--- operator:\n{self.operator.tail(15)}\n--- prometheus:\n{self.prom.tail(5)}"


def _namespace(kube: Kube, cluster: LocalCluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_until(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30, f"{name}'s ServiceAccount")
    return name


def _runner_pgid(kube: Kube, ns: str, run: str) -> int:
    """The process group of the run's runner on the local node (its pid file names the leader)."""
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{RUN_LABEL}={run}")["items"]
    (pod,) = [p for p in pods if p["status"].get("phase") == "Running"]
    pid_file = layout.state_dir() / "node" / "pods" / pod["metadata"]["uid"] / "pids" / CONTAINER_NAME
    return int(pid_file.read_text())


@pytest.fixture(scope="module")
def scenario(
    cluster: LocalCluster, kube: Kube, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("prometheus")
    manifests = Helm(workdir=workdir).manifests(VALUES)
    (service,) = find(manifests, "Service")
    (monitor,) = find(manifests, "ServiceMonitor")
    (rule,) = find(manifests, "PrometheusRule")
    (endpoint,) = monitor["spec"]["endpoints"]
    job = service["metadata"]["name"]
    scrape = {
        "job_name": job,
        "honor_labels": endpoint["honorLabels"],
        "metrics_path": endpoint["path"],
        "static_configs": [
            {
                "targets": [f"127.0.0.1:{operator.metrics_port}"],
                "labels": {"namespace": service["metadata"]["namespace"]},
            }
        ],
    }
    prom = Prometheus(workdir, scrape, rule["spec"])
    prom.start()
    ns = _namespace(kube, cluster, "t-observability")
    quota_ns = _namespace(kube, cluster, "t-observability-quota")
    sc = Scenario(ns, quota_ns, job, prom, operator, kube)
    try:
        kube.create(
            f"/api/v1/namespaces/{quota_ns}/resourcequotas",
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "no-jobs"},
                "spec": {"hard": {"count/jobs.batch": "0"}},
            },
        )
        runs = [
            training_run(FROZEN, totalTimesteps=1_000_000, checkpoint={"everySteps": 1_000_000}),
            training_run(
                TRAINED,
                totalTimesteps=2048,
                checkpoint={"everySteps": 1024},
                evaluation={"everySteps": 1024, "episodes": 2},
            ),
            training_run(BROKEN, environment={"id": "CartPoel-v1"}),
        ]
        for manifest in runs:
            kube.create(TR.format(ns=ns), manifest)
        kube.create(TR.format(ns=quota_ns), training_run(NO_JOBS))
        kube.create(
            BM.format(ns=ns),
            benchmark(
                BENCH, [{"name": "ppo", "trainingRunRef": {"name": TRAINED}}], ["CartPole-v1"], episodes=4, nEnvs=2
            ),
        )
        yield sc
    finally:
        if sc.frozen_pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sc.frozen_pgid, signal.SIGCONT)
        for name in (ns, quota_ns):
            try:
                kube.delete(f"/api/v1/namespaces/{name}")
            except ApiError as e:
                if e.status != 404:
                    raise
        if operator.proc is None:
            operator.start()
        prom.stop()


def test_runs_train_fail_and_freeze_while_prometheus_scrapes(scenario: Scenario) -> None:
    sc, kube = scenario, scenario.kube
    # Freeze the long run's runner once it reports progress: Running, but no progress from now on.
    wait_until(
        lambda: (status(kube, sc.ns, FROZEN).get("progress") or {}).get("timesteps", 0) > 0,
        600,
        f"{FROZEN} to report progress",
        interval=1,
        describe=sc.describe,
    )
    sc.frozen_pgid = _runner_pgid(kube, sc.ns, FROZEN)
    os.killpg(sc.frozen_pgid, signal.SIGSTOP)
    sc.frozen_at = time.time()

    def finished(name: str) -> bool:
        return status(kube, sc.ns, name).get("phase") in ("Succeeded", "Failed")

    for name, phase in ((TRAINED, "Succeeded"), (BROKEN, "Failed")):
        wait_until(
            functools.partial(finished, name),
            600,
            f"{name} to finish",
            interval=1,
            describe=sc.describe,
        )
        assert status(kube, sc.ns, name)["phase"] == phase, sc.describe()
    assert status(kube, sc.ns, BROKEN)["reason"] == "UserError"
    bench = wait_until(
        lambda: (
            (s := kube.get(f"{BM.format(ns=sc.ns)}/{BENCH}").get("status") or {}).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        600,
        "the Benchmark to finish",
        interval=1,
        describe=sc.describe,
    )
    assert bench["phase"] == "Succeeded", bench
    assert status(kube, sc.ns, FROZEN)["phase"] == "Running"


def _firing(sc: Scenario, alert: str, **labels: str) -> list[dict[str, str]]:
    return [a for a in sc.prom.alerts(alert) if labels.items() <= a.items()]


def _rule_exprs(sc: Scenario) -> dict[str, str]:
    return {r["name"]: r["query"] for g in sc.prom.api("rules", type="alert")["groups"] for r in g["rules"]}


def test_failed_stalled_and_reconcile_error_alerts_fire_for_the_right_objects(scenario: Scenario) -> None:
    sc = scenario
    exprs = _rule_exprs(sc)
    assert set(exprs) == {
        "KubegymRunFailed",
        "KubegymRunStalled",
        "KubegymGpuIdle",
        "KubegymOperatorDown",
        "KubegymReconcileErrors",
    }

    (failed,) = wait_until(lambda: _firing(sc, "KubegymRunFailed", namespace=sc.ns), 60, "KubegymRunFailed")
    assert (failed["name"], failed["kind"], failed["reason"]) == (BROKEN, "TrainingRun", "UserError")
    assert sc.prom.query(exprs["KubegymRunFailed"])

    # (Other tests of the session may make reconciles of other kinds fail too.)
    wait_until(lambda: _firing(sc, "KubegymReconcileErrors", kind="TrainingRun"), 60, "KubegymReconcileErrors")
    assert sc.prom.query(exprs["KubegymReconcileErrors"])
    # The quota's rejection is counted under the API's reason.
    assert sc.prom.finite('kubegym_errors_total{kind="TrainingRun", reason="Forbidden"} > 0')

    # Stalled: the frozen run after a minute without progress; never the finished or failed ones.
    stalled = wait_until(
        lambda: _firing(sc, "KubegymRunStalled", namespace=sc.ns),
        240,
        "KubegymRunStalled",
        interval=1,
        describe=sc.describe,
    )
    assert [a["name"] for a in stalled] == [FROZEN]
    assert sc.prom.query(exprs["KubegymRunStalled"])
    sc.timings["freeze_to_stalled_alert_s"] = time.time() - sc.frozen_at
    # Another minute's worth of the frozen run shows no progress in the gauge either.
    since = sc.prom.finite(f'time() - kubegym_trainingrun_last_progress_timestamp_seconds{{name="{FROZEN}"}}')
    assert float(since[0]["value"][1]) > 60
    # The operator flags it Idle too (the test operator's threshold is 45 s), but it holds no GPU:
    # KubegymGpuIdle stays quiet.
    wait_until(
        lambda: sc.prom.finite(f'kubegym_trainingrun_idle{{name="{FROZEN}"}} == 1'),
        120,
        "the frozen run's Idle gauge",
        interval=1,
        describe=sc.describe,
    )
    assert sc.prom.query(exprs["KubegymGpuIdle"]) == []
    assert not _firing(sc, "KubegymGpuIdle")


def _substitute(expr: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], expr)


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    sc = scenario
    variables = {"namespace": sc.ns, "run": TRAINED, "benchmark": BENCH, "job": sc.job, "__rate_interval": "1m"}
    empty: list[str] = []
    checked = 0
    for path in sorted((CHART / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
            assert match, var["definition"]
            selector, label = match.groups()
            values = {r["metric"].get(label) for r in sc.prom.query(_substitute(selector, variables))}
            if variables[var["name"]] not in values:
                empty.append(f"{path.name} variable {var['name']}: {var['definition']} → {sorted(map(str, values))}")
            checked += 1
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = _substitute(target["expr"], variables)
                if not sc.prom.finite(expr):
                    empty.append(f"{path.name} panel {panel['title']!r}: {expr}")
                checked += 1
    assert not empty, "no data for:\n" + "\n".join(empty)
    assert checked > 40


def _operator_serves(sc: Scenario, namespace: str, name: str) -> bool:
    """Whether the operator's /metrics has a series of that object."""
    with urllib.request.urlopen(f"http://127.0.0.1:{sc.operator.metrics_port}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return any(f'namespace="{namespace}"' in line and f'name="{name}"' in line for line in lines)


def test_a_deleted_runs_series_are_gone_at_the_first_scrape_after_its_deletion(scenario: Scenario) -> None:
    sc, prom = scenario, scenario.prom
    series = f'{{__name__=~"kubegym_.+", namespace="{sc.ns}", name="{TRAINED}"}}'
    before = prom.query(series)
    assert len(before) >= 8, before  # status, info, progress, reward, checkpoints, ...
    assert _operator_serves(sc, sc.ns, TRAINED)

    deleted_at = time.time()
    sc.kube.delete(f"{TR.format(ns=sc.ns)}/{TRAINED}")
    # The operator drops the run's series when its DELETED watch event arrives ...
    dropped_at = wait_until(
        lambda: not _operator_serves(sc, sc.ns, TRAINED) and time.time(), 10, "the operator to drop them"
    )
    # ... so the next scrape lacks them and Prometheus marks them stale at that scrape.
    scraped_at = wait_for_scrape_after(prom, dropped_at)
    wait_until(lambda: not prom.query(series), 2 * SCRAPE_INTERVAL, "Prometheus to drop the series")
    assert not prom.query(series, at=scraped_at + 0.001)
    # The namespace still has runs: its counts remain (with the deleted run no longer counted).
    assert prom.query(f'kubegym_objects{{namespace="{sc.ns}", kind="TrainingRun", phase="Succeeded"}} == 0')
    sc.timings["delete_to_operator_s"] = dropped_at - deleted_at
    sc.timings["delete_to_prometheus_s"] = scraped_at - deleted_at
    print(f"\nobservability timings: {json.dumps({k: round(v, 3) for k, v in sc.timings.items()})}")
    assert scraped_at - dropped_at <= SCRAPE_INTERVAL + 0.5
    assert scraped_at - deleted_at < 5 * SCRAPE_INTERVAL


def test_operator_down_fires_when_the_operator_stops_and_clears_when_it_is_back(scenario: Scenario) -> None:
    sc = scenario
    sc.operator.stop()
    try:
        (down,) = wait_until(lambda: _firing(sc, "KubegymOperatorDown"), 30, "KubegymOperatorDown", interval=0.5)
        assert (down["job"], down["namespace"]) == (sc.job, "kubegym-system")
        assert sc.prom.query(_rule_exprs(sc)["KubegymOperatorDown"])
    finally:
        sc.operator.start()
    wait_until(lambda: sc.prom.finite(f'up{{job="{sc.job}"}} == 1'), 60, "the operator to be scraped again")
    wait_until(lambda: not _firing(sc, "KubegymOperatorDown"), 30, "KubegymOperatorDown to clear")
