"""What an Experiment does next and says about itself, from what the cluster shows.

The parallelism tests simulate a cluster (runs start, train, finish; suspended and stopped
runs' pods drain for a while) and check the invariant the e2e test checks on real pods: never
more than ``parallelism`` runner pods alive at once, whatever the user does to parallelism
and suspend on the way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubegym_api.experiment import RunPhase
from kubegym_operator.builders.experiment import Plan, PlanError, plan
from kubegym_operator.builders.experiment_status import (
    Actions,
    ChildView,
    Observed,
    decide,
    report_inputs,
    run_phase,
    view,
)
from kubegym_operator.builders.status import EARLY_STOPPED_ANNOTATION
from kubegym_operator.builders.timestamps import format_time

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def experiment(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 10000,
            "evaluation": {"everySteps": 2048, "episodes": 5},
        },
        "seeds": {"count": 3},
        "search": {"grid": {"learning_rate": [0.0003, 0.001]}},
        "parallelism": 2,
    }
    base.update(spec)
    exp = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "sweep", "namespace": "lab", "uid": "uid-1", "generation": 2},
        "spec": base,
    }
    if status is not None:
        exp["status"] = status
    return exp


def run_decide(exp: dict[str, Any], observed: Observed) -> Actions:
    planned: Plan | PlanError
    try:
        planned = plan(exp)
    except PlanError as e:
        planned = e
    return decide(exp, planned, observed, now=NOW, pending_grace=GRACE, benchmark_name=lambda i: f"sweep-benchmark-{i}")


def done(name: str, reward: float = 400.0) -> ChildView:
    return ChildView(
        name=name,
        phase="Succeeded",
        reason="Completed",
        timesteps=10240,
        total_timesteps=10000,
        final_reward=reward,
        curve=((2048, reward / 2), (4096, reward)),
    )


def running(name: str, curve: tuple[tuple[int, float], ...] = (), timesteps: int = 4096) -> ChildView:
    return ChildView(
        name=name, phase="Running", reason="Training", curve=curve, timesteps=timesteps, total_timesteps=10000
    )


NAMES = ["sweep-c0-s0", "sweep-c1-s0", "sweep-c0-s1", "sweep-c1-s1", "sweep-c0-s2", "sweep-c1-s2"]


def test_view_reads_a_training_run() -> None:
    child = {
        "metadata": {"name": "sweep-c0-s0", "annotations": {EARLY_STOPPED_ANNOTATION: "losing"}},
        "spec": {"suspend": True, "totalTimesteps": 10000},
        "status": {
            "phase": "Suspended",
            "reason": "EarlyStopped",
            "progress": {
                "timesteps": 4096,
                "evaluations": [{"timesteps": 4096, "meanReward": 20.0}, {"timesteps": 2048, "meanReward": 9.5}],
                "lastEvaluation": {"timesteps": 4096, "meanReward": 20.0},
            },
            "checkpoints": {"latestUri": "s3://b/lab/sweep-c0-s0/checkpoints/000000004096/"},
        },
    }
    v = view(child)
    assert v.curve == ((2048, 9.5), (4096, 20.0))
    assert (v.stopped, v.suspended, v.timesteps, v.total_timesteps, v.last_evaluation) == (
        "losing",
        True,
        4096,
        10000,
        20.0,
    )
    assert v.latest_checkpoint is not None and v.latest_checkpoint.endswith("000000004096/")
    assert run_phase(v) == RunPhase.EarlyStopped
    assert run_phase(replace(v, phase="Succeeded")) == RunPhase.Succeeded  # finishing wins over a late stop


@pytest.mark.parametrize(
    ("artifacts", "latest", "kept"),
    [
        (None, "s3://b/lab/sweep-c0-s0/checkpoints/000000004096/", True),  # from before the record: as reported
        ("s3://b/lab/sweep-c0-s0/u1/", "s3://b/lab/sweep-c0-s0/u1/checkpoints/000000004096/", True),
        ("s3://b/lab/sweep-c0-s0/u1/", "s3://b/other-team/their-run/checkpoints/000000004096/", False),
        ("s3://b/lab/sweep-c0-s0/u1/", "", False),
    ],
    ids=["not-recorded", "in-its-folder", "outside-its-folder", "empty"],
)
def test_a_stopped_runs_checkpoint_is_evaluated_only_from_its_own_folder(
    artifacts: str | None, latest: str, kept: bool
) -> None:
    """The runner writes ``latestUri``: the final Benchmark evaluates it only inside the run's folder."""
    status: dict[str, Any] = {"phase": "Suspended", "checkpoints": {"latestUri": latest}}
    if artifacts is not None:
        bucket, _, prefix = artifacts.removeprefix("s3://").partition("/")
        status["artifacts"] = {"bucket": bucket, "prefix": prefix.strip("/"), "uri": artifacts}
    v = view({"metadata": {"name": "sweep-c0-s0"}, "spec": {"suspend": True}, "status": status})
    assert v.latest_checkpoint == (latest if kept else None)


