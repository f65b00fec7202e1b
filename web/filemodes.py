"""Private modes for the server's local state (`app.db` was world-readable, storage 0755).

At start (`web.main._startup`) the data folder and its `work/`, `storage/` and `trainer/` folders
are made mode 0700 and a SQLite database file 0600 (created so before SQLite opens it; SQLite gives
its `-wal`/`-shm`/journal files the database file's mode). Local object stores write 0600 files in
0700 folders themselves (`trainer_runtime.storage.private_mkdirs` / `open_private`).

A folder or file this process does not own is left alone with a warning (a mounted volume owned
by root, say): chmod would fail, and the operator owns that choice.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from trainer_runtime.storage import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, private_mkdirs

log = logging.getLogger(__name__)

PRIVATE_SUBDIRS = ("work", "storage", "trainer")


def make_private(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when this process owns it and its mode is wider."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if stat.S_IMODE(st.st_mode) & ~mode == 0:
        return
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        log.warning("%s is mode %o and owned by uid %d, not this server: left as it is", path, st.st_mode, st.st_uid)
        return
    path.chmod(mode)


def secure_data_dir(data_dir: Path) -> None:
    """Create (or narrow) the data folder and its state folders to 0700."""
    private_mkdirs(data_dir)
    make_private(data_dir, PRIVATE_DIR_MODE)
    for name in PRIVATE_SUBDIRS:
        folder = data_dir / name
        private_mkdirs(folder)
        make_private(folder, PRIVATE_DIR_MODE)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or in memory)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def secure_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does (0644 under the usual umask), or
    narrow an existing one and its -wal/-shm/-journal companions."""
    path = sqlite_path(url)
    if path is None:
        return
    private_mkdirs(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)  # an empty file is a new database
        os.close(fd)
    for candidate in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        make_private(candidate, PRIVATE_FILE_MODE)
