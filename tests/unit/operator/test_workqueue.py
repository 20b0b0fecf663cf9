"""The reconcile work queue: requests fold while waiting, a key added during its pass gets one more
pass, one key is never processed by two threads at once, and a failing reconcile stops nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from kubegym_operator.workqueue import Key, WorkQueue
from tests.support.wait import wait_until

A: Key = ("run", "ns", "a")
B: Key = ("run", "ns", "b")


def recording(queue: WorkQueue) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    queue.route("run", lambda ns, name: seen.append((ns, name)))
    return seen


@pytest.mark.parametrize(
    ("adds", "passes"),
    [
        ([A], [("ns", "a")]),
        ([A, A, A], [("ns", "a")]),
        ([A, B, A], [("ns", "a"), ("ns", "b")]),
        ([], []),
    ],
    ids=["one", "folded-while-waiting", "fifo-and-folded", "nothing"],
)
def test_requests_fold_while_waiting(adds: list[Key], passes: list[tuple[str, str]]) -> None:
    queue = WorkQueue()
    seen = recording(queue)
    for key in adds:
        queue.add(key)
    assert len(queue) == len(set(adds))
    queue.drain()
    assert seen == passes and len(queue) == 0


def test_a_key_added_during_its_pass_gets_exactly_one_more_pass_never_concurrently() -> None:
    queue = WorkQueue()
    inside = threading.Event()
    release = threading.Event()
    running: Counter[str] = Counter()
    most = Counter[str]()
    passes: list[str] = []
    lock = threading.Lock()

    def reconcile(namespace: str, name: str) -> None:
        with lock:
            running[name] += 1
            most[name] = max(most[name], running[name])
        passes.append(name)
        if len(passes) == 1:
            inside.set()
            release.wait(5)
        with lock:
            running[name] -= 1

    queue.route("run", reconcile)
    queue.start(4)
    try:
        queue.add(A)
        assert inside.wait(5)
        for _ in range(10):  # while the first pass runs: folded into one more
            queue.add(A)
        time.sleep(0.2)
        assert passes == ["a"]  # no second thread took it meanwhile
        release.set()
        wait_until(lambda: passes == ["a", "a"], 5, "the second pass")
        time.sleep(0.2)
        assert passes == ["a", "a"] and most["a"] == 1
    finally:
        queue.stop()


def test_a_failing_reconcile_is_logged_and_the_queue_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    queue = WorkQueue()
    seen: list[str] = []

    def reconcile(namespace: str, name: str) -> None:
        if name == "a":
            raise RuntimeError("boom")
        seen.append(name)

    queue.route("run", reconcile)
    queue.add(A)
    queue.add(B)
    queue.drain()
    assert seen == ["b"]
    assert "reconcile of run ns/a failed" in caplog.text


def test_stop_drops_what_waits_and_refuses_new_requests() -> None:
    queue = WorkQueue()
    seen = recording(queue)
    queue.add(A)
    queue.stop()
    queue.add(B)
    queue.drain()
    assert seen == [] and len(queue) == 0
