"""bench/bench_operator.py's arithmetic, the bare client's copies and the report, without a cluster."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_operator.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_operator", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_operator"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([5.0], 0.99, 5.0), ([1.0, 2.0], 0.0, 1.0), ([1.0, 3.0], 1.0, 3.0)],
)
def test_percentile(bench: ModuleType, values: list[float], q: float, expected: float) -> None:
    assert bench.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan(bench: ModuleType) -> None:
    assert math.isnan(bench.percentile([], 0.5))


def test_a_jobs_copy_for_the_bare_client_drops_server_fields_and_points_at_the_bare_cr(bench: ModuleType) -> None:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "r-train",
            "namespace": bench.WATCHED,
            "uid": "u1",
            "resourceVersion": "7",
            "labels": {"kubegym.io/run": "r", "batch.kubernetes.io/controller-uid": "u1"},
            "ownerReferences": [{"kind": "TrainingRun", "name": "r", "uid": "old", "controller": True}],
        },
        "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": {"metadata": {"labels": {"controller-uid": "u1", "kubegym.io/run": "r"}}, "spec": {}},
        },
        "status": {"active": 1},
    }
    copy = bench.copy_for(job, "new")
    assert copy["metadata"] == {
        "name": "r-train",
        "namespace": bench.BARE,
        "labels": {"kubegym.io/run": "r"},
        "ownerReferences": [{"kind": "TrainingRun", "name": "r", "uid": "new", "controller": True}],
    }
    assert "status" not in copy and "selector" not in copy["spec"]
    assert copy["spec"]["template"]["metadata"]["labels"] == {"kubegym.io/run": "r"}
    assert bench.controller_owner(job) == "r"
    assert job["metadata"]["uid"] == "u1"  # the original is left alone
    assert job["spec"]["template"]["metadata"]["labels"]["controller-uid"] == "u1"


def test_the_report_judges_the_targets(bench: ModuleType, tmp_path: Path) -> None:
    fake = type("B", (), {})()
    fake.args = bench.parse_args(["--quick"])
    fake.figures = bench.Figures(
        scales=[bench.Scale(1000, 13.0, 10.0, 3.0)],
        latencies=[0.2, 0.3, 0.4],
        rss_idle_mb=80,
        rss_live_mb=140,
        rss_after_delete_mb=90,
        idle_cpu_s=0.5,
        idle_api_calls=0,
        failover_s=12.0,
        delete_s=40,
        leftovers={"jobs": 0},
    )
    section = bench.report(fake, "python bench/bench_operator.py", 600)
    assert "| 1000 | 13.0 s | 10.0 s | 1.30x | met" in section
    assert "**NOT met**" not in section
    fake.figures.failover_s = 20.0
    assert "<= 15 s: **NOT met**" in bench.report(fake, "cmd", 600)
    doc = tmp_path / "b.md"
    doc.write_text(f"x\n{bench.BEGIN}\nold\n{bench.END}\ny\n")
    bench.write_section(doc, f"{bench.BEGIN}\nnew\n{bench.END}", bench.BEGIN, bench.END)
    assert doc.read_text() == f"x\n{bench.BEGIN}\nnew\n{bench.END}\ny\n"
