"""bench/bench_sweep.py's comparison report, without a cluster."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_sweep.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sweep", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sweep"] = module
    spec.loader.exec_module(module)
    return module


def figures(seconds: float, scores: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    results = [{"configuration": c, "score": s, "ciLower": lo, "ciUpper": hi} for c, (s, lo, hi) in scores.items()]
    runs = [{"name": "r", "stepsPerSecond": 900.0}]
    return {"seconds": seconds, "phase": "Succeeded", "results": results, "runs": runs}


def test_the_report_gives_the_ratio_and_whether_the_cis_overlap(bench: ModuleType) -> None:
    before = figures(600.0, {"c0": (480.0, 450.0, 500.0), "c1": (200.0, 150.0, 260.0)})
    now = figures(100.0, {"c0": (470.0, 430.0, 495.0), "c1": (400.0, 300.0, 450.0)})
    section = bench.report(before, now, "abc123", "python bench/bench_sweep.py")
    assert "**6.0x faster** (target: at least 5x): met." in section
    assert "| c0 | 480.0 [450.0, 500.0] | 470.0 [430.0, 495.0] | yes |" in section
    assert "| c1 | 200.0 [150.0, 260.0] | 400.0 [300.0, 450.0] | **no** |" in section
    assert section.startswith(bench.BEGIN) and section.endswith(bench.END)


def test_a_slower_tree_misses_the_target(bench: ModuleType) -> None:
    section = bench.report(figures(300.0, {}), figures(100.0, {}), "abc", "cmd")
    assert "**3.0x faster** (target: at least 5x): **NOT met**." in section
