"""Population-Based Training on the real cluster: a population trained in generations, each segment
a TrainingRun resuming from its own or a better member's final model with explored
hyperparameters; an operator killed between generations changes nothing; the report plots the
population and tables its lineage."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.experiment.support import CreatedOnce, experiment, runs_of, status
from tests.integration.trainingrun.support import s3_client
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

NAME = "pbt"
MEMBERS, INTERVAL, TOTAL = 3, 2048, 6144
SEARCH: dict[str, Any] = {
    "pbt": {
        "population": MEMBERS,
        "interval": INTERVAL,
        "quantile": 0.34,
        "resampleProbability": 0.0,
        "seed": 5,
        "parameters": {
            "learning_rate": {"type": "Float", "low": 1e-4, "high": 1e-2, "log": True},
            "n_epochs": {"type": "Int", "low": 2, "high": 8},
        },
    }
}


def test_pbt_population_survives_an_operator_kill(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    template = {**experiment(NAME)["spec"]["template"], "totalTimesteps": TOTAL}
    template["checkpoint"] = {"everySteps": INTERVAL, "keepLast": 1}
    template["resources"] = {"cpu": "500m", "memory": "1Gi"}
    kubectl.apply(experiment(NAME, template=template, seeds={"values": [7]}, parallelism=MEMBERS, search=SEARCH))
    track = CreatedOnce(kube, ns, NAME)

    def seen() -> dict[str, tuple[str, str]]:
        track()
        assert track.changed == [], "a run was created again"
        return track.seen

    def describe() -> str:
        return json.dumps(status(kube, ns, NAME), indent=1)[-3000:] + "\n" + operator.tail(20)

    wait_until(lambda: len(seen()) == MEMBERS, 90, "the first generation", describe=describe)
    assert sorted(track.seen) == [f"{NAME}-m{i}g0-s{7 + i}" for i in range(MEMBERS)]
    # Between generations: the first one done, the second decided from it.
    wait_until(lambda: len(seen()) > MEMBERS, 600, "the second generation", interval=2, describe=describe)
    operator.kill_and_restart()
    wait_until(
        lambda: bool(seen()) and status(kube, ns, NAME).get("phase") in ("Succeeded", "Failed"),
        900,
        "the population to finish",
        interval=2,
        describe=describe,
    )
    seen()
    st = status(kube, ns, NAME)
    assert st["phase"] == "Succeeded", describe()
    generations = TOTAL // INTERVAL
    assert sorted(track.seen) == sorted(f"{NAME}-m{i}g{g}-s{7 + i}" for i in range(MEMBERS) for g in range(generations))

    runs = {r["metadata"]["name"]: r for r in runs_of(kube, ns, NAME)}
    copies = 0
    for name, run in runs.items():
        segment = json.loads(run["metadata"]["annotations"]["kubegym.io/pbt-segment"])
        g = segment["generation"]
        assert run["spec"]["totalTimesteps"] == INTERVAL * (g + 1)
        assert run["status"]["progress"]["timesteps"] >= INTERVAL * (g + 1), name
        if g == 0:
            assert "resumeFrom" not in run["spec"]
            continue
        parent = segment.get("copiedFrom", segment["member"])
        source = runs[f"{NAME}-m{parent}g{g - 1}-s{7 + parent}"]
        assert run["spec"]["resumeFrom"] == {"trainingRun": source["metadata"]["name"], "checkpoint": "final"}
        # It went on from its source's final model: its counter starts where the source ended.
        assert run["status"]["progress"].get("resumedFromStep") == INTERVAL * g, run["status"]["progress"]
        if "copiedFrom" in segment:
            copies += 1
            assert run["spec"]["hyperparameters"] != source["spec"]["hyperparameters"]  # explored
        else:
            assert run["spec"]["hyperparameters"] == source["spec"]["hyperparameters"]
    assert copies == generations - 1  # one member of three replaced per generation

    population = {m["member"]: m for m in st["population"]}
    assert sorted(population) == [f"m{i}" for i in range(MEMBERS)]
    for member in population.values():
        assert [s["generation"] for s in member["lineage"]] == list(range(generations))
        assert all(s.get("score") is not None for s in member["lineage"])
    assert st["budget"]["trainedTimesteps"] >= MEMBERS * TOTAL and st["budget"]["totalTimesteps"] == MEMBERS * TOTAL

    report = st["report"]
    assert report["populationPng"].endswith("population.png") and report["lineageCsv"].endswith("lineage.csv")
    s3, bucket = s3_client(kube, ns)
    key = report["lineageCsv"].split(f"s3://{bucket}/", 1)[1]
    lineage = pd.read_csv(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert len(lineage) == MEMBERS * generations and int(lineage["copied_from"].notna().sum()) == copies
    png = s3.get_object(Bucket=bucket, Key=report["populationPng"].split(f"s3://{bucket}/", 1)[1])["Body"].read()
    assert png.startswith(b"\x89PNG")
