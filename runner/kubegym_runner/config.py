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


class Algorithm(str, enum.Enum):
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


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class VecEnvMode(str, enum.Enum):
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
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the wrapper."
    )


class EnvironmentConfig(Model):
    """Which environment to train or evaluate on, and how many copies to run."""

    id: str = Field(
        description="Registered gymnasium id, e.g. CartPole-v1 or ALE/Pong-v5.",
        min_length=1,
        max_length=256,
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for gymnasium.make."
    )
    module: str | None = Field(
        default=None,
        description=(
            "Python module imported before the env is made, for custom environments "
            "that register their ids on import ('my_pkg.envs')."
        ),
    )
    wrappers: list[Wrapper] = Field(
        default_factory=list, description="Wrappers applied in order to each env copy."
    )
    n_envs: int = Field(
        default=1, ge=1, le=256, description="Number of parallel environment copies."
    )
    vec_env: VecEnvMode = Field(
        default=VecEnvMode.dummy,
        description="Vectorisation: 'dummy' (one process) or 'subproc' (one process per env).",
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

    every_steps: int = Field(
        default=10_000, ge=1, description="Save a checkpoint every this many timesteps."
    )
    keep_last: int = Field(
        default=3, ge=1, le=1000, description="Keep the newest K checkpoints, delete older ones."
    )
    save_replay_buffer: bool = Field(
        default=False,
        description="Also save the replay buffer (off-policy algorithms only).",
    )


class EvaluationConfig(Model):
    """Periodic evaluation during training, on a separate env copy."""

    every_steps: int = Field(
        default=10_000, ge=1, description="Evaluate every this many timesteps."
    )
    episodes: int = Field(default=10, ge=1, le=10_000, description="Episodes per evaluation.")
    deterministic: bool = Field(
        default=True, description="Use the deterministic policy during evaluation."
    )


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
    resume_from: str | None = Field(
        default=None, description="s3:// URI of a checkpoint folder to start from."
    )
    report_to: RunRef | None = None
    report_interval_seconds: float = Field(default=10.0, ge=1.0)


class EvaluationResult(Model):
    """Outcome of one evaluation: the episode return over a number of episodes."""

    timesteps: int = Field(ge=0, description="Training timesteps when the evaluation ran.")
    mean_reward: float = Field(description="Mean episode return.")
    std_reward: float = Field(default=0.0, ge=0, description="Standard deviation of the return.")
    episodes: int = Field(default=0, ge=0, description="Number of episodes evaluated.")


class TrainingProgress(Model):
    """What the runner reports onto ``status.progress`` while it trains (no NaN/Infinity)."""

    timesteps: int = Field(default=0, ge=0, description="Timesteps trained so far.")
    total_timesteps: int | None = Field(
        default=None, ge=1, description="Timesteps the run trains for in total."
    )
    fraction: float = Field(default=0.0, ge=0, le=1, description="timesteps / totalTimesteps.")
    percent: int = Field(
        default=0, ge=0, le=100, description="Whole percent done (printer column Progress%)."
    )
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
    last_evaluation: EvaluationResult | None = Field(
        default=None, description="The most recent periodic evaluation."
    )
    resumed_from_step: int | None = Field(
        default=None,
        ge=0,
        description="Timestep of the checkpoint the current attempt resumed from (0: fresh).",
    )
    update_time: datetime | None = Field(
        default=None, description="When the runner wrote this progress."
    )


class CheckpointStatus(Model):
    """The run's checkpoints in storage, as ``status.checkpoints``."""

    latest_uri: str | None = Field(
        default=None, description="s3:// URI of the newest complete checkpoint folder."
    )
    latest_step: int | None = Field(
        default=None, ge=0, description="Timestep of the newest complete checkpoint."
    )
    count: int = Field(default=0, ge=0, description="Complete checkpoints currently kept.")


class TrainingResult(Model):
    """The finished run, as ``status.result``."""

    timesteps: int | None = Field(default=None, ge=0, description="Timesteps trained in total.")
    mean_reward: float | None = Field(
        default=None, description="Mean return of the final evaluation."
    )
    std_reward: float | None = Field(
        default=None, ge=0, description="Standard deviation of the final evaluation's return."
    )
    episodes: int | None = Field(
        default=None, ge=0, description="Episodes of the final evaluation."
    )
    model_uri: str | None = Field(
        default=None, description="s3:// URI of the final model folder (final/)."
    )


def dump_config(config: BaseModel) -> str:
    """Serialize a config for the ``KUBEGYM_CONFIG`` environment variable."""
    return config.model_dump_json(by_alias=True, exclude_none=True)
