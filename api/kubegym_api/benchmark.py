"""The Benchmark resource: evaluate N models x M environments and rank them with robust statistics.

The spec's evaluation settings (:class:`BenchmarkSettings`) and environments are the same
definitions the runner's configuration is built from, so a field means the same in the CRD, in
the Job and in the runner. The status has two writers: the operator writes phase, conditions,
times, ``envs`` and ``modelCount``; the runner writes ``results``, ``ranking``, ``bestModel``,
``bestScore``, ``artifacts`` and ``progress`` (the models below :class:`BenchmarkSpec`) through an
identity that may patch this Benchmark's status and nothing else.

A Benchmark is one evaluation: its whole spec is frozen once applied (CEL ``self == oldSelf``),
except ``runPolicy.ttlSecondsAfterFinished``. To evaluate something else, create another one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from kubegym_api.base import Algorithm, Device, Model, Seed, Statistic
from kubegym_api.cost import Cost
from kubegym_api.crd import PrinterColumn, ResourceKind
from kubegym_api.environment import BenchmarkEnvironment
from kubegym_api.status import Condition, Phase, condition_list_field
from kubegym_api.storage import StorageSpec
from kubegym_api.trainingrun import ModelSelection
from kubegym_api.validation import DNS_SUBDOMAIN_PATTERN, immutable_rule, rules, validation_rule
from kubegym_api.workload import Resources, RunPolicy, Scheduling

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
    """A model to evaluate: a checkpoint in S3, or a model of a TrainingRun (its final one by default)."""

    model_config = rules(
        validation_rule(
            "has(self.uri) != has(self.trainingRunRef)",
            "set exactly one of uri and trainingRunRef",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.checkpoint) || has(self.trainingRunRef)",
            "checkpoint chooses among the models of trainingRunRef; with uri the URI names the model itself: "
            "remove checkpoint",
            field_path=".checkpoint",
            reason="FieldValueForbidden",
        ),
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
        description="A TrainingRun whose model to evaluate (see checkpoint); the Benchmark waits until it has "
        "succeeded.",
    )
    checkpoint: ModelSelection | None = Field(
        default=None,
        description="Which model of trainingRunRef to evaluate: final (the default), best (its best periodic "
        "evaluation, status.best; the run needs spec.evaluation) or latest (its newest checkpoint). The Benchmark "
        "fails (reason ModelNotAvailable) when the run succeeded without the chosen one. Only with trainingRunRef.",
    )
    algorithm: Algorithm | None = Field(
        default=None,
        description="Algorithm that saved the archive. Defaults to the TrainingRun's, or to the manifest.json "
        "beside the archive; required for a bare .zip.",
    )


#: A Benchmark's environments, as its spec and the runner's configuration both declare them.
BenchmarkEnvironments = Annotated[
    list[BenchmarkEnvironment],
    Field(
        min_length=1,
        max_length=MAX_ENVIRONMENTS,
        description="Environments every model is evaluated on (1 to 8); ids are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]},
    ),
]


class BenchmarkSettings(Model):
    """How every model x environment entry is evaluated: episodes, seeds, policy mode, parallel
    copies, the ranking statistic and the device. A Benchmark's spec and the runner's
    :class:`~kubegym_api.runnerconfig.EvaluateConfig` both derive from it, so each of these fields
    is declared once, with one set of bounds, for the CRD and for the runner."""

    episodes: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Episodes per seed for every model x environment (> 0).",
    )
    seeds: list[Seed] = Field(
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


class BenchmarkSpec(BenchmarkSettings):
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
    environments: BenchmarkEnvironments
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


# --- Status: what the runner reports (results, ranking, artifacts, progress) ---------------


class BenchmarkEntry(Model):
    """Statistics of one model on one environment over all its episodes (all seeds)."""

    model: str = Field(description="Model name (spec.models[].name).")
    env: str = Field(description="Environment id.")
    episodes: int = Field(default=0, ge=0, description="Episodes evaluated.")
    mean: float | None = Field(default=None, description="Mean episode return.")
    std: float | None = Field(default=None, ge=0, description="Population standard deviation of the return.")
    median: float | None = Field(default=None, description="Median episode return.")
    iqm: float | None = Field(default=None, description="Interquartile mean (25% trimmed mean) of the return.")
    min: float | None = Field(default=None, description="Lowest episode return.")
    max: float | None = Field(default=None, description="Highest episode return.")
    ci_lower: float | None = Field(
        default=None, description="Lower end of the bootstrap confidence interval of the ranking statistic."
    )
    ci_upper: float | None = Field(
        default=None, description="Upper end of the bootstrap confidence interval of the ranking statistic."
    )
    mean_episode_length: float | None = Field(default=None, ge=0, description="Mean episode length in steps.")
    episodes_per_second: float | None = Field(
        default=None, ge=0, description="Episodes per second of the evaluation loop (model loading excluded)."
    )
    latency_p50_ms: float | None = Field(
        default=None, ge=0, description="Median time of one policy call (a batch of nEnvs observations), ms."
    )
    latency_p99_ms: float | None = Field(default=None, ge=0, description="99th percentile policy-call time, ms.")
    error: str | None = Field(
        default=None, max_length=2048, description="Why this entry failed; its statistics are then absent."
    )


class RankedModel(Model):
    """A model's place in the ranking."""

    rank: int = Field(ge=1, description="1 is the best.")
    model: str = Field(description="Model name.")
    score: float = Field(description="The ranking statistic over the ranked environments.")
    ci_lower: float = Field(description="Lower end of the score's bootstrap confidence interval.")
    ci_upper: float = Field(description="Upper end of the score's bootstrap confidence interval.")


