"""What an Experiment should do next and what its status is, from what the cluster shows (pure).

Input: the Experiment, its plan (or why it cannot be planned), and its children as observed:
TrainingRuns, which of the suspended ones still have live pods, the final Benchmarks, the
report Job and its pods. Output: the runs to create, the runs to suspend, resume or stop
early, the Benchmarks to create, whether to create the report Job, and the operator-owned
status. The controller performs the actions; nothing here calls the API.

Parallelism counts pods, not objects: a run occupies a slot from its creation until its pods
are gone. A run that is suspended or stopped keeps its slot while its pod drains (it writes a
last checkpoint within its grace period), so a new pod never starts next to it and the number
of runner pods never exceeds ``parallelism``.

The Experiment's children have their ``spec.suspend`` managed by it: the Experiment's
``suspend``, the parallelism limit and early stopping decide it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from kubegym_api.benchmark import MAX_MODELS
from kubegym_api.experiment import (
    DONE_RUN_PHASES,
    Direction,
    EarlyStoppingRule,
    ExperimentSpec,
    ObjectiveMetric,
    RunPhase,
)
from kubegym_api.runnerconfig import ReportConfiguration, ReportRun, RunOutcome
from kubegym_api.status import TERMINAL_PHASES, Phase
from kubegym_api.trainingrun import ModelSelection
from kubegym_operator.builders import status as run_status
from kubegym_operator.builders.artifacts import recorded_location
from kubegym_operator.builders.cost import sum_costs
from kubegym_operator.builders.earlystopping import (
    StopDecision,
    asha,
    bracket_of,
    hyperband,
    hyperband_brackets,
    median_stopping,
)
from kubegym_operator.builders.experiment import Configuration, Plan, PlanError, PlannedRun, with_proposal
from kubegym_operator.builders.sampling import (
    TrialError,
    TrialRecord,
    configuration_record,
    hyperparameters_of,
    propose,
    run_score,
)
from kubegym_operator.builders.status import EARLY_STOPPED_ANNOTATION, Event, Verdict, conditions_for
from kubegym_operator.builders.timestamps import format_time

Obj = Mapping[str, Any]
#: Names the final Benchmark of a chunk (0, 1, ...) of the Experiment's models.
BenchmarkNamer = Callable[[int], str]

#: Longest message kept per run in the status.
MAX_RUN_MESSAGE = 1024


class Reason:
    """CamelCase reasons of the Experiment's phase."""

    CREATING = "CreatingRuns"
    STARTING = "Starting"
    TRAINING = "Training"
    SUSPENDED = "Suspended"
    BENCHMARKING = "Benchmarking"
    REPORTING = "Reporting"
    COMPLETED = "Completed"
    ALL_RUNS_FAILED = "AllRunsFailed"
    REPORT_FAILED = "ReportFailed"


_NORMAL = frozenset(
    {
        Reason.CREATING,
        Reason.STARTING,
        Reason.TRAINING,
        Reason.SUSPENDED,
        Reason.BENCHMARKING,
        Reason.REPORTING,
        Reason.COMPLETED,
    }
)


@dataclass(frozen=True)
class ChildView:
    """What the Experiment reads of one of its TrainingRuns."""

    name: str
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    suspended: bool = False
    stopped: str | None = None
    curve: tuple[tuple[int, float], ...] = ()
    timesteps: int | None = None
    total_timesteps: int | None = None
    last_evaluation: float | None = None
    final_reward: float | None = None
    latest_checkpoint: str | None = None
    #: Its best model by periodic evaluation (``status.best.uri``), if in its own folder.
    best_model: str | None = None
    #: Its recent throughput (``status.progress.stepsPerSecond``).
    steps_per_second: float | None = None
    #: Its ``status.cost`` as the API shows it (summed into the Experiment's).
    cost: Mapping[str, Any] | None = None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def view(child: Obj) -> ChildView:
    """The parts of a TrainingRun the Experiment decides on."""
    meta = child.get("metadata") or {}
    spec = child.get("spec") or {}
    st = child.get("status") or {}
    progress = st.get("progress") or {}
    curve = tuple(
        sorted(
            (int(p["timesteps"]), float(p["meanReward"]))
            for p in progress.get("evaluations") or []
            if _int(p.get("timesteps")) is not None and _float(p.get("meanReward")) is not None
        )
    )
    return ChildView(
        name=str(meta.get("name")),
        phase=st.get("phase"),
        reason=st.get("reason"),
        message=st.get("message"),
        suspended=bool(spec.get("suspend")),
        stopped=(meta.get("annotations") or {}).get(EARLY_STOPPED_ANNOTATION) or None,
        curve=curve,
        timesteps=_int(progress.get("timesteps")),
        total_timesteps=_int(progress.get("totalTimesteps")) or _int(spec.get("totalTimesteps")),
        last_evaluation=_float((progress.get("lastEvaluation") or {}).get("meanReward")),
        final_reward=_float((st.get("result") or {}).get("meanReward")),
        latest_checkpoint=_own_checkpoint(child),
        best_model=_own_uri(child, ((st.get("best") or {}).get("uri"))),
        steps_per_second=_float(progress.get("stepsPerSecond")),
        cost=st.get("cost") if isinstance(st.get("cost"), Mapping) else None,
    )


