"""What an Experiment owns besides its runs: the report Job, its identity, the final Benchmarks."""

from __future__ import annotations

import json
from typing import Any

from kubegym_api.benchmark import BenchmarkSpec
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.runnerconfig import ExperimentReportConfig, ReportConfiguration, ReportRun, RunOutcome
from kubegym_api.storage import S3Storage
from kubegym_operator.builders.experiment import plan
from kubegym_operator.builders.experiment_report import (
    REPORT_LABEL,
    benchmark_name,
    build_report_config,
    render_benchmark,
    render_report_job,
    render_report_rbac,
    report_job_name,
)
from kubegym_operator.settings import Settings, StorageCredentials

SETTINGS = Settings(
    default_storage=S3Storage(bucket="kubegym", prefix="runs", endpoint="http://minio:9000", secret_ref="kubegym-s3"),
    storage_credentials=StorageCredentials.static,
    default_queue_name="research",
)


def experiment(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {
            "algorithm": "PPO",
            "environment": {"id": "CartPole-v1", "nEnvs": 4, "normalize": True, "kwargs": {"max_episode_steps": 200}},
            "totalTimesteps": 10000,
            "resources": {"gpu": 1},
            "device": "cuda",
        },
        "seeds": {"count": 2},
        "search": {"grid": {"learning_rate": [0.0003, 0.001]}},
        "benchmark": {"episodes": 20},
    }
    base.update(spec)
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "sweep", "namespace": "lab", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


def report_config(exp: dict[str, Any]) -> ExperimentReportConfig:
    p = plan(exp)
    runs = [
        ReportRun(
            name=r.name,
            configuration=r.configuration.id,
            seed=r.seed,
            outcome=RunOutcome.Succeeded,
            run_prefix=f"runs/lab/{r.name}",
        )
        for r in p.runs
    ]
    configs = [ReportConfiguration(id=c.id, hyperparameters=c.hyperparameters) for c in p.configurations]
    return build_report_config(exp, p.spec, configs, runs, ["sweep-benchmark"], SETTINGS)


def test_report_config_points_at_the_experiments_folder_and_status() -> None:
    config = report_config(experiment())
    assert config.run_prefix == "runs/lab/experiments/sweep"
    assert config.benchmark_prefixes == ["runs/lab/benchmarks/sweep-benchmark"]
    assert config.report_to is not None
    assert (config.report_to.plural, config.report_to.namespace, config.report_to.name) == (
        "experiments",
        "lab",
        "sweep",
    )
    assert config.storage.secret_ref == "kubegym-s3"


def test_report_job_runs_the_report_subcommand_cpu_only_and_restricted() -> None:
    exp = experiment()
    config = report_config(exp)
    job = render_report_job(exp, plan(exp).spec, config, SETTINGS)
    assert job["metadata"]["name"] == report_job_name("sweep") == "sweep-report"
    assert job["metadata"]["labels"][REPORT_LABEL] == "sweep"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert job["spec"]["suspend"] is True  # Kueue admits it
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["report"] and container["command"] == ["kubegym-runner"]
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert "nodeSelector" not in pod  # no GPU node selection for a CPU job
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "sweep-report"
    env = {e["name"]: e for e in container["env"]}
    assert ExperimentReportConfig.model_validate_json(env[CONFIG_ENV]["value"]) == config
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "kubegym-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert all("value" not in e for n, e in env.items() if n.startswith("AWS_"))
    assert job["spec"]["template"]["metadata"]["labels"][REPORT_LABEL] == "sweep"
    assert job["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"] == [42]


def test_report_identity_may_patch_only_its_experiments_status() -> None:
    sa, role, binding = render_report_rbac(experiment())
    assert sa["kind"] == "ServiceAccount" and sa["automountServiceAccountToken"] is False
    assert role["rules"] == [
        {"apiGroups": ["kubegym.io"], "resources": ["experiments"], "resourceNames": ["sweep"], "verbs": ["get"]},
        {
            "apiGroups": ["kubegym.io"],
            "resources": ["experiments/status"],
            "resourceNames": ["sweep"],
            "verbs": ["get", "patch"],
        },
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sweep-report", "namespace": "lab"}]
    assert {m["metadata"]["ownerReferences"][0]["uid"] for m in (sa, role, binding)} == {"uid-1"}


def test_final_benchmark_is_a_valid_benchmark_of_the_runs_models() -> None:
    exp = experiment()
    checkpoint = "s3://kubegym/runs/lab/sweep-c1-s0/checkpoints/000000004096/"
    manifest = render_benchmark(
        exp, plan(exp).spec, benchmark_name("sweep", 0), [("sweep-c0-s0", None), ("sweep-c1-s0", checkpoint)]
    )
    assert manifest["metadata"]["name"] == "sweep-benchmark"
    assert benchmark_name("sweep", 2) == "sweep-benchmark-2"
    spec = BenchmarkSpec.model_validate(manifest["spec"])
    assert [m.training_run_ref.name if m.training_run_ref else m.uri for m in spec.models] == [
        "sweep-c0-s0",
        checkpoint,
    ]
    assert spec.models[1].algorithm == "PPO"
    (env,) = spec.environments
    assert env.id == "CartPole-v1" and env.kwargs == {"max_episode_steps": 200}
    assert spec.episodes == 20 and str(spec.statistic) == "IQM"
    assert manifest["metadata"]["labels"]["kubegym.io/experiment"] == "sweep"
