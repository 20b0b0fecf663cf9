"""Early-stopping rules over evaluation curves (pure): median stopping, ASHA and Hyperband.

Each rule reads the runs' evaluation curves (mean evaluation return against timesteps) and
names the training runs it stops, with a message in its own words. They are pure and
deterministic: the same curves (and, for ASHA and Hyperband, the same recorded promotions)
give the same decisions, so a restarted operator decides exactly what the old one would have.

**Median** (Golovin et al. 2017, *Google Vizier*): stop a run whose best objective so far is
worse than the median of the other runs' objectives at the same step. A run becomes a
candidate after ``minEvaluations`` evaluations (its grace period), and the median needs at
least ``minRuns`` other runs that have themselves reached that step, so a slow start alone
never stops a run. Runs are compared at the candidate's latest evaluation step that enough
other runs have reached (each other run contributes its latest evaluation at or before that
step). Judging at that step rather than at the candidate's very latest one makes the decision
independent of which run happens to report first.

**ASHA** (Li et al. 2018, asynchronous successive halving): rung ``k`` is at ``minResource x
reductionFactor^(minEarlyStoppingRate + k)`` timesteps. A run's value at a rung is its first
evaluation at or after it. When a run reaches a rung it is compared with every run that has
reached it (itself included): it continues if it is in the top ``1/reductionFactor`` (at least
one), else it stops. A promotion is final (it is recorded in the Experiment's status and never
re-judged), so an early arrival promoted against few competitors keeps training: that is what
makes the rule asynchronous, and why no run waits for the others. The rungs mirror Optuna's
``SuccessiveHalvingPruner`` (a unit test replays trials into it and expects the same prunes).

**Hyperband** (Li et al. 2017): brackets ``b = 0 .. n-1`` with ``n = floor(log_eta(R /
minResource)) + 1`` and ``R = template.totalTimesteps``; bracket ``b`` is ASHA with
``minEarlyStoppingRate = b``, so its first rung is ``eta^b`` times later. Each configuration
(every seed of it) goes to one bracket, drawn by a stable hash of its id with the odds of the
bracket's budget (as Optuna's ``HyperbandPruner``), and competes only within it: aggressive
brackets try many configurations briefly, patient ones few for long, which hedges against not
knowing how early a run can be judged.
"""

from __future__ import annotations

import abc
import hashlib
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: (timesteps, mean evaluation return), in increasing timesteps.
Curve = Sequence[tuple[int, float]]


class StopDecision(abc.ABC):
    """A rule's decision to stop one run; :attr:`message` says why, in the rule's own words."""

    run: str

    @property
    @abc.abstractmethod
    def message(self) -> str:
        """Why the run is stopped (the run's annotation, its status entry and the Event)."""


@dataclass(frozen=True)
class MedianStop(StopDecision):
    """The median rule stops ``run``: its best by ``step`` against the others' median there."""

    run: str
    step: int
    best: float
    median: float
    references: int

    @property
    def message(self) -> str:
        return (
            f"its best evaluation by step {self.step} ({self.best:g}) is worse than the median "
            f"({self.median:g}) of {self.references} other runs at that step (median stopping rule)"
        )


def value_at(curve: Curve, step: int) -> float | None:
    """The curve's latest value at or before ``step``."""
    value = None
    for t, r in curve:
        if t > step:
            break
        value = r
    return value


def reached(curve: Curve, step: int) -> bool:
    """Whether the curve has an evaluation at ``step`` or later."""
    return bool(curve) and curve[-1][0] >= step


def judge(
    run: str,
    curves: Mapping[str, Curve],
    *,
    min_evaluations: int,
    min_runs: int,
    maximize: bool = True,
) -> MedianStop | None:
    """The median rule's stop decision for ``run``, or None (too early, too few references, or not losing)."""
    curve = sorted(curves.get(run, ()))
    if len(curve) < min_evaluations:
        return None
    others = {name: sorted(c) for name, c in curves.items() if name != run and c}
    for step, _ in reversed(curve[min_evaluations - 1 :]):
        references = [v for c in others.values() if reached(c, step) and (v := value_at(c, step)) is not None]
        if len(references) < min_runs:
            continue
        own = [r for t, r in curve if t <= step]
        best = max(own) if maximize else min(own)
        median = float(statistics.median(references))
        losing = best < median if maximize else best > median
        return MedianStop(run, step, best, median, len(references)) if losing else None
    return None


