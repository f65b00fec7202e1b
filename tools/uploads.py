"""Upload staging: files and zip archives are streamed to a private folder under ``work_dir``,
checked (names, sizes, zip bombs, symlinks, encryption), and laid out as a DICE folder before
anything is committed.

Nothing here touches the database or the object store: `tools.datasets` validates what a
`Staging` holds and commits it atomically. Every user-given name passes
`trainer_runtime.formats.paths.safe_relpath` before it touches the filesystem.

    with Staging(ctx.work_dir, ctx.limits) as st:        # removed on exit, whatever happens
        w = st.open_file("mydata/images/a/1.jpg")        # browser folder upload part
        w.write(chunk); ...; w.close()
        a = st.open_archive("data.zip"); ...             # or one zip archive
        tree = st.collect()                              # extracts archives, strips the top folder
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.context import UploadLimits
from tools.errors import InvalidInputError, PayloadTooLargeError
from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.images import is_image_name
from trainer_runtime.formats.paths import safe_relpath

log = logging.getLogger(__name__)

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
UPLOAD_FORMATS = ("auto", "dice", "yolo", "coco", "imagefolder", "images")
"""`format` values of an upload: `auto` detects; `images` = a folder of plain images (unlabeled)."""

JUNK_FILE_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", ".directory"})
"""Well-known operating-system junk files: ignored (and reported), never rejected."""

# Root-level extras of a DICE folder (README, LICENSE, meta.json, ...) next to images/: ignored.
_DICE_EXTRA_SUFFIXES = (".md", ".txt", ".yaml", ".yml", ".json", ".rst", ".pdf", ".csv")

_CHUNK = 1 << 20
RATIO_MIN_BYTES = 1 << 20
"""Entries smaller than this are exempt from the compression-ratio check (tiny JSON compresses well)."""
ARCHIVE_RATIO_MIN_BYTES = 16 << 20
"""Archives expanding to less than this are exempt from the whole-archive ratio check."""


def invalid_from(exc: DatasetFormatError) -> InvalidInputError:
    """Wrap a `DatasetFormatError` (file/line/field) as a 422 domain error keeping its location."""
    err = InvalidInputError(str(exc), detail=exc.to_dict())
    err.__cause__ = exc
    return err


def _safe(name: str, *, what: str) -> str:
    try:
        return safe_relpath(name, file=name if name and len(name) < 300 else None)
    except DatasetFormatError as exc:
        raise InvalidInputError(f"{what}: {exc.message}", detail={"file": repr(name)[1:-1]}) from exc


def is_junk(rel: str) -> bool:
    """True for OS junk and hidden entries: .DS_Store, Thumbs.db, desktop.ini, AppleDouble ``._x``
    files, ``__MACOSX/``, and any file or folder whose name starts with a dot (.git/, .gitkeep)."""
    parts = rel.split("/")
    base = parts[-1]
    return base.lower() in JUNK_FILE_NAMES or "__MACOSX" in parts[:-1] or any(p.startswith(".") for p in parts)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class StagedWriter:
    """One file being written into the staging folder; enforces limits while bytes arrive."""

    def __init__(self, staging: Staging, path: Path, name: str, max_bytes: int) -> None:
        self._staging = staging
        self.path = path
        self.name = name
        self._max = max_bytes
        self.size = 0
        self._fh: IO[bytes] | None = path.open("xb")

    def write(self, chunk: bytes) -> None:
        if self._fh is None:
            raise RuntimeError(f"{self.name}: writer already closed")
        n = len(chunk)
        self.size += n
        if self.size > self._max:
            self.abort()
            raise PayloadTooLargeError(
                f"{self.name} is larger than the limit of {_human(self._max)}",
                detail={"file": self.name, "limit_bytes": self._max},
            )
        self._staging._count(n, self.name)
        self._fh.write(chunk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def abort(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


@dataclass
class UploadTree:
    """The uploaded files after archives are extracted, junk dropped and the top folder stripped.

    `files` maps a POSIX path relative to `root` to the file on disk.
    """

    root: Path
    files: dict[str, Path]
    ignored: list[str] = field(default_factory=list)
    stripped_prefix: str | None = None


@dataclass
class DiceLayout:
    """A DICE folder's content: image files by relative name (under images/), annotations.json."""

    images: dict[str, Path]
    annotations: Path | None
    ignored: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    """image name -> the path it had in the upload (for messages)"""


