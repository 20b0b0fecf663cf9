"""One bad model fails alone, and an evaluator that has nothing to evaluate can still touch
nothing but its own Benchmark's status.

- per entry: a missing model object, a corrupt archive, model/env spaces that differ, an unknown
  environment id; the good entry is still evaluated and ranked, condition EntriesFailed names
  the others;
- nothing evaluable: Failed with reason UserError, and the evaluator's token can patch its own
  Benchmark's status and nothing else.

A Benchmark stopped by bad input alone (rejected at apply; Failed on a bad archive, a failed
TrainingRun or unreachable storage; waiting for a run that does not exist) is a case of the
table-driven corpus in tests/integration/corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Credentials, Kube
from tests.conftest import OperatorProcess
from tests.integration.benchmark.support import BENCH, benchmark, condition, kubectl_gym, s3_client, s3_env, status
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until


def _finished(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    st = status(kube, ns, name)
    return st if st.get("phase") in ("Succeeded", "Failed") else None


def test_each_bad_model_fails_its_own_entries_and_the_rest_is_ranked(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    ns = namespace
    env = s3_env(kube, ns)
    model = tmp_path / "tiny.zip"
    PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), n_steps=64, batch_size=64, device="cpu").save(model)
    uploaded = kubectl_gym(
        tmp_path,
        cluster.kubeconfig,
        "upload",
        str(model),
        "--bucket",
        env["BUCKET"],
        "--prefix",
        f"uploads/{ns}",
        "--algorithm",
        "PPO",
        env={k: v for k, v in env.items() if k.startswith("AWS_")},
    )
    assert uploaded.returncode == 0, uploaded.stderr
    uri = uploaded.stdout.strip()
    assert uri.startswith(f"s3://{env['BUCKET']}/uploads/{ns}/") and uri.endswith("/")
    s3 = s3_client(env)
    s3.put_object(Bucket=env["BUCKET"], Key=f"uploads/{ns}/corrupt/model.zip", Body=b"PK\x03\x04 truncated garbage")

    models = [
        {"name": "tiny", "uri": uri},  # the algorithm comes from the uploaded manifest.json
        {"name": "missing", "uri": f"s3://{env['BUCKET']}/uploads/{ns}/nothing-here/", "algorithm": "PPO"},
        {"name": "corrupt", "uri": f"s3://{env['BUCKET']}/uploads/{ns}/corrupt/", "algorithm": "PPO"},
    ]
    kubectl.apply(benchmark("mixed", models, ["CartPole-v1", "MountainCar-v0", "NoSuchEnv-v0"]))
    st = wait_until(
        lambda: _finished(kube, ns, "mixed"), 600, "the Benchmark to finish", interval=1, describe=operator.tail
    )
    assert st["phase"] == "Succeeded", st
    errors = {(r["model"], r["env"]): r.get("error") for r in st["results"]}
    assert errors[("tiny", "CartPole-v1")] is None
    assert (
        "model tiny does not fit MountainCar-v0: Observation spaces do not match" in errors[("tiny", "MountainCar-v0")]
    )
    assert errors[("tiny", "NoSuchEnv-v0")] == "unknown environment id 'NoSuchEnv-v0'"
    assert (
        errors[("missing", "CartPole-v1")]
        == f"model object s3://{env['BUCKET']}/uploads/{ns}/nothing-here/model.zip not found"
    )
    assert "is not a stable-baselines3 model archive (not a zip file" in errors[("corrupt", "CartPole-v1")]
    assert [m["model"] for m in st["ranking"]["models"]] == ["tiny"]
    assert st["ranking"]["unranked"] == ["missing", "corrupt"]
    assert st["ranking"]["envs"] == ["CartPole-v1"]
    assert st["bestModel"] == "tiny"
    entries = condition(st, "EntriesFailed")
    assert entries is not None and (entries["status"], entries["reason"]) == ("True", "EntryErrors")
    assert entries["message"].startswith("8 of 9 entries failed: tiny on MountainCar-v0:"), entries["message"]
    events = kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector="involvedObject.name=mixed")["items"]
    assert any(e["reason"] == "EntriesFailed" and e["type"] == "Warning" for e in events), events


def test_nothing_evaluable_fails_and_the_evaluator_can_only_write_its_own_status(
    cluster: LocalCluster, kube: Kube, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    ns = namespace
    missing = {"name": "missing", "uri": "s3://kubegym/does/not/exist/", "algorithm": "PPO"}
    kubectl.apply(benchmark("hopeless", [missing], ["CartPole-v1"]))
    kubectl.apply(benchmark("other", [{"name": "n", "trainingRunRef": {"name": "absent"}}], ["CartPole-v1"]))
    st = wait_until(
        lambda: _finished(kube, ns, "hopeless"), 300, "the Benchmark to fail", interval=1, describe=operator.tail
    )
    assert (st["phase"], st["reason"]) == ("Failed", "UserError"), st
    assert (
        "none of the 1 model x environment entries could be evaluated; first: missing on CartPole-v1" in st["message"]
    )
    assert st["results"][0]["error"] == "model object s3://kubegym/does/not/exist/model.zip not found"
    assert condition(st, "EntriesFailed")["status"] == "True"  # type: ignore[index]
    (job,) = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector="kubegym.io/benchmark=hopeless")["items"]
    assert job["status"].get("failed") == 1, "a user error is not retried"

    token = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/hopeless-evaluator/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )["status"]["token"]
    evaluator = Kube(Credentials(server=cluster.server, ca_file=str(cluster.pki.ca_crt), token=token))
    bench = BENCH.format(ns=ns)
    evaluator.merge_patch(f"{bench}/hopeless/status", {"status": {"bestModel": "missing"}})  # its own: allowed
    for forbidden in (
        lambda: evaluator.merge_patch(f"{bench}/other/status", {"status": {"bestModel": "x"}}),
        lambda: evaluator.get(f"{bench}/hopeless"),
        lambda: evaluator.merge_patch(f"{bench}/hopeless", {"spec": {"episodes": 1}}),
        lambda: evaluator.get(f"/api/v1/namespaces/{ns}/secrets"),
        lambda: evaluator.get(f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns"),
    ):
        with pytest.raises(ApiError) as denied:
            forbidden()
        assert denied.value.status == 403
