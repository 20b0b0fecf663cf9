"""The local node keeps a running pod's Secret and ConfigMap volumes current, as a kubelet's sync
does (``Volumes.sync_sources``): changed values are rewritten atomically, removed keys removed,
nothing happens between sync periods, and a Secret that vanished leaves its files.

The same against the real API server and a pod that reads its file while running:
``tests/integration/cluster/test_node_volume_sync.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubegym_localcluster.node.podspec import Resolver, SpecError, Volumes

Obj = dict[str, Any]


class FakeResolver(Resolver):
    """Objects' data by (kind, name), as the API server would return them; ``reads`` counts fresh reads."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, bytes]]) -> None:
        self.objects = objects
        self.reads = 0

    def data(self, kind: str, name: str, optional: bool = False, fresh: bool = False) -> dict[str, bytes]:
        self.reads += fresh
        if (kind, name) not in self.objects:
            if optional:
                return {}
            raise SpecError(f'{kind[:-1]} "{name}" not found')
        return dict(self.objects[(kind, name)])


def _pod() -> Obj:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "volumes": [
                {"name": "creds", "secret": {"secretName": "run-storage", "defaultMode": 0o440}},
                {"name": "conf", "configMap": {"name": "settings", "items": [{"key": "a", "path": "sub/a.txt"}]}},
                {"name": "both", "projected": {"sources": [{"secret": {"name": "run-storage"}}]}},
                {"name": "scratch", "emptyDir": {}},
            ],
            "containers": [],
        },
    }


def test_changed_values_are_rewritten_and_removed_keys_removed(tmp_path: Path) -> None:
    resolver = FakeResolver(
        {("secrets", "run-storage"): {"credentials.json": b"v1", "old": b"x"}, ("configmaps", "settings"): {"a": b"1"}}
    )
    volumes = Volumes(_pod(), tmp_path, resolver, sync_seconds=60)
    volumes.materialise()
    creds = tmp_path / "creds" / "credentials.json"
    assert creds.read_bytes() == b"v1" and (creds.stat().st_mode & 0o777) == 0o440
    inode = creds.stat().st_ino

    resolver.objects[("secrets", "run-storage")] = {"credentials.json": b"v2"}
    resolver.objects[("configmaps", "settings")] = {"a": b"2"}
    t0 = 1_000_000.0
    volumes._next_sync = t0  # as if the period had just run out
    assert volumes.sync_sources(now=t0) is True
    assert creds.read_bytes() == b"v2" and (creds.stat().st_mode & 0o777) == 0o440
    assert creds.stat().st_ino != inode  # replaced by a rename, never written in place
    assert not (tmp_path / "creds" / "old").exists()  # the key is gone from the Secret
    assert (tmp_path / "conf" / "sub" / "a.txt").read_bytes() == b"2"
    assert (tmp_path / "both" / "credentials.json").read_bytes() == b"v2"
    assert not list((tmp_path / "creds").glob(".*.tmp"))

    reads = resolver.reads
    assert volumes.sync_sources(now=t0 + 30) is False  # not before the next period
    assert resolver.reads == reads
    assert volumes.sync_sources(now=t0 + 61) is False  # read again, nothing changed: nothing written
    assert resolver.reads > reads and creds.stat().st_ino == (tmp_path / "creds" / "credentials.json").stat().st_ino


def test_a_vanished_secret_leaves_its_files(tmp_path: Path) -> None:
    resolver = FakeResolver({("secrets", "run-storage"): {"credentials.json": b"v1"}, ("configmaps", "settings"): {}})
    volumes = Volumes(_pod(), tmp_path, resolver, sync_seconds=60)
    volumes.materialise()
    del resolver.objects[("secrets", "run-storage")]
    assert volumes.sync_sources(now=volumes._next_sync) is False
    assert (tmp_path / "creds" / "credentials.json").read_bytes() == b"v1"