def test_first_reconcile_creates_parallelism_runs_in_order() -> None:
    actions = run_decide(experiment(), Observed())
    assert [r.name for r in actions.create_runs] == NAMES[:2]
    st = actions.status
    assert (st["phase"], st["reason"], st["completions"]) == ("Pending", "CreatingRuns", "0/6")
    assert st["counts"]["pending"] == 2 and st["counts"]["waiting"] == 4
    assert st["startTime"] == format_time(NOW)
    assert [c["summary"] for c in st["configurations"]] == ["learning_rate=0.0003", "learning_rate=0.001"]
    assert st["budget"] == {"totalTimesteps": 60000, "trainedTimesteps": 0, "savedTimesteps": 0}
    assert any(e.reason == "RunsCreated" for e in actions.events)


def test_a_finished_run_frees_its_slot() -> None:
    observed = Observed(children={NAMES[0]: done(NAMES[0]), NAMES[1]: running(NAMES[1])})
    actions = run_decide(experiment(), observed)
    assert [r.name for r in actions.create_runs] == [NAMES[2]]
    assert actions.status["phase"] == "Running" and actions.status["completions"] == "1/6"
    assert actions.status["counts"]["running"] == 1 and actions.status["counts"]["succeeded"] == 1


def test_a_stopped_run_keeps_its_slot_until_its_pod_is_gone() -> None:
    stopped = replace(running(NAMES[1]), suspended=True, stopped="losing", phase="Suspended")
    children = {NAMES[0]: running(NAMES[0]), NAMES[1]: stopped}
    draining = run_decide(experiment(), Observed(children=children, live=frozenset({NAMES[1]})))
    assert draining.create_runs == []
    drained = run_decide(experiment(), Observed(children=children))
    assert [r.name for r in drained.create_runs] == [NAMES[2]]
    assert drained.status["counts"]["earlyStopped"] == 1


def test_lowering_parallelism_suspends_the_newest_and_raising_it_resumes_them() -> None:
    children = {n: running(n) for n in NAMES[:3]}
    lowered = run_decide(experiment(parallelism=1), Observed(children=children))
    assert lowered.set_suspend == {NAMES[1]: True, NAMES[2]: True}
    assert lowered.create_runs == []
    parked = {**children, **{n: replace(children[n], suspended=True) for n in NAMES[1:3]}}
    still_draining = run_decide(experiment(parallelism=3), Observed(children=parked, live=frozenset(NAMES[1:3])))
    assert still_draining.set_suspend == {} and still_draining.create_runs == []
    raised = run_decide(experiment(parallelism=3), Observed(children=parked))
    assert raised.set_suspend == {NAMES[1]: False, NAMES[2]: False}
    assert raised.create_runs == []


def test_suspend_suspends_every_unfinished_run_and_creates_none() -> None:
    children = {NAMES[0]: done(NAMES[0]), NAMES[1]: running(NAMES[1])}
    actions = run_decide(experiment(suspend=True), Observed(children=children))
    assert actions.set_suspend == {NAMES[1]: True} and actions.create_runs == []
    assert (actions.status["phase"], actions.status["reason"]) == ("Suspended", "Suspended")
    suspended = {n: c for n, c in children.items()}
    suspended[NAMES[1]] = replace(children[NAMES[1]], suspended=True, phase="Suspended")
    resumed = run_decide(experiment(), Observed(children=suspended))
    assert resumed.set_suspend == {NAMES[1]: False}
    assert [r.name for r in resumed.create_runs] == [NAMES[2]]


def test_suspend_also_holds_the_final_stages() -> None:
    children = {n: done(n) for n in NAMES}
    held = run_decide(experiment(suspend=True, benchmark={"episodes": 5}), Observed(children=children))
    assert held.create_benchmarks == [] and not held.create_report
    assert held.status["phase"] == "Suspended" and "final stages wait" in held.status["message"]


