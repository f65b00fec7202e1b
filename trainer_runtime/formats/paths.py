"""Safe relative paths: every file name that comes from a user (upload, zip entry, annotations.json
`file_name`, label file) goes through `safe_relpath` before it touches a filesystem or a key."""

from __future__ import annotations

import posixpath
import unicodedata
from pathlib import Path

from trainer_runtime.errors import UnsafePathError

MAX_PATH_CHARS = 1024
MAX_PART_CHARS = 255


def safe_relpath(name: str, *, file: str | None = None, field: str | None = None) -> str:
    """Return `name` as a normalised POSIX relative path, or raise `UnsafePathError`.

    Rejected: empty names, absolute paths (``/x``, ``C:\\x``, ``\\\\server``), any ``..`` part,
    control characters (C0, DEL, C1), NUL, over-long names. Backslashes are treated as
    separators (Windows zips). ``./`` parts and duplicate slashes are dropped.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError("empty file name", file=file, field=field)
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            raise UnsafePathError(f"file name {name!r} contains a control character {ch!r}", file=file, field=field)
    if len(name) > MAX_PATH_CHARS:
        raise UnsafePathError(f"file name longer than {MAX_PATH_CHARS} characters", file=file, field=field)
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) >= 2 and unified[1] == ":"):
        raise UnsafePathError(f"file name {name!r} is an absolute path", file=file, field=field)
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"file name {name!r} contains '..'", file=file, field=field)
    if not parts:
        raise UnsafePathError(f"file name {name!r} names no file", file=file, field=field)
    if any(len(p) > MAX_PART_CHARS for p in parts):
        raise UnsafePathError(f"a part of {name!r} is longer than {MAX_PART_CHARS} characters", file=file, field=field)
    return posixpath.join(*parts)


def safe_join(root: Path, name: str, *, file: str | None = None, field: str | None = None) -> Path:
    """Join a user-given relative name under `root`, guaranteeing the result stays inside it."""
    rel = safe_relpath(name, file=file, field=field)
    root_resolved = root.resolve()
    target = (root_resolved / rel).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePathError(f"file name {name!r} resolves outside its folder", file=file, field=field)
    return target
