"""Optuna samplers proposing an Experiment's configurations, with the study kept in its runs (pure).

A search by ``spec.search.optuna`` proposes configuration ``c<k>`` only when a run of it is about
to be created, from the scores of the configurations proposed before it. The study needs no
database and no state in the operator: every run of a configuration carries the trial that
proposed it (annotation :data:`TRIAL_ANNOTATION`: Optuna's parameters, the sampler's and the
study's system attributes, all JSON), and every proposal rebuilds an in-memory study from those
trials and the runs' scores, then asks it once. The sampler is seeded from ``search.seed`` (and,
for samplers that draw independently per trial, the trial number), so the same history always
proposes the same configuration: an operator restart or failover between a proposal and the
creation of its run proposes it again identically, and a proposal whose run exists is read back,
never made again. Nothing is unpickled: samplers whose state is a pickle (CMA-ES) are not offered.

A configuration's score, what the sampler learns from, is the objective's statistic over its
runs' scores once every run of it is done, computed from the runs' status the way the report
computes it from their files (a run stopped early scores its last evaluation).

Optuna is imported only when a proposal is made, so an operator with no such Experiment never
loads it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kubegym_api.base import Statistic
from kubegym_api.experiment import Direction, Objective, ObjectiveMetric, OptunaSearch, ParameterType, Sampler
from kubegym_operator.builders.errors import RenderError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler

#: The trial that proposed a configuration, on each of its runs (JSON: number, params, systemAttrs, studyAttrs).
TRIAL_ANNOTATION = "kubegym.io/trial"
#: Significant digits of proposed floats in the runs' hyperparameters (the trial keeps Optuna's exact value).
PROPOSED_DIGITS = 6
#: TPE's and GP's random start, Optuna's default for both.
DEFAULT_STARTUP_TRIALS = 10
#: Samplers that draw each trial independently of the last one's random state: seeded per trial.
_PER_TRIAL_SEED = frozenset({Sampler.TPE, Sampler.GP, Sampler.Random})

TrialState = Literal["running", "complete", "failed"]


class TrialError(RenderError):
    """A search cannot propose, or a run's trial record is not one this search could have made;
    ``reason`` is CamelCase for the status."""


@dataclass(frozen=True)
class Trial:
    """One proposal of the sampler, as its runs carry it."""

    number: int
    #: Optuna's values (a Categorical's is the index of its choice).
    params: Mapping[str, Any]
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    #: The study's system attributes right after this proposal (QMC counts its samples there).
    study_attrs: Mapping[str, Any] = field(default_factory=dict)

    def annotation(self) -> str:
        """The JSON its runs carry in :data:`TRIAL_ANNOTATION`."""
        return json.dumps(
            {
                "number": self.number,
                "params": dict(self.params),
                "systemAttrs": dict(self.system_attrs),
                "studyAttrs": dict(self.study_attrs),
            },
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class TrialRecord:
    """A trial of the study's history: proposed, and running, complete (scored) or failed."""

    trial: Trial
    state: TrialState = "running"
    value: float | None = None


def sampler_available(sampler: Sampler) -> str | None:
    """Why ``sampler`` cannot run in this process, or None: GP needs torch, QMC scipy."""
    needs = {Sampler.GP: ("torch", "scipy"), Sampler.QMC: ("scipy",)}.get(sampler, ())
    missing = [m for m in ("optuna", *needs) if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"the {sampler} sampler needs {', '.join(missing)} where the operator runs, and it is not installed: "
            "install the operator with the `search` extra (docs/install.md), or pick another sampler"
        )
    return None


def _distributions(search: OptunaSearch) -> dict[str, BaseDistribution]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for name, p in sorted(search.parameters.items()):
        if p.type == ParameterType.Categorical:
            out[name] = CategoricalDistribution(tuple(range(len(p.choices or []))))
        elif p.type == ParameterType.Int:
            step = int(p.step) if p.step is not None else 1
            out[name] = IntDistribution(int(p.low or 0), int(p.high or 0), log=bool(p.log), step=step)
        else:
            out[name] = FloatDistribution(float(p.low or 0.0), float(p.high or 0.0), log=bool(p.log), step=p.step)
    return out


def _round(value: float) -> float:
    return float(f"{value:.{PROPOSED_DIGITS}g}")


def hyperparameters_of(search: OptunaSearch, params: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a trial's Optuna values set (a Categorical's choice, not its index)."""
    out: dict[str, Any] = {}
    for name, p in sorted(search.parameters.items()):
        value = params[name]
        if p.type == ParameterType.Categorical:
            out[name] = copy.deepcopy((p.choices or [])[int(value)])
        elif p.type == ParameterType.Int:
            out[name] = int(value)
        else:
            out[name] = _round(float(value)) if p.step is None else float(value)
    return out


def parse_trial(search: OptunaSearch, text: str, *, number: int, where: str) -> Trial:
    """The trial a run carries, checked against the search: every parameter present and inside its
    range, the number the run's configuration id says. A record edited by hand is refused."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise TrialError("InvalidTrialRecord", f"{where}: {TRIAL_ANNOTATION} is not JSON: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict):
        raise TrialError("InvalidTrialRecord", f"{where}: {TRIAL_ANNOTATION} has no params object")
    if raw.get("number") != number:
        raise TrialError(
            "InvalidTrialRecord", f"{where}: {TRIAL_ANNOTATION} says trial {raw.get('number')!r}, its name {number}"
        )
    params = raw["params"]
    distributions = _distributions(search)
    if set(params) != set(distributions):
        raise TrialError(
            "InvalidTrialRecord",
            f"{where}: {TRIAL_ANNOTATION} sets {sorted(params)}, the search {sorted(distributions)}",
        )
    for name, dist in distributions.items():
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not dist._contains(value):
            raise TrialError(
                "InvalidTrialRecord", f"{where}: {TRIAL_ANNOTATION}: {name}={value!r} is outside the search's range"
            )
    system = raw.get("systemAttrs") or {}
    study = raw.get("studyAttrs") or {}
    if not isinstance(system, dict) or not isinstance(study, dict):
        raise TrialError("InvalidTrialRecord", f"{where}: {TRIAL_ANNOTATION}: systemAttrs and studyAttrs are objects")
    return Trial(number=number, params=params, system_attrs=system, study_attrs=study)