def test_early_stopping_stops_the_loser_and_counts_saved_budget() -> None:
    exp = experiment(earlyStopping={"minEvaluations": 2, "minRuns": 1})
    children = {
        NAMES[0]: running(NAMES[0], ((2048, 60.0), (4096, 180.0))),
        NAMES[1]: running(NAMES[1], ((2048, 20.0), (4096, 25.0)), timesteps=4096),
    }
    actions = run_decide(exp, Observed(children=children))
    assert [d.run for d in actions.stop] == [NAMES[1]]
    # Its pod is still there this round: no new run yet.
    assert actions.create_runs == []
    assert actions.status["counts"]["earlyStopped"] == 1
    assert actions.status["budget"]["savedTimesteps"] == 10000 - 4096
    (entry,) = [r for r in actions.status["runs"] if r["name"] == NAMES[1]]
    assert entry["phase"] == "EarlyStopped" and "median" in entry["message"]
    assert any(e.reason == "EarlyStopped" and NAMES[1] in e.message for e in actions.events)


def test_no_early_stopping_without_the_spec() -> None:
    children = {
        NAMES[0]: running(NAMES[0], ((2048, 60.0), (4096, 180.0))),
        NAMES[1]: running(NAMES[1], ((2048, 20.0), (4096, 25.0))),
    }
    assert run_decide(experiment(), Observed(children=children)).stop == []


def test_an_unsuspended_stopped_run_is_suspended_again() -> None:
    stopped = replace(running(NAMES[1]), stopped="losing", suspended=False)
    actions = run_decide(experiment(), Observed(children={NAMES[1]: stopped}))
    assert actions.set_suspend[NAMES[1]] is True


def test_a_user_error_skips_the_configurations_other_seeds() -> None:
    failed = ChildView(name=NAMES[1], phase="Failed", reason="UserError", message="n_steps must be > 1")
    children = {NAMES[0]: done(NAMES[0]), NAMES[1]: failed, NAMES[2]: running(NAMES[2])}
    actions = run_decide(experiment(), Observed(children=children))
    assert [r.name for r in actions.create_runs] == [NAMES[4]]  # c0-s2; c1-s1 and c1-s2 are skipped
    counts = actions.status["counts"]
    assert (counts["skipped"], counts["failed"], counts["waiting"]) == (2, 1, 0)
    (skipped,) = [r for r in actions.status["runs"] if r["name"] == NAMES[3]]
    assert skipped["phase"] == "Skipped" and NAMES[1] in skipped["message"]
    assert any(e.reason == "ConfigurationFailed" for e in actions.events)
    again = run_decide(experiment(status=actions.status), Observed(children=children))
    assert not any(e.reason == "ConfigurationFailed" for e in again.events)  # told once


def test_all_runs_failed() -> None:
    children = {n: ChildView(name=n, phase="Failed", reason="OOMKilled", message="out of memory") for n in NAMES}
    actions = run_decide(experiment(), Observed(children=children))
    assert (actions.status["phase"], actions.status["reason"]) == ("Failed", "AllRunsFailed")
    assert "OOMKilled" in actions.status["message"]
    assert not actions.create_report


def test_training_done_creates_the_report_then_succeeds_with_it() -> None:
    children = {n: done(n) for n in NAMES}
    actions = run_decide(experiment(), Observed(children=children))
    assert actions.create_report and actions.create_benchmarks == []
    assert (actions.status["phase"], actions.status["reason"]) == ("Running", "Reporting")
    job = {
        "metadata": {"name": "sweep-report"},
        "spec": {},
        "status": {"conditions": [{"type": "Complete", "status": "True"}], "completionTime": format_time(NOW)},
    }
    best = {"configuration": "c1", "summary": "learning_rate=0.001", "score": 480.0, "ciLower": 470.0, "ciUpper": 500.0}
    finished = run_decide(experiment(status={"best": best}), Observed(children=children, report_job=job))
    st = finished.status
    assert (st["phase"], st["reason"], st["reportJob"]) == ("Succeeded", "Completed", "sweep-report")
    assert "c1 (learning_rate=0.001): 480.0 [470.0, 500.0]" in st["message"]
    assert st["completionTime"] == format_time(NOW)
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in st["conditions"])


