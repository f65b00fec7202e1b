"""Object storage: one API over local folders and S3/MinIO, and the dual-store client.

Datasets are read-mostly and live in the *external* store; training results (checkpoints) are
write-mostly and live in the *internal* store. `DualStorageClient` routes each operation to its
side, so callers never pick a bucket themselves.

    ObjectStore (abc)        one bucket in one store; ``name`` is "external" or "internal"
    ├── LocalObjectStore     files at ``<root>/<bucket>/<key>``, atomic writes (temp + os.replace)
    └── S3ObjectStore        boto3, streaming multipart transfers, errors mapped to StorageError

Keys (docs/architecture.md, Storage): ``datasets/{id}/images/{rel}``, ``datasets/{id}/annotations.json``,
``datasets/{id}/snapshots/{sid}/annotations.json``, ``checkpoints/projects/{p}/jobs/{j}/{name}``
or ``checkpoints/test-jobs/job_{j}/{name}``.

Errors: a missing key raises `ObjectNotFoundError`; an endpoint that cannot be reached after the
client's retries raises `StorageUnavailableError` (naming store, endpoint and key); anything
else raises `StorageError`. Nothing is swallowed. An invalid key raises `ValueError`.

This module never imports torch or any layer above `trainer_runtime`.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import logging
import mimetypes
import os
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from trainer_runtime.errors import (
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    UnsafePathError,
)
from trainer_runtime.formats.paths import safe_join, safe_relpath

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger("trainer_runtime.storage")

_CHUNK = 1 << 20
_T = TypeVar("_T")

DEFAULT_DATASETS_BUCKET = "training-datasets"
DEFAULT_CHECKPOINTS_BUCKET = "training-checkpoints"


# --------------------------------------------------------------------------------------------
# keys


def _check_id(value: str | int, what: str) -> str:
    """A dataset/snapshot id used as one key part: non-empty, no separators, no control chars."""
    text = str(value)
    if (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or any(unicodedata.category(ch) == "Cc" for ch in text)
    ):
        raise ValueError(f"invalid {what} {value!r} for a storage key")
    return text


def _check_rel(rel_path: str, what: str) -> str:
    try:
        return safe_relpath(rel_path)
    except UnsafePathError as exc:
        raise ValueError(f"invalid {what} {rel_path!r}: {exc.message}") from exc


def dataset_prefix(dataset_id: str) -> str:
    """``datasets/{id}/`` (with the trailing slash, so dataset 1 never matches dataset 10)."""
    return f"datasets/{_check_id(dataset_id, 'dataset id')}/"


def dataset_images_prefix(dataset_id: str) -> str:
    return f"{dataset_prefix(dataset_id)}images/"


def dataset_image_key(dataset_id: str, rel_path: str) -> str:
    """``datasets/{id}/images/{rel}``; `rel_path` is normalised (backslashes, ``./``) and must be
    a safe relative path (else ValueError)."""
    return dataset_images_prefix(dataset_id) + _check_rel(rel_path, "image path")


def dataset_annotations_key(dataset_id: str) -> str:
    return f"{dataset_prefix(dataset_id)}annotations.json"


def snapshot_annotations_key(dataset_id: str, snapshot_id: str) -> str:
    sid = _check_id(snapshot_id, "snapshot id")
    return f"{dataset_prefix(dataset_id)}snapshots/{sid}/annotations.json"


def checkpoint_key(job_id: int, project_id: int | None, name: str) -> str:
    """``checkpoints/projects/{p}/jobs/{j}/{name}``, or ``checkpoints/test-jobs/job_{j}/{name}``
    when the job has no project."""
    job = _check_id(job_id, "job id")
    rel = _check_rel(name, "checkpoint name")
    if project_id is None:
        return f"checkpoints/test-jobs/job_{job}/{rel}"
    return f"checkpoints/projects/{_check_id(project_id, 'project id')}/jobs/{job}/{rel}"


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise ValueError.

    Rejected: non-strings, empty keys, absolute keys, backslashes, control characters, empty
    parts (``a//b``, trailing ``/``), ``.`` and ``..`` parts.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {key!r}: empty")
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise ValueError(f"invalid object key {key!r}: control character")
    if key.startswith("/") or (len(key) >= 2 and key[1] == ":"):
        raise ValueError(f"invalid object key {key!r}: absolute")
    if "\\" in key:
        raise ValueError(f"invalid object key {key!r}: backslash")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' part")
    return key


def validate_prefix(prefix: str) -> str:
    """Like `validate_key`, but allows the empty prefix, a trailing ``/`` and a partial last part."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


