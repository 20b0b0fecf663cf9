"""The best model by periodic evaluation (``kubegym_runner.best``, issue 15 item 1): which evaluation
wins (improves, ties, NaN), what a restarted run keeps, the ``best/`` manifest's round trip, the
status patch, and a real (tiny) training run whose ``best/`` and ``status.best`` agree with the
maximum of its evaluation history, before and after a restart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kubegym_api.trainingrun import BestModelStatus, EvaluationConfig, EvaluationResult
from kubegym_runner.best import BestTracker, best_status, improves, kept_on_resume
from kubegym_runner.checkpoints import RunLayout, read_manifest, write_folder
from kubegym_runner.progress import ProgressReporter, build_status_patch
from kubegym_runner.signals import TerminationRequest
from kubegym_runner.storage import S3Uri
from kubegym_runner.train import EVALUATIONS_NAME, Trainer
from kubegym_runner.uploads import Uploader
from tests.unit.runner.test_train_checkpoints import MemoryStorage
from tests.unit.runner.test_train_uploads import FakeStore, _train_config, one_thread  # noqa: F401 - fixture


def _eval(step: int, mean: float, std: float = 1.0, episodes: int = 5) -> EvaluationResult:
    return EvaluationResult(timesteps=step, mean_reward=mean, std_reward=std, episodes=episodes)


@pytest.mark.parametrize(
    ("candidate", "best", "wins"),
    [
        (_eval(1000, 94.0), None, True),  # the first evaluation is the best so far
        (_eval(2000, 500.0), _eval(1000, 94.0), True),  # improves
        (_eval(2000, 94.0), _eval(1000, 94.0), False),  # a tie keeps the earlier model
        (_eval(2000, 88.0), _eval(1000, 94.0), False),  # worse
        (_eval(2000, -1.0), _eval(1000, -2.0), True),  # negative returns compare the same way
        (_eval(2000, math.nan), None, False),  # NaN never wins
        (_eval(2000, math.inf), _eval(1000, 94.0), False),
    ],
)
def test_an_evaluation_wins_only_by_a_higher_finite_mean(
    candidate: EvaluationResult, best: EvaluationResult | None, wins: bool
) -> None:
    assert improves(candidate, best) is wins


def test_the_issue_sequence_keeps_the_500() -> None:
    tracker = BestTracker()
    offered = [tracker.offer(_eval(step, mean)) for step, mean in [(1, 94.0), (2, 88.0), (3, 500.0), (4, 97.0)]]
    assert offered == [True, False, True, False]
    assert tracker.best == _eval(3, 500.0)


@pytest.mark.parametrize(
    ("stored", "resumed_step", "kept"),
    [
        (None, 4096, None),
        (_eval(2048, 200.0), 4096, _eval(2048, 200.0)),  # before the checkpoint: still this timeline's
        (_eval(4096, 200.0), 4096, _eval(4096, 200.0)),  # at the checkpoint
        (_eval(5120, 200.0), 4096, None),  # past it: that evaluation's timeline was lost with the pod
    ],
)
def test_a_restarted_run_keeps_a_best_at_or_before_the_step_it_resumed_from(
    stored: EvaluationResult | None, resumed_step: int, kept: EvaluationResult | None
) -> None:
    assert kept_on_resume(stored, resumed_step) == kept


def test_the_best_manifest_round_trips_with_its_evaluation(tmp_path: Path) -> None:
    storage = MemoryStorage()
    layout = RunLayout.of("bkt", "ns/run/uid")
    assert str(layout.best) == "s3://bkt/ns/run/uid/best"
    model = tmp_path / "model.zip"
    model.write_bytes(b"weights")
    evaluation = _eval(3000, 500.0, 0.0, 10)
    write_folder(
        storage, layout.best, {"model.zip": model}, step=3000, wall_time_seconds=1.5, algorithm="DQN",
        env_id="CartPole-v1", evaluation=evaluation,
    )  # fmt: skip
    assert storage.writes[-1] == "ns/run/uid/best/manifest.json"  # manifest last
    manifest = read_manifest(storage, layout.best)
    assert manifest is not None and manifest.step == 3000 and manifest.evaluation == evaluation
    stored = json.loads(storage.objects[("bkt", "ns/run/uid/best/manifest.json")])
    assert stored["evaluation"] == {"timesteps": 3000, "meanReward": 500.0, "stdReward": 0.0, "episodes": 10}


def test_the_status_patch_carries_best_and_drops_it_with_null() -> None:
    best = best_status(_eval(3000, 500.0, 0.0, 10), "s3://bkt/run/best")
    assert build_status_patch(best=best) == {
        "status": {
            "best": {"uri": "s3://bkt/run/best", "step": 3000, "meanReward": 500.0, "stdReward": 0.0, "episodes": 10}
        }
    }
    assert build_status_patch(clear_best=True) == {"status": {"best": None}}
    assert build_status_patch() == {"status": {}}
    reporter = ProgressReporter(None, 3600)
    reporter.set_best(best)
    reporter.set_best(None)
    assert reporter.best is None and reporter.best_cleared


def test_the_uploader_waits_for_a_kind_of_upload(tmp_path: Path) -> None:
    store = FakeStore()
    uploader = Uploader(store)
    store.freeze()  # holds upload_file until thawed
    model = tmp_path / "model.zip"
    model.write_bytes(b"weights")
    uploader.submit("best", "best model 1", lambda s: s.upload_file(model, S3Uri("bkt", "run/best/model.zip")))
    assert not uploader.wait("best", 0.2)  # frozen: still pending
    assert uploader.wait("other", 0.1)  # nothing of that kind
    store.thaw()
    assert uploader.wait("best", 10)
    uploader.close(1)


def _history(store: FakeStore) -> list[dict[str, float]]:
    return list(json.loads(store.objects[f"run/eval/{EVALUATIONS_NAME}"]))


def _first_max(history: list[dict[str, float]]) -> dict[str, float]:
    top = max(e["meanReward"] for e in history)
    return next(e for e in history if e["meanReward"] == top)


def _stored_best(store: FakeStore) -> dict[str, float]:
    return dict(json.loads(store.objects["run/best/manifest.json"])["evaluation"])


def _run(store: FakeStore, total: int, workdir: Path) -> ProgressReporter:
    workdir.mkdir()
    config = _train_config(total).model_copy(update={"evaluation": EvaluationConfig(every_steps=256, episodes=2)})
    reporter = ProgressReporter(None, 3600)
    Trainer(config, store, reporter, TerminationRequest(), workdir).run()
    return reporter


def _agrees(reporter: ProgressReporter, stored: dict[str, float]) -> None:
    assert reporter.best == BestModelStatus(
        uri="s3://bkt/run/best",
        step=int(stored["timesteps"]),
        mean_reward=stored["meanReward"],
        std_reward=stored["stdReward"],
        episodes=int(stored["episodes"]),
    )


@pytest.mark.usefixtures("one_thread")
def test_a_run_keeps_its_best_evaluation_and_a_restart_goes_on_from_it(tmp_path: Path) -> None:
    store = FakeStore()
    first = _run(store, 1024, tmp_path / "a")
    history = _history(store)
    assert len(history) >= 3 and _stored_best(store) == {k: _first_max(history)[k] for k in _stored_best(store)}
    assert {"run/best/model.zip", "run/best/manifest.json"} <= set(store.objects)
    _agrees(first, _stored_best(store))

    # The same folder, a larger budget: the next attempt resumes at 1,024 and keeps the best it had.
    before = len(history)
    second = _run(store, 2048, tmp_path / "b")
    history = _history(store)
    assert len(history) > before
    best = _stored_best(store)
    assert best == {k: _first_max(history)[k] for k in best}
    _agrees(second, best)


@pytest.mark.usefixtures("one_thread")
def test_a_restart_drops_a_best_from_past_its_checkpoint(tmp_path: Path) -> None:
    store = FakeStore()
    _run(store, 1024, tmp_path / "a")
    # A best kept at step 1,500 by a pod that died before its next checkpoint (1,024 is the newest).
    manifest = json.loads(store.objects["run/best/manifest.json"])
    manifest["step"] = 1500
    manifest["evaluation"] = {"timesteps": 1500, "meanReward": 1e9, "stdReward": 0.0, "episodes": 2}
    store.objects["run/best/manifest.json"] = json.dumps(manifest).encode()

    second = _run(store, 2048, tmp_path / "b")
    best = _stored_best(store)
    assert best["meanReward"] != 1e9 and 1024 < best["timesteps"] <= 2048  # chosen on the new timeline
    after = [e for e in _history(store) if e["timesteps"] > 1024]
    assert best == {k: _first_max(after)[k] for k in best}
    _agrees(second, best)
