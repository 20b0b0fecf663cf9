"""Pure parts of the local node: env expansion, field refs, pod phase, images, quantities, mounts, cgroups."""

from __future__ import annotations

import os

import pytest

from kubegym_localcluster.node import images
from kubegym_localcluster.node.launch import mount_of, mount_points, overlay_roots, submounts
from kubegym_localcluster.node.podspec import SpecError, expand, field_ref, parse_quantity, resource_field
from kubegym_localcluster.node.runtime import cgroup_settings, config_backoff
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


# --- the launcher's plan: where overlays go so that nothing is created on the host ----------

MOUNTINFO = "\n".join(
    [
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        "23 22 0:5 / /dev rw - devtmpfs devtmpfs rw",
        "24 23 0:6 / /dev/shm rw - tmpfs tmpfs rw",
        "25 23 0:7 / /dev/pts rw - devpts devpts rw",
        "26 22 0:8 / /proc rw - proc proc rw",
        "27 22 0:9 / /tmp/with\\040space rw - tmpfs tmpfs rw",
    ]
)


def test_mount_points_are_read_in_order_and_unescaped() -> None:
    assert mount_points(MOUNTINFO) == ["/", "/dev", "/dev/shm", "/dev/pts", "/proc", "/tmp/with space"]


@pytest.mark.parametrize(
    ("ancestor", "expected"),
    [
        ("/dev", ["/dev/shm", "/dev/pts"]),
        ("/", ["/dev", "/proc", "/tmp/with space"]),  # /dev's children come along with MS_REC
        ("/proc", []),
        ("/tmp", ["/tmp/with space"]),
    ],
)
def test_submounts_are_the_top_level_mounts_below(ancestor: str, expected: list[str]) -> None:
    assert submounts(mount_points(MOUNTINFO), ancestor) == expected


@pytest.mark.parametrize(
    ("targets", "existing", "roots"),
    [
        # Every target exists on the host: no overlay at all.
        (["/tmp", "/dev/null"], {"/tmp", "/dev/null"}, []),
        # A missing file under /dev: /dev gets the overlay.
        (["/dev/termination-log", "/tmp"], {"/tmp"}, ["/dev"]),
        # A missing target below an earlier volume is created inside that volume.
        (["/data", "/data/config"], set(), ["/"]),
        (["/tmp", "/tmp/a/b"], {"/tmp"}, []),
        # Nested candidates on one mount collapse into the outermost...
        (["/dev/x/y", "/dev/termination-log"], set(), ["/dev"]),
        (["/data", "/etc/kubegym-test"], set(), ["/"]),
        # ... but a mount of its own below needs its own overlay, after the outer one.
        (["/dev/termination-log", "/data"], set(), ["/", "/dev"]),
    ],
)
def test_overlay_roots(targets: list[str], existing: set[str], roots: list[str]) -> None:
    points = mount_points(MOUNTINFO)
    assert overlay_roots(targets, {t: t in existing for t in targets}, points) == roots


def test_mount_of_is_the_longest_mount_point_above() -> None:
    points = mount_points(MOUNTINFO)
    assert mount_of("/dev/pts/0", points) == "/dev/pts"
    assert mount_of("/dev/termination-log", points) == "/dev"
    assert mount_of("/etc/hosts", points) == "/"
    assert mount_of("/tmp/with space/x", points) == "/tmp/with space"


# --- resources as a kubelet writes them into cgroups ----------------------------------------


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, {}),
        ({"requests": {"cpu": "500m"}}, {"cpu": {"cpu.shares": "512"}}),
        (
            {"requests": {"cpu": "250m"}, "limits": {"cpu": "1500m", "memory": "1Gi"}},
            {
                "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "150000", "cpu.shares": "256"},
                "memory": {"memory.limit_in_bytes": str(2**30)},
            },
        ),
        # A limit alone also sets the request (the API server defaults it so).
        (
            {"limits": {"cpu": "2"}},
            {"cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "200000", "cpu.shares": "2048"}},
        ),
        ({"requests": {"cpu": "1m"}}, {"cpu": {"cpu.shares": "2"}}),
    ],
)
def test_cgroup_settings(resources: dict[str, dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    assert cgroup_settings(resources) == expected


def test_config_errors_back_off_to_a_cap() -> None:
    assert [config_backoff(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("resources", "resource", "divisor", "expected"),
    [
        ({"requests": {"cpu": "500m"}}, "requests.cpu", "1m", "500"),
        ({"requests": {"cpu": "1500m"}}, "requests.cpu", None, "2"),  # rounded up, as a kubelet does
        ({"requests": {"cpu": "2"}}, "requests.cpu", "1m", "2000"),
        ({}, "requests.cpu", "1m", "0"),
        ({"limits": {"memory": "1Gi"}}, "limits.memory", "1Mi", "1024"),
        ({"requests": {"memory": "100M"}}, "requests.memory", None, "100000000"),
    ],
)
def test_resource_field_refs(
    resources: dict[str, dict[str, str]], resource: str, divisor: str | None, expected: str
) -> None:
    assert resource_field({"resources": resources}, resource, divisor) == expected


def test_an_unset_cpu_limit_is_the_node_allocatable() -> None:
    assert resource_field({}, "limits.cpu", "1m") == str(1000 * (os.cpu_count() or 1))