class Staging:
    """A private scratch folder for one upload, removed when the ``with`` block ends."""

    def __init__(self, work_dir: Path, limits: UploadLimits) -> None:
        self.limits = limits
        self.root = Path(work_dir) / "staging" / uuid.uuid4().hex
        self.raw = self.root / "raw"
        self.raw.mkdir(parents=True)
        self.total_bytes = 0
        self._names: set[str] = set()
        self.archives: list[tuple[str, Path]] = []

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def file_count(self) -> int:
        return len(self._names)

    def _count(self, n: int, name: str) -> None:
        self.total_bytes += n
        if self.total_bytes > self.limits.max_upload_bytes:
            raise PayloadTooLargeError(
                f"the upload is larger than the limit of {_human(self.limits.max_upload_bytes)} "
                f"(reached while receiving {name})",
                detail={"file": name, "limit_bytes": self.limits.max_upload_bytes},
            )

    def open_file(self, filename: str) -> StagedWriter:
        """Start writing one uploaded file whose (browser-relative) path is `filename`."""
        rel = _safe(filename, what="invalid file name in the upload")
        if rel in self._names:
            raise InvalidInputError(f"{rel} appears twice in the upload", detail={"file": rel})
        if len(self._names) >= self.limits.max_zip_entries:
            raise PayloadTooLargeError(
                f"the upload has more than {self.limits.max_zip_entries} files",
                detail={"limit_files": self.limits.max_zip_entries},
            )
        target = self.raw / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            writer = StagedWriter(self, target, rel, self.limits.max_file_bytes)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise InvalidInputError(
                f"{rel} clashes with another uploaded path (a file and a folder of the same name)",
                detail={"file": rel},
            ) from None
        self._names.add(rel)
        return writer

    def open_archive(self, filename: str | None) -> StagedWriter:
        """Start writing a .zip archive (extracted by `collect`)."""
        name = os.path.basename((filename or "upload.zip").replace("\\", "/")) or "upload.zip"
        if not name.lower().endswith(".zip"):
            raise InvalidInputError(f"{name}: only .zip archives are supported", detail={"file": name})
        path = self.root / f"archive-{len(self.archives)}.zip"
        writer = StagedWriter(self, path, name, self.limits.max_upload_bytes)
        self.archives.append((name, path))
        return writer

    def add_file(self, filename: str, data: bytes | IO[bytes]) -> None:
        """Convenience: stage one file from bytes or a readable stream."""
        w = self.open_file(filename)
        self._copy(w, data)

    def add_archive(self, filename: str, data: bytes | IO[bytes] | Path) -> None:
        """Convenience: stage a zip from bytes, a stream, or a path on this machine."""
        w = self.open_archive(filename)
        if isinstance(data, Path):
            with data.open("rb") as fh:
                self._copy(w, fh)
        else:
            self._copy(w, data)

    @staticmethod
    def _copy(w: StagedWriter, data: bytes | IO[bytes]) -> None:
        try:
            if isinstance(data, bytes | bytearray):
                w.write(bytes(data))
            else:
                while chunk := data.read(_CHUNK):
                    w.write(chunk)
        finally:
            w.close()

    # ------------------------------------------------------------------ archives and the tree
    def extract_archives(self) -> None:
        for name, path in self.archives:
            extract_zip(path, self.raw, self.limits, archive_name=name, taken=self._names)
        self.archives = []

    def collect(self) -> UploadTree:
        """Extract archives, then list the files, drop junk and strip a common top folder."""
        self.extract_archives()
        return collect_tree(self.raw, strip_top=True)