def _own_checkpoint(child: Obj) -> str | None:
    """The run's newest checkpoint as its runner reported it, if it lies in the run's own folder
    (``status.artifacts``; a run from before it was recorded is taken at its word)."""
    return _own_uri(child, ((child.get("status") or {}).get("checkpoints") or {}).get("latestUri"))


def _own_uri(child: Obj, uri: Any) -> str | None:
    """``uri`` as the run's runner reported it, if it lies in the run's own folder."""
    location = recorded_location(child)
    if not isinstance(uri, str) or not uri or (location is not None and not location.contains(uri)):
        return None
    return uri


def stopped_run_model(child: ChildView, selection: ModelSelection | None) -> str | None:
    """The model a final Benchmark evaluates of a run stopped early (it has no final model): its best
    for ``best`` when it kept one, else its newest checkpoint."""
    if selection == ModelSelection.best and child.best_model is not None:
        return child.best_model
    return child.latest_checkpoint


def run_phase(child: ChildView) -> RunPhase:
    """The run's phase in the Experiment: Succeeded and Failed win over a late stop."""
    if child.phase == Phase.Succeeded.value:
        return RunPhase.Succeeded
    if child.phase == Phase.Failed.value:
        return RunPhase.Failed
    if child.stopped:
        return RunPhase.EarlyStopped
    if child.suspended or child.phase == Phase.Suspended.value:
        return RunPhase.Suspended
    if child.phase == Phase.Running.value:
        return RunPhase.Running
    return RunPhase.Pending


@dataclass(frozen=True)
class Observed:
    """The Experiment's children as the controller found them."""

    children: Mapping[str, ChildView] = field(default_factory=dict)
    #: Suspended or stopped runs whose pods still run or terminate.
    live: frozenset[str] = frozenset()
    #: Final Benchmarks by name.
    benchmarks: Mapping[str, Obj] = field(default_factory=dict)
    report_job: Obj | None = None
    report_pods: Sequence[Obj] = ()


@dataclass(frozen=True)
class BenchmarkChunk:
    """One final Benchmark: a name and the runs whose models it evaluates (at most 32)."""

    name: str
    runs: tuple[PlannedRun, ...]


@dataclass
class Actions:
    """What the controller does, in this order: stop, suspend/resume, create runs, create
    Benchmarks, create the report Job (or stop a stuck one), write the status, post the events."""

    #: Every planned run's phase in the Experiment (after this round's early stops).
    phases: dict[str, RunPhase] = field(default_factory=dict)
    stop: list[StopDecision] = field(default_factory=list)
    set_suspend: dict[str, bool] = field(default_factory=dict)
    create_runs: list[PlannedRun] = field(default_factory=list)
    create_benchmarks: list[BenchmarkChunk] = field(default_factory=list)
    create_report: bool = False
    stop_report_job: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


# --- helpers ---------------------------------------------------------------------------------


def is_terminal(exp: Obj) -> bool:
    return (exp.get("status") or {}).get("phase") in TERMINAL_PHASES


def benchmarkable(phase: RunPhase, child: ChildView | None) -> bool:
    """A run with a model to evaluate: the final one, or a stopped run's latest checkpoint."""
    if child is None:
        return False
    return phase == RunPhase.Succeeded or (phase == RunPhase.EarlyStopped and child.latest_checkpoint is not None)