def test_a_failed_report_job_fails_the_experiment_with_its_cause() -> None:
    children = {n: done(n) for n in NAMES}
    job = {
        "metadata": {"name": "sweep-report"},
        "spec": {},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]},
    }
    pod = {
        "metadata": {"name": "sweep-report-x", "creationTimestamp": format_time(NOW)},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "runner", "state": {"terminated": {"exitCode": 42, "message": "no run has a score"}}}
            ],
        },
    }
    actions = run_decide(experiment(), Observed(children=children, report_job=job, report_pods=[pod]))
    assert (actions.status["phase"], actions.status["reason"]) == ("Failed", "ReportFailed")
    assert "UserError: no run has a score" in actions.status["message"]


def test_terminal_experiments_are_left_alone() -> None:
    status = {"phase": "Succeeded", "reason": "Completed", "message": "done", "completionTime": "x"}
    actions = run_decide(experiment(status=status), Observed())
    assert actions.create_runs == [] and not actions.create_report
    assert actions.status == {**status, "observedGeneration": 2}


def test_a_plan_error_fails_before_any_run() -> None:
    exp = experiment(search={"grid": {"learning_rat": [0.1]}})
    actions = run_decide(exp, Observed())
    assert actions.create_runs == []
    assert (actions.status["phase"], actions.status["reason"]) == ("Failed", "UnknownHyperparameter")
    assert "learning_rat" in actions.status["message"]
    assert [e.type for e in actions.events] == ["Warning"]


def test_benchmarks_come_before_the_report() -> None:
    exp = experiment(benchmark={"episodes": 20}, earlyStopping={"minEvaluations": 2})
    stopped = replace(
        done(NAMES[1]),
        phase="Suspended",
        stopped="losing",
        suspended=True,
        latest_checkpoint="s3://b/lab/sweep-c1-s0/checkpoints/000000004096/",
    )
    children = {**{n: done(n) for n in NAMES}, NAMES[1]: stopped}
    actions = run_decide(exp, Observed(children=children))
    (chunk,) = actions.create_benchmarks
    assert chunk.name == "sweep-benchmark-0" and [r.name for r in chunk.runs] == NAMES
    assert not actions.create_report
    assert actions.status["reason"] == "Benchmarking"
    bench = {"metadata": {"name": "sweep-benchmark-0"}, "status": {"phase": "Running"}}
    waiting = run_decide(exp, Observed(children=children, benchmarks={"sweep-benchmark-0": bench}))
    assert waiting.create_benchmarks == [] and not waiting.create_report
    assert waiting.status["benchmark"] == {"name": "sweep-benchmark-0", "phase": "Running"}
    bench_done = {"metadata": {"name": "sweep-benchmark-0"}, "status": {"phase": "Succeeded"}}
    reporting = run_decide(exp, Observed(children=children, benchmarks={"sweep-benchmark-0": bench_done}))
    assert reporting.create_report


def test_report_inputs_cover_the_finished_runs() -> None:
    exp = experiment()
    p = plan(exp)
    failed = ChildView(name=NAMES[5], phase="Failed", reason="OOMKilled")
    children = {**{n: done(n) for n in NAMES[:5]}, NAMES[5]: failed}
    actions = run_decide(exp, Observed(children=children))
    configurations, runs = report_inputs(
        p, actions.phases, children, frozenset({NAMES[0]}), lambda run: f"pre/lab/{run}"
    )
    assert [c.id for c in configurations] == ["c0", "c1"]
    assert [(r.name, str(r.outcome)) for r in runs][-1] == (NAMES[5], "Failed")
    assert runs[0].run_prefix == f"pre/lab/{NAMES[0]}" and runs[0].benchmark_model == NAMES[0]
    assert runs[1].benchmark_model is None and runs[0].total_timesteps == 10000


# --- the parallelism invariant in a simulated cluster ------------------------------------------


@dataclass
class SimRun:
    name: str
    phase: str = "Pending"
    suspended: bool = False
    stopped: str | None = None
    pod: bool = False  # a runner pod exists (running or terminating)
    draining: int = 0  # ticks until a terminating pod is gone
    trained: int = 0  # ticks trained


