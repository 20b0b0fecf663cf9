"""The Benchmark resource: evaluate N models x M environments and rank them with robust statistics.

The spec composes the runner contract's models (environments, statistic, device, storage) so
a field means the same in the CRD, in the Job and in the runner. The status has two writers:
the operator writes phase, conditions, times, ``envs`` and ``modelCount``; the runner writes
``results``, ``ranking``, ``bestModel``, ``bestScore``, ``artifacts`` and ``progress`` through an
identity that may patch this Benchmark's status and nothing else.

A Benchmark is one evaluation: its whole spec is frozen once applied (CEL ``self == oldSelf``),
except ``runPolicy.ttlSecondsAfterFinished``. To evaluate something else, create another one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from kubegym_operator.api.common import (
    DNS_SUBDOMAIN_PATTERN,
    Condition,
    Phase,
    Resources,
    RunPolicy,
    Scheduling,
    condition_list_field,
    immutable_rule,
    rules,
    validation_rule,
)
from kubegym_operator.api.crd import PrinterColumn, ResourceKind
from kubegym_operator.api.trainingrun import StorageSpec
from kubegym_runner.config import (
    Algorithm,
    BenchmarkArtifacts,
    BenchmarkEntry,
    BenchmarkEnvironment,
    BenchmarkProgress,
    BenchmarkRanking,
    Device,
    Model,
    Statistic,
)

PLURAL = "benchmarks"
KIND = "Benchmark"

#: Names of models: they appear in CSV files, plots and printer columns.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
MAX_MODELS = 32
MAX_ENVIRONMENTS = 8

_NEW_BENCHMARK = "a Benchmark is one evaluation; create a new Benchmark (a new name, or delete and re-apply)"


def _immutable(field: str, *, optional: bool) -> JsonDict:
    """A transition rule keeping ``field`` as it was; optional fields may not appear or vanish."""
    return immutable_rule(field, _NEW_BENCHMARK, optional=optional)


class TrainingRunRef(Model):
    """A TrainingRun in the Benchmark's namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the TrainingRun."
    )


class BenchmarkModelSpec(Model):
    """A model to evaluate: a checkpoint in S3, or the final model of a TrainingRun."""

    model_config = rules(
        validation_rule(
            "has(self.uri) != has(self.trainingRunRef)",
            "set exactly one of uri and trainingRunRef",
            reason="FieldValueInvalid",
        )
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in results, rankings and plots; unique within the Benchmark.",
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^s3://[^/]+/.+",
        description="s3:// URI of a model folder (model.zip, optional vecnormalize.pkl and manifest.json, as a "
        "TrainingRun's final/ or checkpoints/<step>/ folder) or of a .zip archive (kubectl gym upload).",
    )
    training_run_ref: TrainingRunRef | None = Field(
        default=None,
        description="A TrainingRun whose final model to evaluate; the Benchmark waits until it has finished.",
    )
    algorithm: Algorithm | None = Field(
        default=None,
        description="Algorithm that saved the archive. Defaults to the TrainingRun's, or to the manifest.json "
        "beside the archive; required for a bare .zip.",
    )


_Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class BenchmarkSpec(Model):
    """Which models, on which environments, for how many episodes, on which compute."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                validation_rule(
                    "!has(self.device) || self.device != 'cuda' || "
                    "has(self.resources) && has(self.resources.gpu) && self.resources.gpu > 0",
                    "device: cuda needs a GPU: set resources.gpu to 1 or more, or use device auto or cpu",
                    field_path=".resources.gpu",
                    reason="FieldValueInvalid",
                ),
                _immutable("models", optional=False),
                _immutable("environments", optional=False),
                _immutable("episodes", optional=False),
                _immutable("seeds", optional=False),
                _immutable("deterministic", optional=False),
                _immutable("nEnvs", optional=False),
                _immutable("statistic", optional=False),
                _immutable("device", optional=False),
                _immutable("storage", optional=True),
                _immutable("resources", optional=False),
                _immutable("scheduling", optional=False),
                _immutable("image", optional=True),
                _immutable("runPolicy.backoffLimit", optional=False),
                _immutable("runPolicy.activeDeadlineSeconds", optional=True),
            ]
        }
    )

    models: list[BenchmarkModelSpec] = Field(
        min_length=1,
        max_length=MAX_MODELS,
        description="Models to compare (1 to 32), each by uri or trainingRunRef.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    environments: list[BenchmarkEnvironment] = Field(
        min_length=1,
        max_length=MAX_ENVIRONMENTS,
        description="Environments every model is evaluated on (1 to 8); ids are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    )
    episodes: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Episodes per seed for every model x environment (> 0).",
    )
    seeds: list[_Seed] = Field(
        default_factory=lambda: [0],
        min_length=1,
        max_length=16,
        description="Environment seeds; with seed s, parallel copy i starts from seed s + i, so every model "
        "plays the same initial states.",
        json_schema_extra={"x-kubernetes-list-type": "set", "default": [0]},
    )
    deterministic: bool = Field(default=True, description="Act with the deterministic policy (the mode).")
    n_envs: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Parallel environment copies per evaluation (capped at episodes); one policy call acts "
        "for all of them.",
    )
    statistic: Statistic = Field(
        default=Statistic.IQM,
        description="Statistic the ranking uses: IQM (interquartile mean, robust; the default), Mean or Median.",
    )
    device: Device = Field(
        default=Device.cpu,
        description="Where the policies run: cpu (the default: small policies are latency-bound), auto, or "
        "cuda (needs resources.gpu > 0).",
    )
    storage: StorageSpec | None = Field(
        default=None,
        description="Bucket, prefix, endpoint and credentials Secret for reading the models and writing the "
        "reports (under <prefix>/<namespace>/benchmarks/<name>/report/). Defaults to the operator's storage.",
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="CPU, memory and GPUs of the evaluation pod.",
        json_schema_extra={"default": {}},
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling,
        description="Node selection, tolerations, affinity, priority and Kueue queue.",
        json_schema_extra={"default": {}},
    )
    run_policy: RunPolicy = Field(
        default_factory=RunPolicy,
        description="Retries, deadline and clean-up of the evaluation Job.",
        json_schema_extra={"default": {}},
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Runner image override; it must provide the kubegym-runner entry point.",
    )


class BenchmarkStatus(Model):
    """Observed state: the operator writes phase, conditions, times, envs and modelCount; the runner
    writes progress, results, ranking, bestModel, bestScore and artifacts."""

    phase: Phase | None = Field(default=None, description="Summary: Pending, Running, Succeeded or Failed.")
    reason: str | None = Field(default=None, max_length=1024, description="CamelCase cause of the current phase.")
    message: str | None = Field(default=None, max_length=32768, description="Human-readable details of the phase.")
    conditions: list[Condition] = condition_list_field(
        "ModelsReady, Running, Succeeded, Failed and EntriesFailed, with reasons naming the cause."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for."
    )
    start_time: datetime | None = Field(default=None, description="When the evaluation pod first started.")
    completion_time: datetime | None = Field(default=None, description="When the Benchmark succeeded or failed.")
    job_name: str | None = Field(default=None, description="Name of the evaluation Job.")
    node_name: str | None = Field(default=None, description="Node of the current (or last) evaluation pod.")
    envs: str | None = Field(default=None, description="Environment ids, comma-separated (printer column Envs).")
    model_count: int | None = Field(default=None, ge=0, description="Number of models (printer column Models).")
    progress: BenchmarkProgress | None = Field(default=None, description="Entries done, reported by the runner.")
    results: list[BenchmarkEntry] = Field(
        default_factory=list,
        max_length=MAX_MODELS * MAX_ENVIRONMENTS,
        description="Statistics per model x environment, or the error of an entry that failed.",
    )
    ranking: BenchmarkRanking | None = Field(
        default=None, description="Models ranked by the stated statistic, with confidence intervals."
    )
    best_model: str | None = Field(default=None, description="The leader of the ranking.")
    best_score: float | None = Field(default=None, description="The leader's score (ranking.statistic).")
    artifacts: BenchmarkArtifacts | None = Field(
        default=None, description="s3:// URIs of the episodes CSV, the results table and JSON, and the plot."
    )


BENCHMARK = ResourceKind(
    kind=KIND,
    plural=PLURAL,
    singular="benchmark",
    short_names=("bench",),
    description="Benchmark evaluates models (S3 checkpoints or TrainingRuns) on environments in one "
    "evaluation Job and ranks them by a robust statistic with bootstrap confidence intervals.",
    spec_model=BenchmarkSpec,
    status_model=BenchmarkStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        PrinterColumn("Envs", "string", ".status.envs", "Environment ids."),
        PrinterColumn("Models", "integer", ".status.modelCount", "Number of models."),
        PrinterColumn("Best", "string", ".status.bestModel", "The leader of the ranking."),
        PrinterColumn("Score", "number", ".status.bestScore", "The leader's score (the ranking statistic)."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Statistic", "string", ".status.ranking.statistic", "Ranking statistic.", priority=1),
        PrinterColumn("Reason", "string", ".status.reason", "Cause of the phase.", priority=1),
        PrinterColumn("Done", "integer", ".status.progress.entriesDone", "Entries evaluated.", priority=1),
        PrinterColumn("Node", "string", ".status.nodeName", "Node of the evaluation pod.", priority=1),
    ),
)
