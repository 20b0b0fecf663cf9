"""The TrainingRun resource: one agent, one seed, trained by one runner Job.

The spec's training fields (:class:`AgentSpec`: algorithm, environment, hyperparameters, length,
seed, device, evaluation) are the same class the runner's configuration derives from, so a field
means the same in the CRD, in the Job and in the runner. CEL rules reject at apply time what can
never work (a cuda run without a GPU, a run with no length) and edits that the already-rendered
Job could not follow (the immutable fields).

The status has two writers: the operator writes phase, conditions, times and where the run's
artifacts are (``status.artifacts``, fixed with the first Job); the runner writes
``progress``, ``checkpoints``, ``best`` and ``result`` (the models below :class:`TrainingRunSpec`) through an
identity that may patch this run's status and nothing else.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from kubegym_api.base import OFF_POLICY, Algorithm, Device, Model, Seed
from kubegym_api.cost import Cost, ResourceUsage
from kubegym_api.crd import PrinterColumn, ResourceKind
from kubegym_api.environment import EnvironmentConfig
from kubegym_api.status import Condition, Phase, condition_list_field
from kubegym_api.storage import StorageSpec, StorageStatus
from kubegym_api.tracking import TrackingSpec, TrackingStatus
from kubegym_api.validation import DNS_SUBDOMAIN_PATTERN, immutable_rule, rules, validation_rule
from kubegym_api.workload import Resources, RunPolicy, Scheduling

PLURAL = "trainingruns"
KIND = "TrainingRun"

_NEW_RUN = "create a new TrainingRun instead (a new name, or delete and re-apply)"


def _immutable(field: str, *, optional: bool) -> JsonDict:
    """A transition rule keeping ``field`` as it was; optional fields may not appear or vanish."""
    return immutable_rule(field, f"the runner Job was rendered from it; {_NEW_RUN}", optional=optional)


class CheckpointPolicy(Model):
    """How often to checkpoint and how many checkpoints to keep."""

    every_steps: int = Field(default=10_000, ge=1, description="Save a checkpoint every this many timesteps.")
    keep_last: int = Field(default=3, ge=1, le=1000, description="Keep the newest K checkpoints, delete older ones.")
    save_replay_buffer: bool = Field(
        default=False,
        description="Also save the replay buffer (off-policy algorithms only).",
    )


class CheckpointSpec(CheckpointPolicy):
    """When to checkpoint, how many checkpoints to keep, and where they go."""

    storage: StorageSpec | None = Field(
        default=None,
        description=(
            "Bucket, prefix, endpoint and credentials Secret. Defaults to the operator's "
            "storage. Artifacts go under <prefix>/<namespace>/<name>/<uid>/ (status.artifacts)."
        ),
    )


class EvaluationConfig(Model):
    """Periodic evaluation during training, on a separate env copy."""

    every_steps: int = Field(default=10_000, ge=1, description="Evaluate every this many timesteps.")
    episodes: int = Field(default=10, ge=1, le=10_000, description="Episodes per evaluation.")
    deterministic: bool = Field(default=True, description="Use the deterministic policy during evaluation.")


#: The folder of a run's best model by periodic evaluation, beside ``checkpoints/`` and ``final/``
#: (the runner's ``RunLayout.best`` and the operator's check that a reported URI is the run's own).
BEST_FOLDER = "best"


class ModelSelection(enum.StrEnum):
    """Which of a TrainingRun's models another resource takes: one choice for a Benchmark model, an
    Experiment's final Benchmark and ``resumeFrom``, so ``best`` means the same everywhere."""

    #: The model at the end of training (``final/``, ``status.result.modelUri``).
    final = "final"
    #: The model of the best periodic evaluation so far (``best/``, ``status.best.uri``; needs ``spec.evaluation``).
    best = "best"
    #: The newest complete checkpoint (``checkpoints/<step>/``, ``status.checkpoints.latestUri``).
    latest = "latest"


class ResumeFrom(Model):
    """A checkpoint to start from instead of from scratch (the run's own checkpoints win).

    The only way a run starts from another run's artifacts: the runner checks that the source
    was saved by the same algorithm for the same observation and action spaces, and fails the
    run with a UserError naming both otherwise."""

    model_config = rules(
        validation_rule(
            "has(self.uri) != has(self.trainingRun)",
            "set exactly one of resumeFrom.uri and resumeFrom.trainingRun",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.checkpoint) || has(self.trainingRun)",
            "resumeFrom.checkpoint chooses among the models of resumeFrom.trainingRun; with resumeFrom.uri the "
            "URI names the folder itself: remove checkpoint",
            field_path=".checkpoint",
            reason="FieldValueForbidden",
        ),
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
        description="Another TrainingRun in this namespace to start from (its model chosen by checkpoint).",
    )
    checkpoint: ModelSelection | None = Field(
        default=None,
        description="Which model of resumeFrom.trainingRun to start from: latest (its newest checkpoint, the "
        "default), best (its best periodic evaluation, status.best) or final (its final model). The run fails "
        "before training (reason ResumeSourceNotFound) while the chosen one does not exist. Only with trainingRun.",
    )


