"""A live Experiment follows its mutable fields and its owner references: raising parallelism
starts more runs, suspend stops them all (and the runs resume after), lowering parallelism
suspends the newest, and deleting the Experiment deletes its runs."""

from __future__ import annotations

import json
from typing import Any

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import EXP, experiment, run_pods, runs_of, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "knobs"


def suspended(kube: Kube, ns: str) -> dict[str, bool]:
    return {r["metadata"]["name"]: bool(r["spec"].get("suspend")) for r in runs_of(kube, ns, NAME)}


def live_pods(kube: Kube, ns: str) -> list[str]:
    return [
        p["metadata"]["labels"]["kubegym.io/training-run"]
        for p in run_pods(kube, ns)
        if p["status"].get("phase") in ("Pending", "Running")
    ]


def patch(kube: Kube, ns: str, spec: dict[str, Any]) -> None:
    kube.request(
        "PATCH",
        f"{EXP.format(ns=ns)}/{NAME}",
        body={"spec": spec},
        content_type="application/merge-patch+json",
    )


def test_parallelism_suspend_and_cascade(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    # Long runs: they never finish during the test.
    kubectl.apply(
        experiment(NAME, parallelism=1, template={**experiment(NAME)["spec"]["template"], "totalTimesteps": 5_000_000})
    )

    def describe() -> str:
        return (
            json.dumps(
                {"exp": status(kube, ns, NAME), "runs": suspended(kube, ns), "pods": live_pods(kube, ns)}, indent=1
            )[-3000:]
            + "\n"
            + operator.tail(15)
        )

    wait_until(lambda: list(suspended(kube, ns)) == ["knobs-c0-s0"], 60, "the first run", describe=describe)
    wait_until(lambda: live_pods(kube, ns) == ["knobs-c0-s0"], 120, "its pod", describe=describe)
    assert list(suspended(kube, ns)) == ["knobs-c0-s0"]  # parallelism 1: nothing else yet
    assert status(kube, ns, NAME)["counts"]["waiting"] == 3

    patch(kube, ns, {"parallelism": 2})
    wait_until(
        lambda: suspended(kube, ns) == {"knobs-c0-s0": False, "knobs-c1-s0": False},
        60,
        "a second run",
        describe=describe,
    )

    patch(kube, ns, {"suspend": True})
    wait_until(lambda: set(suspended(kube, ns).values()) == {True}, 60, "every run suspended", describe=describe)
    wait_until(lambda: status(kube, ns, NAME).get("phase") == "Suspended", 60, "phase Suspended", describe=describe)
    wait_until(lambda: live_pods(kube, ns) == [], 180, "the pods to stop", describe=describe)
    assert len(runs_of(kube, ns, NAME)) == 2  # nothing new while suspended

    patch(kube, ns, {"suspend": False, "parallelism": 1})
    wait_until(
        lambda: suspended(kube, ns) == {"knobs-c0-s0": False, "knobs-c1-s0": True},
        60,
        "only the first run resumed",
        describe=describe,
    )
    wait_until(lambda: status(kube, ns, NAME).get("phase") == "Running", 180, "phase Running", describe=describe)

    kubectl.run("delete", "experiment", NAME, "--wait=false")
    wait_until(lambda: runs_of(kube, ns, NAME) == [], 120, "the runs to be garbage-collected", describe=describe)