def simulate(exp: dict[str, Any], schedule: dict[int, dict[str, Any]], ticks: int = 200, train: int = 3) -> int:
    """Run the decision loop against a toy cluster; returns the peak of live pods and checks
    each tick against the parallelism in force."""
    runs: dict[str, SimRun] = {}
    peak = 0
    for tick in range(ticks):
        if tick in schedule:
            exp["spec"].update(schedule[tick])
        observed = Observed(
            children={
                r.name: ChildView(
                    name=r.name,
                    phase=r.phase,
                    suspended=r.suspended,
                    stopped=r.stopped,
                    total_timesteps=10000,
                    timesteps=r.trained * 1000,
                )
                for r in runs.values()
            },
            live=frozenset(r.name for r in runs.values() if r.pod and r.suspended),
        )
        actions = run_decide(exp, observed)
        for decision in actions.stop:
            runs[decision.run].stopped, runs[decision.run].suspended = decision.message, True
        for name, suspend in actions.set_suspend.items():
            runs[name].suspended = suspend
        for planned in actions.create_runs:
            runs[planned.name] = SimRun(planned.name)
        # The cluster moves: suspended pods drain, unsuspended runs get a pod and train.
        for r in runs.values():
            if r.phase in ("Succeeded", "Failed"):
                continue
            if r.suspended:
                if r.pod and r.draining == 0:
                    r.draining = 2
                elif r.pod:
                    r.draining -= 1
                    r.pod = r.draining > 0
                r.phase = "Suspended"
                continue
            r.pod, r.phase = True, "Running"
            r.trained += 1
            if r.trained >= train:
                r.phase, r.pod = "Succeeded", False
        live = sum(r.pod for r in runs.values())
        assert live <= exp["spec"]["parallelism"] or any(
            t <= tick and "parallelism" in change for t, change in schedule.items() if tick - t <= 3
        ), f"tick {tick}: {live} live pods > parallelism {exp['spec']['parallelism']}"
        peak = max(peak, live)
        if actions.create_report:
            assert all(r.phase == "Succeeded" for r in runs.values())
            return peak
    raise AssertionError("the experiment never finished")


def test_parallelism_is_never_exceeded_and_every_run_finishes() -> None:
    assert simulate(experiment(parallelism=2), {}) == 2


@pytest.mark.parametrize("parallelism", [1, 3, 6, 10])
def test_parallelism_bounds_pods_for_any_value(parallelism: int) -> None:
    assert simulate(experiment(parallelism=parallelism), {}) == min(parallelism, 6)


def test_live_changes_of_parallelism_and_suspend_are_followed() -> None:
    exp = experiment(seeds={"count": 5}, parallelism=3)
    schedule: dict[int, dict[str, Any]] = {
        2: {"parallelism": 1},
        8: {"suspend": True},
        12: {"suspend": False},
        14: {"parallelism": 4},
    }
    simulate(exp, copy.deepcopy(schedule), train=4)


# --- ASHA and Hyperband: promotions live in the status -----------------------------------------

ASHA = {"rule": "ASHA", "minResource": 2048, "reductionFactor": 2}
GOOD_CURVE = ((2048, 60.0), (4096, 180.0))
BAD_CURVE = ((2048, 20.0), (4096, 25.0))


def entry_of(actions: Actions, name: str) -> dict[str, Any]:
    (entry,) = [r for r in actions.status["runs"] if r["name"] == name]
    return dict(entry)


def test_asha_stops_the_loser_at_its_rung_and_records_the_promotions() -> None:
    exp = experiment(earlyStopping=ASHA)
    children = {NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: running(NAMES[1], BAD_CURVE)}
    actions = run_decide(exp, Observed(children=children))
    (stop,) = actions.stop
    assert stop.run == NAMES[1]
    assert stop.message.startswith("at rung 0 (2048 timesteps) its evaluation at step 2048 (20)")
    assert "cutoff 60" in stop.message and "2 runs" in stop.message and "ASHA" in stop.message
    # Rung 0 (2048) and rung 1 (4096) this round: the winner is promoted past both.
    assert entry_of(actions, NAMES[0])["rung"] == 1
    loser = entry_of(actions, NAMES[1])
    assert loser["phase"] == "EarlyStopped" and "rung" not in loser and loser["message"] == stop.message
    assert actions.status["budget"]["savedTimesteps"] == 10000 - 4096
    assert [e.message for e in actions.events if e.reason == "EarlyStopped"] == [f"stopped {NAMES[1]}: {stop.message}"]
    assert "bracket" not in entry_of(actions, NAMES[0])


