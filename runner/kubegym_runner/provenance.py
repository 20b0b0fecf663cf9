"""Whose a checkpoint is and what it fits: the run uid, algorithm, env and spaces a manifest records,
and the two questions a training runner asks of a checkpoint before it loads one.

1. **Is this checkpoint of my own folder mine?** (:func:`foreign_reason`) A restarted pod resumes
   from the newest complete checkpoint of its run's folder. The folder has the run's uid in its
   name (``<prefix>/<namespace>/<name>/<uid>``), so another run's checkpoint cannot be there by
   layout; the manifest's ``runUid`` is checked as well (defence in depth), and so are the
   algorithm, env id and spaces, which also covers folders of the old ``<namespace>/<name>``
   layout, where a run deleted and applied again under the same name found its predecessor's
   checkpoints. A checkpoint that is not the run's is skipped (never loaded, never pruned).
2. **May I start from this other run's checkpoint?** (:func:`resume_mismatch`) Only through
   ``resumeFrom``, and only if it was saved by the same algorithm for the same observation and
   action spaces; otherwise the run fails with a :class:`~kubegym_runner.errors.UserError` naming
   both, before training. Weights of one algorithm load into another's class without an error
   when the policies have the same shape (PPO and A2C share ``ActorCriticPolicy``), so nothing
   else would stop it.

Spaces are compared as :func:`describe_space` strings: the space's kind, shape and dtype (the
``n``/``start`` of a ``Discrete``, the ``nvec`` of a ``MultiDiscrete``; the members of a ``Dict``
or ``Tuple``), which decide whether a network fits; bounds are left to stable-baselines3's own
check on load (also a UserError). They are the spaces the *model* sees (after stable-baselines3
transposes channel-last images), as its archive stores them.

**Checkpoints from before these fields** (manifest format 1: algorithm and env id, no uid, no
spaces): the algorithm comes from the manifest (every manifest had it); the spaces from the model
archive's ``data`` JSON, which stable-baselines3 writes with each space's type, shape and dtype
beside the pickled object (:func:`archive_spaces`; read as JSON, nothing unpickled); where even that
cannot tell, the spaces are not compared here and stable-baselines3's check on load decides.
A format-1 checkpoint in a run's own folder has no uid to compare and is taken as the run's when
algorithm, env and spaces agree (a run that started under an older operator resumes as before).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gymnasium import spaces

from kubegym_runner.checkpoints import Manifest

#: ``<class 'gymnasium.spaces.box.Box'>`` → ``Box``.
_TYPE = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_INT = re.compile(r"-?\d+")


def _shape(shape: Any) -> str:
    return str(tuple(int(n) for n in shape))


def describe_space(space: spaces.Space[Any]) -> str:
    """A space as a short string that compares equal for spaces a network fits alike (no bounds)."""
    if isinstance(space, spaces.Box):
        return f"Box(shape={_shape(space.shape)}, dtype={space.dtype})"
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return f"Discrete({int(space.n)})" if start == 0 else f"Discrete({int(space.n)}, start={start})"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete(shape={_shape(space.shape)}, nvec={[int(n) for n in space.nvec.flatten()]})"
    if isinstance(space, spaces.MultiBinary):
        return f"MultiBinary(shape={_shape(space.shape)})"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{key}: {describe_space(sub)}" for key, sub in space.spaces.items()) + ")"
    if isinstance(space, spaces.Tuple):
        return "Tuple(" + ", ".join(describe_space(sub) for sub in space.spaces) + ")"
    return repr(space)


def describe_serialized_space(entry: Any) -> str | None:
    """:func:`describe_space` of a space as stable-baselines3's archive ``data`` JSON records it,
    from the plain fields beside the pickle; None for a kind or a form it cannot tell."""
    if not isinstance(entry, Mapping):
        return None
    match = _TYPE.fullmatch(str(entry.get(":type:", "")))
    shape = entry.get("_shape")
    if match is None or not isinstance(shape, list):
        return None
    kind = match.group(1)
    try:
        if kind == "Box" and entry.get("dtype"):
            return f"Box(shape={_shape(shape)}, dtype={entry['dtype']})"
        if kind == "Discrete":
            n, start = int(entry["n"]), int(entry.get("start", 0))
            return f"Discrete({n})" if start == 0 else f"Discrete({n}, start={start})"
        if kind == "MultiDiscrete":
            text = str(entry["nvec"])
            if "..." in text:  # numpy shortened a long array
                return None
            nvec = [int(n) for n in _INT.findall(text)]
            return f"MultiDiscrete(shape={_shape(shape)}, nvec={nvec})"
        if kind == "MultiBinary":
            return f"MultiBinary(shape={_shape(shape)})"
    except (KeyError, TypeError, ValueError):
        return None
    return None


def archive_spaces(archive: Path) -> tuple[str | None, str | None]:
    """Observation and action space of a stable-baselines3 model archive (its ``data`` JSON, not
    unpickled), each None where the archive cannot tell."""
    try:
        with zipfile.ZipFile(archive) as zf:
            data = json.loads(zf.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None, None
    if not isinstance(data, Mapping):
        return None, None
    return describe_serialized_space(data.get("observation_space")), describe_serialized_space(data.get("action_space"))


@dataclass(frozen=True)
class Provenance:
    """Who saved a checkpoint, or who is about to load one: the run's uid (None: not recorded),
    the algorithm (class name, as ``PPO``), the env id and the spaces (None: unknown)."""

    run_uid: str | None
    algorithm: str
    env_id: str
    observation_space: str | None = None
    action_space: str | None = None

    @classmethod
    def of(cls, manifest: Manifest) -> Provenance:
        """What a checkpoint's manifest records (format 1: no uid, no spaces)."""
        return cls(
            manifest.run_uid, manifest.algorithm, manifest.env_id, manifest.observation_space, manifest.action_space
        )

    def with_archive(self, archive: Path | None) -> Provenance:
        """The spaces the manifest did not record, from the model archive (:func:`archive_spaces`)."""
        if archive is None or (self.observation_space is not None and self.action_space is not None):
            return self
        observation, action = archive_spaces(archive)
        return replace(
            self,
            observation_space=self.observation_space or observation,
            action_space=self.action_space or action,
        )


