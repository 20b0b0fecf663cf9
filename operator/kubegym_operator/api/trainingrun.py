"""The TrainingRun resource: one agent, one seed, trained by one runner Job.

The spec composes the runner contract's models (environment, checkpoint policy, evaluation,
storage) so a field means the same in the CRD, in the Job and in the runner. CEL rules reject
at apply time what can never work (a cuda run without a GPU, a run with no length) and edits
that the already-rendered Job could not follow (the immutable fields).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from kubegym_runner.config import (
    OFF_POLICY,
    Algorithm,
    CheckpointPolicy,
    CheckpointStatus,
    Device,
    EnvironmentConfig,
    EvaluationConfig,
    Model,
    S3Storage,
    TrainingProgress,
    TrainingResult,
)

PLURAL = "trainingruns"
KIND = "TrainingRun"

_NEW_RUN = "create a new TrainingRun instead (a new name, or delete and re-apply)"


def _immutable(field: str, *, optional: bool) -> JsonDict:
    """A transition rule keeping ``field`` as it was; optional fields may not appear or vanish."""
    return immutable_rule(field, f"the runner Job was rendered from it; {_NEW_RUN}", optional=optional)


class StorageSpec(S3Storage):
    """S3-compatible storage for checkpoints and the final model; credentials by reference."""

    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="S3 endpoint URL with scheme (http://minio.minio:9000); empty for AWS S3.",
    )
    secret_ref: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "Name of a Secret in the run's namespace with keys AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN). Passed to the runner pod "
            "by reference; credentials are never written into a TrainingRun."
        ),
    )


class CheckpointSpec(CheckpointPolicy):
    """When to checkpoint, how many checkpoints to keep, and where they go."""

    storage: StorageSpec | None = Field(
        default=None,
        description=(
            "Bucket, prefix, endpoint and credentials Secret. Defaults to the operator's "
            "storage. Artifacts go under <prefix>/<namespace>/<name>/."
        ),
    )


class ResumeFrom(Model):
    """A checkpoint to start from instead of from scratch (the run's own checkpoints win)."""

    model_config = rules(
        validation_rule(
            "has(self.uri) != has(self.trainingRun)",
            "set exactly one of resumeFrom.uri and resumeFrom.trainingRun",
            reason="FieldValueInvalid",
        )
    )

    uri: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^s3://[^/]+/.+",
        description="s3:// URI of a checkpoint folder (s3://bucket/.../checkpoints/<step>/).",
    )
    training_run: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Another TrainingRun in this namespace whose latest checkpoint to start from.",
    )


_OFF_POLICY = ", ".join(f"'{a}'" for a in sorted(OFF_POLICY))


