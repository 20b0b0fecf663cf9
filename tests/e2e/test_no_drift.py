"""No drift in Argo CD: the examples applied the way Argo CD applies them, reconciled by the
Helm-installed operator, differ from what was applied only in ``status`` and in metadata Argo
CD ignores — checked with Argo CD's own two diff modes (kubectl's three-way diff against the
last-applied annotation, and a server-side dry-run apply as ServerSideDiff does) and field by
field. docs/argocd.md explains the settings this relies on."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegym_localcluster.cluster import LocalCluster
from kubegym_localcluster.kube import ApiError, Kube
from tests.e2e.drift import TRACKING, field_drift
from tests.e2e.support import EXAMPLES, Release
from tests.support.kubectl import Kubectl
from tests.support.wait import wait_until

APP = "team-a-experiments"
#: Argo CD's field manager with ServerSideApply=true.
ARGOCD_MANAGER = "argocd-controller"
#: kubectl's manager for a client-side apply (Argo CD's default sync).
CSA_MANAGER = "kubectl-client-side-apply"
#: Where the objects the operator creates live (and what the Job controller creates for it).
CREATED = {
    "TrainingRun": "/apis/kubegym.io/v1alpha1/namespaces/{ns}/trainingruns",
    "Benchmark": "/apis/kubegym.io/v1alpha1/namespaces/{ns}/benchmarks",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}
SHORT_TIMESTEPS = 3000


def _plural(kind: str) -> str:
    return kind.lower() + "s"


def path_of(manifest: dict[str, Any], namespace: str) -> str:
    group_version = manifest["apiVersion"]
    return f"/apis/{group_version}/namespaces/{namespace}/{_plural(manifest['kind'])}/{manifest['metadata']['name']}"


def argocd_manifests(namespace: str) -> list[dict[str, Any]]:
    """The kubegym examples as Argo CD would apply them for the team Application: with its
    tracking annotation. The CartPole run is shortened so it finishes in the test."""
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or not doc["apiVersion"].startswith("kubegym.io/"):
                continue
            doc = copy.deepcopy(doc)
            if doc["metadata"]["name"] == "cartpole-ppo":
                doc["spec"]["totalTimesteps"] = SHORT_TIMESTEPS
            group = doc["apiVersion"].split("/")[0]
            doc["metadata"].setdefault("annotations", {})[TRACKING] = (
                f"{APP}:{group}/{doc['kind']}:{namespace}/{doc['metadata']['name']}"
            )
            out.append(doc)
    assert any(d["kind"] == "TrainingRun" for d in out)
    return out


def _write(tmp_path: Path, manifests: list[dict[str, Any]], name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path


def defaulted_spec(kubectl: Kubectl, manifest: dict[str, Any]) -> dict[str, Any]:
    """The spec the API server makes of the manifest at admission (schema defaults), as Argo
    CD's server-side diff sees the desired state: a dry-run create under another name."""
    probe = copy.deepcopy(manifest)
    probe["metadata"]["name"] += "-probe"
    out = kubectl.run("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe)).stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


def owned_drift(kube: Kube, namespace: str, applied: list[dict[str, Any]]) -> list[str]:
    """Everything in the namespace that was not applied (Jobs, pods, runner identities, an
    Experiment's trials) is owned by something and carries no Argo CD tracking metadata, so
    Argo CD shows it under its owner and never prunes it."""
    mine = {(m["kind"], m["metadata"]["name"]) for m in applied}
    problems, seen = [], 0
    for kind, collection in CREATED.items():
        for item in kube.get(collection.format(ns=namespace))["items"]:
            meta = item["metadata"]
            if (kind, meta["name"]) in mine or (kind == "ServiceAccount" and meta["name"] == "default"):
                continue
            seen += 1
            if TRACKING in (meta.get("annotations") or {}) or "app.kubernetes.io/instance" in (
                meta.get("labels") or {}
            ):
                problems.append(f"{kind} {meta['name']} carries Argo CD tracking metadata")
            if not any(r.get("controller") for r in meta.get("ownerReferences", [])):
                problems.append(f"{kind} {meta['name']} has no controller owner reference")
    if not seen:
        problems.append("the operator created nothing: the examples were not reconciled")
    return problems


def _status(kube: Kube, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    try:
        status: dict[str, Any] = kube.get(path_of(manifest, namespace)).get("status") or {}
    except ApiError:
        return {}
    return status


#: TrainingRun states that last: what the operator settles on until something changes.
SETTLED_PENDING = frozenset({"Queued", "Unschedulable"})


def reconciled(kube: Kube, namespace: str, manifest: dict[str, Any]) -> bool:
    """The operator has seen the object (a phase for the current generation); a TrainingRun
    has also reached a state that lasts: training with progress reported by its runner,
    waiting for Kueue or for room on a node, or finished."""
    status = _status(kube, namespace, manifest)
    phase = status.get("phase")
    if not phase or status.get("observedGeneration") != 1:
        return False
    if manifest["kind"] != "TrainingRun":
        return True
    if phase == "Running":
        return bool((status.get("progress") or {}).get("timesteps"))
    if phase == "Pending":
        return status.get("reason") in SETTLED_PENDING
    return True


def check_no_drift(
    kube: Kube,
    kubectl: Kubectl,
    namespace: str,
    manifests: list[dict[str, Any]],
    file: Path,
    applier: str,
    diff_args: list[str],
) -> None:
    problems: list[str] = []
    diff = kubectl.run("diff", *diff_args, "-f", str(file), check=False)
    if diff.returncode != 0:
        problems.append(f"kubectl diff {' '.join(diff_args)} (exit {diff.returncode}):\n{diff.stdout}\n{diff.stderr}")
    for manifest in manifests:
        live = kube.get(path_of(manifest, namespace))
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        problems += [f"{where}: {p}" for p in field_drift(live, manifest, defaulted_spec(kubectl, manifest), applier)]
    problems += owned_drift(kube, namespace, manifests)
    assert not problems, "\n".join(problems)


def _describe(kube: Kube, namespace: str, manifests: list[dict[str, Any]], release: Release) -> Callable[[], str]:
    def describe() -> str:
        states = {m["metadata"]["name"]: _status(kube, namespace, m) for m in manifests}
        return json.dumps(states, indent=1)[:4000] + "\n" + release.logs()[-2000:]

    return describe


@pytest.mark.parametrize("mode", ["client-side-apply", "server-side-apply"])
def test_reconciled_examples_do_not_drift(
    mode: str, release: Release, cluster: LocalCluster, kube: Kube, run_namespace: str, tmp_path: Path
) -> None:
    """Client-side apply (Argo CD's default sync, three-way diff) and server-side apply with
    Argo CD's field manager (ServerSideApply=true + ServerSideDiff=true)."""
    ns = run_namespace
    kubectl = Kubectl(cluster.kubeconfig, ns)
    manifests = argocd_manifests(ns)
    file = _write(tmp_path, manifests, "applied.yaml")
    if mode == "client-side-apply":
        kubectl.run("apply", "-f", str(file))
        applier, diff_args = CSA_MANAGER, []
    else:
        kubectl.run("apply", "--server-side", f"--field-manager={ARGOCD_MANAGER}", "-f", str(file))
        applier, diff_args = ARGOCD_MANAGER, ["--server-side", f"--field-manager={ARGOCD_MANAGER}"]
    describe = _describe(kube, ns, manifests, release)
    wait_until(
        lambda: all(reconciled(kube, ns, m) for m in manifests), 600, "every example reconciled", 2, describe=describe
    )
    # While runs train: the operator's status writes and the runners' progress reports.
    check_no_drift(kube, kubectl, ns, manifests, file, applier, diff_args)
    if mode == "server-side-apply":
        return
    # Free the node for the CartPole run (everything else goes, and what it owns with it), then
    # follow that run to the end: completion, result, checkpoints, terminal conditions.
    cartpole = next(m for m in manifests if m["kind"] == "TrainingRun" and m["metadata"]["name"] == "cartpole-ppo")
    for m in manifests:
        if m is not cartpole:
            kube.delete(path_of(m, ns))
    remaining = [cartpole]
    wait_until(
        lambda: _status(kube, ns, cartpole).get("phase") in ("Succeeded", "Failed"),
        900,
        "the CartPole run to finish",
        2,
        describe=describe,
    )
    assert _status(kube, ns, cartpole)["phase"] == "Succeeded"
    check_no_drift(kube, kubectl, ns, remaining, _write(tmp_path, remaining, "remaining.yaml"), applier, diff_args)
