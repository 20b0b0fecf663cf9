"""A Benchmark's models, Job and evaluator identity, rendered without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from kubegym_api.base import Algorithm
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.exitcodes import EXIT_USER_ERROR
from kubegym_api.runnerconfig import BenchmarkModel, EvaluateConfig
from kubegym_operator.builders.benchmark import (
    BENCHMARK_NAME_ANNOTATION,
    evaluation_job_name,
    evaluator_identity_name,
    parse_spec,
    render_evaluator_rbac,
    render_job,
    resolve_models,
    ttl_patch,
)
from kubegym_operator.builders.job import QUEUE_LABEL, RenderError
from kubegym_operator.builders.job import render_job as render_training_job
from kubegym_operator.settings import Settings, load_settings

UID = "6b1c2d3e-0000-4000-8000-00000000b001"
STORAGE_ENV = {
    "KUBEGYM_STORAGE_BUCKET": "kubegym",
    "KUBEGYM_STORAGE_PREFIX": "runs",
    "KUBEGYM_STORAGE_ENDPOINT": "http://minio:9000",
    "KUBEGYM_STORAGE_CREDENTIALS": "static",
    "KUBEGYM_STORAGE_SECRET": "kubegym-s3",
}


def make_bench(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "models": [
            {"name": "strong", "trainingRunRef": {"name": "cartpole-strong"}},
            {"name": "uploaded", "uri": "s3://kubegym/uploads/abc/model.zip", "algorithm": "DQN"},
        ],
        "environments": [{"id": "CartPole-v1"}],
        "episodes": 20,
        "seeds": [0, 1],
        "deterministic": True,
        "nEnvs": 8,
        "statistic": "IQM",
        "device": "cpu",
        "resources": {"cpu": 2, "memory": "2Gi", "gpu": 0},
        "scheduling": {},
        "runPolicy": {"backoffLimit": 1},
    }
    body.update(spec)
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Benchmark",
        "metadata": {"name": "compare", "namespace": "research", "uid": UID, "generation": 1},
        "spec": body,
    }


def make_run(name: str, phase: str | None, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": "research", "uid": "r-1"},
        "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 1000},
        "status": {"phase": phase, **status} if phase else {},
    }


@pytest.fixture
def settings() -> Settings:
    return load_settings(STORAGE_ENV)


def test_a_succeeded_run_resolves_to_its_final_model(settings: Settings) -> None:
    run = make_run(
        "cartpole-strong", "Succeeded", result={"modelUri": "s3://kubegym/runs/research/cartpole-strong/final"}
    )
    resolution = resolve_models(parse_spec(make_bench()), {"cartpole-strong": run}, settings)
    assert resolution.waiting == {} and resolution.failure is None
    assert resolution.models == [
        BenchmarkModel(name="strong", uri="s3://kubegym/runs/research/cartpole-strong/final", algorithm=Algorithm.PPO),
        BenchmarkModel(name="uploaded", uri="s3://kubegym/uploads/abc/model.zip", algorithm=Algorithm.DQN),
    ]


RECORDED = {
    "bucket": "kubegym",
    "prefix": "runs/research/cartpole-strong/r-1",
    "uri": "s3://kubegym/runs/research/cartpole-strong/r-1/",
}


@pytest.mark.parametrize(
    ("status", "model_uri"),
    [
        # The folder the operator recorded; the runner's report agrees.
        (
            {"artifacts": RECORDED, "result": {"modelUri": "s3://kubegym/runs/research/cartpole-strong/r-1/final"}},
            "s3://kubegym/runs/research/cartpole-strong/r-1/final",
        ),
        # A report pointing out of the run's own folder is not believed: the runner writes it.
        (
            {"artifacts": RECORDED, "result": {"modelUri": "s3://kubegym/runs/other-team/their-run/final"}},
            "s3://kubegym/runs/research/cartpole-strong/r-1/final/",
        ),
        # A recorded folder in another bucket (the default storage changed since): the recorded one.
        (
            {
                "artifacts": {
                    **RECORDED,
                    "bucket": "old-bucket",
                    "uri": "s3://old-bucket/runs/research/cartpole-strong/r-1/",
                }
            },
            "s3://old-bucket/runs/research/cartpole-strong/r-1/final/",
        ),
        # Nothing recorded nor reported: the run's layout, with its uid.
        ({}, "s3://kubegym/runs/research/cartpole-strong/r-1/final/"),
        # A run from before the uid, which reported only a checkpoint: the old layout.
        (
            {"checkpoints": {"latestUri": "s3://kubegym/runs/research/cartpole-strong/checkpoints/000000001000"}},
            "s3://kubegym/runs/research/cartpole-strong/final/",
        ),
    ],
    ids=["recorded", "report-outside-its-folder", "recorded-bucket", "uid-layout", "old-layout"],
)
def test_a_runs_final_model_is_in_its_own_folder(settings: Settings, status: dict[str, Any], model_uri: str) -> None:
    resolution = resolve_models(
        parse_spec(make_bench()), {"cartpole-strong": make_run("cartpole-strong", "Succeeded", **status)}, settings
    )
    assert resolution.models is not None
    assert resolution.models[0].uri == model_uri


@pytest.mark.parametrize(
    ("run", "state"),
    [
        (None, "not found"),
        (make_run("cartpole-strong", None), "Pending"),
        (make_run("cartpole-strong", "Running", progress={"percent": 42}), "Running"),
        (make_run("cartpole-strong", "Suspended"), "Suspended"),
    ],
)
def test_an_unfinished_run_makes_the_benchmark_wait(settings: Settings, run: dict[str, Any] | None, state: str) -> None:
    resolution = resolve_models(parse_spec(make_bench()), {"cartpole-strong": run}, settings)
    assert resolution.models is None and resolution.failure is None
    assert resolution.waiting == {"cartpole-strong": state}


def test_a_failed_run_fails_the_benchmark(settings: Settings) -> None:
    run = make_run("cartpole-strong", "Failed", reason="OOMKilled", message="the runner ran out of memory")
    resolution = resolve_models(parse_spec(make_bench()), {"cartpole-strong": run}, settings)
    assert resolution.models is None
    assert resolution.failure == (
        "TrainingRunFailed",
        "model strong: TrainingRun cartpole-strong failed (OOMKilled: the runner ran out of memory)",
    )


def resolved() -> list[BenchmarkModel]:
    return [
        BenchmarkModel(name="strong", uri="s3://kubegym/runs/research/cartpole-strong/final/", algorithm=Algorithm.PPO)
    ]


def test_the_job_runs_evaluate_with_the_resolved_config(settings: Settings) -> None:
    job = render_job(make_bench(), settings, resolved())
    assert job["metadata"]["name"] == evaluation_job_name("compare") == "compare-bench"
    assert job["metadata"]["annotations"][BENCHMARK_NAME_ANNOTATION] == "compare"
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("Benchmark", "compare", UID, True)
    spec = job["spec"]
    assert spec["suspend"] is False and spec["backoffLimit"] == 1
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [EXIT_USER_ERROR]},
    } in spec["podFailurePolicy"]["rules"]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == evaluator_identity_name("compare") == "compare-evaluator"
    (container,) = pod["containers"]
    assert (container["command"], container["args"]) == (["kubegym-runner"], ["evaluate"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubegym-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    config = EvaluateConfig.model_validate_json(env[CONFIG_ENV]["value"])
    assert config.models == resolved()
    assert (config.episodes, config.seeds, config.n_envs, config.device) == (20, [0, 1], 8, "cpu")
    assert config.run_prefix == "runs/research/benchmarks/compare"
    assert config.report_to is not None
    assert (config.report_to.plural, config.report_to.name, config.report_to.namespace) == (
        "benchmarks",
        "compare",
        "research",
    )
    assert "AWS_" not in env[CONFIG_ENV]["value"]  # credentials only by secretKeyRef


def test_names_never_collide_with_a_training_runs(settings: Settings) -> None:
    training = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "compare", "namespace": "research", "uid": "u"},
        "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 10},
    }
    train_job = render_training_job(training, settings)
    bench_job = render_job(make_bench(), settings, resolved())
    assert train_job["metadata"]["name"] != bench_job["metadata"]["name"]
    assert train_job["spec"]["template"]["spec"]["serviceAccountName"] != evaluator_identity_name("compare")
    assert "kubegym.io/benchmark" not in train_job["metadata"]["labels"]  # Benchmark handlers ignore it


def test_queue_gpu_and_ttl(settings: Settings) -> None:
    bench = make_bench(
        scheduling={"queueName": "team-a"},
        resources={"gpu": 1},
        device="cuda",
        runPolicy={"backoffLimit": 0, "ttlSecondsAfterFinished": 600},
    )
    job = render_job(bench, settings, resolved())
    assert job["spec"]["suspend"] is True  # Kueue admits it
    assert job["metadata"]["labels"][QUEUE_LABEL] == "team-a"
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert ttl_patch(bench, job, settings) == []
    edited = make_bench(runPolicy={"backoffLimit": 0, "ttlSecondsAfterFinished": 60})
    assert ttl_patch(edited, job, settings) == [{"op": "add", "path": "/spec/ttlSecondsAfterFinished", "value": 60}]
    assert ttl_patch(make_bench(), job, settings) == [{"op": "remove", "path": "/spec/ttlSecondsAfterFinished"}]


def test_no_storage_is_a_render_error() -> None:
    with pytest.raises(RenderError) as err:
        render_job(make_bench(), Settings(), resolved())
    assert err.value.reason == "StorageNotConfigured"


def test_the_evaluator_may_only_patch_this_benchmarks_status() -> None:
    objs = {o["kind"]: o for o in render_evaluator_rbac(make_bench())}
    assert set(objs) == {"ServiceAccount", "Role", "RoleBinding"}
    assert objs["Role"]["rules"] == [
        {
            "apiGroups": ["kubegym.io"],
            "resources": ["benchmarks/status"],
            "resourceNames": ["compare"],
            "verbs": ["get", "patch"],
        }
    ]
    assert objs["ServiceAccount"]["automountServiceAccountToken"] is False
    assert objs["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "compare-evaluator", "namespace": "research"}
    ]
    for obj in objs.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
