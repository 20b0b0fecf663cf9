"""A Benchmark's evaluation Job and the runner identity it uses, rendered as plain manifests.

**One Job per Benchmark**, not one per model: every model must meet the same episodes on the
same software, node type and load, or the comparison measures the cluster instead of the
models (episodes/s and policy latency above all); the statistics need every model's returns
in one place (the ranking, the probability of improvement); and evaluation is short next to
training, so a Job per model would mostly add pod start-up (importing torch) and API traffic.
A model that cannot be evaluated fails its own entries, not the Job. The cost: models are
evaluated one after the other; for very large Benchmarks, split them.

Models given by ``trainingRunRef`` resolve to that run's final model only once it has
succeeded; until then the Benchmark waits (condition ModelsReady=False) and no Job exists.

The pod is the TrainingRun runner's (``restricted`` Pod Security, read-only root filesystem,
credentials only by ``secretKeyRef``), with ``evaluate`` as its command and an identity that
can get and patch this Benchmark's status and nothing else: loading a model unpickles
untrusted code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubegym_operator import API_VERSION, GROUP, VERSION
from kubegym_operator.api.benchmark import KIND, PLURAL, BenchmarkSpec
from kubegym_operator.api.common import Resources, Scheduling
from kubegym_operator.api.trainingrun import TrainingRunSpec
from kubegym_operator.builders.job import (
    COMPONENT_LABEL,
    CONTAINER_NAME,
    GPU_RESOURCE,
    HOME_DIR,
    OPTIONAL_SECRET_KEYS,
    QUEUE_LABEL,
    SECRET_KEYS,
    Manifest,
    RenderError,
    container_security_context,
    pod_failure_policy,
    pod_security_context,
    run_prefix,
)
from kubegym_operator.builders.job import storage_of as training_storage_of
from kubegym_operator.builders.naming import dns_label, label_value
from kubegym_operator.settings import Settings
from kubegym_runner.config import (
    CONFIG_ENV,
    BenchmarkModel,
    EvaluateConfig,
    RunRef,
    S3Storage,
    dump_config,
)

BENCHMARK_LABEL = "kubegym.io/benchmark"
#: The Benchmark's full name (a label value is cut at 63 characters); handlers map events back by it.
BENCHMARK_NAME_ANNOTATION = "kubegym.io/benchmark-name"


def evaluation_job_name(name: str) -> str:
    """Name of a Benchmark's Job (``-bench``: no TrainingRun's Job ends so, they end in ``-train``)."""
    return dns_label(f"{name}-bench")


def evaluator_identity_name(name: str) -> str:
    """ServiceAccount, Role and RoleBinding of a Benchmark's runner (TrainingRuns' end in ``-runner``)."""
    return dns_label(f"{name}-evaluator")


def parse_spec(bench: Mapping[str, Any]) -> BenchmarkSpec:
    """The Benchmark's spec as a model (the API server already validated and defaulted it)."""
    return BenchmarkSpec.model_validate(bench.get("spec") or {})


def owner_reference(bench: Mapping[str, Any]) -> Manifest:
    """Controller reference to the Benchmark: deleting it deletes its Job and identity."""
    meta = bench["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def benchmark_labels(bench: Mapping[str, Any]) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubegym-runner",
        "app.kubernetes.io/managed-by": "kubegym-operator",
        COMPONENT_LABEL: "evaluate",
        BENCHMARK_LABEL: label_value(bench["metadata"]["name"]),
    }


# --- models: URIs and trainingRunRefs ----------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """What the referenced TrainingRuns allow: the models to evaluate, a wait, or a failure.

    ``models`` is set only when every model has a URI. ``waiting`` names the runs that have
    not finished, with why, for the ModelsReady condition. ``failure`` is (reason, message)
    when a referenced run failed or has no model: the Benchmark cannot ever run.
    """

    models: list[BenchmarkModel] | None
    waiting: dict[str, str] = field(default_factory=dict)
    failure: tuple[str, str] | None = None


def referenced_runs(spec: BenchmarkSpec) -> list[str]:
    """Names of the TrainingRuns the Benchmark's models refer to, in spec order, once each."""
    names = [m.training_run_ref.name for m in spec.models if m.training_run_ref is not None]
    return list(dict.fromkeys(names))


def final_model_uri(run: Mapping[str, Any], settings: Settings) -> str | None:
    """The run's final model: what its runner reported, else where its layout puts ``final/``."""
    uri = ((run.get("status") or {}).get("result") or {}).get("modelUri")
    if isinstance(uri, str) and uri:
        return uri
    try:
        spec = TrainingRunSpec.model_validate(run.get("spec") or {})
        storage = training_storage_of(spec, settings)
    except (ValueError, RenderError):
        return None
    meta = run["metadata"]
    return f"s3://{storage.bucket}/{run_prefix(storage, meta['namespace'], meta['name'])}/final/"