def median_stopping(
    curves: Mapping[str, Curve],
    candidates: Iterable[str],
    *,
    min_evaluations: int,
    min_runs: int,
    maximize: bool = True,
) -> list[MedianStop]:
    """Decisions for every candidate that the median rule stops, in name order.

    ``curves`` holds every run's curve (finished and stopped runs included: they are the
    references); ``candidates`` are the runs that may be stopped (those still training).
    """
    out = []
    for run in sorted(set(candidates)):
        decision = judge(run, curves, min_evaluations=min_evaluations, min_runs=min_runs, maximize=maximize)
        if decision is not None:
            out.append(decision)
    return out


# --- ASHA and Hyperband: rungs ------------------------------------------------------------------


@dataclass(frozen=True)
class RungStop(StopDecision):
    """ASHA (or one Hyperband bracket) stops ``run`` at ``rung``: its value there is outside the top
    ``keep`` of the ``competitors`` values, whose last kept value is ``cutoff``."""

    run: str
    rung: int
    #: The rung's timesteps.
    step: int
    #: The timesteps of the evaluation that is the run's value at the rung (its first at or after it).
    evaluated_at: int
    value: float
    cutoff: float
    keep: int
    competitors: int
    reduction_factor: int
    #: The Hyperband bracket; None for plain ASHA.
    bracket: int | None = None

    @property
    def message(self) -> str:
        rule = "ASHA" if self.bracket is None else f"Hyperband bracket {self.bracket}, ASHA"
        return (
            f"at rung {self.rung} ({self.step} timesteps) its evaluation at step {self.evaluated_at} "
            f"({self.value:g}) is not in the top {self.keep} of the {self.competitors} runs that reached the rung "
            f"(cutoff {self.cutoff:g}; {rule} with reduction factor {self.reduction_factor})"
        )


@dataclass(frozen=True)
class Judgement:
    """What ASHA or Hyperband decided this round."""

    #: The runs stopped, in name order.
    stops: list[RungStop] = field(default_factory=list)
    #: The runs promoted this round, to the highest rung each was promoted past.
    promoted: dict[str, int] = field(default_factory=dict)


def rung_step(rung: int, *, min_resource: int, reduction_factor: int, min_early_stopping_rate: int = 0) -> int:
    """The timesteps of rung ``rung``: ``min_resource * reduction_factor ** (min_early_stopping_rate + rung)``."""
    return int(min_resource * reduction_factor ** (min_early_stopping_rate + rung))


def first_at_or_after(curve: Curve, step: int) -> tuple[int, float] | None:
    """The curve's first evaluation at ``step`` or later (the run's value at a rung there), or None."""
    for t, r in curve:
        if t >= step:
            return t, r
    return None


