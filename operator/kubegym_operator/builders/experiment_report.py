"""The report Job of an Experiment and its identity, rendered as plain manifests (pure).

The operator has neither S3 credentials nor numpy, so the analysis runs in the runner image
(``kubegym-runner report``): it reads every run's ``eval/`` data (and the final Benchmarks'
episodes) from S3, writes the tables and plots under ``<prefix>/<namespace>/experiments/<name>/
report/``, and patches the Experiment's ``results``, ``best`` and ``report`` with a
ServiceAccount that may patch that one Experiment's status and nothing else. The storage
credentials reach the pod as the report's own minted credentials (read the trials and final
Benchmarks, write the report) or, for a storage with a ``secretRef``, as ``secretKeyRef``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from kubegym_api import GROUP, VERSION
from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.experiment import PLURAL, ExperimentSpec, MemberStatus
from kubegym_api.runnerconfig import ExperimentReportConfig, ReportConfiguration, ReportRun, RunRef, dump_config
from kubegym_api.storage import S3Storage
from kubegym_api.workload import Resources
from kubegym_operator.builders.artifacts import namespaced_prefix
from kubegym_operator.builders.benchmark import benchmark_prefix
from kubegym_operator.builders.experiment import child_metadata, experiment_labels
from kubegym_operator.builders.job import (
    COMPONENT_LABEL,
    HOME_DIR,
    QUEUE_LABEL,
    Manifest,
    minted_credentials,
    queue_name,
    runner_job_spec,
    runner_pod_spec,
    scheduling_of,
    storage_env,
    storage_of,
)
from kubegym_operator.builders.naming import dns_label, label_value
from kubegym_operator.builders.ownership import identity_manifests, own_status_rules
from kubegym_operator.settings import Settings

#: On the report Job and its pods: the handlers map their events back to the Experiment.
REPORT_LABEL = "kubegym.io/experiment-report"
#: The report Job retries infrastructure failures (S3 outages) this often.
REPORT_BACKOFF_LIMIT = 3


def report_job_name(experiment: str) -> str:
    return dns_label(f"{experiment}-report")


def report_identity_name(experiment: str) -> str:
    """ServiceAccount, Role and RoleBinding of the report Job."""
    return dns_label(f"{experiment}-report")


def benchmark_name(experiment: str, chunk: int) -> str:
    """``<experiment>-benchmark`` and, past 32 models, ``-1``, ``-2``, ..."""
    return dns_label(f"{experiment}-benchmark" + (f"-{chunk}" if chunk else ""))


def experiment_prefix(storage: S3Storage, namespace: str, name: str) -> str:
    """Key prefix of the Experiment's own artifacts: ``<prefix>/<namespace>/experiments/<name>``."""
    return namespaced_prefix(storage, namespace, "experiments", name)


def report_storage(spec: ExperimentSpec, settings: Settings) -> S3Storage:
    """The runs' storage (the template's, else the operator's default): the report lives beside them."""
    return storage_of(spec.template, settings)


def build_report_config(
    exp: Mapping[str, Any],
    spec: ExperimentSpec,
    configurations: Sequence[ReportConfiguration],
    runs: Sequence[ReportRun],
    benchmarks: Sequence[str],
    settings: Settings,
    population: Sequence[MemberStatus] = (),
) -> ExperimentReportConfig:
    """What the report Job reads and where it writes (with a PBT ``population``'s lineage); raises
    RenderError without storage."""
    meta = exp["metadata"]
    storage = report_storage(spec, settings)
    return ExperimentReportConfig(
        experiment=meta["name"],
        objective=spec.objective,
        configurations=list(configurations),
        runs=list(runs),
        benchmark_prefixes=[benchmark_prefix(storage, meta["namespace"], name) for name in benchmarks],
        population=list(population),
        storage=storage,
        run_prefix=experiment_prefix(storage, meta["namespace"], meta["name"]),
        report_to=RunRef(group=GROUP, version=VERSION, plural=PLURAL, namespace=meta["namespace"], name=meta["name"]),
    )


def _env(config: ExperimentReportConfig) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": CONFIG_ENV, "value": dump_config(config)},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
    ]
    return env + storage_env(config.storage)


def report_labels(exp: Mapping[str, Any]) -> dict[str, str]:
    return {
        **experiment_labels(exp),
        "app.kubernetes.io/name": "kubegym-runner",
        COMPONENT_LABEL: "report",
        REPORT_LABEL: label_value(exp["metadata"]["name"]),
    }


