"""The shared part of every importer: `Builder` collects images and annotations from a source
folder (refusing files that resolve outside it), validates the result and writes the DICE folder
(`write_dice`); small path helpers the format readers share. Contract 2 in docs/architecture.md.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer_runtime.errors import UnsafePathError
from trainer_runtime.formats.images import is_image_name, read_image_size
from trainer_runtime.formats.limits import DEFAULT_LIMITS, FormatLimits
from trainer_runtime.formats.paths import safe_join, safe_relpath
from trainer_runtime.formats.schema import FORMAT_VERSION, DiceDataset
from trainer_runtime.formats.validate import check_dataset_labels, validate_dataset


def rel_to(path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes."""
    return path.relative_to(root).as_posix()


def is_inside(path: Path, root_resolved: Path) -> bool:
    """True when `path` is `root_resolved` or lies under it (both already resolved)."""
    return path == root_resolved or root_resolved in path.parents


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under `folder` (recursively, sorted, hidden entries skipped)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith(".") and is_image_name(fn):
                yield Path(dirpath) / fn


def _place(source: Path, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        try:
            if target.samefile(source):
                return
        except OSError:
            pass
        target.unlink()
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


@dataclass
class Builder:
    """Collects images and annotations, validates, then writes the DICE folder."""

    src: Path
    limits: FormatLimits = DEFAULT_LIMITS
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.src_resolved = self.src.resolve()

    def source_file(self, path: Path, *, file: str | None = None, field: str | None = None) -> Path:
        """`path` resolved, refusing anything (symlinks included) that leaves the source folder."""
        resolved = path.resolve()
        if not is_inside(resolved, self.src_resolved):
            raise UnsafePathError(f"{path.name!r} resolves outside the dataset folder", file=file, field=field)
        return resolved

    def add_image(
        self,
        path: Path,
        rel: str,
        *,
        image_id: int | None = None,
        declared: tuple[int, int] | None = None,
        file: str | None = None,
        field: str | None = None,
    ) -> int:
        rel = safe_relpath(rel, file=file, field=field)
        resolved = self.source_file(path, file=file, field=field)
        size = read_image_size(resolved, rel=rel_to(resolved, self.src_resolved))
        iid = image_id if image_id is not None else len(self.images) + 1
        width, height = declared if declared else size
        self.images.append({"id": iid, "file_name": rel, "width": width, "height": height})
        self.sources[rel] = resolved
        self.sizes[rel] = size
        return iid

    def add_annotation(self, **fields: Any) -> None:
        fields.setdefault("id", len(self.annotations) + 1)
        self.annotations.append(fields)

    def finish(self, dest: Path, name: str, link: bool, *, source_file: str) -> DiceDataset:
        ds = DiceDataset.model_validate(
            {
                "format_version": FORMAT_VERSION,
                "dataset": {"name": name, "description": ""},
                "categories": self.categories,
                "images": self.images,
                "annotations": self.annotations,
            }
        )
        check_dataset_labels(ds, self.limits, file=source_file)
        validate_dataset(ds, image_sizes=self.sizes, file=source_file).raise_first()
        write_dice(ds, dest, self.sources, link=link)
        return ds


def write_dice(ds: DiceDataset, dest: Path, sources: Mapping[str, Path], *, link: bool = True) -> None:
    """Write ``dest/images/<file_name>`` from `sources` (file_name -> file) and ``dest/annotations.json``."""
    images_dir = dest / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for img in ds.images:
        rel = safe_relpath(img.file_name)
        _place(sources[rel], safe_join(images_dir, rel), link)
    tmp = dest / "annotations.json.tmp"
    tmp.write_text(json.dumps(ds.to_json_dict(), ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.replace(dest / "annotations.json")
