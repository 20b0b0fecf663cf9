"""Storage never stalls training, against a real MinIO: frozen with SIGSTOP mid-run, the runner
keeps training (checkpoints are serialised locally and replace each other in the upload queue)
and, once MinIO is back, finishes with complete checkpoints and its final model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.integration.runner.conftest import S3Server
from tests.integration.runner.test_train_s3 import RUN_TIMEOUT, _complete_checkpoints, _config, _env, _keys

#: Longest freeze: below botocore's read timeout times attempts, so no request fails meanwhile.
MAX_FREEZE_SECONDS = 50.0
#: One checkpoint per rollout (2 envs x 256 steps).
EVERY = 512
#: "checkpoint 1024 replaced by checkpoint 2048 before its upload started" (kubegym_runner.uploads).
REPLACED = re.compile(r"checkpoint \d+ replaced by checkpoint (\d+) before its upload started")


def _wait_for_first_checkpoint(s3: S3Server, run: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while not any(k.endswith("manifest.json") for k in _keys(s3, f"{run}/checkpoints/")):
        assert process.poll() is None, f"runner exited early ({process.returncode})"
        assert time.monotonic() < deadline, "no checkpoint within 180s"
        time.sleep(0.2)


def test_training_goes_on_while_minio_is_frozen(s3_server: S3Server, tmp_path: Path) -> None:
    s3, run = s3_server, f"runs/it/{uuid.uuid4().hex[:8]}"
    assert s3.pid is not None
    total = 32 * EVERY
    config = _config(s3, run, total=total, evaluation=None, checkpoint={"everySteps": EVERY, "keepLast": 2})
    log_path = tmp_path / "runner.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubegym_runner", "train"],
            env=_env(s3, config, tmp_path / "termination-log"),
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=tmp_path,
        )
    frozen = False
    try:
        _wait_for_first_checkpoint(s3, run, process)
        os.kill(s3.pid, signal.SIGSTOP)
        frozen = True
        before = len(REPLACED.findall(log_path.read_text()))
        # While no upload can finish, training goes on: newer checkpoints keep replacing the
        # queued one. Two replacements mean four checkpoint intervals trained while frozen
        # (one in progress, one queued, two replacing it); the time it takes is the machine's.
        deadline = time.monotonic() + MAX_FREEZE_SECONDS
        during: list[str] = []
        while len(during) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            during = REPLACED.findall(log_path.read_text())[before:]
        assert process.poll() is None, "the runner ended while storage was frozen"
        os.kill(s3.pid, signal.SIGCONT)
        frozen = False
        assert len(during) >= 2, log_path.read_text()[-3000:]
        assert all(int(step) > EVERY for step in during)
        process.wait(timeout=RUN_TIMEOUT)
    finally:
        if frozen:
            os.kill(s3.pid, signal.SIGCONT)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log_path.read_text()[-4000:]
    checkpoints = _complete_checkpoints(s3, run)
    assert max(checkpoints) == total and len(checkpoints) <= 2
    assert f"{run}/final/manifest.json" in _keys(s3, f"{run}/final/")
    # Every replaced checkpoint left nothing behind; at most the two kept ones remain.
    folders = {k.split("/")[-2] for k in _keys(s3, f"{run}/checkpoints/")}
    assert folders == {f"{step:012d}" for step in checkpoints}
