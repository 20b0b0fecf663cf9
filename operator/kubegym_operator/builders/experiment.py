"""An Experiment's plan: its configurations, its runs, their names and manifests (pure).

The plan is a function of the spec alone (search and seeds are immutable), so every reconcile
recomputes the same runs with the same names and a restarted operator finds the children it
created before. Runs are ordered seed-major (every configuration's first seed, then every
configuration's second seed, ...): with limited parallelism each configuration gets a first
result early, which is what early stopping and a person watching need.

An Optuna search (``search.optuna``) is planned the same way, with one difference: its
configurations ``c0 .. c<trials-1>`` are named up front but proposed one by one as their first run
is created (:mod:`kubegym_operator.builders.sampling`), so the plan takes the trials already
proposed, read back from the runs that carry them. Its runs are ordered configuration-major
(every seed of ``c0``, then of ``c1``, ...), so a configuration is scored, and teaches the
sampler, as soon as it can be.

Population-Based Training (``search.pbt``) plans every segment of every member up front by name
(``m<i>g<g>``, generation-major) and decides a generation's segments once the one before it is
done (:mod:`kubegym_operator.builders.population`), from the finished segments' scores the plan
is given.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kubegym_api import API_VERSION
from kubegym_api.experiment import KIND, MAX_RUNS, Distribution, ExperimentSpec, RandomParameter, RandomSearch
from kubegym_api.hyperparameters import RESERVED_HYPERPARAMETERS, allowed_hyperparameters, parse_hyperparameters
from kubegym_api.pyliteral import LiteralError
from kubegym_api.trainingrun import KIND as TRAINING_RUN_KIND
from kubegym_operator.builders.errors import RenderError
from kubegym_operator.builders.naming import MAX_LABEL, dns_label, label_value
from kubegym_operator.builders.ownership import controller_reference
from kubegym_operator.builders.population import Segment, generations, non_numeric_perturbations, schedule, segment_id
from kubegym_operator.builders.sampling import (
    TRIAL_ANNOTATION,
    Trial,
    TrialError,
    grid_size,
    hyperparameters_of,
    parse_trial,
    sampler_available,
)

Manifest = dict[str, Any]

EXPERIMENT_LABEL = "kubegym.io/experiment"
CONFIGURATION_LABEL = "kubegym.io/configuration"
SEED_LABEL = "kubegym.io/seed"
#: The Experiment's full name on its children (a label value is cut at 63 characters).
EXPERIMENT_NAME_ANNOTATION = "kubegym.io/experiment-name"
#: A PBT segment's place in its member's lineage, on its run (JSON: member, generation, start, copiedFrom).
SEGMENT_ANNOTATION = "kubegym.io/pbt-segment"
#: Significant digits of randomly drawn floats: readable names in tables, no false precision.
RANDOM_DIGITS = 6
#: Draws per wanted configuration before a random search gives up finding new ones.
RANDOM_ATTEMPTS = 20


class PlanError(RenderError):
    """The Experiment cannot be planned as written; ``reason`` is CamelCase for the status."""


@dataclass(frozen=True)
class Configuration:
    """One point of the search."""

    id: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: An Optuna search's trial that proposed it; None for grid, random and the template.
    trial: Trial | None = None
    #: False for an Optuna search's configuration not proposed yet, or a PBT segment not decided
    #: yet (its hyperparameters unknown).
    proposed: bool = True
    #: A PBT segment: its member, generation, timesteps and the model it starts from.
    segment: Segment | None = None

    @property
    def summary(self) -> str:
        """``name=value, ...`` in name order; ``template`` for the search-less configuration."""
        if not self.hyperparameters:
            return "template"
        return ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.hyperparameters.items()))


@dataclass(frozen=True)
class PlannedRun:
    """One TrainingRun of the plan."""

    index: int
    name: str
    configuration: Configuration
    seed: int


@dataclass(frozen=True)
class Plan:
    spec: ExperimentSpec
    configurations: list[Configuration]
    runs: list[PlannedRun]
    #: Why the configurations not decided yet never will be (a PBT generation without a score).
    ended: str | None = None


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse_spec(exp: Mapping[str, Any]) -> ExperimentSpec:
    """The spec as a model; a spec the schema let through but the model rejects is an InvalidSpec."""
    try:
        return ExperimentSpec.model_validate(exp.get("spec") or {})
    except ValidationError as e:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors(include_input=False, include_url=False)[:5]
        )
        raise PlanError("InvalidSpec", problems) from e


# --- configurations --------------------------------------------------------------------------


def grid_configurations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, names in sorted order (the API server does not keep map order)."""
    names = sorted(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def _round(value: float) -> float:
    return float(f"{value:.{RANDOM_DIGITS}g}")


def draw(parameter: RandomParameter, rng: random.Random) -> Any:
    """One value of ``parameter``; only ``rng.random()`` is used, whose stream Python keeps stable."""
    u = rng.random()
    if parameter.distribution == Distribution.Choice:
        values = parameter.values or []
        return copy.deepcopy(values[min(int(u * len(values)), len(values) - 1)])
    low, high = float(parameter.low or 0.0), float(parameter.high or 0.0)
    if parameter.distribution == Distribution.IntUniform:
        lo, hi = math.ceil(low), math.floor(high)
        return lo + min(int(u * (hi - lo + 1)), hi - lo)
    if parameter.distribution == Distribution.LogUniform:
        return _round(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return _round(low + u * (high - low))


def random_configurations(search: RandomSearch) -> list[dict[str, Any]]:
    """``trials`` distinct configurations drawn with ``search.seed`` (fewer if the space is smaller)."""
    for name, p in search.parameters.items():
        if p.distribution == Distribution.IntUniform and math.ceil(p.low or 0) > math.floor(p.high or 0):
            raise PlanError("InvalidSearch", f"search.random.parameters.{name}: no integer in [{p.low}, {p.high}]")
    wanted = search.trials or 0
    rng = random.Random(search.seed)
    names = sorted(search.parameters)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for _ in range(wanted * RANDOM_ATTEMPTS):
        if len(out) == wanted:
            break
        config = {name: draw(search.parameters[name], rng) for name in names}
        key = json.dumps(config, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out


def configurations_of(spec: ExperimentSpec) -> list[Configuration]:
    """The search's configurations as ``c0, c1, ...``; the template alone without a search."""
    search = spec.search
    if search is None:
        raw: list[dict[str, Any]] = [{}]
    elif search.grid is not None:
        raw = grid_configurations(search.grid)
    elif search.random is not None:
        raw = random_configurations(search.random)
    else:
        raise PlanError("InvalidSearch", "set exactly one of search.grid, search.random and search.optuna")
    return [Configuration(f"c{i}", hp) for i, hp in enumerate(raw)]


# --- validation -------------------------------------------------------------------------------


def _unknown_name_message(where: str, name: str, algorithm: str, allowed: frozenset[str]) -> str:
    if name in RESERVED_HYPERPARAMETERS:
        return f"{where}: {name!r} is not a hyperparameter here; set it in {RESERVED_HYPERPARAMETERS[name]}"
    close = difflib.get_close_matches(name, sorted(allowed), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{where}: unknown hyperparameter {name!r} for {algorithm}: {hint}valid: {', '.join(sorted(allowed))}"


def check_hyperparameter_names(spec: ExperimentSpec) -> None:
    """Reject names the algorithm does not take, in the template or the search, before any run exists."""
    algorithm = str(spec.template.algorithm)
    allowed = allowed_hyperparameters(algorithm)
    sources: list[tuple[str, Sequence[str]]] = [("spec.template.hyperparameters", list(spec.template.hyperparameters))]
    if spec.search is not None and spec.search.grid is not None:
        sources.append(("spec.search.grid", list(spec.search.grid)))
    if spec.search is not None and spec.search.random is not None:
        sources.append(("spec.search.random.parameters", list(spec.search.random.parameters)))
    if spec.search is not None and spec.search.optuna is not None:
        sources.append(("spec.search.optuna.parameters", list(spec.search.optuna.parameters)))
    if spec.search is not None and spec.search.pbt is not None:
        sources.append(("spec.search.pbt.parameters", list(spec.search.pbt.parameters)))
    problems = [
        _unknown_name_message(where, name, algorithm, allowed)
        for where, names in sources
        for name in sorted(names)
        if name not in allowed
    ]
    if problems:
        raise PlanError("UnknownHyperparameter", "; ".join(problems))


def check_hyperparameter_literals(spec: ExperimentSpec, configurations: Sequence[Configuration]) -> None:
    """Refuse strings that are not safe literals (code, unknown class names) in the template or any
    configuration, before any run exists; each run would be refused the same way."""
    try:
        parse_hyperparameters(spec.template.hyperparameters, "spec.template.hyperparameters")
        for config in configurations:
            parse_hyperparameters(config.hyperparameters, f"spec.search (configuration {config.id})")
        search = spec.search
        ranges: list[tuple[str, Mapping[str, Any]]] = [
            ("optuna", search.optuna.parameters if search is not None and search.optuna is not None else {}),
            ("pbt", search.pbt.parameters if search is not None and search.pbt is not None else {}),
        ]
        for kind, parameters in ranges:
            for name, parameter in sorted(parameters.items()):
                for i, choice in enumerate(parameter.choices or []):
                    parse_hyperparameters({name: choice}, f"spec.search.{kind}.parameters.{name}.choices[{i}]")
    except LiteralError as e:
        raise PlanError("InvalidHyperparameters", str(e)) from e


def run_name(experiment: str, configuration: str, seed: int) -> str:
    """``<experiment>-<configuration>-s<seed>``, at most 63 characters: a long Experiment name is
    shortened (with a hash, so two never collide) and the configuration and seed always stay."""
    suffix = f"-{configuration}-s{seed}"
    return f"{dns_label(experiment, MAX_LABEL - len(suffix))}{suffix}"


def _check_run_count(configurations: int, seeds: int) -> None:
    total = configurations * seeds
    if total > MAX_RUNS:
        raise PlanError(
            "TooManyRuns",
            f"{configurations} configurations x {seeds} seeds = {total} runs; "
            f"an Experiment has at most {MAX_RUNS}: shrink the grid, the trials or the seeds, or split it",
        )


def _optuna_plan(exp: Mapping[str, Any], spec: ExperimentSpec, trials: Mapping[str, Trial]) -> Plan:
    """Every configuration of an Optuna search, proposed or not yet, and its runs configuration-major."""
    search = spec.search.optuna if spec.search is not None else None
    assert search is not None
    unavailable = sampler_available(search.sampler)
    if unavailable:
        raise PlanError("SamplerUnavailable", unavailable)
    if search.sampler == "Grid" and search.trials > grid_size(search):
        raise PlanError(
            "InvalidSearch",
            f"search.optuna.trials is {search.trials} but the Grid sampler's grid has {grid_size(search)} points: "
            "lower trials to at most that, or add choices",
        )
    seeds = spec.seeds.resolved()
    _check_run_count(search.trials, len(seeds))
    configurations = []
    for k in range(search.trials):
        trial = trials.get(f"c{k}")
        if trial is None:
            configurations.append(Configuration(f"c{k}", proposed=False))
        else:
            configurations.append(Configuration(f"c{k}", hyperparameters_of(search, trial.params), trial=trial))
    check_hyperparameter_literals(spec, [c for c in configurations if c.proposed])
    name = exp["metadata"]["name"]
    runs = [
        PlannedRun(index=i, name=run_name(name, config.id, seed), configuration=config, seed=seed)
        for i, (config, seed) in enumerate(itertools.product(configurations, seeds))
    ]
    return Plan(spec=spec, configurations=[c for c in configurations if c.proposed], runs=runs)


def _population_plan(exp: Mapping[str, Any], spec: ExperimentSpec, results: Mapping[str, float | None]) -> Plan:
    """Every segment of every member of a PBT population, decided or not yet, generation-major."""
    search = spec.search.pbt if spec.search is not None else None
    assert search is not None
    total = spec.template.total_timesteps or 0
    if "policy_kwargs" in search.parameters:
        raise PlanError(
            "InvalidSearch",
            "spec.search.pbt.parameters: policy_kwargs: a member goes on from another member's weights, so the "
            "network cannot differ between members: search it with search.optuna, or set it in "
            "template.hyperparameters",
        )
    perturbed = non_numeric_perturbations(search)
    if perturbed:
        names = ", ".join(perturbed)
        raise PlanError(
            "InvalidSearch",
            f"spec.search.pbt.parameters: {names}: Perturb moves a Categorical to a neighbouring number, but its "
            "choices are not all numbers: set explore: Resample",
        )
    count = generations(search, total)
    runs_total = search.population * count
    if runs_total > MAX_RUNS:
        raise PlanError(
            "TooManyRuns",
            f"{search.population} members x {count} segments (totalTimesteps {total} / interval {search.interval}) "
            f"= {runs_total} runs; an Experiment has at most {MAX_RUNS}: raise the interval or shrink the population",
        )
    decided = schedule(search, total, spec.objective.direction, results)
    by_id = {s.id: s for s in decided.segments}
    configurations = []
    for g in range(count):
        for member in range(search.population):
            segment = by_id.get(segment_id(member, g))
            if segment is None:
                configurations.append(Configuration(segment_id(member, g), proposed=False))
            else:
                configurations.append(Configuration(segment.id, dict(segment.hyperparameters), segment=segment))
    check_hyperparameter_literals(spec, [c for c in configurations if c.proposed])
    base = spec.seeds.resolved()[0]
    runs = [
        PlannedRun(i, segment_run_name(exp, spec, member, g), config, base + member)
        for i, (config, (g, member)) in enumerate(
            zip(configurations, itertools.product(range(count), range(search.population)), strict=True)
        )
    ]
    return Plan(spec, [c for c in configurations if c.proposed], runs, ended=decided.ended)


def segment_run_name(exp: Mapping[str, Any], spec: ExperimentSpec, member: int, generation: int) -> str:
    """The TrainingRun of a PBT member's segment: ``<experiment>-m<i>g<g>-s<seed>`` (member i's seed
    is the Experiment's one seed plus i)."""
    return run_name(exp["metadata"]["name"], segment_id(member, generation), spec.seeds.resolved()[0] + member)


def proposed_trials(exp: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Trial]:
    """An Optuna search's proposals so far, by configuration id, from the trial its ``runs`` (this
    Experiment's TrainingRuns, by name) carry; a record edited out of shape is a :class:`PlanError`."""
    spec = parse_spec(exp)
    search = spec.search.optuna if spec.search is not None else None
    if search is None:
        return {}
    found: dict[str, Trial] = {}
    for name, run in sorted(runs.items()):
        meta = run.get("metadata") or {}
        config = (meta.get("labels") or {}).get(CONFIGURATION_LABEL)
        text = (meta.get("annotations") or {}).get(TRIAL_ANNOTATION)
        if not isinstance(config, str) or not config.startswith("c") or not config[1:].isdigit() or text is None:
            continue
        if config in found:
            continue
        try:
            found[config] = parse_trial(search, text, number=int(config[1:]), where=f"TrainingRun {name}")
        except TrialError as e:
            raise PlanError(e.reason, e.message) from e
    return found


def with_proposal(planned: Plan, configuration: Configuration) -> Plan:
    """The plan once ``configuration`` (an Optuna search's, just proposed) is known."""
    runs = [
        PlannedRun(r.index, r.name, configuration, r.seed) if r.configuration.id == configuration.id else r
        for r in planned.runs
    ]
    configurations = [c for c in planned.configurations if c.id != configuration.id] + [configuration]
    return Plan(planned.spec, sorted(configurations, key=lambda c: int(c.id[1:])), runs)


def plan(
    exp: Mapping[str, Any],
    trials: Mapping[str, Trial] | None = None,
    results: Mapping[str, float | None] | None = None,
) -> Plan:
    """Configurations and runs of an Experiment, or :class:`PlanError`; ``trials`` are an Optuna
    search's proposals so far, by configuration id (:func:`proposed_trials` reads them from its runs),
    ``results`` a PBT population's finished segments' scores by segment id (None: failed).

    A grid's size is checked before it is expanded: the schema allows 32 dimensions of 64 values,
    far more combinations than memory holds, and every reconcile of the Experiment plans again.
    """
    spec = parse_spec(exp)
    check_hyperparameter_names(spec)
    if spec.search is not None and spec.search.optuna is not None:
        return _optuna_plan(exp, spec, trials or {})
    if spec.search is not None and spec.search.pbt is not None:
        return _population_plan(exp, spec, results or {})
    seeds = spec.seeds.resolved()
    if spec.search is not None and spec.search.grid is not None:
        _check_run_count(math.prod(len(values) for values in spec.search.grid.values()), len(seeds))
    configurations = configurations_of(spec)
    if not configurations:
        raise PlanError("InvalidSearch", "the search yields no configuration")
    _check_run_count(len(configurations), len(seeds))
    check_hyperparameter_literals(spec, configurations)
    name = exp["metadata"]["name"]
    runs = [
        PlannedRun(index=i, name=run_name(name, config.id, seed), configuration=config, seed=seed)
        for i, (seed, config) in enumerate(itertools.product(seeds, configurations))
    ]
    return Plan(spec=spec, configurations=configurations, runs=runs)


# --- manifests ----------------------------------------------------------------------------------


def owner_reference(exp: Mapping[str, Any]) -> Manifest:
    """Controller reference to the Experiment: deleting it deletes its runs."""
    return controller_reference(exp, KIND)


def experiment_labels(exp: Mapping[str, Any]) -> dict[str, str]:
    """Labels on everything an Experiment owns."""
    return {
        "app.kubernetes.io/managed-by": "kubegym-operator",
        "app.kubernetes.io/part-of": "kubegym",
        EXPERIMENT_LABEL: label_value(exp["metadata"]["name"]),
    }


def child_metadata(exp: Mapping[str, Any], name: str, **labels: str) -> Manifest:
    meta = exp["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {**experiment_labels(exp), **labels},
        "annotations": {EXPERIMENT_NAME_ANNOTATION: meta["name"]},
        "ownerReferences": [owner_reference(exp)],
    }


def render_run(exp: Mapping[str, Any], run: PlannedRun, *, suspend: bool) -> Manifest:
    """The TrainingRun of one planned run: the template as the API server stored it (defaults
    applied), with the run's seed, the configuration's hyperparameters over the template's, the
    Experiment's tracking (each trial logs as a child run of its parent run) and the suspension the
    Experiment wants."""
    if not run.configuration.proposed:
        raise ValueError(f"{run.name}: configuration {run.configuration.id} is not proposed yet")
    spec = copy.deepcopy((exp.get("spec") or {}).get("template") or {})
    tracking = (exp.get("spec") or {}).get("tracking")
    if tracking:
        spec["tracking"] = copy.deepcopy(tracking)
    spec["seed"] = run.seed
    spec["hyperparameters"] = {
        **(spec.get("hyperparameters") or {}),
        **copy.deepcopy(run.configuration.hyperparameters),
    }
    spec["suspend"] = suspend
    metadata = child_metadata(exp, run.name, **{CONFIGURATION_LABEL: run.configuration.id, SEED_LABEL: str(run.seed)})
    if run.configuration.trial is not None:
        metadata["annotations"][TRIAL_ANNOTATION] = run.configuration.trial.annotation()
    segment = run.configuration.segment
    if segment is not None:
        spec["totalTimesteps"] = segment.target
        if segment.source is not None:
            source = segment_run_name(exp, parse_spec(exp), *segment.source)
            spec["resumeFrom"] = {"trainingRun": source, "checkpoint": "final"}
        lineage: dict[str, Any] = {"member": segment.member, "generation": segment.generation, "start": segment.start}
        if segment.copied_from is not None:
            lineage["copiedFrom"] = segment.copied_from
        metadata["annotations"][SEGMENT_ANNOTATION] = json.dumps(lineage, sort_keys=True, separators=(",", ":"))
    return {"apiVersion": API_VERSION, "kind": TRAINING_RUN_KIND, "metadata": metadata, "spec": spec}


def owned_by(obj: Mapping[str, Any], exp: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is controlled by this Experiment (same uid: not a namesake's leftovers)."""
    uid = exp["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])