def check_zip(
    zf: zipfile.ZipFile, limits: UploadLimits, archive_name: str, archive_bytes: int | None = None
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every entry's header before extracting anything; return (entry, safe name) of files.

    Rejected (422): unsafe names (``..``, absolute, control characters), symlinks, encrypted
    entries, duplicate names. Over a limit (413): entry count, total uncompressed size, one
    entry's size, one entry's compression ratio, and the whole archive's ratio (the declared
    sizes of all entries over `archive_bytes`, the archive's size on disk): many small entries
    that each pass the per-entry check still make a bomb together.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_zip_entries:
        raise PayloadTooLargeError(
            f"{archive_name} has {len(infos)} entries, over the limit of {limits.max_zip_entries}",
            detail={"file": archive_name, "entries": len(infos), "limit_entries": limits.max_zip_entries},
        )
    out: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        where = f"{archive_name}: entry {info.filename!r}"
        mode = (info.external_attr >> 16) & 0o170000
        if mode == stat.S_IFLNK:
            raise InvalidInputError(
                f"{where} is a symbolic link; links are not allowed in uploads",
                detail={"file": info.filename, "archive": archive_name},
            )
        if info.flag_bits & 0x1:
            raise InvalidInputError(
                f"{where} is encrypted; upload an archive without a password",
                detail={"file": info.filename, "archive": archive_name},
            )
        try:
            rel = safe_relpath(info.filename)
        except DatasetFormatError as exc:
            raise InvalidInputError(
                f"{archive_name}: unsafe entry name: {exc.message}",
                detail={"file": repr(info.filename)[1:-1], "archive": archive_name},
            ) from exc
        if info.is_dir() or (mode and mode == stat.S_IFDIR):
            continue
        if mode and mode != stat.S_IFREG:
            raise InvalidInputError(
                f"{where} is not a regular file", detail={"file": info.filename, "archive": archive_name}
            )
        if rel in seen:
            raise InvalidInputError(
                f"{archive_name}: {rel} appears twice in the archive",
                detail={"file": rel, "archive": archive_name},
            )
        seen.add(rel)
        if info.file_size > limits.max_file_bytes:
            raise PayloadTooLargeError(
                f"{where} is {_human(info.file_size)}, over the per-file limit of {_human(limits.max_file_bytes)}",
                detail={"file": rel, "archive": archive_name, "limit_bytes": limits.max_file_bytes},
            )
        if info.file_size > RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_zip_ratio:
                raise PayloadTooLargeError(
                    f"{where} expands {ratio:.0f}x (over the limit of {limits.max_zip_ratio:.0f}x): "
                    "this looks like a zip bomb",
                    detail={"file": rel, "archive": archive_name, "ratio": round(ratio, 1)},
                )
        total += info.file_size
        if total > limits.max_zip_uncompressed_bytes:
            raise PayloadTooLargeError(
                f"{archive_name} expands to more than {_human(limits.max_zip_uncompressed_bytes)}",
                detail={"file": archive_name, "limit_bytes": limits.max_zip_uncompressed_bytes},
            )
        if archive_bytes is not None and total > ARCHIVE_RATIO_MIN_BYTES:
            ratio = total / max(archive_bytes, 1)
            if ratio > limits.max_zip_ratio:
                raise PayloadTooLargeError(
                    f"{archive_name} ({_human(archive_bytes)}) expands to more than {_human(total)}, "
                    f"{ratio:.0f}x (over the limit of {limits.max_zip_ratio:.0f}x): this looks like a zip bomb",
                    detail={"file": archive_name, "ratio": round(ratio, 1), "entries": len(infos)},
                )
        out.append((info, rel))
    return out


def extract_zip(
    zip_path: Path,
    dest: Path,
    limits: UploadLimits,
    *,
    archive_name: str | None = None,
    taken: set[str] | None = None,
) -> list[str]:
    """Safely extract `zip_path` into `dest`: headers are checked first (`check_zip`), then the
    actual bytes are counted while extracting (headers can lie). Returns the extracted names."""
    name = archive_name or zip_path.name
    taken = taken if taken is not None else set()
    try:
        zf = zipfile.ZipFile(zip_path)
        archive_bytes = zip_path.stat().st_size
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInputError(f"{name} is not a valid zip archive: {exc}", detail={"file": name}) from None
    written: list[str] = []
    actual_total = 0
    with zf:
        entries = check_zip(zf, limits, name, archive_bytes)
        for info, rel in entries:
            if rel in taken:
                raise InvalidInputError(f"{rel} appears twice in the upload", detail={"file": rel, "archive": name})
            target = dest / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = target.open("xb")
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise InvalidInputError(
                    f"{name}: {rel} clashes with another path (a file and a folder of the same name)",
                    detail={"file": rel, "archive": name},
                ) from None
            taken.add(rel)
            written.append(rel)
            size = 0
            try:
                with out, zf.open(info) as src:
                    while chunk := src.read(_CHUNK):
                        size += len(chunk)
                        actual_total += len(chunk)
                        if size > info.file_size or size > limits.max_file_bytes:
                            raise PayloadTooLargeError(
                                f"{name}: entry {rel} holds more bytes than its header declares "
                                f"({info.file_size}): refusing a lying archive",
                                detail={"file": rel, "archive": name},
                            )
                        if actual_total > limits.max_zip_uncompressed_bytes:
                            raise PayloadTooLargeError(
                                f"{name} expands to more than {_human(limits.max_zip_uncompressed_bytes)}",
                                detail={"file": name, "limit_bytes": limits.max_zip_uncompressed_bytes},
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InvalidInputError(
                    f"{name}: entry {rel} cannot be extracted (corrupt or unsupported archive): {exc}",
                    detail={"file": rel, "archive": name},
                ) from None
    return written


def collect_tree(root: Path, *, strip_top: bool = True) -> UploadTree:
    """List the regular files under `root` (symlinks are refused), drop OS junk, and — when every
    file sits in one common top folder other than ``images/`` — strip that folder (a browser folder
    upload sends ``mydata/images/a/1.jpg``)."""
    files: dict[str, Path] = {}
    ignored: list[str] = []
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for dn in list(dirnames):
            if (d / dn).is_symlink():
                rel = (d / dn).relative_to(root).as_posix()
                raise InvalidInputError(f"{rel} is a symbolic link; links are not allowed", detail={"file": rel})
        for fn in filenames:
            p = d / fn
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                # Importers may link to files inside the same staging folder; nothing else.
                target = p.resolve()
                if not str(target).startswith(str(root.resolve().parent) + os.sep) or not target.is_file():
                    raise InvalidInputError(f"{rel} is a symbolic link; links are not allowed", detail={"file": rel})
            elif not stat.S_ISREG(st.st_mode):
                raise InvalidInputError(f"{rel} is not a regular file", detail={"file": rel})
            if is_junk(rel):
                ignored.append(rel)
                continue
            files[rel] = p
    stripped: str | None = None
    if strip_top and files:
        tops = {rel.split("/", 1)[0] for rel in files}
        if len(tops) == 1 and all("/" in rel for rel in files):
            top = next(iter(tops))
            if top != IMAGES_DIR:
                stripped = top
                root = root / top
                files = {rel.split("/", 1)[1]: p for rel, p in files.items()}
                ignored = [r.split("/", 1)[1] if r.startswith(top + "/") else r for r in ignored]
    return UploadTree(root=root, files=dict(sorted(files.items())), ignored=sorted(ignored), stripped_prefix=stripped)


def _peek_json(path: Path, limit: int = 65536) -> str:
    with path.open("rb") as fh:
        return fh.read(limit).decode("utf-8", errors="replace")


def _is_coco_json(path: Path, rel: str) -> bool:
    try:
        if path.stat().st_size > 2 * 1024**3:
            return False
        with path.open("rb") as fh:
            data: Any = json.load(fh)
    except (OSError, ValueError):
        return False
    except RecursionError:
        raise InvalidInputError(f"{rel}: invalid JSON: nested too deeply", detail={"file": rel}) from None
    return isinstance(data, dict) and "images" in data and "annotations" in data and "format_version" not in data


def detect_format(tree: UploadTree) -> str:
    """Guess the upload's format: ``dice`` (annotations.json with format_version), ``coco``
    (a COCO json), ``yolo`` (data.yaml or labels/*.txt), else ``images`` (plain images, unlabeled).

    ImageFolder (class-named sub-folders) is never guessed: plain folders of images are unlabeled
    unless the caller says ``format=imagefolder``.
    """
    files = tree.files
    if ANNOTATIONS_FILE in files:
        head = _peek_json(files[ANNOTATIONS_FILE])
        if '"format_version"' in head:
            return "dice"
        return "coco" if _is_coco_json(files[ANNOTATIONS_FILE], ANNOTATIONS_FILE) else "dice"
    for rel in files:
        low = rel.lower()
        if "/" not in rel and low.endswith((".yaml", ".yml")):
            return "yolo"
        parts = low.split("/")
        if low.endswith(".txt") and "labels" in parts[:-1]:
            return "yolo"
    for rel, path in files.items():
        low = rel.lower()
        if low.endswith(".json") and ("/" not in rel or low.startswith("annotations/")) and _is_coco_json(path, rel):
            return "coco"
    return "images"


def dice_layout(tree: UploadTree, *, allow_annotations: bool = True) -> DiceLayout:
    """Map a DICE-shaped tree (or a folder of plain images) to image names and annotations.json.

    With an ``images/`` folder, images are the files under it (their names relative to images/);
    without one, every file is an image named by its path. A non-image file among the images is
    rejected with its name; README/LICENSE/meta files next to images/ are ignored and reported.
    """
    files = tree.files
    ann = files.get(ANNOTATIONS_FILE)
    if ann is not None and not allow_annotations:
        raise InvalidInputError(
            "format=images is for unlabeled uploads, but the upload contains annotations.json",
            detail={"file": ANNOTATIONS_FILE},
        )
    ignored = list(tree.ignored)
    images: dict[str, Path] = {}
    sources: dict[str, str] = {}
    has_images_dir = any(rel.startswith(IMAGES_DIR + "/") for rel in files)
    for rel, path in files.items():
        if rel == ANNOTATIONS_FILE:
            continue
        if has_images_dir:
            if rel.startswith(IMAGES_DIR + "/"):
                name = rel[len(IMAGES_DIR) + 1 :]
            elif "/" not in rel and not is_image_name(rel) and _is_extra(rel):
                ignored.append(rel)
                continue
            else:
                raise InvalidInputError(
                    f"{rel} is outside images/: put every image under images/ (next to annotations.json)",
                    detail={"file": rel},
                )
        else:
            name = rel
        if not is_image_name(name):
            raise InvalidInputError(
                f"{rel} is not an image (allowed extensions: .jpg .jpeg .png .bmp .webp .tif .tiff .gif)",
                detail={"file": rel},
            )
        images[name] = path
        sources[name] = rel
    return DiceLayout(images=images, annotations=ann, ignored=sorted(ignored), sources=sources)


def _is_extra(rel: str) -> bool:
    low = rel.lower()
    return low.endswith(_DICE_EXTRA_SUFFIXES) or low in ("readme", "license", "licence", "notice")