class AgentSpec(Model):
    """What to train and how: the algorithm, environment, policy, hyperparameters, length, seed,
    device and evaluation. A TrainingRun's spec and the runner's
    :class:`~kubegym_api.runnerconfig.TrainConfig` both derive from it, so each of these fields is
    declared once, with one set of bounds, for the CRD and for the runner."""

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
        "preset's. Checked against the algorithm before training starts. A string standing for a "
        'Python value (policy_kwargs: "dict(net_arch=[64], activation_fn=nn.Tanh)", class names) '
        "is parsed, never evaluated: literals, lists, dicts, dict(...) and torch/SB3 class names only.",
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
    seed: Seed = Field(default=0, description="Random seed of the agent and environments.")
    device: Device = Field(
        default=Device.auto,
        description="Where the networks run: auto (GPU if the pod has one), cpu, or cuda "
        "(fails if none is visible; needs resources.gpu > 0).",
    )
    evaluation: EvaluationConfig | None = Field(
        default=None,
        description="Periodic evaluation on a separate environment copy; off when absent.",
    )


_OFF_POLICY = ", ".join(f"'{a}'" for a in sorted(OFF_POLICY))


#: Shortest runPolicy.idleTimeoutSeconds: a few progress reports (every 10 s by default) must fit in it.
MIN_IDLE_TIMEOUT_SECONDS = 60


class TrainingRunPolicy(RunPolicy):
    """A TrainingRun's run policy: the Job's retries, deadline and clean-up, and what to do with a
    run that holds its pod (and GPU) without training."""

    idle_timeout_seconds: int | None = Field(
        default=None,
        ge=MIN_IDLE_TIMEOUT_SECONDS,
        description="Stop a Running run whose runner has reported no new timesteps for this many seconds "
        "(a hung environment, a frozen process, a wait that never ends): it fails with reason IdleTimeout, "
        "its pod is stopped and its checkpoints are kept (resumeFrom it to go on). Unset: the run is only "
        "flagged (condition Idle, after the operator's idle threshold). Mutable.",
    )


