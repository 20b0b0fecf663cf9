"""The run's learning curves as TensorBoard event files, kept in the run's folder in S3.

Why: every stable-baselines3 tutorial ends in TensorBoard, and a curve that lives in the pod is
gone with it. So SB3's own logger writes TensorBoard event files (``rollout/``, ``train/``,
``time/``, and the runner's periodic evaluations under ``eval/``) into a local folder, and that
folder is put at ``<run folder>/tensorboard/``:

- every :data:`UPLOAD_INTERVAL_SECONDS` (30 s; ``$KUBEGYM_TENSORBOARD_UPLOAD_INTERVAL_SECONDS``),
  through the background :class:`~kubegym_runner.uploads.Uploader` as kind :data:`CURVE_UPLOADS`,
  so a slow or frozen store never stalls training; only files that grew since their last upload
  are put again (event files only grow);
- once more at the end of training — success or SIGTERM — with the uploader's blocking call,
  bounded by :data:`FINAL_UPLOAD_SECONDS`.

Resumed runs continue the same curves: SB3 logs at ``model.num_timesteps``, which a resumed model
carries on from its checkpoint, and each attempt writes its own event file (the writer names it by
time, host and pid) into the same folder, so no attempt overwrites another's. Points an attempt
logged past the checkpoint it was resumed from are logged again by the next; TensorBoard drops
the older ones when it sees a step go back (``--purge_orphaned_data``, its default), so the curve
it draws has each step once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kubegym_runner.errors import RunnerError
from kubegym_runner.storage import S3Uri, Storage
from kubegym_runner.uploads import Periodic, Uploader, interval_from_env

if TYPE_CHECKING:
    from stable_baselines3.common.logger import Logger

log = logging.getLogger(__name__)

#: The upload kind of the event files: at most one upload is queued behind the one in progress.
CURVE_UPLOADS = "tensorboard"
#: Folder of the event files under the run's folder.
TENSORBOARD_FOLDER = "tensorboard"
#: Seconds between two background uploads of the event files.
UPLOAD_INTERVAL_SECONDS = 30.0
#: Overrides :data:`UPLOAD_INTERVAL_SECONDS` (tests, short runs).
UPLOAD_INTERVAL_ENV = "KUBEGYM_TENSORBOARD_UPLOAD_INTERVAL_SECONDS"
#: Seconds the last upload gets at the end (the SIGTERM checkpoint and the log copy share the grace period).
FINAL_UPLOAD_SECONDS = 5.0


def grown_files(directory: Path, uploaded: dict[str, int]) -> list[tuple[str, int]]:
    """The files directly under ``directory`` (name, size) whose size differs from ``uploaded``'s."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        if path.is_file():
            size = path.stat().st_size
            if size and uploaded.get(path.name) != size:
                found.append((path.name, size))
    return found


class Curves:
    """SB3's logger writing TensorBoard event files into ``directory``, and their copies at ``uri``.

    ``uploader`` carries the background uploads and the last one; ``interval`` is the seconds
    between background uploads.
    """

    def __init__(self, uploader: Uploader, uri: S3Uri, directory: Path, interval: float) -> None:
        self.uri = uri
        self.directory = directory
        self._copies = Periodic(uploader, CURVE_UPLOADS, f"TensorBoard curves {uri}", self._put, interval)
        self._logger: Logger | None = None
        self._uploaded: dict[str, int] = {}
        self._closed = False

    @classmethod
    def for_run(cls, uploader: Uploader, run_root: S3Uri, workdir: Path) -> Curves:
        """The curves of the run whose folder is ``run_root``, written under ``workdir``."""
        interval = interval_from_env(UPLOAD_INTERVAL_ENV, UPLOAD_INTERVAL_SECONDS)
        return cls(uploader, run_root.join(TENSORBOARD_FOLDER), workdir / TENSORBOARD_FOLDER, interval)

    def logger(self) -> Logger:
        """SB3's logger with TensorBoard output only (the runner logs its own progress lines), and
        the periodic uploads started; the same logger on a second call."""
        if self._logger is None:
            from stable_baselines3.common.logger import configure

            self.directory.mkdir(parents=True, exist_ok=True)
            self._logger = configure(str(self.directory), ["tensorboard"])
            log.info("TensorBoard curves kept in %s (every %.0fs and at the end)", self.uri, self._copies.interval)
            self._copies.start()
        return self._logger

    def _put(self, storage: Storage) -> None:
        # Runs on the uploader's single worker: no two of these at once.
        for name, size in grown_files(self.directory, self._uploaded):
            storage.upload_file(self.directory / name, self.uri.join(name))
            self._uploaded[name] = size

    def close(self, timeout: float = FINAL_UPLOAD_SECONDS) -> bool:
        """Flush and close the event files and put what grew, waiting at most ``timeout`` seconds;
        returns whether it reached storage. Best effort: a failure is a warning, never the run's
        outcome. Nothing happens without :meth:`logger`, or on a second call."""
        if self._closed or self._logger is None:
            return False
        self._closed = True
        self._copies.stop()
        self._logger.close()
        try:
            self._copies.last(timeout)
        except RunnerError as e:
            log.warning("the last TensorBoard curves did not reach %s: %s", self.uri, e)
            return False
        return True
