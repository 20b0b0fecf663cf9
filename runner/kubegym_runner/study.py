"""``kubegym-runner report``: an Experiment's report from its runs' data in S3.

Reads every finished run's ``eval/evaluations.json`` (the learning curve) and ``eval/final.json``
(the final evaluation's episodes), and the final Benchmarks' ``report/episodes.csv`` when there
were any; computes the scores and aggregates (:mod:`kubegym_runner.analysis`); writes under
``<runPrefix>/report/``: ``runs.csv`` and ``runs.parquet`` (per run), ``configurations.csv``
(aggregates), ``curves.csv`` (every evaluation), ``learning_curves.png``, ``final_scores.png``
and, last, ``report.json`` indexing them. Then it patches the Experiment's ``results``, ``best``
and ``report`` through its own identity, which may patch that status and nothing else.

The status is the deliverable, so a failed status write fails the pod (an infrastructure
error: the Job retries). A run whose data is missing is reported without a score, not an
error; no score at all is a user error (nothing to compare).
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubegym_api.experiment import BestConfiguration, ConfigurationResult, ExperimentReportFiles
from kubegym_api.runnerconfig import ExperimentReportConfig, ReportRun, RunOutcome
from kubegym_runner import analysis, report
from kubegym_runner.analysis import BootstrapSettings, RunData
from kubegym_runner.checkpoints import RunLayout
from kubegym_runner.errors import InfraError, UserError
from kubegym_runner.progress import StatusWriter
from kubegym_runner.storage import S3Uri, Storage

log = logging.getLogger(__name__)

REPORT_FOLDER = "report"
EVALUATIONS_NAME = "evaluations.json"
FINAL_NAME = "final.json"
BENCHMARK_EPISODES = "report/episodes.csv"
FILES = {
    "runs_csv": ("runs.csv", "text/csv"),
    "runs_parquet": ("runs.parquet", "application/vnd.apache.parquet"),
    "configurations_csv": ("configurations.csv", "text/csv"),
    "curves_csv": ("curves.csv", "text/csv"),
    "learning_curves_png": ("learning_curves.png", "image/png"),
    "final_scores_png": ("final_scores.png", "image/png"),
    # A PBT population's only:
    "lineage_csv": ("lineage.csv", "text/csv"),
    "population_png": ("population.png", "image/png"),
    "report_json": ("report.json", "application/json"),
}
#: The files only a PBT population's report has.
POPULATION_FILES = frozenset({"lineage_csv", "population_png"})


def _json(storage: Storage, uri: S3Uri) -> Any:
    data = storage.get_bytes(uri)
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        log.warning("ignoring unreadable %s", uri)
        return None


def parse_evaluations(history: Any) -> tuple[tuple[int, float], ...]:
    """(timesteps, mean return) of ``evaluations.json`` records, by timesteps."""
    if not isinstance(history, list):
        return ()
    points = {
        int(e["timesteps"]): float(e["meanReward"])
        for e in history
        if isinstance(e, dict) and isinstance(e.get("timesteps"), int) and isinstance(e.get("meanReward"), int | float)
    }
    return tuple(sorted(points.items()))


def parse_final(final: Any) -> tuple[tuple[float, ...] | None, int | None]:
    """The final evaluation's episode returns and timesteps."""
    if not isinstance(final, dict) or not isinstance(final.get("episodeRewards"), list):
        return None, None
    returns = tuple(float(r) for r in final["episodeRewards"])
    steps = final.get("timesteps")
    return (returns or None), (int(steps) if isinstance(steps, int) else None)


def load_run(storage: Storage, bucket: str, run: ReportRun, benchmark: Mapping[str, Sequence[float]]) -> RunData:
    """One run's raw numbers from S3 (missing files are noted, not fatal)."""
    layout = RunLayout.of(bucket, run.run_prefix)
    notes: list[str] = []
    evaluations = parse_evaluations(_json(storage, layout.eval.join(EVALUATIONS_NAME)))
    final_returns, final_steps = None, None
    if run.outcome == RunOutcome.Succeeded:
        final_returns, final_steps = parse_final(_json(storage, layout.eval.join(FINAL_NAME)))
        if final_returns is None:
            notes.append(f"{run.name}: no final evaluation at {layout.eval.join(FINAL_NAME)}")
    returns = benchmark.get(run.benchmark_model) if run.benchmark_model else None
    if run.benchmark_model and returns is None:
        notes.append(f"{run.name}: not in the final Benchmark's episodes")
    return RunData(
        run=run,
        evaluations=evaluations,
        final_returns=final_returns,
        final_timesteps=final_steps,
        benchmark_returns=tuple(returns) if returns else None,
        notes=tuple(notes),
    )


