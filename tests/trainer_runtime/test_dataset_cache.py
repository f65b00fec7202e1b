"""The content-addressed dataset cache: reuse without storage reads, images shared between
versions, two processes building the same version at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.trainer_runtime.fake_adapter import dataset_dict, publish_dataset
from trainer_runtime.dataset_cache import MARKER, DatasetCache
from trainer_runtime.errors import DatasetFormatError, ObjectNotFoundError
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, ObjectInfo

REPO = Path(__file__).resolve().parents[2]


class CountingStore(LocalObjectStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root, "training-datasets", "external")
        self.reads: list[tuple[str, str]] = []

    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        self.reads.append(("get", key))
        return super().get_file(key, dest)

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        self.reads.append(("open", key))
        return super().open(key)

    def list(self, prefix: str = "") -> object:  # type: ignore[override]
        self.reads.append(("list", prefix))
        return super().list(prefix)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DualStorageClient, CountingStore, DatasetCache]:
    ext = CountingStore(tmp_path / "storage" / "external")
    storage = DualStorageClient(ext, LocalObjectStore(tmp_path / "storage" / "internal", "ckpt", "internal"))
    data = publish_dataset(storage, "ds1", dataset_dict(6), tmp_dir=tmp_path / "blobs")
    publish_dataset(storage, "ds1", data, snapshot_id="snap1", tmp_dir=tmp_path / "blobs")
    ext.reads.clear()
    return storage, ext, DatasetCache(tmp_path / "cache", storage)


def image_reads(store: CountingStore) -> list[str]:
    return [k for op, k in store.reads if op == "get" and "/images/" in k]


def test_snapshot_is_fetched_once_then_reused_without_any_read(setup: tuple) -> None:
    _, ext, cache = setup
    first = cache.fetch("ds1", "snap1")
    assert not first.hit and first.fetched_images == 6
    assert (first.path / "annotations.json").is_file() and (first.path / MARKER).is_file()
    assert len(list((first.path / "images" / "img").iterdir())) == 6
    ext.reads.clear()
    second = cache.fetch("ds1", "snap1")
    assert second.hit and second.path == first.path
    assert ext.reads == []


def test_live_dataset_reads_only_its_annotations_when_cached(setup: tuple) -> None:
    _, ext, cache = setup
    first = cache.fetch("ds1")
    assert first.version.startswith("sha256-")
    ext.reads.clear()
    again = cache.fetch("ds1")
    assert again.hit and ext.reads == [("open", "datasets/ds1/annotations.json")]


def test_versions_share_images_through_the_pool(setup: tuple, tmp_path: Path) -> None:
    storage, ext, cache = setup
    a = cache.fetch("ds1", "snap1")
    data = dataset_dict(6)
    data["images"] = data["images"][:4]
    data["annotations"] = data["annotations"][:4]
    storage.upload_annotations("ds1", json.dumps(data).encode(), snapshot_id="snap2")
    ext.reads.clear()
    b = cache.fetch("ds1", "snap2")
    assert b.fetched_images == 0 and b.reused_images == 4
    assert image_reads(ext) == []
    same = "images/img/000.png"
    assert os.stat(a.path / same).st_ino == os.stat(b.path / same).st_ino  # one copy on disk
    assert not (b.path / "images/img/005.png").exists()

    # an image replaced in the store: the new version gets it, the old version keeps its content
    old = (a.path / same).read_bytes()
    p = tmp_path / "new.png"
    p.write_bytes(b"new content, longer than before" * 4)
    storage.upload_dataset_file("ds1", "img/000.png", p)
    storage.upload_annotations("ds1", json.dumps(data).encode(), snapshot_id="snap3")
    c = cache.fetch("ds1", "snap3")
    assert c.fetched_images == 1
    assert (c.path / same).read_bytes() == p.read_bytes()
    assert (a.path / same).read_bytes() == old


def test_errors_and_leftovers(setup: tuple) -> None:
    storage, _, cache = setup
    with pytest.raises(ObjectNotFoundError):
        cache.fetch("ds1", "missing")
    with pytest.raises(DatasetFormatError, match=r"no annotations\.json"):
        cache.fetch("other")
    data = dataset_dict(3)
    data["images"][0]["file_name"] = "img/not-stored.png"
    storage.upload_annotations("ds1", json.dumps(data).encode(), snapshot_id="broken")
    with pytest.raises(DatasetFormatError, match=r"not-stored\.png"):
        cache.fetch("ds1", "broken")
    ds_dir = cache.dataset_dir("ds1")
    assert not (ds_dir / "broken").exists()
    # a builder killed mid-way leaves a temp dir; a version dir without its marker is not trusted
    (ds_dir / ".tmp-snap1-999-dead").mkdir()
    (ds_dir / "snap1").mkdir()
    got = cache.fetch("ds1", "snap1")
    assert not got.hit and (got.path / MARKER).is_file()
    assert not list(ds_dir.glob(".tmp-*"))
    with pytest.raises(ValueError):
        cache.fetch("../x")


_WORKER = r"""
import json, sys
from pathlib import Path
from trainer_runtime.dataset_cache import DatasetCache
from trainer_runtime.storage import DualStorageClient, LocalObjectStore
root = Path(sys.argv[1])
ext = LocalObjectStore(root / "storage" / "external", "training-datasets", "external")
storage = DualStorageClient(ext, LocalObjectStore(root / "storage" / "internal", "ckpt", "internal"))
got = DatasetCache(root / "cache", storage).fetch("ds1", "snap1")
print(json.dumps({"path": str(got.path), "fetched": got.fetched_images, "hit": got.hit}))
"""


@pytest.mark.slow
def test_two_processes_build_one_version_without_corruption(tmp_path: Path) -> None:
    storage = DualStorageClient(
        LocalObjectStore(tmp_path / "storage" / "external", "training-datasets", "external"),
        LocalObjectStore(tmp_path / "storage" / "internal", "ckpt", "internal"),
    )
    data = publish_dataset(storage, "ds1", dataset_dict(40), tmp_dir=tmp_path / "blobs")
    publish_dataset(storage, "ds1", data, snapshot_id="snap1", tmp_dir=tmp_path / "blobs")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({r["path"] for r in results}) == 1
    assert sum(r["fetched"] for r in results) == 40  # built once
    assert sum(not r["hit"] for r in results) == 1
    path = Path(results[0]["path"])
    assert len(list((path / "images" / "img").iterdir())) == 40
    assert not list(path.parent.glob(".tmp-*"))
