"""The median stopping rule: who is stopped, when, and against which references."""

from __future__ import annotations

from kubegym_operator.builders.earlystopping import judge, median_stopping, reached, value_at

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
