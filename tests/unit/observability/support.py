"""Shared by the observability unit tests: promtool, the docs page, and objects of every kind
with every status field the metrics read (lints need each family to have samples)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubegym_operator import metrics

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs" / "observability.md"


def promtool() -> str:
    """Debian's promtool (package prometheus, installed by ``make deps``); missing is a failure."""
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.fail("promtool is missing: run `make deps` (Debian package prometheus, hack/install-deps.sh)")
    return path


TRAINING_RUN: dict[str, Any] = {
    "metadata": {"name": "cartpole", "namespace": "research", "creationTimestamp": "2026-03-01T12:00:00Z"},
    "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 4096},
    "status": {
        "phase": "Succeeded",
        "reason": "Completed",
        "conditions": [{"type": "Running", "status": "False", "lastTransitionTime": "2026-03-01T12:05:00Z"}],
        "progress": {
            "timesteps": 4096,
            "totalTimesteps": 4096,
            "fraction": 1.0,
            "stepsPerSecond": 812.5,
            "meanEpisodeReward": 41.5,
            "lastEvaluation": {"timesteps": 4096, "meanReward": 87.0},
            "updateTime": "2026-03-01T12:04:59Z",
        },
        "checkpoints": {"latestStep": 4096, "count": 2},
        "best": {"uri": "s3://kubegym/r/best", "step": 2048, "meanReward": 150.0},
        "result": {"meanReward": 120.0},
        "cost": {"cpuSeconds": 300.0, "gpuSeconds": 0.0, "measuredCpuSeconds": 251.5, "pods": 1},
    },
}
#: Running, holding a GPU, and flagged Idle.
IDLE_RUN: dict[str, Any] = {
    "metadata": {"name": "stuck", "namespace": "research"},
    "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 4096},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Idle", "status": "True", "reason": "NoProgress"}],
        "progress": {"timesteps": 1024, "updateTime": "2026-03-01T12:04:59Z"},
        "cost": {
            "cpuSeconds": 60.0,
            "gpuSeconds": 60.0,
            "pods": 1,
            "attempts": [{"pod": "stuck-train-1", "cpu": 1.0, "gpu": 1, "startTime": "2026-03-01T12:04:00Z"}],
        },
    },
}
BENCHMARK: dict[str, Any] = {
    "metadata": {"name": "agents", "namespace": "research"},
    "spec": {},
    "status": {
        "phase": "Succeeded",
        "progress": {"entriesDone": 1, "entriesTotal": 1},
        "results": [
            {
                "model": "strong",
                "env": "CartPole-v1",
                "iqm": 500.0,
                "ciLower": 490.0,
                "ciUpper": 500.0,
                "latencyP50Ms": 1.5,
                "latencyP99Ms": 4.0,
            }
        ],
        "ranking": {"statistic": "IQM", "models": [{"rank": 1, "model": "strong", "score": 500.0}]},
        "cost": {"cpuSeconds": 12.0, "gpuSeconds": 0.0, "pods": 1},
    },
}
EXPERIMENT: dict[str, Any] = {
    "metadata": {"name": "study", "namespace": "research"},
    "status": {
        "phase": "Running",
        "counts": {"running": 2, "succeeded": 1},
        "best": {"score": 321.0},
        "cost": {"cpuSeconds": 900.0, "gpuSeconds": 0.0, "measuredCpuSeconds": 700.0, "pods": 3},
    },
}


@contextmanager
def populated() -> Iterator[None]:
    """The global :data:`metrics.OBJECTS` holds one object of each kind (cleared afterwards)."""
    more = {**TRAINING_RUN, "status": {**TRAINING_RUN["status"]}}
    more["status"]["progress"] = {**TRAINING_RUN["status"]["progress"], "timesteps": 2048}
    metrics.OBJECTS.observe("TrainingRun", None, more)
    metrics.OBJECTS.observe("TrainingRun", "MODIFIED", TRAINING_RUN)
    metrics.OBJECTS.observe("TrainingRun", None, IDLE_RUN)
    metrics.OBJECTS.observe("Benchmark", None, BENCHMARK)
    metrics.OBJECTS.observe("Experiment", None, EXPERIMENT)
    try:
        yield
    finally:
        metrics.OBJECTS.clear()
