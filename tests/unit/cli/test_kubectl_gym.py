"""``kubectl gym``: the compare table and JSON from a Benchmark's status; upload's checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kubegym_cli import compare
from kubegym_cli.main import build_parser
from kubegym_cli.upload import UploadError, check_archive, upload

BENCH: dict[str, Any] = {
    "metadata": {"name": "agents", "namespace": "research"},
    "status": {
        "phase": "Succeeded",
        "message": "evaluated 2 of 3 model x environment entries; best strong (IQM 500.0)",
        "bestModel": "strong",
        "bestScore": 500.0,
        "ranking": {
            "statistic": "IQM",
            "confidenceLevel": 0.95,
            "method": "percentile bootstrap (scipy.stats)",
            "bootstrapResamples": 2000,
            "bootstrapSeed": 0,
            "normalization": "None",
            "envs": ["CartPole-v1"],
            "models": [
                {"rank": 1, "model": "strong", "score": 500.0, "ciLower": 500.0, "ciUpper": 500.0},
                {"rank": 2, "model": "weak", "score": 24.25, "ciLower": 23.1, "ciUpper": 27.55},
            ],
            "unranked": ["broken"],
            "probabilityOfImprovement": {
                "leader": "strong",
                "runnerUp": "weak",
                "probability": 1.0,
                "ciLower": 1.0,
                "ciUpper": 1.0,
            },
        },
        "results": [
            {
                "model": "strong",
                "env": "CartPole-v1",
                "episodes": 50,
                "mean": 500.0,
                "iqm": 500.0,
                "latencyP50Ms": 0.31,
            },
            {"model": "weak", "env": "CartPole-v1", "episodes": 50, "mean": 26.1, "iqm": 24.25},
            {
                "model": "broken",
                "env": "CartPole-v1",
                "episodes": 0,
                "error": "model object s3://b/x/model.zip not found",
            },
        ],
        "artifacts": {"episodes": "s3://kubegym/research/benchmarks/agents/report/episodes.csv"},
    },
}


def test_table_shows_ranking_intervals_improvement_entries_and_errors() -> None:
    out = compare.render_table(BENCH)
    lines = out.splitlines()
    assert lines[0].startswith("Benchmark research/agents: Succeeded (evaluated 2 of 3")
    assert (
        "Ranking by IQM over CartPole-v1; 95% CI by percentile bootstrap (scipy.stats), 2000 resamples, seed 0" in out
    )
    assert lines[lines.index("RANK  MODEL   IQM    95% CI") + 1].split() == ["1", "strong", "500", "[500,", "500]"]
    assert "2     weak    24.25  [23.1, 27.55]" in out
    assert "P(strong > weak) = 1  [1, 1]" in out
    assert "Not ranked (an entry failed): broken" in out
    assert "broken  CartPole-v1  failed" in out
    assert "  broken on CartPole-v1: model object s3://b/x/model.zip not found" in out
    assert "episodes: s3://kubegym/research/benchmarks/agents/report/episodes.csv" in out


def test_json_is_the_status_summary() -> None:
    data = json.loads(compare.render_json(BENCH))
    assert data["bestModel"] == "strong" and data["ranking"]["models"][1]["model"] == "weak"
    assert len(data["results"]) == 3 and data["namespace"] == "research"


def test_a_benchmark_without_results_says_so() -> None:
    out = compare.render_table({"metadata": {"name": "b", "namespace": "n"}, "status": {"phase": "Pending"}})
    assert out == "Benchmark n/b: Pending\n\nNo results yet."


def test_parser() -> None:
    args = build_parser().parse_args(["compare", "agents", "-n", "research", "-o", "json"])
    assert (args.benchmark, args.namespace, args.output) == ("agents", "research", "json")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "agents", "-o", "yaml"])


def test_upload_refuses_what_sb3_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match="no such file"):
        check_archive(tmp_path / "missing.zip")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UploadError, match="not a zip file"):
        check_archive(junk)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme", "hi")
    with pytest.raises(UploadError, match="no 'data' member"):
        check_archive(other)


def test_upload_needs_a_bucket_and_a_known_algorithm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.zip"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("data", "{}")
    monkeypatch.delenv("KUBEGYM_BUCKET", raising=False)
    kwargs: dict[str, Any] = {"prefix": "uploads", "endpoint": None, "vecnormalize": None}
    with pytest.raises(UploadError, match="no bucket"):
        upload(model, bucket=None, algorithm="PPO", **kwargs)
    with pytest.raises(UploadError, match="unknown algorithm 'PPO2'"):
        upload(model, bucket="b", algorithm="PPO2", **kwargs)
