"""bench/bench_search.py's manifests, summary and report, without a cluster."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kubegym_api.experiment import ExperimentSpec
from kubegym_operator.builders.experiment import plan

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_search.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module
    spec.loader.exec_module(module)
    return module


def test_every_sampler_gets_the_same_study_but_its_own_sampler_and_seed(bench: ModuleType) -> None:
    a = bench.experiment("random-0", "Random", 0, trials=8, steps=8192, episodes=20)
    b = bench.experiment("tpe-0", "TPE", 0, trials=8, steps=8192, episodes=20)
    ExperimentSpec.model_validate(a["spec"])
    sa, sb = a["spec"], b["spec"]
    assert sa["search"]["optuna"]["sampler"] == "Random" and sb["search"]["optuna"]["sampler"] == "TPE"
    sa["search"]["optuna"].pop("sampler"), sb["search"]["optuna"].pop("sampler")
    assert sa == sb  # same space, budget, timesteps, parallelism, benchmark
    p = plan({**a, "metadata": {**a["metadata"], "uid": "u"}})
    assert len(p.runs) == 8


def search(sampler: str, repeat: int, held_out: float | None, phase: str = "Succeeded") -> dict[str, Any]:
    return {
        "sampler": sampler,
        "repeat": repeat,
        "name": f"{sampler.lower()}-{repeat}",
        "phase": phase,
        "heldOut": held_out,
        "trainedTimesteps": 65536,
    }


def test_summary_and_report_show_the_gap_and_its_ci_whichever_way_it_falls(bench: ModuleType) -> None:
    searches = [search("Random", i, s) for i, s in enumerate([120.0, 200.0, 90.0, 300.0, 150.0])]
    searches += [search("TPE", i, s) for i, s in enumerate([400.0, 350.0, 480.0, 200.0, 500.0])]
    summary = bench.summarize(searches)
    assert summary["samplers"]["TPE"]["scores"] == [400.0, 350.0, 480.0, 200.0, 500.0]
    d = summary["difference"]
    assert d["low"] <= d["value"] <= d["high"] and d["value"] > 0
    assert 0.5 < summary["probability"]["value"] <= 1
    args = argparse.Namespace(trials=8, steps=8192, repeats=5, episodes=20)
    section = bench.report(searches, summary, args, "python bench/bench_search.py")
    assert section.startswith(bench.BEGIN) and section.endswith(bench.END)
    assert "| TPE | 400.0, 350.0, 480.0, 200.0, 500.0 |" in section and "65,536" in section
    assert "TPE minus Random, difference of IQMs: **+" in section

    worse = [dict(s, heldOut=s["heldOut"] / 4) if s["sampler"] == "TPE" else s for s in searches]
    assert bench.summarize(worse)["difference"]["value"] < 0  # reported as it falls


def test_a_failed_search_is_named_and_has_no_score(bench: ModuleType) -> None:
    searches = [search("Random", 0, 100.0), search("TPE", 0, None, phase="Failed")]
    summary = bench.summarize(searches)
    assert "TPE" not in summary["samplers"] and "difference" not in summary
    section = bench.report(searches, summary, argparse.Namespace(trials=4, steps=4096, repeats=1, episodes=5), "x")
    assert "Searches that did not succeed: tpe-0." in section
