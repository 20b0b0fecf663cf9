"""The typed contract between the operator and the runner.

The operator renders one of these models into the runner Job's environment
(``KUBEGYM_CONFIG``, JSON); the runner parses it back. The operator's custom
resource specs compose the same sub-models, so a field means one thing in the
CRD, in the Job and in the runner. This module imports nothing heavy (no torch,
no boto3): the operator image depends on it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: Name of the environment variable that carries the serialized config.
CONFIG_ENV = "KUBEGYM_CONFIG"
#: The runner container's CPU request and limit in millicores (downward API ``resourceFieldRef``);
#: the runner sizes its threads from them, since a pod without a CPU limit sees every core.
CPU_REQUEST_ENV = "KUBEGYM_CPU_REQUEST_MILLICORES"
CPU_LIMIT_ENV = "KUBEGYM_CPU_LIMIT_MILLICORES"

#: Exit code for errors that retrying cannot fix (bad config, unknown env, ...).
#: The Job's podFailurePolicy fails the Job at once on it.
EXIT_USER_ERROR = 42
#: Exit code for errors of the infrastructure (storage unreachable, API errors):
#: counted against backoffLimit and retried.
EXIT_INFRA_ERROR = 43
#: Exit code for storage that cannot be reached (S3 endpoint down, DNS, timeouts): an
#: infrastructure error (counted against backoffLimit and retried) that the operator reports
#: with reason StorageUnreachable, so the user looks at the endpoint and not at the code.
EXIT_STORAGE_ERROR = 44


class Model(BaseModel):
    """Base: camelCase on the wire (as Kubernetes APIs are), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


class Algorithm(enum.StrEnum):
    """Algorithms of stable-baselines3 and sb3-contrib the runner can train."""

    PPO = "PPO"
    A2C = "A2C"
    DQN = "DQN"
    SAC = "SAC"
    TD3 = "TD3"
    DDPG = "DDPG"
    RecurrentPPO = "RecurrentPPO"
    QRDQN = "QRDQN"
    TQC = "TQC"
    TRPO = "TRPO"
    MaskablePPO = "MaskablePPO"


#: Algorithms that learn from a replay buffer (their buffer can be checkpointed).
OFF_POLICY = frozenset({"DQN", "SAC", "TD3", "DDPG", "QRDQN", "TQC"})