def _run_state(run: Mapping[str, Any]) -> str:
    """The run's phase (not its progress: the Benchmark's status changes only when this does)."""
    return str((run.get("status") or {}).get("phase") or "Pending")


def resolve_models(spec: BenchmarkSpec, runs: Mapping[str, Mapping[str, Any] | None], settings: Settings) -> Resolution:
    """The runner's model list, given the referenced runs as they are now (None: not found)."""
    waiting: dict[str, str] = {}
    resolved: list[BenchmarkModel] = []
    for model in spec.models:
        if model.uri is not None:
            resolved.append(BenchmarkModel(name=model.name, uri=model.uri, algorithm=model.algorithm))
            continue
        assert model.training_run_ref is not None  # CEL: exactly one of uri and trainingRunRef
        ref = model.training_run_ref.name
        run = runs.get(ref)
        if run is None:
            waiting[ref] = "not found"
            continue
        status = run.get("status") or {}
        phase = status.get("phase")
        if phase == "Failed":
            why = ": ".join(str(s) for s in (status.get("reason"), status.get("message")) if s)
            return Resolution(
                None,
                failure=(
                    "TrainingRunFailed",
                    f"model {model.name}: TrainingRun {ref} failed" + (f" ({why})" if why else ""),
                ),
            )
        if phase != "Succeeded":
            waiting[ref] = _run_state(run)
            continue
        uri = final_model_uri(run, settings)
        if uri is None:
            return Resolution(
                None,
                failure=("ModelNotAvailable", f"model {model.name}: TrainingRun {ref} succeeded but names no model"),
            )
        algorithm = model.algorithm or (run.get("spec") or {}).get("algorithm")
        resolved.append(BenchmarkModel(name=model.name, uri=uri, algorithm=algorithm))
    if waiting:
        return Resolution(None, waiting=waiting)
    return Resolution(resolved)


# --- the Job ----------------------------------------------------------------------------------


def storage_of(spec: BenchmarkSpec, settings: Settings) -> S3Storage:
    """The storage the Benchmark reads models from and writes reports to."""
    if spec.storage is not None:
        return S3Storage.model_validate(spec.storage.model_dump())
    if settings.default_storage is None or not settings.default_storage.secret_ref:
        raise RenderError(
            "StorageNotConfigured",
            "spec.storage is not set and the operator has no default storage with a credentials Secret; "
            "set spec.storage (bucket, secretRef, endpoint)",
        )
    return settings.default_storage


def benchmark_prefix(storage: S3Storage, namespace: str, name: str) -> str:
    """Key prefix of a Benchmark's artifacts: ``<prefix>/<namespace>/benchmarks/<name>``."""
    return run_prefix(storage, namespace, f"benchmarks/{name}")


def build_evaluate_config(bench: Mapping[str, Any], models: list[BenchmarkModel], settings: Settings) -> EvaluateConfig:
    """The runner's configuration, with the models already resolved to URIs."""
    spec = parse_spec(bench)
    meta = bench["metadata"]
    storage = storage_of(spec, settings)
    return EvaluateConfig(
        models=models,
        environments=spec.environments,
        episodes=spec.episodes,
        seeds=spec.seeds,
        deterministic=spec.deterministic,
        n_envs=spec.n_envs,
        statistic=spec.statistic,
        device=spec.device,
        storage=storage,
        run_prefix=benchmark_prefix(storage, meta["namespace"], meta["name"]),
        report_to=RunRef(group=GROUP, version=VERSION, plural=PLURAL, namespace=meta["namespace"], name=meta["name"]),
        report_interval_seconds=settings.progress_interval_seconds,
    )


def placement(resources: Resources, scheduling: Scheduling, settings: Settings) -> tuple[Manifest, Manifest]:
    """Container resources and pod scheduling fields, with the operator's GPU defaults for GPU pods
    (the same rules as a TrainingRun's runner)."""
    cpu = resources.cpu if resources.cpu is not None else settings.default_cpu
    memory = resources.memory if resources.memory is not None else settings.default_memory
    limits: dict[str, str] = {"memory": str(memory)}
    if resources.gpu > 0:
        limits[GPU_RESOURCE] = str(resources.gpu)
    node_selector = dict(scheduling.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in scheduling.tolerations]
    if resources.gpu > 0:
        node_selector = {**settings.gpu_node_selector, **node_selector}
        defaults = [t.model_dump(by_alias=True, exclude_none=True) for t in settings.gpu_tolerations]
        tolerations += [t for t in defaults if t not in tolerations]
    pod: Manifest = {}
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    if scheduling.affinity:
        pod["affinity"] = scheduling.affinity
    if scheduling.priority_class_name:
        pod["priorityClassName"] = scheduling.priority_class_name
    return {"requests": {"cpu": str(cpu), "memory": str(memory)}, "limits": limits}, pod


