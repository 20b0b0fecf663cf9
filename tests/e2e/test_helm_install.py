"""The chart installed for real: `helm install` into the local cluster, the operator pod on the
local node under its own ServiceAccount (the chart's RBAC, enforced by the API server), the
CartPole example trained to Succeeded by it, and every rendered manifest and example accepted
by the API server (`kubectl apply --dry-run=server`)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegym_localcluster import layout
from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import Kube
from tests.e2e.support import (
    EXAMPLES,
    Release,
    delete_namespace,
    example,
    example_files,
    new_namespace,
)
from tests.support.argocd import Health, LuaHealth, script_of
from tests.support.helm import CHART
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

TRAININGRUNS = "/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns"
#: The CartPole example trains rl-zoo3's 1e5 timesteps; here it trains this many (its
#: totalTimesteps overrides the preset's), which is enough to see every stage.
SHORT_TIMESTEPS = 3000


def test_operator_pod_runs_on_the_local_node_as_its_service_account(release: Release, kube: Kube) -> None:
    deployment = kube.get(f"/apis/apps/v1/namespaces/{release.namespace}/deployments/{release.fullname}")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["status"].get("availableReplicas") == 1
    pod = release.operator_pod()
    assert pod["spec"]["nodeName"] == layout.NODE_NAME
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["serviceAccountName"] == release.fullname
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/kubegym/kubegym-operator:0.1.0"
    # The API server injected the ServiceAccount token volume: the operator talks to it as
    # system:serviceaccount:kubegym-system:kubegym, not as an admin.
    volumes = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    assert volumes and any("serviceAccountToken" in s for s in volumes[0]["projected"]["sources"])
    # Admitted under the restricted Pod Security Standard by the real admission plugin.
    labels = kube.get(f"/api/v1/namespaces/{release.namespace}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def _can(kube: Kube, release: Release, verb: str, resource: str, namespace: str | None) -> bool:
    """A SubjectAccessReview for the operator's identity; ``resource`` is [group/]plural[/sub]."""
    parts = resource.split("/")
    group = parts.pop(0) if "." in parts[0] or parts[0] in ("batch", "apps") else ""
    attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": parts[0]}
    if len(parts) > 1:
        attrs["subresource"] = parts[1]
    if namespace:
        attrs["namespace"] = namespace
    review = kube.create(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": release.username,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{release.namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attrs,
            },
        },
    )
    return bool(review["status"].get("allowed"))


ALLOWED = [
    ("watch", "kubegym.io/trainingruns", None),
    ("get", "kubegym.io/trainingruns", "team-a"),
    ("patch", "kubegym.io/trainingruns/status", "team-a"),
    ("update", "kubegym.io/trainingruns/finalizers", "team-a"),
    ("list", "kubegym.io/benchmarks", None),
    ("create", "kubegym.io/trainingruns", "team-a"),
    ("patch", "kubegym.io/trainingruns", "team-a"),
    ("create", "kubegym.io/benchmarks", "team-a"),
    ("patch", "kubegym.io/experiments/status", "team-a"),
    ("create", "batch/jobs", "team-a"),
    ("delete", "batch/jobs", "team-a"),
    ("watch", "pods", None),
    ("create", "events", "team-a"),
    # Each run's minted storage credentials (STS mode): written, never read.
    ("create", "secrets", "team-a"),
    ("patch", "secrets", "team-a"),
    ("create", "serviceaccounts", "team-a"),
    ("create", "rbac.authorization.k8s.io/roles", "team-a"),
    ("create", "rbac.authorization.k8s.io/rolebindings", "team-a"),
    ("watch", "apiextensions.k8s.io/customresourcedefinitions", None),
]
DENIED = [
    ("get", "secrets", "team-a"),
    ("list", "secrets", None),
    ("get", "secrets", "kubegym-system"),
    ("watch", "secrets", None),
    ("delete", "secrets", "team-a"),
    ("create", "pods", "team-a"),
    ("delete", "pods", "team-a"),
    ("create", "pods/exec", "team-a"),
    ("get", "pods/log", "team-a"),
    ("update", "kubegym.io/trainingruns", "team-a"),
    ("delete", "kubegym.io/trainingruns", "team-a"),
    ("patch", "kubegym.io/benchmarks", "team-a"),
    ("patch", "kubegym.io/experiments", "team-a"),
    ("create", "kubegym.io/experiments", "team-a"),
    ("update", "batch/jobs", "team-a"),
    ("get", "configmaps", "team-a"),
    ("list", "namespaces", None),
    ("create", "rbac.authorization.k8s.io/clusterrolebindings", None),
    ("escalate", "rbac.authorization.k8s.io/roles", "team-a"),
    ("bind", "rbac.authorization.k8s.io/roles", "team-a"),
    ("impersonate", "serviceaccounts", "team-a"),
    ("create", "apps/deployments", "team-a"),
    ("delete", "apiextensions.k8s.io/customresourcedefinitions", None),
]


