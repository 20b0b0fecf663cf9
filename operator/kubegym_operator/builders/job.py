"""The runner Job of a TrainingRun, rendered as a plain manifest (no API calls).

The pod passes the ``restricted`` Pod Security Standard: non-root UID 65532, no privilege
escalation, no capabilities, RuntimeDefault seccomp, a read-only root filesystem with
emptyDirs for /tmp and $HOME. The runner's configuration travels in ``KUBEGYM_CONFIG``. No
secret value is ever in the manifest: the operator's default storage (STS mode) reaches the pod
as the run's own credentials Secret, mounted as a volume (:mod:`kubegym_operator.builders.
credentials`); a storage with a ``secretRef`` (a spec's own, or the default in static mode) as
``secretKeyRef``, and so do the keys of ``spec.tracking.mlflow.credentialsSecretRef`` (MLflow's
``MLFLOW_TRACKING_*`` variables); the runner's configuration only says which MLflow run it logs to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubegym_api import GROUP, VERSION
from kubegym_api.base import fields_of
from kubegym_api.envvars import CONFIG_ENV, CPU_LIMIT_ENV, CPU_REQUEST_ENV
from kubegym_api.exitcodes import EXIT_USER_ERROR
from kubegym_api.hyperparameters import parse_hyperparameters
from kubegym_api.pyliteral import LiteralError
from kubegym_api.runnerconfig import EvaluateConfig, RunRef, TrainConfig, dump_config
from kubegym_api.storage import S3Storage
from kubegym_api.tracking import CREDENTIAL_ENV, MlflowRunConfig, RunIdentity
from kubegym_api.trainingrun import KIND, PLURAL, AgentSpec, CheckpointPolicy, ModelSelection, TrainingRunSpec
from kubegym_api.workload import Resources, Scheduling, Toleration
from kubegym_operator.builders import credentials
from kubegym_operator.builders.artifacts import ARTIFACTS_ANNOTATION, ArtifactLocation, run_location
from kubegym_operator.builders.errors import RenderError as RenderError
from kubegym_operator.builders.naming import (
    label_value,
    runner_identity_name,
    training_job_name,
)
from kubegym_operator.builders.ownership import controller_reference
from kubegym_operator.settings import Settings, StorageCredentials

Manifest = dict[str, Any]

CONTAINER_NAME = "runner"
RUNNER_UID = 65532
HOME_DIR = "/home/kubegym"
GPU_RESOURCE = "nvidia.com/gpu"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SCHEDULING_ANNOTATION = "kubegym.io/scheduling-hash"
RUN_LABEL = "kubegym.io/training-run"
#: The run's full name (a label value is cut at 63 characters); handlers map Job and pod events back by it.
RUN_NAME_ANNOTATION = "kubegym.io/training-run-name"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: The checkpoint ``resumeFrom.trainingRun`` named when the Job was rendered (its pod's
#: ``resume_from``); the session policy of a credentials refresh reads it from here.
RESUME_FROM_ANNOTATION = "kubegym.io/resume-from"
#: Keys of the storage Secret, read by boto3's default credential chain.
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OPTIONAL_SECRET_KEYS = ("AWS_SESSION_TOKEN",)


def parse_spec(run: Mapping[str, Any]) -> TrainingRunSpec:
    """The run's spec as a model (the API server already validated and defaulted it)."""
    return TrainingRunSpec.model_validate(run.get("spec") or {})


def owner_reference(run: Mapping[str, Any]) -> Manifest:
    """Controller reference to the run: deleting it deletes what it owns."""
    return controller_reference(run, KIND)


def run_labels(run: Mapping[str, Any]) -> dict[str, str]:
    """Labels on everything a run owns, to find and to group it."""
    return {
        "app.kubernetes.io/name": "kubegym-runner",
        "app.kubernetes.io/managed-by": "kubegym-operator",
        COMPONENT_LABEL: "train",
        RUN_LABEL: label_value(run["metadata"]["name"]),
    }