def test_recorded_promotions_are_final_and_survive_a_restart() -> None:
    children = {NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: running(NAMES[1], BAD_CURVE)}
    # The status a previous operator wrote: both were promoted past both rungs (each arrived alone).
    runs = [
        {"name": NAMES[0], "configuration": "c0", "seed": 0, "phase": "Running", "rung": 1},
        {"name": NAMES[1], "configuration": "c1", "seed": 0, "phase": "Running", "rung": 1},
    ]
    actions = run_decide(experiment({"phase": "Running", "runs": runs}, earlyStopping=ASHA), Observed(children))
    assert actions.stop == []
    assert (entry_of(actions, NAMES[0])["rung"], entry_of(actions, NAMES[1])["rung"]) == (1, 1)
    # Promoted past rung 0 only: judged at rung 1 (25 against 180), not again at rung 0.
    runs[1]["rung"] = 0
    actions = run_decide(experiment({"phase": "Running", "runs": runs}, earlyStopping=ASHA), Observed(children))
    (stop,) = actions.stop
    assert stop.run == NAMES[1] and stop.message.startswith("at rung 1 (4096 timesteps)")
    assert entry_of(actions, NAMES[1])["rung"] == 0  # its promotion stays recorded


def test_asha_stops_only_training_runs_and_nothing_while_suspended() -> None:
    over = replace(running(NAMES[1], BAD_CURVE), suspended=True, phase="Suspended")
    actions = run_decide(
        experiment(earlyStopping=ASHA), Observed(children={NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: over})
    )
    assert actions.stop == []
    assert "rung" not in entry_of(actions, NAMES[1])  # not judged: its rung waits until it trains again
    runs = [{"name": NAMES[0], "configuration": "c0", "seed": 0, "phase": "Running", "rung": 0}]
    children = {NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: running(NAMES[1], BAD_CURVE)}
    held = run_decide(
        experiment({"phase": "Running", "runs": runs}, earlyStopping=ASHA, suspend=True), Observed(children)
    )
    assert held.stop == []
    assert entry_of(held, NAMES[0])["rung"] == 0  # kept, not advanced
    assert "rung" not in entry_of(held, NAMES[1])


def test_a_stopped_run_keeps_its_rung_and_does_not_compete_past_it() -> None:
    # c1-s0 was stopped at rung 0 earlier; its pod trained on to 4096 with a high value there.
    stopped = replace(running(NAMES[1], ((2048, 20.0), (4096, 999.0))), stopped="at rung 0 ...", suspended=True)
    runs = [{"name": NAMES[0], "configuration": "c0", "seed": 0, "phase": "Running", "rung": 0}]
    children = {NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: stopped}
    actions = run_decide(experiment({"phase": "Running", "runs": runs}, earlyStopping=ASHA), Observed(children))
    assert actions.stop == []
    assert entry_of(actions, NAMES[0])["rung"] == 1  # alone at rung 1: the stopped run's 999 does not count
    assert entry_of(actions, NAMES[1])["message"] == "at rung 0 ..."


def test_hyperband_assigns_every_run_its_configurations_bracket_and_judges_within_it() -> None:
    # totalTimesteps 10000, minResource 2048, eta 2: 3 brackets (first rungs 2048, 4096, 8192);
    # the stable hash puts c0 in bracket 2 and c1 in bracket 1.
    exp = experiment(earlyStopping={"rule": "Hyperband", "minResource": 2048, "reductionFactor": 2}, parallelism=3)
    children = {
        NAMES[0]: running(NAMES[0], GOOD_CURVE),  # c0, bracket 2: its first rung (8192) is not reached
        NAMES[1]: running(NAMES[1], BAD_CURVE),  # c1, bracket 1: 25 at 4096 ...
        NAMES[3]: running(NAMES[3], ((2048, 50.0), (4096, 90.0))),  # ... against its sibling's 90 only
    }
    actions = run_decide(exp, Observed(children=children))
    brackets = {r["name"]: r["bracket"] for r in actions.status["runs"]}
    assert brackets == {n: (2 if "-c0-" in n else 1) for n in NAMES}
    (stop,) = actions.stop
    assert stop.run == NAMES[1]
    assert stop.message.startswith("at rung 0 (4096 timesteps)") and "Hyperband bracket 1" in stop.message
    assert entry_of(actions, NAMES[3])["rung"] == 0
    assert "rung" not in entry_of(actions, NAMES[0])


def test_hyperband_without_rivals_in_the_bracket_stops_nothing() -> None:
    # Under ASHA the bad c1 run would lose to c0 at 2048; under Hyperband they are in different brackets.
    exp = experiment(earlyStopping={"rule": "Hyperband", "minResource": 2048, "reductionFactor": 2})
    children = {NAMES[0]: running(NAMES[0], GOOD_CURVE), NAMES[1]: running(NAMES[1], BAD_CURVE)}
    assert run_decide(exp, Observed(children=children)).stop == []
    assert [d.run for d in run_decide(experiment(earlyStopping=ASHA), Observed(children=children)).stop] == [NAMES[1]]
