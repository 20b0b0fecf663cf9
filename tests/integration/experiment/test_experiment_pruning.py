"""ASHA on a real cluster: a clearly bad configuration is stopped at the first rung, the good one
is promoted past every rung it reaches, and an operator killed mid-training loses and duplicates
nothing.

The runs train one after the other (``parallelism: 1``, the good configuration first, as in the
e2e median test), so the bad run meets the good run's finished curve at the rung: ASHA promotes
the first arrival at a rung whatever its value (nobody waits), so side by side the outcome would
depend on which pod reached 6,144 timesteps first. With ``reductionFactor: 3`` and two runs at
rung 0 the top one goes on. The bad learning rate (1e-7) leaves the policy random: stochastic
evaluation scores it ~20, while the good one (3e-3) is well above by 6,144 timesteps. The budget
leaves 18,432 timesteps between the bad run's judgement and its end, for the report interval, the
reconcile and the pod's stop.

The operator is SIGKILLed once the good run's promotion at rung 0 is in the status, while it
trains; the new process must read the promotion back (not re-judge it), and no TrainingRun may be
created twice or lost (each planned run has one uid and creation time from first sight to end).
"""

from __future__ import annotations

import json
from typing import Any

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import CreatedOnce, experiment, run_pods, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "pruner"
BUDGET = 24576
MIN_RESOURCE = 6144
GOOD, BAD = f"{NAME}-c0-s0", f"{NAME}-c1-s0"


def test_asha_stops_the_bad_configuration_and_survives_an_operator_kill(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    template = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1"},
        "totalTimesteps": BUDGET,
        "device": "cpu",
        "hyperparameters": {"n_steps": 1024, "batch_size": 64},
        "evaluation": {"everySteps": 2048, "episodes": 5, "deterministic": False},
        "checkpoint": {"everySteps": 4096, "keepLast": 1},
    }
    kubectl.apply(
        experiment(
            NAME,
            template=template,
            seeds={"count": 1},
            search={"grid": {"learning_rate": [0.003, 1e-7]}},
            parallelism=1,
            earlyStopping={"rule": "ASHA", "minResource": MIN_RESOURCE, "reductionFactor": 3},
        )
    )
    track = CreatedOnce(kube, ns, NAME)

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-4000:] + "\n--- operator:\n" + operator.tail(20)

    def rung_of(name: str) -> int | None:
        track()
        entry: dict[str, Any] = next((r for r in status(kube, ns, NAME).get("runs") or [] if r["name"] == name), {})
        return entry.get("rung")

    # The good run passes rung 0 (alone there) and is still training: kill the operator now.
    wait_until(
        lambda: rung_of(GOOD) is not None, 300, "the good run's promotion at rung 0", interval=1, describe=describe
    )
    (good_run,) = track()
    assert good_run["status"].get("phase") == "Running", good_run["status"]
    assert good_run["status"]["progress"]["timesteps"] < BUDGET
    operator.kill_and_restart()

    wait_until(
        lambda: track() and status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        900,
        "the experiment to finish",
        interval=2,
        describe=describe,
    )
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    assert st["counts"]["earlyStopped"] == 1 and st["counts"]["succeeded"] == 1

    # Exactly the planned runs, each created once across the restart.
    runs = {r["metadata"]["name"]: r for r in track()}
    assert sorted(runs) == [GOOD, BAD]
    assert track.changed == []
    assert track.seen[GOOD] == (good_run["metadata"]["uid"], good_run["metadata"]["creationTimestamp"])

    good, bad = runs[GOOD], runs[BAD]
    assert bad["spec"]["hyperparameters"]["learning_rate"] == 1e-7
    assert good["status"]["phase"] == "Succeeded" and good["status"]["progress"]["timesteps"] >= BUDGET
    entries = {r["name"]: r for r in st["runs"]}
    # The good run passed rung 0 before the kill and rung 1 (18,432) after it.
    assert entries[GOOD]["rung"] == 1, entries[GOOD]

    # The bad run was stopped by ASHA at rung 0 and holds the rest of its budget.
    assert (bad["status"]["phase"], bad["status"]["reason"]) == ("Suspended", "EarlyStopped"), bad["status"]
    message = entries[BAD]["message"]
    assert entries[BAD]["phase"] == "EarlyStopped" and "rung" not in entries[BAD]
    assert message.startswith(f"at rung 0 ({MIN_RESOURCE} timesteps)") and "ASHA" in message, message
    stopped = next(c for c in bad["status"]["conditions"] if c["type"] == "EarlyStopped")
    assert stopped["status"] == "True" and "ASHA" in stopped["message"]
    trained = bad["status"]["progress"]["timesteps"]
    assert trained < BUDGET, trained
    assert st["budget"]["savedTimesteps"] == BUDGET - trained > 0
    assert not [
        p
        for p in run_pods(kube, ns)
        if p["metadata"]["labels"]["kubegym.io/training-run"] == BAD
        and p["status"].get("phase") in ("Pending", "Running")
    ]
    events = kubectl.run("get", "events", "--field-selector", f"involvedObject.name={NAME}").stdout
    assert "EarlyStopped" in events

    # The report covers both.
    assert st["report"]["reportJson"], st.get("report")
    assert [r["configuration"] for r in st["results"]] == ["c0", "c1"]
