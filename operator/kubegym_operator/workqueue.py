"""Reconcile requests: deduplicated keys, worked off by a fixed pool of threads (client-go's workqueue).

kopf runs a synchronous handler on its executor, and until a thread is free the handler's event
— the whole raw object as the API server sent it — stays in memory, with every newer event of
that object queued behind it. With 1,000 runs applied at once, thousands of run, Job and pod
events waited so: 200 of the operator's 423 MB at its peak (memray over ``bench/bench_operator.py``),
and the heap stayed that size afterwards. The handlers are therefore ``async`` and only
:meth:`WorkQueue.add` the key of the object to reconcile; the reconcile reads the watch-fed view,
so it needs nothing from the event, and the event is dropped at once.

The semantics are client-go's: a key waiting in the queue is not added twice (requests fold into
one pass, which sees every change that woke them); a key being processed that is added again is
queued again when its pass ends, so the same object is never reconciled by two threads at once,
and no change is missed. Each key's kind routes it to its reconcile function (:meth:`route`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: (what to reconcile — a route's name, namespace, name).
Key = tuple[str, str, str]


class WorkQueue:
    """Deduplicated FIFO of :data:`Key` processed by worker threads.

    ``name`` names the threads (``<name>-<i>``) and the log lines.
    """

    def __init__(self, name: str = "reconcile") -> None:
        self.name = name
        self._lock = threading.Condition()
        self._queue: collections.deque[Key] = collections.deque()
        #: Keys waiting to be processed (each is in the deque once).
        self._dirty: set[Key] = set()
        #: Keys a worker is processing now.
        self._processing: set[Key] = set()
        self._routes: dict[str, Callable[[str, str], None]] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def route(self, kind: str, reconcile: Callable[[str, str], None]) -> None:
        """Process keys of ``kind`` with ``reconcile(namespace, name)``."""
        self._routes[kind] = reconcile

    def add(self, key: Key) -> None:
        """Ask for one more pass over ``key``; returns at once (safe from kopf's event loop)."""
        with self._lock:
            if key in self._dirty or self._stopping:
                return
            self._dirty.add(key)
            if key in self._processing:
                return  # queued again by done()
            self._queue.append(key)
            self._lock.notify()

    def __len__(self) -> int:
        """Keys waiting (not counting those being processed)."""
        with self._lock:
            return len(self._queue)

    def _get(self) -> Key | None:
        with self._lock:
            while not self._queue and not self._stopping:
                self._lock.wait()
            if self._stopping:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def _done(self, key: Key) -> None:
        with self._lock:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._lock.notify()

    def process_one(self, key: Key) -> None:
        """Run ``key``'s reconcile; an exception is logged (the periodic resync retries it)."""
        kind, namespace, name = key
        try:
            self._routes[kind](namespace, name)
        except Exception:
            log.exception("reconcile of %s %s/%s failed", kind, namespace, name)

    def _work(self) -> None:
        while (key := self._get()) is not None:
            try:
                self.process_one(key)
            finally:
                self._done(key)

    def start(self, workers: int) -> None:
        """Start ``workers`` threads (daemon threads: a stopping operator does not wait for them)."""
        with self._lock:
            self._stopping = False
        for i in range(workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop what waits, let the running passes end (up to ``timeout`` seconds), stop the threads."""
        with self._lock:
            self._stopping = True
            self._queue.clear()
            self._dirty.clear()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def drain(self) -> None:
        """Process every waiting key on the calling thread (tests, and a queue with no workers)."""
        while True:
            with self._lock:
                if not self._queue:
                    return
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
            try:
                self.process_one(key)
            finally:
                self._done(key)


#: The operator's queue: every kind's handlers add to it, :func:`kubegym_operator.main` starts it.
REQUESTS = WorkQueue()
