"""Operator settings from environment variables."""

from __future__ import annotations

import pytest

from kubegym_operator.settings import (
    DEFAULT_RUNNER_IMAGE,
    SettingsError,
    load_settings,
)


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings.runner_image == DEFAULT_RUNNER_IMAGE == "ghcr.io/kubegym/kubegym-runner:0.1.0"
    assert settings.default_storage is None
    assert settings.default_queue_name is None
    assert [t.key for t in settings.gpu_tolerations] == ["nvidia.com/gpu"]
    assert settings.gpu_node_selector == {}


def test_values_from_environment() -> None:
    settings = load_settings(
        {
            "KUBEGYM_RUNNER_IMAGE": "registry.local/runner:dev",
            "KUBEGYM_GPU_NODE_SELECTOR": '{"nvidia.com/gpu.present": "true"}',
            "KUBEGYM_GPU_TOLERATIONS": '[{"key": "gpu", "operator": "Exists", '
            '"effect": "NoExecute", "tolerationSeconds": 30}]',
            "KUBEGYM_DEFAULT_QUEUE": "team-a",
            "KUBEGYM_DEFAULT_MEMORY": "8Gi",
            "KUBEGYM_IMAGE_PULL_SECRETS": "regcred, other ,",
            "KUBEGYM_STORAGE_BUCKET": "kubegym",
            "KUBEGYM_STORAGE_ENDPOINT": "http://minio.minio:9000",
            "KUBEGYM_STORAGE_CREDENTIALS": "static",
            "KUBEGYM_STORAGE_SECRET": "minio-creds",
            "KUBEGYM_PENDING_ERROR_GRACE_SECONDS": "60",
            "KUBEGYM_JOB_TTL_SECONDS_AFTER_FINISHED": "",
        }
    )
    assert settings.runner_image == "registry.local/runner:dev"
    assert settings.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert settings.gpu_tolerations[0].toleration_seconds == 30
    assert settings.default_queue_name == "team-a"
    assert settings.default_memory == "8Gi"
    assert settings.image_pull_secrets == ("regcred", "other")
    assert settings.default_storage is not None
    assert settings.default_storage.secret_ref == "minio-creds"
    assert settings.default_storage.endpoint == "http://minio.minio:9000"
    assert settings.pending_error_grace_seconds == 60
    assert settings.default_ttl_seconds_after_finished is None


def test_empty_toleration_list_disables_the_default() -> None:
    assert load_settings({"KUBEGYM_GPU_TOLERATIONS": "[]"}).gpu_tolerations == ()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KUBEGYM_GPU_NODE_SELECTOR": "{not json"}, "KUBEGYM_GPU_NODE_SELECTOR"),
        ({"KUBEGYM_RUNNER_IMAGE_PULL_POLICY": "Sometimes"}, "KUBEGYM_RUNNER_IMAGE_PULL_POLICY"),
        ({"KUBEGYM_DEFAULT_CPU": "lots"}, "KUBEGYM_DEFAULT_CPU"),
        ({"KUBEGYM_STORAGE_SECRET": "creds"}, "KUBEGYM_STORAGE_BUCKET"),
        ({"KUBEGYM_PENDING_ERROR_GRACE_SECONDS": "-1"}, "KUBEGYM_PENDING_ERROR_GRACE_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(env)
