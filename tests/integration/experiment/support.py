"""Helpers for Experiment tests: manifests, status reads, the runs and pods of an Experiment."""

from __future__ import annotations

import copy
from typing import Any

from kubegym_localcluster.kube import Kube

EXP = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/experiments"
TR = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns"


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    """A small CPU Experiment (2 learning rates x 2 seeds); keyword arguments override spec fields."""
    base: dict[str, Any] = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1"},
            "totalTimesteps": 4096,
            "device": "cpu",
            "hyperparameters": {"n_steps": 512, "batch_size": 64},
            "checkpoint": {"everySteps": 2048, "keepLast": 1},
        },
        "seeds": {"count": 2},
        "search": {"grid": {"learning_rate": [0.0003, 0.003]}},
        "parallelism": 2,
    }
    base.update(copy.deepcopy(spec))
    return {"apiVersion": "kubegym.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name}, "spec": base}


def status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(kube.get(f"{EXP.format(ns=ns)}/{name}").get("status") or {})


def runs_of(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    items = kube.get(TR.format(ns=ns), labelSelector=f"kubegym.io/experiment={name}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def run_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return list(kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector="kubegym.io/training-run")["items"])


class CreatedOnce:
    """An Experiment's TrainingRuns, each remembered by (uid, creationTimestamp) as first seen:
    calling it lists them and records every run that was created again (deleted and re-created:
    a duplicate or lost trial), which ``changed`` holds."""

    def __init__(self, kube: Kube, ns: str, name: str) -> None:
        self.kube, self.ns, self.name = kube, ns, name
        self.seen: dict[str, tuple[str, str]] = {}
        self.changed: list[str] = []

    def __call__(self) -> list[dict[str, Any]]:
        runs = runs_of(self.kube, self.ns, self.name)
        for run in runs:
            meta = run["metadata"]
            identity = (meta["uid"], meta["creationTimestamp"])
            if self.seen.setdefault(meta["name"], identity) != identity:
                self.changed.append(f"{meta['name']}: {self.seen[meta['name']]} -> {identity}")
        return runs