def queue_name(spec: TrainingRunSpec, settings: Settings) -> str | None:
    """The Kueue LocalQueue of the run, if any (the run's own wins over the default)."""
    return spec.scheduling.queue_name or settings.default_queue_name


def storage_of(spec: TrainingRunSpec, settings: Settings) -> S3Storage:
    """The storage the run writes to: its own, else the operator's default."""
    if spec.checkpoint.storage is not None:
        return S3Storage.model_validate(spec.checkpoint.storage.model_dump())
    if settings.default_storage is None:
        raise RenderError(
            "StorageNotConfigured",
            "spec.checkpoint.storage is not set and the operator has no default storage; "
            "set spec.checkpoint.storage (bucket, secretRef, endpoint)",
        )
    if settings.storage_credentials == StorageCredentials.static and not settings.default_storage.secret_ref:
        raise RenderError(
            "StorageNotConfigured",
            "the operator's default storage names no credentials Secret "
            "(KUBEGYM_STORAGE_SECRET); set spec.checkpoint.storage.secretRef",
        )
    return settings.default_storage


#: Where a run's status reports each model (the runner writes them: progress of its own run).
_REPORTED_MODEL = {
    ModelSelection.latest: ("checkpoints", "latestUri"),
    ModelSelection.best: ("best", "uri"),
    ModelSelection.final: ("result", "modelUri"),
}

#: What each choice is, for a message when a run has none (yet).
MISSING_MODEL = {
    ModelSelection.latest: "no checkpoint",
    ModelSelection.best: "no best model (it keeps one only with spec.evaluation, from its first periodic evaluation)",
    ModelSelection.final: "no final model (it has not finished training)",
}


def reported_model_uri(run: Mapping[str, Any], selection: ModelSelection) -> str | None:
    """The URI another run's status reports for ``selection``, unchecked (see :func:`model_uri_of`)."""
    section, key = _REPORTED_MODEL[selection]
    uri = ((run.get("status") or {}).get(section) or {}).get(key)
    return uri if isinstance(uri, str) and uri else None


def model_uri_of(run: Mapping[str, Any], selection: ModelSelection, settings: Settings) -> str | None:
    """The model ``selection`` names of another run (``resumeFrom.trainingRun``, a Benchmark's
    ``trainingRunRef``), as its status reports it: only one inside that run's own folder
    (:func:`~kubegym_operator.builders.artifacts.run_location`), since its runner writes the URI and
    may point it anywhere; None when it has none."""
    uri = reported_model_uri(run, selection)
    if uri is None:
        return None
    try:
        location = run_location(run, storage_of(parse_spec(run), settings))
    except (RenderError, ValueError):
        return None
    return uri if location.contains(uri) else None


def checkpoint_uri_of(run: Mapping[str, Any], settings: Settings) -> str | None:
    """The newest checkpoint another run reported (``resumeFrom.trainingRun``'s default choice)."""
    return model_uri_of(run, ModelSelection.latest, settings)


def check_literals(hyperparameters: Mapping[str, Any], where: str) -> None:
    """Refuse hyperparameter strings that are not safe literals (code, unknown names) before any Job
    exists: the runner parses them the same way (:func:`kubegym_api.hyperparameters.parse_hyperparameters`)."""
    try:
        parse_hyperparameters(hyperparameters, where)
    except LiteralError as e:
        raise RenderError("InvalidHyperparameters", str(e)) from e


def experiment_of(run: Mapping[str, Any]) -> RunIdentity | None:
    """The Experiment that controls this run (a trial), from its controller reference."""
    meta = run["metadata"]
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Experiment" and ref.get("apiVersion", "").startswith(GROUP):
            return RunIdentity(kind="Experiment", namespace=meta["namespace"], name=ref["name"], uid=ref["uid"])
    return None


