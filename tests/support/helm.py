"""helm, the pinned build (hack/versions.env, built by hack/build-components.sh), and the chart."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegym_localcluster import layout

CHART = layout.REPO / "charts" / "kubegym"
#: ``helm template`` renders for this Kubernetes version (the local cluster's).
KUBE_VERSION = layout.versions()["KUBERNETES_VERSION"]


def helm_bin() -> Path:
    path = layout.cache_dir() / "bin" / f"helm-{layout.versions()['HELM_VERSION']}" / "helm"
    if not path.is_file():
        pytest.fail(f"helm is not built ({path} missing): run `bash hack/build-components.sh helm`")
    return path


@dataclass
class Helm:
    """helm with an optional kubeconfig; values are passed as a JSON file, never as --set strings."""

    kubeconfig: Path | None = None
    workdir: Path | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [str(helm_bin())]
        if self.kubeconfig is not None:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def values_file(self, values: dict[str, Any], name: str = "values.json") -> Path:
        if self.workdir is None:
            raise ValueError("Helm.workdir is needed to pass values")
        path = self.workdir / name
        path.write_text(json.dumps(values))
        return path

    def template(
        self,
        values: dict[str, Any] | None = None,
        *,
        release: str = "kubegym",
        namespace: str = "kubegym-system",
        include_crds: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        if include_crds:
            args.append("--include-crds")
        if values:
            args += ["--values", str(self.values_file(values))]
        return self.run(*args, check=check)

    def manifests(self, values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """The rendered objects of the chart (empty documents dropped)."""
        out = self.template(values, **kwargs).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The literal env of the operator container; the downward API's (``valueFrom``: POD_NAME,
    POD_NAMESPACE) are left out, see :func:`container_field_env`."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def container_field_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The operator container's variables from the downward API: name → fieldPath."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container.get("env", []) if "valueFrom" in e}
