"""The early-stopping rules: who is stopped, when, and against which references.

Median first; then ASHA (rungs, values, ties, direction, final promotions, later arrivals) and
Hyperband (brackets, their odds, competition within a bracket), and a replay of random trials
into Optuna's SuccessiveHalvingPruner that must prune exactly what :func:`asha` stops.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
import pytest

from kubegym_operator.builders.earlystopping import (
    Curve,
    Judgement,
    RungStop,
    asha,
    bracket_budgets,
    bracket_of,
    first_at_or_after,
    hyperband,
    hyperband_brackets,
    judge,
    median_stopping,
    reached,
    rung_step,
    value_at,
)

GOOD = [(2048, 60.0), (4096, 180.0), (6144, 250.0), (8192, 400.0)]
BETTER = [(2048, 70.0), (4096, 220.0), (6144, 350.0), (8192, 480.0)]
BAD = [(2048, 20.0), (4096, 28.0), (6144, 22.0)]


def test_curve_lookups() -> None:
    assert value_at(GOOD, 4096) == 180.0
    assert value_at(GOOD, 5000) == 180.0  # the latest at or before
    assert value_at(GOOD, 1000) is None
    assert reached(GOOD, 8192) and not reached(GOOD, 8193) and not reached([], 0)


def test_a_clearly_worse_run_is_stopped_at_its_latest_comparable_step() -> None:
    decision = judge("bad", {"bad": BAD, "good": GOOD, "better": BETTER}, min_evaluations=2, min_runs=2)
    assert decision is not None
    assert (decision.run, decision.step, decision.best, decision.median, decision.references) == (
        "bad",
        6144,
        28.0,
        300.0,
        2,
    )
    assert "median" in decision.message and "6144" in decision.message


def test_grace_period_protects_young_runs() -> None:
    assert judge("bad", {"bad": BAD[:1], "good": GOOD}, min_evaluations=2, min_runs=1) is None
    assert judge("bad", {"bad": BAD[:2], "good": GOOD}, min_evaluations=2, min_runs=1) is not None


def test_references_must_have_reached_the_step() -> None:
    # The others are behind: no step of the candidate has enough references yet.
    behind = {"bad": BAD, "good": GOOD[:1], "better": BETTER[:1]}
    assert judge("bad", behind, min_evaluations=2, min_runs=2) is None
    # Once they catch up with its second evaluation, it is judged there.
    caught_up = {"bad": BAD, "good": GOOD[:2], "better": BETTER[:2]}
    decision = judge("bad", caught_up, min_evaluations=2, min_runs=2)
    assert decision is not None and decision.step == 4096


def test_best_so_far_above_the_median_keeps_a_run() -> None:
    late_bloomer = [(2048, 10.0), (4096, 300.0), (6144, 5.0)]
    assert judge("late", {"late": late_bloomer, "good": GOOD, "better": BETTER}, min_evaluations=3, min_runs=2) is None


def test_min_runs_and_ties() -> None:
    assert judge("bad", {"bad": BAD, "good": GOOD}, min_evaluations=2, min_runs=2) is None
    equal = [(2048, 60.0), (4096, 180.0)]
    assert judge("eq", {"eq": equal, "good": GOOD}, min_evaluations=2, min_runs=1) is None  # not strictly worse


def test_minimize_flips_the_comparison() -> None:
    costs = {"cheap": [(1, 1.0), (2, 1.0)], "dear": [(1, 9.0), (2, 8.0)], "mid": [(1, 5.0), (2, 4.0)]}
    decisions = median_stopping(costs, ["cheap", "dear"], min_evaluations=2, min_runs=2, maximize=False)
    assert [d.run for d in decisions] == ["dear"]


def test_only_candidates_are_stopped_but_everyone_is_a_reference() -> None:
    curves = {"bad": BAD, "worse": [(2048, 1.0), (4096, 2.0), (6144, 3.0)], "good": GOOD, "better": BETTER}
    decisions = median_stopping(curves, ["bad"], min_evaluations=2, min_runs=3)
    assert [d.run for d in decisions] == ["bad"]
    assert decisions[0].references == 3


def test_the_median_message_is_unchanged() -> None:
    decision = judge("bad", {"bad": BAD, "good": GOOD, "better": BETTER}, min_evaluations=2, min_runs=2)
    assert decision is not None
    assert decision.message == (
        "its best evaluation by step 6144 (28) is worse than the median (300) of 2 other runs at that step "
        "(median stopping rule)"
    )


# --- ASHA ------------------------------------------------------------------------------------------


def test_rungs_and_rung_values() -> None:
    assert [rung_step(k, min_resource=1000, reduction_factor=3) for k in range(3)] == [1000, 3000, 9000]
    assert rung_step(0, min_resource=1000, reduction_factor=3, min_early_stopping_rate=2) == 9000
    curve = [(1024, 10.0), (2048, 30.0), (3072, 20.0)]
    assert first_at_or_after(curve, 1000) == (1024, 10.0)  # the first at or after, not the latest
    assert first_at_or_after(curve, 2048) == (2048, 30.0)
    assert first_at_or_after(curve, 3073) is None


#: Curves by run; a run's value at rung 0 (1000 timesteps) is its evaluation at 1024.
A = [(1024, 50.0), (2048, 80.0), (3072, 120.0)]
B = [(1024, 40.0), (2048, 90.0), (3072, 100.0)]
C = [(1024, 30.0), (2048, 20.0), (3072, 25.0)]
D = [(1024, 10.0), (2048, 300.0)]  # a late bloomer: judged on its first evaluation at the rung


@dataclass(frozen=True)
class AshaCase:
    curves: dict[str, Curve]
    candidates: list[str]
    stops: dict[str, int]  # run -> rung it is stopped at
    promoted: dict[str, int]  # this round's promotions
    recorded: dict[str, int] = field(default_factory=dict)
    eta: int = 2
    rate: int = 0
    maximize: bool = True
    stopped: tuple[str, ...] = ()


ASHA_CASES = {
    # The first arrival at a rung competes with itself only: promoted (as in ASHA; nobody waits).
    "alone-is-promoted": AshaCase({"a": A[:1]}, ["a"], {}, {"a": 0}),
    # Two at rung 0, eta 2: the top 1 of 2 goes on.
    "worse-of-two-stops": AshaCase({"a": A[:1], "c": C[:1]}, ["a", "c"], {"c": 0}, {"a": 0}),
    # Ties promote.
    "ties-promote": AshaCase({"a": [(1024, 5.0)], "b": [(1024, 5.0)]}, ["a", "b"], {}, {"a": 0, "b": 0}),
    # Minimize: the lower value is the better one.
    "minimize": AshaCase({"a": A[:1], "c": C[:1]}, ["a", "c"], {"a": 0}, {"c": 0}, maximize=False),
    # Judged on its first evaluation at or after the rung (10 at 1024), not a later, better one.
    "first-value-counts": AshaCase({"a": A[:1], "d": D}, ["d"], {"d": 0}, {}, recorded={"a": 0}),
    # A promotion is final: b was promoted at rung 0 earlier; better arrivals since do not re-judge it,
    # and it is next judged at rung 1 (2000: its value at 2048) once it reaches it.
    "promotion-is-final": AshaCase(
        {"a": A, "b": B[:1], "x": [(1024, 60.0)], "y": [(1024, 70.0)]},
        ["b"],
        {},
        {},
        recorded={"a": 1, "b": 0, "x": 0, "y": 0},
    ),
    "promoted-then-judged-at-the-next-rung": AshaCase(
        {"a": A, "b": B[:2], "c": [(1024, 60.0), (2048, 99.0)]},
        ["b"],
        {"b": 1},  # 90 at 2048 against 80 and 99: top 1 of 3 is 99
        {},
        recorded={"a": 1, "b": 0, "c": 1},
    ),
    # A later arrival at a rung meets everyone who got there before (any phase), eta 3: top 1 of 4.
    "later-arrival": AshaCase(
        {"a": A[:1], "b": B[:1], "c": C[:1], "late": [(1024, 45.0)]},
        ["late"],
        {"late": 0},
        {},
        recorded={"a": 0, "b": 0},
        eta=3,
    ),
    # No evaluation at or after the rung yet: not judged, neither promoted nor stopped.
    "not-at-the-rung-yet": AshaCase({"a": A, "e": [(512, 1.0), (768, 0.0)]}, ["e"], {}, {}, recorded={"a": 1}),
    # Only candidates (training runs) are stopped; the others still compete.
    "only-candidates-stop": AshaCase({"a": A[:1], "c": C[:1], "worst": [(1024, 0.0)]}, ["c"], {"c": 0}, {}),
    # Several rungs reached between two rounds: judged in increasing order, stopped at the first failed.
    # Several rungs reached between two rounds: judged in increasing order. b passes rung 0 (top 2 of 5,
    # 40 ties the cutoff) and is stopped at rung 1 (90 against 80 and 95: top 1 of 3); its promotion stays.
    "rungs-in-order": AshaCase(
        {"a": A, "b": B, "w": [(1024, 1.0)], "v": [(1024, 2.0)], "e": [(1024, 0.0), (2048, 95.0)]},
        ["b"],
        {"b": 1},
        {"b": 0},
        recorded={"a": 1, "e": 1},
    ),
    # A stopped run competes only up to the rung it was stopped at (c: rung 0), however far its pod
    # trained after the stop: its 500 at 2048 would otherwise stop b at rung 1.
    "stopped-runs-stay-at-their-rung": AshaCase(
        {"a": A[:2], "c": [(1024, 30.0), (2048, 500.0)], "b": B[:2]},
        ["b"],
        {},
        {"b": 1},
        recorded={"a": 1, "b": 0},
        stopped=("c",),
    ),
    # minEarlyStoppingRate 1: the first rung is at 2000, nothing is judged at 1000.
    # (With rate 0, c's 30 at 1024 would lose to a's 50.) Alone at 2000, c is promoted.
    "min-early-stopping-rate": AshaCase({"a": A[:1], "c": C[:2]}, ["a", "c"], {}, {"c": 0}, rate=1),
}


@pytest.mark.parametrize("case", list(ASHA_CASES.values()), ids=list(ASHA_CASES))
def test_asha(case: AshaCase) -> None:
    judged = asha(
        case.curves,
        case.candidates,
        case.recorded,
        min_resource=1000,
        reduction_factor=case.eta,
        min_early_stopping_rate=case.rate,
        maximize=case.maximize,
        stopped=case.stopped,
    )
    assert {d.run: d.rung for d in judged.stops} == case.stops
    assert judged.promoted == case.promoted
    assert [d.run for d in judged.stops] == sorted(d.run for d in judged.stops)


def test_the_asha_message_names_rung_step_value_cutoff_and_competitors() -> None:
    judged = asha({"a": A[:1], "b": B[:1], "c": C[:1]}, ["c"], {}, min_resource=1000, reduction_factor=3)
    (stop,) = judged.stops
    assert isinstance(stop, RungStop)
    assert (stop.rung, stop.step, stop.evaluated_at, stop.value, stop.cutoff, stop.keep, stop.competitors) == (
        0,
        1000,
        1024,
        30.0,
        50.0,
        1,
        3,
    )
    assert stop.message == (
        "at rung 0 (1000 timesteps) its evaluation at step 1024 (30) is not in the top 1 of the 3 runs that "
        "reached the rung (cutoff 50; ASHA with reduction factor 3)"
    )


def test_asha_is_independent_of_the_order_of_its_inputs() -> None:
    curves = {"a": A, "b": B, "c": C, "d": D}
    forward = asha(curves, ["a", "b", "c", "d"], {}, min_resource=1000, reduction_factor=2)
    backward = asha(dict(reversed(curves.items())), ["d", "c", "b", "a"], {}, min_resource=1000, reduction_factor=2)
    assert forward == backward
    # Rung 0: top 2 of 4 (a 50, b 40). Rung 1: c and d, stopped at rung 0 this round, do not compete
    # (d's 300 at 2048 would stop b too): a's 80 loses to b's 90.
    assert {d.run: d.rung for d in forward.stops} == {"c": 0, "d": 0, "a": 1}
    assert forward.promoted == {"a": 0, "b": 1}


def test_asha_refuses_a_reduction_factor_that_never_grows() -> None:
    with pytest.raises(ValueError, match="reduction_factor"):
        asha({"a": A}, ["a"], {}, min_resource=1000, reduction_factor=1)


# --- Hyperband -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_resource", "min_resource", "eta", "brackets"),
    [(10_000, 1000, 3, 3), (9000, 1000, 3, 3), (8999, 1000, 3, 2), (100_000, 4096, 2, 5), (1001, 1000, 3, 1)],
)
def test_number_of_brackets_is_floor_log_plus_one(
    max_resource: int, min_resource: int, eta: int, brackets: int
) -> None:
    assert hyperband_brackets(max_resource=max_resource, min_resource=min_resource, reduction_factor=eta) == brackets


@pytest.mark.parametrize(("max_resource", "min_resource", "eta"), [(10_000, 1000, 3), (100_000, 4096, 2), (50, 1, 4)])
def test_brackets_and_budgets_match_optunas_hyperband(max_resource: int, min_resource: int, eta: int) -> None:
    pruner = optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_resource, reduction_factor=eta)
    pruner._try_initialization(optuna.create_study())
    n = hyperband_brackets(max_resource=max_resource, min_resource=min_resource, reduction_factor=eta)
    assert n == pruner._n_brackets
    assert bracket_budgets(n, eta) == pruner._trial_allocation_budgets


def test_bracket_assignment_is_stable_and_weighted_by_budget() -> None:
    # Stable: a SHA-256 of the id, not Python's per-process salted hash(); these values are pinned.
    assert [bracket_of(f"c{i}", n_brackets=3, reduction_factor=3) for i in range(8)] == PINNED_BRACKETS
    budgets = bracket_budgets(3, 3)
    assert budgets == [9, 5, 3]
    counts = Counter(bracket_of(f"c{i}", n_brackets=3, reduction_factor=3) for i in range(3400))
    for b, budget in enumerate(budgets):
        assert abs(counts[b] / 3400 - budget / sum(budgets)) < 0.03, counts
    assert bracket_of("c0", n_brackets=1, reduction_factor=3) == 0


PINNED_BRACKETS = [0, 2, 0, 0, 2, 1, 0, 0]


def test_hyperband_runs_compete_within_their_bracket_only() -> None:
    # Bracket 0's first rung is 1000; bracket 1's is 3000 (eta 3).
    curves = {"a": A[:1], "c": C[:1], "x": [(1024, 1.0), (3072, 2.0)], "y": [(1024, 0.0), (3072, 9.0)]}
    brackets = {"a": 0, "c": 0, "x": 1, "y": 1}
    judged = hyperband(curves, ["c", "x"], {"a": 0, "y": 0}, brackets=brackets, min_resource=1000, reduction_factor=3)
    # c loses to a in bracket 0 (top 1 of 2 at 1000); x is judged at 3000 against y only, not against a or c.
    assert [(d.run, d.rung, d.step, d.bracket) for d in judged.stops] == [("c", 0, 1000, 0), ("x", 0, 3000, 1)]
    assert "Hyperband bracket 1" in judged.stops[1].message and "ASHA" in judged.stops[1].message
    # Alone in bracket 1, x is promoted; a run without a bracket is ignored.
    alone = hyperband(
        {"x": curves["x"], "z": C}, ["x", "z"], {}, brackets={"x": 1}, min_resource=1000, reduction_factor=3
    )
    assert alone == Judgement([], {"x": 0})


# --- the same prunes as Optuna's SuccessiveHalvingPruner -----------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_asha_prunes_what_optunas_successive_halving_prunes(seed: int) -> None:
    """Random trials report (step, value) in a random interleaving; after each report Optuna's
    pruner says whether to prune the reporting trial, and :func:`asha` (one round per report,
    promotions carried over as the Experiment's status would) must stop exactly that trial."""
    rng = random.Random(seed)
    eta = rng.choice([2, 3, 4])
    rate = rng.choice([0, 0, 1])
    min_resource = rng.choice([100, 250, 300])
    maximize = rng.random() < 0.5
    steps = [128 * (i + 1) for i in range(rng.randint(8, 24))]
    n_trials = rng.randint(4, 16)
    # Quality per trial plus noise, rounded so that ties happen.
    quality = [rng.uniform(0, 10) for _ in range(n_trials)]
    pending = {t: [(s, float(round(quality[t] + rng.gauss(0, 2) + s / 500))) for s in steps] for t in range(n_trials)}
    started: list[int] = []

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize",
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_resource, reduction_factor=eta, min_early_stopping_rate=rate
        ),
    )
    trials: dict[int, Any] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    promoted: dict[str, int] = {}
    pruned: set[str] = set()
    complete: set[str] = set()
    prunes = 0
    while any(pending.values()):
        # Trials start one after another (at most 4 at once) and report in a random order.
        live = [t for t in started if pending[t]]
        if (len(live) < 4 and len(started) < n_trials) or not live:
            started.append(len(started))
            live.append(started[-1])
        t = rng.choice(live)
        step, value = pending[t].pop(0)
        if t not in trials:
            trials[t] = study.ask()
        trial = trials[t]
        trial.report(value, step)
        optuna_prunes = trial.should_prune()

        name = f"t{t}"
        curves.setdefault(name, []).append((step, value))
        candidates = [n for n in curves if n not in pruned and n not in complete]
        judged = asha(
            curves,
            candidates,
            promoted,
            min_resource=min_resource,
            reduction_factor=eta,
            min_early_stopping_rate=rate,
            maximize=maximize,
            stopped=pruned,
        )
        promoted.update(judged.promoted)
        assert [d.run for d in judged.stops] == ([name] if optuna_prunes else []), (seed, name, step)
        if optuna_prunes:
            prunes += 1
            pruned.add(name)
            pending[t] = []
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif not pending[t]:
            complete.add(name)
            study.tell(trial, value)
    assert len(curves) == n_trials
    if seed == 0:
        assert prunes > 0  # the replay does exercise pruning
