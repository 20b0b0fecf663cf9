"""Uploads beside the training loop, so that slow or frozen storage never stalls training.

Why: a checkpoint written from the training thread blocks ``learn`` for as long as S3 takes
to answer, and an endpoint that accepts connections but does not answer (a frozen or
overloaded MinIO) holds it for every request's read timeout times its attempts. So the
training thread only serialises a checkpoint to local disk (fast) and hands the folder to an
:class:`Uploader`, whose single worker thread puts it in S3 while training goes on.

The rules, and why:

- **One worker, one request at a time.** Uploads never race each other for the same keys,
  and the blocking calls below never run beside a background upload.
- **At most one upload queued per kind** (``key``: checkpoints, the evaluation history)
  behind the one in progress. A newer one replaces a queued one, whose local folder is
  deleted at once (disk is the pod's ``emptyDir``): only the newest state is worth uploading.
- **An upload in progress is never cut while it makes progress**: it completes, or it is
  abandoned *between two requests* — when it is failing and a newer one of its kind waits,
  at a deadline, or when the uploader closes. A checkpoint folder puts its manifest last
  (:func:`~kubegym_runner.checkpoints.write_folder`), so an abandoned upload has no manifest
  and readers (resume, ``resumeFrom``, pruning) never select it.
- **Failed requests are retried** with capped exponential back-off and jitter: a
  :class:`~kubegym_runner.errors.StorageError` (connection refused or reset, timeouts, 5xx)
  in the background indefinitely, until the caller's deadline for blocking calls. A
  :class:`~kubegym_runner.errors.UserError` (access denied, no such bucket) is not retried.
- **Blocking calls for the last words** (:meth:`Uploader.blocking`): the final checkpoint and
  model and the SIGTERM checkpoint must be in S3 before the pod ends. They run on the same
  worker after the upload in progress, with retries up to a deadline, and the caller waits
  at most until that deadline even when a request hangs in the network; a failing
  background upload steps aside for them (and is queued again).
- **Health** (:meth:`Uploader.health`): ``ok``, or failing since when and with which error,
  also when a request has had no answer (no bytes moved) for ``stall_seconds``, so the
  run's status can say that its checkpoints are not reaching storage.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar, cast

from kubegym_runner.errors import StorageError, UserError
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage

log = logging.getLogger(__name__)

T = TypeVar("T")
#: What an upload does with the (retrying) storage it is given.
Action = Callable[[Storage], object]


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential back-off: ``initial * multiplier**(n-1)``, at most ``maximum``
    seconds, each delay shortened by a random fraction of up to ``jitter`` (runs that failed
    together do not retry together)."""

    initial_seconds: float = 1.0
    multiplier: float = 2.0
    maximum_seconds: float = 30.0
    jitter: float = 0.5

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (``rand`` in [0, 1))."""
        base = min(self.maximum_seconds, self.initial_seconds * self.multiplier ** max(failures - 1, 0))
        return base * (1.0 - self.jitter * rand)


@dataclass(frozen=True)
class StorageHealth:
    """Whether the runner's storage requests succeed, for ``status`` and logs."""

    ok: bool
    #: When the current run of failures (or the silence of a request) began.
    failing_since: datetime | None = None
    #: The last error, or what has had no answer for how long.
    last_error: str | None = None
    #: Consecutive failed requests (0 while a request merely has no answer yet).
    failures: int = 0
    #: Uploads queued or in progress.
    pending: int = 0

    @property
    def state(self) -> str:
        return "ok" if self.ok else "failing"

    def describe(self) -> str:
        """``ok``, or ``failing since <time>: <error>``."""
        if self.ok:
            return "ok"
        since = self.failing_since.isoformat(timespec="seconds") if self.failing_since else "?"
        return f"failing since {since}: {self.last_error}"


# Both pass through an action's own ``except Exception`` (BaseException) to the worker.


class _AbandonedError(BaseException):
    """The upload stopped between two requests; nothing after that point was written."""


