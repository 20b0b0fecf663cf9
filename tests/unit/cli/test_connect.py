"""``connect`` reads ``$KUBECONFIG`` when it is called, not when the kubernetes package was imported:
a notebook that sets it after ``import kubernetes`` reaches the cluster it names (CI found this: the
Python client's test set ``KUBECONFIG`` after another test had imported the package)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubegym_cli.connect import connect

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [
        {"name": "one", "context": {"cluster": "c", "user": "u", "namespace": "team-one"}},
        {"name": "two", "context": {"cluster": "c", "user": "u", "namespace": "team-two"}},
        {"name": "bare", "context": {"cluster": "c", "user": "u"}},
    ],
    "current-context": "one",
}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(KUBECONFIG))
    return path


@pytest.mark.parametrize(
    ("context", "namespace"),
    [(None, "team-one"), ("two", "team-two"), ("bare", "default")],
)
def test_the_context_and_its_namespace(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, context: str | None, namespace: str
) -> None:
    import kubernetes  # noqa: F401  (imported first, as in a notebook)

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("HOME", str(kubeconfig.parent))  # no ~/.kube/config to fall back on
    _, got = connect(None, context)
    assert got == namespace


def test_an_explicit_file_wins_over_the_environment(
    kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    _, got = connect(str(kubeconfig), "two")
    assert got == "team-two"
