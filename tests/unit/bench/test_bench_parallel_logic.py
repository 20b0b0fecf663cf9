"""bench/bench_parallel.py's arithmetic and report, without a cluster (the bench itself runs on demand)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_parallel.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_parallel", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_parallel"] = module
    spec.loader.exec_module(module)
    return module


def test_crossings_and_interpolation(bench: ModuleType) -> None:
    series = [(0.0, 0), (1.0, 100), (2.0, 200), (10.0, 1000)]
    assert bench.crossing(series, 150) == 1.5
    assert bench.crossing(series, 2000) is None
    assert bench.steps_at(series, 6.0) == 600
    assert bench.steps_at(series, -1.0) == 0 and bench.steps_at(series, 99.0) == 1000


def test_aggregate_over_the_common_stretch(bench: ModuleType) -> None:
    a = [(float(t), 100 * t) for t in range(11)]  # 100 steps/s from t=0
    b = [(t + 2.0, s) for t, s in a]  # the same, 2 s later
    window = bench.aggregate([a, b], 1000)
    assert window.common and window.rate == pytest.approx(200.0)
    assert window.seconds == pytest.approx(8.0 - 3.0)  # from b's 10% (t=3) to a's 80% (t=8)
    assert window.per_run == pytest.approx((100.0, 100.0))
    late = [(t + 30.0, s) for t, s in a]  # no overlap: total over the whole span
    apart = bench.aggregate([a, late], 1000)
    assert not apart.common and apart.rate < 100.0
    with pytest.raises(RuntimeError, match="never sampled"):
        bench.aggregate([a[:5]], 1000)  # last sample at 40%: too short to measure


def test_a_run_that_finished_between_two_reports_is_measured_to_its_last_sample(bench: ModuleType) -> None:
    # Reports every 2 s at 150 steps/s: the last one before the final report is at 60% of the budget.
    short = [(0.0, 0), (2.0, 300), (4.0, 600)]
    window = bench.aggregate([short], 1000)
    assert window.per_run == pytest.approx((150.0,))
    # The first sample already past 10%: the rate counts only the steps between the samples.
    late_start = [(1.0, 200), (3.0, 500), (5.0, 800)]
    assert bench.aggregate([late_start], 1000).per_run == pytest.approx((150.0,))


def test_quick_defaults_and_the_section_replaces_its_markers(bench: ModuleType, tmp_path: Path) -> None:
    quick = bench.parse_args(["--quick"])
    assert (quick.ks, quick.freeze) == ([1, 2], 20.0)
    full = bench.parse_args([])
    assert (full.ks, full.freeze, full.algos) == ([1, 2, 4], 60.0, ["ppo", "dqn"])
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nbefore\n\n{bench.BEGIN}\nold\n{bench.END}\n\nafter\n")
    bench.write_section(doc, f"{bench.BEGIN}\nnew\n{bench.END}", bench.BEGIN, bench.END)
    assert doc.read_text() == f"# Benchmarks\n\nbefore\n\n{bench.BEGIN}\nnew\n{bench.END}\n\nafter\n"


def test_outage_loss(bench: ModuleType) -> None:
    outage = bench.Outage(100_000, 6000, 60.0, 40_000, 57_600.0, 60_000.0, [(33.0, "False")])
    assert outage.loss == pytest.approx(0.04)
    assert math.isnan(bench.Outage(1, 1, 60.0, 0, 0.0, 0.0, []).loss)
