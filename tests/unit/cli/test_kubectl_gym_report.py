"""``kubectl gym report``: the tables from an Experiment's status and runs.csv, the downloads."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from kubegym_cli import main as cli_main
from kubegym_cli import report

EXPERIMENT: dict[str, Any] = {
    "metadata": {"name": "sweep", "namespace": "lab"},
    "spec": {"template": {"checkpoint": {"storage": {"endpoint": "http://minio:9000"}}}},
    "status": {
        "phase": "Succeeded",
        "message": "6 runs done, report written",
        "completions": "6/6",
        "budget": {"totalTimesteps": 60000, "savedTimesteps": 6000},
        "results": [
            {
                "rank": 1,
                "configuration": "c1",
                "hyperparameters": {"learning_rate": 0.003},
                "runs": 3,
                "score": 480.5,
                "ciLower": 450.0,
                "ciUpper": 500.0,
                "mean": 470.0,
                "std": 12.0,
                "min": 450.0,
                "max": 500.0,
                "earlyStopped": 0,
                "failed": 0,
            },
            {
                "rank": 2,
                "configuration": "c0",
                "hyperparameters": {"learning_rate": 0.0003},
                "runs": 3,
                "score": 120.25,
                "ciLower": 90.0,
                "ciUpper": 150.0,
                "mean": 121.0,
                "std": 20.0,
                "min": 90.0,
                "max": 150.0,
                "earlyStopped": 1,
                "failed": 0,
            },
        ],
        "best": {
            "configuration": "c1",
            "summary": "learning_rate=0.003",
            "score": 480.5,
            "ciLower": 450.0,
            "ciUpper": 500.0,
        },
        "report": {
            "statistic": "IQM",
            "confidenceLevel": 0.95,
            "method": "percentile bootstrap",
            "bootstrapResamples": 2000,
            "bootstrapSeed": 0,
            "runsCsv": "s3://kubegym/lab/experiments/sweep/report/runs.csv",
            "finalScoresPng": "s3://kubegym/lab/experiments/sweep/report/final_scores.png",
        },
    },
}


def test_results_table_lists_configurations_best_first_with_intervals() -> None:
    text = report.render_results(EXPERIMENT)
    lines = text.splitlines()
    assert lines[0] == "Experiment lab/sweep: Succeeded (6/6 runs done)"
    header = next(line for line in lines if line.startswith("RANK"))
    assert "IQM" in header and "95% CI" in header
    rows = [line for line in lines if line.startswith(("1 ", "2 "))]
    assert "c1" in rows[0] and "learning_rate=0.003" in rows[0] and "[450, 500]" in rows[0]
    assert "c0" in rows[1] and "120.25" in rows[1]
    assert "best: c1 (learning_rate=0.003): IQM 480.5 [450, 500]" in text
    assert "early stopping saved 6000 of 60000 timesteps" in text


def test_no_results_yet() -> None:
    pending = {"metadata": {"name": "x", "namespace": "lab"}, "status": {"phase": "Running", "completions": "2/6"}}
    assert "no results yet" in report.render_results(pending)


def test_runs_table_from_the_csv() -> None:
    csv_text = (
        "run,configuration,seed,outcome,learning_rate,timesteps,final_reward,best_evaluation,score\n"
        "sweep-c0-s0,c0,0,Succeeded,0.0003,10240,120.0,130.0,120.0\n"
        "sweep-c0-s1,c0,1,EarlyStopped,0.0003,4096,,30.0,30.0\n"
    )
    lines = report.render_runs(csv_text).splitlines()
    assert lines[0].split() == [
        "RUN",
        "CONFIGURATION",
        "SEED",
        "OUTCOME",
        "TIMESTEPS",
        "FINAL_REWARD",
        "BEST_EVALUATION",
        "SCORE",
    ]
    assert lines[2].split()[3:6] == ["EarlyStopped", "4096", "-"]


def test_endpoint_comes_from_the_flag_then_the_template_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:9000")
    assert report.endpoint_of(EXPERIMENT, "http://flag:9000") == "http://flag:9000"
    assert report.endpoint_of(EXPERIMENT, None) == "http://minio:9000"
    assert report.endpoint_of({"spec": {}}, None) == "http://env:9000"


class FakeApi:
    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = obj

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        assert (group, version, plural) == ("kubegym.io", "v1alpha1", "experiments")
        if self.obj is None:
            raise ApiException(status=404, reason="Not Found")
        return self.obj


def args(*argv: str) -> argparse.Namespace:
    return cli_main.build_parser().parse_args(["report", *argv])


def test_run_prints_the_tables_without_s3(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.run(args("sweep", "--no-download"), FakeApi(EXPERIMENT), "lab") == 0
    assert "best: c1" in capsys.readouterr().out


def test_run_json_and_missing_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.run(args("sweep", "-o", "json", "--no-download"), FakeApi(EXPERIMENT), "lab") == 0
    assert '"configuration": "c1"' in capsys.readouterr().out
    assert report.run(args("nope"), FakeApi(None), "lab") == 1
    assert 'experiment "nope" not found in namespace lab' in capsys.readouterr().err


def test_download_fetches_every_listed_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fetched: list[str] = []

    class Storage:
        @classmethod
        def from_config(cls, storage: Any) -> Storage:
            assert storage.bucket == "kubegym" and storage.endpoint == "http://minio:9000"
            return cls()

        def download_file(self, uri: Any, path: Path) -> None:
            fetched.append(uri.key)
            path.write_bytes(b"x")

    monkeypatch.setattr("kubegym_runner.storage.Storage", Storage)
    files = report.download(EXPERIMENT, tmp_path / "out", "http://minio:9000")
    assert sorted(files) == ["finalScoresPng", "runsCsv"]
    assert fetched == ["lab/experiments/sweep/report/runs.csv", "lab/experiments/sweep/report/final_scores.png"]
    assert (tmp_path / "out" / "final_scores.png").read_bytes() == b"x"
