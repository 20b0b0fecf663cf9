"""A TPE Experiment on the real cluster: configurations proposed one by one from the scores before
them, each trial kept in its runs, and an operator killed mid-study neither duplicating nor
losing a trial."""

from __future__ import annotations

import json
from typing import Any

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import CreatedOnce, experiment, runs_of, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "tpe"
TRIALS = 4
SEARCH: dict[str, Any] = {
    "optuna": {
        "sampler": "TPE",
        "trials": TRIALS,
        "startupTrials": 2,
        "seed": 3,
        "parameters": {
            "learning_rate": {"type": "Float", "low": 1e-4, "high": 3e-3, "log": True},
            "n_epochs": {"type": "Int", "low": 2, "high": 6},
            "gae_lambda": {"type": "Categorical", "choices": [0.9, 0.95]},
        },
    }
}


def test_tpe_study_survives_an_operator_kill(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    kubectl.apply(experiment(NAME, seeds={"count": 1}, parallelism=2, search=SEARCH))
    track = CreatedOnce(kube, ns, NAME)

    def seen() -> dict[str, tuple[str, str]]:
        track()
        assert track.changed == [], "a run was created again"
        return track.seen

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-3000:] + "\n" + operator.tail(20)

    # Two proposals at once (parallelism 2), nothing more until one is scored.
    wait_until(lambda: len(seen()) == 2, 90, "the first two trials", describe=describe)
    assert sorted(track.seen) == [f"{NAME}-c0-s0", f"{NAME}-c1-s0"]
    operator.kill_and_restart()
    wait_until(
        lambda: bool(seen()) and status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        600,
        "the study to finish",
        interval=2,
        describe=describe,
    )
    seen()
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    assert sorted(track.seen) == [f"{NAME}-c{k}-s0" for k in range(TRIALS)]  # no trial lost, none twice

    runs = {r["metadata"]["name"]: r for r in runs_of(kube, ns, NAME)}
    configs = {c["id"]: c for c in st["configurations"]}
    assert sorted(configs) == [f"c{k}" for k in range(TRIALS)]
    points = set()
    for cid, config in configs.items():
        run = runs[f"{NAME}-{cid}-s0"]
        trial = json.loads(run["metadata"]["annotations"]["kubegym.io/trial"])
        assert trial["number"] == int(cid[1:])
        hp = config["hyperparameters"]
        assert {k: run["spec"]["hyperparameters"][k] for k in hp} == hp
        assert 1e-4 <= hp["learning_rate"] <= 3e-3 and 2 <= hp["n_epochs"] <= 6 and hp["gae_lambda"] in (0.9, 0.95)
        assert config["score"] == run["status"]["result"]["meanReward"]  # one seed: its score is the run's
        points.add(json.dumps(hp, sort_keys=True))
    assert len(points) == TRIALS
    # The report ranks every trial and names the best, as for a grid.
    assert sorted(r["configuration"] for r in st["results"]) == sorted(configs)
    best = max(c["score"] for c in configs.values())
    assert abs(st["best"]["score"] - best) < 0.01 and st["best"]["configuration"] in configs
    assert st["report"]["reportJson"].endswith("report.json")
