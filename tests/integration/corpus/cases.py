"""The bad-input corpus as data: one :class:`Case` per way a user can get a spec wrong.

A case names the manifests to apply (built with the kinds' own test builders, so they are the
small CPU specs every other integration test uses) and where the input must be stopped:

- :class:`Rejected`: ``kubectl apply`` fails (the OpenAPI schema, a CEL rule, strict field
  validation or kubectl itself) with every needle in its error, and the object does not exist;
- :class:`Failed`: the object is accepted, then ends ``Failed`` with a reason and a message that
  holds every needle, before any training or evaluation happened, in at most ``max_pods`` runner
  pods (1: the user error was not retried; 0: no Job was ever created);
- :class:`Waits`: the object is accepted and held ``Pending`` with a reason and no Job (a
  Benchmark of a TrainingRun that does not exist: the run may still be created);
- :class:`Works`: input that looks bad but is valid (names past 63 characters, dots): the run
  trains to ``Succeeded`` and its Job's name is a DNS label derived from the name.

Adding a case is one entry in :data:`CASES`. The subject of a case (the object its expectation
is about) is the last manifest its :class:`Build` returns, named after the case unless
``object_name`` says otherwise; earlier manifests are what it needs (the TrainingRun a Benchmark
refers to). ``prepare`` runs before anything is applied (uploads, Secrets), ``after_apply`` once
everything is applied (deleting a run a Benchmark waits for). :mod:`.test_corpus` runs the table.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubegym_localcluster import layout
from kubegym_localcluster.kube import ApiError, Kube
from tests.integration.benchmark.support import benchmark
from tests.integration.experiment.support import experiment
from tests.integration.trainingrun.support import training_run
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

Manifest = dict[str, Any]

#: Runner pods of the corpus that run at once, at most: each asks for this share of the CPU the
#: bystander leaves on the node, so the scheduler keeps the rest Pending. A runner that fails at
#: once still imports torch (about 4 CPU-seconds and 0.9 GB), so more of them side by side would
#: only add memory; and the local node turns a CPU request into cpu.shares against every other
#: process on the machine, so a smaller request would starve them on a busy machine.
CONCURRENT_PODS = 7
#: An S3 endpoint nothing listens on (port 1 on loopback: connection refused at once).
UNREACHABLE = "http://127.0.0.1:1"


# --- expectations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """``kubectl apply`` fails; its error holds every needle; the object is not created."""

    needles: tuple[str, ...]


@dataclass(frozen=True)
class Failed:
    """Phase Failed with ``reason`` (also the Failed condition's, and a Warning Event's) and a
    message holding every needle, before any training or evaluation, in at most ``max_pods``
    runner pods (0: no Job at all)."""

    reason: str
    needles: tuple[str, ...]
    max_pods: int = 1


@dataclass(frozen=True)
class Waits:
    """Phase Pending with ``reason`` and a message holding every needle; no Job."""

    reason: str
    needles: tuple[str, ...]


@dataclass(frozen=True)
class Works:
    """Phase Succeeded with every timestep trained; the Job's name is a DNS label (≤ 63
    characters, hashed when the name had to change)."""


Expectation = Rejected | Failed | Waits | Works


def rejected(*needles: str) -> Rejected:
    """Rejected at apply, the error holding every one of ``needles``."""
    return Rejected(needles)


def failed(reason: str, *needles: str, max_pods: int = 1) -> Failed:
    """Failed with ``reason``, the message holding every one of ``needles``, in at most ``max_pods`` pods."""
    return Failed(reason, needles, max_pods)


def waits(reason: str, *needles: str) -> Waits:
    """Held Pending with ``reason``, the message holding every one of ``needles``."""
    return Waits(reason, needles)


# --- what a case can read and do -------------------------------------------------------------


@dataclass
class Ctx:
    """The corpus namespace and the storage its cases use."""

    kube: Kube
    kubectl: Kubectl
    namespace: str
    #: boto3 client of the local MinIO, with the namespace's kubegym-s3 credentials.
    s3: Any
    bucket: str
    #: The local MinIO's endpoint URL.
    endpoint: str
    #: ``spec.resources`` of every corpus pod (see :data:`CONCURRENT_PODS`).
    resources: dict[str, str] = field(default_factory=dict)
    #: Values that must never show in a status message (the storage secret key).
    secrets: tuple[str, ...] = ()

    def key(self, name: str) -> str:
        """An object key of this corpus run (under ``corpus/<namespace>/``)."""
        return f"corpus/{self.namespace}/{name}"

    def uri(self, name: str) -> str:
        """The s3:// URI of :meth:`key` ``name``."""
        return f"s3://{self.bucket}/{self.key(name)}"

    def put(self, name: str, body: bytes) -> None:
        """Upload ``body`` as :meth:`key` ``name``."""
        self.s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=body)


#: The manifests of a case, from the subject's name and the context; a str is applied verbatim.
Build = Callable[[str, Ctx], Sequence[Manifest | str]]
Hook = Callable[[str, Ctx], None]


@dataclass(frozen=True)
class Case:
    """One bad input and where it must be stopped."""

    #: The test id, and the subject's name unless ``object_name`` is set.
    name: str
    expect: Expectation
    build: Build
    #: Runs before anything is applied: what the manifests need (an upload, a Secret).
    prepare: Hook | None = None
    #: Runs once every failure-time case is applied (deleting what the subject waits for).
    after_apply: Hook | None = None
    #: The subject's name when the name is what the case is about (default: the case's name).
    object_name: str | None = None
    #: Why the case is in the corpus, when its name does not say it.
    note: str = field(default="", compare=False)

    @property
    def subject(self) -> str:
        """The name of the object the expectation is about."""
        return self.object_name or self.name

    def manifests(self, ctx: Ctx) -> list[Manifest | str]:
        """What to apply, the subject last."""
        return list(self.build(self.subject, ctx))


# --- builders ------------------------------------------------------------------------------


def _spec_with(manifest: Manifest, spec: dict[str, Any]) -> Manifest:
    out = copy.deepcopy(manifest)
    out["spec"].update(copy.deepcopy(spec))
    return out