# --------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None


class _HashingReader:
    """Non-seekable read-only wrapper that hashes and counts what passes through it.

    Non-seekable on purpose: s3transfer then reads it strictly once, in order, which makes the
    running hash the hash of the stored object.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int | None = -1) -> bytes:
        data = self._raw.read(-1 if n is None else n)
        if data:
            self.sha.update(data)
            self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _sha256_file(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _guess_type(key: str) -> str | None:
    return mimetypes.guess_type(key)[0]


def _tmp_sibling(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


# Local stores hold users' datasets and checkpoints: only the server's own user may read them
# whatever the process umask says. Folders that already exist are left as they are.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_mkdirs(path: Path) -> None:
    """Create `path` and each missing parent with mode 0700 (an existing folder is not changed)."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
            folder.mkdir(mode=PRIVATE_DIR_MODE)
    if not Path(path).is_dir():
        raise NotADirectoryError(f"{path} is not a folder")


def open_private(path: Path) -> BinaryIO:
    """A new file at `path` (must not exist: temp names are unique), mode 0600, for writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "wb")


# --------------------------------------------------------------------------------------------
# ObjectStore


class ObjectStore(abc.ABC):
    """One bucket in one store. `name` is the side ("external" or "internal")."""

    name: str
    bucket: str
    kind: str = "abstract"

    # writes ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo: ...

    @abc.abstractmethod
    def put_stream(
        self, key: str, stream: BinaryIO, *, size: int | None = None, content_type: str | None = None
    ) -> ObjectInfo: ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        return self.put_stream(key, io.BytesIO(data), size=len(data), content_type=content_type)

    # reads ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        """Stream the object to a temp file beside `dest`, then rename it atomically."""

    @abc.abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A streaming reader (never loads the whole object). Raises ObjectNotFoundError now."""

    def iter_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        """Chunks of the object, for a StreamingResponse.

        The object is opened before this returns, so a missing key raises ObjectNotFoundError
        at call time (before any response has started), not at the first ``next()``.
        """
        reader = self.open(key)
        stream = reader.__enter__()

        def gen() -> Iterator[bytes]:
            try:
                while chunk := stream.read(chunk_size):
                    yield chunk
            finally:
                reader.__exit__(None, None, None)

        return gen()

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size (and sha256/etag when known); ObjectNotFoundError if missing."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    # deletes --------------------------------------------------------------------------------
    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; a missing key is not an error."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; returns how many."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""

    @abc.abstractmethod
    def copy(self, src_key: str, dst_key: str) -> ObjectInfo: ...

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return None

    # health ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailableError if the store cannot be reached/used."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": None, "bucket": self.bucket}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, bucket={self.bucket!r})"


# --------------------------------------------------------------------------------------------
# Local


