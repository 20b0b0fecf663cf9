"""Population-Based Training's schedule: which segment each member trains next, from what, with what (pure).

PBT (Jaderberg et al., 2017) trains a population side by side and, every ``interval`` timesteps,
lets the worst members continue from the best members' models with perturbed hyperparameters
(*exploit* and *explore*). Here it is synchronous, in generations: member ``m<i>`` trains segment
``g`` (timesteps ``g*interval`` to ``(g+1)*interval``) as the TrainingRun
``<experiment>-m<i>g<g>-s<seed>``, which resumes (``resumeFrom``, the existing way one run starts
from another's model) from the final model of segment ``g-1`` — its own, or, when it was in the
bottom ``quantile`` of generation ``g-1``, that of a member of the top quantile, with that member's
hyperparameters explored. Generation ``g+1`` is decided once every segment of generation ``g`` is
done.

Every decision is a function of the spec and of the finished segments' scores, with draws seeded
from ``seed`` and the generation: the whole schedule is recomputed at every reconcile, so an
operator restart or failover recomputes exactly the decisions it had made, and nothing needs to be
stored besides the runs themselves. A failed segment ranks below every scored one and always
copies; a generation with no scored segment ends the population (its later segments are skipped).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubegym_api.experiment import Direction, Explore, ParameterType, PopulationParameter, PopulationSearch

#: Significant digits of drawn and perturbed floats (as a random search rounds them).
DIGITS = 6


@dataclass(frozen=True)
class Segment:
    """One segment of one member: what its TrainingRun trains."""

    member: int
    generation: int
    #: Timesteps the member has when it starts, and the run's totalTimesteps (absolute: resumed
    #: runs go on counting, reset_num_timesteps=False).
    start: int
    target: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: The segment whose final model it resumes from (None for generation 0).
    source: tuple[int, int] | None = None
    #: The member it copied, when it did not continue its own model.
    copied_from: int | None = None

    @property
    def id(self) -> str:
        """Its configuration id, part of its run's name: ``m<member>g<generation>``."""
        return segment_id(self.member, self.generation)


@dataclass(frozen=True)
class Schedule:
    """The segments decided so far, and why the rest never will be (None while they may)."""

    segments: list[Segment]
    ended: str | None = None


def segment_id(member: int, generation: int) -> str:
    return f"m{member}g{generation}"


def generations(search: PopulationSearch, total_timesteps: int) -> int:
    """Segments per member: the budget in intervals, the last one shorter when it does not divide."""
    return max(1, math.ceil(total_timesteps / search.interval))


def non_numeric_perturbations(search: PopulationSearch) -> list[str]:
    """Parameters set to Perturb whose choices are not all numbers (they can only be resampled)."""
    return sorted(
        name
        for name, p in search.parameters.items()
        if p.type == ParameterType.Categorical
        and p.explore == Explore.Perturb
        and not all(isinstance(c, int | float) and not isinstance(c, bool) for c in p.choices or [])
    )


def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def draw(p: PopulationParameter, rng: random.Random) -> Any:
    """A value of ``p``'s range."""
    if p.type == ParameterType.Categorical:
        return rng.choice(p.choices or [None])
    low, high = float(p.low or 0.0), float(p.high or 0.0)
    if p.step is not None:
        k = rng.randint(0, math.floor((high - low) / p.step + 1e-9))
        value = low + k * p.step
    elif p.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return _clip(p, value)


def _clip(p: PopulationParameter, value: float) -> Any:
    low, high = float(p.low or 0.0), float(p.high or 0.0)
    if p.step is not None:
        value = low + round((value - low) / p.step) * p.step
    value = min(max(value, low), high)
    return round(value) if p.type == ParameterType.Int else _round(value)


def explore(search: PopulationSearch, hyperparameters: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """The copied member's hyperparameters, explored: each resampled with resampleProbability (or,
    set to Resample, kept otherwise), else perturbed (a factor for Float and Int, a neighbouring
    choice for a Categorical of numbers)."""
    out = dict(hyperparameters)
    for name, p in sorted(search.parameters.items()):
        resample = rng.random() < search.resample_probability
        if resample:
            out[name] = draw(p, rng)
        elif p.explore == Explore.Resample:
            continue
        elif p.type == ParameterType.Categorical:
            choices = p.choices or []
            index = next((i for i, c in enumerate(choices) if c == out[name]), 0)
            out[name] = choices[min(max(index + rng.choice((-1, 1)), 0), len(choices) - 1)]
        else:
            out[name] = _clip(p, float(out[name]) * rng.choice(search.perturb_factors))
    return out


def _rng(seed: int, *key: int) -> random.Random:
    return random.Random(":".join(str(k) for k in (seed, *key)))


def schedule(
    search: PopulationSearch,
    total_timesteps: int,
    direction: Direction,
    results: Mapping[str, float | None],
) -> Schedule:
    """Every segment decided so far. ``results`` holds the finished segments by id: their score,
    or None when the segment failed (or succeeded without a score)."""
    count = generations(search, total_timesteps)

    def target(g: int) -> int:
        return min((g + 1) * search.interval, total_timesteps)

    current = []
    for member in range(search.population):
        rng = _rng(search.seed, 0, member)
        hp = {name: draw(p, rng) for name, p in sorted(search.parameters.items())}
        current.append(Segment(member, 0, 0, target(0), hp))
    segments = list(current)
    for g in range(count - 1):
        if any(s.id not in results for s in current):
            return Schedule(segments)
        scored = [s for s in current if results[s.id] is not None]
        if not scored:
            return Schedule(segments, f"no member of generation {g} has a score: the population cannot go on")
        sign = 1.0 if direction == Direction.Maximize else -1.0
        ranked = sorted(scored, key=lambda s: (-sign * float(results[s.id] or 0.0), s.member))
        replace = max(1, math.floor(search.population * search.quantile)) if search.quantile > 0 else 0
        replace = min(replace, len(ranked) // 2) if len(ranked) > 1 else 0
        top = ranked[:replace] if replace else ranked[:1]
        bottom = {s.member for s in ranked[len(ranked) - replace :]} if replace else set()
        bottom |= {s.member for s in current if results[s.id] is None}
        rng = _rng(search.seed, g + 1)
        following = []
        for s in current:
            if s.member in bottom:
                parent = rng.choice(top)
                hp = explore(search, parent.hyperparameters, rng)
                following.append(
                    Segment(s.member, g + 1, target(g), target(g + 1), hp, (parent.member, g), parent.member)
                )
            else:
                following.append(Segment(s.member, g + 1, target(g), target(g + 1), s.hyperparameters, (s.member, g)))
        segments += following
        current = following
    return Schedule(segments)