def mlflow_config(run: Mapping[str, Any], spec: TrainingRunSpec) -> MlflowRunConfig | None:
    """The MLflow run of this TrainingRun (``spec.tracking.mlflow``): the experiment defaults to
    ``<namespace>/<name>`` of the run, or of its Experiment for a trial, whose parent run it is a child of."""
    mlflow = spec.tracking.mlflow if spec.tracking is not None else None
    if mlflow is None:
        return None
    meta = run["metadata"]
    parent = experiment_of(run)
    owner = parent.name if parent is not None else meta["name"]
    return MlflowRunConfig(
        tracking_uri=mlflow.tracking_uri,
        experiment_name=mlflow.experiment_name or f"{meta['namespace']}/{owner}",
        run=RunIdentity(
            kind="TrainingRun", namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid") or meta["name"]
        ),
        parent=parent,
        credentials=mlflow.credentials_secret_ref is not None,
    )


def tracking_env(spec: TrainingRunSpec) -> list[Manifest]:
    """The tracking credentials Secret's keys as ``secretKeyRef`` (each optional: basic auth or a token)."""
    mlflow = spec.tracking.mlflow if spec.tracking is not None else None
    if mlflow is None or mlflow.credentials_secret_ref is None:
        return []
    secret = mlflow.credentials_secret_ref
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key, env in CREDENTIAL_ENV.items()
    ]


def build_train_config(run: Mapping[str, Any], settings: Settings, *, resume_uri: str | None = None) -> TrainConfig:
    """The runner's configuration for this run: the spec's :class:`AgentSpec` fields as they are,
    the checkpoint policy without its storage, and where the run's artifacts and status live (the
    folder :func:`~kubegym_operator.builders.artifacts.run_location` gives: the recorded one, in
    its recorded bucket, once there is one).

    ``resume_uri`` is the resolved model of ``spec.resumeFrom.trainingRun`` (its
    ``resumeFrom.checkpoint``, see :func:`model_uri_of`); the handler looks the other run up, this stays pure.
    """
    spec = parse_spec(run)
    meta = run["metadata"]
    check_literals(spec.hyperparameters, "spec.hyperparameters")
    storage = storage_of(spec, settings)
    location = run_location(run, storage)
    if location.bucket != storage.bucket:
        storage = storage.model_copy(update={"bucket": location.bucket})
    resume_from: str | None = None
    if spec.resume_from is not None:
        if spec.resume_from.uri:
            resume_from = spec.resume_from.uri
        elif resume_uri:
            resume_from = resume_uri
        else:
            selection = spec.resume_from.checkpoint or ModelSelection.latest
            raise RenderError(
                "ResumeSourceNotFound",
                f"resumeFrom.trainingRun: TrainingRun {spec.resume_from.training_run!r} has "
                f"{MISSING_MODEL[selection]} to resume from yet (resumeFrom.checkpoint: {selection})",
            )
    return TrainConfig(
        **fields_of(spec, AgentSpec),
        checkpoint=CheckpointPolicy(**fields_of(spec.checkpoint, CheckpointPolicy)),
        storage=storage,
        run_prefix=location.prefix,
        run_uid=meta.get("uid"),
        resume_from=resume_from,
        report_to=RunRef(
            group=GROUP,
            version=VERSION,
            plural=PLURAL,
            namespace=meta["namespace"],
            name=meta["name"],
        ),
        report_interval_seconds=settings.progress_interval_seconds,
        mlflow=mlflow_config(run, spec),
    )


def secret_env(secret: str) -> list[Manifest]:
    """Storage credentials as ``secretKeyRef`` only, so no secret value is ever in a manifest."""
    env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in SECRET_KEYS]
    env += [
        {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
        }
        for key in OPTIONAL_SECRET_KEYS
    ]
    return env


