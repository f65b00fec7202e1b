"""A local, content-addressed cache of datasets fetched from the external store.

Layout under ``<work_dir>/cache/datasets/<dataset_id>/``::

    .lock                         fcntl lock: one builder per dataset at a time (processes too)
    .pool/images/<rel>            every image fetched once per dataset, shared by all versions
    .pool/index.json              rel -> {"size", "etag"} of the pooled copy
    <version>/annotations.json    one version: a snapshot id, or ``sha256-<hex>`` of a live
    <version>/images/<rel>        dataset's annotations; images are hard links into the pool
    <version>/.complete           marker (JSON), written before the version dir is renamed in

A version is built in ``.tmp-<version>-<pid>-<rand>/`` and moved into place with one atomic
``rename``; a version directory without its marker is never used. A second job on the same version
finds the marker and reads nothing from the store (a snapshot: no request at all; a live dataset:
only its annotations, to learn the version). Images whose size (and ETag, when the store lists
one) did not change are not fetched again for a new version. Replacing a pooled image swaps the
pool entry (``os.replace``) while earlier versions keep their hard link to the old content, so a
version never changes once built. Callers must treat a version as read-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError, ObjectNotFoundError
from trainer_runtime.formats.paths import safe_join, safe_relpath
from trainer_runtime.formats.validate import load_annotations
from trainer_runtime.storage import (
    DualStorageClient,
    dataset_annotations_key,
    dataset_images_prefix,
    snapshot_annotations_key,
)

logger = logging.getLogger("trainer_runtime.dataset_cache")

MARKER = ".complete"


@dataclass(frozen=True)
class CachedDataset:
    """A dataset version in the local cache: its DICE folder, whether it was already cached, and how many
    images were fetched or reused."""

    path: Path  # DICE folder: annotations.json + images/
    version: str
    hit: bool  # True when the version was already in the cache
    fetched_images: int
    reused_images: int


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """An exclusive fcntl lock on `path` (created if missing); works across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"could not lock {path} within {timeout_s:.0f}s") from None
                    time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _safe_part(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith("."):
        raise ValueError(f"invalid {what} {value!r} for a cache path")
    return value


class DatasetCache:
    """Fetch a dataset (snapshot or live) into ``<root>/<dataset_id>/<version>/``."""

    def __init__(self, root: Path, storage: DualStorageClient, *, max_workers: int = 8) -> None:
        self.root = Path(root)
        self.storage = storage
        self.max_workers = max_workers

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / _safe_part(str(dataset_id), "dataset id")

    def fetch(self, dataset_id: str, snapshot_id: str | None = None) -> CachedDataset:
        """The local DICE folder of the dataset (built when missing). Raises ObjectNotFoundError
        (no annotations / snapshot / image), StorageUnavailableError, DatasetFormatError."""
        ds_dir = self.dataset_dir(dataset_id)
        ds_dir.mkdir(parents=True, exist_ok=True)
        if snapshot_id is not None:
            version = _safe_part(str(snapshot_id), "snapshot id")
            hit = self._hit(ds_dir / version)
            if hit is not None:
                return hit
        store = self.storage.external
        key = (
            snapshot_annotations_key(dataset_id, snapshot_id)
            if snapshot_id is not None
            else dataset_annotations_key(dataset_id)
        )
        if snapshot_id is None:
            try:
                annotations = store.get_bytes(key)
            except ObjectNotFoundError:
                raise DatasetFormatError(
                    f"dataset {dataset_id} has no annotations.json (unlabeled): label it before training",
                    file="annotations.json",
                ) from None
            version = "sha256-" + hashlib.sha256(annotations).hexdigest()
            hit = self._hit(ds_dir / version)
            if hit is not None:
                return hit
        with file_lock(ds_dir / ".lock"):
            hit = self._hit(ds_dir / version)  # another process may have built it meanwhile
            if hit is not None:
                return hit
            if snapshot_id is not None:
                annotations = store.get_bytes(key)
            return self._build(ds_dir, dataset_id, version, annotations)

    # ------------------------------------------------------------------------------------------
    def _hit(self, vdir: Path) -> CachedDataset | None:
        marker = vdir / MARKER
        if not marker.is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(marker)  # last use, for a future cleaner
        logger.info("dataset cache hit: %s", vdir)
        return CachedDataset(path=vdir, version=vdir.name, hit=True, fetched_images=0, reused_images=0)

    def _build(self, ds_dir: Path, dataset_id: str, version: str, annotations: bytes) -> CachedDataset:
        started = time.monotonic()
        # We hold the lock: any temp dir left here belongs to a builder that died.
        for stale in ds_dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        vdir = ds_dir / version
        if vdir.exists():  # a version dir without its marker (never made by us): rebuild it
            shutil.rmtree(vdir, ignore_errors=True)

        ds = load_annotations(annotations)
        rels = [
            safe_relpath(img.file_name, file="annotations.json", field=f"images[{i}].file_name")
            for i, img in enumerate(ds.images)
        ]
        wanted = sorted(set(rels))

        store = self.storage.external
        prefix = dataset_images_prefix(dataset_id)
        listed = {info.key[len(prefix) :]: info for info in store.list(prefix)}
        missing = [rel for rel in wanted if rel not in listed]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DatasetFormatError(
                f"image {missing[0]!r}{more} listed in annotations.json is not in the dataset's storage",
                file="annotations.json",
            )

        pool = ds_dir / ".pool"
        pool_images = pool / "images"
        index_path = pool / "index.json"
        index: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            index = json.loads(index_path.read_text(encoding="utf-8"))

        todo: list[str] = []
        for rel in wanted:
            info = listed[rel]
            entry = index.get(rel)
            target = safe_join(pool_images, rel)
            if (
                entry is not None
                and entry.get("size") == info.size
                and (info.etag is None or entry.get("etag") == info.etag)
                and target.is_file()
                and target.stat().st_size == info.size
            ):
                continue
            todo.append(rel)

        def fetch_one(rel: str) -> None:
            store.get_file(prefix + rel, safe_join(pool_images, rel))  # temp file + atomic rename

        if todo:
            workers = max(1, min(self.max_workers, len(todo)))
            if workers == 1:
                for rel in todo:
                    fetch_one(rel)
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-fetch") as pool_exec:
                    list(pool_exec.map(fetch_one, todo))
            for rel in todo:
                index[rel] = {"size": listed[rel].size, "etag": listed[rel].etag}
            pool.mkdir(parents=True, exist_ok=True)
            tmp_index = pool / f".index.{os.getpid()}.tmp"
            tmp_index.write_text(json.dumps(index, sort_keys=True), encoding="utf-8")
            os.replace(tmp_index, index_path)

        tmp = ds_dir / f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            (tmp / "images").mkdir(parents=True)
            (tmp / "annotations.json").write_bytes(annotations)
            for rel in wanted:
                src = safe_join(pool_images, rel)
                dst = safe_join(tmp / "images", rel)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)  # a filesystem without hard links
            marker = {
                "dataset_id": dataset_id,
                "version": version,
                "images": len(wanted),
                "annotations_sha256": hashlib.sha256(annotations).hexdigest(),
                "built_at": time.time(),
            }
            (tmp / MARKER).write_text(json.dumps(marker), encoding="utf-8")
            os.rename(tmp, vdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info(
            "dataset %s version %s cached in %s: %d images fetched, %d reused (%.1fs)",
            dataset_id,
            version,
            vdir,
            len(todo),
            len(wanted) - len(todo),
            time.monotonic() - started,
        )
        return CachedDataset(
            path=vdir, version=version, hit=False, fetched_images=len(todo), reused_images=len(wanted) - len(todo)
        )


__all__ = ["CachedDataset", "DatasetCache", "file_lock"]
