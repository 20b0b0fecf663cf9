"""``kubectl gym status|watch|logs|download``: the progress bar and ETA, the run, Experiment and
Benchmark views, where a log is read from, and the checksum check with its one-line error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from kubegym_cli import download, logs, status
from kubegym_cli.download import ChecksumError, load_lines, verify
from kubegym_cli.errors import CliError, api_error
from kubegym_cli.logs import PodLog, Stored, choose_source, select_stored
from kubegym_cli.main import build_parser

Obj = dict[str, Any]


# --- progress bar, durations, ETA -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "bar"),
    [
        (0.0, "[..........]"),
        (0.5, "[#####.....]"),
        (0.999, "[#########.]"),  # full only when done
        (1.0, "[##########]"),
        (1.7, "[##########]"),
        (-1.0, "[..........]"),
        (float("nan"), "[..........]"),
    ],
)
def test_progress_bar(fraction: float, bar: str) -> None:
    assert status.progress_bar(fraction, width=10) == bar


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-1, "-"), (0, "0s"), (0.2, "1s"), (59, "59s"), (65, "1m05s"), (3600, "1h00m"), (7500, "2h05m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert status.format_duration(seconds) == text
    assert status.format_duration(100_000) == "1d03h"


def test_eta_is_the_operators_estimate_else_computed_from_progress() -> None:
    progress = {"timesteps": 4_000, "totalTimesteps": 10_000, "stepsPerSecond": 200.0}
    assert status.eta_seconds({"phase": "Running", "estimatedRemainingSeconds": 42, "progress": progress}) == 42
    assert status.eta_seconds({"phase": "Running", "progress": progress}) == 30.0
    assert status.eta_seconds({"phase": "Running", "progress": {"timesteps": 0, "totalTimesteps": 10}}) is None
    assert status.eta_seconds({"phase": "Succeeded", "progress": progress}) == 0.0
    assert status.eta_seconds({"phase": "Failed", "estimatedRemainingSeconds": 42}) is None


# --- the views -------------------------------------------------------------------------------------

RUN: Obj = {
    "metadata": {"name": "cartpole", "namespace": "research"},
    "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 100_000},
    "status": {
        "phase": "Running",
        "reason": "Training",
        "estimatedRemainingSeconds": 125,
        "progress": {
            "timesteps": 52_224,
            "totalTimesteps": 100_000,
            "fraction": 0.52224,
            "percent": 52,
            "stepsPerSecond": 1234.5,
            "meanEpisodeReward": 150.25,
            "meanEpisodeLength": 150.2,
            "episodes": 321,
            "lastEvaluation": {"timesteps": 50_000, "meanReward": 480.5, "stdReward": 12.0, "episodes": 10},
        },
        "checkpoints": {"latestUri": "s3://kubegym/r/checkpoints/000000050000", "latestStep": 50_000, "count": 3},
    },
}


def test_run_view_has_the_bar_steps_per_second_eta_evaluation_and_checkpoint() -> None:
    text = status.render_run(RUN)
    lines = text.splitlines()
    assert lines[0] == "TrainingRun research/cartpole: Running (Training)  PPO on CartPole-v1"
    assert lines[1] == f"{status.progress_bar(0.52224)}  52%  52,224/100,000 steps  1,234.5 steps/s  ETA 2m05s"
    assert "last evaluation: 480.500 +/- 12.000 at step 50,000 (10 episodes)" in text
    assert "last checkpoint: step 50,000 (3 kept) s3://kubegym/r/checkpoints/000000050000" in text
    assert "result:" not in text


@pytest.mark.parametrize(
    ("tracking", "line"),
    [
        (None, "mlflow: http://mlflow:5000, not reached yet"),
        ({"state": "ok", "runId": "abc", "experimentId": "4"}, "mlflow: run abc (experiment 4) at http://mlflow:5000"),
        (
            {"state": "failing", "since": "2026-03-01T12:00:00Z"},
            "mlflow: http://mlflow:5000 not reached since 2026-03-01T12:00:00Z; training goes on",
        ),
    ],
)
def test_run_view_says_where_the_run_logs_to_mlflow(tracking: Obj | None, line: str) -> None:
    run = {**RUN, "spec": {**RUN["spec"], "tracking": {"mlflow": {"trackingUri": "http://mlflow:5000"}}}}
    progress = {**RUN["status"]["progress"], **({"tracking": tracking} if tracking else {})}
    assert line in status.render_run({**run, "status": {**RUN["status"], "progress": progress}}).splitlines()
    assert "mlflow:" not in status.render_run(RUN)


def test_run_view_of_a_new_and_of_a_finished_run() -> None:
    new = status.render_run({"metadata": {"name": "x", "namespace": "n"}, "spec": {"totalTimesteps": 10}})
    assert "TrainingRun n/x: Pending" in new and "  0%  0/10 steps  - steps/s  ETA -" in new
    assert "last evaluation: none yet" in new and "last checkpoint: none yet" in new
    done: Obj = {
        **RUN,
        "status": {
            **RUN["status"],
            "phase": "Succeeded",
            "reason": "Completed",
            "estimatedRemainingSeconds": 0,
            "result": {"meanReward": 500.0, "stdReward": 0.0, "episodes": 10, "modelUri": "s3://kubegym/r/final/"},
        },
    }
    text = status.render_run(done)
    assert f"{status.progress_bar(1.0)} 100%" in text and "ETA 0s" in text
    assert "result: 500.000 +/- 0.000 over 10 episodes; model s3://kubegym/r/final/" in text


def test_experiment_view_shows_each_trials_state() -> None:
    exp: Obj = {
        "metadata": {"name": "sweep", "namespace": "research"},
        "status": {
            "phase": "Running",
            "completions": "1/3",
            "counts": {"total": 3, "running": 1, "succeeded": 1, "earlyStopped": 1},
            "budget": {"totalTimesteps": 300, "trainedTimesteps": 150},
            "runs": [
                {"name": "sweep-c0-s0", "configuration": "c0", "seed": 0, "phase": "Succeeded", "finalReward": 500.0},
                {"name": "sweep-c0-s1", "configuration": "c0", "seed": 1, "phase": "Running", "timesteps": 40},
                {
                    "name": "sweep-c1-s0",
                    "configuration": "c1",
                    "seed": 0,
                    "phase": "EarlyStopped",
                    "message": "median rule",
                },
            ],
        },
    }
    text = status.render_experiment(exp)
    assert text.splitlines()[0] == "Experiment research/sweep: Running  (1/3 runs done)"
    assert "runs: 1 running, 1 succeeded, 1 earlyStopped" in text
    assert f"{status.progress_bar(0.5)}  50%  150/300 steps over all runs" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("sweep-")}
    assert rows["sweep-c0-s0"][3] == "Succeeded" and rows["sweep-c0-s1"][3] == "Running"
    assert rows["sweep-c1-s0"][3] == "EarlyStopped" and "median rule" in text


def test_benchmark_view_shows_entries_done() -> None:
    bench: Obj = {
        "metadata": {"name": "agents", "namespace": "research"},
        "status": {"phase": "Running", "progress": {"entriesDone": 1, "entriesTotal": 4, "episodes": 50}},
    }
    text = status.render_benchmark(bench)
    assert "Benchmark research/agents: Running" in text and "1/4 entries" in text and " 25%" in text


class FakeCustomObjects:
    """A CustomObjectsApi over a dict (``plural`` -> {name: object}); ``deny`` answers 403."""

    def __init__(self, objects: dict[str, dict[str, Obj]], deny: bool = False) -> None:
        self.objects, self.deny = objects, deny

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Obj:
        from kubernetes.client.exceptions import ApiException

        if self.deny:
            raise ApiException(status=403, reason="Forbidden")
        if name not in self.objects.get(plural, {}):
            raise ApiException(status=404, reason="Not Found")
        return self.objects[plural][name]


def test_a_name_is_found_among_the_kinds_and_errors_are_one_line() -> None:
    api = FakeCustomObjects({"experiments": {"sweep": {"metadata": {"name": "sweep"}}}})
    assert status.find(api, "ns", "sweep").kind == "Experiment"
    assert status.find(api, "ns", "experiment/sweep").kind == "Experiment"
    with pytest.raises(CliError, match=r'^no TrainingRun, Experiment or Benchmark named "x" in namespace ns$'):
        status.find(api, "ns", "x")
    with pytest.raises(CliError, match=r'^no TrainingRun named "sweep" in namespace ns$'):
        status.find(api, "ns", "trainingrun/sweep")
    with pytest.raises(CliError, match=r"^no permission to read trainingruns in namespace ns \(403 Forbidden\)$"):
        status.find(FakeCustomObjects({}, deny=True), "ns", "x")


def test_unknown_run_and_no_permission_print_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubegym_cli import main

    for deny, expected in ((False, 'Error: trainingrun "gone" not found in namespace ns'), (True, "403 Forbidden")):
        api = FakeCustomObjects({}, deny=deny)
        monkeypatch.setattr(main, "_kube", lambda *_, api=api: (api, "ns"))
        for argv in (["download", "gone"], ["logs", "gone"], ["status", "trainingrun/gone"]):
            assert main.main(argv) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("Error: "), err
            if argv[0] != "status":
                assert expected in err


def test_api_errors_say_what_went_wrong() -> None:
    class E:
        status, reason = 500, "Internal Server Error"

    assert str(api_error(E(), "trainingruns", "x", "ns")) == "cannot read trainingrun ns/x: 500 Internal Server Error"


# --- where the log comes from ------------------------------------------------------------------


def pod(name: str, created: str, state: str = "running", restarts: int = 0) -> Obj:
    states = {"running": {"running": {}}, "waiting": {"waiting": {"reason": "ContainerCreating"}}, "done": {}}
    states["done"] = {"terminated": {"exitCode": 0}}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created},
        "status": {"containerStatuses": [{"name": "runner", "state": states[state], "restartCount": restarts}]},
    }


def test_the_live_pod_is_read_while_there_is_one() -> None:
    pods = [pod("run-b", "2026-01-01T00:02:00Z"), pod("run-a", "2026-01-01T00:01:00Z", "done")]
    assert choose_source(pods, previous=False) == PodLog("run-b", "uid-run-b", 0)
    # The newest pod has not started: its log does not exist yet; the stored copies have the story.
    pending = [pod("run-a", "2026-01-01T00:01:00Z", "done"), pod("run-b", "2026-01-01T00:02:00Z", "waiting")]
    assert choose_source(pending, previous=False) == Stored()
    assert choose_source([], previous=False) == Stored()


def test_previous_is_the_restarted_container_else_the_pod_before_else_the_stored_attempt_before() -> None:
    restarted = [pod("run-a", "2026-01-01T00:01:00Z", restarts=2)]
    assert choose_source(restarted, previous=True) == PodLog("run-a", "uid-run-a", 2, previous=True)
    two = [pod("run-a", "2026-01-01T00:01:00Z", "done"), pod("run-b", "2026-01-01T00:02:00Z")]
    assert choose_source(two, previous=True) == PodLog("run-a", "uid-run-a", 0)
    assert choose_source([pod("run-b", "2026-01-01T00:02:00Z")], previous=True) == Stored(live_pod="run-b")
    assert choose_source([], previous=True) == Stored()


def test_stored_copies_in_start_order_and_the_previous_attempt() -> None:
    keys = [
        "r/logs/20261202T100000Z-run-b.log",
        "r/logs/20261202T090000Z-run-a.log",
        "r/logs/20261202T110000Z-run-c.log",
        "r/logs/notes.txt",
    ]
    ordered = [keys[1], keys[0], keys[2]]
    assert select_stored(keys, previous=False) == ordered
    assert select_stored(keys, previous=True) == [keys[0]]  # the attempt before the last
    assert select_stored(keys, previous=True, live_pod="run-c") == [keys[0]]  # before the live pod's
    assert select_stored(keys[1:2], previous=True) == []
    assert logs.attempt_of(keys[0]) == "20261202T100000Z-run-b"


# --- download: the checksum check ---------------------------------------------------------------


def test_a_file_matching_its_manifest_entry_passes_and_a_changed_one_fails_in_one_line(tmp_path: Path) -> None:
    data = b"model bytes"
    digest = hashlib.sha256(data).hexdigest()
    verify("final/model.zip", {"sha256": digest, "size": len(data)}, digest, len(data))
    changed = hashlib.sha256(b"model bytez").hexdigest()
    with pytest.raises(ChecksumError) as caught:
        verify("s3://b/r/final/model.zip", {"sha256": digest, "size": len(data)}, changed, len(data))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s3://b/r/final/model.zip: sha256 ")
    assert changed[:16] in message and digest[:16] in message and "corrupted" in message
    with pytest.raises(ChecksumError, match="12 bytes, the manifest says 11"):
        verify("model.zip", {"sha256": digest, "size": 11}, digest, 12)
    assert isinstance(caught.value, CliError)  # main prints it as one line, exit 1


def test_the_two_lines_that_load_the_model() -> None:
    assert load_lines("PPO", Path("/d/model.zip")) == [
        "from stable_baselines3 import PPO",
        "model = PPO.load('/d/model.zip')",
    ]
    assert load_lines("TQC", Path("/d/model.zip"))[0] == "from sb3_contrib import TQC"


def test_the_final_folder_of_a_run() -> None:
    assert download.final_folder({"status": {"result": {"modelUri": "s3://b/r/final"}}}) == "s3://b/r/final/"
    assert download.final_folder({"status": {"phase": "Succeeded", "artifacts": {"uri": "s3://b/r/"}}}) == (
        "s3://b/r/final/"
    )
    assert download.final_folder({"status": {"phase": "Running", "artifacts": {"uri": "s3://b/r/"}}}) is None


def test_the_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["logs", "r", "-n", "ns", "-f", "--previous"])
    assert (args.run, args.namespace, args.follow, args.previous) == ("r", "ns", True, True)
    args = parser.parse_args(["watch", "sweep", "--interval", "5"])
    assert args.watch and args.interval == 5.0
    assert not parser.parse_args(["status", "x"]).watch
    assert parser.parse_args(["download", "r", "--dir", "d"]).dir == "d"


@pytest.mark.parametrize(
    ("cost", "line"),
    [
        (None, None),
        (
            {"cpuSeconds": 1234.5, "gpuSeconds": 0.0, "measuredCpuSeconds": 987.6, "cpuUtilization": 0.8, "pods": 2},
            "cost: 1,234.5 CPU-s requested (987.6 used, 80% of the request), 0.0 GPU-s, 2 pod(s)",
        ),
        ({"cpuSeconds": 60.0, "gpuSeconds": 60.0, "pods": 1}, "cost: 60.0 CPU-s requested, 60.0 GPU-s, 1 pod(s)"),
    ],
)
def test_the_run_view_says_what_it_cost(cost: Obj | None, line: str | None) -> None:
    run: Obj = {**RUN, "status": {**RUN["status"], **({"cost": cost} if cost else {})}}
    text = status.render_run(run)
    if line is None:
        assert "cost:" not in text
    else:
        assert text.splitlines()[-1] == line


def test_the_run_view_says_when_it_is_idle() -> None:
    idle = {"type": "Idle", "status": "True", "reason": "NoProgress", "message": "no new timesteps for 700 s"}
    text = status.render_run({**RUN, "status": {**RUN["status"], "conditions": [idle]}})
    assert text.splitlines()[1] == "  Idle: no new timesteps for 700 s"


def test_the_experiment_view_has_its_eta_when_the_operator_knows_it() -> None:
    exp: Obj = {
        "metadata": {"name": "sweep", "namespace": "research"},
        "status": {
            "phase": "Running",
            "budget": {"totalTimesteps": 300, "trainedTimesteps": 150},
            "estimatedRemainingSeconds": 75,
        },
    }
    assert f"{status.progress_bar(0.5)}  50%  150/300 steps over all runs  ETA 1m15s" in status.render_experiment(exp)


def test_run_view_shows_the_best_model_once_there_is_one() -> None:
    assert "best:" not in status.render_run(RUN)
    best = {"uri": "s3://kubegym/r/best/", "step": 30_000, "meanReward": 500.0, "stdReward": 0.0, "episodes": 10}
    text = status.render_run({**RUN, "status": {**RUN["status"], "best": best}})
    assert "best: 500.000 +/- 0.000 at step 30,000 (10 episodes) s3://kubegym/r/best/" in text.splitlines()


@pytest.mark.parametrize(
    ("checkpoint", "folder"),
    [
        ("final", "s3://b/r/final/"),
        ("best", "s3://b/r/best/"),
        ("latest", "s3://b/r/checkpoints/000000004096/"),
    ],
)
def test_download_takes_the_chosen_model(checkpoint: str, folder: str) -> None:
    from kubegym_api.trainingrun import ModelSelection

    run: Obj = {
        "status": {
            "phase": "Succeeded",
            "result": {"modelUri": "s3://b/r/final"},
            "best": {"uri": "s3://b/r/best", "step": 2048, "meanReward": 500.0},
            "checkpoints": {"latestUri": "s3://b/r/checkpoints/000000004096"},
        }
    }
    assert download.model_folder(run, ModelSelection(checkpoint)) == folder
    assert download.model_folder({"status": {"phase": "Succeeded"}}, ModelSelection.best) is None
    args = build_parser().parse_args(["download", "r", "--checkpoint", checkpoint])
    assert args.checkpoint == checkpoint
    assert build_parser().parse_args(["download", "r"]).checkpoint == "final"