def _env(config: EvaluateConfig, gpu: int) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": CONFIG_ENV, "value": dump_config(config)},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "KUBEGYM_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBEGYM_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if gpu == 0:
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    secret = config.storage.secret_ref
    if secret:
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}} for k in SECRET_KEYS]
        env += [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k, "optional": True}}}
            for k in OPTIONAL_SECRET_KEYS
        ]
    return env


def queue_name(spec: BenchmarkSpec, settings: Settings) -> str | None:
    return spec.scheduling.queue_name or settings.default_queue_name


def ttl_seconds_after_finished(spec: BenchmarkSpec, settings: Settings) -> int | None:
    ttl = spec.run_policy.ttl_seconds_after_finished
    return ttl if ttl is not None else settings.default_ttl_seconds_after_finished


def render_job(bench: Mapping[str, Any], settings: Settings, models: list[BenchmarkModel]) -> Manifest:
    """The evaluation Job (``batch/v1``, owned by the Benchmark). Created suspended when a Kueue
    queue is to admit it. Raises :class:`RenderError` when no storage is configured."""
    spec = parse_spec(bench)
    meta = bench["metadata"]
    config = build_evaluate_config(bench, models, settings)
    labels = benchmark_labels(bench)
    job_labels = dict(labels)
    queue = queue_name(spec, settings)
    if queue:
        job_labels[QUEUE_LABEL] = queue
    resources, scheduling = placement(spec.resources, spec.scheduling, settings)
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": spec.image or settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kubegym-runner"],
        "args": ["evaluate"],
        "env": _env(config, spec.resources.gpu),
        "resources": resources,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME_DIR}],
    }
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "serviceAccountName": evaluator_identity_name(meta["name"]),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_period_seconds,
        "securityContext": pod_security_context(),
        **scheduling,
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": str(settings.tmp_size_limit)}},
            {"name": "home", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    job_spec: Manifest = {
        "suspend": queue is not None,
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": spec.run_policy.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": labels, "annotations": {BENCHMARK_NAME_ANNOTATION: meta["name"]}},
            "spec": pod_spec,
        },
    }
    if spec.run_policy.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    ttl = ttl_seconds_after_finished(spec, settings)
    if ttl is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": evaluation_job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "annotations": {BENCHMARK_NAME_ANNOTATION: meta["name"]},
            "ownerReferences": [owner_reference(bench)],
        },
        "spec": job_spec,
    }


def ttl_patch(bench: Mapping[str, Any], job: Mapping[str, Any], settings: Settings) -> list[Manifest]:
    """JSON Patch keeping the Job's ``ttlSecondsAfterFinished`` equal to the Benchmark's (its one
    mutable field); empty when equal."""
    wanted = ttl_seconds_after_finished(parse_spec(bench), settings)
    live = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if wanted == live:
        return []
    if wanted is None:
        return [{"op": "remove", "path": "/spec/ttlSecondsAfterFinished"}]
    return [{"op": "add", "path": "/spec/ttlSecondsAfterFinished", "value": wanted}]


# --- the evaluator's identity -----------------------------------------------------------------


def evaluator_role_rules(name: str) -> list[Manifest]:
    """Get and patch this Benchmark's status: nothing else, not even the Benchmark itself."""
    return [
        {
            "apiGroups": [GROUP],
            "resources": [f"{PLURAL}/status"],
            "resourceNames": [name],
            "verbs": ["get", "patch"],
        }
    ]


def render_evaluator_rbac(bench: Mapping[str, Any]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding of the evaluation pod, owned by the Benchmark.

    Create them before the Job: a pod whose ServiceAccount is missing is never created.
    """
    meta = bench["metadata"]
    name = evaluator_identity_name(meta["name"])
    base: dict[str, Any] = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": benchmark_labels(bench),
        "ownerReferences": [owner_reference(bench)],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": copy.deepcopy(base),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": copy.deepcopy(base),
            "rules": evaluator_role_rules(meta["name"]),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": copy.deepcopy(base),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": meta["namespace"]}],
        },
    ]
