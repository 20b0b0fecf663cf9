"""S3 URIs and the checkpoint folder rules (manifest last, completeness, keep-last), on an in-memory store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from kubegym_runner.checkpoints import (
    MANIFEST_NAME,
    IncompleteCheckpointError,
    RunLayout,
    download_folder,
    group_by_step,
    is_complete,
    prune,
    scan,
    steps_to_prune,
    write_folder,
)
from kubegym_runner.errors import UserError
from kubegym_runner.storage import ObjectInfo, S3Uri, Storage, join_key


class MemoryStorage(Storage):
    """Storage over a dict, recording the order of writes."""

    def __init__(self) -> None:
        super().__init__(client=None)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes: list[str] = []

    def upload_file(self, path: Path, uri: S3Uri, progress: Callable[[int], None] | None = None) -> None:
        self.put_bytes(uri, path.read_bytes())

    def download_file(self, uri: S3Uri, path: Path) -> None:
        path.write_bytes(self.objects[(uri.bucket, uri.key)])

    def put_bytes(self, uri: S3Uri, data: bytes, content_type: str = "application/json") -> None:
        self.objects[(uri.bucket, uri.key)] = data
        self.writes.append(uri.key)

    def get_bytes(self, uri: S3Uri) -> bytes | None:
        return self.objects.get((uri.bucket, uri.key))

    def list_objects(self, prefix: S3Uri) -> list[ObjectInfo]:
        return [
            ObjectInfo(key, len(data))
            for (bucket, key), data in sorted(self.objects.items())
            if bucket == prefix.bucket and key.startswith(prefix.key)
        ]

    def delete(self, uris: list[S3Uri]) -> None:
        for uri in uris:
            self.objects.pop((uri.bucket, uri.key), None)


def test_uri_parsing_and_formatting() -> None:
    uri = S3Uri.parse("s3://bucket/runs/ns/name/checkpoints/000000001024/")
    assert uri == S3Uri("bucket", "runs/ns/name/checkpoints/000000001024/")
    assert str(S3Uri.parse("s3://bucket")) == "s3://bucket/"
    assert str(S3Uri("b", "a").join("/x/", "", "y")) == "s3://b/a/x/y"
    assert S3Uri("b", "a/x").folder().key == "a/x/"
    assert S3Uri("b", "").folder().key == ""
    assert join_key("", "/runs/", "ns") == "runs/ns"
    for bad in ("http://bucket/key", "bucket/key", "s3:///key", ""):
        with pytest.raises(UserError):
            S3Uri.parse(bad)


def test_layout_zero_pads_steps_so_listings_sort_by_step() -> None:
    layout = RunLayout.of("b", "/runs/ns/name/")
    assert str(layout.checkpoint(1024)) == "s3://b/runs/ns/name/checkpoints/000000001024"
    assert str(layout.final) == "s3://b/runs/ns/name/final"
    assert str(layout.eval) == "s3://b/runs/ns/name/eval"
    assert sorted(str(layout.checkpoint(s)) for s in (999, 10_000, 2048)) == [
        str(layout.checkpoint(s)) for s in (999, 2048, 10_000)
    ]


def test_group_by_step_ignores_foreign_keys() -> None:
    root = S3Uri("b", "run/checkpoints")
    objects = [
        ObjectInfo("run/checkpoints/000000000100/model.zip", 10),
        ObjectInfo("run/checkpoints/000000000100/manifest.json", 5),
        ObjectInfo("run/checkpoints/000000000200/model.zip", 11),
        ObjectInfo("run/checkpoints/notastep/model.zip", 1),
        ObjectInfo("run/checkpoints/000000000300/nested/x", 1),
        ObjectInfo("run/final/model.zip", 1),
    ]
    assert group_by_step(objects, root) == {100: {"model.zip": 10, "manifest.json": 5}, 200: {"model.zip": 11}}


@pytest.mark.parametrize(
    ("complete", "present", "keep", "expected"),
    [
        ([], [100], 2, []),  # nothing complete: touch nothing
        ([100, 200, 300], [100, 200, 300], 2, [100]),
        ([100, 200, 300], [100, 200, 300], 5, []),
        ([100, 300], [100, 200, 300], 1, [100, 200]),  # the partial 200 is an old leftover
        ([100, 200], [100, 200, 300], 2, []),  # a partial newer than all complete ones may be in progress
        ([300, 100, 200], [100, 150, 200, 300, 400], 1, [100, 150, 200]),
    ],
)
def test_steps_to_prune(complete: list[int], present: list[int], keep: int, expected: list[int]) -> None:
    assert steps_to_prune(complete, present, keep) == expected


def _files(tmp_path: Path, step: int) -> dict[str, Path]:
    model = tmp_path / f"model-{step}.zip"
    model.write_bytes(f"weights at {step}".encode())
    stats = tmp_path / f"vecnormalize-{step}.pkl"
    stats.write_bytes(b"stats" * step)
    return {"model.zip": model, "vecnormalize.pkl": stats}


def _write(storage: MemoryStorage, layout: RunLayout, tmp_path: Path, step: int) -> None:
    write_folder(
        storage,
        layout.checkpoint(step),
        _files(tmp_path, step),
        step=step,
        wall_time_seconds=1.5,
        algorithm="PPO",
        env_id="CartPole-v1",
        episodes=step // 10,
    )


def test_manifest_is_written_last_and_describes_every_object(tmp_path: Path) -> None:
    storage, layout = MemoryStorage(), RunLayout.of("b", "run")
    _write(storage, layout, tmp_path, 100)
    assert storage.writes[-1].endswith(MANIFEST_NAME)
    [checkpoint] = scan(storage, layout.checkpoints).complete
    manifest = checkpoint.manifest
    assert (manifest.step, manifest.episodes, manifest.algorithm) == (100, 10, "PPO")
    assert manifest.objects["model.zip"].sha256 == hashlib.sha256(b"weights at 100").hexdigest()
    assert manifest.objects["vecnormalize.pkl"].size == 500
    wire = storage.objects[("b", "run/checkpoints/000000000100/manifest.json")].decode()
    assert '"wallTimeSeconds"' in wire and '"createdAt"' in wire


def test_incomplete_folders_are_not_checkpoints(tmp_path: Path) -> None:
    storage, layout = MemoryStorage(), RunLayout.of("b", "run")
    _write(storage, layout, tmp_path, 100)
    _write(storage, layout, tmp_path, 200)
    # A pod killed mid-upload: objects without a manifest.
    storage.put_bytes(layout.checkpoint(300).join("model.zip"), b"partial")
    # A truncated object under a manifest.
    storage.put_bytes(layout.checkpoint(200).join("model.zip"), b"trunc")
    assert [c.step for c in scan(storage, layout.checkpoints).complete] == [100]
    assert is_complete(scan(storage, layout.checkpoints).complete[0].manifest, {"model.zip": 14}) is False


def test_download_verifies_hashes(tmp_path: Path) -> None:
    storage, layout = MemoryStorage(), RunLayout.of("b", "run")
    _write(storage, layout, tmp_path, 100)
    manifest = download_folder(storage, layout.checkpoint(100), tmp_path / "dl")
    assert (tmp_path / "dl" / "model.zip").read_bytes() == b"weights at 100"
    assert manifest.step == 100
    # Same size, different bytes: only the hash can tell.
    storage.put_bytes(layout.checkpoint(100).join("model.zip"), b"weights at 999")
    with pytest.raises(IncompleteCheckpointError, match="does not match"):
        download_folder(storage, layout.checkpoint(100), tmp_path / "dl2")
    with pytest.raises(IncompleteCheckpointError, match="no manifest"):
        download_folder(storage, layout.checkpoint(555), tmp_path / "dl3")


def test_keep_last_deletes_old_checkpoints_manifest_first(tmp_path: Path) -> None:
    storage, layout = MemoryStorage(), RunLayout.of("b", "run")
    for step in (100, 200, 300, 400):
        _write(storage, layout, tmp_path, step)
    storage.put_bytes(layout.checkpoint(250).join("model.zip"), b"leftover")
    deleted, kept = prune(storage, layout.checkpoints, keep_last=2)
    assert deleted == [100, 200, 250]
    assert [c.step for c in kept] == [400, 300]
    assert sorted(scan(storage, layout.checkpoints).folders) == [300, 400]


def test_rewriting_a_folder_hides_it_until_its_new_manifest(tmp_path: Path) -> None:
    storage, layout = MemoryStorage(), RunLayout.of("b", "run")
    _write(storage, layout, tmp_path, 100)
    storage.writes.clear()
    _write(storage, layout, tmp_path, 100)
    assert storage.writes[-1].endswith(MANIFEST_NAME)
    assert len(scan(storage, layout.checkpoints).complete) == 1
