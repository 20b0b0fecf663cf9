"""Loading model archives, normalisation statistics and replay buffers without running their code.

A stable-baselines3 archive is a zip whose ``data`` member is JSON in which every non-JSON value
(spaces, schedules, the policy class, ``policy_kwargs`` holding classes) is a base64 *pickle*;
``vecnormalize.pkl`` and ``replay_buffer.pkl`` are pickles outright. ``pickle.loads`` runs any
callable the pickle names, so loading someone else's archive the way SB3 does would run its code
in our pod: a Benchmark evaluating a colleague's model, or a run resuming from another run's
checkpoint (``resumeFrom``). The weights (``*.pth``) are already safe: SB3 reads them with
``torch.load(weights_only=True)``.

Here every pickle goes through :class:`RestrictedUnpickler`, which resolves only the globals
those files legitimately hold (found by pickling what every algorithm saves, see
:data:`ALLOWED_GLOBALS` and :data:`ALLOWED_CLASS_MODULES`): numpy's array and random-state
reconstructors, gymnasium spaces, ``collections.deque``, ``torch.device`` and classes (never
functions) of stable-baselines3, sb3-contrib, ``torch.nn`` and ``torch.optim``. Anything else —
``os.system``, ``builtins.eval``, cloudpickle's function rebuilders — is refused with
:class:`UnsafePickle` before it is called. The values so loaded are handed to SB3 as its
``custom_objects``, so SB3 itself never unpickles anything.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

#: ``module:name`` globals a saved space, buffer, schedule or statistics object needs.
ALLOWED_GLOBALS = frozenset(
    {
        "builtins:object",
        "collections:OrderedDict",
        "collections:deque",
        "copyreg:_reconstructor",
        "numpy:dtype",
        "numpy:ndarray",
        "numpy._core.multiarray:_reconstruct",
        "numpy._core.multiarray:scalar",
        "numpy._core.numeric:_frombuffer",
        "numpy.core.multiarray:_reconstruct",
        "numpy.core.multiarray:scalar",
        "numpy.core.numeric:_frombuffer",
        "numpy.random._pickle:__bit_generator_ctor",
        "numpy.random._pickle:__generator_ctor",
        "numpy.random._pickle:__randomstate_ctor",
        "numpy.random._pcg64:PCG64",
        "numpy.random._mt19937:MT19937",
        "numpy.random.bit_generator:SeedSequence",
        "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
        "torch:device",
        # rl-zoo3's lin_<x> schedules (presets, and the spec's own lin_3e-4) are saved as this class.
        "rl_zoo3.utils:SimpleLinearSchedule",
    }
)
#: Modules whose *classes* (never functions) a pickle may name: SB3/sb3-contrib policies, buffers,
#: schedules, VecNormalize and its running statistics; spaces; activations and optimizers named in
#: ``policy_kwargs``. Not whole packages: SB3's logger classes, say, open files when constructed.
ALLOWED_CLASS_MODULES = re.compile(
    r"^(?:stable_baselines3|sb3_contrib)(?:\.[a-z0-9_]+)*\."
    r"(?:policies|buffers|her_replay_buffer|running_mean_std|type_aliases|utils|vec_normalize|torch_layers|"
    r"rmsprop_tf_like|distributions)$"
    r"|^gymnasium\.spaces(?:\.[a-z_]+)?$|^torch\.nn\.modules\.activation$|^torch\.optim(?:\.[a-z_]+)?$"
)

T = TypeVar("T")


class UnsafePickle(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list; nothing it names was called."""

    def __init__(self, what: str, name: str) -> None:
        super().__init__(
            f"{what} refers to {name}, which is not loaded (only spaces, arrays and SB3/torch classes are)"
        )
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and allowed classes."""

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, what: str) -> None:
        super().__init__(file)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}:{name}"
        if qualified in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if ALLOWED_CLASS_MODULES.match(module) and name.isidentifier() and not name.startswith("_"):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise UnsafePickle(self.what, qualified)


def loads(data: bytes, what: str) -> Any:
    """Unpickle ``data`` through :class:`RestrictedUnpickler`; ``what`` names it in errors."""
    return RestrictedUnpickler(io.BytesIO(data), what).load()


def load_file(path: str | Path, what: str, expected: type[T]) -> T:
    """Unpickle the file at ``path``, which must hold an instance of ``expected``."""
    obj = loads(Path(path).read_bytes(), what)
    if not isinstance(obj, expected):
        raise pickle.UnpicklingError(f"{what} holds a {type(obj).__name__}, not a {expected.__name__}")
    return obj


def archive_objects(archive: str | Path, replace: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pickled values of an SB3 archive's ``data``, each unpickled safely (``replace``'s keys are
    not unpickled at all), ready to pass to ``load`` as ``custom_objects``.

    Raises :class:`UnsafePickle`, or :class:`ValueError` when the archive is not an SB3 archive.
    """
    replace = dict(replace or {})
    try:
        with zipfile.ZipFile(archive) as zf:
            data = json.loads(zf.read("data").decode())
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a stable-baselines3 archive: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError("not a stable-baselines3 archive: its data is not a JSON object")
    objects = dict(replace)
    for key, item in data.items():
        if key in replace or not (isinstance(item, dict) and ":serialized:" in item):
            continue
        try:
            raw = base64.b64decode(str(item[":serialized:"]).encode(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"the archive's {key!r} is not base64: {e}") from e
        objects[key] = loads(raw, f"the archive's {key!r}")
    return objects


def load_algorithm(
    cls: type[BaseAlgorithm], archive: str | Path, *, replace: Mapping[str, Any] | None = None, **kwargs: Any
) -> BaseAlgorithm:
    """``cls.load(archive, **kwargs)`` with every pickled value loaded by :func:`archive_objects`."""
    return cls.load(archive, custom_objects=archive_objects(archive, replace), **kwargs)


def load_vecnormalize(path: str | Path, venv: VecEnv) -> VecNormalize:
    """``VecNormalize.load`` through the restricted unpickler."""
    vec_normalize = load_file(path, "vecnormalize.pkl", VecNormalize)
    vec_normalize.set_venv(venv)
    return vec_normalize


def load_replay_buffer(model: BaseAlgorithm, path: str | Path) -> None:
    """``model.load_replay_buffer(path)`` through the restricted unpickler (same post-processing)."""
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

    buffer = load_file(path, "replay_buffer.pkl", ReplayBuffer)
    if isinstance(buffer, HerReplayBuffer):
        buffer.set_env(model.get_env())  # type: ignore[arg-type]
        buffer.truncate_last_trajectory()
    buffer.device = model.device
    model.replay_buffer = buffer  # type: ignore[attr-defined]