class TrainingRunSpec(Model):
    """What to train, for how long, on which compute, and where checkpoints go."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                validation_rule(
                    "has(self.totalTimesteps) || has(self.preset)",
                    "set totalTimesteps (environment steps, > 0) or a preset that provides the number of timesteps",
                    field_path=".totalTimesteps",
                    reason="FieldValueRequired",
                ),
                validation_rule(
                    "!has(self.device) || self.device != 'cuda' || "
                    "has(self.resources) && has(self.resources.gpu) && self.resources.gpu > 0",
                    "device: cuda needs a GPU: set resources.gpu to 1 or more, or use device auto or cpu",
                    field_path=".resources.gpu",
                    reason="FieldValueInvalid",
                ),
                validation_rule(
                    "!has(self.checkpoint) || !has(self.checkpoint.saveReplayBuffer) || "
                    f"!self.checkpoint.saveReplayBuffer || self.algorithm in [{_OFF_POLICY}]",
                    "checkpoint.saveReplayBuffer needs an off-policy algorithm "
                    f"({', '.join(sorted(OFF_POLICY))}); remove it for this algorithm",
                    field_path=".checkpoint.saveReplayBuffer",
                    reason="FieldValueForbidden",
                ),
                _immutable("algorithm", optional=False),
                _immutable("environment", optional=False),
                _immutable("policy", optional=True),
                _immutable("hyperparameters", optional=True),
                _immutable("preset", optional=True),
                _immutable("totalTimesteps", optional=True),
                _immutable("seed", optional=False),
                _immutable("device", optional=False),
                _immutable("evaluation", optional=True),
                _immutable("checkpoint", optional=False),
                _immutable("resumeFrom", optional=True),
                _immutable("resources", optional=False),
                _immutable("image", optional=True),
                _immutable("runPolicy.backoffLimit", optional=False),
                _immutable("runPolicy.activeDeadlineSeconds", optional=True),
            ]
        }
    )

    algorithm: Algorithm = Field(
        description="RL algorithm: stable-baselines3 (PPO, A2C, DQN, SAC, TD3, DDPG) or "
        "sb3-contrib (RecurrentPPO, QRDQN, TQC, TRPO, MaskablePPO)."
    )
    environment: EnvironmentConfig = Field(description="Gymnasium environment: id, kwargs, wrappers, parallel copies.")
    policy: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Policy class: MlpPolicy, CnnPolicy, MultiInputPolicy (or the recurrent / "
        "maskable variants). Defaults to the preset's policy, else MlpPolicy.",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        max_length=128,
        description="Keyword arguments of the algorithm (learning_rate, n_steps, gamma, "
        "policy_kwargs, ...), snake_case as stable-baselines3 names them; they override the "
        "preset's. Checked against the algorithm before training starts.",
    )
    preset: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Tuned hyperparameters loaded through the rl-zoo3 package for this "
        "algorithm and environment (e.g. rl-zoo3); supplies the timesteps when totalTimesteps "
        "is not set.",
    )
    total_timesteps: int | None = Field(
        default=None,
        ge=1,
        description="Environment steps to train for, over all parallel copies (> 0).",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Random seed of the agent and environments.")
    device: Device = Field(
        default=Device.auto,
        description="Where the networks run: auto (GPU if the pod has one), cpu, or cuda "
        "(fails if none is visible; needs resources.gpu > 0).",
    )
    evaluation: EvaluationConfig | None = Field(
        default=None,
        description="Periodic evaluation on a separate environment copy; off when absent.",
    )
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec,
        description="Checkpoint interval, retention and storage. A restarted pod resumes from "
        "the newest complete checkpoint.",
        json_schema_extra={"default": {}},
    )
    resume_from: ResumeFrom | None = Field(
        default=None,
        description="Start from a checkpoint of another run or a URI instead of from scratch.",
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="CPU, memory and GPUs of the runner pod.",
        json_schema_extra={"default": {}},
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling,
        description="Node selection, tolerations, affinity, priority and Kueue queue. "
        "Mutable until the run has started (status.startTime set).",
        json_schema_extra={"default": {}},
    )
    run_policy: RunPolicy = Field(
        default_factory=RunPolicy,
        description="Retries, deadline and clean-up of the runner Job.",
        json_schema_extra={"default": {}},
    )
    suspend: bool = Field(
        default=False,
        description="Suspend the run: its pod is stopped (progress since the last checkpoint "
        "is lost) and resumes from the newest checkpoint when set back to false. Mutable.",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Runner image override; it must provide the kubegym-runner entry point. "
        "Defaults to the operator's runner image.",
    )


class TrainingRunStatus(Model):
    """Observed state: the operator writes phase, conditions and times; the runner writes
    progress, checkpoints and result."""

    phase: Phase | None = Field(
        default=None,
        description="Summary: Pending, Running, Succeeded, Failed or Suspended.",
    )
    reason: str | None = Field(
        default=None,
        max_length=1024,
        description="CamelCase cause of the current phase (e.g. Unschedulable, OOMKilled).",
    )
    message: str | None = Field(default=None, max_length=32768, description="Human-readable details of the phase.")
    conditions: list[Condition] = condition_list_field(
        "Running, Suspended, EarlyStopped (stopped by its Experiment's early-stopping rule), Succeeded "
        "and Failed, with reasons naming the cause; StorageAvailable (False with reason StorageUnavailable "
        "while the runner's checkpoint uploads fail, True once they succeed)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for."
    )
    start_time: datetime | None = Field(default=None, description="When the runner first started training.")
    completion_time: datetime | None = Field(default=None, description="When the run succeeded or failed.")
    job_name: str | None = Field(default=None, description="Name of the runner Job.")
    node_name: str | None = Field(default=None, description="Node of the current (or last) runner pod.")
    progress: TrainingProgress | None = Field(default=None, description="Training progress, reported by the runner.")
    checkpoints: CheckpointStatus | None = Field(
        default=None, description="Checkpoints in storage, reported by the runner."
    )
    result: TrainingResult | None = Field(
        default=None, description="Final evaluation and model, reported by the runner."
    )


_SCHEDULING_UNCHANGED = (
    "has(self.spec.scheduling) == has(oldSelf.spec.scheduling) && "
    "(!has(self.spec.scheduling) || self.spec.scheduling == oldSelf.spec.scheduling)"
)

TRAINING_RUN = ResourceKind(
    kind=KIND,
    plural=PLURAL,
    singular="trainingrun",
    short_names=("trun",),
    description="TrainingRun trains one RL agent with one seed in a runner Job, checkpointing "
    "to S3 and resuming after preemption.",
    spec_model=TrainingRunSpec,
    status_model=TrainingRunStatus,
    rules=(
        validation_rule(
            "!has(oldSelf.status) || !has(oldSelf.status.startTime) || " + _SCHEDULING_UNCHANGED,
            "spec.scheduling is immutable once the run has started (status.startTime is set); " + _NEW_RUN,
            field_path=".spec.scheduling",
            reason="FieldValueForbidden",
        ),
        validation_rule(
            "!has(self.spec.resumeFrom) || !has(self.spec.resumeFrom.trainingRun) || "
            "self.spec.resumeFrom.trainingRun != self.metadata.name",
            "spec.resumeFrom.trainingRun names this run; a run resumes from its own "
            "checkpoints by itself, so remove resumeFrom",
            field_path=".spec.resumeFrom.trainingRun",
            reason="FieldValueInvalid",
        ),
    ),
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        PrinterColumn("Algorithm", "string", ".spec.algorithm", "RL algorithm."),
        PrinterColumn("Env", "string", ".spec.environment.id", "Gymnasium environment id."),
        PrinterColumn("Progress%", "integer", ".status.progress.percent", "Percent trained."),
        PrinterColumn(
            "Reward",
            "number",
            ".status.progress.meanEpisodeReward",
            "Mean return of recent training episodes.",
        ),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Reason", "string", ".status.reason", "Cause of the phase.", priority=1),
        PrinterColumn("Steps", "integer", ".status.progress.timesteps", "Timesteps.", priority=1),
        PrinterColumn("Steps/s", "number", ".status.progress.stepsPerSecond", "Throughput.", priority=1),
        PrinterColumn(
            "Eval",
            "number",
            ".status.progress.lastEvaluation.meanReward",
            "Mean return of the last evaluation.",
            priority=1,
        ),
        PrinterColumn(
            "Checkpoint",
            "integer",
            ".status.checkpoints.latestStep",
            "Timestep of the newest checkpoint.",
            priority=1,
        ),
        PrinterColumn("Node", "string", ".status.nodeName", "Node of the runner pod.", priority=1),
    ),
)
