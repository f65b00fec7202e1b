"""Checkpoint policy (contract 4 in docs/architecture.md).

best.pt and last.pt go to the internal store at ``checkpoint_key(job_id, project_id, name)`` when
training ends — normally, on SIGINT/SIGTERM, on early stop and on an exception (when the files
exist). Nothing is uploaded as best.pt when the adapter never wrote one.

`CheckpointUploader.upload` retries with exponential backoff and verifies every upload against
the local file before calling it done:

* size: the stored object's ``stat`` size equals the local size;
* content: the stored sha256 (S3 object metadata) equals the local sha256; a single-part S3 ETag
  (the MD5 the server computed from the bytes it received) equals the local MD5; a store that
  reports no sha256 (local folders) is read back and hashed.

The local file is never deleted by this module (``delete_local_after_verify`` exists for a caller
that wants it, and only ever deletes a verified file).

`PeriodicLastUploader` backs up last.pt every ``interval_s`` seconds from a background thread
(a pod that loses its disk can still resume): after the adapter reports a save it copies last.pt
to a staging file (checking that it did not change while being copied) and uploads the copy, so
the training loop never waits for the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer_runtime.errors import StorageError
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, ObjectInfo, checkpoint_key

logger = logging.getLogger("trainer_runtime.checkpoints")

CHECKPOINT_NAMES = ("best.pt", "last.pt")
_CHUNK = 1 << 20


class CheckpointUploadError(StorageError):
    """A checkpoint could not be stored and verified after every attempt (the local copy is kept)."""


@dataclass(frozen=True)
class UploadedCheckpoint:
    """A checkpoint stored and verified in the internal store: its key, size, sha256 and epoch, and the
    local file it came from."""

    name: str
    key: str
    size: int
    sha256: str
    epoch: int | None
    local_path: str

    def event_data(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("local_path")
        return data


def file_digests(path: Path, *, md5: bool = True) -> tuple[int, str, str]:
    """(size, sha256, md5) of a local file, streamed; md5 is "" when not asked for."""
    sha = hashlib.sha256()
    md5_hash = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            if md5_hash is not None:
                md5_hash.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5_hash.hexdigest() if md5_hash is not None else ""


class CheckpointUploader:
    """Uploads a job's checkpoints to the internal store, verifies each copy by size and hash, and retries
    with exponential backoff."""

    def __init__(
        self,
        storage: DualStorageClient,
        job_id: int,
        project_id: int | None,
        *,
        attempts: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.job_id = job_id
        self.project_id = project_id
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep

    def key(self, name: str) -> str:
        return checkpoint_key(self.job_id, self.project_id, name)

    def verify(self, key: str, size: int, sha256: str, md5: str) -> ObjectInfo:
        """Raise StorageError unless the stored object at `key` has this size and content (`md5` ""
        skips the ETag comparison; the content is then checked by sha256)."""
        store = self.storage.internal
        remote = store.stat(key)
        problems: list[str] = []
        if remote.size != size:
            problems.append(f"stored size {remote.size} != local {size}")
        checked = False
        if remote.sha256 is not None:
            checked = True
            if remote.sha256 != sha256:
                problems.append(f"stored sha256 {remote.sha256[:12]}… != local {sha256[:12]}…")
        etag = (remote.etag or "").strip('"')
        if md5 and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):  # single-part: MD5 of the bytes
            checked = True
            if etag != md5:
                problems.append(f"stored MD5 {etag} != local {md5}")
        if not checked and not problems:
            digest = hashlib.sha256()
            with store.open(key) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != sha256:
                problems.append(f"stored content sha256 {digest.hexdigest()[:12]}… != local {sha256[:12]}…")
        if problems:
            raise StorageError(f"checkpoint {key!r} did not verify: {'; '.join(problems)}")
        return remote

    def upload(
        self,
        local_path: Path,
        name: str,
        *,
        epoch: int | None = None,
        delete_local_after_verify: bool = False,
        should_abort: Callable[[], bool] | None = None,
    ) -> UploadedCheckpoint:
        """Upload `local_path` as `name`, verify it; retry with backoff; raise CheckpointUploadError."""
        local_path = Path(local_path)
        # A local folder store has no MD5 ETag to compare with (verify re-reads the stored copy):
        # skip the MD5 pass there.
        size, sha256, md5 = file_digests(local_path, md5=not isinstance(self.storage.internal, LocalObjectStore))
        key = self.key(name)
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                self.storage.upload_checkpoint(
                    local_path, job_id=self.job_id, project_id=self.project_id, name=name, attempts=1
                )
                self.verify(key, size, sha256, md5)
            except StorageError as exc:
                last = exc
                logger.warning("checkpoint %s upload attempt %d/%d failed: %s", key, attempt, self.attempts, exc)
                if attempt < self.attempts and not (should_abort and should_abort()):
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                    self._sleep(random.uniform(delay / 2, delay) if delay > 0 else 0)
                    continue
                break
            else:
                logger.info("checkpoint %s stored and verified (%d B, sha256 %s…)", key, size, sha256[:12])
                if delete_local_after_verify:
                    local_path.unlink()
                return UploadedCheckpoint(
                    name=name, key=key, size=size, sha256=sha256, epoch=epoch, local_path=str(local_path)
                )
        raise CheckpointUploadError(
            f"checkpoint {name} could not be stored at {key!r} after {self.attempts} attempts "
            f"(local copy kept at {local_path}): {last}"
        )


class PeriodicLastUploader:
    """Backs up last.pt every `interval_s` seconds, off the training thread (see the module doc)."""

    def __init__(
        self,
        uploader: CheckpointUploader,
        last_path: Path,
        staging_dir: Path,
        interval_s: float,
        *,
        on_uploaded: Callable[[UploadedCheckpoint], None] | None = None,
    ) -> None:
        self.uploader = uploader
        self.last_path = Path(last_path)
        self.staging_dir = Path(staging_dir)
        self.interval_s = interval_s
        self.on_uploaded = on_uploaded
        self.uploads = 0
        self._saved_epoch: int | None = None
        self._uploaded_epoch: int | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="last-pt-backup", daemon=True)
        self._thread.start()

    def notify_saved(self, epoch: int) -> None:
        """The adapter finished writing last.pt for `epoch` (called from its callback: cheap)."""
        with self._cond:
            self._saved_epoch = epoch
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_due = time.monotonic() + self.interval_s
        while True:
            with self._cond:
                while not self._stopping and (
                    time.monotonic() < next_due
                    or self._saved_epoch is None
                    or self._saved_epoch == self._uploaded_epoch
                ):
                    wait = next_due - time.monotonic()
                    self._cond.wait(timeout=wait if wait > 0 else None)
                if self._stopping:
                    return
                epoch = self._saved_epoch
            try:
                self._backup(epoch)
            except Exception as exc:  # a backup failure must never stop training
                logger.warning("periodic backup of last.pt (epoch %s) failed: %s", epoch, exc)
            next_due = time.monotonic() + self.interval_s

    def _stable_copy(self, dest: Path) -> bool:
        before = self.last_path.stat()
        shutil.copyfile(self.last_path, dest)
        after = self.last_path.stat()
        same = (before.st_mtime_ns, before.st_size, before.st_ino) == (after.st_mtime_ns, after.st_size, after.st_ino)
        return same and dest.stat().st_size == after.st_size

    def _backup(self, epoch: int | None) -> None:
        if not self.last_path.is_file():
            return
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        staged = self.staging_dir / "last.pt.backup"
        for _ in range(3):
            if self._stable_copy(staged):
                break
            time.sleep(0.5)
        else:
            logger.info("last.pt kept changing while copied; backup skipped this time")
            return
        try:
            info = self.uploader.upload(staged, "last.pt", epoch=epoch, should_abort=lambda: self._stopping)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(staged)
        self._uploaded_epoch = epoch
        self.uploads += 1
        if self.on_uploaded is not None:
            self.on_uploaded(info)


__all__ = [
    "CHECKPOINT_NAMES",
    "CheckpointUploadError",
    "CheckpointUploader",
    "PeriodicLastUploader",
    "UploadedCheckpoint",
    "file_digests",
]
