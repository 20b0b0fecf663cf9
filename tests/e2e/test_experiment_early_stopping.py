"""Early stopping: a deliberately bad learning rate is stopped by the median rule and saves its
remaining budget; the good run trains to the end and the report still covers both.

The runs train one after the other (``parallelism: 1``, the good one first), so the bad run is
judged against a finished curve. Side by side, the outcome depended on which pod started first: a
bad run that reached its last evaluation before the good run reached its second had no reference
to be judged against and rightly trained to the end (the rule needs ``minRuns`` references at the
step it judges). The budget leaves the stop 12,288 steps between the judgement (step 4,096) and
half the budget, for the report interval, the reconcile and the pod's stop.
"""

from __future__ import annotations

import io
import json

import pandas as pd

from kubegym_localcluster.kube import Kube
from tests.e2e.conftest import ReleaseOperator
from tests.integration.experiment.support import experiment, run_pods, runs_of, status
from tests.integration.trainingrun.support import s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "stopper"
BUDGET = 32768


def test_a_bad_learning_rate_is_stopped_early(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: ReleaseOperator
) -> None:
    ns = namespace
    template = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1"},
        "totalTimesteps": BUDGET,
        "device": "cpu",
        "hyperparameters": {"n_steps": 1024, "batch_size": 64},
        # Stochastic evaluation: an untrained policy scores ~20 on every seed.
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
            earlyStopping={"minEvaluations": 2, "minRuns": 1},
        )
    )

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-4000:] + "\n--- operator:\n" + operator.tail(20)

    wait_until(
        lambda: status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        900,
        "the experiment to finish",
        interval=2,
        describe=describe,
    )
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    assert st["counts"]["earlyStopped"] == 1 and st["counts"]["succeeded"] == 1

    runs = {r["metadata"]["name"]: r for r in runs_of(kube, ns, NAME)}
    good, bad = runs[f"{NAME}-c0-s0"], runs[f"{NAME}-c1-s0"]
    assert bad["spec"]["hyperparameters"]["learning_rate"] == 1e-7
    assert good["status"]["phase"] == "Succeeded" and good["status"]["progress"]["timesteps"] >= BUDGET

    # The bad run says why it stopped, and holds the rest of its budget.
    assert (bad["status"]["phase"], bad["status"]["reason"]) == ("Suspended", "EarlyStopped")
    stopped = next(c for c in bad["status"]["conditions"] if c["type"] == "EarlyStopped")
    assert stopped["status"] == "True" and "median" in stopped["message"]
    trained = bad["status"]["progress"]["timesteps"]
    assert trained < BUDGET // 2, trained
    assert bad["spec"]["suspend"] is True
    assert not [
        p
        for p in run_pods(kube, ns)
        if p["metadata"]["labels"]["kubegym.io/training-run"] == bad["metadata"]["name"]
        and p["status"].get("phase") in ("Pending", "Running")
    ]
    assert st["budget"]["savedTimesteps"] == BUDGET - trained > 0
    (entry,) = [r for r in st["runs"] if r["name"] == bad["metadata"]["name"]]
    assert entry["phase"] == "EarlyStopped" and "median" in entry["message"]
    events = kubectl.run("get", "events", "--field-selector", f"involvedObject.name={NAME}").stdout
    assert "EarlyStopped" in events

    # The report covers both: the stopped run scored by its last evaluation, ranked last.
    s3, bucket = s3_client(kube, ns)
    body = s3.get_object(Bucket=bucket, Key=f"{ns}/experiments/{NAME}/report/runs.csv")["Body"].read()
    table = pd.read_csv(io.BytesIO(body)).set_index("run")
    assert table.loc[bad["metadata"]["name"], "outcome"] == "EarlyStopped"
    assert table.loc[bad["metadata"]["name"], "score"] == table.loc[bad["metadata"]["name"], "last_evaluation"]
    assert [r["configuration"] for r in st["results"]] == ["c0", "c1"]
