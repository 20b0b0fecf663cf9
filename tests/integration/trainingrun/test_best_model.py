"""The best model, kept (issue 15 item 1), on the real local cluster, operator and MinIO.

The bug: DQN on CartPole evaluated 94, 88, 500, 97 at its periodic evaluations and 20.5 at the end,
and only the final model was kept. Now a small PPO CartPole run with frequent evaluations keeps the
model of its best periodic evaluation in ``best/``: its manifest's step and score are the first
maximum of ``eval/evaluations.json``, and ``status.best`` says the same. Then:

* one Benchmark evaluates that run's ``best`` model, its ``final`` one and its default (final)
  side by side; the results document names each URI;
* a TrainingRun with ``resumeFrom: {trainingRun: X, checkpoint: best}`` starts at the best step;
* a run trained without periodic evaluation has no best: a Benchmark of its ``best`` fails
  (ModelNotAvailable, naming the model, the run and the choice) and a resume from its ``best``
  fails before any Job (ResumeSourceNotFound);
* a run whose pod is deleted goes on from the best it had (best/manifest.json read by the next pod);
* an Experiment with ``benchmark.checkpoint: best`` benchmarks its run's best model, and
  ``objective.metric: Benchmark`` scores it.

Training is kept small (4,096 + 512 + about 1,000 + 8,192 + 2,048 steps) for two shared cores.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import benchmark, read_s3
from tests.integration.benchmark.support import status as bench_status
from tests.integration.researcher.test_researcher_loop import gym, gym_env
from tests.integration.trainingrun.support import keys, s3_client, status, training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.usefixtures("operator")

SOURCE = "best-src"
PLAIN = "plain-src"
TOTAL = 4096
EVERY = 512


def _finished(read: Any, kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st: dict[str, Any] = read(kube, ns, name)
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def _wait(read: Any, kube: Kube, ns: str, name: str, operator: OperatorProcess, timeout: float = 900) -> dict[str, Any]:
    st: dict[str, Any] = wait_until(
        functools.partial(_finished, read, kube, ns, name),
        timeout,
        f"{name} to finish",
        interval=2,
        describe=lambda: f"{json.dumps(read(kube, ns, name))[-3000:]}\n{operator.tail(20)}",
    )
    return st


def _json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _pods(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    selector = f"kubegym.io/training-run={name}"
    items: list[dict[str, Any]] = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)["items"]
    return items


def test_the_best_model_is_kept_benchmarked_and_resumed_from(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns = namespace
    s3, bucket = s3_client(kube, ns)
    small = {"n_steps": 256, "batch_size": 64, "n_epochs": 4}
    kubectl.apply(
        training_run(
            SOURCE,
            totalTimesteps=TOTAL,
            hyperparameters=small,
            checkpoint={"everySteps": 1024, "keepLast": 2},
            evaluation={"everySteps": EVERY, "episodes": 3},
        )
    )
    kubectl.apply(training_run(PLAIN, totalTimesteps=512, hyperparameters={"n_steps": 128, "batch_size": 64}))

    source = _wait(status, kube, ns, SOURCE, operator)
    assert source["phase"] == "Succeeded", source
    prefix = source["artifacts"]["prefix"]
    folder = f"s3://{bucket}/{prefix}"

    # best/ holds the model of the first maximum of the evaluation history, manifest last.
    history = _json(s3, bucket, f"{prefix}/eval/evaluations.json")
    assert len(history) >= TOTAL // EVERY - 1, history
    top = max(e["meanReward"] for e in history)
    first_top = next(e for e in history if e["meanReward"] == top)
    assert {f"{prefix}/best/model.zip", f"{prefix}/best/manifest.json"} <= set(keys(s3, bucket, f"{prefix}/best/"))
    manifest = _json(s3, bucket, f"{prefix}/best/manifest.json")
    assert manifest["step"] == first_top["timesteps"] and manifest["evaluation"] == {
        k: first_top[k] for k in ("timesteps", "meanReward", "stdReward", "episodes")
    }, (manifest, history)
    assert (
        manifest["runUid"]
        == kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns/{SOURCE}")["metadata"]["uid"]
    )
    assert set(manifest["objects"]) == {"model.zip"}

    # status.best agrees, and the wide view shows it.
    assert source["best"] == {
        "uri": f"{folder}/best",
        "step": first_top["timesteps"],
        "meanReward": first_top["meanReward"],
        "stdReward": first_top["stdReward"],
        "episodes": first_top["episodes"],
    }, source["best"]
    wide = kubectl.run("get", "trainingrun", SOURCE, "-o", "wide").stdout
    assert "BEST" in wide.splitlines()[0], wide
    best_step = int(source["best"]["step"])

    # kubectl gym: the best: line, and the best model downloaded, sha256-checked.
    env = gym_env(cluster)
    shown = gym(env, "status", SOURCE, "-n", ns)
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("best: ")]
    assert f" at step {best_step:,} " in line and line.endswith(f"{folder}/best"), line
    out = tmp_path / "best"
    done = gym(env, "download", SOURCE, "-n", ns, "--dir", str(out), "--checkpoint", "best")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "manifest.json").read_text()) == manifest
    digest = hashlib.sha256((out / "model.zip").read_bytes()).hexdigest()
    assert digest == manifest["objects"]["model.zip"]["sha256"]

    # A Benchmark of the best, the final and the default (final) model; a resume from the best; and
    # the two choices that do not exist for a run without periodic evaluation — all at once.
    ref = {"name": SOURCE}
    kubectl.apply(
        benchmark(
            "bm-choices",
            [
                {"name": "best", "trainingRunRef": ref, "checkpoint": "best"},
                {"name": "final", "trainingRunRef": ref, "checkpoint": "final"},
                {"name": "default", "trainingRunRef": ref},
            ],
            ["CartPole-v1"],
            episodes=3,
            nEnvs=3,
        )
    )
    kubectl.apply(
        training_run(
            "heir",
            totalTimesteps=best_step + 512,
            hyperparameters=small,
            checkpoint={"everySteps": 1024},
            resumeFrom={"trainingRun": SOURCE, "checkpoint": "best"},
        )
    )
    plain = _wait(status, kube, ns, PLAIN, operator)
    assert plain["phase"] == "Succeeded" and "best" not in plain, plain
    kubectl.apply(
        benchmark(
            "bm-no-best", [{"name": "p", "trainingRunRef": {"name": PLAIN}, "checkpoint": "best"}], ["CartPole-v1"]
        )
    )
    kubectl.apply(training_run("orphan", resumeFrom={"trainingRun": PLAIN, "checkpoint": "best"}))

    no_best = _wait(bench_status, kube, ns, "bm-no-best", operator, timeout=120)
    assert (no_best["phase"], no_best["reason"]) == ("Failed", "ModelNotAvailable"), no_best
    assert no_best["message"].startswith(f"model p: TrainingRun {PLAIN} succeeded with no best model"), no_best
    assert "(checkpoint: best)" in no_best["message"]
    assert not kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector="kubegym.io/benchmark=bm-no-best")[
        "items"
    ]

    orphan = _wait(status, kube, ns, "orphan", operator, timeout=120)
    assert (orphan["phase"], orphan["reason"]) == ("Failed", "ResumeSourceNotFound"), orphan
    assert f"TrainingRun '{PLAIN}' has no best model" in orphan["message"], orphan
    assert "resumeFrom.checkpoint: best" in orphan["message"]
    assert _pods(kube, ns, "orphan") == []

    heir = _wait(status, kube, ns, "heir", operator)
    assert heir["phase"] == "Succeeded", heir
    assert heir["progress"]["resumedFromStep"] == best_step, heir["progress"]
    assert best_step + 512 <= heir["result"]["timesteps"] < best_step + 512 + 256, heir["result"]
    log = kubectl.run("logs", "job/heir-train").stdout
    assert f"resuming from {folder}/best (timestep {best_step})" in log, log[-3000:]

    bench = _wait(bench_status, kube, ns, "bm-choices", operator)
    assert bench["phase"] == "Succeeded", bench
    assert {r["model"] for r in bench["results"] if r.get("error") is None} == {"best", "final", "default"}
    document = json.loads(read_s3(s3, bench["artifacts"]["results"]))
    uris = {m["name"]: m["uri"] for m in document["models"]}
    assert uris == {
        "best": f"{folder}/best",
        "final": source["result"]["modelUri"],
        "default": source["result"]["modelUri"],
    }, uris
    assert source["result"]["modelUri"].startswith(f"{folder}/final")


def test_an_experiment_benchmarks_the_best_models_of_its_runs(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    from tests.integration.experiment.support import experiment
    from tests.integration.experiment.support import status as exp_status

    ns, name = namespace, "peaks"
    manifest = experiment(
        name,
        seeds={"count": 1},
        benchmark={"episodes": 3, "nEnvs": 3, "checkpoint": "best"},
        objective={"metric": "Benchmark"},
    )
    del manifest["spec"]["search"]
    manifest["spec"]["template"].update({"totalTimesteps": 2048, "evaluation": {"everySteps": 512, "episodes": 2}})
    kubectl.apply(manifest)
    st = _wait(exp_status, kube, ns, name, operator)
    assert st["phase"] == "Succeeded", st
    run = status(kube, ns, f"{name}-c0-s0")
    assert run["best"]["uri"].endswith("/best"), run

    (bench,) = kube.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks")["items"]
    assert bench["spec"]["models"] == [
        {"name": f"{name}-c0-s0", "trainingRunRef": {"name": f"{name}-c0-s0"}, "checkpoint": "best"}
    ], bench["spec"]["models"]
    s3, _ = s3_client(kube, ns)
    document = json.loads(read_s3(s3, bench["status"]["artifacts"]["results"]))
    assert [m["uri"] for m in document["models"]] == [run["best"]["uri"]]
    (result,) = st["results"]
    assert result["runs"] == 1 and result["score"] == bench["status"]["bestScore"], (result, bench["status"])


def test_a_restarted_run_goes_on_from_the_best_it_had(
    kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    """The runner pod is deleted once the run has a best and a checkpoint: the next pod resumes
    (from the SIGTERM checkpoint), reads best/manifest.json, and later evaluations must beat it, so
    the run ends with the first maximum of its whole evaluation history in best/."""
    ns, name = namespace, "restarted"
    s3, bucket = s3_client(kube, ns)
    kubectl.apply(
        training_run(
            name,
            totalTimesteps=8192,
            hyperparameters={"n_steps": 256, "batch_size": 64, "n_epochs": 4},
            checkpoint={"everySteps": 1024, "keepLast": 2},
            evaluation={"everySteps": EVERY, "episodes": 2},
        )
    )

    def ready() -> dict[str, Any] | None:
        st = status(kube, ns, name)
        has_checkpoint = ((st.get("checkpoints") or {}).get("latestStep") or 0) >= 1024
        return st if st.get("best") and has_checkpoint and st.get("phase") == "Running" else None

    before = wait_until(ready, 600, f"{name} to have a best and a checkpoint", interval=1)
    (pod,) = _pods(kube, ns, name)
    kube.delete(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")

    st = _wait(status, kube, ns, name, operator)
    assert st["phase"] == "Succeeded", st
    resumed = int(st["progress"]["resumedFromStep"])
    assert resumed >= int(before["best"]["step"]), (resumed, before["best"])
    log = kubectl.run("logs", f"job/{name}-train").stdout  # the second pod's (the first one is gone)
    assert f"resuming from s3://{bucket}/{st['artifacts']['prefix']}/checkpoints/" in log, log[-3000:]
    assert "best model so far: " in log, log[-3000:]
    prefix = st["artifacts"]["prefix"]
    history = _json(s3, bucket, f"{prefix}/eval/evaluations.json")
    top = max(e["meanReward"] for e in history)
    first_top = next(e for e in history if e["meanReward"] == top)
    assert _json(s3, bucket, f"{prefix}/best/manifest.json")["evaluation"] == {
        k: first_top[k] for k in ("timesteps", "meanReward", "stdReward", "episodes")
    }, history
    assert (st["best"]["step"], st["best"]["meanReward"]) == (first_top["timesteps"], first_top["meanReward"])
    assert st["best"]["meanReward"] >= before["best"]["meanReward"]
