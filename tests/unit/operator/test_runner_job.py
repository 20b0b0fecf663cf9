"""Rendering the runner Job of a TrainingRun, and planning updates of a live one."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.exitcodes import EXIT_USER_ERROR
from kubegym_api.runnerconfig import TrainConfig
from kubegym_operator.builders.job import (
    QUEUE_LABEL,
    SCHEDULING_ANNOTATION,
    RenderError,
    build_train_config,
    checkpoint_uri_of,
    plan_job_update,
    render_job,
)
from kubegym_operator.settings import Settings, load_settings

UID = "6b1c2d3e-0000-4000-8000-000000000001"


def make_run(**spec: Any) -> dict[str, Any]:
    """A TrainingRun as the API server returns it (defaults applied)."""
    body: dict[str, Any] = {
        "algorithm": "PPO",
        "environment": {"id": "CartPole-v1", "nEnvs": 4},
        "totalTimesteps": 100_000,
        "checkpoint": {
            "everySteps": 5000,
            "keepLast": 2,
            "storage": {
                "bucket": "kubegym",
                "prefix": "runs/",
                "endpoint": "http://minio.minio:9000",
                "secretRef": "minio-creds",
            },
        },
        "resources": {"cpu": 2, "memory": "4Gi", "gpu": 0},
        "scheduling": {},
        "runPolicy": {"backoffLimit": 3},
        "suspend": False,
    }
    body.update(spec)
    return {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "cartpole", "namespace": "research", "uid": UID, "generation": 1},
        "spec": body,
    }


@pytest.fixture
def settings() -> Settings:
    return load_settings({"KUBEGYM_GPU_NODE_SELECTOR": '{"nvidia.com/gpu.present": "true"}'})


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def runner(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(job)["containers"]
    assert container["name"] == "runner"
    return dict(container)


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in runner(job)["env"]}


def test_identity_owner_and_labels(settings: Settings) -> None:
    job = render_job(make_run(), settings)
    meta = job["metadata"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert meta["name"] == "cartpole-train"
    assert meta["namespace"] == "research"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kubegym.io/v1alpha1",
            "kind": "TrainingRun",
            "name": "cartpole",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["kubegym.io/training-run"] == "cartpole"
    assert job["spec"]["template"]["metadata"]["labels"]["kubegym.io/training-run"] == "cartpole"
    assert pod_spec(job)["serviceAccountName"] == "cartpole-runner"
    assert render_job(make_run(), settings) == job


def test_runs_the_runner_train_command_with_its_config(settings: Settings) -> None:
    job = render_job(make_run(seed=7), settings)
    container = runner(job)
    assert container["command"] == ["kubegym-runner"]
    assert container["args"] == ["train"]
    assert container["image"] == "ghcr.io/kubegym/kubegym-runner:0.1.0"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    config = TrainConfig.model_validate_json(env_of(job)[CONFIG_ENV]["value"])
    assert config.algorithm == "PPO"
    assert config.environment.n_envs == 4
    assert config.seed == 7
    assert config.total_timesteps == 100_000
    assert config.checkpoint.every_steps == 5000
    assert config.checkpoint.keep_last == 2
    assert config.storage.bucket == "kubegym"
    assert config.run_prefix == f"runs/research/cartpole/{UID}"
    assert config.run_uid == UID
    assert job["metadata"]["annotations"]["kubegym.io/artifacts"] == f"s3://kubegym/runs/research/cartpole/{UID}/"
    assert config.report_to is not None
    assert (config.report_to.plural, config.report_to.namespace, config.report_to.name) == (
        "trainingruns",
        "research",
        "cartpole",
    )


def test_image_override(settings: Settings) -> None:
    job = render_job(make_run(image="registry.local/runner:exp"), settings)
    assert runner(job)["image"] == "registry.local/runner:exp"


def test_credentials_only_by_reference(settings: Settings) -> None:
    job = render_job(make_run(), settings)
    env = env_of(job)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "minio-creds", "key": key}
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    literal = {e["name"]: e["value"] for e in runner(job)["env"] if "value" in e}
    assert not any(name.startswith("AWS_") for name in literal)
    config = json.loads(literal[CONFIG_ENV])
    assert set(config["storage"]) <= {"bucket", "prefix", "endpoint", "region", "secretRef"}


def test_restricted_pod_security(settings: Settings) -> None:
    job = render_job(make_run(), settings)
    pod = pod_spec(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = runner(job)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in runner(job)["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/home/kubegym"}
    assert all("emptyDir" in volumes[name] for name in mounts.values())
    assert env_of(job)["HOME"]["value"] == "/home/kubegym"
    assert all(key not in pod for key in ("hostNetwork", "hostPID", "hostIPC"))


def test_pod_failure_policy_and_run_policy(settings: Settings) -> None:
    run = make_run(runPolicy={"backoffLimit": 5, "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600})
    spec = render_job(run, settings)["spec"]
    assert spec["backoffLimit"] == 5
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [EXIT_USER_ERROR]},
    } in rules
    assert EXIT_USER_ERROR == 42


def test_ttl_defaults_to_the_operator_setting() -> None:
    settings = load_settings({"KUBEGYM_JOB_TTL_SECONDS_AFTER_FINISHED": "3600"})
    assert render_job(make_run(), settings)["spec"]["ttlSecondsAfterFinished"] == 3600
    assert "ttlSecondsAfterFinished" not in render_job(make_run(), Settings())["spec"]
    assert "activeDeadlineSeconds" not in render_job(make_run(), Settings())["spec"]


def test_gpu_run_gets_gpus_and_gpu_nodes(settings: Settings) -> None:
    run = make_run(
        device="cuda",
        resources={"cpu": "4", "memory": "16Gi", "gpu": 2},
        scheduling={
            "nodeSelector": {"nvidia.com/gpu.present": "yes", "pool": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training-high",
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        },
    )
    job = render_job(run, settings)
    resources = runner(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["limits"]["memory"] == "16Gi"
    assert resources["requests"] == {"cpu": "4", "memory": "16Gi"}
    pod = pod_spec(job)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "yes", "pool": "a100"}  # run wins
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]  # the default is not added twice
    assert pod["priorityClassName"] == "training-high"
    assert pod["affinity"] == run["spec"]["scheduling"]["affinity"]
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(job)


def test_cpu_run_gets_no_gpu_and_hides_node_gpus(settings: Settings) -> None:
    job = render_job(make_run(), settings)
    assert "nvidia.com/gpu" not in runner(job)["resources"]["limits"]
    assert "nvidia.com/gpu" not in runner(job)["resources"]["requests"]
    assert "nodeSelector" not in pod_spec(job)
    assert "tolerations" not in pod_spec(job)
    assert env_of(job)["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"


def test_default_resources_from_settings() -> None:
    settings = load_settings({"KUBEGYM_DEFAULT_CPU": "3", "KUBEGYM_DEFAULT_MEMORY": "6Gi"})
    job = render_job(make_run(resources={"gpu": 0}), settings)
    assert runner(job)["resources"]["requests"] == {"cpu": "3", "memory": "6Gi"}


def test_queue_label_and_suspend(settings: Settings) -> None:
    plain = render_job(make_run(), settings)
    assert QUEUE_LABEL not in plain["metadata"]["labels"]
    assert plain["spec"]["suspend"] is False

    queued = render_job(make_run(scheduling={"queueName": "team-a"}), settings)
    assert queued["metadata"]["labels"][QUEUE_LABEL] == "team-a"
    assert QUEUE_LABEL not in queued["spec"]["template"]["metadata"]["labels"]
    assert queued["spec"]["suspend"] is True  # Kueue admits by unsuspending

    defaulted = render_job(make_run(), load_settings({"KUBEGYM_DEFAULT_QUEUE": "shared"}))
    assert defaulted["metadata"]["labels"][QUEUE_LABEL] == "shared"

    assert render_job(make_run(suspend=True), settings)["spec"]["suspend"] is True


def test_default_storage_from_settings() -> None:
    run = make_run(checkpoint={"everySteps": 1000})
    with pytest.raises(RenderError) as err:
        render_job(run, Settings())
    assert err.value.reason == "StorageNotConfigured"

    settings = load_settings(
        {
            "KUBEGYM_STORAGE_BUCKET": "shared",
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": "shared-creds",
        }
    )
    job = render_job(run, settings)
    assert env_of(job)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "shared-creds"
    config = TrainConfig.model_validate_json(env_of(job)[CONFIG_ENV]["value"])
    assert config.storage.bucket == "shared"
    assert config.run_prefix == f"research/cartpole/{UID}"


def test_resume_from_uri_and_from_another_run(settings: Settings) -> None:
    uri = "s3://kubegym/runs/research/old/checkpoints/000000050000/"
    assert build_train_config(make_run(resumeFrom={"uri": uri}), settings).resume_from == uri

    from_run = make_run(resumeFrom={"trainingRun": "old"})
    with pytest.raises(RenderError) as err:
        build_train_config(from_run, settings)
    assert err.value.reason == "ResumeSourceNotFound"
    other = make_run()
    other["metadata"].update(name="old", uid="uid-old")
    other["status"] = {
        "artifacts": {
            "bucket": "kubegym",
            "prefix": "runs/research/old/uid-old",
            "uri": "s3://kubegym/runs/research/old/uid-old/",
        },
        "checkpoints": {
            "latestUri": "s3://kubegym/runs/research/old/uid-old/checkpoints/000000050000",
            "latestStep": 50000,
        },
    }
    resolved = checkpoint_uri_of(other, settings)
    assert resolved == "s3://kubegym/runs/research/old/uid-old/checkpoints/000000050000"
    assert build_train_config(from_run, settings, resume_uri=resolved).resume_from == resolved
    assert checkpoint_uri_of({**other, "status": {}}, settings) is None
    # The other run's runner reports the URI: one outside that run's own folder is not resumed from.
    elsewhere = copy.deepcopy(other)
    elsewhere["status"]["checkpoints"]["latestUri"] = "s3://kubegym/runs/other-team/secret/checkpoints/000000050000"
    assert checkpoint_uri_of(elsewhere, settings) is None
    # A run from before the uid reported its checkpoints in the old layout: they are its own.
    legacy = copy.deepcopy(other)
    legacy["status"] = {"checkpoints": {"latestUri": uri}}
    assert checkpoint_uri_of(legacy, settings) == uri


# --- updates of a live Job ---------------------------------------------------------------


def live(job: dict[str, Any], **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(job)
    out["status"] = status
    return out


def test_nothing_to_do_for_an_unchanged_run(settings: Settings) -> None:
    run = make_run()
    plan = plan_job_update(run, live(render_job(run, settings)), settings)
    assert plan.patch == [] and not plan.recreate


def test_suspend_and_resume_follow_the_run(settings: Settings) -> None:
    run = make_run()
    job = live(render_job(run, settings), startTime="2026-01-01T00:00:00Z")
    suspended = make_run(suspend=True)
    assert plan_job_update(suspended, job, settings).patch == [{"op": "add", "path": "/spec/suspend", "value": True}]
    job["spec"]["suspend"] = True
    assert plan_job_update(run, job, settings).patch == [{"op": "add", "path": "/spec/suspend", "value": False}]


def test_kueue_jobs_are_never_unsuspended_by_the_operator(settings: Settings) -> None:
    run = make_run(scheduling={"queueName": "team-a"})
    job = live(render_job(run, settings))
    assert job["spec"]["suspend"] is True
    assert plan_job_update(run, job, settings).patch == []


def test_ttl_follows_the_run(settings: Settings) -> None:
    job = live(render_job(make_run(), settings))
    run = make_run(runPolicy={"backoffLimit": 3, "ttlSecondsAfterFinished": 30})
    assert plan_job_update(run, job, settings).patch == [
        {"op": "add", "path": "/spec/ttlSecondsAfterFinished", "value": 30}
    ]


def test_scheduling_change_of_a_suspended_job_is_patched_in_place(settings: Settings) -> None:
    before = make_run(scheduling={"queueName": "team-a", "nodeSelector": {"pool": "a"}})
    job = live(render_job(before, settings))
    after = make_run(scheduling={"queueName": "team-b", "nodeSelector": {"pool": "b"}})
    plan = plan_job_update(after, job, settings)
    assert not plan.recreate
    paths = {op["path"]: op for op in plan.patch}
    assert paths["/spec/template/spec/nodeSelector"]["value"] == {"pool": "b"}
    assert paths["/metadata/labels/kueue.x-k8s.io~1queue-name"]["value"] == "team-b"
    annotation = "/metadata/annotations/kubegym.io~1scheduling-hash"
    assert paths[annotation]["value"] == render_job(after, settings)["metadata"]["annotations"][SCHEDULING_ANNOTATION]


def test_scheduling_change_of_an_unstarted_running_job_recreates_it(settings: Settings) -> None:
    job = live(render_job(make_run(), settings), startTime="2026-01-01T00:00:00Z", active=1)
    after = make_run(scheduling={"tolerations": [{"key": "spot", "operator": "Exists"}]})
    assert plan_job_update(after, job, settings).recreate


def test_scheduling_is_left_alone_once_the_run_started(settings: Settings) -> None:
    job = live(render_job(make_run(), settings), startTime="2026-01-01T00:00:00Z")
    after = make_run(scheduling={"nodeSelector": {"pool": "b"}})
    after["status"] = {"startTime": "2026-01-01T00:00:10Z"}
    assert plan_job_update(after, job, settings) == plan_job_update(make_run(), job, settings)


def test_kueue_injected_node_selectors_are_not_drift(settings: Settings) -> None:
    run = make_run(scheduling={"queueName": "team-a"})
    job = live(render_job(run, settings), startTime="2026-01-01T00:00:00Z", active=1)
    job["spec"]["suspend"] = False
    job["spec"]["template"]["spec"]["nodeSelector"] = {"cloud.google.com/gke-spot": "true"}
    plan = plan_job_update(run, job, settings)
    assert plan.patch == [] and not plan.recreate
