"""The run's TensorBoard curves (``kubegym_runner.curves``): SB3's logger writes event files that
reach the run's ``tensorboard/`` folder, with the runner's evaluations under ``eval/``, and a
resumed run's curves carry on from its checkpoint's step instead of starting again at 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubegym_runner.curves import UPLOAD_INTERVAL_ENV, UPLOAD_INTERVAL_SECONDS, grown_files
from kubegym_runner.progress import ProgressReporter
from kubegym_runner.signals import TerminationRequest
from kubegym_runner.train import Trainer
from kubegym_runner.uploads import interval_from_env
from tests.unit.runner.test_train_uploads import FakeStore, _train_config, one_thread  # noqa: F401 - fixture

PREFIX = "run/tensorboard/"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, UPLOAD_INTERVAL_SECONDS), ("2.5", 2.5), ("0", UPLOAD_INTERVAL_SECONDS), ("soon", UPLOAD_INTERVAL_SECONDS)],
)
def test_interval_from_env(raw: str | None, expected: float) -> None:
    environ = {} if raw is None else {UPLOAD_INTERVAL_ENV: raw}
    assert interval_from_env(UPLOAD_INTERVAL_ENV, UPLOAD_INTERVAL_SECONDS, environ) == expected


def test_grown_files_are_the_new_and_the_longer_ones(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"12")
    (tmp_path / "b").write_bytes(b"123")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert grown_files(tmp_path, {}) == [("a", 2), ("b", 3)]
    assert grown_files(tmp_path, {"a": 2, "b": 1}) == [("b", 3)]
    assert grown_files(tmp_path / "missing", {}) == []


def _series(store: FakeStore, tmp_path: Path, tag: str) -> dict[str, list[int]]:
    """The steps of ``tag`` in each stored event file, by file name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # type: ignore[import-untyped]

    steps = {}
    for i, (key, data) in enumerate(sorted(store.objects.items())):
        if key.startswith(PREFIX):
            name = key[len(PREFIX) :]
            folder = tmp_path / "read" / str(i)  # a folder named like an event file is read as one
            folder.mkdir(parents=True)
            (folder / name).write_bytes(data)
            acc = EventAccumulator(str(folder), purge_orphaned_data=False)
            acc.Reload()
            steps[name] = [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []
    return steps


@pytest.mark.usefixtures("one_thread")
def test_curves_reach_the_run_folder_and_a_resumed_run_continues_them(tmp_path: Path) -> None:
    store = FakeStore()
    for attempt in ("a", "b"):
        (tmp_path / attempt).mkdir()
    first = Trainer(_train_config(1024), store, ProgressReporter(None, 3600), TerminationRequest(), tmp_path / "a")
    first.run()
    [(name, steps)] = _series(store, tmp_path / "1", "rollout/ep_rew_mean").items()
    assert name.startswith("events.out.tfevents.")
    assert steps and steps == sorted(steps) and steps[-1] == 1024  # one point per rollout of 2 x 64 steps
    assert _series(store, tmp_path / "2", "time/fps")[name]
    assert _series(store, tmp_path / "3", "train/loss")[name]

    # The same run folder, a larger budget: the next attempt resumes from the 1,024-step checkpoint.
    second = Trainer(_train_config(2048), store, ProgressReporter(None, 3600), TerminationRequest(), tmp_path / "b")
    second.run()
    series = _series(store, tmp_path / "4", "rollout/ep_rew_mean")
    assert len(series) == 2  # one event file per attempt, none overwritten
    resumed = series[max(series, key=lambda n: series[n][-1])]
    assert resumed[0] > 1024 and resumed[-1] == 2048, resumed  # no restart at step 0


@pytest.mark.usefixtures("one_thread")
def test_periodic_evaluations_are_curves_too(tmp_path: Path) -> None:
    from kubegym_api.trainingrun import EvaluationConfig

    store = FakeStore()
    config = _train_config(1024).model_copy(update={"evaluation": EvaluationConfig(every_steps=256, episodes=1)})
    Trainer(config, store, ProgressReporter(None, 3600), TerminationRequest(), tmp_path).run()
    [steps] = _series(store, tmp_path, "eval/mean_reward").values()
    assert len(steps) >= 3 and steps == sorted(steps)
