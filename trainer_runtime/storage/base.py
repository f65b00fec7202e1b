"""`ObjectStore`: one bucket in one store, the API both backends implement, and `ObjectInfo`.

See docs/architecture.md (Storage) and the package docstring for the error contract.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from trainer_runtime.errors import ObjectNotFoundError
from trainer_runtime.storage.files import CHUNK


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object: its key and size, and its sha256 and ETag when known."""

    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None


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

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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

    def presigned_url(
        self,
        key: str,  # noqa: ARG002  none here; a store that signs URLs overrides this
        expires_s: int = 3600,  # noqa: ARG002  (callers pass it by keyword)
    ) -> str | None:
        return None

    # health ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailableError if the store cannot be reached/used."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": None, "bucket": self.bucket}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, bucket={self.bucket!r})"
