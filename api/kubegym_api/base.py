"""The wire conventions every kubegym model follows, and the small types all kinds share.

Every model derives from :class:`Model`: camelCase on the wire (as Kubernetes APIs are),
snake_case in Python, unknown fields rejected, so a typo in a spec or a config fails loudly
instead of being ignored. The enums and the seed type here (algorithm, device, statistic,
seed) appear in more than one kind and in the runner's configuration; defining them once keeps
their values and bounds equal. :func:`fields_of` builds one model from the fields another shares
with it, so the operator never copies a spec into a runner configuration field by field.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Base: camelCase on the wire (as Kubernetes APIs are), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


def fields_of(model: BaseModel, base: type[BaseModel]) -> dict[str, Any]:
    """The values of ``base``'s fields in ``model`` (an instance of a subclass of ``base``), by name,
    as they are (not copies): what another subclass of ``base`` is built from, e.g.
    ``TrainConfig(**fields_of(spec, AgentSpec), storage=...)``, so no field is copied by hand."""
    if not isinstance(model, base):
        raise TypeError(f"{type(model).__name__} does not derive from {base.__name__}")
    return {name: getattr(model, name) for name in base.model_fields}


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


#: A random seed of an agent, an environment or a draw: what numpy and gymnasium accept.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


#: Algorithms that learn from a replay buffer (their buffer can be checkpointed).
OFF_POLICY = frozenset({"DQN", "SAC", "TD3", "DDPG", "QRDQN", "TQC"})


class Device(enum.StrEnum):
    """Where the networks run: ``auto`` picks a GPU when the pod has one."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Statistic(enum.StrEnum):
    """Statistic a Benchmark ranks by and an Experiment aggregates seeds with. IQM (the 25%
    trimmed mean) is robust to a few outliers and more efficient than the median (Agarwal et
    al., 2021)."""

    IQM = "IQM"
    Mean = "Mean"
    Median = "Median"
