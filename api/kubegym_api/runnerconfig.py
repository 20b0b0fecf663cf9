"""What the operator hands the runner: one configuration model per runner subcommand.

The operator renders a :class:`TrainConfig` (``kubegym-runner train``), an :class:`EvaluateConfig`
(``evaluate``) or an :class:`ExperimentReportConfig` (``report``) into the runner Job's
environment (:data:`~kubegym_api.envvars.CONFIG_ENV`, JSON by :func:`dump_config`); the runner
parses it back with the same model. The training and evaluation configurations derive from the
resources' own models (:class:`~kubegym_api.trainingrun.AgentSpec`,
:class:`~kubegym_api.benchmark.BenchmarkSettings`), so a field the user sets in a spec reaches the
runner with the same name, type and bounds: none is copied by hand.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from kubegym_api import GROUP, VERSION
from kubegym_api.base import Algorithm, Model, Seed
from kubegym_api.benchmark import MAX_MODELS, BenchmarkEnvironments, BenchmarkSettings
from kubegym_api.experiment import MemberStatus, Objective
from kubegym_api.storage import S3Storage
from kubegym_api.tracking import MlflowRunConfig
from kubegym_api.trainingrun import AgentSpec, CheckpointPolicy


class RunRef(Model):
    """Identity of the custom resource the runner reports progress onto."""

    group: str = GROUP
    version: str = VERSION
    plural: str
    namespace: str
    name: str


class TrainConfig(AgentSpec):
    """Everything `kubegym-runner train` needs, rendered by the operator: the TrainingRun's
    :class:`~kubegym_api.trainingrun.AgentSpec` fields as they are, and where the run lives."""

    kind: Literal["train"] = "train"
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    storage: S3Storage
    #: Key prefix of this run's own artifacts (``<prefix>/<namespace>/<name>/<uid>``, as the run's
    #: ``status.artifacts`` records it), fixed by the operator.
    run_prefix: str
    run_uid: str | None = Field(
        default=None,
        max_length=128,
        description="metadata.uid of the TrainingRun: written into every manifest; the runner resumes only from "
        "checkpoints of its own prefix that carry it (None: a configuration from before uids were recorded).",
    )
    resume_from: str | None = Field(default=None, description="s3:// URI of a checkpoint folder to start from.")
    report_to: RunRef | None = None
    report_interval_seconds: float = Field(default=10.0, ge=1.0)
    mlflow: MlflowRunConfig | None = Field(
        default=None, description="The MLflow run to log to (spec.tracking.mlflow), resolved by the operator."
    )
    final_report_timeout_seconds: float = Field(
        default=900.0,
        ge=0.0,
        description="How long the runner retries its final status report (progress 100%, checkpoints, result) "
        "while the API server does not answer; SIGTERM ends the retries sooner. The result also goes to the "
        "pod's termination message and final/manifest.json, where the operator finds it if this report is lost.",
    )


class BootstrapSettings(Model):
    """Confidence intervals of the runner's statistics (a Benchmark's ranking, an Experiment's
    aggregates): their coverage, and the bootstrap's resamples and seed, for recomputation."""

    confidence_level: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)
    bootstrap_seed: int = Field(default=0, ge=0)


class BenchmarkModel(Model):
    """A model the runner evaluates: where it is and which algorithm loads it."""

    name: str = Field(min_length=1, max_length=63, description="Name of the model in results and rankings.")
    uri: str = Field(
        min_length=6,
        max_length=2048,
        description="s3:// URI of a model folder (model.zip, optional vecnormalize.pkl and manifest.json, "
        "as a TrainingRun's final/ or checkpoints/<step>/) or of a .zip archive.",
    )
    algorithm: Algorithm | None = Field(
        default=None,
        description="Algorithm class that loads the archive; defaults to the folder's manifest.json.",
    )


class EvaluateConfig(BenchmarkSettings, BootstrapSettings):
    """Everything `kubegym-runner evaluate` needs, rendered by the operator from a Benchmark: its
    :class:`~kubegym_api.benchmark.BenchmarkSettings` and environments as they are, the models
    resolved to URIs, and where the Benchmark's reports go."""

    kind: Literal["evaluate"] = "evaluate"
    models: list[BenchmarkModel] = Field(min_length=1, max_length=MAX_MODELS)
    environments: BenchmarkEnvironments
    storage: S3Storage
    #: Key prefix of the Benchmark's artifacts (``<prefix>/<namespace>/benchmarks/<name>``).
    run_prefix: str
    report_to: RunRef | None = None
    report_interval_seconds: float = Field(default=10.0, ge=1.0)


class ReportConfiguration(Model):
    """One point of the search: an id and the hyperparameters it sets."""

    id: str = Field(min_length=1, max_length=63)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class RunOutcome(enum.StrEnum):
    """How a run of an Experiment ended, as the report sees it."""

    Succeeded = "Succeeded"
    Failed = "Failed"
    EarlyStopped = "EarlyStopped"


class ReportRun(Model):
    """One finished run of an Experiment, and where its artifacts are."""

    name: str = Field(min_length=1, max_length=253)
    configuration: str = Field(min_length=1, max_length=63)
    seed: Seed
    outcome: RunOutcome
    #: Key prefix of the run's artifacts (``<prefix>/<namespace>/<name>``): ``eval/`` is read.
    run_prefix: str
    total_timesteps: int | None = Field(default=None, ge=1)
    #: Name of the run's model in the final Benchmark, if it was benchmarked.
    benchmark_model: str | None = None


class ExperimentReportConfig(BootstrapSettings):
    """Everything `kubegym-runner report` needs, rendered by the operator from an Experiment."""

    kind: Literal["report"] = "report"
    experiment: str = Field(min_length=1)
    objective: Objective = Field(default_factory=Objective)
    configurations: list[ReportConfiguration] = Field(min_length=1)
    runs: list[ReportRun] = Field(min_length=1)
    #: Key prefixes of the final Benchmarks (their ``report/episodes.csv`` are read), if any.
    benchmark_prefixes: list[str] = Field(default_factory=list)
    #: A PBT population's lineage (the report plots its curves and hyperparameter schedules).
    population: list[MemberStatus] = Field(default_factory=list)
    storage: S3Storage
    #: Key prefix of the Experiment's own artifacts (``<prefix>/<namespace>/experiments/<name>``).
    run_prefix: str
    report_to: RunRef | None = None


def dump_config(config: BaseModel) -> str:
    """Serialize a config for the ``KUBEGYM_CONFIG`` environment variable."""
    return config.model_dump_json(by_alias=True, exclude_none=True)