class TrainingRunSpec(AgentSpec):
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
                _immutable("tracking", optional=True),
                _immutable("resources", optional=False),
                _immutable("image", optional=True),
                _immutable("runPolicy.backoffLimit", optional=False),
                _immutable("runPolicy.activeDeadlineSeconds", optional=True),
            ]
        }
    )

    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec,
        description="Checkpoint interval, retention and storage. A restarted pod resumes from "
        "the newest complete checkpoint.",
        json_schema_extra={"default": {}},
    )
    resume_from: ResumeFrom | None = Field(
        default=None,
        description="Start from a checkpoint of another run or a URI instead of from scratch: the only way a "
        "run starts from artifacts not its own. The source must be of the same algorithm and observation/action "
        "spaces, else the run fails before training (reason UserError).",
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Optional experiment tracking: mlflow (trackingUri, experimentName, credentialsSecretRef) "
        "logs parameters, metrics as they come and the final model to an MLflow tracking server. Training "
        "never waits for it; the TrackingAvailable condition says whether it is reached.",
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
    run_policy: TrainingRunPolicy = Field(
        default_factory=TrainingRunPolicy,
        description="Retries, deadline, idle timeout and clean-up of the runner Job.",
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


# --- Status: what the runner reports while it trains and when it has finished -----------------


class EvaluationResult(Model):
    """Outcome of one evaluation: the episode return over a number of episodes."""

    timesteps: int = Field(ge=0, description="Training timesteps when the evaluation ran.")
    mean_reward: float = Field(description="Mean episode return.")
    std_reward: float = Field(default=0.0, ge=0, description="Standard deviation of the return.")
    episodes: int = Field(default=0, ge=0, description="Number of episodes evaluated.")


#: Most evaluation points ``status.progress.evaluations`` carries (the full history is in S3).
MAX_EVALUATION_POINTS = 100


class EvaluationPoint(Model):
    """One point of a run's evaluation curve: mean evaluation return at a timestep."""

    timesteps: int = Field(ge=0, description="Training timesteps when the evaluation ran.")
    mean_reward: float = Field(description="Mean episode return of that evaluation.")


def thin_evaluations(points: list[EvaluationPoint], limit: int = MAX_EVALUATION_POINTS) -> list[EvaluationPoint]:
    """At most ``limit`` points spread evenly over the curve, the first and the last always kept.

    A status field must stay small however long a run evaluates; evenly spread points keep
    every stretch of the curve comparable (the Experiment's median stopping rule reads it).
    """
    if len(points) <= limit:
        return list(points)
    if limit < 2:
        return list(points[-limit:]) if limit > 0 else []
    last = len(points) - 1
    picked = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [points[i] for i in picked]


class ComputeStatus(Model):
    """How the runner sized itself to its pod, as ``status.progress.compute``: the figures it chose
    from the container's CPU request (and limit), and why."""

    threads: int = Field(
        ge=1,
        description="torch intra-op threads; OpenMP/MKL get the same unless OMP_NUM_THREADS/MKL_NUM_THREADS are set.",
    )
    interop_threads: int | None = Field(default=None, ge=1, description="torch inter-op threads.")
    threads_from: str = Field(
        max_length=256,
        description="Where the thread count comes from: 'OMP_NUM_THREADS', 'cpu request <m>m', 'cpu limit <m>m', "
        "'cgroup quota' or 'cpus' (the CPUs the process may run on, when the pod has no request).",
    )
    cpu_request_millicores: int | None = Field(default=None, ge=0, description="The container's CPU request.")
    cpu_limit_millicores: int | None = Field(
        default=None, ge=0, description="The container's CPU limit (the node's allocatable when unset)."
    )
    n_envs: int = Field(ge=1, description="Parallel training environment copies.")
    vectorization: Literal["dummy", "subproc"] = Field(description="How the copies are stepped: dummy or subproc.")
    env_workers: int = Field(
        ge=0,
        description="Worker processes stepping the copies (subproc; copies are grouped when there are more copies "
        "than workers); 0 for dummy, where the trainer's own process steps them. Never more than the CPU request.",
    )
    vectorization_reason: str = Field(max_length=512, description="Why this vectorization: the rule that chose it.")


class TrainingProgress(Model):
    """What the runner reports onto ``status.progress`` while it trains (no NaN/Infinity)."""

    timesteps: int = Field(default=0, ge=0, description="Timesteps trained so far.")
    total_timesteps: int | None = Field(default=None, ge=1, description="Timesteps the run trains for in total.")
    fraction: float = Field(default=0.0, ge=0, le=1, description="timesteps / totalTimesteps.")
    percent: int = Field(default=0, ge=0, le=100, description="Whole percent done (printer column Progress%).")
    steps_per_second: float | None = Field(
        default=None, ge=0, description="Recent training throughput in timesteps per second."
    )
    mean_episode_reward: float | None = Field(
        default=None,
        description="Mean return of the most recent training episodes (up to 100), rounded.",
    )
    mean_episode_length: float | None = Field(
        default=None, ge=0, description="Mean length of the most recent training episodes."
    )
    episodes: int = Field(default=0, ge=0, description="Training episodes finished so far.")
    last_evaluation: EvaluationResult | None = Field(default=None, description="The most recent periodic evaluation.")
    evaluations: list[EvaluationPoint] = Field(
        default_factory=list,
        max_length=MAX_EVALUATION_POINTS,
        description="The periodic evaluations so far (evenly thinned to at most 100 points): the curve an "
        "Experiment's early stopping compares; eval/evaluations.json in S3 holds every one.",
    )
    resumed_from_step: int | None = Field(
        default=None,
        ge=0,
        description="Timestep of the checkpoint the current attempt resumed from (0: fresh).",
    )
    compute: ComputeStatus | None = Field(
        default=None, description="Threads, environment copies and vectorization the runner chose from its CPU request."
    )
    usage: ResourceUsage | None = Field(
        default=None, description="CPU time (and GPU utilisation) the runner measured of its own pod."
    )
    storage: StorageStatus | None = Field(
        default=None, description="Whether checkpoint uploads reach storage (training goes on while they fail)."
    )
    tracking: TrackingStatus | None = Field(
        default=None,
        description="Whether the MLflow tracking server (spec.tracking.mlflow) is reached, and the MLflow run's id "
        "(training goes on while it is not).",
    )
    update_time: datetime | None = Field(default=None, description="When the runner wrote this progress.")


class CheckpointStatus(Model):
    """The run's checkpoints in storage, as ``status.checkpoints``."""

    latest_uri: str | None = Field(default=None, description="s3:// URI of the newest complete checkpoint folder.")
    latest_step: int | None = Field(default=None, ge=0, description="Timestep of the newest complete checkpoint.")
    count: int = Field(default=0, ge=0, description="Complete checkpoints currently kept.")


class BestModelStatus(Model):
    """The run's best model by periodic evaluation, as ``status.best``: kept in ``best/`` beside the final
    model, replaced whenever an evaluation beats it (a tie keeps the earlier one)."""

    uri: str = Field(max_length=2048, description="s3:// URI of the best model's folder (best/).")
    step: int = Field(ge=0, description="Timestep of the evaluation that chose it (and of the model).")
    mean_reward: float = Field(description="Mean return of that evaluation.")
    std_reward: float = Field(default=0.0, ge=0, description="Standard deviation of that evaluation's return.")
    episodes: int = Field(default=0, ge=0, description="Episodes of that evaluation.")


class TrainingResult(Model):
    """The finished run, as ``status.result``."""

    timesteps: int | None = Field(default=None, ge=0, description="Timesteps trained in total.")
    mean_reward: float | None = Field(default=None, description="Mean return of the final evaluation.")
    std_reward: float | None = Field(
        default=None, ge=0, description="Standard deviation of the final evaluation's return."
    )
    episodes: int | None = Field(default=None, ge=0, description="Episodes of the final evaluation.")
    model_uri: str | None = Field(default=None, description="s3:// URI of the final model folder (final/).")


class RunArtifacts(Model):
    """Where a run's artifacts are, as ``status.artifacts``: chosen by the operator when it first
    creates the run's Job and never changed afterwards (the API server refuses a change), so an
    operator upgrade or a new default storage never moves a run's checkpoints, and a run created
    again under the same name (a new uid) never finds its predecessor's."""

    bucket: str = Field(min_length=3, max_length=63, description="Bucket of the run's artifacts.")
    prefix: str = Field(
        min_length=1,
        max_length=1024,
        description="Key prefix of the run's folder: <prefix>/<namespace>/<name>/<uid> (runs started before "
        "kubegym recorded it: <prefix>/<namespace>/<name>).",
    )
    uri: str = Field(
        max_length=1100,
        description="s3://<bucket>/<prefix>/: checkpoints/<step>/, final/ and eval/ are under it.",
    )


class TrainingRunStatus(Model):
    """Observed state: the operator writes phase, conditions, times, artifacts, cost and the estimate of the time
    left; the runner writes progress, checkpoints, best and result."""

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
        "while the runner's checkpoint uploads fail, True once they succeed); Idle (True with reason NoProgress "
        "while a Running run reports no new timesteps for longer than the operator's idle threshold); "
        "TrackingAvailable (with spec.tracking.mlflow: False with reason TrackingUnreachable while the tracking "
        "server is not reached, True once it is)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for."
    )
    start_time: datetime | None = Field(default=None, description="When the runner first started training.")
    completion_time: datetime | None = Field(default=None, description="When the run succeeded or failed.")
    job_name: str | None = Field(default=None, description="Name of the runner Job.")
    artifacts: RunArtifacts | None = Field(
        default=None,
        description="Where the run's checkpoints, final model and evaluations are; set by the operator "
        "with the run's first Job and immutable from then on.",
    )
    node_name: str | None = Field(default=None, description="Node of the current (or last) runner pod.")
    progress: TrainingProgress | None = Field(default=None, description="Training progress, reported by the runner.")
    checkpoints: CheckpointStatus | None = Field(
        default=None, description="Checkpoints in storage, reported by the runner."
    )
    best: BestModelStatus | None = Field(
        default=None,
        description="The best model by periodic evaluation (best/), its step and score, reported by the runner; "
        "absent without spec.evaluation or before the first evaluation.",
    )
    result: TrainingResult | None = Field(
        default=None, description="Final evaluation and model, reported by the runner."
    )
    estimated_remaining_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Seconds of training left at the runner's recent throughput: (totalTimesteps - timesteps) / "
        "stepsPerSecond from status.progress, computed by the operator; 0 once Succeeded, absent while unknown "
        "(no throughput yet, Pending, Suspended, Failed).",
    )
    cost: Cost | None = Field(
        default=None,
        description="CPU-seconds and GPU-seconds the run's pods held (requested x time, every attempt) and "
        "used (measured by the runner), computed by the operator.",
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
            "!has(oldSelf.status) || !has(oldSelf.status.artifacts) || "
            "has(self.status) && has(self.status.artifacts) && self.status.artifacts == oldSelf.status.artifacts",
            "status.artifacts is immutable once set: the run's artifacts never move",
            field_path=".status.artifacts",
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
        PrinterColumn("CPU-s", "number", ".status.cost.cpuSeconds", "Requested CPU-seconds so far.", priority=1),
        PrinterColumn("GPU-s", "number", ".status.cost.gpuSeconds", "Requested GPU-seconds so far.", priority=1),
        PrinterColumn(
            "ETA(s)",
            "integer",
            ".status.estimatedRemainingSeconds",
            "Seconds of training left at the recent throughput.",
            priority=1,
        ),
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
        PrinterColumn(
            "Best",
            "number",
            ".status.best.meanReward",
            "Mean return of the best periodic evaluation (the model in best/).",
            priority=1,
        ),
        PrinterColumn("Node", "string", ".status.nodeName", "Node of the runner pod.", priority=1),
    ),
)