def storage_env(storage: S3Storage) -> list[Manifest]:
    """How a runner finds its storage credentials: the ``secretRef``'s keys by reference, else the
    file of the run's own minted credentials (:func:`minted_credentials`)."""
    if storage.secret_ref:
        return secret_env(storage.secret_ref)
    return credentials.env()


def minted_credentials(storage: S3Storage) -> bool:
    """Whether a pod of this storage gets operator-minted credentials: it names no Secret (the
    default storage in STS mode; a spec's own storage always names one)."""
    return not storage.secret_ref


def runner_env(config: TrainConfig | EvaluateConfig, gpu: int) -> list[Manifest]:
    """Environment of a training or evaluation runner: its config, writable dirs, pod identity, credentials."""
    env: list[Manifest] = [
        {"name": CONFIG_ENV, "value": dump_config(config)},
        {"name": "HOME", "value": HOME_DIR},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "KUBEGYM_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBEGYM_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        # The runner sizes torch's threads to its share of the node, not to every core it sees.
        {"name": CPU_REQUEST_ENV, "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": CPU_LIMIT_ENV, "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
    ]
    if gpu == 0:
        # CUDA images set NVIDIA_VISIBLE_DEVICES=all; on a GPU node that would hand a CPU run
        # every GPU behind the device plugin's back.
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    return env + storage_env(config.storage)


def _toleration(t: Toleration) -> Manifest:
    return t.model_dump(by_alias=True, exclude_none=True)


def placement(resources: Resources, scheduling: Scheduling, settings: Settings) -> tuple[Manifest, Manifest]:
    """Container resources and pod scheduling fields, with the operator's GPU defaults for GPU pods
    (one rule for every runner pod, whichever kind owns it)."""
    cpu = resources.cpu if resources.cpu is not None else settings.default_cpu
    memory = resources.memory if resources.memory is not None else settings.default_memory
    limits: dict[str, str] = {"memory": str(memory)}
    if resources.gpu > 0:
        limits[GPU_RESOURCE] = str(resources.gpu)
    node_selector = dict(scheduling.node_selector)
    tolerations = [_toleration(t) for t in scheduling.tolerations]
    if resources.gpu > 0:
        node_selector = {**settings.gpu_node_selector, **node_selector}
        tolerations += [t for t in map(_toleration, settings.gpu_tolerations) if t not in tolerations]
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


def scheduling_of(spec: TrainingRunSpec, settings: Settings) -> Manifest:
    """Pod-spec scheduling fields: the run's, plus the operator's GPU defaults for GPU runs."""
    return placement(spec.resources, spec.scheduling, settings)[1]


def pod_failure_policy() -> Manifest:
    """Disruptions (preemption, eviction, drain) never count against backoffLimit; a user
    error fails the Job at once. Disruption is checked first: it is never the user's fault."""
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [EXIT_USER_ERROR],
                },
            },
        ]
    }


