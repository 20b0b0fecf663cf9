"""One reconcile at a time per object: requests that arrive meanwhile fold into one more pass."""

from __future__ import annotations

import threading

import pytest

from kubegym_operator.reconciler import ReconcileGate


def test_requests_during_a_reconcile_fold_into_one_more_pass_and_never_wait() -> None:
    gate = ReconcileGate()
    started, release = threading.Event(), threading.Event()
    passes: list[int] = []

    def once() -> int:
        passes.append(len(passes))
        if len(passes) == 1:
            started.set()
            assert release.wait(5)
        return len(passes)

    results: list[int | None] = []
    first = threading.Thread(target=lambda: results.append(gate.run("a", once)))
    first.start()
    assert started.wait(5)
    assert [gate.run("a", once) for _ in range(3)] == [None, None, None]  # returned at once
    assert gate.run("b", lambda: 7) == 7  # other objects are not held up
    release.set()
    first.join(5)
    assert passes == [0, 1]  # three folded requests, one more pass
    assert results == [2]


def test_a_failed_reconcile_is_remembered_until_one_succeeds() -> None:
    gate = ReconcileGate()

    def boom() -> None:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError):
        gate.run("a", boom)
    assert gate.failed() == {"a"}
    assert gate.run("a", lambda: 1) == 1  # not stuck "running" after the error
    assert gate.failed() == set()