def test_the_api_server_grants_what_the_operator_does_and_nothing_else(release: Release, kube: Kube) -> None:
    """SubjectAccessReviews for the operator's identity against the installed RBAC."""
    wrong = [
        f"{v} {r} in {ns or 'all namespaces'}: denied" for v, r, ns in ALLOWED if not _can(kube, release, v, r, ns)
    ]
    wrong += [f"{v} {r} in {ns or 'all namespaces'}: allowed" for v, r, ns in DENIED if _can(kube, release, v, r, ns)]
    assert not wrong, "\n".join(wrong)


# --- the CartPole example, trained by the installed operator --------------------------------


@dataclass
class Trained:
    namespace: str
    run: dict[str, Any]
    healths: list[Health]
    seconds: float


def shortened(manifest: dict[str, Any]) -> dict[str, Any]:
    """A TrainingRun that trains at most SHORT_TIMESTEPS (its totalTimesteps wins over a
    preset's); anything else as it is."""
    out = copy.deepcopy(manifest)
    if out["kind"] == "TrainingRun":
        out["spec"]["totalTimesteps"] = min(out["spec"].get("totalTimesteps", SHORT_TIMESTEPS), SHORT_TIMESTEPS)
    return out


def cartpole_manifest() -> dict[str, Any]:
    return shortened(example("cartpole-ppo.yaml"))


@pytest.fixture(scope="module")
def trained(release: Release, cluster: LocalCluster, kube: Kube, lua: LuaHealth) -> Iterator[Trained]:
    """The CartPole example applied in a restricted namespace and trained to the end, with the
    Argo CD health of the live object recorded at every poll."""
    ns = new_namespace(cluster, kube, "e2e-helm")
    kubectl = Kubectl(cluster.kubeconfig, ns)
    manifest = cartpole_manifest()
    name = manifest["metadata"]["name"]
    healths: list[Health] = []
    script = script_of("TrainingRun")
    t0 = time.monotonic()
    kubectl.apply(manifest)

    def finished() -> dict[str, Any] | None:
        run = kube.get(f"{TRAININGRUNS.format(ns=ns)}/{name}")
        health = lua.check(script, run)
        if not healths or healths[-1] != health:
            healths.append(health)
        return run if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    def describe() -> str:
        return kubectl.run("describe", "trainingrun", name, check=False).stdout + "\n" + release.logs()[-3000:]

    try:
        run = wait_until(finished, 900, f"TrainingRun {ns}/{name} to finish", interval=2, describe=describe)
        yield Trained(ns, run, healths, time.monotonic() - t0)
    finally:
        delete_namespace(kube, ns)


def test_the_installed_operator_trains_the_cartpole_example(trained: Trained, release: Release, kube: Kube) -> None:
    status = trained.run["status"]
    assert status["phase"] == "Succeeded", status
    assert status["progress"]["timesteps"] >= SHORT_TIMESTEPS
    folder = f"s3://{layout.BUCKET}/{trained.namespace}/cartpole-ppo/{trained.run['metadata']['uid']}/"
    assert status["artifacts"]["uri"] == folder
    assert status["result"]["modelUri"].startswith(f"{folder}final")
    # Argo CD would have shown it Progressing while it trained, then Healthy.
    assert trained.healths[0].status == "Progressing"
    assert trained.healths[-1] == Health("Healthy", "the runner finished training")
    assert {h.status for h in trained.healths} <= {"Progressing", "Healthy"}, trained.healths
    # The operator pod wrote the story (Events name the instance that reported them).
    events = kube.get(f"/api/v1/namespaces/{trained.namespace}/events")["items"]
    ours = [e for e in events if e["involvedObject"].get("kind") == "TrainingRun"]
    assert ours, "no Events on the run"
    instances = {e.get("reportingInstance") for e in ours}
    assert instances == {release.operator_pod()["metadata"]["name"]}, instances
    print(
        f"\nCartPole example ({SHORT_TIMESTEPS} timesteps) trained by the Helm-installed operator in {trained.seconds:.0f}s"
    )


def test_the_installed_operator_trains_and_benchmarks_the_benchmark_example(
    release: Release, cluster: LocalCluster, kube: Kube, lua: LuaHealth
) -> None:
    """examples/benchmark-cartpole.yaml (two TrainingRuns and a Benchmark of both), its runs
    shortened to SHORT_TIMESTEPS: the runs train, then the Benchmark evaluates and ranks them."""
    docs = [shortened(d) for d in yaml.safe_load_all((EXAMPLES / "benchmark-cartpole.yaml").read_text()) if d]
    benchmarks = [d for d in docs if d["kind"] == "Benchmark"]
    assert benchmarks and any(d["kind"] == "TrainingRun" for d in docs)
    ns = new_namespace(cluster, kube, "e2e-bench")
    kubectl = Kubectl(cluster.kubeconfig, ns)
    script = script_of("Benchmark")
    t0 = time.monotonic()
    try:
        for doc in docs:
            kubectl.apply(doc)
        for benchmark in benchmarks:
            path = f"/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks/{benchmark['metadata']['name']}"

            def done(path: str = path) -> dict[str, Any] | None:
                obj = kube.get(path)
                return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

            def describe() -> str:
                return kubectl.run("get", "trainingruns,benchmarks", "-o", "wide", check=False).stdout

            obj = wait_until(done, 1500, f"Benchmark {ns}/{path.rsplit('/', 1)[1]} to finish", 2, describe=describe)
            assert obj["status"]["phase"] == "Succeeded", obj["status"]
            assert lua.check(script, obj).status == "Healthy"
    finally:
        delete_namespace(kube, ns)
    print(
        f"\nbenchmark-cartpole.yaml (runs of {SHORT_TIMESTEPS} timesteps) trained and benchmarked in {time.monotonic() - t0:.0f}s"
    )


