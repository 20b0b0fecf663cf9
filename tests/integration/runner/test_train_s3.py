"""``kubegym-runner train`` for real: tiny CartPole PPO runs against a real MinIO.

Each run is a subprocess started the way the Job starts the pod: config in
``KUBEGYM_CONFIG``, S3 credentials in ``AWS_*`` variables, a termination-log file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO

from kubegym_api.exitcodes import EXIT_USER_ERROR
from tests.integration.runner.conftest import S3Server

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT = 300


@dataclass(frozen=True)
class RunnerResult:
    returncode: int
    stderr: str
    termination_message: str


def _config(s3: S3Server, run_prefix: str, total: int, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1", "nEnvs": 2},
        # 512 timesteps per rollout; small epochs keep each run to a few seconds on one core.
        "hyperparameters": {"n_steps": 256, "batch_size": 128, "n_epochs": 2, "learning_rate": "lin_1e-3"},
        "totalTimesteps": total,
        "seed": 7,
        "checkpoint": {"everySteps": 1024, "keepLast": 2},
        "evaluation": {"everySteps": 1024, "episodes": 2},
        "storage": {"bucket": s3.bucket, "endpoint": s3.endpoint},
        "runPrefix": run_prefix,
    }
    config.update(extra)
    return config


def _env(s3: S3Server, config: dict[str, Any], termination_log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBEGYM_", "KUBECONFIG"))}
    env.update(s3.env())
    env.update(
        {
            "KUBEGYM_CONFIG": json.dumps(config),
            "KUBEGYM_TERMINATION_LOG": str(termination_log),
            "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("api", "runner", "operator")),
            "OMP_NUM_THREADS": "1",
            "AWS_MAX_ATTEMPTS": "2",
        }
    )
    return env


def _start(s3: S3Server, config: dict[str, Any], tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    termination_log = tmp_path / f"termination-{uuid.uuid4().hex[:6]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "kubegym_runner", "train"],
        env=_env(s3, config, termination_log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    return process, termination_log


def _finish(process: subprocess.Popen[str], termination_log: Path, timeout: float = RUN_TIMEOUT) -> RunnerResult:
    _, stderr = process.communicate(timeout=timeout)
    message = termination_log.read_text() if termination_log.exists() else ""
    return RunnerResult(process.returncode, stderr, message)


def _run(s3: S3Server, config: dict[str, Any], tmp_path: Path) -> RunnerResult:
    return _finish(*_start(s3, config, tmp_path))


def _keys(s3: S3Server, prefix: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            keys[item["Key"]] = int(item["Size"])
    return keys


def _get(s3: S3Server, key: str) -> bytes:
    data: bytes = s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    return data


def _complete_checkpoints(s3: S3Server, run: str) -> dict[int, dict[str, Any]]:
    """step -> manifest, for folders whose manifest exists and whose objects match it byte for byte."""
    keys = _keys(s3, f"{run}/checkpoints/")
    found: dict[int, dict[str, Any]] = {}
    for key in keys:
        if not key.endswith("/manifest.json"):
            continue
        folder = key.rsplit("/", 1)[0]
        manifest = json.loads(_get(s3, key))
        for name, digest in manifest["objects"].items():
            data = _get(s3, f"{folder}/{name}")
            assert len(data) == digest["size"]
            assert hashlib.sha256(data).hexdigest() == digest["sha256"]
        assert folder.endswith(f"/{manifest['step']:012d}")
        found[manifest["step"]] = manifest
    return found


def _load_final(s3: S3Server, run: str, tmp_path: Path) -> PPO:
    path = tmp_path / f"final-{uuid.uuid4().hex[:6]}.zip"
    path.write_bytes(_get(s3, f"{run}/final/model.zip"))
    return PPO.load(path, device="cpu")


def _fail_message(result: RunnerResult) -> str:
    return f"runner exited {result.returncode}\n{result.stderr[-4000:]}"


def test_checkpoints_final_model_and_resume(s3_server: S3Server, tmp_path: Path) -> None:
    s3, run = s3_server, f"runs/it/{uuid.uuid4().hex[:8]}"

    started = time.monotonic()
    first = _run(s3, _config(s3, run, total=3072), tmp_path)
    assert first.returncode == 0, _fail_message(first)
    assert "trained 3072 timesteps" in first.termination_message
    assert f"s3://{s3.bucket}/{run}/final" in first.termination_message
    print(f"first run: {time.monotonic() - started:.1f}s")

    # Checkpoints at 1024, 2048, 3072 were written; keep-last 2 pruned the first.
    checkpoints = _complete_checkpoints(s3, run)
    assert sorted(checkpoints) == [2048, 3072]
    assert not any("/000000001024/" in key for key in _keys(s3, f"{run}/checkpoints/"))
    manifest = checkpoints[3072]
    assert manifest["algorithm"] == "PPO" and manifest["envId"] == "CartPole-v1"
    assert set(manifest["objects"]) == {"model.zip"}
    assert manifest["wallTimeSeconds"] > 0 and manifest["episodes"] > 0 and manifest["createdAt"]

    # The final model loads with stable-baselines3 and acts.
    model = _load_final(s3, run, tmp_path)
    assert model.num_timesteps == 3072
    action, _ = model.predict(np.zeros(4, dtype=np.float32), deterministic=True)
    assert int(action) in (0, 1)
    final_manifest = json.loads(_get(s3, f"{run}/final/manifest.json"))
    assert final_manifest["step"] == 3072

    final_eval = json.loads(_get(s3, f"{run}/eval/final.json"))
    # The final evaluation uses the spec's evaluation settings (2 episodes here).
    assert final_eval["timesteps"] == 3072 and final_eval["episodes"] == 2
    assert len(final_eval["episodeRewards"]) == 2 and final_eval["deterministic"] is True
    history = json.loads(_get(s3, f"{run}/eval/evaluations.json"))
    assert [e["timesteps"] for e in history] == [1024, 2048]

    # The same config again (a restarted pod): resumes at the newest checkpoint, nothing left to train.
    again = _run(s3, _config(s3, run, total=3072), tmp_path)
    assert again.returncode == 0, _fail_message(again)
    assert f"resuming from s3://{s3.bucket}/{run}/checkpoints/000000003072 (timestep 3072)" in again.stderr
    assert "nothing to train" in again.stderr
    assert sorted(_complete_checkpoints(s3, run)) == [2048, 3072]

    # A longer run of the same run: timesteps continue from 3072 to 5120.
    longer = _run(s3, _config(s3, run, total=5120), tmp_path)
    assert longer.returncode == 0, _fail_message(longer)
    assert "resuming from" in longer.stderr and "(timestep 3072)" in longer.stderr
    assert "training 2048 timesteps (from 3072 to 5120)" in longer.stderr
    checkpoints = _complete_checkpoints(s3, run)
    assert sorted(checkpoints) == [4096, 5120]
    assert checkpoints[5120]["wallTimeSeconds"] > manifest["wallTimeSeconds"]  # accumulated over pods
    assert checkpoints[5120]["episodes"] > manifest["episodes"]
    assert _load_final(s3, run, tmp_path).num_timesteps == 5120
    history = json.loads(_get(s3, f"{run}/eval/evaluations.json"))
    assert [e["timesteps"] for e in history] == [1024, 2048, 4096]


def _wait_for_checkpoint(s3: S3Server, run: str, process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"runner exited early ({process.returncode})"
        steps = [int(k.split("/")[-2]) for k in _keys(s3, f"{run}/checkpoints/") if k.endswith("manifest.json")]
        if steps:
            return max(steps)
        time.sleep(0.5)
    raise AssertionError(f"no checkpoint within {timeout}s")


def test_sigterm_saves_a_checkpoint_that_another_run_resumes_from(s3_server: S3Server, tmp_path: Path) -> None:
    s3, run = s3_server, f"runs/it/{uuid.uuid4().hex[:8]}"
    process, termination_log = _start(s3, _config(s3, run, total=1_000_000, evaluation=None), tmp_path)
    try:
        first_step = _wait_for_checkpoint(s3, run, process, timeout=180)
        time.sleep(1.0)  # train past the checkpoint
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        result = _finish(process, termination_log, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert result.returncode == 128 + signal.SIGTERM, _fail_message(result)
    assert time.monotonic() - signalled < 30  # graceful, not the kubelet's SIGKILL
    assert "terminated at timestep" in result.termination_message
    stopped_at = int(result.termination_message.split("terminated at timestep ")[1].split(";")[0])
    assert stopped_at > first_step
    checkpoints = _complete_checkpoints(s3, run)
    assert max(checkpoints) == stopped_at
    assert f"{run}/final/manifest.json" not in _keys(s3, f"{run}/final/")

    # Another run starts from that run's folder (resumeFrom): its newest complete checkpoint.
    other = f"runs/it/{uuid.uuid4().hex[:8]}"
    resumed = _run(
        s3,
        _config(s3, other, total=stopped_at + 512, evaluation=None, resumeFrom=f"s3://{s3.bucket}/{run}"),
        tmp_path,
    )
    assert resumed.returncode == 0, _fail_message(resumed)
    assert f"checkpoints/{stopped_at:012d} (timestep {stopped_at})" in resumed.stderr
    assert _load_final(s3, other, tmp_path).num_timesteps >= stopped_at + 512
    assert max(_complete_checkpoints(s3, other)) >= stopped_at + 512


def test_missing_resume_from_is_a_user_error(s3_server: S3Server, tmp_path: Path) -> None:
    s3 = s3_server
    missing = f"s3://{s3.bucket}/runs/it/does-not-exist/checkpoints/000000001024"
    result = _run(s3, _config(s3, f"runs/it/{uuid.uuid4().hex[:8]}", total=1024, resumeFrom=missing), tmp_path)
    assert result.returncode == EXIT_USER_ERROR, _fail_message(result)
    assert "resumeFrom" in result.termination_message and "no complete checkpoint" in result.termination_message

    config = _config(s3, "runs/it/x", total=1024)
    config["storage"]["bucket"] = "no-such-bucket-kubegym"
    result = _run(s3, config, tmp_path)
    assert result.returncode == EXIT_USER_ERROR, _fail_message(result)
    assert "no-such-bucket-kubegym" in result.termination_message
    assert s3.secret_key not in result.stderr + result.termination_message