def _sampler(search: OptunaSearch, number: int) -> BaseSampler:
    import optuna

    seed = search.seed + number if search.sampler in _PER_TRIAL_SEED else search.seed
    seed %= 2**32
    startup = DEFAULT_STARTUP_TRIALS if search.startup_trials is None else search.startup_trials
    if search.sampler == Sampler.TPE:
        # Several configurations train at once: the constant liar keeps TPE from proposing the
        # running ones' neighbourhood again (Optuna's advice for parallel studies).
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup)
    if search.sampler == Sampler.GP:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if search.sampler == Sampler.QMC:
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if search.sampler == Sampler.Grid:
        space = {name: list(range(len(p.choices or []))) for name, p in sorted(search.parameters.items())}
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def grid_size(search: OptunaSearch) -> int:
    """The points of a Grid sampler's grid (every parameter is Categorical there)."""
    return math.prod(len(p.choices or []) for p in search.parameters.values())


def propose(search: OptunaSearch, direction: Direction, history: Sequence[TrialRecord]) -> Trial:
    """The next trial: an in-memory study rebuilt from ``history`` (trials 0 .. n-1, in order),
    asked once by a freshly seeded sampler."""
    import optuna
    from optuna.trial import TrialState as OptunaState
    from optuna.trial import create_trial

    number = len(history)
    if [r.trial.number for r in history] != list(range(number)):
        raise TrialError(
            "TrialLost",
            f"the study holds trials {[r.trial.number for r in history]}, not 0 .. {number - 1}: the runs of a "
            "configuration were deleted, and its proposal with them; create a new Experiment",
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = _distributions(search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            direction="maximize" if direction == Direction.Maximize else "minimize",
            sampler=_sampler(search, number),
        )
        latest = history[-1].trial.study_attrs if history else {}
        for key, value in latest.items():
            study._storage.set_study_system_attr(study._study_id, key, value)
        states = {"running": OptunaState.RUNNING, "complete": OptunaState.COMPLETE, "failed": OptunaState.FAIL}
        for record in history:
            study.add_trial(
                create_trial(
                    state=states[record.state],
                    params=dict(record.trial.params),
                    distributions=distributions,
                    value=record.value if record.state == "complete" else None,
                    system_attrs=dict(record.trial.system_attrs),
                )
            )
        asked = study.ask(distributions)
    return Trial(
        number=number,
        params=dict(asked.params),
        system_attrs=_json_only(study._storage.get_trial_system_attrs(asked._trial_id)),
        study_attrs=_json_only(study._storage.get_study_system_attrs(study._study_id)),
    )


def _json_only(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that survive JSON unchanged (all of those the offered samplers write)."""
    out = {}
    for key, value in attrs.items():
        try:
            if json.loads(json.dumps(value)) == value:
                out[key] = value
        except (TypeError, ValueError):
            continue
    return out


# --- scores ------------------------------------------------------------------------------------


def run_score(
    metric: ObjectiveMetric,
    direction: Direction,
    *,
    final: float | None,
    curve: Sequence[float],
    stopped_early: bool,
) -> float | None:
    """One run's score from its status, as the report scores it from its files: FinalReward is the
    final evaluation (a run stopped early: its last evaluation), BestEvaluation the best of the curve
    and the final one, MeanEvaluation the curve's mean (the final one without a curve)."""
    value: float | None
    if metric == ObjectiveMetric.FinalReward:
        value = final if final is not None else (curve[-1] if stopped_early and curve else None)
    elif metric == ObjectiveMetric.BestEvaluation:
        points = [*curve, *([final] if final is not None else [])]
        value = (max(points) if direction == Direction.Maximize else min(points)) if points else None
    elif metric == ObjectiveMetric.MeanEvaluation:
        value = statistics.fmean(curve) if curve else final
    else:
        value = None
    return value if value is not None and math.isfinite(value) else None


def aggregate(statistic: Statistic, scores: Sequence[float]) -> float:
    """The objective's statistic over a configuration's run scores; IQM as scipy's 25% trimmed mean."""
    if statistic == Statistic.Mean:
        return statistics.fmean(scores)
    if statistic == Statistic.Median:
        return float(statistics.median(scores))
    ordered = sorted(scores)
    cut = int(0.25 * len(ordered))
    return statistics.fmean(ordered[cut : len(ordered) - cut])


def configuration_record(trial: Trial, objective: Objective, scores: Sequence[float | None], done: bool) -> TrialRecord:
    """A configuration's trial in the history: running until every run of it is done, then complete
    with the statistic of the scores it has, or failed when none has one."""
    if not done:
        return TrialRecord(trial)
    valid = [s for s in scores if s is not None]
    if not valid:
        return TrialRecord(trial, "failed")
    return TrialRecord(trial, "complete", aggregate(objective.statistic, valid))