def render_report_job(
    exp: Mapping[str, Any], spec: ExperimentSpec, config: ExperimentReportConfig, settings: Settings
) -> Manifest:
    """The ``batch/v1`` Job running ``kubegym-runner report``, owned by the Experiment.

    CPU only (no GPU defaults), on the template's node selection and Kueue queue, with the
    TrainingRun's pod security and failure policy: a user error fails at once, an S3 outage
    is retried.
    """
    meta = exp["metadata"]
    name = meta["name"]
    cpu_only = spec.template.model_copy(update={"resources": Resources()})
    labels = report_labels(exp)
    job_labels = dict(labels)
    queue = queue_name(cpu_only, settings)
    if queue:
        job_labels[QUEUE_LABEL] = queue
    pod_spec = runner_pod_spec(
        settings,
        image=spec.template.image or settings.runner_image,
        args=["report"],
        env=_env(config),
        resources={
            "requests": {"cpu": str(settings.default_cpu), "memory": str(settings.default_memory)},
            "limits": {"memory": str(settings.default_memory)},
        },
        service_account=report_identity_name(name),
        scheduling=scheduling_of(cpu_only, settings),
        termination_grace_period_seconds=30,
        tmp_size_limit="2Gi",
        home_size_limit="256Mi",
        credentials_of_job=report_job_name(name) if minted_credentials(config.storage) else None,
    )
    job_spec = runner_job_spec(
        pod_spec,
        labels=labels,
        annotations=_annotations(exp),
        suspend=queue is not None,
        backoff_limit=REPORT_BACKOFF_LIMIT,
        active_deadline_seconds=None,
        ttl_seconds_after_finished=settings.default_ttl_seconds_after_finished,
    )
    metadata = child_metadata(exp, report_job_name(name))
    metadata["labels"] = job_labels
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def _annotations(exp: Mapping[str, Any]) -> dict[str, str]:
    return dict(child_metadata(exp, "x")["annotations"])


def render_report_rbac(exp: Mapping[str, Any]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding of the report Job, owned by the Experiment.

    The Role may read this Experiment and patch its status (``resourceNames``): the report
    pod can misreport this Experiment's results at worst, and touch nothing else.
    """
    name = exp["metadata"]["name"]
    identity = report_identity_name(name)
    base = child_metadata(exp, identity)
    base["labels"] = report_labels(exp)
    return identity_manifests(base, own_status_rules(PLURAL, name, read_object=True))


def render_benchmark(
    exp: Mapping[str, Any],
    spec: ExperimentSpec,
    name: str,
    runs: Sequence[tuple[str, str | None]],
) -> Manifest:
    """A final Benchmark of some of the Experiment's runs, owned by the Experiment.

    ``runs`` pairs each run's name with the checkpoint to evaluate: ``None`` for a run that
    succeeded (the Benchmark takes its model through ``trainingRunRef``, with ``checkpoint`` as
    ``spec.benchmark.checkpoint`` says), a model's URI for a run stopped early
    (:func:`~kubegym_operator.builders.experiment_status.stopped_run_model`). The environment is the template's, minus the
    training-only settings (parallel copies, vectorisation, normalisation, which travels with
    the model's VecNormalize statistics).
    """
    assert spec.benchmark is not None
    template = (exp.get("spec") or {}).get("template") or {}
    env = template.get("environment") or {}
    environment = {k: copy.deepcopy(env[k]) for k in ("id", "kwargs", "module", "wrappers") if env.get(k)}
    models: list[Manifest] = []
    for run, checkpoint in runs:
        if checkpoint is None:
            model: Manifest = {"name": run, "trainingRunRef": {"name": run}}
            if spec.benchmark.checkpoint is not None:
                model["checkpoint"] = str(spec.benchmark.checkpoint)
            models.append(model)
        else:
            models.append({"name": run, "uri": checkpoint, "algorithm": template.get("algorithm")})
    bench_spec: Manifest = {
        "models": models,
        "environments": [environment],
        "episodes": spec.benchmark.episodes,
        "deterministic": spec.benchmark.deterministic,
        "nEnvs": spec.benchmark.n_envs,
        "statistic": str(spec.objective.statistic),
    }
    storage = (template.get("checkpoint") or {}).get("storage")
    if storage:
        bench_spec["storage"] = copy.deepcopy(storage)
    if template.get("image"):
        bench_spec["image"] = template["image"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Benchmark",
        "metadata": child_metadata(exp, name),
        "spec": bench_spec,
    }
