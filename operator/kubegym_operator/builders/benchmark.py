"""A Benchmark's evaluation Job and the runner identity it uses, rendered as plain manifests.

**One Job per Benchmark**, not one per model: every model must meet the same episodes on the
same software, node type and load, or the comparison measures the cluster instead of the
models (episodes/s and policy latency above all); the statistics need every model's returns
in one place (the ranking, the probability of improvement); and evaluation is short next to
training, so a Job per model would mostly add pod start-up (importing torch) and API traffic.
A model that cannot be evaluated fails its own entries, not the Job. The cost: models are
evaluated one after the other; for very large Benchmarks, split them.

Models given by ``trainingRunRef`` resolve to the model their ``checkpoint`` chooses (final by
default, best, latest) only once the run has succeeded; until then the Benchmark waits (condition
ModelsReady=False) and no Job exists. A run that succeeded without the chosen model (``best`` of a
run without periodic evaluation) fails the Benchmark at once (ModelNotAvailable, naming the model,
the run and the choice): waiting would never help, and the other models' ranking without it
would not be the comparison asked for.

The pod is the TrainingRun runner's (``restricted`` Pod Security, read-only root filesystem,
credentials minted for it or by ``secretKeyRef``), with ``evaluate`` as its command and an
identity that can get and patch this Benchmark's status and nothing else: loading a model
unpickles untrusted code. With minted credentials its storage access is as narrow: read its
models' folders, write its own reports (:mod:`kubegym_operator.builders.credentials`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubegym_api import GROUP, VERSION
from kubegym_api.base import fields_of
from kubegym_api.benchmark import KIND, PLURAL, BenchmarkSettings, BenchmarkSpec
from kubegym_api.runnerconfig import BenchmarkModel, EvaluateConfig, RunRef
from kubegym_api.storage import S3Storage
from kubegym_api.trainingrun import ModelSelection, TrainingRunSpec
from kubegym_operator.builders.artifacts import namespaced_prefix, run_location
from kubegym_operator.builders.job import (
    COMPONENT_LABEL,
    MISSING_MODEL,
    QUEUE_LABEL,
    Manifest,
    RenderError,
    minted_credentials,
    model_uri_of,
    placement,
    runner_env,
    runner_job_spec,
    runner_pod_spec,
)
from kubegym_operator.builders.job import storage_of as training_storage_of
from kubegym_operator.builders.naming import dns_label, label_value
from kubegym_operator.builders.ownership import controller_reference, identity_manifests, own_status_rules
from kubegym_operator.settings import Settings

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
    return controller_reference(bench, KIND)


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
    """The run's final model: ``final/`` in the run's own folder (``status.artifacts``, written by
    the operator; see :func:`~kubegym_operator.builders.artifacts.run_location`). What its runner
    reported in ``status.result.modelUri`` is taken only when it lies in that folder."""
    reported = ((run.get("status") or {}).get("result") or {}).get("modelUri")
    reported = reported if isinstance(reported, str) and reported else None
    try:
        spec = TrainingRunSpec.model_validate(run.get("spec") or {})
        location = run_location(run, training_storage_of(spec, settings))
    except (ValueError, RenderError):
        return reported
    if reported is not None and location.contains(reported):
        return reported
    return f"{location.uri}final/"


def chosen_model_uri(run: Mapping[str, Any], selection: ModelSelection, settings: Settings) -> str | None:
    """The model of a succeeded run that ``selection`` names: its final model (see
    :func:`final_model_uri`), else what its status reports for best or latest, inside its own folder."""
    if selection == ModelSelection.final:
        return final_model_uri(run, settings)
    return model_uri_of(run, selection, settings)


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
        selection = model.checkpoint or ModelSelection.final
        uri = chosen_model_uri(run, selection, settings)
        if uri is None:
            return Resolution(
                None,
                failure=(
                    "ModelNotAvailable",
                    f"model {model.name}: TrainingRun {ref} succeeded with {MISSING_MODEL[selection]} "
                    f"(checkpoint: {selection})",
                ),
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
    if settings.default_storage is None or not (settings.default_storage.secret_ref or settings.mints_credentials):
        raise RenderError(
            "StorageNotConfigured",
            "spec.storage is not set and the operator has no default storage with credentials; "
            "set spec.storage (bucket, secretRef, endpoint)",
        )
    return settings.default_storage


def benchmark_prefix(storage: S3Storage, namespace: str, name: str) -> str:
    """Key prefix of a Benchmark's artifacts: ``<prefix>/<namespace>/benchmarks/<name>``."""
    return namespaced_prefix(storage, namespace, "benchmarks", name)


def build_evaluate_config(bench: Mapping[str, Any], models: list[BenchmarkModel], settings: Settings) -> EvaluateConfig:
    """The runner's configuration: the spec's :class:`BenchmarkSettings` and environments as they
    are, with the models already resolved to URIs."""
    spec = parse_spec(bench)
    meta = bench["metadata"]
    storage = storage_of(spec, settings)
    return EvaluateConfig(
        **fields_of(spec, BenchmarkSettings),
        models=models,
        environments=spec.environments,
        storage=storage,
        run_prefix=benchmark_prefix(storage, meta["namespace"], meta["name"]),
        report_to=RunRef(group=GROUP, version=VERSION, plural=PLURAL, namespace=meta["namespace"], name=meta["name"]),
        report_interval_seconds=settings.progress_interval_seconds,
    )


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
    job_name = evaluation_job_name(meta["name"])
    pod_spec = runner_pod_spec(
        settings,
        image=spec.image or settings.runner_image,
        args=["evaluate"],
        env=runner_env(config, spec.resources.gpu),
        resources=resources,
        service_account=evaluator_identity_name(meta["name"]),
        scheduling=scheduling,
        termination_grace_period_seconds=settings.termination_grace_period_seconds,
        tmp_size_limit=str(settings.tmp_size_limit),
        home_size_limit="1Gi",
        credentials_of_job=job_name if minted_credentials(config.storage) else None,
    )
    job_spec = runner_job_spec(
        pod_spec,
        labels=labels,
        annotations={BENCHMARK_NAME_ANNOTATION: meta["name"]},
        suspend=queue is not None,
        backoff_limit=spec.run_policy.backoff_limit,
        active_deadline_seconds=spec.run_policy.active_deadline_seconds,
        ttl_seconds_after_finished=ttl_seconds_after_finished(spec, settings),
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
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
    return own_status_rules(PLURAL, name, read_object=False)


def render_evaluator_rbac(bench: Mapping[str, Any]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding of the evaluation pod, owned by the Benchmark.

    Create them before the Job: a pod whose ServiceAccount is missing is never created.
    """
    meta = bench["metadata"]
    base: dict[str, Any] = {
        "name": evaluator_identity_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": benchmark_labels(bench),
        "ownerReferences": [owner_reference(bench)],
    }
    return identity_manifests(base, evaluator_role_rules(meta["name"]))
