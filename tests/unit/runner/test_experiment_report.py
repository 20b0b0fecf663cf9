"""An Experiment's report: run scores, aggregates equal to a recomputation with the shared stats
module, tables that read back, plots, the files in order, and the status patch."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubegym_api.base import Statistic
from kubegym_api.experiment import Direction, MemberStatus, Objective, ObjectiveMetric
from kubegym_api.runnerconfig import ExperimentReportConfig, ReportConfiguration, ReportRun, RunOutcome
from kubegym_api.storage import S3Storage
from kubegym_runner import analysis, stats, study
from kubegym_runner.analysis import BootstrapSettings, RunData
from kubegym_runner.errors import InfraError, UserError
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage

CONFIGS = [
    ReportConfiguration(id="c0", hyperparameters={"learning_rate": 0.0003}),
    ReportConfiguration(id="c1", hyperparameters={"learning_rate": 0.001}),
]
SETTINGS = BootstrapSettings(resamples=500)
PNG = b"\x89PNG\r\n\x1a\n"


class MemoryStorage(Storage):
    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes: list[str] = []

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        return None

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self.objects[(uri.bucket, uri.key)] = data
        self.writes.append(uri.key)

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self.objects.get((uri.bucket, uri.key))

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return [ObjectInfo(k, len(v)) for (b, k), v in self.objects.items() if b == prefix.bucket]


def run(name: str, config: str, seed: int, outcome: RunOutcome = RunOutcome.Succeeded) -> ReportRun:
    return ReportRun(
        name=name,
        configuration=config,
        seed=seed,
        outcome=outcome,
        run_prefix=f"runs/lab/{name}",
        total_timesteps=10000,
    )


def data(
    name: str,
    config: str,
    seed: int,
    final: list[float] | None,
    curve: list[tuple[int, float]],
    outcome: RunOutcome = RunOutcome.Succeeded,
) -> RunData:
    return RunData(
        run(name, config, seed, outcome),
        evaluations=tuple(curve),
        final_returns=tuple(final) if final is not None else None,
        final_timesteps=10240,
    )


RUNS = [
    data("x-c0-s0", "c0", 0, [100.0, 120.0], [(2048, 30.0), (4096, 80.0)]),
    data("x-c1-s0", "c1", 0, [500.0, 480.0], [(2048, 60.0), (4096, 300.0)]),
    data("x-c0-s1", "c0", 1, [90.0, 94.0], [(2048, 20.0), (4096, 70.0)]),
    data("x-c1-s1", "c1", 1, [400.0, 450.0], [(2048, 50.0), (4096, 250.0)]),
    data("x-c0-s2", "c0", 2, None, [(2048, 10.0)], RunOutcome.EarlyStopped),
    data("x-c1-s2", "c1", 2, None, [], RunOutcome.Failed),
]


def test_run_scores_per_metric() -> None:
    ok, stopped, failed = RUNS[0], RUNS[4], RUNS[5]
    final = Objective()
    assert analysis.run_score(ok, final) == 110.0
    assert analysis.run_score(stopped, final) == 10.0  # its last evaluation: stopping hides nothing
    assert analysis.run_score(failed, final) is None
    assert analysis.run_score(ok, Objective(metric=ObjectiveMetric.BestEvaluation)) == 110.0
    assert analysis.run_score(ok, Objective(metric=ObjectiveMetric.MeanEvaluation)) == 55.0
    minimize = Objective(metric=ObjectiveMetric.BestEvaluation, direction=Direction.Minimize)
    assert analysis.run_score(ok, minimize) == 30.0
    bench = RunData(ok.run, benchmark_returns=(1.0, 2.0, 3.0, 100.0))
    assert analysis.run_score(bench, Objective(metric=ObjectiveMetric.Benchmark, statistic=Statistic.Median)) == 2.5


def test_runs_table_has_one_row_per_run_with_hyperparameter_columns() -> None:
    table = analysis.runs_table(RUNS, CONFIGS, Objective())
    assert list(table["run"]) == [r.run.name for r in RUNS]
    assert list(table.columns[:5]) == ["run", "configuration", "seed", "outcome", "learning_rate"]
    assert table.loc[0, "learning_rate"] == 0.0003 and table.loc[1, "learning_rate"] == 0.001
    assert table.loc[0, "final_reward"] == 110.0 and table.loc[0, "final_std"] == 10.0
    assert pd.isna(table.loc[5, "score"])
    assert table.loc[4, "outcome"] == "EarlyStopped" and table.loc[4, "score"] == 10.0


def test_aggregates_equal_a_recomputation_from_the_run_scores() -> None:
    table = analysis.runs_table(RUNS, CONFIGS, Objective())
    results = analysis.aggregate(table, CONFIGS, Objective(), SETTINGS)
    assert [r.configuration for r in results] == ["c1", "c0"]  # best first
    assert [r.rank for r in results] == [1, 2]
    for result in results:
        scores = table[(table["configuration"] == result.configuration) & table["score"].notna()]
        raw = scores.sort_values("seed")["score"].to_numpy(dtype=float)
        expected = stats.interval_estimate([raw], Statistic.IQM, confidence=0.95, resamples=500, seed=0)
        assert (result.score, result.ci_lower, result.ci_upper) == (
            round(expected.value, 4),
            round(expected.low, 4),
            round(expected.high, 4),
        )
        assert result.ci_lower <= result.score <= result.ci_upper
        assert result.runs == len(raw)
    c0 = next(r for r in results if r.configuration == "c0")
    assert (c0.early_stopped, c0.failed, c0.min, c0.max) == (1, 0, 10.0, 110.0)
    c1 = results[0]
    assert c1.failed == 1 and c1.runs == 2
    best = analysis.best_of(results)
    assert best is not None and (best.configuration, best.summary) == ("c1", "learning_rate=0.001")


def test_minimize_ranks_the_lowest_first() -> None:
    table = analysis.runs_table(RUNS, CONFIGS, Objective(direction=Direction.Minimize))
    results = analysis.aggregate(table, CONFIGS, Objective(direction=Direction.Minimize), SETTINGS)
    assert [r.configuration for r in results] == ["c0", "c1"]


def test_tables_read_back_exactly() -> None:
    table = analysis.runs_table(RUNS, CONFIGS, Objective())
    again = pd.read_csv(io.BytesIO(analysis.csv_bytes(table)))
    assert list(again["score"].dropna()) == list(table["score"].dropna())
    parquet = pd.read_parquet(io.BytesIO(analysis.parquet_bytes(table)))
    assert list(parquet["run"]) == list(table["run"]) and list(parquet["learning_rate"]) == [0.0003, 0.001] * 3
    configs = analysis.configurations_table(CONFIGS, analysis.aggregate(table, CONFIGS, Objective(), SETTINGS))
    assert list(configs["configuration"]) == ["c1", "c0"] and list(configs["rank"]) == [1, 2]


def test_curve_band_means_over_the_runs_present() -> None:
    curves = analysis.curves_table(RUNS)
    band = analysis.curve_band(curves, "c0", SETTINGS)
    assert band is not None and band.runs == 3
    assert list(band.timesteps) == [2048.0, 4096.0]
    assert band.mean[0] == pytest.approx(20.0)  # three runs at 2048
    assert band.mean[1] == pytest.approx(75.0)  # the stopped run did not get to 4096
    assert band.low[0] <= band.mean[0] <= band.high[0]
    assert analysis.curve_band(curves, "nope", SETTINGS) is None


def test_plots_are_pngs() -> None:
    table = analysis.runs_table(RUNS, CONFIGS, Objective())
    results = analysis.aggregate(table, CONFIGS, Objective(), SETTINGS)
    curves = analysis.curves_table(RUNS)
    assert analysis.learning_curves_png(curves, CONFIGS, SETTINGS, "x").startswith(PNG)
    assert analysis.final_scores_png(table, CONFIGS, results, Objective(), SETTINGS, "x").startswith(PNG)


# --- the whole report from S3 ------------------------------------------------------------------


def seeded_storage() -> MemoryStorage:
    storage = MemoryStorage()
    for d in RUNS:
        history = [{"timesteps": t, "meanReward": r, "stdReward": 0.0, "episodes": 2} for t, r in d.evaluations]
        storage.put_bytes(S3Uri("bkt", f"{d.run.run_prefix}/eval/evaluations.json"), json.dumps(history).encode())
        if d.final_returns is not None:
            final = {
                "timesteps": 10240,
                "meanReward": float(np.mean(d.final_returns)),
                "episodeRewards": list(d.final_returns),
            }
            storage.put_bytes(S3Uri("bkt", f"{d.run.run_prefix}/eval/final.json"), json.dumps(final).encode())
    storage.writes.clear()
    return storage


def config(**kw: Any) -> ExperimentReportConfig:
    return ExperimentReportConfig(
        experiment="x",
        configurations=CONFIGS,
        runs=[d.run for d in RUNS],
        bootstrap_resamples=500,
        storage=S3Storage(bucket="bkt"),
        run_prefix="runs/lab/experiments/x",
        **kw,
    )


class Writer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []

    def patch(self, body: Any) -> None:
        if self.fail:
            raise RuntimeError("403 Forbidden\nlong body")
        self.bodies.append(dict(body))


def test_report_writes_every_file_index_last_and_patches_the_status() -> None:
    storage, writer = seeded_storage(), Writer()
    outcome = study.run_report(config(), storage, writer)
    folder = "runs/lab/experiments/x/report/"
    assert storage.writes[-1] == folder + "report.json"
    assert sorted(storage.writes) == sorted(
        folder + name for key, (name, _) in study.FILES.items() if key not in study.POPULATION_FILES
    )
    (body,) = writer.bodies
    st = body["status"]
    assert [r["configuration"] for r in st["results"]] == ["c1", "c0"]
    assert st["best"]["configuration"] == "c1" and st["best"]["summary"] == "learning_rate=0.001"
    assert st["report"]["runsCsv"] == f"s3://bkt/{folder}runs.csv"
    assert st["report"]["statistic"] == "IQM" and st["report"]["bootstrapResamples"] == 500
    # The status number is recomputable from runs.csv alone.
    runs_csv = pd.read_csv(io.BytesIO(storage.objects[("bkt", folder + "runs.csv")]))
    c1 = runs_csv[(runs_csv["configuration"] == "c1") & runs_csv["score"].notna()].sort_values("seed")
    recomputed = stats.interval_estimate([c1["score"].to_numpy()], "IQM", resamples=500, seed=0)
    assert st["best"]["score"] == round(recomputed.value, 4)
    assert st["best"]["ciLower"] == round(recomputed.low, 4)
    index = json.loads(storage.objects[("bkt", folder + "report.json")])
    assert index["best"] == st["best"] and len(index["runs"]) == 6 and "scipy" in index["versions"]
    assert outcome.notes == []


def test_a_population_report_plots_the_members_and_tables_their_lineage() -> None:
    """PBT: the runs as two members' segments, one of which copied the other."""
    names = [d.run.name for d in RUNS]
    population = [
        MemberStatus.model_validate(
            {
                "member": "m0",
                "seed": 0,
                "lineage": [
                    {
                        "generation": 0,
                        "step": 0,
                        "run": names[0],
                        "hyperparameters": {"learning_rate": 1e-4},
                        "score": 1.0,
                    },
                    {
                        "generation": 1,
                        "step": 5120,
                        "run": names[1],
                        "source": names[3],
                        "copiedFrom": "m1",
                        "hyperparameters": {"learning_rate": 1.2e-3},
                    },
                ],
            }
        ),
        MemberStatus.model_validate(
            {
                "member": "m1",
                "seed": 1,
                "lineage": [
                    {"generation": 0, "step": 0, "run": names[3], "hyperparameters": {"learning_rate": 1e-3}},
                    {
                        "generation": 1,
                        "step": 5120,
                        "run": names[4],
                        "source": names[3],
                        "hyperparameters": {"learning_rate": 1e-3},
                    },
                ],
            }
        ),
    ]
    storage, writer = seeded_storage(), Writer()
    study.run_report(config(population=population), storage, writer)
    folder = "runs/lab/experiments/x/report/"
    assert storage.writes[-1] == folder + "report.json"
    assert {folder + "lineage.csv", folder + "population.png"} <= set(storage.writes)
    assert storage.objects[("bkt", folder + "population.png")].startswith(b"\x89PNG")
    lineage = pd.read_csv(io.BytesIO(storage.objects[("bkt", folder + "lineage.csv")]))
    assert list(lineage["member"]) == ["m0", "m0", "m1", "m1"]
    copied = lineage[lineage["copied_from"].notna()]
    assert (list(copied["run"]), list(copied["source"]), list(copied["hp.learning_rate"])) == (
        [names[1]],
        [names[3]],
        [1.2e-3],
    )
    (body,) = writer.bodies
    assert body["status"]["report"]["populationPng"] == f"s3://bkt/{folder}population.png"
    index = json.loads(storage.objects[("bkt", folder + "report.json")])
    assert [m["member"] for m in index["population"]] == ["m0", "m1"]