def container_security_context() -> Manifest:
    """What the ``restricted`` Pod Security Standard demands of every container."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_UID,
        "fsGroup": RUNNER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def ttl_seconds_after_finished(spec: TrainingRunSpec, settings: Settings) -> int | None:
    ttl = spec.run_policy.ttl_seconds_after_finished
    return ttl if ttl is not None else settings.default_ttl_seconds_after_finished


def initial_suspend(spec: TrainingRunSpec, settings: Settings) -> bool:
    """Suspended at creation when the user says so or Kueue is to admit it (Kueue unsuspends
    admitted Jobs; creating them unsuspended would start pods before admission)."""
    return spec.suspend or queue_name(spec, settings) is not None


def runner_pod_spec(
    settings: Settings,
    *,
    image: str,
    args: list[str],
    env: list[Manifest],
    resources: Manifest,
    service_account: str,
    scheduling: Manifest,
    termination_grace_period_seconds: int,
    tmp_size_limit: str,
    home_size_limit: str,
    credentials_of_job: str | None = None,
) -> Manifest:
    """The pod every runner command gets: ``restricted`` security, a read-only root filesystem with
    emptyDirs for /tmp and $HOME, and the given identity's token mounted explicitly.

    ``credentials_of_job`` names the Job whose per-run credentials Secret the pod mounts (minted
    credentials, :mod:`~kubegym_operator.builders.credentials`); None when they come by reference.
    """
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kubegym-runner"],
        "args": args,
        "env": env,
        "resources": resources,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "home", "mountPath": HOME_DIR},
        ],
    }
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_period_seconds,
        "securityContext": pod_security_context(),
        **scheduling,
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size_limit}},
            {"name": "home", "emptyDir": {"sizeLimit": home_size_limit}},
        ],
    }
    if credentials_of_job is not None:
        container["volumeMounts"].append(credentials.volume_mount())
        pod_spec["volumes"].append(credentials.volume(credentials_of_job))
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return pod_spec


def runner_job_spec(
    pod_spec: Manifest,
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    suspend: bool,
    backoff_limit: int,
    active_deadline_seconds: int | None,
    ttl_seconds_after_finished: int | None,
) -> Manifest:
    """A single-pod Job spec whose failures follow :func:`pod_failure_policy`; unset optional fields are left out."""
    job_spec: Manifest = {
        "suspend": suspend,
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    if active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = active_deadline_seconds
    if ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return job_spec


def render_job(run: Mapping[str, Any], settings: Settings, *, resume_uri: str | None = None) -> Manifest:
    """The runner Job of a TrainingRun (``batch/v1`` manifest, owned by the run).

    Raises :class:`RenderError` when the run cannot work (no storage, resume source without
    a checkpoint): the handler turns it into phase Failed with that reason. The Job carries the
    run's folder (:data:`~kubegym_operator.builders.artifacts.ARTIFACTS_ANNOTATION`), which the
    status then records.
    """
    spec = parse_spec(run)
    meta = run["metadata"]
    config = build_train_config(run, settings, resume_uri=resume_uri)
    labels = run_labels(run)
    job_labels = dict(labels)
    queue = queue_name(spec, settings)
    if queue:
        job_labels[QUEUE_LABEL] = queue
    job_name = training_job_name(meta["name"])
    pod_spec = runner_pod_spec(
        settings,
        image=spec.image or settings.runner_image,
        args=["train"],
        env=runner_env(config, spec.resources.gpu) + tracking_env(spec),
        resources=placement(spec.resources, spec.scheduling, settings)[0],
        service_account=runner_identity_name(meta["name"]),
        scheduling=scheduling_of(spec, settings),
        termination_grace_period_seconds=settings.termination_grace_period_seconds,
        tmp_size_limit=str(settings.tmp_size_limit),
        home_size_limit="1Gi",
        credentials_of_job=job_name if minted_credentials(config.storage) else None,
    )
    job_spec = runner_job_spec(
        pod_spec,
        labels=labels,
        annotations={RUN_NAME_ANNOTATION: meta["name"]},
        suspend=initial_suspend(spec, settings),
        backoff_limit=spec.run_policy.backoff_limit,
        active_deadline_seconds=spec.run_policy.active_deadline_seconds,
        ttl_seconds_after_finished=ttl_seconds_after_finished(spec, settings),
    )
    annotations = {
        SCHEDULING_ANNOTATION: scheduling_hash(spec, settings),
        RUN_NAME_ANNOTATION: meta["name"],
        ARTIFACTS_ANNOTATION: ArtifactLocation(config.storage.bucket, config.run_prefix).uri,
    }
    if resume_uri is not None and spec.resume_from is not None and spec.resume_from.training_run:
        annotations[RESUME_FROM_ANNOTATION] = resume_uri
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": meta["namespace"],
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": job_spec,
    }


def resume_uri_of(job: Mapping[str, Any]) -> str | None:
    """The checkpoint ``resumeFrom.trainingRun`` resolved to when ``job`` was rendered (the other
    run moves on; its pod was configured with this one)."""
    uri = ((job.get("metadata") or {}).get("annotations") or {}).get(RESUME_FROM_ANNOTATION)
    return uri if isinstance(uri, str) and uri else None


@dataclass(frozen=True)
class JobUpdate:
    """How to bring a live Job in line with the run's mutable fields.

    ``patch`` is a JSON Patch (``application/json-patch+json``), empty when nothing changed.
    ``recreate`` means the Job cannot take a scheduling change in place (it is not suspended
    or has started): delete it (propagation Background) and render it anew. This only happens
    before the runner ever ran, since the CRD freezes scheduling once status.startTime is set.
    """

    patch: list[Manifest]
    recreate: bool = False


_TEMPLATE_SCHEDULING = ("nodeSelector", "tolerations", "affinity")


def scheduling_hash(spec: TrainingRunSpec, settings: Settings) -> str:
    """Digest of the scheduling the operator rendered, kept as a Job annotation.

    Drift is judged against this and not against the live pod template, because Kueue
    injects its flavor's node selectors into admitted Jobs.
    """
    rendered = {**scheduling_of(spec, settings), "queue": queue_name(spec, settings)}
    text = json.dumps(rendered, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _set(path: str, live: Any, desired: Any) -> list[Manifest]:
    if desired == live:
        return []
    if desired is None:
        return [{"op": "remove", "path": path}]
    return [{"op": "add", "path": path, "value": desired}]


def plan_job_update(run: Mapping[str, Any], job: Mapping[str, Any], settings: Settings) -> JobUpdate:
    """The changes a live Job needs after an edit of the run's mutable fields.

    ``suspend`` follows the run, except that with a Kueue queue the operator only ever
    suspends: admission (unsuspending) is Kueue's. ``ttlSecondsAfterFinished`` follows the
    run. Scheduling follows the run until the runner first started; a suspended Job that
    never started takes it in place (the Job API allows exactly that), any other is recreated.
    """
    spec = parse_spec(run)
    live_spec = job.get("spec") or {}
    live_meta = job.get("metadata") or {}
    ops: list[Manifest] = []
    live_suspend = bool(live_spec.get("suspend"))
    queue = queue_name(spec, settings)
    if spec.suspend and not live_suspend:
        ops += _set("/spec/suspend", live_suspend, True)
    elif not spec.suspend and live_suspend and queue is None:
        ops += _set("/spec/suspend", live_suspend, False)
    ops += _set(
        "/spec/ttlSecondsAfterFinished",
        live_spec.get("ttlSecondsAfterFinished"),
        ttl_seconds_after_finished(spec, settings),
    )

    run_started = bool((run.get("status") or {}).get("startTime"))
    wanted_hash = scheduling_hash(spec, settings)
    live_hash = (live_meta.get("annotations") or {}).get(SCHEDULING_ANNOTATION)
    if run_started or live_hash == wanted_hash:
        return JobUpdate(patch=ops)
    desired = scheduling_of(spec, settings)
    live_pod = (live_spec.get("template") or {}).get("spec") or {}
    job_started = bool((job.get("status") or {}).get("startTime"))
    if not live_suspend or job_started:
        return JobUpdate(patch=[], recreate=True)
    if live_pod.get("priorityClassName") != desired.get("priorityClassName"):
        return JobUpdate(patch=[], recreate=True)
    for key in _TEMPLATE_SCHEDULING:
        ops += _set(f"/spec/template/spec/{key}", live_pod.get(key), desired.get(key))
    live_labels = live_meta.get("labels") or {}
    ops += _set(f"/metadata/labels/{_escape(QUEUE_LABEL)}", live_labels.get(QUEUE_LABEL), queue)
    ops.append(
        {
            "op": "add",
            "path": f"/metadata/annotations/{_escape(SCHEDULING_ANNOTATION)}",
            "value": wanted_hash,
        }
    )
    return JobUpdate(patch=ops)
