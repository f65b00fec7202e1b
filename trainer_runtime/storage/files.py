"""Local-file helpers the stores share: private folders and files (0700/0600), hashing, temp names.

Local stores hold users' datasets and checkpoints, so only the server's own user may read them
whatever the process umask says (docs/architecture.md, Storage).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import uuid
from pathlib import Path
from typing import IO, BinaryIO

CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and size in bytes, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def guess_type(key: str) -> str | None:
    """The MIME type the key's file extension suggests, or None when it suggests none."""
    return mimetypes.guess_type(key)[0]


def tmp_sibling(dest: Path) -> Path:
    """A hidden, unique temp path in `dest`'s folder, to write to and then rename onto `dest`."""
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


def copy_to_private(src: IO[bytes], path: Path) -> tuple[str, int]:
    """Copy `src` into a new private (0600) file at `path`; (sha256 hex, size) of what was written."""
    sha = hashlib.sha256()
    size = 0
    with open_private(path) as out:
        while chunk := src.read(CHUNK):
            sha.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return sha.hexdigest(), size