def test_a_failed_status_write_is_an_infrastructure_error() -> None:
    with pytest.raises(InfraError, match="403 Forbidden"):
        study.run_report(config(), seeded_storage(), Writer(fail=True))


def test_missing_data_is_noted_and_no_score_at_all_is_a_user_error() -> None:
    storage = seeded_storage()
    del storage.objects[("bkt", "runs/lab/x-c0-s0/eval/final.json")]
    outcome = study.run_report(config(), storage, None)
    assert any("x-c0-s0: no final evaluation" in n for n in outcome.notes)
    with pytest.raises(UserError, match="no run of Experiment x has a score"):
        study.run_report(config(), MemoryStorage(), None)


def test_benchmark_episodes_score_the_runs() -> None:
    storage = seeded_storage()
    rows = ["model,env,seed,env_index,episode,return,length"]
    for i, d in enumerate(RUNS[:4]):
        rows += [f"{d.run.name},CartPole-v1,0,0,{k},{100.0 * (i + 1) + k},100" for k in range(4)]
    storage.put_bytes(S3Uri("bkt", "runs/lab/benchmarks/x-benchmark/report/episodes.csv"), "\n".join(rows).encode())
    runs = [d.run.model_copy(update={"benchmark_model": d.run.name}) for d in RUNS[:4]]
    cfg = config(objective=Objective(metric=ObjectiveMetric.Benchmark)).model_copy(
        update={"runs": runs, "benchmark_prefixes": ["runs/lab/benchmarks/x-benchmark"]}
    )
    outcome = study.run_report(cfg, storage, None)
    assert [r.configuration for r in outcome.results] == ["c1", "c0"]
    # IQM of 400..403 and 200..203 -> 401.5 and 201.5; the configuration's IQM of those.
    assert outcome.results[0].score == pytest.approx(301.5)