def test_the_operator_was_never_refused(trained: Trained, release: Release) -> None:
    """Nothing the operator did while the examples above trained and benchmarked was forbidden
    by its RBAC (kopf logs a refused watch, the operator a refused call)."""
    lines = release.logs().splitlines()

    def terminating(i: int) -> bool:
        # A namespace being deleted refuses new objects with 403 NamespaceTerminating: that is
        # the namespace's lifecycle, not the operator's RBAC.
        return any("being terminated" in x for x in lines[i : i + 4])

    refused = [
        line
        for i, line in enumerate(lines)
        if ("Forbidden" in line or " 403" in line or "forbidden" in line) and not terminating(i)
    ]
    assert not refused, "\n".join(refused[:20])


# --- server-side dry run of everything -----------------------------------------------------


def _dry_run(kubectl: Kubectl, path: Path, namespace: str | None = None) -> str:
    args = ["apply", "--dry-run=server", "-f", str(path)]
    if namespace:
        args += ["--namespace", namespace]
    proc = kubectl.run(*args, check=False)
    assert proc.returncode == 0, f"{path.name}: the API server refused it:\n{proc.stdout}\n{proc.stderr}"
    assert "would violate PodSecurity" not in proc.stderr, proc.stderr
    return proc.stdout


def test_every_rendered_manifest_passes_server_side_dry_run(
    release: Release, cluster: LocalCluster, run_namespace: str, tmp_path: Path
) -> None:
    """`helm template --include-crds` (defaults, then values that turn every knob, then the
    namespaced mode) is accepted by the API server; the Deployment draws no PodSecurity warning."""
    kubectl = Kubectl(cluster.kubeconfig)
    variants: list[dict[str, Any]] = [
        {},
        {
            "operator": {"logLevel": "debug", "tolerations": [{"key": "x", "operator": "Exists"}]},
            "imagePullSecrets": ["regcred"],
            "storage": {"bucket": "kubegym", "endpoint": "http://minio:9000"},
            "gpu": {"nodeSelector": {"nvidia.com/gpu.present": "true"}},
            "kueue": {"defaultQueueName": "team-gpus"},
            "runner": {"jobTTLSecondsAfterFinished": 600},
        },
        {"operator": {"watchNamespaces": [run_namespace]}},
    ]
    for i, values in enumerate(variants):
        # Another release name: every object is new, so the API server validates a creation
        # (not a merge into the installed release's objects).
        rendered = release.helm.template(
            values, release="kubegym-dryrun", namespace=release.namespace, include_crds=True
        ).stdout
        path = tmp_path / f"rendered-{i}.yaml"
        path.write_text(rendered)
        kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
        assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount"} <= kinds
        out = _dry_run(kubectl, path)
        assert "(server dry run)" in out


def test_every_example_passes_server_side_dry_run(release: Release, cluster: LocalCluster, kube: Kube) -> None:
    """Every manifest under examples/ is accepted by the API server: kubegym resources into a
    namespace, argocd-cm into `argocd`. Argo CD's own kinds (Application) need Argo CD's CRDs,
    which the local cluster does not have; tests/unit/packaging/test_argocd.py checks those."""
    ns = new_namespace(cluster, kube, "e2e-examples")
    argocd = "argocd"
    kube.apply(
        f"/api/v1/namespaces/{argocd}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": argocd}}, "e2e"
    )
    kubectl = Kubectl(cluster.kubeconfig)
    checked: list[str] = []
    try:
        for path in example_files():
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            if all(d["apiVersion"].startswith("argoproj.io/") for d in docs):
                continue
            assert not any(d["apiVersion"].startswith("argoproj.io/") for d in docs), f"{path}: mixed file"
            namespaced_elsewhere = any(d["metadata"].get("namespace") for d in docs)
            _dry_run(kubectl, path, None if namespaced_elsewhere else ns)
            checked.append(str(path.relative_to(layout.REPO)))
    finally:
        delete_namespace(kube, ns)
        delete_namespace(kube, argocd)
    assert "examples/cartpole-ppo.yaml" in checked and "examples/argocd/argocd-cm.yaml" in checked


def test_chart_crds_are_what_the_cluster_serves(release: Release, kube: Kube) -> None:
    """The CRDs the chart ships are established in the cluster with the chart's versions."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        live = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
        assert [v["name"] for v in live["spec"]["versions"]] == [v["name"] for v in crd["spec"]["versions"]]
        assert live["spec"]["versions"][0]["schema"] == crd["spec"]["versions"][0]["schema"]
        assert any(c["type"] == "Established" and c["status"] == "True" for c in live["status"]["conditions"])