class LocalObjectStore(ObjectStore):
    """Objects as files at ``<root>/<bucket>/<key>``.

    Writes go to a temp file under ``<root>/.tmp/`` (same filesystem, outside every bucket so
    that listings never see partial files) and are moved into place with `os.replace`.
    """

    kind = "local"

    def __init__(self, root: Path, bucket: str, name: str) -> None:
        if not bucket or "/" in bucket or "\\" in bucket or bucket.startswith("."):
            raise ValueError(f"invalid bucket name {bucket!r}")
        self.root = Path(root)
        self.bucket = bucket
        self.name = name
        self.base = self.root / bucket
        self._tmp_dir = self.root / ".tmp"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": None, "bucket": self.bucket, "path": str(self.base)}

    def _path(self, key: str) -> Path:
        return self.base / validate_key(key)

    def _err(self, op: str, key: str, exc: OSError) -> StorageError:
        return StorageError(f"{self.name} store (local {self.base}): {op} {key!r} failed: {exc}")

    def _new_tmp(self) -> Path:
        private_mkdirs(self._tmp_dir)
        return self._tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex}.part"

    def _write_from(self, key: str, src: IO[bytes]) -> ObjectInfo:
        target = self._path(key)
        tmp: Path | None = None
        try:
            tmp = self._new_tmp()
            sha = hashlib.sha256()
            size = 0
            with open_private(tmp) as out:
                while chunk := src.read(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            private_mkdirs(target.parent)
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:
            raise self._err("write", key, exc) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        logger.debug("%s[%s] put %s (%d B)", self.name, self.bucket, key, size)
        return ObjectInfo(key=key, size=size, sha256=sha.hexdigest(), etag=self._etag(target))

    @staticmethod
    def _etag(path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        with open(path, "rb") as fh:
            return self._write_from(key, fh)

    def put_stream(
        self, key: str, stream: BinaryIO, *, size: int | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        validate_key(key)
        info = self._write_from(key, stream)
        if size is not None and info.size != size:
            self.delete(key)
            raise StorageError(f"{self.name} store: stream for {key!r} had {info.size} bytes, expected {size}")
        return info

    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        dest = Path(dest)
        with self.open(key) as src:
            tmp = _tmp_sibling(dest)
            try:
                private_mkdirs(dest.parent)
                sha = hashlib.sha256()
                size = 0
                with open_private(tmp) as out:
                    while chunk := src.read(_CHUNK):
                        sha.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                os.replace(tmp, dest)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise self._err("download", key, exc) from exc
        logger.debug("%s[%s] get %s -> %s (%d B)", self.name, self.bucket, key, dest, size)
        return ObjectInfo(key=key, size=size, sha256=sha.hexdigest())

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - handed to the caller as a context manager
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(self.name, key) from exc
        except OSError as exc:
            raise self._err("open", key, exc) from exc
        return cast(AbstractContextManager[BinaryIO], fh)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(self.name, key) from exc
        except OSError as exc:
            raise self._err("stat", key, exc) from exc
        if not path.is_file():
            raise ObjectNotFoundError(self.name, key)
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def _prune_empty_dirs(self, path: Path) -> None:
        parent = path.parent
        while parent != self.base and self.base in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "directory" is not an object
        except OSError as exc:
            raise self._err("delete", key, exc) from exc
        logger.debug("%s[%s] delete %s", self.name, self.bucket, key)
        self._prune_empty_dirs(path)

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        for info in list(self.list(prefix)):
            self.delete(info.key)
            count += 1
        logger.debug("%s[%s] delete_prefix %r: %d objects", self.name, self.bucket, prefix, count)
        return count

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        dir_part = prefix.rpartition("/")[0]
        start = self.base / dir_part if dir_part else self.base
        if not start.is_dir():
            return iter(())
        found: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            rel_dir = Path(dirpath).relative_to(self.base).as_posix()
            for fn in filenames:
                key = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                if not key.startswith(prefix):
                    continue
                full = os.path.join(dirpath, fn)
                if os.path.islink(full):
                    continue
                try:
                    size = os.stat(full).st_size
                except FileNotFoundError:
                    continue  # deleted meanwhile
                found.append((key, size))
        found.sort()
        return (ObjectInfo(key=k, size=s) for k, s in found)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        validate_key(dst_key)
        if src_key == dst_key:
            return self.stat(src_key)
        with self.open(src_key) as src:
            info = self._write_from(dst_key, src)
        logger.debug("%s[%s] copy %s -> %s", self.name, self.bucket, src_key, dst_key)
        return info

    def check(self) -> None:
        try:
            private_mkdirs(self.base)
            tmp = self._new_tmp()
            tmp.write_bytes(b"")
            tmp.unlink()
        except OSError as exc:
            raise StorageUnavailableError(f"{self.name} store (local {self.base}) is not writable: {exc}") from exc


# --------------------------------------------------------------------------------------------
# S3


def _client_error_code(exc: Exception) -> tuple[str, int]:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        return str(err.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)
    return "", 0


_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


class _S3RawReader(io.RawIOBase):
    """Raw reader over a botocore StreamingBody that maps transport errors to StorageError."""

    def __init__(self, body: Any, on_error: Callable[[Exception], StorageError]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        try:
            data = self._body.read(len(view))
        except Exception as exc:
            raise self._on_error(exc) from exc
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


class S3ObjectStore(ObjectStore):
    """One bucket on an S3-compatible endpoint (AWS S3, MinIO, moto), through boto3.

    Transfers stream through `upload_fileobj`/`download_fileobj` (multipart above
    `multipart_threshold`). The bucket is created on first use when `create_bucket` is true.
    `put_file` and `put_bytes` store the sha256 as object metadata (``x-amz-meta-sha256``) so
    that `stat` can return it; `put_stream` returns the hash it computed while streaming.
    """

    kind = "s3"

    def __init__(
        self,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        bucket: str,
        name: str,
        region: str = "us-east-1",
        *,
        create_bucket: bool = True,
        max_attempts: int = 5,
        connect_timeout: float = 5,
        read_timeout: float = 60,
        multipart_threshold: int = 8 * 1024 * 1024,
        multipart_chunksize: int = 8 * 1024 * 1024,
        max_concurrency: int = 4,
        list_page_size: int = 1000,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if endpoint_url and "://" not in endpoint_url:
            endpoint_url = f"http://{endpoint_url}"
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.name = name
        self.region = region or "us-east-1"
        self.create_bucket = create_bucket
        config = Config(
            region_name=self.region,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            max_pool_connections=max(10, max_concurrency * 2),
        )
        session = boto3.session.Session()
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=self.region,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
        )
        self.list_page_size = list_page_size
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        return self._client

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint_url or "aws",
            "bucket": self.bucket,
            "region": self.region,
        }

    # error mapping --------------------------------------------------------------------------
    def _map_error(self, exc: Exception, op: str, key: str | None) -> StorageError:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from s3transfer.exceptions import RetriesExceededError

        where = f"{self.name} store (endpoint {self.endpoint_url or 'aws'}, bucket {self.bucket})"
        what = f"{op} {key!r}" if key is not None else op
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientError):
            code, status = _client_error_code(exc)
            if key is not None and (code in _NOT_FOUND_CODES or status == 404) and code != "NoSuchBucket":
                return ObjectNotFoundError(self.name, key)
            if code in _UNAVAILABLE_CODES or status >= 500:
                return StorageUnavailableError(f"{where} unavailable during {what}: {exc}")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket does not exist ({what})")
            return StorageError(f"{where}: {what} failed: {exc}")
        if isinstance(
            exc, BotoConnectionError | HTTPClientError | RetriesExceededError | ConnectionError | TimeoutError
        ):
            return StorageUnavailableError(f"{where} cannot be reached during {what}: {exc}")
        if isinstance(exc, OSError):  # local side of a transfer (temp file, destination folder)
            return StorageError(f"{where}: {what} failed on the local file system: {exc}")
        if isinstance(exc, NoCredentialsError):
            return StorageError(f"{where}: no credentials configured ({what})")
        if isinstance(exc, BotoCoreError):
            return StorageError(f"{where}: {what} failed: {exc}")
        return StorageError(f"{where}: {what} failed: {type(exc).__name__}: {exc}")

    def _call(self, op: str, key: str | None, fn: Callable[[], _T]) -> _T:
        self._ensure_bucket(f"{op} {key!r}" if key is not None else op)
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:
            raise self._map_error(exc, op, key) from exc

    def _ensure_bucket(self, context: str = "") -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            self._head_or_create_bucket(context)
            self._bucket_ready = True

    def _head_or_create_bucket(self, context: str = "") -> None:
        from botocore.exceptions import ClientError

        head_op = f"head_bucket (before {context})" if context else "head_bucket"
        create_op = f"create_bucket (before {context})" if context else "create_bucket"

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code, status = _client_error_code(exc)
            if not (status == 404 or code in ("404", "NoSuchBucket", "NotFound")):
                raise self._map_error(exc, head_op, None) from exc
            if not self.create_bucket:
                raise StorageError(
                    f"{self.name} store (endpoint {self.endpoint_url or 'aws'}): bucket "
                    f"{self.bucket!r} does not exist and create_bucket is off"
                ) from exc
        except Exception as exc:
            raise self._map_error(exc, head_op, None) from exc
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=self.bucket)
            else:
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                )
            logger.info("%s: created bucket %s at %s", self.name, self.bucket, self.endpoint_url)
        except ClientError as exc:
            code, _ = _client_error_code(exc)
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._map_error(exc, create_op, None) from exc
        except Exception as exc:
            raise self._map_error(exc, create_op, None) from exc

    def check(self) -> None:
        self._bucket_ready = False
        try:
            self._ensure_bucket()
        except StorageUnavailableError:
            raise
        except StorageError as exc:
            raise StorageUnavailableError(str(exc)) from exc

    # writes ---------------------------------------------------------------------------------
    def _extra(self, key: str, content_type: str | None, sha256: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        ctype = content_type or _guess_type(key)
        if ctype:
            extra["ContentType"] = ctype
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        return extra

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        path = Path(path)
        digest, size = _sha256_file(path)
        extra = self._extra(key, content_type, digest)

        def run() -> ObjectInfo:
            with open(path, "rb") as fh:
                reader = _HashingReader(fh)
                self._client.upload_fileobj(
                    reader,  # type: ignore[arg-type]
                    self.bucket,
                    key,
                    ExtraArgs=extra,
                    Config=self._transfer,
                )
            if reader.sha.hexdigest() != digest or reader.size != size:
                raise StorageError(f"{self.name} store: {path} changed while it was uploaded to {key!r}")
            return ObjectInfo(key=key, size=size, sha256=digest)

        info = self._call("put", key, run)
        logger.debug("%s[%s] put %s (%d B)", self.name, self.bucket, key, info.size)
        return info

    def put_stream(
        self, key: str, stream: BinaryIO, *, size: int | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        validate_key(key)
        extra = self._extra(key, content_type, None)
        reader = _HashingReader(stream)

        def run() -> None:
            self._client.upload_fileobj(
                reader,  # type: ignore[arg-type]
                self.bucket,
                key,
                ExtraArgs=extra,
                Config=self._transfer,
            )

        self._call("put", key, run)
        if size is not None and reader.size != size:
            self.delete(key)
            raise StorageError(f"{self.name} store: stream for {key!r} had {reader.size} bytes, expected {size}")
        logger.debug("%s[%s] put %s (%d B, stream)", self.name, self.bucket, key, reader.size)
        return ObjectInfo(key=key, size=reader.size, sha256=reader.sha.hexdigest())

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        if len(data) >= self._transfer.multipart_threshold:
            return self.put_stream(key, io.BytesIO(data), size=len(data), content_type=content_type)
        digest = hashlib.sha256(data).hexdigest()
        extra = self._extra(key, content_type, digest)
        resp = self._call(
            "put",
            key,
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra),
        )
        logger.debug("%s[%s] put %s (%d B)", self.name, self.bucket, key, len(data))
        return ObjectInfo(key=key, size=len(data), sha256=digest, etag=resp.get("ETag"))

    # reads ----------------------------------------------------------------------------------
    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        validate_key(key)
        dest = Path(dest)
        tmp = _tmp_sibling(dest)

        def run() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                self._client.download_fileobj(self.bucket, key, out, Config=self._transfer)
            os.replace(tmp, dest)

        try:
            self._call("get", key, run)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        size = dest.stat().st_size
        logger.debug("%s[%s] get %s -> %s (%d B)", self.name, self.bucket, key, dest, size)
        return ObjectInfo(key=key, size=size)

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        validate_key(key)
        resp = self._call("open", key, lambda: self._client.get_object(Bucket=self.bucket, Key=key))
        raw = _S3RawReader(resp["Body"], lambda exc: self._map_error(exc, "read", key))
        return cast(AbstractContextManager[BinaryIO], io.BufferedReader(raw, buffer_size=_CHUNK))

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        resp = self._call("stat", key, lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        meta = resp.get("Metadata") or {}
        return ObjectInfo(
            key=key,
            size=int(resp.get("ContentLength", 0)),
            sha256=meta.get("sha256"),
            etag=resp.get("ETag"),
        )

    # deletes / listing ----------------------------------------------------------------------
    def delete(self, key: str) -> None:
        validate_key(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key))
        logger.debug("%s[%s] delete %s", self.name, self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        count = 0
        batch: list[str] = []

        def flush() -> None:
            nonlocal count
            if not batch:
                return
            objects: Any = [{"Key": k} for k in batch]
            resp = self._call(
                "delete_prefix",
                prefix,
                lambda: self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}),
            )
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"{self.name} store (bucket {self.bucket}): could not delete {len(errors)} objects "
                    f"under {prefix!r}, e.g. {first.get('Key')!r}: {first.get('Message')}"
                )
            count += len(batch)
            batch.clear()

        for info in self.list(prefix):
            batch.append(info.key)
            if len(batch) >= 1000:
                flush()
        flush()
        logger.debug("%s[%s] delete_prefix %r: %d objects", self.name, self.bucket, prefix, count)
        return count

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size})
        )

        def gen() -> Iterator[ObjectInfo]:
            while True:
                page = self._call("list", prefix, lambda: next(pages, None))
                if page is None:
                    return
                for obj in page.get("Contents", []) or []:
                    yield ObjectInfo(key=obj["Key"], size=int(obj["Size"]), etag=obj.get("ETag"))

        return gen()

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        validate_key(src_key)
        validate_key(dst_key)
        src = self.stat(src_key)
        if src_key == dst_key:
            return src
        source: Any = {"Bucket": self.bucket, "Key": src_key}
        if src.size < 5 * 1024**3:
            resp = self._call(
                "copy",
                src_key,
                lambda: self._client.copy_object(
                    Bucket=self.bucket, Key=dst_key, CopySource=source, MetadataDirective="COPY"
                ),
            )
            etag = (resp.get("CopyObjectResult") or {}).get("ETag")
        else:
            extra: dict[str, Any] = {"Metadata": {"sha256": src.sha256}} if src.sha256 else {}
            self._call(
                "copy",
                src_key,
                lambda: self._client.copy(source, self.bucket, dst_key, ExtraArgs=extra, Config=self._transfer),
            )
            etag = None
        logger.debug("%s[%s] copy %s -> %s", self.name, self.bucket, src_key, dst_key)
        return ObjectInfo(key=dst_key, size=src.size, sha256=src.sha256, etag=etag)

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        validate_key(key)
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )


