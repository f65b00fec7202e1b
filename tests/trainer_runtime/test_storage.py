"""trainer_runtime.storage: every ObjectStore behaviour on local folders and on a real S3 HTTP
endpoint (moto), dual-store routing, configuration from the environment."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3_fixtures import MotoS3, moto_external, moto_internal, s3_env, s3_storage_config, unique_bucket
from trainer_runtime.errors import ObjectNotFoundError, StorageError, StorageUnavailableError
from trainer_runtime.storage import (
    DualStorageClient,
    LocalObjectStore,
    ObjectInfo,
    ObjectStore,
    S3ObjectStore,
    StorageConfig,
    StoreConfig,
    checkpoint_key,
    dataset_annotations_key,
    dataset_image_key,
    snapshot_annotations_key,
)

__all__ = ["moto_external", "moto_internal", "s3_env"]  # fixtures re-exported for pytest

MB = 1024 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _s3_store(server: MotoS3, name: str, bucket: str | None = None, **kw: Any) -> S3ObjectStore:
    kw.setdefault("max_attempts", 2)
    kw.setdefault("multipart_threshold", 5 * MB)
    kw.setdefault("multipart_chunksize", 5 * MB)
    return S3ObjectStore(
        server.endpoint_url,
        server.access_key,
        server.secret_key,
        bucket or unique_bucket(name),
        name,
        server.region,
        **kw,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "storage" / "external", "bucket-a", "external")
    server: MotoS3 = request.getfixturevalue("moto_external")
    return _s3_store(server, "external")


# ------------------------------------------------------------------------------------------
# ObjectStore behaviour, both implementations


def test_put_bytes_get_bytes_stat_exists(store: ObjectStore) -> None:
    data = b"hello storage"
    info = store.put_bytes("a/b/c.txt", data, content_type="text/plain")
    assert info == ObjectInfo(key="a/b/c.txt", size=len(data), sha256=_sha(data), etag=info.etag)
    assert store.get_bytes("a/b/c.txt") == data
    st = store.stat("a/b/c.txt")
    assert st.key == "a/b/c.txt" and st.size == len(data)
    assert st.sha256 in (None, _sha(data))
    assert store.exists("a/b/c.txt")
    assert not store.exists("a/b/missing.txt")
    assert not store.exists("a/b")  # a "directory" is not an object


def test_overwrite_replaces(store: ObjectStore) -> None:
    store.put_bytes("k.bin", b"first version")
    store.put_bytes("k.bin", b"2nd")
    assert store.get_bytes("k.bin") == b"2nd"
    assert store.stat("k.bin").size == 3


def test_empty_object(store: ObjectStore) -> None:
    info = store.put_bytes("empty", b"")
    assert info.size == 0 and info.sha256 == _sha(b"")
    assert store.get_bytes("empty") == b""
    assert list(store.iter_chunks("empty")) == []


def test_put_file_get_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = bytes(range(256)) * 100
    src.write_bytes(data)
    info = store.put_file("files/src.bin", src)
    assert info.size == len(data) and info.sha256 == _sha(data)
    dest = tmp_path / "out" / "deep" / "dest.bin"
    got = store.get_file("files/src.bin", dest)
    assert got.key == "files/src.bin" and got.size == len(data)
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest.bin"]  # no temp leftovers
    # get_file over an existing file replaces it
    dest.write_bytes(b"old")
    store.get_file("files/src.bin", dest)
    assert dest.read_bytes() == data


def test_put_stream_unknown_size_and_size_mismatch(store: ObjectStore) -> None:
    data = b"x" * 10_000
    info = store.put_stream("s/one", io.BytesIO(data))
    assert info.size == len(data) and info.sha256 == _sha(data)
    assert store.get_bytes("s/one") == data
    with pytest.raises(StorageError, match="expected 5"):
        store.put_stream("s/two", io.BytesIO(b"abc"), size=5)
    assert not store.exists("s/two")


def test_missing_key_errors(store: ObjectStore, tmp_path: Path) -> None:
    for call in (
        lambda: store.stat("nope/x"),
        lambda: store.get_bytes("nope/x"),
        lambda: store.open("nope/x"),
        lambda: store.iter_chunks("nope/x"),  # raises at call time, before any chunk
        lambda: store.copy("nope/x", "nope/y"),
    ):
        with pytest.raises(ObjectNotFoundError) as exc_info:
            call()
        assert exc_info.value.key == "nope/x"
        assert exc_info.value.store == store.name
    dest = tmp_path / "dl" / "x"
    with pytest.raises(ObjectNotFoundError):
        store.get_file("nope/x", dest)
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_open_streams_and_iter_chunks(store: ObjectStore) -> None:
    data = bytes(i % 251 for i in range(300_000))
    store.put_bytes("big/blob", data)
    with store.open("big/blob") as fh:
        head = fh.read(10)
        rest = fh.read()
    assert head + rest == data
    chunks = list(store.iter_chunks("big/blob", chunk_size=65536))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 65536 and len(chunks) >= 5


def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for key in ("d/1/a", "d/1/b/c", "d/10/a", "d/2/a", "other"):
        store.put_bytes(key, key.encode())
    store.delete("d/1/a")
    store.delete("d/1/a")  # missing is fine
    store.delete("never/existed")
    assert not store.exists("d/1/a")
    assert store.delete_prefix("d/1/") == 1
    assert [i.key for i in store.list()] == ["d/10/a", "d/2/a", "other"]
    assert store.delete_prefix("d/") == 2
    assert store.delete_prefix("d/") == 0
    assert [i.key for i in store.list()] == ["other"]


def test_list_sorted_with_prefixes(store: ObjectStore) -> None:
    keys = ["b/2.txt", "a-b", "a/b", "a/a/z", "b/10.txt", "c", "a/c.json"]
    for k in keys:
        store.put_bytes(k, b"x" * len(k))
    listed = list(store.list())
    assert [i.key for i in listed] == sorted(keys)
    assert all(i.size == len(i.key) for i in listed)
    assert [i.key for i in store.list("a/")] == ["a/a/z", "a/b", "a/c.json"]
    assert [i.key for i in store.list("a")] == ["a-b", "a/a/z", "a/b", "a/c.json"]
    assert [i.key for i in store.list("b/1")] == ["b/10.txt"]
    assert list(store.list("zzz/")) == []


def test_list_paginates(moto_external: MotoS3) -> None:
    s3 = _s3_store(moto_external, "external", list_page_size=7)
    keys = [f"p/{i:03d}" for i in range(23)]
    for k in keys:
        s3.put_bytes(k, b"1")
    assert [i.key for i in s3.list("p/")] == keys


def test_copy(store: ObjectStore) -> None:
    data = b"copy me"
    store.put_bytes("src/a", data)
    info = store.copy("src/a", "dst/b")
    assert info.key == "dst/b" and info.size == len(data)
    assert store.get_bytes("dst/b") == data
    assert store.get_bytes("src/a") == data
    assert store.copy("src/a", "src/a").size == len(data)


def test_presigned_url(store: ObjectStore) -> None:
    store.put_bytes("pub/x.txt", b"presigned!")
    url = store.presigned_url("pub/x.txt", expires_s=60)
    if isinstance(store, LocalObjectStore):
        assert url is None
        return
    assert url is not None and url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"presigned!"


@pytest.mark.parametrize(
    "bad",
    ["", "/abs/key", "a/../b", "..", "../x", "a//b", "a/", "./a", "a/./b", "a\x00b", "a\nb", "a\\b", "C:x"],
)
def test_invalid_keys_rejected(store: ObjectStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.put_bytes(bad, b"x")
    with pytest.raises(ValueError):
        store.stat(bad)


def test_local_keys_stay_inside_bucket(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root", "bkt", "external")
    store.put_bytes("x/y.txt", b"1")
    assert (tmp_path / "root" / "bkt" / "x" / "y.txt").read_bytes() == b"1"
    for bad in ("../escape", "x/../../escape", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x")
    assert not (tmp_path / "root" / "escape").exists()
    with pytest.raises(ValueError):
        LocalObjectStore(tmp_path, "../b", "external")
    with pytest.raises(ValueError):
        store.list("../")


def test_local_temp_files_invisible_and_cleaned(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, "bkt", "internal")

    class Boom(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            raise OSError("disk on fire")

    with pytest.raises(StorageError, match="disk on fire"):
        store.put_stream("a/b", Boom())  # type: ignore[arg-type]
    assert not store.exists("a/b")
    assert list(store.list()) == []
    assert list((tmp_path / ".tmp").iterdir()) == []
    store.put_bytes("a/b", b"ok")
    store.delete("a/b")
    assert not (tmp_path / "bkt" / "a").exists()  # empty folders pruned


def test_s3_content_type_and_sha_metadata(moto_external: MotoS3, tmp_path: Path) -> None:
    s3 = _s3_store(moto_external, "external")
    src = tmp_path / "img.png"
    src.write_bytes(b"\x89PNG fake")
    s3.put_file("img.png", src)
    s3.put_bytes("meta.json", b"{}", content_type="application/json")
    head = moto_external.client().head_object(Bucket=s3.bucket, Key="img.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["sha256"] == _sha(b"\x89PNG fake")
    assert s3.stat("img.png").sha256 == _sha(b"\x89PNG fake")
    assert s3.stat("meta.json").sha256 == _sha(b"{}")
    head = moto_external.client().head_object(Bucket=s3.bucket, Key="meta.json")
    assert head["ContentType"] == "application/json"
    assert s3.copy("img.png", "img2.png").sha256 == _sha(b"\x89PNG fake")
    assert s3.stat("img2.png").sha256 == _sha(b"\x89PNG fake")


class _NonSeekable(io.RawIOBase):
    """A generated byte stream that cannot seek (like a request body)."""

    def __init__(self, size: int, seed: int = 7) -> None:
        super().__init__()
        self.remaining = size
        self.block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB pattern

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.remaining, len(self.block))
        b[:n] = self.block[:n]
        self.remaining -= n
        return n


def _expected_large(size: int, seed: int = 7) -> tuple[str, int]:
    sha = hashlib.sha256()
    src = _NonSeekable(size, seed)
    while chunk := src.read(1 << 20):
        sha.update(chunk)
    return sha.hexdigest(), size


@pytest.mark.slow
def test_large_object_streams_multipart(store: ObjectStore, tmp_path: Path) -> None:
    size = 20 * MB + 12345
    expected, _ = _expected_large(size)
    info = store.put_stream("large/blob.bin", io.BufferedReader(_NonSeekable(size)))
    assert info.size == size and info.sha256 == expected
    assert store.stat("large/blob.bin").size == size
    if isinstance(store, S3ObjectStore):
        etag = store.stat("large/blob.bin").etag or ""
        assert etag.strip('"').endswith("-5"), etag  # 5 MiB parts -> multipart upload
    dest = tmp_path / "large.bin"
    store.get_file("large/blob.bin", dest)
    assert dest.stat().st_size == size
    sha = hashlib.sha256()
    with open(dest, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    assert sha.hexdigest() == expected
    sha = hashlib.sha256()
    for chunk in store.iter_chunks("large/blob.bin"):
        sha.update(chunk)
    assert sha.hexdigest() == expected
    # put_file of a big file: multipart too, hash stored
    info = store.put_file("large/copy.bin", dest)
    assert info.sha256 == expected and store.stat("large/copy.bin").sha256 in (None, expected)


# ------------------------------------------------------------------------------------------
# unreachable endpoint


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_raises_quickly() -> None:
    port = _closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = S3ObjectStore(endpoint, "k", "s", "bkt", "external", max_attempts=2, connect_timeout=1, read_timeout=2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as exc_info:
        s3.put_bytes("datasets/1/annotations.json", b"{}")
    msg = str(exc_info.value)
    assert "external" in msg and endpoint in msg and "datasets/1/annotations.json" in msg
    for call in (
        lambda: s3.stat("k"),
        lambda: s3.get_bytes("k"),
        lambda: list(s3.list("x/")),
        lambda: s3.delete("k"),
        s3.check,
    ):
        with pytest.raises(StorageUnavailableError):
            call()
    assert time.monotonic() - started < 20
    client = DualStorageClient(LocalObjectStore(Path("/nonexistent-unused"), "b", "external"), s3)
    with pytest.raises(StorageUnavailableError):
        client.internal.check()


def test_endpoint_without_scheme_gets_http(moto_external: MotoS3) -> None:
    hostport = moto_external.endpoint_url.removeprefix("http://")
    s3 = S3ObjectStore(hostport, moto_external.access_key, moto_external.secret_key, unique_bucket(), "x")
    assert s3.endpoint_url == moto_external.endpoint_url
    s3.put_bytes("a", b"1")
    assert s3.get_bytes("a") == b"1"


def test_bucket_not_created_when_disabled(moto_external: MotoS3) -> None:
    s3 = _s3_store(moto_external, "external", create_bucket=False)
    with pytest.raises(StorageError, match="does not exist"):
        s3.put_bytes("a", b"1")


# ------------------------------------------------------------------------------------------
# keys


def test_key_functions() -> None:
    assert dataset_image_key("7", "train/cat/1.jpg") == "datasets/7/images/train/cat/1.jpg"
    assert dataset_image_key("7", "train\\cat\\./1.jpg") == "datasets/7/images/train/cat/1.jpg"
    assert dataset_annotations_key("abc") == "datasets/abc/annotations.json"
    assert snapshot_annotations_key("abc", "s1") == "datasets/abc/snapshots/s1/annotations.json"
    assert checkpoint_key(15, 3, "best.pt") == "checkpoints/projects/3/jobs/15/best.pt"
    assert checkpoint_key(15, None, "last.pt") == "checkpoints/test-jobs/job_15/last.pt"
    for bad in (lambda: dataset_image_key("7", "../x.jpg"), lambda: dataset_image_key("a/b", "x.jpg")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        snapshot_annotations_key("7", "..")
    with pytest.raises(ValueError):
        checkpoint_key(1, None, "/etc/best.pt")


# ------------------------------------------------------------------------------------------
# configuration


def _local(data_dir: Path) -> DualStorageClient:
    return DualStorageClient.from_config(StorageConfig(local_root=data_dir / "storage"))


def test_store_config_hides_secrets_and_round_trips_as_the_spec_json() -> None:
    store = StoreConfig(endpoint="http://ext:9000", access_key="ek", secret_key="ext-secret-value", bucket="b")
    assert "ext-secret-value" not in repr(store) and "ext-secret-value" not in str(store) and "***" in repr(store)
    cfg = StorageConfig(external=store, local_root=Path("/x/storage"))
    assert "ext-secret-value" not in repr(cfg)
    doc = json.loads(cfg.model_dump_json())
    assert doc == {
        "external": {
            "endpoint": "http://ext:9000",
            "access_key": "ek",
            "secret_key": "ext-secret-value",
            "bucket": "b",
            "region": "us-east-1",
        },
        "internal": {
            "endpoint": None,
            "access_key": None,
            "secret_key": None,
            "bucket": "training-checkpoints",
            "region": "us-east-1",
        },
        "local_root": "/x/storage",
    }
    assert StorageConfig.model_validate(doc) == cfg
    with pytest.raises(ValueError, match="extra"):
        StorageConfig.model_validate({**doc, "externl": {}})


def test_dual_from_config_local(tmp_path: Path) -> None:
    client = _local(tmp_path)
    assert isinstance(client.external, LocalObjectStore) and isinstance(client.internal, LocalObjectStore)
    desc = client.describe()
    assert desc["external"]["kind"] == "local" and desc["external"]["bucket"] == "training-datasets"
    assert desc["internal"]["bucket"] == "training-checkpoints"
    client.check()
    client.upload_annotations("1", b"{}")
    assert (tmp_path / "storage/external/training-datasets/datasets/1/annotations.json").read_bytes() == b"{}"


def test_dual_from_config_s3(s3_env: dict[str, str], tmp_path: Path) -> None:
    client = DualStorageClient.from_config(s3_storage_config(s3_env, tmp_path / "storage"))
    assert isinstance(client.external, S3ObjectStore) and isinstance(client.internal, S3ObjectStore)
    desc = client.describe()
    assert desc["external"] == {
        "kind": "s3",
        "endpoint": s3_env["EXTERNAL_STORAGE_ENDPOINT"],
        "bucket": s3_env["EXTERNAL_BUCKET_DATASETS"],
        "region": "us-east-1",
    }
    assert desc["internal"]["endpoint"] == s3_env["INTERNAL_STORAGE_ENDPOINT"]
    assert s3_env["EXTERNAL_STORAGE_SECRET_KEY"] not in json.dumps(desc)
    client.check()


# ------------------------------------------------------------------------------------------
# dual client: routing, datasets, checkpoints


def _make_images(root: Path) -> dict[str, bytes]:
    files = {
        "train/cat/1.jpg": b"cat-one" * 10,
        "train/dog/2.jpg": b"dog-two" * 20,
        "val/3.png": b"three" * 5,
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


@pytest.mark.slow
def test_routing_s3(s3_env: dict[str, str], moto_external: MotoS3, moto_internal: MotoS3, tmp_path: Path) -> None:
    client = DualStorageClient.from_config(s3_storage_config(s3_env, tmp_path / "storage"))
    ext_bucket, int_bucket = s3_env["EXTERNAL_BUCKET_DATASETS"], s3_env["INTERNAL_BUCKET_CHECKPOINTS"]
    files = _make_images(tmp_path / "src")
    for rel in files:
        client.upload_dataset_file("42", rel, tmp_path / "src" / rel)
    client.upload_annotations("42", b'{"format_version": "1.0"}')
    client.upload_annotations("42", b'{"format_version": "1.0", "s": 1}', snapshot_id="s1")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights" * 1000)
    info = client.upload_checkpoint(ckpt, job_id=15, project_id=3, name="best.pt")
    assert info.key == "checkpoints/projects/3/jobs/15/best.pt" and info.sha256 == _sha(ckpt.read_bytes())
    client.upload_checkpoint(ckpt, job_id=16, project_id=None, name="last.pt")

    assert ext_bucket in moto_external.bucket_names() and int_bucket not in moto_external.bucket_names()
    assert int_bucket in moto_internal.bucket_names() and ext_bucket not in moto_internal.bucket_names()
    assert moto_external.keys(ext_bucket) == sorted(
        [f"datasets/42/images/{r}" for r in files]
        + ["datasets/42/annotations.json", "datasets/42/snapshots/s1/annotations.json"]
    )
    assert moto_internal.keys(int_bucket) == [
        "checkpoints/projects/3/jobs/15/best.pt",
        "checkpoints/test-jobs/job_16/last.pt",
    ]
    dest = client.download_checkpoint(job_id=15, project_id=3, name="best.pt", dest=tmp_path / "dl/best.pt")
    assert dest.read_bytes() == ckpt.read_bytes()
    assert client.delete_dataset("42") == 5
    assert moto_external.keys(ext_bucket) == []
    assert len(moto_internal.keys(int_bucket)) == 2


def test_routing_local(tmp_path: Path) -> None:
    client = _local(tmp_path / "data")
    files = _make_images(tmp_path / "src")
    for rel in files:
        client.upload_dataset_file("1", rel, tmp_path / "src" / rel)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"w" * 100)
    client.upload_checkpoint(ckpt, job_id=2, project_id=None, name="last.pt")
    ext = tmp_path / "data/storage/external/training-datasets"
    internal = tmp_path / "data/storage/internal/training-checkpoints"
    assert sorted(p.relative_to(ext).as_posix() for p in ext.rglob("*") if p.is_file()) == sorted(
        f"datasets/1/images/{r}" for r in files
    )
    assert [p.relative_to(internal).as_posix() for p in internal.rglob("*") if p.is_file()] == [
        "checkpoints/test-jobs/job_2/last.pt"
    ]


@pytest.fixture(params=["local", "s3"])
def dual(request: pytest.FixtureRequest, tmp_path: Path) -> DualStorageClient:
    if request.param == "local":
        return _local(tmp_path / "data")
    env = request.getfixturevalue("s3_env")
    return DualStorageClient.from_config(s3_storage_config(env, tmp_path / "data" / "storage"))


def _count_get_file(client: DualStorageClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    orig = client.external.get_file

    def spy(key: str, dest: Any) -> ObjectInfo:
        calls.append(key)
        return orig(key, dest)

    monkeypatch.setattr(client.external, "get_file", spy)
    return calls


def test_download_dataset_snapshot_and_resume(
    dual: DualStorageClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _make_images(tmp_path / "src")
    for rel in files:
        dual.upload_dataset_file("7", rel, tmp_path / "src" / rel)
    dual.upload_dataset_file("70", "other.jpg", tmp_path / "src" / "val/3.png")  # must not leak in
    main_ann, snap_ann = b'{"v": "main"}', b'{"v": "snapshot"}'
    dual.upload_annotations("7", main_ann)
    ann_file = tmp_path / "snap.json"
    ann_file.write_bytes(snap_ann)
    dual.upload_annotations("7", ann_file, snapshot_id="s1")

    dest = tmp_path / "work"
    assert dual.download_dataset("7", dest) == dest
    assert (dest / "annotations.json").read_bytes() == main_ann
    got = {
        p.relative_to(dest / "images").as_posix(): p.read_bytes() for p in (dest / "images").rglob("*") if p.is_file()
    }
    assert got == files

    calls = _count_get_file(dual, monkeypatch)
    (dest / "images/train/dog/2.jpg").write_bytes(b"partial")  # wrong size -> fetched again
    (dest / "images/val/3.png").unlink()
    dual.download_dataset("7", dest, snapshot_id="s1")
    assert (dest / "annotations.json").read_bytes() == snap_ann
    assert sorted(calls) == sorted(
        [
            "datasets/7/snapshots/s1/annotations.json",
            "datasets/7/images/train/dog/2.jpg",
            "datasets/7/images/val/3.png",
        ]
    )
    assert (dest / "images/train/dog/2.jpg").read_bytes() == files["train/dog/2.jpg"]

    calls.clear()
    dual.download_dataset("7", dest, snapshot_id="s1")
    assert calls == ["datasets/7/snapshots/s1/annotations.json"]  # everything present: skipped

    subset = tmp_path / "subset"
    dual.download_dataset("7", subset, file_names=["val/3.png", "train\\cat\\1.jpg"])
    assert sorted(p.relative_to(subset).as_posix() for p in subset.rglob("*") if p.is_file()) == [
        "annotations.json",
        "images/train/cat/1.jpg",
        "images/val/3.png",
    ]
    with pytest.raises(ObjectNotFoundError):
        dual.download_dataset("7", tmp_path / "x", file_names=["missing.jpg"])
    with pytest.raises(ObjectNotFoundError):
        dual.download_dataset("7", tmp_path / "y", snapshot_id="nope")


def test_download_unlabeled_dataset(dual: DualStorageClient, tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"img")
    dual.upload_dataset_file("9", "a.jpg", src)
    dest = dual.download_dataset("9", tmp_path / "out")
    assert not (dest / "annotations.json").exists()
    assert (dest / "images/a.jpg").read_bytes() == b"img"
    assert dual.delete_dataset("9") == 1
    assert list(dual.external.list("datasets/9/")) == []


def test_upload_checkpoint_retries_then_succeeds(
    dual: DualStorageClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"abc" * 1000)
    orig = dual.internal.put_file
    attempts: list[int] = []

    def flaky(key: str, path: Any, **kw: Any) -> ObjectInfo:
        attempts.append(1)
        if len(attempts) == 1:
            raise StorageUnavailableError("internal: simulated outage")
        return orig(key, path, **kw)

    monkeypatch.setattr(dual.internal, "put_file", flaky)
    with caplog.at_level(logging.INFO, logger="trainer_runtime.storage"):
        info = dual.upload_checkpoint(ckpt, job_id=1, project_id=5, name="best.pt", backoff_s=0)
    assert len(attempts) == 2
    assert info.size == 3000 and info.sha256 == _sha(ckpt.read_bytes())
    assert any("attempt 1/3" in r.getMessage() for r in caplog.records)
    assert any(f"internal[{dual.internal.bucket}]" in r.getMessage() for r in caplog.records)


def test_upload_checkpoint_fails_when_unverifiable(
    dual: DualStorageClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"abc" * 1000)
    orig_stat = dual.internal.stat
    monkeypatch.setattr(dual.internal, "stat", lambda key: ObjectInfo(key=key, size=orig_stat(key).size - 1))
    with pytest.raises(StorageError, match="did not verify"):
        dual.upload_checkpoint(ckpt, job_id=1, project_id=None, name="best.pt", attempts=2, backoff_s=0)

    def down(key: str, path: Any, **kw: Any) -> ObjectInfo:
        raise StorageUnavailableError("internal: down")

    monkeypatch.setattr(dual.internal, "put_file", down)
    with pytest.raises(StorageUnavailableError):
        dual.upload_checkpoint(ckpt, job_id=1, project_id=None, name="best.pt", attempts=2, backoff_s=0)


def test_logging_names_side_and_bucket(
    dual: DualStorageClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="trainer_runtime.storage"):
        dual.upload_annotations("3", b"{}")
        dual.download_dataset("3", tmp_path / "d")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"external[{dual.external.bucket}]" in text
    assert "internal[" not in text


def test_iter_chunks_closes_stream(store: ObjectStore) -> None:
    store.put_bytes("c", b"abc" * 10)
    it: Iterator[bytes] = store.iter_chunks("c", chunk_size=4)
    assert next(it) == b"abca"
    it.close()  # type: ignore[attr-defined]
