"""Checkpoint uploads: verification, retries, local copy kept, S3 (moto), periodic backup."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.s3_fixtures import MotoS3, moto_external, moto_internal, unique_bucket  # noqa: F401
from trainer_runtime.checkpoints import (
    CheckpointUploader,
    CheckpointUploadError,
    PeriodicLastUploader,
    file_digests,
)
from trainer_runtime.errors import StorageError
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, ObjectInfo, S3ObjectStore


class Flaky(LocalObjectStore):
    def __init__(self, root: Path, fail_puts: int = 0, corrupt: bool = False) -> None:
        super().__init__(root, "ckpt", "internal")
        self.fail_puts = fail_puts
        self.corrupt = corrupt
        self.puts = 0

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo:
        self.puts += 1
        if self.puts <= self.fail_puts:
            raise StorageError("simulated outage")
        info = super().put_file(key, path, content_type=content_type)
        if self.corrupt:  # the stored bytes differ from what was sent, same size
            target = self._path(key)
            data = bytearray(target.read_bytes())
            data[0] ^= 0xFF
            target.write_bytes(bytes(data))
            return ObjectInfo(key=key, size=info.size)
        return info


def _storage(tmp_path: Path, internal: LocalObjectStore | S3ObjectStore) -> DualStorageClient:
    return DualStorageClient(LocalObjectStore(tmp_path / "ext", "ds", "external"), internal)


def _ckpt(tmp_path: Path, size: int = 50_000) -> Path:
    p = tmp_path / "best.pt"
    p.write_bytes(bytes(range(256)) * (size // 256))
    return p


def test_upload_verifies_and_keeps_the_local_file(tmp_path: Path) -> None:
    store = Flaky(tmp_path / "int")
    up = CheckpointUploader(_storage(tmp_path, store), 5, None)
    local = _ckpt(tmp_path)
    info = up.upload(local, "best.pt", epoch=3)
    assert info.key == "checkpoints/test-jobs/job_5/best.pt" and info.epoch == 3
    assert info.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert info.event_data() == {
        "name": "best.pt",
        "key": info.key,
        "size": 50_000 - 50_000 % 256,
        "sha256": info.sha256,
        "epoch": 3,
    }
    assert local.exists()


def test_retry_after_a_failed_attempt(tmp_path: Path) -> None:
    store = Flaky(tmp_path / "int", fail_puts=2)
    sleeps: list[float] = []
    up = CheckpointUploader(_storage(tmp_path, store), 5, 1, attempts=3, backoff_s=1.0, sleep=sleeps.append)
    up.upload(_ckpt(tmp_path), "last.pt")
    assert store.puts == 3 and len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential with jitter


def test_content_that_never_verifies_is_an_error_and_the_local_copy_stays(tmp_path: Path) -> None:
    store = Flaky(tmp_path / "int", corrupt=True)
    up = CheckpointUploader(_storage(tmp_path, store), 5, 1, attempts=2, sleep=lambda s: None)
    local = _ckpt(tmp_path)
    with pytest.raises(CheckpointUploadError, match="local copy kept") as exc:
        up.upload(local, "best.pt", delete_local_after_verify=True)
    assert "sha256" in str(exc.value)
    assert local.exists() and store.puts == 2


def test_delete_local_only_after_verification(tmp_path: Path) -> None:
    up = CheckpointUploader(_storage(tmp_path, Flaky(tmp_path / "int")), 5, 1)
    local = _ckpt(tmp_path)
    up.upload(local, "best.pt", delete_local_after_verify=True)
    assert not local.exists()


def test_upload_to_s3_checks_size_sha256_and_etag(tmp_path: Path, moto_internal: MotoS3) -> None:  # noqa: F811
    s3 = S3ObjectStore(
        moto_internal.endpoint_url, moto_internal.access_key, moto_internal.secret_key, unique_bucket(), "internal"
    )
    up = CheckpointUploader(_storage(tmp_path, s3), 11, 2)
    local = _ckpt(tmp_path, 300_000)
    info = up.upload(local, "best.pt", epoch=1)
    size, sha, md5 = file_digests(local)
    remote = s3.stat(info.key)
    assert remote.size == size and remote.sha256 == sha and (remote.etag or "").strip('"') == md5
    with pytest.raises(StorageError, match="MD5"):
        up.verify(info.key, size, sha, "0" * 32)


def test_periodic_backup_uploads_a_copy_after_each_save(tmp_path: Path) -> None:
    store = Flaky(tmp_path / "int")
    up = CheckpointUploader(_storage(tmp_path, store), 5, 1)
    last = tmp_path / "out" / "last.pt"
    last.parent.mkdir()
    done: list[int | None] = []
    periodic = PeriodicLastUploader(up, last, tmp_path / "staging", 0.05, on_uploaded=lambda i: done.append(i.epoch))
    periodic.start()
    for epoch in (1, 2):
        last.write_bytes(f"epoch {epoch}".encode() * 100)
        periodic.notify_saved(epoch)
        deadline = time.monotonic() + 5
        while epoch not in done and time.monotonic() < deadline:
            time.sleep(0.01)
    periodic.stop(5)
    assert done == [1, 2]
    assert store.get_bytes("checkpoints/projects/1/jobs/5/last.pt") == b"epoch 2" * 100
    assert not list((tmp_path / "staging").iterdir())  # the staged copy is removed


def test_periodic_backup_off_when_interval_is_zero(tmp_path: Path) -> None:
    periodic = PeriodicLastUploader(
        CheckpointUploader(_storage(tmp_path, Flaky(tmp_path / "int")), 5, 1), tmp_path / "last.pt", tmp_path, 0
    )
    periodic.start()
    periodic.notify_saved(1)
    periodic.stop()
    assert periodic.uploads == 0