# --------------------------------------------------------------------------------------------
# configuration


class StoreConfig(BaseModel):
    """One store: S3/MinIO at `endpoint`, or a local folder when `endpoint` is None. It is both
    the server's setting (``web.config.Settings.storage``) and the job spec's ``storage.external``
    / ``storage.internal`` object (same JSON fields), so no converter sits between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    bucket: str
    region: str = "us-east-1"

    def __repr__(self) -> str:  # never print secrets
        return (
            f"StoreConfig(endpoint={self.endpoint!r}, access_key={'***' if self.access_key else None}, "
            f"secret_key={'***' if self.secret_key else None}, bucket={self.bucket!r}, "
            f"region={self.region!r})"
        )

    __str__ = __repr__


class StorageConfig(BaseModel):
    """Both stores' settings. A store whose endpoint is None is a local folder:
    ``<local_root>/{external,internal}/<bucket>/<key>``. The job spec's ``storage`` object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    external: StoreConfig = Field(default_factory=lambda: StoreConfig(bucket=DEFAULT_DATASETS_BUCKET))
    internal: StoreConfig = Field(default_factory=lambda: StoreConfig(bucket=DEFAULT_CHECKPOINTS_BUCKET))
    local_root: Path = Path("./data/storage")


def make_store(cfg: StoreConfig, name: str, local_root: Path, **s3_kwargs: Any) -> ObjectStore:
    """A LocalObjectStore under ``local_root/name`` when `cfg.endpoint` is None, else S3."""
    if cfg.endpoint is None:
        return LocalObjectStore(Path(local_root) / name, cfg.bucket, name)
    return S3ObjectStore(cfg.endpoint, cfg.access_key, cfg.secret_key, cfg.bucket, name, cfg.region, **s3_kwargs)


# --------------------------------------------------------------------------------------------
# dual client


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
                rel = _check_rel(name, "image path")
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
        digest, size = _sha256_file(local_path)
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


__all__ = [
    "DEFAULT_CHECKPOINTS_BUCKET",
    "DEFAULT_DATASETS_BUCKET",
    "DualStorageClient",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "StorageConfig",
    "StoreConfig",
    "checkpoint_key",
    "dataset_annotations_key",
    "dataset_image_key",
    "dataset_images_prefix",
    "dataset_prefix",
    "make_store",
    "snapshot_annotations_key",
    "validate_key",
    "validate_prefix",
]