class Device(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class VecEnvMode(enum.StrEnum):
    """How the training env copies are stepped: ``auto`` chooses ``dummy`` or ``subproc``."""

    auto = "auto"
    dummy = "dummy"
    subproc = "subproc"


class Wrapper(Model):
    """A gymnasium wrapper applied to every environment copy."""

    name: str = Field(
        description=(
            "Wrapper to apply: a short name (AtariPreprocessing, FrameStack, "
            "TimeLimit, ...) or an importable 'module:Class'."
        ),
        min_length=1,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the wrapper.")


class EnvironmentConfig(Model):
    """Which environment to train or evaluate on, and how many copies to run."""

    id: str = Field(
        description="Registered gymnasium id, e.g. CartPole-v1 or ALE/Pong-v5.",
        min_length=1,
        max_length=256,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for gymnasium.make.")
    module: str | None = Field(
        default=None,
        description=(
            "Python module imported before the env is made, for custom environments "
            "that register their ids on import ('my_pkg.envs')."
        ),
    )
    wrappers: list[Wrapper] = Field(default_factory=list, description="Wrappers applied in order to each env copy.")
    n_envs: int = Field(default=1, ge=1, le=256, description="Number of parallel environment copies.")
    vec_env: VecEnvMode = Field(
        default=VecEnvMode.auto,
        description="Vectorisation of the training copies: 'auto' (default) picks 'subproc' when the pod's CPU "
        "request allows 2 or more workers and the env is expensive to step (Atari, MuJoCo, Box2D ids, or a "
        "measured step above 0.2 ms), else 'dummy'; 'dummy' steps every copy in the trainer's process; "
        "'subproc' steps them in worker processes, never more workers than the CPU request allows (copies are "
        "grouped per worker). status.progress.compute shows the choice.",
    )
    normalize: bool = Field(
        default=False,
        description="Wrap in VecNormalize (observation and reward normalisation).",
    )


class S3Storage(Model):
    """Where artifacts go: an S3-compatible bucket and prefix."""

    bucket: str = Field(description="Bucket name.", min_length=3, max_length=63)
    prefix: str = Field(
        default="",
        description="Key prefix under which the run's folder is created.",
        max_length=512,
    )
    endpoint: str | None = Field(
        default=None,
        description="S3 endpoint URL (MinIO, Ceph, ...); empty for AWS S3.",
    )
    region: str | None = Field(default=None, description="S3 region name.")
    secret_ref: str | None = Field(
        default=None,
        description=(
            "Name of a Secret in the run's namespace with keys AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, passed to the pod by reference."
        ),
    )


class CheckpointPolicy(Model):
    """How often to checkpoint and how many checkpoints to keep."""

    every_steps: int = Field(default=10_000, ge=1, description="Save a checkpoint every this many timesteps.")
    keep_last: int = Field(default=3, ge=1, le=1000, description="Keep the newest K checkpoints, delete older ones.")
    save_replay_buffer: bool = Field(
        default=False,
        description="Also save the replay buffer (off-policy algorithms only).",
    )


class EvaluationConfig(Model):
    """Periodic evaluation during training, on a separate env copy."""

    every_steps: int = Field(default=10_000, ge=1, description="Evaluate every this many timesteps.")
    episodes: int = Field(default=10, ge=1, le=10_000, description="Episodes per evaluation.")
    deterministic: bool = Field(default=True, description="Use the deterministic policy during evaluation.")


class RunRef(Model):
    """Identity of the custom resource the runner reports progress onto."""

    group: str = "kubegym.io"
    version: str = "v1alpha1"
    plural: str
    namespace: str
    name: str


class TrainConfig(Model):
    """Everything `kubegym-runner train` needs, rendered by the operator."""

    kind: Literal["train"] = "train"
    algorithm: Algorithm
    environment: EnvironmentConfig
    policy: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    preset: str | None = None
    total_timesteps: Annotated[int, Field(ge=1)] | None = None
    seed: int = 0
    device: Device = Device.auto
    evaluation: EvaluationConfig | None = None
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    storage: S3Storage
    #: Key prefix of this run's artifacts (``<prefix>/<namespace>/<name>``), fixed by the operator.
    run_prefix: str
    resume_from: str | None = Field(default=None, description="s3:// URI of a checkpoint folder to start from.")
    report_to: RunRef | None = None
    report_interval_seconds: float = Field(default=10.0, ge=1.0)
    final_report_timeout_seconds: float = Field(
        default=900.0,
        ge=0.0,
        description="How long the runner retries its final status report (progress 100%, checkpoints, result) "
        "while the API server does not answer; SIGTERM ends the retries sooner. The result also goes to the "
        "pod's termination message and final/manifest.json, where the operator finds it if this report is lost.",
    )


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


#: Longest ``status.progress.storage.message`` (the runner shortens the error to fit).
MAX_STORAGE_MESSAGE = 1024


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


class StorageState(enum.StrEnum):
    ok = "ok"
    failing = "failing"


class StorageStatus(Model):
    """Whether the runner's uploads reach storage, as ``status.progress.storage``; the operator turns
    it into the StorageAvailable condition. Every field is always present, so a merge patch of a newer
    state replaces all of an older one."""

    state: StorageState = Field(description="ok, or failing while storage requests fail or get no answer.")
    since: datetime = Field(description="When the current state began (the first failure, or the recovery).")
    message: str = Field(
        max_length=MAX_STORAGE_MESSAGE, description="What fails (the last error), or that uploads succeed."
    )
    pending_uploads: int = Field(default=0, ge=0, description="Uploads queued or in progress.")
    failed_requests: int = Field(default=0, ge=0, description="Storage requests failed in a row.")


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
    storage: StorageStatus | None = Field(
        default=None, description="Whether checkpoint uploads reach storage (training goes on while they fail)."
    )
    update_time: datetime | None = Field(default=None, description="When the runner wrote this progress.")


class CheckpointStatus(Model):
    """The run's checkpoints in storage, as ``status.checkpoints``."""

    latest_uri: str | None = Field(default=None, description="s3:// URI of the newest complete checkpoint folder.")
    latest_step: int | None = Field(default=None, ge=0, description="Timestep of the newest complete checkpoint.")
    count: int = Field(default=0, ge=0, description="Complete checkpoints currently kept.")


class TrainingResult(Model):
    """The finished run, as ``status.result``."""

    timesteps: int | None = Field(default=None, ge=0, description="Timesteps trained in total.")
    mean_reward: float | None = Field(default=None, description="Mean return of the final evaluation.")
    std_reward: float | None = Field(
        default=None, ge=0, description="Standard deviation of the final evaluation's return."
    )
    episodes: int | None = Field(default=None, ge=0, description="Episodes of the final evaluation.")
    model_uri: str | None = Field(default=None, description="s3:// URI of the final model folder (final/).")


# --- The runner's last words: the final report in the termination message ---------------------

#: Starts the line of a finished training runner's termination message that carries its
#: :class:`FinalReport` as JSON; the line before it is the summary for ``kubectl describe``.
FINAL_REPORT_PREFIX = "kubegym-final-report: "


class FinalReport(Model):
    """A finished training run as the runner reports it last: the content of ``status.result``
    (the same result ``final/manifest.json`` records), the newest checkpoints and the budget.

    The runner writes it into its pod's termination message as well as patching the status: the
    kubelet keeps the message in the pod's status, so when the API server was unreachable at the
    end of training and the status patch never arrived, the operator still finds the result in the
    pod it watches, without access to storage.
    """

    # An operator older than its runners ignores what it does not know rather than losing the report.
    model_config = ConfigDict(extra="ignore")

    result: TrainingResult = Field(description="The run's result, as status.result.")
    total_timesteps: int | None = Field(default=None, ge=1, description="The run's budget (status.progress).")
    checkpoints: CheckpointStatus | None = Field(default=None, description="The run's checkpoints at the end.")


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    return text.encode()[: max(limit, 0)].decode(errors="ignore")


def final_report_message(summary: str, report: FinalReport, limit: int) -> str:
    """A termination message of at most ``limit`` UTF-8 bytes: ``summary``, then the report line.

    The report matters more than the summary, so the summary is shortened first; if the report
    alone is too long (very long URIs), its checkpoints are dropped, and if it still does not fit,
    the message is the summary only (the operator then keeps waiting for the status patch).
    """
    summary = " ".join(summary.split())
    for candidate in (report, report.model_copy(update={"checkpoints": None})):
        line = FINAL_REPORT_PREFIX + candidate.model_dump_json(by_alias=True, exclude_none=True)
        room = limit - len(line.encode()) - 1  # the newline
        if room >= 0:
            head = _utf8_prefix(summary, room)
            return f"{head}\n{line}" if head else line
    return _utf8_prefix(summary, limit)


def parse_final_report(message: str | None) -> FinalReport | None:
    """The :class:`FinalReport` in a termination message, or ``None`` if it carries none (an
    error message, an older runner, a malformed or truncated line)."""
    for line in reversed((message or "").splitlines()):
        if line.startswith(FINAL_REPORT_PREFIX):
            try:
                return FinalReport.model_validate_json(line[len(FINAL_REPORT_PREFIX) :])
            except ValueError:
                return None
    return None


# --- Benchmark: evaluate models x environments (``kubegym-runner evaluate``) -------------------


class Statistic(enum.StrEnum):
    """Statistic a Benchmark ranks by. IQM (the 25% trimmed mean) is robust to a few outlier
    episodes and more efficient than the median (Agarwal et al., 2021)."""

    IQM = "IQM"
    Mean = "Mean"
    Median = "Median"


class BenchmarkEnvironment(Model):
    """One environment of a Benchmark; its parallel copies are the Benchmark's ``nEnvs``."""

    id: str = Field(
        description="Registered gymnasium id (CartPole-v1, ALE/Pong-v5) or 'module:Class'.",
        min_length=1,
        max_length=256,
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for gymnasium.make.")
    module: str | None = Field(
        default=None,
        max_length=256,
        description="Python module imported before the env is made (custom envs that register on import).",
    )
    wrappers: list[Wrapper] = Field(
        default_factory=list,
        max_length=32,
        description="Wrappers applied in order to each copy; use the ones the models were trained with.",
    )
    frame_stack: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Stack this many frames (VecFrameStack), for models trained with frame stacking.",
    )


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


class EvaluateConfig(Model):
    """Everything `kubegym-runner evaluate` needs, rendered by the operator from a Benchmark."""

    kind: Literal["evaluate"] = "evaluate"
    models: list[BenchmarkModel] = Field(min_length=1)
    environments: list[BenchmarkEnvironment] = Field(min_length=1)
    #: Episodes per seed for every model x environment entry.
    episodes: int = Field(ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    deterministic: bool = True
    n_envs: int = Field(default=16, ge=1, le=256)
    statistic: Statistic = Statistic.IQM
    device: Device = Device.auto
    confidence_level: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)
    bootstrap_seed: int = Field(default=0, ge=0)
    storage: S3Storage
    #: Key prefix of the Benchmark's artifacts (``<prefix>/<namespace>/benchmarks/<name>``).
    run_prefix: str
    report_to: RunRef | None = None
    report_interval_seconds: float = Field(default=10.0, ge=1.0)


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


# --- Experiment: seeds x hyperparameter search, and its report (``kubegym-runner report``) -------

#: Keyword arguments of each algorithm's constructor that ``hyperparameters`` may set, i.e.
#: ``kubegym_runner.algorithms.hyperparameter_names`` of the installed stable-baselines3 and
#: sb3-contrib (a unit test keeps the two equal). It lives here so that the operator, which
#: must not import SB3, can reject a search over an unknown name before creating any run.
HYPERPARAMETER_NAMES: dict[str, frozenset[str]] = {
    "PPO": frozenset(
        {
            "batch_size",
            "clip_range",
            "clip_range_vf",
            "ent_coef",
            "gae_lambda",
            "gamma",
            "learning_rate",
            "max_grad_norm",
            "n_epochs",
            "n_steps",
            "normalize_advantage",
            "policy_kwargs",
            "rollout_buffer_class",
            "rollout_buffer_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "target_kl",
            "use_sde",
            "verbose",
            "vf_coef",
        }
    ),
    "A2C": frozenset(
        {
            "ent_coef",
            "gae_lambda",
            "gamma",
            "learning_rate",
            "max_grad_norm",
            "n_steps",
            "normalize_advantage",
            "policy_kwargs",
            "rms_prop_eps",
            "rollout_buffer_class",
            "rollout_buffer_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "use_rms_prop",
            "use_sde",
            "verbose",
            "vf_coef",
        }
    ),
    "DQN": frozenset(
        {
            "batch_size",
            "buffer_size",
            "exploration_final_eps",
            "exploration_fraction",
            "exploration_initial_eps",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "max_grad_norm",
            "n_steps",
            "optimize_memory_usage",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "stats_window_size",
            "target_update_interval",
            "tau",
            "train_freq",
            "verbose",
        }
    ),
    "SAC": frozenset(
        {
            "action_noise",
            "batch_size",
            "buffer_size",
            "ent_coef",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "n_steps",
            "optimize_memory_usage",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "target_entropy",
            "target_update_interval",
            "tau",
            "train_freq",
            "use_sde",
            "use_sde_at_warmup",
            "verbose",
        }
    ),
    "TD3": frozenset(
        {
            "action_noise",
            "batch_size",
            "buffer_size",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "n_steps",
            "optimize_memory_usage",
            "policy_delay",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "stats_window_size",
            "target_noise_clip",
            "target_policy_noise",
            "tau",
            "train_freq",
            "verbose",
        }
    ),
    "DDPG": frozenset(
        {
            "action_noise",
            "batch_size",
            "buffer_size",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "n_steps",
            "optimize_memory_usage",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "tau",
            "train_freq",
            "verbose",
        }
    ),
    "RecurrentPPO": frozenset(
        {
            "batch_size",
            "clip_range",
            "clip_range_vf",
            "ent_coef",
            "gae_lambda",
            "gamma",
            "learning_rate",
            "max_grad_norm",
            "n_epochs",
            "n_steps",
            "normalize_advantage",
            "policy_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "target_kl",
            "use_sde",
            "verbose",
            "vf_coef",
        }
    ),
    "QRDQN": frozenset(
        {
            "batch_size",
            "buffer_size",
            "exploration_final_eps",
            "exploration_fraction",
            "exploration_initial_eps",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "max_grad_norm",
            "n_steps",
            "optimize_memory_usage",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "stats_window_size",
            "target_update_interval",
            "tau",
            "train_freq",
            "verbose",
        }
    ),
    "TQC": frozenset(
        {
            "action_noise",
            "batch_size",
            "buffer_size",
            "ent_coef",
            "gamma",
            "gradient_steps",
            "learning_rate",
            "learning_starts",
            "n_steps",
            "optimize_memory_usage",
            "policy_kwargs",
            "replay_buffer_class",
            "replay_buffer_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "target_entropy",
            "target_update_interval",
            "tau",
            "top_quantiles_to_drop_per_net",
            "train_freq",
            "use_sde",
            "use_sde_at_warmup",
            "verbose",
        }
    ),
    "TRPO": frozenset(
        {
            "batch_size",
            "cg_damping",
            "cg_max_steps",
            "gae_lambda",
            "gamma",
            "learning_rate",
            "line_search_max_iter",
            "line_search_shrinking_factor",
            "n_critic_updates",
            "n_steps",
            "normalize_advantage",
            "policy_kwargs",
            "rollout_buffer_class",
            "rollout_buffer_kwargs",
            "sde_sample_freq",
            "stats_window_size",
            "sub_sampling_factor",
            "target_kl",
            "use_sde",
            "verbose",
        }
    ),
    "MaskablePPO": frozenset(
        {
            "batch_size",
            "clip_range",
            "clip_range_vf",
            "ent_coef",
            "gae_lambda",
            "gamma",
            "learning_rate",
            "max_grad_norm",
            "n_epochs",
            "n_steps",
            "normalize_advantage",
            "policy_kwargs",
            "rollout_buffer_class",
            "rollout_buffer_kwargs",
            "stats_window_size",
            "target_kl",
            "verbose",
            "vf_coef",
        }
    ),
}
#: rl-zoo3's action-noise keys, which the runner turns into ``action_noise`` for off-policy algorithms.
ACTION_NOISE_KEYS = frozenset({"noise_type", "noise_std"})
#: Constructor arguments set elsewhere than ``hyperparameters`` (where, for the message).
RESERVED_HYPERPARAMETERS: dict[str, str] = {
    "policy": "template.policy",
    "env": "template.environment",
    "seed": "spec.seeds",
    "device": "template.device",
    "tensorboard_log": "nowhere (the runner manages it)",
    "_init_setup_model": "nowhere (the runner manages it)",
}


def allowed_hyperparameters(algorithm: Algorithm | str) -> frozenset[str]:
    """Names ``hyperparameters`` may use for ``algorithm`` (what the runner accepts)."""
    name = Algorithm(algorithm).value
    extra = ACTION_NOISE_KEYS if name in OFF_POLICY else frozenset()
    return HYPERPARAMETER_NAMES[name] | extra


class ObjectiveMetric(enum.StrEnum):
    """The number that scores one run of an Experiment."""

    #: Mean return of the run's final evaluation (``status.result.meanReward``).
    FinalReward = "FinalReward"
    #: Best mean return over the run's periodic evaluations and its final one.
    BestEvaluation = "BestEvaluation"
    #: Mean of the evaluation curve (periodic evaluations): rewards learning fast, not only well.
    MeanEvaluation = "MeanEvaluation"
    #: The run's model's score in the Experiment's final Benchmark (needs ``spec.benchmark``).
    Benchmark = "Benchmark"


class Direction(enum.StrEnum):
    Maximize = "Maximize"
    Minimize = "Minimize"


class Objective(Model):
    """How runs are scored and configurations compared."""

    metric: ObjectiveMetric = Field(
        default=ObjectiveMetric.FinalReward,
        description="Score of one run: FinalReward (its final evaluation's mean return), BestEvaluation, "
        "MeanEvaluation (mean of the evaluation curve) or Benchmark (its score in the final Benchmark). "
        "An early-stopped run scores its last evaluation for FinalReward.",
    )
    direction: Direction = Field(default=Direction.Maximize, description="Maximize or Minimize the score.")
    statistic: Statistic = Field(
        default=Statistic.IQM,
        description="Aggregate of a configuration's run scores across seeds: IQM (interquartile mean, robust "
        "to one lucky or unlucky seed), Mean or Median; reported with a 95% bootstrap confidence interval.",
    )


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
    seed: int = Field(ge=0)
    outcome: RunOutcome
    #: Key prefix of the run's artifacts (``<prefix>/<namespace>/<name>``): ``eval/`` is read.
    run_prefix: str
    total_timesteps: int | None = Field(default=None, ge=1)
    #: Name of the run's model in the final Benchmark, if it was benchmarked.
    benchmark_model: str | None = None


class ExperimentReportConfig(Model):
    """Everything `kubegym-runner report` needs, rendered by the operator from an Experiment."""

    kind: Literal["report"] = "report"
    experiment: str = Field(min_length=1)
    objective: Objective = Field(default_factory=Objective)
    configurations: list[ReportConfiguration] = Field(min_length=1)
    runs: list[ReportRun] = Field(min_length=1)
    #: Key prefixes of the final Benchmarks (their ``report/episodes.csv`` are read), if any.
    benchmark_prefixes: list[str] = Field(default_factory=list)
    confidence_level: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)
    bootstrap_seed: int = Field(default=0, ge=0)
    storage: S3Storage
    #: Key prefix of the Experiment's own artifacts (``<prefix>/<namespace>/experiments/<name>``).
    run_prefix: str
    report_to: RunRef | None = None


class ConfigurationResult(Model):
    """A configuration's runs aggregated across seeds (written by the report Job)."""

    rank: int = Field(ge=1, description="1 is the best; configurations without a score are not ranked.")
    configuration: str = Field(description="Configuration id (c0, c1, ...).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What this configuration sets.")
    runs: int = Field(ge=0, description="Runs with a score (failed runs have none).")
    failed: int = Field(default=0, ge=0, description="Runs that failed.")
    early_stopped: int = Field(default=0, ge=0, description="Runs stopped by the early-stopping rule.")
    score: float = Field(description="The objective's statistic (IQM by default) of the run scores.")
    ci_lower: float = Field(description="Lower end of the score's bootstrap confidence interval.")
    ci_upper: float = Field(description="Upper end of the score's bootstrap confidence interval.")
    mean: float = Field(description="Mean of the run scores.")
    std: float = Field(ge=0, description="Population standard deviation of the run scores.")
    min: float = Field(description="Lowest run score.")
    max: float = Field(description="Highest run score.")


class BestConfiguration(Model):
    """The winning configuration (written by the report Job)."""

    configuration: str = Field(description="Configuration id.")
    summary: str = Field(description="Its hyperparameters in one line (name=value, ...).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What it sets.")
    score: float = Field(description="Its score (the objective's statistic across seeds).")
    ci_lower: float = Field(description="Lower end of the score's confidence interval.")
    ci_upper: float = Field(description="Upper end of the score's confidence interval.")


class ExperimentReportFiles(Model):
    """Where an Experiment's report is in S3, and how its numbers were computed."""

    runs_csv: str | None = Field(default=None, description="Per-run table (CSV): seed, hyperparameters, scores.")
    runs_parquet: str | None = Field(default=None, description="The per-run table as Parquet.")
    configurations_csv: str | None = Field(default=None, description="Per-configuration aggregates (CSV).")
    curves_csv: str | None = Field(default=None, description="Every evaluation of every run (long format CSV).")
    learning_curves_png: str | None = Field(
        default=None, description="Evaluation return against timesteps: mean and CI band per configuration."
    )
    final_scores_png: str | None = Field(default=None, description="Run scores and the statistic with its CI.")
    report_json: str | None = Field(default=None, description="Index: settings, aggregates, best, versions.")
    statistic: Statistic | None = Field(default=None, description="Statistic of the aggregates.")
    confidence_level: float | None = Field(default=None, description="Coverage of the intervals.")
    method: str | None = Field(default=None, description="How the intervals were computed.")
    bootstrap_resamples: int | None = Field(default=None, description="Bootstrap resamples.")
    bootstrap_seed: int | None = Field(default=None, description="Seed of the bootstrap (for recomputation).")
    created_at: datetime | None = Field(default=None, description="When the report was written.")


def dump_config(config: BaseModel) -> str:
    """Serialize a config for the ``KUBEGYM_CONFIG`` environment variable."""
    return config.model_dump_json(by_alias=True, exclude_none=True)
