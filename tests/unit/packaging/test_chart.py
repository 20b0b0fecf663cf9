"""The Helm chart: lint, render, the values schema, the env contract with the operator's
settings, and RBAC that allows what the operator does and nothing else."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubegym_packaging
import pytest
import yaml

from kubegym_api import GROUP
from kubegym_api.crdgen import KINDS
from kubegym_api.storage import S3Storage, SessionCredentials
from kubegym_api.workload import QUANTITY_PATTERN
from kubegym_localcluster import layout
from kubegym_operator.builders.benchmark import evaluator_role_rules
from kubegym_operator.builders.credentials import credentials_secret
from kubegym_operator.builders.experiment_report import render_report_rbac
from kubegym_operator.builders.job import render_job
from kubegym_operator.builders.rbac import render_runner_rbac, runner_role_rules
from kubegym_operator.settings import (
    DEFAULT_LEASE_NAME,
    DEFAULT_RUNNER_IMAGE,
    ENV_VARS,
    LEADER_ELECTION_ENV_VARS,
    STORAGE_ENV_VARS,
    STORAGE_KEY_ENV_VARS,
    LeaderElection,
    Settings,
    StorageCredentials,
    load_leader_election,
    load_settings,
)
from tests.support.helm import CHART, Helm, container_env, container_field_env, find

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

#: Every value set away from its default (and the default storage), to follow each one through.
FULL_VALUES: dict[str, Any] = {
    "operator": {
        "image": {"repository": "registry.example.com/ml/kubegym-operator", "tag": "1.2.3", "pullPolicy": "Always"},
        "replicas": 3,
        "leaderElection": {"leaseDurationSeconds": 20, "renewDeadlineSeconds": 12.5, "retryPeriodSeconds": 3},
        "watchNamespaces": [],
        "logLevel": "debug",
        "healthPort": 18080,
        "resources": {"requests": {"cpu": 0.2, "memory": "300Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "ml-platform"},
    },
    "imagePullSecrets": ["regcred", "mirror-cred"],
    "runner": {
        "image": {
            "repository": "registry.example.com/ml/kubegym-runner",
            "digest": "sha256:" + "a" * 64,
            "pullPolicy": "Always",
        },
        "resources": {"cpu": 2, "memory": "6Gi"},
        "tmpSizeLimit": "40Gi",
        "terminationGracePeriodSeconds": 1200000,
        "jobTTLSecondsAfterFinished": 0,
        "pendingErrorGraceSeconds": 45,
        "progressIntervalSeconds": 2.5,
    },
    "storage": {
        "bucket": "rl-artifacts",
        "prefix": "kubegym/prod",
        "endpoint": "https://s3.eu-central-1.amazonaws.com",
        "region": "eu-central-1",
        "credentials": "sts",
        "sts": {
            "operatorSecretName": "rl-operator-key",
            "durationSeconds": 7200,
            "endpoint": "https://sts.eu-central-1.amazonaws.com",
            "roleArn": "arn:aws:iam::123456789012:role/kubegym-runs",
        },
    },
    "gpu": {
        "nodeSelector": {"nvidia.com/gpu.present": "true", "cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    },
    "kueue": {"defaultQueueName": "team-gpus"},
}


@pytest.fixture
def helm(tmp_path: Path) -> Helm:
    return Helm(workdir=tmp_path)


def _deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(manifests, "Deployment")
    return deployment


def _operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _deployment(manifests)["spec"]["template"]["spec"]["containers"][0]
    return container


# --- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["defaults", "every-value"])
def test_helm_lint_strict(helm: Helm, values: dict[str, Any] | None) -> None:
    args = ["lint", str(CHART), "--strict"]
    if values:
        args += ["--values", str(helm.values_file(values))]
    out = helm.run(*args)
    assert "0 chart(s) failed" in out.stdout


#: Values that leave out the observability objects (metrics Service, dashboards, ...; their
#: tests are in tests/unit/observability), so that the rest can be listed exactly.
NO_METRICS: dict[str, Any] = {"metrics": {"enabled": False}}


def test_default_render(helm: Helm) -> None:
    core = sorted((m["kind"], m["metadata"]["name"]) for m in helm.manifests(NO_METRICS))
    manifests = helm.manifests()
    assert set(core) <= {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert core == [
        ("ClusterRole", "kubegym"),
        ("ClusterRole", "kubegym-discovery"),
        ("ClusterRoleBinding", "kubegym"),
        ("ClusterRoleBinding", "kubegym-discovery"),
        ("Deployment", "kubegym"),
        ("PodDisruptionBudget", "kubegym"),
        ("Role", "kubegym-leader-election"),
        ("RoleBinding", "kubegym-leader-election"),
        ("ServiceAccount", "kubegym"),
    ]
    for m in manifests:
        assert m["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubegym"
    deployment = _deployment(manifests)
    assert deployment["metadata"]["namespace"] == "kubegym-system"
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "kubegym"
    (sa,) = find(manifests, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is True


_SPREAD: dict[str, Any] = {
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "kubegym",
                        "app.kubernetes.io/instance": "kubegym",
                        "app.kubernetes.io/component": "operator",
                    }
                },
            },
        }
    ]
}
_ROLLING: dict[str, Any] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
_NODES: dict[str, Any] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
_OWN_SPREAD: dict[str, Any] = {"requiredDuringSchedulingIgnoredDuringExecution": []}


@pytest.mark.parametrize(
    ("operator", "strategy", "pdb", "affinity"),
    [
        pytest.param({"replicas": 0}, {"type": "Recreate"}, False, None, id="paused"),
        pytest.param({"replicas": 1}, {"type": "Recreate"}, False, None, id="one-recreate-no-pdb"),
        pytest.param({"replicas": 1, "affinity": _NODES}, {"type": "Recreate"}, False, _NODES, id="one-own-affinity"),
        pytest.param({"replicas": 2}, _ROLLING, True, {"podAntiAffinity": _SPREAD}, id="two-rolling-pdb-spread"),
        pytest.param({"replicas": 3}, _ROLLING, True, {"podAntiAffinity": _SPREAD}, id="three"),
        pytest.param(
            {"replicas": 2, "affinity": _NODES},
            _ROLLING,
            True,
            {**_NODES, "podAntiAffinity": _SPREAD},
            id="spread-added",
        ),
        pytest.param(
            {"replicas": 2, "affinity": {"podAntiAffinity": _OWN_SPREAD}},
            _ROLLING,
            True,
            {"podAntiAffinity": _OWN_SPREAD},
            id="own-anti-affinity-wins",
        ),
    ],
)
def test_replicas_shape_strategy_disruption_budget_and_spread(
    helm: Helm, operator: dict[str, Any], strategy: dict[str, Any], pdb: bool, affinity: dict[str, Any] | None
) -> None:
    manifests = helm.manifests({"operator": operator})
    spec = _deployment(manifests)["spec"]
    assert spec["replicas"] == operator["replicas"]
    assert spec["strategy"] == strategy
    assert spec["template"]["spec"].get("affinity") == affinity
    budgets = find(manifests, "PodDisruptionBudget")
    if not pdb:
        assert budgets == []
        return
    (budget,) = budgets
    assert budget["metadata"]["namespace"] == "kubegym-system"
    assert budget["spec"] == {"minAvailable": 1, "selector": spec["selector"]}


def test_every_replica_knows_its_name_and_namespace_for_the_lease(helm: Helm) -> None:
    """POD_NAME (the Lease's holderIdentity) and POD_NAMESPACE (where the Lease is, and what
    turns leader election on) come from the downward API."""
    deployment = _deployment(helm.manifests())
    assert container_field_env(deployment) == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    env = {**container_env(deployment), "POD_NAME": "kubegym-6b7c9-x2x4q", "POD_NAMESPACE": "kubegym-system"}
    assert load_leader_election(env) == LeaderElection(
        enabled=True, namespace="kubegym-system", identity="kubegym-6b7c9-x2x4q"
    )


def test_crds_ship_with_the_chart(helm: Helm) -> None:
    """charts/kubegym/crds/ is crds/ byte for byte (make packaging copies it), and is rendered."""
    stale = [p for p in kubegym_packaging.stale() if kubegym_packaging.CHART_CRDS in p.parents]
    assert not stale, f"chart CRDs differ from crds/: {[p.name for p in stale]}; run `make packaging`"
    shipped = sorted(p.name for p in kubegym_packaging.CHART_CRDS.glob("*"))
    assert shipped == sorted(p.name for p in (layout.REPO / "crds").glob("*.yaml"))
    assert {f"{k.crd_name}.yaml" for k in KINDS} <= set(shipped)
    crds = [m for m in helm.manifests(include_crds=True) if m["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(k.crd_name for k in KINDS)
    assert all(not p.is_symlink() for p in kubegym_packaging.CHART_CRDS.iterdir())


def test_pod_passes_restricted_and_runs_with_a_read_only_root(helm: Helm) -> None:
    manifests = helm.manifests()
    pod = _deployment(manifests)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _operator_container(manifests)
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] != 0
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_liveness_probe_targets_kopfs_endpoint(helm: Helm) -> None:
    """The probe's port is the one the operator's --liveness (KUBEGYM_LIVENESS) listens on."""
    manifests = helm.manifests({"operator": {"healthPort": 18123}})
    container = _operator_container(manifests)
    env = container_env(_deployment(manifests))
    assert env["KUBEGYM_LIVENESS"] == "http://0.0.0.0:18123/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["path"] == "/healthz"
        assert ports[probe["httpGet"]["port"]] == 18123


def test_versions_follow_the_package() -> None:
    """Chart version, appVersion (the images' default tag) and the operator's default runner
    image all follow pyproject's version."""
    version = tomllib.loads((layout.REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version
    runner = DEFAULTS["runner"]["image"]
    assert f"{runner['repository']}:{chart['appVersion']}" == DEFAULT_RUNNER_IMAGE


# --- the contract with kubegym_operator.settings --------------------------------------------


def test_every_value_reaches_the_operator_settings(helm: Helm) -> None:
    """Rendered env → load_settings (the operator's own parser) → the values put in."""
    manifests = helm.manifests(FULL_VALUES)
    env = container_env(_deployment(manifests))
    settings = load_settings(env)
    runner = FULL_VALUES["runner"]
    assert settings.runner_image == f"registry.example.com/ml/kubegym-runner@sha256:{'a' * 64}"
    assert settings.image_pull_policy == "Always"
    assert settings.image_pull_secrets == ("regcred", "mirror-cred")
    assert settings.default_cpu == "2" and settings.default_memory == "6Gi"
    assert settings.tmp_size_limit == "40Gi"
    assert settings.termination_grace_period_seconds == runner["terminationGracePeriodSeconds"]
    assert settings.default_ttl_seconds_after_finished == 0
    assert settings.pending_error_grace_seconds == 45
    assert settings.progress_interval_seconds == 2.5
    assert settings.gpu_node_selector == FULL_VALUES["gpu"]["nodeSelector"]
    assert [t.model_dump(by_alias=True, exclude_none=True) for t in settings.gpu_tolerations] == FULL_VALUES["gpu"][
        "tolerations"
    ]
    assert settings.default_queue_name == "team-gpus"
    election = load_leader_election({**env, "POD_NAME": "p", "POD_NAMESPACE": "kubegym-system"})
    assert (
        election.enabled,
        election.lease_duration_seconds,
        election.renew_deadline_seconds,
        election.retry_period_seconds,
    ) == (True, 20, 12.5, 3)
    storage = settings.default_storage
    assert storage is not None
    assert (storage.bucket, storage.prefix, storage.endpoint, storage.region, storage.secret_ref) == (
        "rl-artifacts",
        "kubegym/prod",
        "https://s3.eu-central-1.amazonaws.com",
        "eu-central-1",
        None,
    )
    assert settings.storage_credentials == StorageCredentials.sts and settings.mints_credentials
    assert settings.storage_credentials_duration_seconds == 7200
    assert settings.sts_endpoint() == "https://sts.eu-central-1.amazonaws.com"
    assert settings.storage_role_arn == "arn:aws:iam::123456789012:role/kubegym-runs"
    # The operator's own key comes from its Secret in the release namespace, by reference only.
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in _operator_container(manifests)["env"]
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    assert refs == {
        "KUBEGYM_STORAGE_ACCESS_KEY_ID": {"name": "rl-operator-key", "key": "AWS_ACCESS_KEY_ID"},
        "KUBEGYM_STORAGE_SECRET_ACCESS_KEY": {"name": "rl-operator-key", "key": "AWS_SECRET_ACCESS_KEY"},
    }
    assert set(refs) == set(STORAGE_KEY_ENV_VARS)
    container = _operator_container(manifests)
    assert container["image"] == "registry.example.com/ml/kubegym-operator:1.2.3"
    assert container["args"] == ["--verbose"]
    pod = _deployment(manifests)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_static_storage_credentials_reach_the_operator_settings(helm: Helm) -> None:
    """The opt-in for stores without STS: the Secret every run's namespace holds, by reference."""
    values = {
        "storage": {"bucket": "kubegym", "endpoint": "http://minio:9000", "credentials": "static", "secretName": "s3"}
    }
    manifests = helm.manifests(values)
    settings = load_settings(container_env(_deployment(manifests)))
    assert settings.storage_credentials == StorageCredentials.static and not settings.mints_credentials
    assert settings.default_storage is not None and settings.default_storage.secret_ref == "s3"
    assert not [e for e in _operator_container(manifests)["env"] if "secretKeyRef" in (e.get("valueFrom") or {})]
    assert "secrets" not in {resource for _, resource, _ in _rules(_operator_role(manifests))}


def test_defaults_give_the_operators_defaults(helm: Helm) -> None:
    """With the chart's defaults the operator runs as it does with no env at all, except that
    the chart writes the GPU tolerations explicitly."""
    env = container_env(_deployment(helm.manifests()))
    assert load_settings(env) == Settings()
    assert "KUBEGYM_STORAGE_BUCKET" not in env


def test_gpu_tolerations_can_be_emptied(helm: Helm) -> None:
    env = container_env(_deployment(helm.manifests({"gpu": {"tolerations": []}})))
    assert load_settings(env).gpu_tolerations == ()


def test_the_chart_sets_only_variables_the_operator_reads(helm: Helm) -> None:
    """Every KUBEGYM_* the chart renders is read by the operator, and every setting of the
    operator can be set from values."""
    known = (
        set(ENV_VARS)
        | set(STORAGE_ENV_VARS)
        | {"KUBEGYM_LIVENESS", "KUBEGYM_WATCH_NAMESPACES", "KUBEGYM_METRICS_PORT"}
        # The Lease's name stays the operator's default (the chart's leader-election Role is
        # pinned to it); its namespace is the pod's.
        | (set(LEADER_ELECTION_ENV_VARS) - {"KUBEGYM_LEASE_NAME"})
    )
    main = (layout.REPO / "operator" / "kubegym_operator" / "main.py").read_text()
    assert all(f'"{var}"' in main for var in ("KUBEGYM_LIVENESS", "KUBEGYM_WATCH_NAMESPACES", "KUBEGYM_METRICS_PORT"))
    seen: set[str] = set()
    static = {"storage": {"bucket": "kubegym", "endpoint": "http://m:9000", "credentials": "static", "secretName": "s"}}
    for values in (FULL_VALUES, {"operator": {"watchNamespaces": ["team-a"]}}, static):
        env = container_env(_deployment(helm.manifests(values)))
        names = {n for n in env if n.startswith("KUBEGYM_")}
        assert names <= known, f"unknown variables: {names - known}"
        seen |= names
    assert seen == known


# --- values.schema.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"replicas": -1}}, "at '/operator/replicas': minimum: got -1, want 0"),
        (
            {"operator": {"replicas": 2, "leaderElection": {"enabled": False}}},
            "operator.leaderElection.enabled is required with more than one operator replica",
        ),
        (
            {"operator": {"leaderElection": {"renewDeadlineSeconds": 10}}},
            "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds",
        ),
        (
            {"operator": {"leaderElection": {"retryPeriodSeconds": 8}}},
            "leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds",
        ),
        (
            {"operator": {"leaderElection": {"retryPeriodSeconds": 0}}},
            "at '/operator/leaderElection/retryPeriodSeconds'",
        ),
        (
            {"operator": {"leaderElection": {"leaseDurationSeconds": 1.5}}},
            "at '/operator/leaderElection/leaseDurationSeconds'",
        ),
        ({"operator": {"leaderElection": {"enabled": "yes"}}}, "at '/operator/leaderElection/enabled'"),
        ({"operator": {"leaderElection": {"lease": "x"}}}, "additional properties 'lease' not allowed"),
        ({"operator": {"replicas": "1"}}, "at '/operator/replicas': got string, want integer"),
        ({"operator": {"resources": {"requests": {"memory": "12x"}}}}, "at '/operator/resources/requests/memory'"),
        ({"operator": {"resources": {"limits": {"cpu": "-1"}}}}, "at '/operator/resources/limits/cpu'"),
        ({"runner": {"resources": {"memory": "2 GB"}}}, "at '/runner/resources/memory': '2 GB' does not match pattern"),
        ({"runner": {"resources": {"cpu": -2}}}, "at '/runner/resources/cpu': minimum: got -2, want 0"),
        ({"runner": {"tmpSizeLimit": "lots"}}, "at '/runner/tmpSizeLimit'"),
        ({"replicaCount": 1}, "at '': additional properties 'replicaCount' not allowed"),
        ({"operator": {"image": {"tags": "x"}}}, "at '/operator/image': additional properties 'tags' not allowed"),
        ({"operator": {"resources": {"requests": {"gpu": 1}}}}, "additional properties 'gpu' not allowed"),
        ({"operator": {"affinity": {"nodeAfinity": {}}}}, "additional properties 'nodeAfinity' not allowed"),
        ({"gpu": {"tolerations": [{"key": "a", "operator": "Maybe"}]}}, "at '/gpu/tolerations/0/operator'"),
        ({"gpu": {"tolerations": [{"key": "a", "effect": "NoSchedule", "seconds": 1}]}}, "'seconds' not allowed"),
        ({"runner": {"progressIntervalSeconds": 0.5}}, "at '/runner/progressIntervalSeconds': minimum"),
        ({"runner": {"jobTTLSecondsAfterFinished": -1}}, "at '/runner/jobTTLSecondsAfterFinished'"),
        ({"runner": {"image": {"pullPolicy": "Sometimes"}}}, "at '/runner/image/pullPolicy'"),
        ({"runner": {"image": {"digest": "sha256:abc"}}}, "at '/runner/image/digest'"),
        ({"kueue": {"defaultQueueName": "Team_GPUs"}}, "at '/kueue/defaultQueueName'"),
        ({"storage": {"endpoint": "minio:9000"}}, "at '/storage/endpoint'"),
        ({"operator": {"watchNamespaces": "team-a"}}, "at '/operator/watchNamespaces': got string, want array"),
        ({"storage": {"endpoint": "http://minio:9000"}}, "storage.bucket is required when"),
        (
            {"storage": {"bucket": "kubegym", "credentials": "static"}},
            "storage.secretName is required with storage.credentials=static",
        ),
        ({"storage": {"bucket": "kubegym"}}, "storage.sts.roleArn is required for STS on AWS"),
        (
            {"storage": {"bucket": "kubegym", "endpoint": "http://m:9000", "secretName": "s3"}},
            "storage.secretName is for storage.credentials=static",
        ),
        (
            {"storage": {"bucket": "kubegym", "endpoint": "http://m:9000", "sts": {"operatorSecretName": ""}}},
            "storage.sts.operatorSecretName is required",
        ),
        ({"storage": {"credentials": "vault"}}, "at '/storage/credentials'"),
        ({"storage": {"sts": {"durationSeconds": 60}}}, "at '/storage/sts/durationSeconds'"),
        ({"storage": {"sts": {"roleArn": "kubegym-runs"}}}, "at '/storage/sts/roleArn'"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required when serviceAccount.create is false"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(helm: Helm, values: dict[str, Any], message: str) -> None:
    proc = helm.template(values, check=False)
    assert proc.returncode != 0, f"accepted: {values}"
    assert message in proc.stderr, proc.stderr


def test_schema_closes_every_object() -> None:
    """additionalProperties: false at every level; the only open maps are label-like string
    maps and the Kubernetes affinity subtrees."""
    open_maps: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                extra = node.get("additionalProperties", True)
                if extra is not False:
                    open_maps.append(path)
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}/{i}")

    walk(SCHEMA, "")
    assert sorted(open_maps) == [
        "/definitions/affinity/properties/nodeAffinity",
        "/definitions/affinity/properties/podAffinity",
        "/definitions/affinity/properties/podAntiAffinity",
        "/definitions/stringMap",
    ]
    assert SCHEMA["definitions"]["stringMap"]["additionalProperties"] == {"type": "string"}


def test_schema_matches_the_operators_quantity_syntax() -> None:
    assert SCHEMA["definitions"]["quantity"]["pattern"] == QUANTITY_PATTERN
    quantity = re.compile(QUANTITY_PATTERN)
    for good in ("1", "500m", "1.5", "4Gi", "10G", "1e3"):
        assert quantity.match(good)
    for bad in ("-1", "4GB", "1.5.2", "", "Gi"):
        assert not quantity.match(bad)


# --- RBAC ------------------------------------------------------------------------------------

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def _rules(role: dict[str, Any], *, pinned: bool = False) -> set[Rule]:
    """The role's (group, resource, verb) triples; ``pinned`` allows rules limited to names."""
    out = set()
    for rule in role["rules"]:
        assert pinned or not rule.get("resourceNames"), "the operator's rules are not pinned to names"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def _kubegym(resources: str, verbs: str) -> set[Rule]:
    return {(GROUP, f"{p}{resources}", v) for p in ("trainingruns", "benchmarks", "experiments") for v in verbs.split()}


#: What the operator does, rule by rule. Widening it is a decision: change this table.
EXPECTED_OPERATOR_RULES: set[Rule] = (
    _kubegym("", "get list watch")
    | {(GROUP, "trainingruns", "create"), (GROUP, "benchmarks", "create"), (GROUP, "trainingruns", "patch")}
    | _kubegym("/status", "get patch")
    | _kubegym("/finalizers", "update")
    | {("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch", "delete")}
    | {("", "pods", "list"), ("", "pods", "watch"), ("", "events", "create")}
    | {("", "serviceaccounts", "get"), ("", "serviceaccounts", "create")}
    | {("rbac.authorization.k8s.io", r, v) for r in ("roles", "rolebindings") for v in ("get", "create")}
)


def _operator_role(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = find(manifests, "ClusterRole", "kubegym")
    return role


def test_operator_rules_are_exactly_what_it_does(helm: Helm) -> None:
    manifests = helm.manifests()
    assert _rules(_operator_role(manifests)) == EXPECTED_OPERATOR_RULES
    (discovery,) = find(manifests, "ClusterRole", "kubegym-discovery")
    # kopf watches CRDs to notice resources appearing; cluster-wide it needs no namespace list.
    assert _rules(discovery) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }


def test_no_wildcards_no_secrets_no_escalation(helm: Helm) -> None:
    for values in (None, FULL_VALUES, {"operator": {"watchNamespaces": ["a", "b"]}}):
        for role in [m for m in helm.manifests(values) if m["kind"] in ("ClusterRole", "Role")]:
            for group, resource, verb in _rules(role, pinned=True):
                assert "*" not in (group + resource + verb), role["metadata"]["name"]
                assert resource not in ("pods/exec", "pods/log", "nodes")
                # Secrets: only written (each run's minted credentials, STS mode), never read.
                assert resource != "secrets" or verb in ("create", "patch")
                assert verb not in ("escalate", "bind", "impersonate", "deletecollection")
            assert not any(r.get("nonResourceURLs") for r in role["rules"])
        for binding in find(helm.manifests(values), "ClusterRoleBinding"):
            assert binding["roleRef"]["name"] != "cluster-admin"


def test_operator_writes_only_experiment_trials_of_its_resources(helm: Helm) -> None:
    """Of the kubegym resources the operator writes only /status, plus what an Experiment does
    to its own trials (create TrainingRuns and Benchmarks, patch a TrainingRun's suspend). It
    never updates or deletes them, nor patches a Benchmark or an Experiment, so objects applied
    from git drift only in status (tests/e2e/test_no_drift.py shows it live)."""
    rules = _rules(_operator_role(helm.manifests()))
    for kind in {k.plural for k in KINDS} | {"trainingruns", "benchmarks", "experiments"}:
        for verb in ("update", "delete", "deletecollection"):
            assert (GROUP, kind, verb) not in rules
    writes = {(r, v) for g, r, v in rules if g == GROUP and "/" not in r and v not in ("get", "list", "watch")}
    assert writes == {("trainingruns", "create"), ("benchmarks", "create"), ("trainingruns", "patch")}


_RUN: dict[str, Any] = {
    "apiVersion": "kubegym.io/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"algorithm": "PPO", "environment": {"id": "CartPole-v1"}, "totalTimesteps": 1000},
}


_MINTED = SessionCredentials(
    access_key_id="TEMP", secret_access_key="s", session_token="t", expiration=datetime(2026, 3, 1, tzinfo=UTC)
)


def _plural(manifest: dict[str, Any]) -> tuple[str, str]:
    group = manifest["apiVersion"].rpartition("/")[0]
    plural = {
        "ServiceAccount": "serviceaccounts",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Job": "jobs",
        "Secret": "secrets",
    }
    return group, plural[manifest["kind"]]


def test_operator_may_create_what_it_renders_and_grant_what_the_runner_role_grants(helm: Helm) -> None:
    """Everything a TrainingRun renders can be created (and read back) by the operator, and the
    runner Role grants nothing the operator lacks: RBAC refuses to let a Role grant
    permissions its creator does not hold (escalation prevention)."""
    rules = _rules(_operator_role(helm.manifests({"storage": {"bucket": "kubegym", "endpoint": "http://m:9000"}})))
    settings = Settings(default_storage=S3Storage(bucket="kubegym", endpoint="http://m:9000"))
    job = render_job(_RUN, settings)
    secret = credentials_secret(job, job["metadata"]["ownerReferences"][0], _MINTED)
    group, plural = _plural(secret)  # written, and replaced before expiry; never read back
    assert {(group, plural, "create"), (group, plural, "patch")} <= rules and (group, plural, "get") not in rules
    for manifest in [*render_runner_rbac(_RUN), job, secret]:
        group, plural = _plural(manifest)
        assert (group, plural, "create") in rules
        assert manifest["kind"] == "Secret" or (group, plural, "get") in rules
        for ref in manifest["metadata"].get("ownerReferences", []):
            if ref.get("blockOwnerDeletion"):
                owner = next(k for k in KINDS if k.kind == ref["kind"])
                assert (GROUP, f"{owner.plural}/finalizers", "update") in rules
    _assert_grantable(runner_role_rules("r"), rules, "the runner Role")


def _assert_grantable(granted: list[dict[str, Any]], held: set[Rule], what: str) -> None:
    for rule in granted:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (group, resource, verb) in held, f"{what} grants {verb} {resource}, which the operator lacks"


def test_operator_holds_what_the_evaluator_and_report_roles_grant(helm: Helm) -> None:
    """The Benchmark evaluator's and the Experiment report's Roles, same rule as the runner's."""
    rules = _rules(_operator_role(helm.manifests()))
    _assert_grantable(evaluator_role_rules("b"), rules, "the evaluator Role")
    exp = {
        "apiVersion": "kubegym.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "e", "namespace": "ns", "uid": "u-2", "generation": 1},
        "spec": {},
    }
    (role,) = [m for m in render_report_rbac(exp) if m["kind"] == "Role"]
    _assert_grantable(role["rules"], rules, "the report Role")


def test_namespaced_mode_binds_the_rules_only_in_the_watched_namespaces(helm: Helm) -> None:
    manifests = helm.manifests({"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    bindings = [b for b in find(manifests, "RoleBinding") if b["metadata"]["name"] == "kubegym"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubegym"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "kubegym", "namespace": "kubegym-system"}]
    assert [b["metadata"]["name"] for b in find(manifests, "ClusterRoleBinding")] == ["kubegym-discovery"]
    (discovery,) = find(manifests, "ClusterRole", "kubegym-discovery")
    assert ("", "namespaces", "watch") in _rules(discovery)
    env = container_env(_deployment(manifests))
    assert env["KUBEGYM_WATCH_NAMESPACES"] == "team-a,team-b"


@pytest.mark.parametrize(
    ("values", "role"),
    [
        pytest.param(None, True, id="defaults"),
        pytest.param({"operator": {"replicas": 1}}, True, id="one-replica-still-elects"),
        pytest.param({"operator": {"watchNamespaces": ["team-a"]}}, True, id="namespaced"),
        pytest.param({"operator": {"replicas": 1, "leaderElection": {"enabled": False}}}, False, id="no-election"),
        pytest.param({"rbac": {"create": False}}, False, id="rbac-by-the-platform"),
    ],
)
def test_leader_election_rbac_is_the_lease_in_the_release_namespace(
    helm: Helm, values: dict[str, Any] | None, role: bool
) -> None:
    """get and update on the operator's own Lease, create on leases (create cannot be pinned to
    a name), in the release namespace only; nothing about Leases in the ClusterRole."""
    manifests = helm.manifests(values)
    roles = find(manifests, "Role", "kubegym-leader-election")
    bindings = find(manifests, "RoleBinding", "kubegym-leader-election")
    for cluster_role in find(manifests, "ClusterRole"):
        assert all(group != "coordination.k8s.io" for group, _, _ in _rules(cluster_role))
    env = container_env(_deployment(manifests))
    if not role:
        assert roles == [] and bindings == []
        return
    assert env["KUBEGYM_LEADER_ELECTION"] == "true"
    (r,) = roles
    (b,) = bindings
    assert r["metadata"]["namespace"] == b["metadata"]["namespace"] == "kubegym-system"
    assert r["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [DEFAULT_LEASE_NAME],
            "verbs": ["get", "update"],
        },
    ]
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubegym-leader-election"}
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": "kubegym", "namespace": "kubegym-system"}]


def test_rbac_and_service_account_can_be_brought_by_the_platform(helm: Helm) -> None:
    manifests = helm.manifests(
        {**NO_METRICS, "rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-sa"}}
    )
    assert sorted(m["kind"] for m in manifests) == ["Deployment", "PodDisruptionBudget"]
    assert _deployment(manifests)["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
