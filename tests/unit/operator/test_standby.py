"""A standby replica: warm view, no reconcile, no object metrics; the takeover pass once it leads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubegym_operator import metrics, reconciler
from kubegym_operator.controllers import experiment as experiment_controller
from kubegym_operator.handlers import experiment as experiment_handlers
from kubegym_operator.handlers import jobowners, resync
from kubegym_operator.state import STATE
from tests.unit.operator.builders import NAMESPACE, make_run
from tests.unit.operator.fakeapi import FakeCluster


def _leading(on: bool) -> Iterator[None]:
    was = STATE.leading.is_set()
    (STATE.leading.set if on else STATE.leading.clear)()
    yield
    (STATE.leading.set if was else STATE.leading.clear)()


@pytest.fixture
def standby() -> Iterator[None]:
    yield from _leading(False)


@pytest.fixture
def leader() -> Iterator[None]:
    yield from _leading(True)


def test_a_standby_reconciles_nothing_on_events_or_resync(standby: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(reconciler, "reconcile", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(experiment_controller, "reconcile", lambda *a, **k: calls.append(a))
    jobowners.reconcile(jobowners.TRAINING_RUN, NAMESPACE, "cartpole")
    experiment_handlers.reconcile(NAMESPACE, "sweep")
    resync.resync(everything=True)
    assert calls == []


def test_a_standby_exports_no_object_metrics() -> None:
    objects = metrics.ObjectMetrics()
    objects.observe("TrainingRun", None, make_run(status={"phase": "Running"}))
    assert list(objects.collect())
    objects.exporting.clear()
    assert list(objects.collect()) == []


def test_the_takeover_pass_reconciles_every_unfinished_object_runs_without_status_first(
    leader: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = FakeCluster(
        make_run("running", status={"phase": "Running", "reason": "Training"}),
        make_run("new"),
        make_run("done", status={"phase": "Succeeded"}),
        make_run("pending", status={"phase": "Pending", "reason": "Unschedulable"}),
    )
    monkeypatch.setattr(resync, "CLUSTER", cluster)
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(
        jobowners,
        "reconcile",
        lambda owner, ns, name: seen.append((owner.id, name)) if owner is jobowners.TRAINING_RUN else None,
    )
    monkeypatch.setattr(experiment_handlers, "reconcile", lambda ns, name: None)
    resync.resync(everything=True)
    assert seen[0] == (jobowners.TRAINING_RUN.id, "new")
    assert sorted(name for _, name in seen) == ["new", "pending", "running"]
    seen.clear()
    resync.resync()  # the periodic pass: only what the clock can move (none of these)
    assert seen == []
