"""Which names ``hyperparameters`` may use for each algorithm, without importing stable-baselines3.

The operator checks an Experiment's search and template against these before it creates any
run (its image has no SB3); the runner checks a run against the algorithm class itself. The
per-algorithm constructor arguments are :data:`~kubegym_api.hyperparameter_table.HYPERPARAMETER_NAMES`,
generated from the installed SB3 by ``hack/gen_hyperparameters.py``; this module adds what is
not in a constructor signature: rl-zoo3's action-noise keys, and the arguments set elsewhere.
"""

from __future__ import annotations

from kubegym_api.base import OFF_POLICY, Algorithm
from kubegym_api.hyperparameter_table import HYPERPARAMETER_NAMES

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
