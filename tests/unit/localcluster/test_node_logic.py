"""Pure parts of the local node: env expansion, field refs, pod phase, images, quantities."""

from __future__ import annotations

import pytest

from kubegym_localcluster.node import images
from kubegym_localcluster.node.podspec import SpecError, expand, field_ref
from kubegym_localcluster.node.runtime import parse_quantity
from kubegym_localcluster.node.status import ContainerState, exit_code, phase


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes
    assert expand("$(MISSING)", env) == "$(MISSING)"  # unknown names stay as written


def test_field_refs() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}}, "spec": {"nodeName": "n"}}
    assert field_ref(pod, "metadata.name") == "p"
    assert field_ref(pod, "metadata.labels['app']") == "a"
    assert field_ref(pod, "spec.nodeName") == "n"
    assert field_ref(pod, "status.podIP") == "127.0.0.1"
    with pytest.raises(SpecError):
        field_ref(pod, "spec.nope")


def _term(code: int) -> ContainerState:
    return ContainerState("c", "i", "id", state={"terminated": {"exitCode": code}})


def test_pod_phase() -> None:
    running = ContainerState("c", "i", "id", state={"running": {}})
    assert phase("Never", [], [running], failed_init=False) == "Running"
    assert phase("Never", [], [_term(0)], failed_init=False) == "Succeeded"
    assert phase("Never", [], [_term(3)], failed_init=False) == "Failed"
    assert phase("OnFailure", [], [_term(3)], failed_init=False) == "Running"  # will restart
    assert phase("Never", [], [ContainerState("c", "i", "id")], failed_init=False) == "Pending"
    assert phase("Never", [], [running], failed_init=True) == "Failed"


def test_signal_exit_codes_as_runtimes_report_them() -> None:
    assert exit_code(-15) == 143
    assert exit_code(-9) == 137
    assert exit_code(3) == 3


def test_image_rule() -> None:
    assert images.resolve("ghcr.io/kubegym/kubegym-runner:0.1.0").entrypoint == ["kubegym-runner"]
    assert images.resolve("registry.example/x/kubegym-operator@sha256:abc").entrypoint == ["kubegym-operator"]
    with pytest.raises(images.ImageNotAvailableError, match="not available on the local node"):
        images.resolve("busybox:1.36")


@pytest.mark.parametrize(("q", "n"), [("64Mi", 64 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6), ("1024", 1024)])
def test_memory_quantities(q: str, n: int) -> None:
    assert parse_quantity(q) == n