class ImprovementProbability(Model):
    """P(leader's return > runner-up's return) on a random episode, averaged over environments."""

    leader: str = Field(description="Rank 1.")
    runner_up: str = Field(description="Rank 2.")
    probability: float = Field(ge=0, le=1, description="Probability of improvement (ties count one half).")
    ci_lower: float = Field(ge=0, le=1, description="Lower end of its bootstrap confidence interval.")
    ci_upper: float = Field(ge=0, le=1, description="Upper end of its bootstrap confidence interval.")


class BenchmarkRanking(Model):
    """Models ordered by a stated statistic, with confidence intervals."""

    statistic: Statistic = Field(description="Statistic of the episode returns the models are ranked by.")
    confidence_level: float = Field(gt=0, lt=1, description="Coverage of the confidence intervals (0.95).")
    method: str = Field(description="How the intervals were computed.")
    bootstrap_resamples: int = Field(ge=1, description="Bootstrap resamples.")
    bootstrap_seed: int = Field(ge=0, description="Seed of the bootstrap's random generator (for recomputation).")
    normalization: Literal["None", "MinMax"] = Field(
        description="None: raw returns (one environment). MinMax: each environment's returns scaled to [0, 1] "
        "by the lowest and highest return any ranked model got there, so environments weigh equally."
    )
    envs: list[str] = Field(default_factory=list, description="Environments the ranking covers.")
    models: list[RankedModel] = Field(default_factory=list, description="Ranked models, best first.")
    unranked: list[str] = Field(
        default_factory=list, description="Models left out because an entry of theirs on a ranked environment failed."
    )
    probability_of_improvement: ImprovementProbability | None = Field(
        default=None, description="Of the leader over the runner-up (needs two ranked models)."
    )


class BenchmarkArtifacts(Model):
    """Where the Benchmark's reports are in S3."""

    episodes: str | None = Field(default=None, description="CSV of every episode's return and length.")
    table: str | None = Field(default=None, description="CSV of the per model x environment statistics.")
    results: str | None = Field(default=None, description="JSON with the entries, the ranking and the settings.")
    plot: str | None = Field(default=None, description="PNG comparing the models with confidence intervals.")


class BenchmarkProgress(Model):
    """How far the evaluation is (entries are model x environment pairs)."""

    entries_done: int = Field(default=0, ge=0, description="Entries evaluated or failed.")
    entries_total: int = Field(default=0, ge=0, description="Models x environments.")
    episodes: int = Field(default=0, ge=0, description="Episodes evaluated so far.")
    update_time: datetime | None = Field(default=None, description="When the runner wrote this progress.")


class BenchmarkStatus(Model):
    """Observed state: the operator writes phase, conditions, times, envs, modelCount and cost; the runner
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
    cost: Cost | None = Field(
        default=None, description="CPU-seconds and GPU-seconds the evaluation pods held (requested x time)."
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
