"""A TrainingRun stopped by its Experiment says so itself: Suspended, reason and condition EarlyStopped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubegym_operator.builders.status import EARLY_STOPPED_ANNOTATION, compute_status
from kubegym_operator.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(*, stopped: bool, suspend: bool = True, status: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {EARLY_STOPPED_ANNOTATION: "worse than the median"} if stopped else {}
    out: dict[str, Any] = {
        "metadata": {"name": "sweep-c1-s0", "namespace": "lab", "generation": 2, "annotations": annotations},
        "spec": {"suspend": suspend},
    }
    if status is not None:
        out["status"] = status
    return out


def job(*, suspend: bool) -> dict[str, Any]:
    return {"metadata": {"name": "sweep-c1-s0-train", "labels": {}}, "spec": {"suspend": suspend}, "status": {}}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_stopped_run_is_suspended_with_an_early_stopped_condition() -> None:
    update = compute_status(run(stopped=True), job(suspend=True), [], now=NOW, settings=Settings())
    st = update.status
    assert (st["phase"], st["reason"]) == ("Suspended", "EarlyStopped")
    assert "worse than the median" in st["message"]
    cond = conditions(st)["EarlyStopped"]
    assert (cond["status"], cond["reason"]) == ("True", "EarlyStopped")
    assert update.event is not None and update.event.type == "Normal" and update.event.reason == "EarlyStopped"


def test_before_its_job_exists_too() -> None:
    st = compute_status(run(stopped=True), None, [], now=NOW, settings=Settings()).status
    assert st["reason"] == "EarlyStopped"


def test_a_plain_suspend_is_not_an_early_stop() -> None:
    st = compute_status(run(stopped=False), job(suspend=True), [], now=NOW, settings=Settings()).status
    assert st["reason"] == "Suspended" and "EarlyStopped" not in conditions(st)


def test_resuming_a_stopped_run_turns_the_condition_false() -> None:
    before = compute_status(run(stopped=True), job(suspend=True), [], now=NOW, settings=Settings()).status
    after = compute_status(
        run(stopped=False, suspend=False, status=before), job(suspend=False), [], now=NOW, settings=Settings()
    ).status
    assert conditions(after)["EarlyStopped"]["status"] == "False"
