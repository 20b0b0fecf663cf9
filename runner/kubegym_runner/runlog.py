"""The runner's own log, kept in the run's S3 folder so that it outlives the pod.

Why: a pod's log is gone with the pod (a finished Job's TTL, a preempted node, a deleted run
attempt), and that is when a researcher wants to read it. So every record the runner logs to
stderr (the same format, the same credential redaction: :class:`~kubegym_runner.logs.RedactingFilter`)
also goes to a local file, and that file is put at ``logs/<attempt>.log`` under the run's folder:

- every :data:`LOG_UPLOAD_INTERVAL_SECONDS` (30 s; ``$KUBEGYM_LOG_UPLOAD_INTERVAL_SECONDS``),
  through the background :class:`~kubegym_runner.uploads.Uploader` as kind :data:`LOG_UPLOADS`,
  so a slow or frozen store never stalls training (a newer copy replaces a queued one), from
  the moment the run's bucket answered (records before it, the plan's, are in the first copy; a
  user error found before storage is touched leaves no copy: storage is never touched for it);
- once more at exit — success, failure or SIGTERM — with the uploader's blocking call, bounded by
  :data:`FINAL_LOG_UPLOAD_SECONDS`, after the SIGTERM checkpoint (which matters more).

``<attempt>`` is the attempt's start time (UTC, ``YYYYmmddTHHMMSSZ``) and its pod's name, so the
attempts of a run sort in the order they ran (``kubectl gym logs`` reads them back in that order).
A log longer than :data:`MAX_LOG_BYTES` keeps its newest part, after a line saying so.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from kubegym_runner.errors import RunnerError, TerminatedError
from kubegym_runner.logs import LOG_FORMAT, RedactingFilter, redact
from kubegym_runner.storage import S3Uri, Storage
from kubegym_runner.uploads import Periodic, Uploader, interval_from_env

log = logging.getLogger(__name__)

#: The upload kind of the log copies: at most one is queued behind the upload in progress.
LOG_UPLOADS = "logs"
#: Seconds between two background copies of the log.
LOG_UPLOAD_INTERVAL_SECONDS = 30.0
#: Overrides :data:`LOG_UPLOAD_INTERVAL_SECONDS` (tests, short runs).
LOG_UPLOAD_INTERVAL_ENV = "KUBEGYM_LOG_UPLOAD_INTERVAL_SECONDS"
#: Seconds the last copy gets at exit (after the SIGTERM checkpoint's 40 s, within a 60 s grace period).
FINAL_LOG_UPLOAD_SECONDS = 10.0
#: The newest bytes of a longer log are kept.
MAX_LOG_BYTES = 8 * 1024 * 1024
#: Folder of the log copies under the run's folder.
LOGS_FOLDER = "logs"
#: The pod's name, from the downward API (the operator's Job sets it).
POD_NAME_ENV = "KUBEGYM_POD_NAME"
CONTENT_TYPE = "text/plain; charset=utf-8"


def attempt_name(pod: str | None, started: datetime) -> str:
    """``<YYYYmmddTHHMMSSZ>-<pod>``: lexical order is start order; ``local`` outside a pod."""
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{pod or 'local'}"


def log_uri(run_root: S3Uri, attempt: str) -> S3Uri:
    """Where an attempt's log goes: ``<run folder>/logs/<attempt>.log``."""
    return run_root.join(LOGS_FOLDER).join(f"{attempt}.log")


def stored_copy(data: bytes, limit: int = MAX_LOG_BYTES) -> bytes:
    """What is uploaded: the whole log, or its newest ``limit`` bytes (from a line start) after a note."""
    if len(data) <= limit:
        return data
    tail = data[-limit:]
    cut = tail.find(b"\n")
    tail = tail[cut + 1 :] if cut >= 0 else tail
    return f"[kubegym: the first {len(data) - len(tail)} bytes of this log were dropped]\n".encode() + tail


def exit_line(error: BaseException | None) -> str | None:
    """The line ``kubegym-runner``'s CLI prints on stderr for ``error`` as the runner exits with it
    (after the last copy is taken, so the copy ends with it instead); None when there is none."""
    if error is None:
        return None
    if isinstance(error, TerminatedError):
        what, message = "stopped", str(error)
    elif isinstance(error, RunnerError):
        what, message = "error", str(error)
    elif isinstance(error, Exception):
        what, message = "error", f"unexpected error: {type(error).__name__}: {error}"
    else:
        return None
    return f"kubegym-runner: {what}: {redact(' '.join(message.split()))}"


class RunLog:
    """Copies the runner's log records to ``path`` and puts that file at ``uri`` periodically and at exit.

    ``uploader`` carries the background copies and the last one; ``interval`` is the seconds
    between background copies.
    """

    def __init__(self, uploader: Uploader, uri: S3Uri, path: Path, interval: float) -> None:
        self.uri = uri
        self.path = path
        self._copies = Periodic(uploader, LOG_UPLOADS, f"log copy {uri}", self._put, interval)
        self._handler: logging.FileHandler | None = None
        self._closed = False
        self._started = False
        self._last_line: str | None = None

    @classmethod
    def for_run(cls, uploader: Uploader, run_root: S3Uri, workdir: Path) -> RunLog:
        """This attempt's log (named by ``$KUBEGYM_POD_NAME`` and the time now), kept in ``workdir``."""
        attempt = attempt_name(os.environ.get(POD_NAME_ENV), datetime.now(UTC))
        interval = interval_from_env(LOG_UPLOAD_INTERVAL_ENV, LOG_UPLOAD_INTERVAL_SECONDS)
        return cls(uploader, log_uri(run_root, attempt), workdir / "runner.log", interval)

    def capture(self) -> None:
        """Write every record to the file from now on (nothing is uploaded before :meth:`start`)."""
        if self._handler is not None or self._closed:
            return
        handler = logging.FileHandler(self.path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactingFilter())
        logging.getLogger().addHandler(handler)
        self._handler = handler

    def start(self) -> None:
        """Start the periodic copies (storage has answered); captures records first if not yet."""
        self.capture()
        self._started = True
        log.info("log kept in %s (every %.0fs and at exit)", self.uri, self._copies.interval)
        self._copies.start()

    def _read(self) -> bytes:
        if self._handler is not None:
            self._handler.flush()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        if self._last_line:
            data += self._last_line.encode() + b"\n"
        return stored_copy(data)

    def _put(self, storage: Storage) -> None:
        storage.put_bytes(self.uri, self._read(), CONTENT_TYPE)

    def upload_now(self) -> None:
        """Queue a background copy now (at most one is queued; a newer one replaces it)."""
        self._copies.now()

    def close(self, last_line: str | None = None, timeout: float = FINAL_LOG_UPLOAD_SECONDS) -> bool:
        """Stop the periodic copies and put the last copy, ending with ``last_line`` (what the CLI
        prints as the runner exits: :func:`exit_line`), waiting at most ``timeout`` seconds; returns
        whether it reached storage. Without :meth:`start` (storage never answered, or a user error came
        first: those never touch storage) nothing is uploaded. The file handler is removed afterwards;
        a second call does nothing."""
        if self._closed or self._handler is None:
            return False
        self._closed = True
        self._last_line = last_line
        self._copies.stop()
        ok = self._started
        if self._started:
            try:
                self._copies.last(timeout)
            except RunnerError as e:  # the log copy is best effort: it must never change the run's outcome
                log.warning("the last copy of the log did not reach %s: %s", self.uri, e)
                ok = False
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        return ok
