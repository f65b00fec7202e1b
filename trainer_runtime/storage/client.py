"""`DualStorageClient`: routes dataset operations to the external store and results to the internal
store, so callers never pick a bucket; `make_store` builds one store from its settings.

See docs/architecture.md (Storage) for the keys each side holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from trainer_runtime.errors import ObjectNotFoundError, StorageError, UnsafePathError
from trainer_runtime.formats.paths import safe_join
from trainer_runtime.storage.base import ObjectInfo, ObjectStore
from trainer_runtime.storage.config import StorageConfig, StoreConfig
from trainer_runtime.storage.files import sha256_file
from trainer_runtime.storage.keys import (
    check_rel,
    checkpoint_key,
    dataset_annotations_key,
    dataset_image_key,
    dataset_images_prefix,
    dataset_prefix,
    snapshot_annotations_key,
)
from trainer_runtime.storage.local import LocalObjectStore
from trainer_runtime.storage.s3 import S3ObjectStore

logger = logging.getLogger(__name__)


def make_store(cfg: StoreConfig, name: str, local_root: Path, **s3_kwargs: Any) -> ObjectStore:
    """A LocalObjectStore under ``local_root/name`` when `cfg.endpoint` is None, else S3."""
    if cfg.endpoint is None:
        return LocalObjectStore(Path(local_root) / name, cfg.bucket, name)
    return S3ObjectStore(cfg.endpoint, cfg.access_key, cfg.secret_key, cfg.bucket, name, cfg.region, **s3_kwargs)


class DualStorageClient:
    """Routes dataset operations to the external store and results to the internal store."""

    def __init__(self, external: ObjectStore, internal: ObjectStore) -> None:
        self.external = external
        self.internal = internal

    @classmethod
    def from_config(cls, cfg: StorageConfig, **s3_kwargs: Any) -> DualStorageClient:
        return cls(
            make_store(cfg.external, "external", cfg.local_root, **s3_kwargs),
            make_store(cfg.internal, "internal", cfg.local_root, **s3_kwargs),
        )

    def describe(self) -> dict[str, Any]:
        return {"external": self.external.describe(), "internal": self.internal.describe()}

    def check(self) -> None:
        self.external.check()
        self.internal.check()

    def __repr__(self) -> str:
        return f"DualStorageClient(external={self.external!r}, internal={self.internal!r})"

    # dataset side (external) ----------------------------------------------------------------
    def upload_dataset_file(self, dataset_id: str, rel_path: str, path: Path) -> ObjectInfo:
        key = dataset_image_key(dataset_id, rel_path)
        return self.external.put_file(key, path)

    def upload_annotations(self, dataset_id: str, data: bytes | Path, *, snapshot_id: str | None = None) -> ObjectInfo:
        if snapshot_id is None:
            key = dataset_annotations_key(dataset_id)
        else:
            key = snapshot_annotations_key(dataset_id, snapshot_id)
        if isinstance(data, bytes | bytearray):
            info = self.external.put_bytes(key, bytes(data), content_type="application/json")
        else:
            info = self.external.put_file(key, data, content_type="application/json")
        logger.info(
            "external[%s] annotations of dataset %s%s stored (%d B)",
            self.external.bucket,
            dataset_id,
            f" snapshot {snapshot_id}" if snapshot_id else "",
            info.size,
        )
        return info

    def download_dataset(
        self,
        dataset_id: str,
        dest_dir: Path,
        *,
        snapshot_id: str | None = None,
        file_names: Iterable[str] | None = None,
        max_workers: int = 8,
    ) -> Path:
        """Materialise a dataset as ``dest_dir/annotations.json`` + ``dest_dir/images/<rel>``.

        With `snapshot_id` the snapshot's annotations are used (images are shared). Only
        `file_names` are fetched when given (each must exist, else ObjectNotFoundError). Files
        already present with the stored size are skipped (resume). A dataset without
        annotations (unlabeled) gets no annotations.json; a missing snapshot raises
        ObjectNotFoundError.
        """
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        images_dir = dest_dir / "images"
        store = self.external
        started = time.monotonic()

        if snapshot_id is not None:
            store.get_file(snapshot_annotations_key(dataset_id, snapshot_id), dest_dir / "annotations.json")
        else:
            try:
                store.get_file(dataset_annotations_key(dataset_id), dest_dir / "annotations.json")
            except ObjectNotFoundError:
                logger.info("dataset %s has no annotations.json (unlabeled)", dataset_id)

        prefix = dataset_images_prefix(dataset_id)
        listed = {info.key[len(prefix) :]: info.size for info in store.list(prefix)}
        if file_names is None:
            wanted = sorted(listed)
        else:
            wanted = []
            for name in file_names:
                rel = check_rel(name, "image path")
                if rel not in listed:
                    raise ObjectNotFoundError(store.name, prefix + rel)
                wanted.append(rel)

        todo: list[tuple[str, Path]] = []
        skipped = 0
        for rel in wanted:
            try:
                target = safe_join(images_dir, rel)
            except UnsafePathError as exc:
                raise StorageError(f"external store holds an unsafe image key {prefix + rel!r}") from exc
            try:
                if target.is_file() and target.stat().st_size == listed[rel]:
                    skipped += 1
                    continue
            except OSError:
                pass
            todo.append((prefix + rel, target))

        if todo:
            workers = max(1, min(max_workers, len(todo)))
            if workers == 1:
                for key, target in todo:
                    store.get_file(key, target)
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dl") as pool:
                    for _ in pool.map(lambda kt: store.get_file(kt[0], kt[1]), todo):
                        pass
        logger.info(
            "external[%s] dataset %s%s -> %s: %d images fetched, %d already present (%.1fs)",
            store.bucket,
            dataset_id,
            f" snapshot {snapshot_id}" if snapshot_id else "",
            dest_dir,
            len(todo),
            skipped,
            time.monotonic() - started,
        )
        return dest_dir

    def delete_dataset(self, dataset_id: str) -> int:
        count = self.external.delete_prefix(dataset_prefix(dataset_id))
        logger.info("external[%s] dataset %s deleted (%d objects)", self.external.bucket, dataset_id, count)
        return count

    # results side (internal) ----------------------------------------------------------------
    def upload_checkpoint(
        self,
        local_path: Path,
        *,
        job_id: int,
        project_id: int | None,
        name: str,
        attempts: int = 3,
        backoff_s: float = 1.0,
    ) -> ObjectInfo:
        """Upload a checkpoint to the internal store and verify it (size, sha256).

        Retries with exponential backoff; raises StorageError (or its subclass from the last
        failure) if it cannot be stored and verified. The returned info carries the sha256.
        """
        key = checkpoint_key(job_id, project_id, name)
        local_path = Path(local_path)
        digest, size = sha256_file(local_path)
        last: Exception | None = None
        for attempt in range(1, max(1, attempts) + 1):
            try:
                put = self.internal.put_file(key, local_path, content_type="application/octet-stream")
                remote = self.internal.stat(key)
                problems = []
                if remote.size != size:
                    problems.append(f"size {remote.size} != {size}")
                if put.sha256 is not None and put.sha256 != digest:
                    problems.append(f"uploaded sha256 {put.sha256} != {digest}")
                if remote.sha256 is not None and remote.sha256 != digest:
                    problems.append(f"stored sha256 {remote.sha256} != {digest}")
                if not problems:
                    logger.info(
                        "internal[%s] checkpoint %s stored (%d B, sha256 %s)",
                        self.internal.bucket,
                        key,
                        size,
                        digest[:12],
                    )
                    return ObjectInfo(key=key, size=size, sha256=digest, etag=remote.etag or put.etag)
                last = StorageError(
                    f"internal store (bucket {self.internal.bucket}): checkpoint {key!r} did not "
                    f"verify: {'; '.join(problems)}"
                )
            except StorageError as exc:
                last = exc
            logger.warning(
                "internal[%s] checkpoint %s upload attempt %d/%d failed: %s",
                self.internal.bucket,
                key,
                attempt,
                attempts,
                last,
            )
            if attempt < attempts:
                time.sleep(backoff_s * (2 ** (attempt - 1)))
        assert last is not None
        if isinstance(last, StorageError):
            raise last
        raise StorageError(str(last))  # pragma: no cover

    def download_checkpoint(self, *, job_id: int, project_id: int | None, name: str, dest: Path) -> Path:
        key = checkpoint_key(job_id, project_id, name)
        self.internal.get_file(key, dest)
        logger.info("internal[%s] checkpoint %s -> %s", self.internal.bucket, key, dest)
        return Path(dest)
