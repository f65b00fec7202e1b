"""`LocalObjectStore`: objects as private files under a folder, written atomically.

The default backend (``<data dir>/storage/{external,internal}/<bucket>/<key>``, see
docs/architecture.md, Storage).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from trainer_runtime.errors import ObjectNotFoundError, StorageError, StorageUnavailableError
from trainer_runtime.storage.base import ObjectInfo, ObjectStore
from trainer_runtime.storage.files import copy_to_private, private_mkdirs, tmp_sibling
from trainer_runtime.storage.keys import validate_key, validate_prefix

logger = logging.getLogger(__name__)


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
            sha, size = copy_to_private(src, tmp)
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
        return ObjectInfo(key=key, size=size, sha256=sha, etag=self._etag(target))

    @staticmethod
    def _etag(path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,  # noqa: ARG002  ObjectStore's; a local file keeps no content type
    ) -> ObjectInfo:
        validate_key(key)
        with open(path, "rb") as fh:
            return self._write_from(key, fh)

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        size: int | None = None,
        content_type: str | None = None,  # noqa: ARG002  ObjectStore's; a local file keeps no content type
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
            tmp = tmp_sibling(dest)
            try:
                private_mkdirs(dest.parent)
                sha, size = copy_to_private(src, tmp)
                os.replace(tmp, dest)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise self._err("download", key, exc) from exc
        logger.debug("%s[%s] get %s -> %s (%d B)", self.name, self.bucket, key, dest, size)
        return ObjectInfo(key=key, size=size, sha256=sha)

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