def run(**spec: Any) -> Build:
    """A small CPU TrainingRun (PPO on CartPole-v1, 2,048 steps) with ``spec`` over it; ``None``
    removes a field."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        manifest = training_run(name, resources=dict(ctx.resources))
        manifest["spec"].update(copy.deepcopy(spec))
        manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
        return [manifest]

    return build


def run_with_hyperparameters(**hyperparameters: Any) -> Build:
    """The small TrainingRun with these ``hyperparameters``."""
    return run(hyperparameters=hyperparameters)


def raw_run(text_spec: str) -> Build:
    """A TrainingRun whose spec is JSON text, for numbers that Python's json cannot write."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        return [
            '{"apiVersion": "kubegym.io/v1alpha1", "kind": "TrainingRun", '
            f'"metadata": {{"name": {json.dumps(name)}}}, "spec": {text_spec}}}'
        ]

    return build


def _bench(name: str, models: list[dict[str, Any]], envs: Sequence[str], spec: dict[str, Any], ctx: Ctx) -> Manifest:
    return _spec_with(benchmark(name, models, list(envs), resources=dict(ctx.resources)), spec)


URI_MODEL = {"name": "m", "uri": "s3://kubegym/some/model.zip", "algorithm": "PPO"}


def bench(models: list[dict[str, Any]] | None = None, envs: Sequence[str] = ("CartPole-v1",), **spec: Any) -> Build:
    """A Benchmark (8 episodes, 4 copies) of ``models`` (default: one uri model) on ``envs``."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        return [_bench(name, copy.deepcopy(models if models is not None else [URI_MODEL]), envs, spec, ctx)]

    return build


def bench_of_upload(archive: str, algorithm: str = "PPO", envs: Sequence[str] = ("CartPole-v1",)) -> Build:
    """A Benchmark of the one model uploaded under ``archive`` (see :func:`upload`)."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        model = {"name": "m", "uri": ctx.uri(f"{archive}/model.zip"), "algorithm": algorithm}
        return [_bench(name, [model], envs, {}, ctx)]

    return build


def bench_of_run(**run_spec: Any) -> Build:
    """A TrainingRun ``<name>-run`` with ``run_spec``, and a Benchmark of it by trainingRunRef."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        trained = run(**run_spec)(f"{name}-run", ctx)
        return [
            *trained,
            _bench(name, [{"name": "r", "trainingRunRef": {"name": f"{name}-run"}}], ["CartPole-v1"], {}, ctx),
        ]

    return build


def exp(**spec: Any) -> Build:
    """A small Experiment (2 learning rates x 2 seeds of PPO CartPole) with ``spec`` over it."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        return [experiment(name, **spec)]

    return build


#: The small Experiment's template with periodic evaluation (every 1,024 of its 4,096 timesteps), for
#: early-stopping cases.
EVALUATED_TEMPLATE: Manifest = {
    **experiment("x")["spec"]["template"],
    "evaluation": {"everySteps": 1024, "episodes": 2},
}


def exp_template(**template: Any) -> Build:
    """The small Experiment with ``template`` fields over its template's."""

    def build(name: str, ctx: Ctx) -> list[Manifest | str]:
        manifest = experiment(name)
        manifest["spec"]["template"].update(copy.deepcopy(template))
        return [manifest]

    return build


# --- model archives and Secrets ------------------------------------------------------------------


@functools.cache
def ppo_cartpole_archive(nan_weights: bool = False) -> bytes:
    """A real (untrained) stable-baselines3 PPO model of CartPole-v1, as ``model.zip`` bytes."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, device="cpu")
    if nan_weights:
        with torch.no_grad():
            for parameter in model.policy.parameters():
                parameter.fill_(float("nan"))
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


class _Touch:
    """Unpickling this would run ``touch``: what a hostile archive carries."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return os.system, ("touch /tmp/kubegym-corpus-pwned",)


def hostile_archive() -> bytes:
    """The PPO archive with a pickle in its data that runs a command when SB3 unpickles it."""
    import base64
    import pickle

    with zipfile.ZipFile(io.BytesIO(ppo_cartpole_archive())) as source:
        members = {name: source.read(name) for name in source.namelist()}
    data = json.loads(members["data"])
    data["observation_space"] = {
        ":type:": "<class 'object'>",
        ":serialized:": base64.b64encode(pickle.dumps(_Touch())).decode(),
    }
    members["data"] = json.dumps(data).encode()
    return _zip(members)


ARCHIVES: dict[str, Callable[[], bytes]] = {
    "hostile": hostile_archive,
    "corrupt": lambda: b"PK\x03\x04 truncated garbage",
    "truncated": lambda: ppo_cartpole_archive()[: len(ppo_cartpole_archive()) // 2],
    "not-sb3": lambda: _zip({"README.txt": b"a zip file, but no model in it"}),
    "nan-weights": lambda: ppo_cartpole_archive(nan_weights=True),
    "ppo": ppo_cartpole_archive,
}


def upload(archive: str) -> Hook:
    """Upload ``ARCHIVES[archive]`` as ``<archive>/model.zip`` of this corpus run."""

    def prepare(name: str, ctx: Ctx) -> None:
        ctx.put(f"{archive}/model.zip", ARCHIVES[archive]())

    return prepare


def secret(secret_name: str, **data: str) -> Hook:
    """Create a Secret with ``data`` (string values) in the corpus namespace."""

    def prepare(name: str, ctx: Ctx) -> None:
        ctx.kube.create(
            f"/api/v1/namespaces/{ctx.namespace}/secrets",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name}, "stringData": data},
        )

    return prepare


def delete_run_once_waited_for(name: str, ctx: Ctx) -> None:
    """Wait until the Benchmark ``name`` waits for ``<name>-run`` (suspended), then delete the run."""
    bench_path = f"/apis/kubegym.io/v1alpha1/namespaces/{ctx.namespace}/benchmarks/{name}"
    wait_until(
        lambda: f"{name}-run" in str((ctx.kube.get(bench_path).get("status") or {}).get("message", "")),
        120,
        f"Benchmark {name} to wait for {name}-run",
    )
    try:
        ctx.kube.delete(f"/apis/kubegym.io/v1alpha1/namespaces/{ctx.namespace}/trainingruns/{name}-run")
    except ApiError as e:
        if e.status != 404:
            raise


# --- the corpus ------------------------------------------------------------------------------