def _differs(mine: str | None, theirs: str | None) -> bool:
    return mine is not None and theirs is not None and mine != theirs


def foreign_reason(theirs: Provenance, mine: Provenance) -> str | None:
    """Why a checkpoint found in this run's own folder is not this run's (never loaded), or None."""
    if theirs.run_uid is not None and theirs.run_uid != mine.run_uid:
        return f"it belongs to run uid {theirs.run_uid}, this run is uid {mine.run_uid or '(not recorded)'}"
    if theirs.algorithm != mine.algorithm:
        return f"it was saved by {theirs.algorithm}, this run trains {mine.algorithm}"
    if theirs.env_id != mine.env_id:
        return f"it was saved on {theirs.env_id!r}, this run trains on {mine.env_id!r}"
    for what, a, b in (
        ("observation", theirs.observation_space, mine.observation_space),
        ("action", theirs.action_space, mine.action_space),
    ):
        if _differs(a, b):
            return f"its {what} space is {a}, this run's is {b}"
    return None


def resume_mismatch(theirs: Provenance, mine: Provenance) -> list[str]:
    """What keeps this run from starting from another run's checkpoint (``resumeFrom``): a different
    algorithm or spaces, each naming both sides; empty when it may. The env id may differ (same
    spaces, another task: fine-tuning)."""
    problems: list[str] = []
    if theirs.algorithm != mine.algorithm:
        problems.append(f"the checkpoint was saved by {theirs.algorithm}, this run trains {mine.algorithm}")
    for what, a, b in (
        ("observation", theirs.observation_space, mine.observation_space),
        ("action", theirs.action_space, mine.action_space),
    ):
        if _differs(a, b):
            problems.append(f"its {what} space is {a}, this run's ({mine.env_id}) is {b}")
    return problems
