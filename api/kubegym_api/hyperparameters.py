"""Which names ``hyperparameters`` may use for each algorithm, without importing stable-baselines3.

The operator checks an Experiment's search and template against these before it creates any
run (its image has no SB3); the runner checks a run against the algorithm class itself. The
per-algorithm constructor arguments are :data:`~kubegym_api.hyperparameter_table.HYPERPARAMETER_NAMES`,
generated from the installed SB3 by ``hack/gen_hyperparameters.py``; this module adds what is
not in a constructor signature: rl-zoo3's action-noise keys, and the arguments set elsewhere.

It also says which values are strings standing for Python (``policy_kwargs: "dict(...)"``, class
names) and parses them with :mod:`kubegym_api.pyliteral`: both images call
:func:`parse_hyperparameters`, so what the operator accepts is exactly what the runner will use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_api.base import OFF_POLICY, Algorithm
from kubegym_api.hyperparameter_table import HYPERPARAMETER_NAMES
from kubegym_api.pyliteral import TRUSTED_PACKAGES, LiteralError, Symbol, is_import_path, parse_literal, symbol

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


# --- strings that stand for Python values ------------------------------------------------------

#: Hyperparameters that rl-zoo3 would ``eval`` when given as a string; here they are parsed by
#: :func:`kubegym_api.pyliteral.parse_literal` instead, in the operator and in the runner.
LITERAL_KEYS = frozenset({"policy_kwargs", "replay_buffer_kwargs", "normalize", "monitor_kwargs"})
#: Arguments whose string is a class name (at the top level or inside ``policy_kwargs``).
CLASS_KEYS = frozenset(
    {"activation_fn", "optimizer_class", "features_extractor_class", "replay_buffer_class", "rollout_buffer_class"}
)
#: rl-zoo3 keys (presets only) whose strings are dotted import paths of wrappers and callbacks.
ZOO_IMPORT_KEYS = frozenset({"env_wrapper", "vec_env_wrapper", "callback"})


@dataclass(frozen=True)
class ImportPath:
    """A class named by its import path in the runner image (``my_package.layers:Swish``)."""

    path: str


def class_name(text: str, field: str) -> Symbol | ImportPath:
    """A class given by name: an allowed name (``ReLU``, ``nn.Tanh``) or a ``module:Class`` import path."""
    text = text.strip()
    if is_import_path(text):
        return ImportPath(text)
    return symbol(text, field)


def _class_names(value: Any, field: str) -> Any:
    """``value`` (a kwargs mapping) with its class-valued strings turned into names."""
    if not isinstance(value, Mapping):
        return value
    return {k: class_name(v, f"{field}.{k}") if k in CLASS_KEYS and isinstance(v, str) else v for k, v in value.items()}


def _trusted_import(name: Any, field: str) -> None:
    if not isinstance(name, str):
        raise LiteralError(field, f"expected a dotted class name, got {type(name).__name__}")
    if not name.startswith(TRUSTED_PACKAGES):
        raise LiteralError(
            field, f"{name!r} is not under {', '.join(p.rstrip('.') for p in TRUSTED_PACKAGES)}; it is not imported"
        )


def _check_zoo_imports(value: Any, field: str) -> None:
    """rl-zoo3's ``env_wrapper``/``callback`` forms: a name, a list of names, or of ``{name: kwargs}``."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, Mapping):
            for name, kwargs in item.items():
                _trusted_import(name, field)
                if kwargs is not None and not isinstance(kwargs, Mapping):
                    raise LiteralError(field, f"the arguments of {name!r} must be a mapping")
        else:
            _trusted_import(item, field)


def parse_hyperparameters(hyperparameters: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``hyperparameters`` with every string that stands for a Python value parsed, never evaluated.

    * :data:`LITERAL_KEYS` given as strings become the value they spell
      (``"dict(net_arch=[64])"`` → ``{"net_arch": [64]}``), names in them :class:`Symbol`;
    * class-valued strings (:data:`CLASS_KEYS`, also inside the kwargs) become a
      :class:`Symbol` or an :class:`ImportPath`;
    * rl-zoo3's ``env_wrapper``/``vec_env_wrapper``/``callback`` and a dotted ``policy`` must name
      classes of :data:`~kubegym_api.pyliteral.TRUSTED_PACKAGES` (they come from preset tables).

    ``where`` prefixes field names in errors (``spec.hyperparameters``). Raises
    :class:`~kubegym_api.pyliteral.LiteralError`; other values are returned as they are.
    """
    out: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        field = f"{where}.{key}"
        if key in LITERAL_KEYS and isinstance(value, str):
            value = parse_literal(value, field)
        elif key in CLASS_KEYS and isinstance(value, str):
            value = class_name(value, field)
        elif key in ZOO_IMPORT_KEYS and value is not None:
            _check_zoo_imports(value, field)
        elif key == "policy" and isinstance(value, str) and "." in value:
            _trusted_import(value, field)
        if key in LITERAL_KEYS:
            value = _class_names(value, field)
        out[key] = value
    return out