def promotable(
    value: float, values: Sequence[float], *, reduction_factor: int, maximize: bool
) -> tuple[bool, float, int]:
    """Whether ``value`` is in the top ``max(1, len(values) // reduction_factor)`` of ``values``
    (which hold it; ties promote), the cutoff (the last value kept) and how many are kept."""
    keep = max(1, len(values) // reduction_factor)
    ordered = sorted(values, reverse=maximize)
    cutoff = ordered[keep - 1]
    return (value >= cutoff if maximize else value <= cutoff), cutoff, keep


def asha(
    curves: Mapping[str, Curve],
    candidates: Iterable[str],
    promoted: Mapping[str, int],
    *,
    min_resource: int,
    reduction_factor: int,
    min_early_stopping_rate: int = 0,
    maximize: bool = True,
    stopped: Collection[str] = (),
    bracket: int | None = None,
) -> Judgement:
    """ASHA's stops and promotions this round.

    ``curves`` holds every run's curve (any phase: finished, stopped and suspended runs compete at
    the rungs they reached); ``candidates`` are the runs that may be stopped (those training);
    ``promoted`` is each run's recorded highest promoted rung (absent: none yet); ``stopped`` are
    the runs stopped earlier, which compete only up to the rung they were stopped at (one past
    their promoted rung), however far their pods trained after the stop. ``bracket`` only words
    the message (Hyperband).

    Rungs are judged in increasing order across all candidates, so the outcome does not depend on
    the order in which candidates are visited: a candidate stopped at rung k this round does not
    compete at rung k+1, and a rung-k judgement depends only on rung-k values.
    """
    if min_resource < 1 or reduction_factor < 2:
        raise ValueError(
            f"ASHA needs min_resource >= 1 and reduction_factor >= 2, not {min_resource}, {reduction_factor}"
        )
    curves = {name: sorted(c) for name, c in curves.items() if c}
    alive = {name for name in set(candidates) if name in curves}
    current = {name: promoted.get(name, -1) for name in curves}
    ceiling = {name: promoted.get(name, -1) + 1 for name in stopped}
    stops: list[RungStop] = []
    rung = 0
    while True:
        step = rung_step(
            rung,
            min_resource=min_resource,
            reduction_factor=reduction_factor,
            min_early_stopping_rate=min_early_stopping_rate,
        )
        values = {
            name: point
            for name, curve in curves.items()
            if ceiling.get(name, rung) >= rung and (point := first_at_or_after(curve, step)) is not None
        }
        if not values:
            break
        competing = [v for _, v in values.values()]
        for name in sorted(alive):
            if name not in values or current[name] != rung - 1:
                continue  # not there yet, promoted past it already, or still owes an earlier rung
            at, value = values[name]
            ok, cutoff, keep = promotable(value, competing, reduction_factor=reduction_factor, maximize=maximize)
            if ok:
                current[name] = rung
            else:
                stops.append(
                    RungStop(name, rung, step, at, value, cutoff, keep, len(competing), reduction_factor, bracket)
                )
                alive.discard(name)
                ceiling[name] = rung
        rung += 1
    changed = {name: r for name, r in current.items() if r > promoted.get(name, -1)}
    return Judgement(sorted(stops, key=lambda d: d.run), changed)


def hyperband_brackets(*, max_resource: int, min_resource: int, reduction_factor: int) -> int:
    """Hyperband's number of brackets, ``floor(log_eta(max_resource / min_resource)) + 1`` (at least 1),
    in integers: one more than the largest ``s`` with ``min_resource * eta**s <= max_resource``."""
    if min_resource < 1 or reduction_factor < 2:
        raise ValueError(
            f"Hyperband needs min_resource >= 1 and reduction_factor >= 2, not {min_resource}, {reduction_factor}"
        )
    n = 1
    while min_resource * reduction_factor**n <= max_resource:
        n += 1
    return n


def bracket_budgets(n_brackets: int, reduction_factor: int) -> list[int]:
    """Each bracket's share of configurations (Li et al.'s n_i for s = n-1-b):
    ``ceil(n_brackets * eta**s / (s + 1))``; bracket 0, the most aggressive, gets the most."""
    out = []
    for b in range(n_brackets):
        s = n_brackets - 1 - b
        out.append(-(-n_brackets * reduction_factor**s // (s + 1)))
    return out


def bracket_of(configuration: str, *, n_brackets: int, reduction_factor: int) -> int:
    """The bracket of a configuration: a stable hash (SHA-256) of its id, over the brackets
    weighted by their budgets, so the same id always lands in the same bracket."""
    budgets = bracket_budgets(n_brackets, reduction_factor)
    digest = hashlib.sha256(configuration.encode()).digest()
    n = int.from_bytes(digest[:8], "big") % sum(budgets)
    for b, budget in enumerate(budgets):
        n -= budget
        if n < 0:
            return b
    raise AssertionError("unreachable: n is below the sum of the budgets")


def hyperband(
    curves: Mapping[str, Curve],
    candidates: Iterable[str],
    promoted: Mapping[str, int],
    *,
    brackets: Mapping[str, int],
    min_resource: int,
    reduction_factor: int,
    maximize: bool = True,
    stopped: Collection[str] = (),
) -> Judgement:
    """Hyperband's stops and promotions this round: ASHA within each bracket (``brackets`` maps every
    run to its configuration's bracket, see :func:`bracket_of`), bracket b with
    ``min_early_stopping_rate = b``. Runs without a bracket are neither judged nor competitors."""
    stops: list[RungStop] = []
    changed: dict[str, int] = {}
    wanted = set(candidates)
    for b in sorted(set(brackets.values())):
        members = {name for name, of in brackets.items() if of == b}
        judged = asha(
            {name: c for name, c in curves.items() if name in members},
            wanted & members,
            {name: r for name, r in promoted.items() if name in members},
            min_resource=min_resource,
            reduction_factor=reduction_factor,
            min_early_stopping_rate=b,
            maximize=maximize,
            stopped=[name for name in stopped if name in members],
            bracket=b,
        )
        stops.extend(judged.stops)
        changed.update(judged.promoted)
    return Judgement(sorted(stops, key=lambda d: d.run), changed)
