"""`S3ObjectStore`: one bucket on an S3-compatible endpoint (AWS S3, MinIO, moto) through boto3.

boto3 is imported when a store is built, never at import time (the server imports this package
for its configuration models). Errors map to the package's contract (docs/architecture.md, Storage).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from trainer_runtime.errors import ObjectNotFoundError, StorageError, StorageUnavailableError
from trainer_runtime.storage.base import ObjectInfo, ObjectStore
from trainer_runtime.storage.files import CHUNK, guess_type, sha256_file, tmp_sibling
from trainer_runtime.storage.keys import validate_key, validate_prefix

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3.client import S3Client

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


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
        ctype = content_type or guess_type(key)
        if ctype:
            extra["ContentType"] = ctype
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        return extra

    def put_file(self, key: str, path: str | Path, *, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        path = Path(path)
        digest, size = sha256_file(path)
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
        tmp = tmp_sibling(dest)

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
        return cast(AbstractContextManager[BinaryIO], io.BufferedReader(raw, buffer_size=CHUNK))

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