class _YieldedError(BaseException):
    """A failing background upload steps aside for a blocking call and is queued again."""


class _Job:
    """One upload: an action over storage, and the local folder to delete when it is done."""

    def __init__(
        self,
        key: str | None,
        label: str,
        action: Action,
        *,
        cleanup: Path | None = None,
        urgent: bool = False,
        deadline: float | None = None,
    ) -> None:
        self.key = key
        self.label = label
        self.action = action
        self.cleanup = cleanup
        self.urgent = urgent
        self.deadline = deadline
        self.finished = threading.Event()
        #: Set to make a job in back-off look at its situation again (newer job, closing...).
        self.wake = threading.Event()
        self.abandon: str | None = None
        self.failures = 0
        self.result: object = None
        self.error: BaseException | None = None
        self.outcome = "pending"

    def done(self, outcome: str, error: BaseException | None = None) -> None:
        self.outcome, self.error = outcome, error
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)
        self.finished.set()


class Uploader:
    """A background uploader with one worker thread; see the module docstring for the rules.

    ``storage`` is the real store (tests inject slow, failing or frozen fakes).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        retry: RetryPolicy | None = None,
        stall_seconds: float = 30.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.retry = retry or RetryPolicy()
        self.stall_seconds = stall_seconds
        self._rand = rand
        self._cond = threading.Condition()
        self._queued: dict[str, _Job] = {}  # background uploads, one per key, oldest first
        self._urgent: deque[_Job] = deque()  # blocking calls, served first
        self._current: _Job | None = None
        self._superseded: set[str] = set()  # keys a blocking caller is about to write itself
        self._thread: threading.Thread | None = None
        self._stopped = False
        # Health: consecutive failed requests, and when the request in flight last moved bytes.
        self._failures = 0
        self._failing_since: datetime | None = None
        self._last_error: str | None = None
        self._request: str | None = None
        self._alive_at: float | None = None
        #: Counters of finished background uploads by outcome (logs, tests).
        self.outcomes: dict[str, int] = {}

    # --- the training side ------------------------------------------------------------------

    def submit(self, key: str, label: str, action: Action, *, cleanup: Path | None = None) -> None:
        """Queue ``action`` (run with a retrying :class:`Storage`) and return at once.

        A queued upload of the same ``key`` is replaced (and its ``cleanup`` folder deleted);
        ``cleanup`` is deleted when this upload is done, replaced or abandoned.
        """
        job = _Job(key, label, action, cleanup=cleanup)
        with self._cond:
            if self._stopped:
                job.done("abandoned")
                raise RuntimeError("the uploader is closed")
            self._replace_queued(key, by=label)
            self._queued[key] = job
            if self._current is not None and self._current.key == key:
                self._current.wake.set()  # if it is failing, it gives way to this newer one
            self._start()
            self._cond.notify_all()

    def discard(self, key: str, *, by: str | None = None) -> bool:
        """Drop the queued (not started) upload of ``key``, if any, and delete its folder;
        ``by`` names what replaces it, for the log."""
        with self._cond:
            return self._replace_queued(key, by=by)

    def wait(self, key: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no upload of ``key`` is queued or in progress (the
        run's last words must include it: the best model before the final report); whether none is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(job.key == key for job in self._pending()) and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not any(job.key == key for job in self._pending())

    def blocking(self, timeout: float, *, supersede: Iterable[str] = ()) -> Storage:
        """A :class:`Storage` whose calls run on the worker, after the upload in progress, with
        retries, and raise :class:`StorageError` once ``timeout`` seconds (from now, for all
        calls together) have passed.

        Queued uploads of the ``supersede`` keys are dropped (the caller writes a newer state
        itself), and an upload of theirs in progress is waited for — or, if it is failing,
        abandoned — before this returns, so the caller sees what it left.
        """
        deadline = time.monotonic() + timeout
        keys = set(supersede)
        with self._cond:
            for key in keys:
                self._replace_queued(key, by="a blocking upload")
            self._superseded |= keys
            current = self._current
            if current is not None:
                current.wake.set()
        try:
            superseded = current if current is not None and current.key in keys else None
            if superseded is not None and not superseded.finished.wait(max(0.0, deadline - time.monotonic())):
                with self._cond:
                    superseded.abandon = "deadline passed"
                    superseded.wake.set()
        finally:
            with self._cond:
                self._superseded -= keys
        return _BlockingStorage(self, deadline, timeout)

    def close(self, timeout: float) -> bool:
        """Finish what is queued within ``timeout`` seconds, then stop; what is left then is
        abandoned (a checkpoint without its manifest). Returns whether everything finished."""
        deadline = time.monotonic() + timeout
        with self._cond:
            for job in self._pending():
                job.deadline = deadline if job.deadline is None else min(job.deadline, deadline)
                job.wake.set()
            while self._pending() and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            left = self._pending()
            for job in left:
                job.abandon = "the runner is exiting"
                job.wake.set()
            for key in list(self._queued):
                self._replace_queued(key, by=None)
            self._urgent.clear()
            self._stopped = True
            self._cond.notify_all()
        if left:
            log.warning("exiting with %d upload(s) unfinished: %s", len(left), ", ".join(j.label for j in left))
        return not left

    def health(self) -> StorageHealth:
        """The storage health now (thread-safe snapshot)."""
        with self._cond:
            pending = len(self._pending())
            if self._failures:
                return StorageHealth(
                    ok=False,
                    failing_since=self._failing_since,
                    last_error=self._last_error,
                    failures=self._failures,
                    pending=pending,
                )
            alive_at = self._alive_at
            if alive_at is not None:
                silent = time.monotonic() - alive_at
                if silent > self.stall_seconds:
                    return StorageHealth(
                        ok=False,
                        failing_since=datetime.now(UTC) - timedelta(seconds=silent),
                        last_error=f"no answer for {silent:.0f}s to the {self._request}",
                        pending=pending,
                    )
            return StorageHealth(ok=True, pending=pending)

    @property
    def pending(self) -> int:
        """Uploads queued or in progress."""
        with self._cond:
            return len(self._pending())

    # --- bookkeeping (callers hold _cond) -------------------------------------------------------

    def _pending(self) -> list[_Job]:
        jobs = [*self._urgent, *self._queued.values()]
        return [self._current, *jobs] if self._current is not None else jobs

    def _replace_queued(self, key: str, by: str | None) -> bool:
        old = self._queued.pop(key, None)
        if old is None:
            return False
        if by is not None:
            log.info("%s replaced by %s before its upload started", old.label, by)
        self._count("replaced")
        old.done("replaced")
        return True

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            # A daemon: a request hanging past every deadline must not keep the pod alive.
            self._thread = threading.Thread(target=self._work, name="kubegym-uploader", daemon=True)
            self._thread.start()

    # --- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._urgent or self._queued or self._stopped):
                    self._cond.wait()
                if self._urgent:
                    job = self._urgent.popleft()
                elif self._queued and not self._stopped:
                    job = self._queued.pop(next(iter(self._queued)))
                else:
                    return
                self._current = job
            try:
                self._execute(job)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _execute(self, job: _Job) -> None:
        try:
            job.result = job.action(_RetryingStorage(self, job))
        except _YieldedError:
            with self._cond:
                if job.key is not None and job.key not in self._queued and not self._stopped:
                    log.info("%s steps aside for a blocking upload", job.label)
                    self._queued = {job.key: job, **self._queued}
                    return
            self._finish(job, "abandoned", None)
        except _AbandonedError as e:
            log.warning("%s abandoned: %s", job.label, e)
            # A blocking caller must not take an abandoned call for a successful one.
            self._finish(job, "abandoned", StorageError(f"S3 {job.label} abandoned: {e}") if job.urgent else None)
        except (StorageError, UserError) as e:
            log.warning("%s failed: %s", job.label, e)
            self._finish(job, "failed", e)
        except Exception as e:  # a bug in one upload must not end the worker
            log.exception("%s failed", job.label)
            self._finish(job, "failed", e)
        else:
            self._finish(job, "uploaded", None)

    def _finish(self, job: _Job, outcome: str, error: BaseException | None) -> None:
        with self._cond:
            if not job.urgent:
                self._count(outcome)
        job.done(outcome, error)

    def _detail(self) -> str:
        """Why requests are not getting through, for an error message (caller holds _cond)."""
        if self._last_error:
            return f"last error: {self._last_error}"
        if self._alive_at is not None:
            return f"no answer to the {self._request}"
        return "waiting for the upload in progress"

    def _alive(self, _bytes: int = 0) -> None:
        """Bytes moved (s3transfer's progress callback): the request in flight is alive."""
        with self._cond:
            if self._alive_at is not None:
                self._alive_at = time.monotonic()

    def _call(self, job: _Job, what: str, request: Callable[[], T]) -> T:
        """Run one storage request for ``job``, retrying storage failures with back-off."""
        while True:
            with self._cond:
                if job.abandon:
                    raise _AbandonedError(job.abandon)
                self._request = what
                self._alive_at = time.monotonic()
            try:
                result = request()
            except (StorageError, UserError) as e:
                with self._cond:
                    self._alive_at = None
                    self._failures += 1
                    self._failing_since = self._failing_since or datetime.now(UTC)
                    self._last_error = _short(e)
                if isinstance(e, UserError):
                    raise
                job.failures += 1
                self._back_off(job, what, e)
            else:
                with self._cond:
                    self._alive_at = None
                    self._failures, self._failing_since, self._last_error = 0, None, None
                job.failures = 0
                return result

    def _back_off(self, job: _Job, what: str, error: StorageError) -> None:
        """Wait before the next attempt, unless the job should give up or give way first."""
        delay = self.retry.delay(job.failures, self._rand())
        until = time.monotonic() + delay
        log.warning("S3 %s failed (attempt %d), retrying in %.1fs: %s", what, job.failures, delay, _short(error))
        while True:
            with self._cond:
                if job.abandon:
                    raise _AbandonedError(job.abandon)
                if not job.urgent and job.key is not None:
                    if job.key in self._queued:
                        raise _AbandonedError("a newer upload of the same kind is waiting")
                    if job.key in self._superseded:
                        raise _AbandonedError("superseded by a blocking upload")
                    if self._urgent:
                        raise _YieldedError
                deadline = job.deadline
            if deadline is not None and until > deadline:
                raise StorageError(f"{_short(error)} (attempt {job.failures}; no time left to retry)") from error
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            job.wake.wait(remaining)
            job.wake.clear()

    def _run_blocking(self, label: str, action: Callable[[Storage], T], deadline: float, timeout: float) -> T:
        job = _Job(None, label, action, urgent=True, deadline=deadline)
        with self._cond:
            if self._stopped:
                raise StorageError(f"S3 {label}: the uploader is closed")
            if time.monotonic() >= deadline:
                raise StorageError(f"S3 {label} did not start within {timeout:.0f}s ({self._detail()})")
            self._urgent.append(job)
            if self._current is not None:
                self._current.wake.set()  # a failing background upload steps aside
            self._start()
            self._cond.notify_all()
        if not job.finished.wait(max(0.0, deadline - time.monotonic())):
            with self._cond:
                job.abandon = "deadline passed"
                job.wake.set()
                if job in self._urgent:
                    self._urgent.remove(job)
                detail = self._detail()
            raise StorageError(f"S3 {label} did not succeed within {timeout:.0f}s ({detail})")
        if job.error is not None:
            raise job.error
        return cast(T, job.result)  # what ``action`` returned


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


class _RetryingStorage(Storage):
    """What an upload's action sees: every request retried (on the worker thread)."""

    def __init__(self, uploader: Uploader, job: _Job) -> None:
        super().__init__(uploader.storage.client)
        self._uploader = uploader
        self._inner = uploader.storage
        self._job = job

    def _call(self, what: str, request: Callable[[], T]) -> T:
        return self._uploader._call(self._job, what, request)

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        self._call(f"access to bucket s3://{bucket}", lambda: self._inner.check_bucket(bucket, prefix))

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        def alive(n: int) -> None:
            self._uploader._alive(n)
            if progress is not None:
                progress(n)

        self._call(f"upload to {uri}", lambda: self._inner.upload_file(path, uri, progress=alive))

    def download_file(self, uri: S3Uri, path: Path) -> None:
        self._call(f"download of {uri}", lambda: self._inner.download_file(uri, path))

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self._call(f"write of {uri}", lambda: self._inner.put_bytes(uri, data, content_type))

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self._call(f"read of {uri}", lambda: self._inner.get_bytes(uri))

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return self._call(f"listing of {prefix}", lambda: self._inner.list_objects(prefix))

    def delete(self, uris: list[S3Uri]) -> None:
        self._call(f"delete of {len(uris)} object(s)", lambda: self._inner.delete(uris))


class _BlockingStorage(Storage):
    """What :meth:`Uploader.blocking` returns: each call runs on the worker and is waited for."""

    def __init__(self, uploader: Uploader, deadline: float, timeout: float) -> None:
        super().__init__(uploader.storage.client)
        self._uploader = uploader
        self._deadline = deadline
        self._timeout = timeout

    def _run(self, label: str, action: Callable[[Storage], T]) -> T:
        return self._uploader._run_blocking(label, action, self._deadline, self._timeout)

    def check_bucket(self, bucket: str, prefix: str = "") -> None:
        self._run(f"access to bucket s3://{bucket}", lambda s: s.check_bucket(bucket, prefix))

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        self._run(f"upload to {uri}", lambda s: s.upload_file(path, uri, progress=progress))

    def download_file(self, uri: S3Uri, path: Path) -> None:
        self._run(f"download of {uri}", lambda s: s.download_file(uri, path))

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self._run(f"write of {uri}", lambda s: s.put_bytes(uri, data, content_type))

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self._run(f"read of {uri}", lambda s: s.get_bytes(uri))

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return self._run(f"listing of {prefix}", lambda s: s.list_objects(prefix))

    def delete(self, uris: list[S3Uri]) -> None:
        self._run(f"delete of {len(uris)} object(s)", lambda s: s.delete(uris))


# --- copies of a growing file ------------------------------------------------------------------


def interval_from_env(name: str, default: float, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds from the environment variable ``name`` when it is a positive number, else ``default``."""
    try:
        value = float(environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class Periodic:
    """Something that grows while the run trains (its log, its TensorBoard event files), put in S3
    every ``interval`` seconds in the background and once more, blocking, at the end.

    ``action`` writes the current state with the :class:`Storage` it is given; it runs on the
    ``uploader``'s worker as upload kind ``key`` (so at most one copy is queued behind the one in
    progress, a newer replacing it), and :meth:`last` runs it through the uploader's blocking call.
    """

    def __init__(self, uploader: Uploader, key: str, label: str, action: Action, interval: float) -> None:
        self.uploader = uploader
        self.key = key
        self.label = label
        self.action = action
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background copies (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"kubegym-{self.key}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.now()
            except RuntimeError:  # the uploader closed: the last copy is last()'s
                return

    def now(self) -> None:
        """Queue a background copy now (raises ``RuntimeError`` once the uploader is closed)."""
        self.uploader.submit(self.key, self.label, self.action)

    def stop(self) -> None:
        """Stop the background copies (a copy already queued still runs)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def last(self, timeout: float) -> None:
        """Stop, then put the current state within ``timeout`` seconds, after any copy in progress;
        raises :class:`~kubegym_runner.errors.StorageError` when it did not reach storage."""
        self.stop()
        self.action(self.uploader.blocking(timeout, supersede=[self.key]))
