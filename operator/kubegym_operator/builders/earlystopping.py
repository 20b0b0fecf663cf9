"""The median stopping rule over evaluation curves (pure).

Golovin et al. (2017), *Google Vizier*: stop a run whose best objective so far is worse than
the median of the other runs' objectives at the same step. Here the objective is the mean
evaluation return; a run becomes a candidate after ``minEvaluations`` evaluations (its grace
period), and the median needs at least ``minRuns`` other runs that have themselves reached
that step, so a slow start alone never stops a run.

Runs are compared at the candidate's latest evaluation step that enough other runs have
reached (each other run contributes its latest evaluation at or before that step). Judging
at that step rather than at the candidate's very latest one makes the decision independent
of which run happens to report first.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: (timesteps, mean evaluation return), in increasing timesteps.
Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class StopDecision:
    """Why a run is stopped: its best by ``step`` against the others' median there."""

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
) -> StopDecision | None:
    """A stop decision for ``run``, or None (too early, too few references, or not losing)."""
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
        return StopDecision(run, step, best, median, len(references)) if losing else None
    return None


def median_stopping(
    curves: Mapping[str, Curve],
    candidates: Iterable[str],
    *,
    min_evaluations: int,
    min_runs: int,
    maximize: bool = True,
) -> list[StopDecision]:
    """Decisions for every candidate that the rule stops, in name order.

    ``curves`` holds every run's curve (finished and stopped runs included: they are the
    references); ``candidates`` are the runs that may be stopped (those still training).
    """
    out = []
    for run in sorted(set(candidates)):
        decision = judge(run, curves, min_evaluations=min_evaluations, min_runs=min_runs, maximize=maximize)
        if decision is not None:
            out.append(decision)
    return out