def benchmark_chunks(
    plan: Plan, phases: Mapping[str, RunPhase], children: Mapping[str, ChildView], name_of: BenchmarkNamer
) -> list[BenchmarkChunk]:
    """The runs with a model, in plan order, in Benchmarks of at most 32 models."""
    runs = [r for r in plan.runs if benchmarkable(phases[r.name], children.get(r.name))]
    size = MAX_MODELS
    return [BenchmarkChunk(name_of(i // size), tuple(runs[i : i + size])) for i in range(0, len(runs), size)]


def report_inputs(
    plan: Plan,
    phases: Mapping[str, RunPhase],
    children: Mapping[str, ChildView],
    benchmarked: frozenset[str],
    prefix_of: Callable[[str], str],
) -> tuple[list[ReportConfiguration], list[ReportRun]]:
    """The configurations and the finished runs the report Job reads; ``prefix_of(run)`` is the
    key prefix of a run's artifacts."""
    configurations = [ReportConfiguration(id=c.id, hyperparameters=c.hyperparameters) for c in plan.configurations]
    outcomes = {
        RunPhase.Succeeded: RunOutcome.Succeeded,
        RunPhase.Failed: RunOutcome.Failed,
        RunPhase.EarlyStopped: RunOutcome.EarlyStopped,
    }
    runs = [
        ReportRun(
            name=r.name,
            configuration=r.configuration.id,
            seed=r.seed,
            outcome=outcomes[phases[r.name]],
            run_prefix=prefix_of(r.name),
            total_timesteps=(children[r.name].total_timesteps if r.name in children else None),
            benchmark_model=r.name if r.name in benchmarked else None,
        )
        for r in plan.runs
        if phases[r.name] in outcomes
    ]
    return configurations, runs


def _severity(verdict: Verdict) -> Literal["Normal", "Warning"]:
    return "Warning" if verdict.phase == Phase.Failed.value or verdict.reason not in _NORMAL else "Normal"


def _transition(previous: Obj, verdict: Verdict) -> Event | None:
    if previous.get("phase") == verdict.phase and previous.get("reason") == verdict.reason:
        return None
    return Event(_severity(verdict), verdict.reason, f"{verdict.phase}: {verdict.message}")


def _cut(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= MAX_RUN_MESSAGE else text[: MAX_RUN_MESSAGE - 1] + "…"


# --- the decision ------------------------------------------------------------------------------


def decide(
    exp: Obj,
    plan: Plan | PlanError,
    observed: Observed,
    *,
    now: datetime,
    pending_grace: timedelta,
    benchmark_name: BenchmarkNamer,
) -> Actions:
    """The next actions and the operator-owned status of an Experiment.

    ``benchmark_name(chunk)`` names the final Benchmarks (see
    :func:`kubegym_operator.builders.experiment_report.benchmark_name`, bound to the Experiment).
    """
    previous: Obj = exp.get("status") or {}
    generation = (exp.get("metadata") or {}).get("generation")
    if is_terminal(exp):
        kept = {k: previous[k] for k in ("phase", "reason", "message", "conditions", "completionTime") if k in previous}
        return Actions(status={**kept, "observedGeneration": generation})
    if isinstance(plan, PlanError):
        failed = Verdict(Phase.Failed.value, plan.reason, plan.message)
        return Actions(status=_status(exp, failed, now=now), events=_events(previous, failed))

    spec = plan.spec
    children = observed.children
    actions = Actions()

    # Configurations whose run failed with a UserError fail for every seed: do not start the rest.
    broken: dict[str, str] = {}
    for run in plan.runs:
        child = children.get(run.name)
        if child is not None and child.phase == Phase.Failed.value and child.reason == run_status.Reason.USER_ERROR:
            broken.setdefault(run.configuration.id, run.name)

    rungs, brackets = _early_stopping(plan, previous, children, actions)
    stopping = {d.run: d for d in actions.stop}

    phases: dict[str, RunPhase] = {}
    for run in plan.runs:
        child = children.get(run.name)
        if child is None:
            never = plan.ended is not None and not run.configuration.proposed
            phases[run.name] = RunPhase.Skipped if run.configuration.id in broken or never else RunPhase.Waiting
        elif run.name in stopping and run_phase(child) == RunPhase.Running:
            phases[run.name] = RunPhase.EarlyStopped
        else:
            phases[run.name] = run_phase(child)

    _schedule(plan, phases, observed, stopping, actions)
    if spec.search is not None and spec.search.optuna is not None and actions.create_runs:
        try:
            plan, actions.create_runs = _propose(plan, phases, children, actions.create_runs)
        except TrialError as e:
            failed = Verdict(Phase.Failed.value, e.reason, e.message)
            return Actions(status=_status(exp, failed, now=now), events=_events(previous, failed))
    for run in actions.create_runs:
        phases[run.name] = RunPhase.Pending
    for name, suspend in actions.set_suspend.items():
        if phases[name] in (RunPhase.Pending, RunPhase.Running, RunPhase.Suspended):
            phases[name] = RunPhase.Suspended if suspend else RunPhase.Pending
    actions.phases = phases

    counts = {p: 0 for p in RunPhase}
    for p in phases.values():
        counts[p] += 1
    done = sum(counts[p] for p in DONE_RUN_PHASES)
    total = len(plan.runs)
    training_done = done == total

    verdict: Verdict
    stage: dict[str, Any] = {}
    if spec.suspend:
        waiting = "the final stages wait" if training_done else f"{total - done} unfinished runs are suspended"
        verdict = Verdict(
            Phase.Suspended.value,
            Reason.SUSPENDED,
            f"spec.suspend is true: {waiting}; false resumes them",
        )
    elif not training_done:
        verdict = _training_verdict(counts, done, total, created=bool(children))
    elif counts[RunPhase.Succeeded] + counts[RunPhase.EarlyStopped] == 0:
        first = next((children[r.name] for r in plan.runs if r.name in children), None)
        detail = f"; first: {first.name}: {first.reason}: {first.message}" if first is not None else ""
        verdict = Verdict(Phase.Failed.value, Reason.ALL_RUNS_FAILED, f"no run of {total} succeeded{detail}")
    else:
        verdict, stage = _final_stages(
            exp, plan, phases, observed, actions, now=now, grace=pending_grace, benchmark_name=benchmark_name
        )

    actions.status = _status(exp, verdict, now=now)
    actions.status.update(stage)
    actions.status.update(
        _run_fields(plan, phases, children, broken, stopping, counts, done, total, rungs=rungs, brackets=brackets)
    )
    if spec.search is not None and spec.search.pbt is not None:
        actions.status["population"] = population_status(plan, children)
    if spec.search is not None and spec.search.optuna is not None:
        scores = {c.id: record.value for c, record in study_history(plan, phases, children)}
        for entry in actions.status["configurations"]:
            if scores.get(entry["id"]) is not None:
                entry["score"] = scores[entry["id"]]
    actions.status["estimatedRemainingSeconds"] = experiment_remaining_seconds(
        verdict.phase, actions.status.get("budget") or {}, children.values(), previous.get("estimatedRemainingSeconds")
    )
    if children or actions.create_runs:
        actions.status["startTime"] = previous.get("startTime") or format_time(now)
    actions.events = _events(previous, verdict)
    for decision in actions.stop:
        actions.events.append(Event("Normal", "EarlyStopped", f"stopped {decision.run}: {decision.message}"))
    before = {r.get("name"): r.get("phase") for r in previous.get("runs") or []}
    for config_id, run_name in sorted(broken.items()):
        newly_skipped = [
            r.name
            for r in plan.runs
            if r.configuration.id == config_id
            and phases[r.name] == RunPhase.Skipped
            and before.get(r.name) != "Skipped"
        ]
        if newly_skipped:
            message = (
                f"configuration {config_id} failed with a UserError in {run_name}; skipping {', '.join(newly_skipped)}"
            )
            actions.events.append(Event("Warning", "ConfigurationFailed", message))
    if actions.create_runs:
        names = ", ".join(r.name for r in actions.create_runs)
        actions.events.append(Event("Normal", "RunsCreated", f"created TrainingRuns {names}"))
    return actions


def _early_stopping(
    plan: Plan, previous: Obj, children: Mapping[str, ChildView], actions: Actions
) -> tuple[dict[str, int], dict[str, int]]:
    """Judge the training runs by ``spec.earlyStopping`` (nothing while the Experiment is suspended):
    ``actions.stop`` gets the stops; returns every run's promoted rung (the recorded ones, read
    back from ``status.runs[].rung``, with this round's promotions) and, for Hyperband, every
    planned run's bracket."""
    spec = plan.spec
    rule = spec.early_stopping
    if rule is None:
        return {}, {}
    planned = {r.name for r in plan.runs}
    rungs = {
        str(r.get("name")): r["rung"]
        for r in previous.get("runs") or []
        if r.get("name") in planned and isinstance(r.get("rung"), int) and not isinstance(r.get("rung"), bool)
    }
    brackets = _brackets(spec, plan) if rule.rule == EarlyStoppingRule.Hyperband else {}
    if spec.suspend:
        return rungs, brackets
    curves = {name: c.curve for name, c in children.items() if c.curve}
    training = [name for name, c in children.items() if run_phase(c) == RunPhase.Running]
    maximize = spec.objective.direction == Direction.Maximize
    if rule.rule == EarlyStoppingRule.Median:
        actions.stop = list(
            median_stopping(
                curves, training, min_evaluations=rule.min_evaluations, min_runs=rule.min_runs, maximize=maximize
            )
        )
        return rungs, brackets
    assert rule.min_resource is not None  # the model requires it for ASHA and Hyperband
    stopped = [name for name, c in children.items() if run_phase(c) == RunPhase.EarlyStopped]
    if rule.rule == EarlyStoppingRule.Hyperband:
        judged = hyperband(
            curves,
            training,
            rungs,
            brackets=brackets,
            min_resource=rule.min_resource,
            reduction_factor=rule.reduction_factor,
            maximize=maximize,
            stopped=stopped,
        )
    else:
        judged = asha(
            curves,
            training,
            rungs,
            min_resource=rule.min_resource,
            reduction_factor=rule.reduction_factor,
            min_early_stopping_rate=rule.min_early_stopping_rate,
            maximize=maximize,
            stopped=stopped,
        )
    actions.stop = list(judged.stops)
    return {**rungs, **judged.promoted}, brackets


def _brackets(spec: ExperimentSpec, plan: Plan) -> dict[str, int]:
    """Every planned run's Hyperband bracket: its configuration's. Without template.totalTimesteps
    (apply refuses that for Hyperband) there is one bracket, i.e. ASHA."""
    rule = spec.early_stopping
    assert rule is not None and rule.min_resource is not None
    n_brackets = hyperband_brackets(
        max_resource=spec.template.total_timesteps or rule.min_resource,
        min_resource=rule.min_resource,
        reduction_factor=rule.reduction_factor,
    )
    # A bracket depends on the configuration's id alone, so runs of an Optuna search's configurations
    # not proposed yet have theirs too.
    ids = {r.configuration.id for r in plan.runs}
    of = {i: bracket_of(i, n_brackets=n_brackets, reduction_factor=rule.reduction_factor) for i in ids}
    return {r.name: of[r.configuration.id] for r in plan.runs}


def _schedule(
    plan: Plan,
    phases: Mapping[str, RunPhase],
    observed: Observed,
    stopping: Mapping[str, StopDecision],
    actions: Actions,
) -> None:
    """Suspend, resume and create runs so that at most ``parallelism`` have pods."""
    spec = plan.spec
    children = observed.children
    unfinished = [r for r in plan.runs if phases[r.name] in (RunPhase.Pending, RunPhase.Running, RunPhase.Suspended)]
    # Stopped runs stay suspended, whoever unsuspended them.
    for run in plan.runs:
        child = children.get(run.name)
        stopped = child is not None and phases[run.name] == RunPhase.EarlyStopped and not child.suspended
        if stopped and run.name not in stopping:
            actions.set_suspend[run.name] = True
    occupied = 0
    for name, child in children.items():
        phase = phases.get(name)
        if phase is None or phase in (RunPhase.Succeeded, RunPhase.Failed):
            continue
        if not child.suspended or name in observed.live:
            occupied += 1
    if spec.suspend:
        for run in unfinished:
            if not children[run.name].suspended:
                actions.set_suspend[run.name] = True
        return
    active = [r for r in unfinished if not children[r.name].suspended]
    for run in active[spec.parallelism :]:
        actions.set_suspend[run.name] = True
    room = spec.parallelism - occupied
    for run in unfinished:
        if room <= 0:
            break
        child = children[run.name]
        if child.suspended and run.name not in observed.live:
            actions.set_suspend[run.name] = False
            room -= 1
    # A configuration not proposed yet is proposed as its first run is created (Optuna); a PBT
    # segment not decided yet waits for its generation's predecessors.
    creatable = spec.search is None or spec.search.pbt is None
    actions.create_runs = [
        r for r in plan.runs if phases[r.name] == RunPhase.Waiting and (creatable or r.configuration.proposed)
    ][: max(room, 0)]


def study_history(
    plan: Plan, phases: Mapping[str, RunPhase], children: Mapping[str, ChildView]
) -> list[tuple[Configuration, TrialRecord]]:
    """An Optuna search's proposed configurations in trial order, each with its trial's state: running
    until all its runs are done, then complete with the objective's statistic over their scores."""
    spec = plan.spec
    objective = spec.objective
    out = []
    for config in sorted(plan.configurations, key=lambda c: int(c.id[1:])):
        if config.trial is None:
            continue
        runs = [r for r in plan.runs if r.configuration.id == config.id]
        scores = []
        for run in runs:
            child = children.get(run.name)
            if child is None or phases[run.name] not in (RunPhase.Succeeded, RunPhase.EarlyStopped):
                continue
            scores.append(
                run_score(
                    objective.metric,
                    objective.direction,
                    final=child.final_reward,
                    curve=[r for _, r in child.curve],
                    stopped_early=phases[run.name] == RunPhase.EarlyStopped,
                )
            )
        done = all(phases[r.name] in DONE_RUN_PHASES for r in runs)
        out.append((config, configuration_record(config.trial, objective, scores, done)))
    return out


def _propose(
    plan: Plan, phases: Mapping[str, RunPhase], children: Mapping[str, ChildView], create: Sequence[PlannedRun]
) -> tuple[Plan, list[PlannedRun]]:
    """The runs to create with their configurations proposed: each configuration not proposed yet
    is proposed once, from the history so far (the ones proposed in this round run in it)."""
    search = plan.spec.search.optuna if plan.spec.search is not None else None
    assert search is not None
    out = []
    for run in create:
        config = run.configuration
        if not config.proposed:
            known = next((c for c in plan.configurations if c.id == config.id), None)
            if known is None:
                history = [record for _, record in study_history(plan, phases, children)]
                trial = propose(search, plan.spec.objective.direction, history)
                if f"c{trial.number}" != config.id:
                    raise TrialError(
                        "TrialLost",
                        f"configuration {config.id} is next to propose but the study holds {trial.number} trials: "
                        "the runs of an earlier configuration were deleted, and their proposal with them; "
                        "create a new Experiment",
                    )
                known = Configuration(config.id, hyperparameters_of(search, trial.params), trial=trial)
                plan = with_proposal(plan, known)
            config = known
        out.append(PlannedRun(run.index, run.name, config, run.seed))
    return plan, out


def _training_verdict(counts: Mapping[RunPhase, int], done: int, total: int, *, created: bool) -> Verdict:
    detail = (
        f"{done}/{total} runs done ({counts[RunPhase.Succeeded]} succeeded, {counts[RunPhase.EarlyStopped]} stopped "
        f"early, {counts[RunPhase.Failed]} failed, {counts[RunPhase.Skipped]} skipped); "
        f"{counts[RunPhase.Running]} running, {counts[RunPhase.Pending]} pending, "
        f"{counts[RunPhase.Suspended]} suspended, {counts[RunPhase.Waiting]} waiting"
    )
    if counts[RunPhase.Running] or done:
        return Verdict(Phase.Running.value, Reason.TRAINING, detail)
    return Verdict(Phase.Pending.value, Reason.STARTING if created else Reason.CREATING, detail)


def _final_stages(
    exp: Obj,
    plan: Plan,
    phases: Mapping[str, RunPhase],
    observed: Observed,
    actions: Actions,
    *,
    now: datetime,
    grace: timedelta,
    benchmark_name: BenchmarkNamer,
) -> tuple[Verdict, dict[str, Any]]:
    """Training is over: the final Benchmarks (if asked), then the report Job."""
    spec = plan.spec
    stage: dict[str, Any] = {}
    if spec.benchmark is not None:
        chunks = benchmark_chunks(plan, phases, observed.children, benchmark_name)
        unfinished = 0
        phase_of = {c.name: _phase(observed.benchmarks.get(c.name)) for c in chunks}
        for chunk in chunks:
            if chunk.name not in observed.benchmarks:
                actions.create_benchmarks.append(chunk)
            elif phase_of[chunk.name] not in TERMINAL_PHASES:
                unfinished += 1
        actions.create_benchmarks = actions.create_benchmarks[: max(0, spec.parallelism - unfinished)]
        if chunks:
            stage["benchmark"] = {"name": chunks[0].name, "phase": phase_of[chunks[0].name]}
        waiting = [name for name, phase in phase_of.items() if phase not in TERMINAL_PHASES]
        if waiting:
            return Verdict(
                Phase.Running.value,
                Reason.BENCHMARKING,
                f"evaluating the runs' models: Benchmark {', '.join(waiting)}",
            ), stage
        if spec.objective.metric == ObjectiveMetric.Benchmark and Phase.Succeeded.value not in phase_of.values():
            names = ", ".join(c.name for c in chunks) or "none"
            return Verdict(
                Phase.Failed.value,
                Reason.REPORT_FAILED,
                f"objective.metric is Benchmark but no final Benchmark succeeded ({names})",
            ), stage

    job = observed.report_job
    if job is None:
        actions.create_report = True
        return Verdict(Phase.Running.value, Reason.REPORTING, "writing the report"), stage
    stage["reportJob"] = job["metadata"]["name"]
    verdict = run_status.verdict_of({"spec": {}}, job, observed.report_pods, now=now, grace=grace)
    if verdict.stop_job:
        actions.stop_report_job = True
    if verdict.phase == Phase.Succeeded.value:
        best = (exp.get("status") or {}).get("best") or {}
        summary = (
            f"; best {best.get('configuration')} ({best.get('summary')}): {best.get('score')} "
            f"[{best.get('ciLower')}, {best.get('ciUpper')}]"
            if best
            else ""
        )
        done = sum(1 for p in phases.values() if p in DONE_RUN_PHASES)
        return Verdict(Phase.Succeeded.value, Reason.COMPLETED, f"{done} runs done, report written{summary}"), stage
    if verdict.phase == Phase.Failed.value:
        return Verdict(
            Phase.Failed.value, Reason.REPORT_FAILED, f"report Job: {verdict.reason}: {verdict.message}"
        ), stage
    return Verdict(Phase.Running.value, Reason.REPORTING, f"report Job: {verdict.reason}: {verdict.message}"), stage


def _phase(obj: Obj | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def _status(exp: Obj, verdict: Verdict, *, now: datetime) -> dict[str, Any]:
    previous: Obj = exp.get("status") or {}
    generation = (exp.get("metadata") or {}).get("generation")
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "reason": verdict.reason,
        "message": verdict.message,
        "conditions": conditions_for(verdict, previous.get("conditions") or [], now=now, generation=generation),
        "observedGeneration": generation,
    }
    if verdict.phase in TERMINAL_PHASES:
        status["completionTime"] = format_time(now)
    return status


def _events(previous: Obj, verdict: Verdict) -> list[Event]:
    event = _transition(previous, verdict)
    return [event] if event is not None else []


def experiment_remaining_seconds(
    phase: str, budget: Obj, children: Iterable[ChildView], previous: Any = None
) -> int | None:
    """``status.estimatedRemainingSeconds`` of an Experiment: the timesteps its runs have left to
    train (planned, less trained, less what early stopping saved) over the summed throughput of
    the runs training now — the same rule, rounding and tolerance as a TrainingRun's
    (:func:`~kubegym_operator.builders.status.estimated_remaining_seconds`). The final Benchmark
    and the report are not in it. 0 once Succeeded; None while no run reports a throughput."""
    rate = sum(c.steps_per_second or 0.0 for c in children if c.phase == Phase.Running.value)
    planned = budget.get("totalTimesteps")
    progress: dict[str, Any] = {"timesteps": budget.get("trainedTimesteps") or 0, "stepsPerSecond": rate}
    if isinstance(planned, int):
        progress["totalTimesteps"] = max(0, planned - int(budget.get("savedTimesteps") or 0))
    return run_status.estimated_remaining_seconds(phase, progress, previous)


def _segment_span(plan: Plan, run: PlannedRun) -> tuple[int, int] | None:
    """A PBT segment's first and last timestep (its run's totalTimesteps); None outside PBT."""
    search = plan.spec.search.pbt if plan.spec.search is not None else None
    if search is None:
        return None
    generation = int(run.configuration.id.split("g")[1])
    total = plan.spec.template.total_timesteps or 0
    return min(generation * search.interval, total), min((generation + 1) * search.interval, total)


def segment_results(plan: Plan, children: Mapping[str, ChildView]) -> dict[str, float | None]:
    """A PBT population's finished segments by id: the objective's metric of each succeeded one's
    run (None without a score), None for a failed one; unfinished ones are left out."""
    objective = plan.spec.objective
    out: dict[str, float | None] = {}
    for run in plan.runs:
        child = children.get(run.name)
        if child is None:
            continue
        phase = run_phase(child)
        if phase == RunPhase.Failed:
            out[run.configuration.id] = None
        elif phase == RunPhase.Succeeded:
            out[run.configuration.id] = run_score(
                objective.metric,
                objective.direction,
                final=child.final_reward,
                curve=[r for t, r in child.curve if t > (_segment_span(plan, run) or (0, 0))[0]],
                stopped_early=False,
            )
    return out


def population_status(plan: Plan, children: Mapping[str, ChildView]) -> list[dict[str, Any]]:
    """Every PBT member's lineage: its decided segments in order, with their scores once done."""
    scores = segment_results(plan, children)
    members: dict[int, dict[str, Any]] = {}
    for run in plan.runs:
        segment = run.configuration.segment
        if segment is None:
            continue
        member = members.setdefault(segment.member, {"member": f"m{segment.member}", "seed": run.seed, "lineage": []})
        step: dict[str, Any] = {
            "generation": segment.generation,
            "step": segment.start,
            "run": run.name,
            "hyperparameters": dict(segment.hyperparameters),
        }
        if segment.source is not None:
            step["source"] = next(
                r.name for r in plan.runs if r.configuration.id == f"m{segment.source[0]}g{segment.source[1]}"
            )
        if segment.copied_from is not None:
            step["copiedFrom"] = f"m{segment.copied_from}"
        if scores.get(segment.id) is not None:
            step["score"] = scores[segment.id]
        member["lineage"].append(step)
    return [members[k] for k in sorted(members)]


def _run_fields(
    plan: Plan,
    phases: Mapping[str, RunPhase],
    children: Mapping[str, ChildView],
    broken: Mapping[str, str],
    stopping: Mapping[str, StopDecision],
    counts: Mapping[RunPhase, int],
    done: int,
    total: int,
    *,
    rungs: Mapping[str, int],
    brackets: Mapping[str, int],
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    planned: int | None = 0
    trained = saved = 0
    for run in plan.runs:
        child = children.get(run.name)
        phase = phases[run.name]
        entry: dict[str, Any] = {
            "name": run.name,
            "configuration": run.configuration.id,
            "seed": run.seed,
            "phase": phase.value,
        }
        message: str | None = None
        if child is not None:
            if child.timesteps is not None:
                entry["timesteps"] = child.timesteps
                trained += child.timesteps
            if child.last_evaluation is not None:
                entry["lastEvaluation"] = child.last_evaluation
            if child.final_reward is not None:
                entry["finalReward"] = child.final_reward
            if phase == RunPhase.Failed:
                message = f"{child.reason}: {child.message}"
            elif phase == RunPhase.EarlyStopped:
                message = stopping[run.name].message if run.name in stopping else child.stopped
                if child.total_timesteps is not None:
                    saved += max(0, child.total_timesteps - (child.timesteps or 0))
        elif phase == RunPhase.Skipped and run.configuration.id in broken:
            message = f"not started: {broken[run.configuration.id]} of the same configuration failed with a UserError"
        elif phase == RunPhase.Skipped:
            message = f"not started: {plan.ended}"
        span = _segment_span(plan, run)
        if span is not None:
            # A PBT segment resumes at its start and counts on from there: only its own part is its budget.
            if "timesteps" in entry:
                trained -= min(span[0], entry["timesteps"])
            if planned is not None:
                planned += span[1] - span[0]
        elif planned is not None:
            length = child.total_timesteps if child is not None else plan.spec.template.total_timesteps
            planned = planned + length if length is not None else None
        cut = _cut(message)
        if cut:
            entry["message"] = cut
        if run.name in rungs:
            entry["rung"] = rungs[run.name]
        if run.name in brackets:
            entry["bracket"] = brackets[run.name]
        runs.append(entry)
    budget: dict[str, Any] = {"trainedTimesteps": trained, "savedTimesteps": saved}
    if planned is not None:
        budget["totalTimesteps"] = planned
    cost = sum_costs([child.cost for child in children.values() if child.cost is not None])
    return {
        "completions": f"{done}/{total}",
        "counts": {
            "total": total,
            "waiting": counts[RunPhase.Waiting],
            "pending": counts[RunPhase.Pending],
            "running": counts[RunPhase.Running],
            "suspended": counts[RunPhase.Suspended],
            "succeeded": counts[RunPhase.Succeeded],
            "failed": counts[RunPhase.Failed],
            "earlyStopped": counts[RunPhase.EarlyStopped],
            "skipped": counts[RunPhase.Skipped],
        },
        "configurations": [
            {"id": c.id, "summary": c.summary, "hyperparameters": c.hyperparameters} for c in plan.configurations
        ],
        "runs": runs,
        "budget": budget,
        **({"cost": cost.model_dump(mode="json", by_alias=True, exclude_none=True)} if cost is not None else {}),
    }