#: A 253-character name (the most a DNS subdomain may have), and one past it.
NAME_253 = "tr-name-max-" + "x" * 237 + "-253"
NAME_254 = NAME_253 + "4"
#: A 10 x 10 x 10 x 10 x 10 x 10 grid: 10^6 configurations.
GRID_1E6 = {name: [0.1 * (i + 1) for i in range(10)] for name in ("ent_coef", "vf_coef", "gae_lambda", "gamma")} | {
    "n_epochs": list(range(1, 11)),
    "n_steps": [64 * (i + 1) for i in range(10)],
}

CASES: list[Case] = [
    # --- TrainingRun: rejected by the API server (schema, CEL) or kubectl ------------------
    Case("tr-algorithm-unknown", rejected('spec.algorithm: Unsupported value: "PPO2"'), run(algorithm="PPO2")),
    Case(
        "tr-algorithm-lowercase",
        rejected('spec.algorithm: Unsupported value: "ppo"', 'supported values: "PPO", "A2C", "DQN"'),
        run(algorithm="ppo"),
    ),
    Case("tr-timesteps-zero", rejected("spec.totalTimesteps", "greater than or equal to 1"), run(totalTimesteps=0)),
    Case("tr-timesteps-negative", rejected("spec.totalTimesteps: Invalid value: -5"), run(totalTimesteps=-5)),
    Case(
        "tr-timesteps-1e19",
        rejected("spec.totalTimesteps", "must be of type integer"),
        run(totalTimesteps=10**19),
        note="past int64: the API server reads it as a float",
    ),
    Case(
        "tr-timesteps-string",
        rejected('spec.totalTimesteps: Invalid value: "string"', "must be of type integer"),
        run(totalTimesteps="1000"),
    ),
    Case(
        "tr-no-length",
        rejected("set totalTimesteps (environment steps, > 0) or a preset"),
        run(totalTimesteps=None),
    ),
    Case(
        "tr-learning-rate-1e309",
        rejected("cannot unmarshal number 1e309"),
        raw_run(
            '{"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 2048, '
            '"hyperparameters": {"learning_rate": 1e309}}'
        ),
        note="not a float64: kubectl refuses the document",
    ),
    Case("tr-seed-2-to-the-32", rejected("spec.seed", "less than or equal to 4294967295"), run(seed=2**32)),
    Case("tr-seed-negative", rejected("spec.seed", "greater than or equal to 0"), run(seed=-1)),
    Case(
        "tr-nenvs-zero",
        rejected("spec.environment.nEnvs", "greater than or equal to 1"),
        run(environment={"id": "CartPole-v1", "nEnvs": 0}),
    ),
    Case(
        "tr-nenvs-257",
        rejected("spec.environment.nEnvs", "less than or equal to 256"),
        run(environment={"id": "CartPole-v1", "nEnvs": 257}),
    ),
    Case("tr-environment-without-id", rejected("spec.environment.id: Required value"), run(environment={})),
    Case(
        "tr-environment-string",
        rejected('spec.environment: Invalid value: "string"', "must be of type object"),
        run(environment="CartPole-v1"),
    ),
    Case(
        "tr-hyperparameters-list",
        rejected('spec.hyperparameters: Invalid value: "array"', "must be of type object"),
        run(hyperparameters=[{"learning_rate": 0.001}]),
    ),
    Case(
        "tr-unknown-field",
        rejected('unknown field "spec.totalTimestep"'),
        run(totalTimesteps=None, totalTimestep=2048),
        note="strict field validation: a typo is not ignored",
    ),
    Case("tr-device-gpu", rejected('spec.device: Unsupported value: "gpu"', '"cuda"'), run(device="gpu")),
    Case("tr-cuda-without-gpu", rejected("device: cuda needs a GPU"), run(device="cuda")),
    Case("tr-gpu-negative", rejected("spec.resources.gpu"), run(resources={"gpu": -1})),
    Case(
        "tr-cpu-not-a-quantity",
        rejected('spec.resources.cpu: Invalid value: "two"', "non-negative Kubernetes quantity"),
        run(resources={"cpu": "two"}),
    ),
    Case(
        "tr-memory-negative",
        rejected('spec.resources.memory: Invalid value: "-1Gi"', "non-negative Kubernetes quantity"),
        run(resources={"memory": "-1Gi"}),
    ),
    Case(
        "tr-storage-without-secret",
        rejected("spec.checkpoint.storage.secretRef: Required value"),
        run(checkpoint={"everySteps": 1024, "storage": {"bucket": "kubegym"}}),
    ),
    Case(
        "tr-storage-endpoint-without-scheme",
        rejected("spec.checkpoint.storage.endpoint", "^https?://"),
        run(checkpoint={"storage": {"bucket": "kubegym", "secretRef": "kubegym-s3", "endpoint": "127.0.0.1:9000"}}),
    ),
    Case(
        "tr-storage-bucket-too-short",
        rejected("spec.checkpoint.storage.bucket", "at least 3 chars long"),
        run(checkpoint={"storage": {"bucket": "ab", "secretRef": "kubegym-s3"}}),
    ),
    Case(
        "tr-tracking-uri-not-a-url",
        rejected("spec.tracking.mlflow.trackingUri", "should match", "https?://"),
        run(tracking={"mlflow": {"trackingUri": "mlflow.mlflow:5000"}}),
    ),
    Case(
        "tr-tracking-uri-missing",
        rejected("spec.tracking.mlflow.trackingUri: Required value"),
        run(tracking={"mlflow": {"experimentName": "research"}}),
    ),
    Case(
        "tr-tracking-experiment-name-empty",
        rejected("spec.tracking.mlflow.experimentName", "at least 1 chars long"),
        run(tracking={"mlflow": {"trackingUri": "http://mlflow:5000", "experimentName": ""}}),
    ),
    Case(
        "tr-tracking-experiment-name-blank",
        rejected("spec.tracking.mlflow.experimentName", "should match"),
        run(tracking={"mlflow": {"trackingUri": "http://mlflow:5000", "experimentName": "   "}}),
    ),
    Case(
        "tr-tracking-secret-not-a-name",
        rejected("spec.tracking.mlflow.credentialsSecretRef", "should match"),
        run(tracking={"mlflow": {"trackingUri": "http://mlflow:5000", "credentialsSecretRef": "MLflow_Creds"}}),
    ),
    Case(
        "tr-replay-buffer-for-ppo",
        rejected("checkpoint.saveReplayBuffer needs an off-policy algorithm"),
        run(checkpoint={"everySteps": 1024, "saveReplayBuffer": True}),
    ),
    Case(
        "tr-keep-last-zero",
        rejected("spec.checkpoint.keepLast", "greater than or equal to 1"),
        run(checkpoint={"keepLast": 0}),
    ),
    Case(
        "tr-resume-uri-and-run",
        rejected("set exactly one of resumeFrom.uri and resumeFrom.trainingRun"),
        run(resumeFrom={"uri": "s3://kubegym/a/checkpoints/1/", "trainingRun": "other"}),
    ),
    Case(
        "tr-resume-from-itself",
        rejected("spec.resumeFrom.trainingRun names this run"),
        run(resumeFrom={"trainingRun": "tr-resume-from-itself"}),
    ),
    Case(
        "tr-resume-checkpoint-with-uri",
        rejected("resumeFrom.checkpoint chooses among the models of resumeFrom.trainingRun", "remove checkpoint"),
        run(resumeFrom={"uri": "s3://kubegym/a/checkpoints/1/", "checkpoint": "best"}),
        note="issue 15: the URI names the folder itself",
    ),
    Case(
        "tr-resume-checkpoint-unknown",
        rejected('spec.resumeFrom.checkpoint: Unsupported value: "newest"', '"final", "best", "latest"'),
        run(resumeFrom={"trainingRun": "other", "checkpoint": "newest"}),
    ),
    Case(
        "tr-resume-uri-not-s3",
        rejected("spec.resumeFrom.uri", "s3://"),
        run(resumeFrom={"uri": "https://example.com/model.zip"}),
    ),
    Case(
        "tr-queue-name-invalid",
        rejected("spec.scheduling.queueName"),
        run(scheduling={"queueName": "Team_Queue"}),
    ),
    Case(
        "tr-toleration-exists-with-value",
        rejected("a toleration with operator: Exists must not set a value"),
        run(scheduling={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}),
    ),
    Case(
        "tr-name-254",
        rejected("metadata.name", "must be no more than 253 characters"),
        run(),
        object_name=NAME_254,
    ),
    Case(
        "tr-name-uppercase-underscore",
        rejected("metadata.name", "a lowercase RFC 1123 subdomain"),
        run(),
        object_name="Tr_Upper_Case",
    ),
    Case("tr-name-unicode", rejected("metadata.name", "a lowercase RFC 1123 subdomain"), run(), object_name="tr-ünï"),
    Case(
        "tr-name-trailing-dot",
        rejected("metadata.name", "must start and end with an alphanumeric character"),
        run(),
        object_name="tr-name.",
    ),
    # --- TrainingRun: valid, however odd ------------------------------------------------------
    Case(
        "tr-name-253-trains",
        Works(),
        run(totalTimesteps=512, hyperparameters={"n_steps": 128, "batch_size": 64}, checkpoint={"everySteps": 512}),
        object_name=NAME_253,
        note="its Job, ServiceAccount and labels get a hashed 63-character name",
    ),
    Case(
        "tr-name-with-dots-trains",
        Works(),
        run(totalTimesteps=512, hyperparameters={"n_steps": 128, "batch_size": 64}, checkpoint={"everySteps": 512}),
        object_name="tr.name.with.dots",
        note="a valid subdomain, not a valid label: the Job's name is sanitised and hashed",
    ),
    # --- TrainingRun: failed by the runner before training (UserError, never retried) ----------
    Case(
        "tr-dqn-on-pendulum",
        failed("UserError", "DQN does not support the action space of Pendulum-v1", "it supports: Discrete"),
        run(algorithm="DQN", environment={"id": "Pendulum-v1"}),
    ),
    Case(
        "tr-sac-on-cartpole",
        failed("UserError", "SAC does not support the action space of CartPole-v1", "it supports: Box"),
        run(algorithm="SAC"),
    ),
    Case(
        "tr-env-near-miss",
        failed("UserError", "unknown environment id 'CartPoel-v1'", "did you mean CartPole-v1"),
        run(environment={"id": "CartPoel-v1"}),
    ),
    Case(
        "tr-env-unknown",
        failed("UserError", "unknown environment id 'NoSuchEnv-v0'"),
        run(environment={"id": "NoSuchEnv-v0"}),
    ),
    Case(
        "tr-env-shell-metacharacters",
        failed("UserError", "unknown environment id 'CartPole-v1; touch /tmp/pwned'"),
        run(environment={"id": "CartPole-v1; touch /tmp/pwned"}),
        note="an id is looked up, never run",
    ),
    Case(
        "tr-env-kwargs-unknown",
        failed("UserError", "cannot make environment 'CartPole-v1'", "unexpected keyword argument 'gravity'"),
        run(environment={"id": "CartPole-v1", "kwargs": {"gravity": 3}}),
    ),
    Case(
        "tr-wrapper-near-miss",
        failed("UserError", "unknown wrapper 'FrameStak'", "did you mean FrameStack"),
        run(environment={"id": "CartPole-v1", "wrappers": [{"name": "FrameStak"}]}),
    ),
    Case(
        "tr-hyperparameter-near-miss",
        failed("UserError", "unknown hyperparameter 'learning_rat' for PPO", "did you mean learning_rate"),
        run_with_hyperparameters(learning_rat=0.001),
    ),
    Case(
        "tr-learning-rate-negative",
        failed("UserError", "learning_rate must satisfy 0 < x <= 1, got -0.001"),
        run_with_hyperparameters(learning_rate=-0.001),
    ),
    Case(
        "tr-learning-rate-1e308",
        failed("UserError", "learning_rate must satisfy 0 < x <= 1, got 1e+308"),
        run_with_hyperparameters(learning_rate=1e308),
        note="SB3 takes it and trains to NaN",
    ),
    Case(
        "tr-learning-rate-string",
        failed("UserError", "learning_rate must be a number or a linear schedule 'lin_<initial value>'", "'fast'"),
        run_with_hyperparameters(learning_rate="fast"),
    ),
    Case(
        "tr-n-steps-zero",
        failed("UserError", "PPO rejected the configuration", "n_steps=0"),
        run_with_hyperparameters(n_steps=0),
    ),
    Case(
        "tr-gamma-string",
        failed("UserError", "gamma must be a number, got 'high' (str)"),
        run_with_hyperparameters(gamma="high"),
        note="SB3 takes it and fails in the first update",
    ),
    Case(
        "tr-batch-larger-than-rollout",
        failed("UserError", "batch_size 4096 is larger than the rollout buffer of PPO", "= 256 transitions"),
        run_with_hyperparameters(n_steps=256, batch_size=4096),
        note="SB3 trains on with the whole rollout as one batch",
    ),
    Case(
        "tr-batch-larger-than-replay-buffer",
        failed("UserError", "batch_size 1000 is larger than the replay buffer of DQN (buffer_size 100)"),
        run(algorithm="DQN", hyperparameters={"buffer_size": 100, "batch_size": 1000}),
    ),
    Case(
        "tr-activation-unknown",
        failed(
            "InvalidHyperparameters",
            "spec.hyperparameters.policy_kwargs.activation_fn: name 'Relu' is not allowed",
            "did you mean ReLU?",
            max_pods=0,
        ),
        run_with_hyperparameters(policy_kwargs={"activation_fn": "Relu"}),
    ),
    # --- hyperparameter strings that hold code: refused by the operator, never evaluated ----------
    Case(
        "tr-policy-kwargs-code",
        failed(
            "InvalidHyperparameters",
            "spec.hyperparameters.policy_kwargs:",
            "calling __import__('os').system(), __import__()",
            "never evaluated",
            max_pods=0,
        ),
        run_with_hyperparameters(policy_kwargs="__import__('os').system('touch /tmp/x') or dict(net_arch=[64])"),
        note="issue 12: rl-zoo3's eval ran this in the pod",
    ),
    Case(
        "tr-policy-kwargs-lambda",
        failed("InvalidHyperparameters", "policy_kwargs: a lambda is not allowed", max_pods=0),
        run_with_hyperparameters(policy_kwargs="dict(activation_fn=lambda x: x)"),
    ),
    Case(
        "tr-policy-kwargs-attribute-chain",
        failed("InvalidHyperparameters", "policy_kwargs: name 'os.system' is not allowed", max_pods=0),
        run_with_hyperparameters(policy_kwargs="dict(net_arch=[64], activation_fn=os.system)"),
    ),
    Case(
        "tr-class-name-not-allowed",
        failed("InvalidHyperparameters", "policy_kwargs.activation_fn: name 'os.system' is not allowed", max_pods=0),
        run_with_hyperparameters(policy_kwargs={"activation_fn": "os.system"}),
    ),
    Case(
        "tr-buffer-kwargs-code",
        failed("InvalidHyperparameters", "spec.hyperparameters.replay_buffer_kwargs", "a call to exec()", max_pods=0),
        run(algorithm="DQN", hyperparameters={"replay_buffer_kwargs": "exec('import os')"}),
    ),
    Case(
        "tr-buffer-class-import-path-not-a-buffer",
        failed(
            "UserError", "replay_buffer_class 'subprocess:Popen' is not a stable_baselines3.common.buffers.BaseBuffer"
        ),
        run(algorithm="DQN", hyperparameters={"replay_buffer_class": "subprocess:Popen"}),
    ),
    Case(
        "tr-preset-without-entry",
        failed("UserError", "rl-zoo3 has no PPO hyperparameters for 'NoSuchEnv-v9'"),
        run(preset="rl-zoo3:NoSuchEnv-v9"),
    ),
    Case(
        "tr-resume-uri-missing",
        failed("UserError", "resumeFrom s3://kubegym/nowhere/checkpoints/000000001024/", "no complete checkpoint"),
        run(resumeFrom={"uri": "s3://kubegym/nowhere/checkpoints/000000001024/"}),
    ),
    Case(
        "tr-bucket-missing",
        failed("UserError", "S3 bucket 'no-such-bucket-kubegym' does not exist"),
        lambda name, ctx: run(
            checkpoint={
                "storage": {"bucket": "no-such-bucket-kubegym", "secretRef": layout.S3_SECRET, "endpoint": ctx.endpoint}
            }
        )(name, ctx),
    ),
    # --- TrainingRun: failed by the operator, or by what the pod cannot get ----------------
    Case(
        "tr-resume-run-missing",
        failed("ResumeSourceNotFound", "TrainingRun 'no-such-run' not found", max_pods=0),
        run(resumeFrom={"trainingRun": "no-such-run"}),
    ),
    Case(
        "tr-resume-best-missing",
        failed("ResumeSourceNotFound", "TrainingRun 'tr-resume-best-missing-src' has no best model", max_pods=0),
        lambda name, ctx: [
            *run(suspend=True)(f"{name}-src", ctx),  # exists, never trains (so never evaluates): no best
            *run(resumeFrom={"trainingRun": f"{name}-src", "checkpoint": "best"})(name, ctx),
        ],
        note="issue 15: the chosen model must exist; the run fails before any Job",
    ),
    Case(
        "tr-secret-missing",
        failed("SecretNotFound", "no-such-secret", "fix spec.checkpoint.storage.secretRef"),
        run(checkpoint={"everySteps": 1024, "storage": {"bucket": "kubegym", "secretRef": "no-such-secret"}}),
        note="Failed once the operator's pending-error grace period (20 s in the tests) is over",
    ),
    Case(
        "tr-secret-missing-key",
        failed("CreateContainerConfigError", "couldn't find key AWS_SECRET_ACCESS_KEY in secret"),
        run(checkpoint={"storage": {"bucket": "kubegym", "secretRef": "half-a-secret"}}),
        prepare=secret("half-a-secret", AWS_ACCESS_KEY_ID="kubegym"),
    ),
    Case(
        "tr-image-unavailable",
        failed("ImagePullFailed", "docker.io/library/busybox:1.36"),
        run(image="docker.io/library/busybox:1.36"),
    ),
    Case(
        "tr-storage-unreachable",
        failed("StorageUnreachable", "127.0.0.1:1", "failed 2 times (runPolicy.backoffLimit 1)", max_pods=2),
        run(
            checkpoint={"storage": {"bucket": "kubegym", "secretRef": layout.S3_SECRET, "endpoint": UNREACHABLE}},
            runPolicy={"backoffLimit": 1},
        ),
        note="infrastructure, so retried (backoffLimit 1 here to keep the corpus short; docs/reliability.md "
        "has the default's timing)",
    ),
    # --- Benchmark: rejected at apply ---------------------------------------------------------
    Case("bm-episodes-zero", rejected("spec.episodes: Invalid value: 0"), bench(episodes=0)),
    Case("bm-episodes-negative", rejected("spec.episodes: Invalid value: -3"), bench(episodes=-3)),
    Case("bm-model-duplicate", rejected("spec.models[1]: Duplicate value"), bench([URI_MODEL, URI_MODEL])),
    Case(
        "bm-model-uri-and-ref",
        rejected("set exactly one of uri and trainingRunRef"),
        bench([{**URI_MODEL, "trainingRunRef": {"name": "r"}}]),
    ),
    Case(
        "bm-model-checkpoint-with-uri",
        rejected("checkpoint chooses among the models of trainingRunRef", "remove checkpoint"),
        bench([{**URI_MODEL, "checkpoint": "best"}]),
        note="issue 15: the URI names the model itself",
    ),
    Case(
        "bm-model-checkpoint-unknown",
        rejected('spec.models[0].checkpoint: Unsupported value: "top"'),
        bench([{"name": "m", "trainingRunRef": {"name": "r"}, "checkpoint": "top"}]),
    ),
    Case("bm-no-models", rejected("spec.models", "at least 1 items"), bench([])),
    Case("bm-no-seeds", rejected("spec.seeds"), bench(seeds=[])),
    Case(
        "bm-model-name-unicode",
        rejected("spec.models[0].name", "should match"),
        bench([{**URI_MODEL, "name": "mödel"}]),
    ),
    Case("bm-uri-not-s3", rejected("spec.models[0].uri", "s3://"), bench([{**URI_MODEL, "uri": "/tmp/model.zip"}])),
    Case(
        "bm-environment-duplicate",
        rejected('spec.environments[1]: Duplicate value: {"id":"CartPole-v1"}'),
        bench(envs=("CartPole-v1", "CartPole-v1")),
    ),
    # --- Benchmark: accepted, then stopped ---------------------------------------------------
    Case(
        "bm-archive-corrupt",
        failed("UserError", "none of the 1 model x environment entries", "is not a stable-baselines3 model archive"),
        bench_of_upload("corrupt"),
        prepare=upload("corrupt"),
    ),
    Case(
        "bm-archive-truncated",
        failed("UserError", "truncated/model.zip is not a stable-baselines3 model archive"),
        bench_of_upload("truncated"),
        prepare=upload("truncated"),
    ),
    Case(
        "bm-archive-not-sb3",
        failed("UserError", "not-sb3/model.zip is not a stable-baselines3 model archive (no 'data' member)"),
        bench_of_upload("not-sb3"),
        prepare=upload("not-sb3"),
    ),
    Case(
        "bm-archive-wrong-algorithm",
        failed("UserError", "ppo/model.zip as DQN", "'ActorCriticPolicy' object has no attribute 'q_net'"),
        bench_of_upload("ppo", algorithm="DQN"),
        prepare=upload("ppo"),
    ),
    Case(
        "bm-archive-hostile-pickle",
        failed(
            "UserError",
            "hostile/model.zip",
            "the archive's 'observation_space' refers to posix:system, which is not loaded",
        ),
        bench_of_upload("hostile"),
        prepare=upload("hostile"),
        note="issue 12: SB3's loader would run the command; the evaluator never unpickles it",
    ),
    Case(
        "bm-archive-nan-weights",
        failed("UserError", "nan-weights/model.zip has NaN or infinite weights"),
        bench_of_upload("nan-weights"),
        prepare=upload("nan-weights"),
    ),
    Case(
        "bm-spaces-mismatch",
        failed("UserError", "model m does not fit MountainCar-v0", "Observation spaces do not match"),
        bench_of_upload("ppo", envs=("MountainCar-v0",)),
        prepare=upload("ppo"),
    ),
    Case(
        "bm-env-near-miss",
        failed("UserError", "unknown environment id 'CartPol-v1'", "did you mean CartPole-v1"),
        bench_of_upload("ppo", envs=("CartPol-v1",)),
        prepare=upload("ppo"),
    ),
    Case(
        "bm-of-failed-run",
        failed(
            "TrainingRunFailed",
            "model r: TrainingRun bm-of-failed-run-run failed (UserError:",
            "NoSuchEnv-v0",
            max_pods=0,
        ),
        bench_of_run(environment={"id": "NoSuchEnv-v0"}),
    ),
    Case(
        "bm-of-nonexistent-run",
        waits("TrainingRunNotFinished", "no-such-run (not found)"),
        bench([{"name": "n", "trainingRunRef": {"name": "no-such-run"}}]),
    ),
    Case(
        "bm-of-deleted-run",
        waits("TrainingRunNotFinished", "bm-of-deleted-run-run (not found)"),
        bench_of_run(suspend=True),
        after_apply=delete_run_once_waited_for,
        note="waited for while suspended, then deleted: the Benchmark sees it go",
    ),
    Case(
        "bm-secret-missing",
        failed("SecretNotFound", "no-such-secret"),
        bench(storage={"bucket": "kubegym", "secretRef": "no-such-secret"}),
    ),
    Case(
        "bm-storage-unreachable",
        failed("StorageUnreachable", "127.0.0.1:1", "failed 2 times (runPolicy.backoffLimit 1)", max_pods=2),
        bench(
            storage={"bucket": "kubegym", "secretRef": layout.S3_SECRET, "endpoint": UNREACHABLE},
            runPolicy={"backoffLimit": 1},
        ),
    ),
    # --- Experiment: rejected at apply ----------------------------------------------------------
    Case("exp-grid-empty", rejected("spec.search.grid", "at least 1"), exp(search={"grid": {}})),
    Case(
        "exp-tracking-in-template",
        rejected("spec.template.tracking", "set tracking on the Experiment (spec.tracking)"),
        exp(
            template={
                **experiment("x")["spec"]["template"],
                "tracking": {"mlflow": {"trackingUri": "http://mlflow:5000"}},
            }
        ),
    ),
    Case(
        "exp-tracking-uri-not-a-url",
        rejected("spec.tracking.mlflow.trackingUri", "should match"),
        exp(tracking={"mlflow": {"trackingUri": "ftp://mlflow"}}),
    ),
    Case(
        "exp-grid-without-values",
        rejected("spec.search.grid.learning_rate", "at least 1"),
        exp(search={"grid": {"learning_rate": []}}),
    ),
    Case(
        "exp-grid-65-values",
        rejected("spec.search.grid.learning_rate", "must have at most 64 items"),
        exp(search={"grid": {"learning_rate": [0.001 * (i + 1) for i in range(65)]}}),
    ),
    Case("exp-seeds-zero", rejected("spec.seeds.count", "greater than or equal to 1"), exp(seeds={"count": 0})),
    Case("exp-seeds-negative", rejected("spec.seeds.count", "greater than or equal to 1"), exp(seeds={"count": -2})),
    Case("exp-seeds-101", rejected("spec.seeds.count", "less than or equal to 100"), exp(seeds={"count": 101})),
    Case("exp-seeds-neither", rejected("seeds.count", "seeds.values"), exp(seeds={})),
    Case("exp-parallelism-zero", rejected("spec.parallelism", "greater than or equal to 1"), exp(parallelism=0)),
    Case(
        "exp-random-without-trials",
        rejected("search.random.trials is required", "trial budget"),
        exp(
            search={
                "random": {"parameters": {"learning_rate": {"distribution": "LogUniform", "low": 1e-5, "high": 1e-2}}}
            }
        ),
    ),
    Case(
        "exp-random-inverted-bounds",
        rejected("low must be below high"),
        exp(
            search={
                "random": {"trials": 2, "parameters": {"gamma": {"distribution": "Uniform", "low": 1, "high": 0.9}}}
            }
        ),
    ),
    Case(
        "exp-grid-and-random",
        rejected("spec.search", "at most 1"),
        exp(
            search={
                "grid": {"gamma": [0.9]},
                "random": {"parameters": {"gamma": {"distribution": "Uniform", "low": 0.9, "high": 0.99}}},
            }
        ),
    ),
    Case(
        "exp-early-stopping-without-evaluation",
        rejected("earlyStopping compares evaluation curves"),
        exp(earlyStopping={"minEvaluations": 2}),
    ),
    Case(
        "exp-asha-without-min-resource",
        rejected("spec.earlyStopping.minResource", "minResource is required for ASHA and Hyperband"),
        exp(template=EVALUATED_TEMPLATE, earlyStopping={"rule": "ASHA"}),
    ),
    Case(
        "exp-median-with-min-resource",
        rejected("minResource is for ASHA and Hyperband"),
        exp(template=EVALUATED_TEMPLATE, earlyStopping={"rule": "Median", "minResource": 2048}),
    ),
    Case(
        "exp-hyperband-with-min-early-stopping-rate",
        rejected("minEarlyStoppingRate is for ASHA only"),
        exp(
            template=EVALUATED_TEMPLATE,
            earlyStopping={"rule": "Hyperband", "minResource": 2048, "minEarlyStoppingRate": 1},
        ),
    ),
    Case(
        "exp-min-resource-at-the-budget",
        rejected("spec.earlyStopping.minResource", "minResource must be below template.totalTimesteps"),
        exp(template=EVALUATED_TEMPLATE, earlyStopping={"rule": "ASHA", "minResource": 4096}),
    ),
    Case(
        "exp-min-resource-before-the-first-evaluation",
        rejected("minResource must be at least template.evaluation.everySteps"),
        exp(template=EVALUATED_TEMPLATE, earlyStopping={"rule": "ASHA", "minResource": 512}),
    ),
    Case(
        "exp-asha-reduction-factor-one",
        rejected("spec.earlyStopping.reductionFactor", "greater than or equal to 2"),
        exp(template=EVALUATED_TEMPLATE, earlyStopping={"rule": "ASHA", "minResource": 2048, "reductionFactor": 1}),
    ),
    Case(
        "exp-benchmark-best-without-evaluation",
        rejected("benchmark.checkpoint best is the model of the best periodic evaluation: set template.evaluation"),
        exp(benchmark={"episodes": 5, "checkpoint": "best"}),
    ),
    Case(
        "exp-benchmark-objective-without-benchmark",
        rejected("objective.metric Benchmark needs spec.benchmark"),
        exp(objective={"metric": "Benchmark"}),
    ),
    Case(
        "exp-template-algorithm-lowercase",
        rejected('spec.template.algorithm: Unsupported value: "ppo"'),
        exp_template(algorithm="ppo"),
    ),
    Case(
        "exp-optuna-empty-categorical",
        rejected("spec.search.optuna.parameters.gamma.choices", "at least 1"),
        exp(search={"optuna": {"trials": 2, "parameters": {"gamma": {"type": "Categorical", "choices": []}}}}),
    ),
    Case(
        "exp-optuna-low-not-below-high",
        rejected("low must be below high"),
        exp(search={"optuna": {"trials": 2, "parameters": {"gamma": {"type": "Float", "low": 0.99, "high": 0.99}}}}),
    ),
    Case(
        "exp-optuna-log-from-zero",
        rejected("a log scale needs low > 0"),
        exp(
            search={
                "optuna": {
                    "trials": 2,
                    "parameters": {"learning_rate": {"type": "Float", "low": 0, "high": 0.01, "log": True}},
                }
            }
        ),
    ),
    Case(
        "exp-optuna-int-fraction",
        rejected("an Int parameter takes whole numbers"),
        exp(search={"optuna": {"trials": 2, "parameters": {"n_steps": {"type": "Int", "low": 16.5, "high": 256}}}}),
    ),
    Case(
        "exp-optuna-grid-of-floats",
        rejected("the Grid sampler needs every parameter Categorical"),
        exp(
            search={
                "optuna": {
                    "sampler": "Grid",
                    "trials": 2,
                    "parameters": {"gamma": {"type": "Float", "low": 0.9, "high": 0.99}},
                }
            }
        ),
    ),
    Case(
        "exp-optuna-benchmark-objective",
        rejected("a sampler learns from each configuration's score as its runs finish"),
        exp(
            objective={"metric": "Benchmark"},
            benchmark={"episodes": 5},
            search={"optuna": {"trials": 2, "parameters": {"gamma": {"type": "Float", "low": 0.9, "high": 0.99}}}},
        ),
    ),
    Case(
        "exp-pbt-population-over-the-cap",
        rejected("spec.search.pbt.population", "less than or equal to 64"),
        exp(
            seeds={"count": 1},
            search={
                "pbt": {
                    "population": 65,
                    "interval": 1024,
                    "parameters": {"gamma": {"type": "Float", "low": 0.9, "high": 0.99}},
                }
            },
        ),
    ),
    Case(
        "exp-pbt-several-seeds",
        rejected("PBT's members each train with a seed of their own"),
        exp(
            search={
                "pbt": {
                    "population": 2,
                    "interval": 1024,
                    "parameters": {"gamma": {"type": "Float", "low": 0.9, "high": 0.99}},
                }
            }
        ),
    ),
    Case(
        "exp-pbt-interval-past-the-budget",
        rejected("PBT needs template.totalTimesteps above search.pbt.interval"),
        exp(
            seeds={"count": 1},
            search={
                "pbt": {
                    "population": 2,
                    "interval": 4096,
                    "parameters": {"gamma": {"type": "Float", "low": 0.9, "high": 0.99}},
                }
            },
        ),
    ),
    # --- Experiment: refused by the operator before any run exists -------------------------
    Case(
        "exp-optuna-unknown-hyperparameter",
        failed(
            "UnknownHyperparameter",
            "spec.search.optuna.parameters: unknown hyperparameter 'learning_rat' for PPO",
            "did you mean learning_rate",
            max_pods=0,
        ),
        exp(
            search={
                "optuna": {"trials": 2, "parameters": {"learning_rat": {"type": "Float", "low": 1e-4, "high": 1e-3}}}
            }
        ),
    ),
    Case(
        "exp-optuna-categorical-without-choices",
        failed("InvalidSpec", "spec.search.optuna.parameters.gamma", "Categorical takes choices", max_pods=0),
        exp(search={"optuna": {"trials": 2, "parameters": {"gamma": {"type": "Categorical"}}}}),
    ),
    Case(
        "exp-pbt-perturb-non-numeric",
        failed(
            "InvalidSearch",
            "spec.search.pbt.parameters: normalize_advantage: Perturb moves a Categorical to a neighbouring number",
            "set explore: Resample",
            max_pods=0,
        ),
        exp(
            seeds={"count": 1},
            search={
                "pbt": {
                    "population": 2,
                    "interval": 1024,
                    "parameters": {"normalize_advantage": {"type": "Categorical", "choices": [True, False]}},
                }
            },
        ),
    ),
    Case(
        "exp-pbt-network-explored",
        failed("InvalidSearch", "policy_kwargs", "the network cannot differ between members", max_pods=0),
        exp(
            seeds={"count": 1},
            search={
                "pbt": {
                    "population": 2,
                    "interval": 1024,
                    "parameters": {
                        "policy_kwargs": {
                            "type": "Categorical",
                            "choices": ["dict(net_arch=[8])"],
                            "explore": "Resample",
                        }
                    },
                }
            },
        ),
    ),
    Case(
        "exp-optuna-grid-smaller-than-trials",
        failed("InvalidSearch", "search.optuna.trials is 3 but the Grid sampler's grid has 2 points", max_pods=0),
        exp(
            search={
                "optuna": {
                    "sampler": "Grid",
                    "trials": 3,
                    "parameters": {"gamma": {"type": "Categorical", "choices": [0.9, 0.99]}},
                }
            }
        ),
    ),
    Case(
        "exp-grid-1e6",
        failed("TooManyRuns", "1000000 configurations x 2 seeds = 2000000 runs", "at most 500", max_pods=0),
        exp(search={"grid": GRID_1E6}),
    ),
    Case(
        "exp-too-many-runs",
        failed("TooManyRuns", "26 configurations x 20 seeds = 520 runs", max_pods=0),
        exp(seeds={"count": 20}, search={"grid": {"learning_rate": [0.0001 * (i + 1) for i in range(26)]}}),
    ),
    Case(
        "exp-hyperparameter-near-miss",
        failed(
            "UnknownHyperparameter",
            "spec.search.grid: unknown hyperparameter 'learning_rat' for PPO",
            "did you mean learning_rate",
            max_pods=0,
        ),
        exp(search={"grid": {"learning_rat": [0.001, 0.003]}}),
    ),
    Case(
        "exp-grid-value-code",
        failed(
            "InvalidHyperparameters",
            "spec.search (configuration c1).policy_kwargs: a call to open('/etc/passwd').read() (calling open())",
            "never evaluated",
            max_pods=0,
        ),
        exp(search={"grid": {"policy_kwargs": ["dict(net_arch=[64])", "open('/etc/passwd').read()"]}}),
    ),
    Case(
        "exp-hyperparameter-reserved",
        failed("UnknownHyperparameter", "'seed' is not a hyperparameter here; set it in spec.seeds", max_pods=0),
        exp(search={"grid": {"seed": [1, 2]}}),
    ),
    Case(
        "exp-template-hyperparameter-unknown",
        failed("UnknownHyperparameter", "spec.template.hyperparameters: unknown hyperparameter 'n_step'", max_pods=0),
        exp_template(hyperparameters={"n_step": 512}),
    ),
    Case(
        "exp-hyperparameter-of-another-algorithm",
        failed("UnknownHyperparameter", "unknown hyperparameter 'buffer_size' for PPO", max_pods=0),
        exp(search={"grid": {"buffer_size": [1000, 10000]}}),
    ),
    Case(
        "exp-random-no-integer",
        failed("InvalidSearch", "search.random.parameters.n_epochs: no integer in [0.2, 0.8]", max_pods=0),
        exp(
            search={
                "random": {
                    "trials": 2,
                    "parameters": {"n_epochs": {"distribution": "IntUniform", "low": 0.2, "high": 0.8}},
                }
            }
        ),
    ),
]