def load_benchmark_returns(storage: Storage, bucket: str, prefixes: Sequence[str]) -> dict[str, list[float]]:
    """Every model's episode returns in the final Benchmarks (model name = run name)."""
    out: dict[str, list[float]] = {}
    for prefix in prefixes:
        uri = S3Uri(bucket, prefix.strip("/")).join(BENCHMARK_EPISODES)
        data = storage.get_bytes(uri)
        if data is None:
            log.warning("no Benchmark episodes at %s", uri)
            continue
        for episode in report.read_episodes_csv(data):
            out.setdefault(episode.model, []).append(episode.ret)
    return out


@dataclass
class Outcome:
    """What the report found and wrote."""

    results: list[ConfigurationResult]
    best: BestConfiguration | None
    files: ExperimentReportFiles
    notes: list[str]


def versions() -> dict[str, str]:
    """Library versions behind the numbers (another scipy may draw other bootstrap samples)."""
    import matplotlib
    import numpy
    import pandas
    import pyarrow
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def build_report(config: ExperimentReportConfig, storage: Storage) -> tuple[Outcome, dict[str, bytes]]:
    """Read the runs, compute everything, and render the files (not yet written)."""
    bucket = config.storage.bucket
    storage.check_bucket(bucket, config.run_prefix)
    settings = BootstrapSettings(config.confidence_level, config.bootstrap_resamples, config.bootstrap_seed)
    benchmark = load_benchmark_returns(storage, bucket, config.benchmark_prefixes)
    runs = [load_run(storage, bucket, run, benchmark) for run in config.runs]
    notes = [note for r in runs for note in r.notes]
    table = analysis.runs_table(runs, config.configurations, config.objective)
    results = analysis.aggregate(table, config.configurations, config.objective, settings)
    if not results:
        raise UserError(
            f"no run of Experiment {config.experiment} has a score for objective {config.objective.metric} "
            f"({len(config.runs)} runs; {'; '.join(notes[:3]) or 'all failed'})"
        )
    best = analysis.best_of(results)
    curves = analysis.curves_table(runs)
    folder = S3Uri(bucket, config.run_prefix.strip("/")).join(REPORT_FOLDER)
    written = [key for key in FILES if config.population or key not in POPULATION_FILES]
    files = ExperimentReportFiles(
        **{key: str(folder.join(FILES[key][0])) for key in written},
        statistic=config.objective.statistic,
        confidence_level=settings.confidence,
        method=settings.method,
        bootstrap_resamples=settings.resamples,
        bootstrap_seed=settings.seed,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    blobs = {
        "runs_csv": analysis.csv_bytes(table),
        "runs_parquet": analysis.parquet_bytes(table),
        "configurations_csv": analysis.csv_bytes(analysis.configurations_table(config.configurations, results)),
        "curves_csv": analysis.csv_bytes(curves),
        "learning_curves_png": analysis.learning_curves_png(curves, config.configurations, settings, config.experiment),
        "final_scores_png": analysis.final_scores_png(
            table, config.configurations, results, config.objective, settings, config.experiment
        ),
    }
    if config.population:
        blobs["lineage_csv"] = analysis.csv_bytes(analysis.lineage_table(config.population))
        blobs["population_png"] = analysis.population_png(curves, config.population, config.experiment)
    document = {
        "experiment": config.experiment,
        "objective": _dump(config.objective),
        "configurations": [_dump(c) for c in config.configurations],
        "population": [_dump(m) for m in config.population],
        "results": [_dump(r) for r in results],
        "best": _dump(best) if best else None,
        "report": _dump(files),
        "runs": json.loads(table.to_json(orient="records")),
        "notes": notes,
        "versions": versions(),
    }
    blobs["report_json"] = json.dumps(document, indent=2).encode()
    return Outcome(results, best, files, notes), blobs


def write_files(storage: Storage, files: ExperimentReportFiles, blobs: Mapping[str, bytes]) -> None:
    """Data first, plots next, the index last: a reader that finds report.json finds the rest."""
    for key, (_, content_type) in FILES.items():
        uri = getattr(files, key)
        if uri is not None:
            storage.put_bytes(S3Uri.parse(uri), blobs[key], content_type)
    log.info("report in %s", S3Uri.parse(str(files.report_json)).key.rsplit("/", 1)[0])


def status_patch(outcome: Outcome) -> dict[str, Any]:
    """The report Job's part of the Experiment's status."""
    return {
        "status": {
            "results": [_dump(r) for r in outcome.results],
            "best": _dump(outcome.best) if outcome.best else None,
            "report": _dump(outcome.files),
        }
    }


def run_report(config: ExperimentReportConfig, storage: Storage, writer: StatusWriter | None) -> Outcome:
    """Build, write and report; a status write that fails is retried by the Job."""
    outcome, blobs = build_report(config, storage)
    write_files(storage, outcome.files, blobs)
    for note in outcome.notes:
        log.warning("%s", note)
    if writer is not None:
        try:
            writer.patch(status_patch(outcome))
        except Exception as e:  # any API failure: the Job retries the pod
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise InfraError(f"could not write the Experiment's status: {first}") from e
    return outcome
