"""Which format a dataset folder (or a COCO .json file) is in: `detect_format`, and the finders the
readers reuse (the YOLO data.yaml, the COCO json files, the ImageFolder class folders). Contract 2
in docs/architecture.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers.builder import iter_images
from trainer_runtime.formats.limits import DEFAULT_LIMITS, FormatLimits, read_yaml_file

_SPLIT_DIRS = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})
_SNIFF_BYTES = 1 << 20


def _sniff_json(path: Path) -> str | None:
    """'dice', 'coco' or None for a JSON file, reading the whole file only when the head is unclear."""
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
            whole = not f.read(1)
    except OSError:
        return None
    if b'"format_version"' in head:
        return "dice"
    if not whole:
        if b'"images"' in head or b'"annotations"' in head or b'"categories"' in head:
            return "coco"
        try:
            data: Any = json.loads(path.read_bytes())
        except (ValueError, OSError, RecursionError):  # the importer's load_json says why
            return None
    else:
        try:
            data = json.loads(head)
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, dict):
        return None
    if "format_version" in data:
        return "dice"
    if isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list) and "categories" in data:
        return "coco"
    return None


def _yaml_candidates(src: Path) -> list[Path]:
    first = [p for p in (src / "data.yaml", src / "data.yml") if p.is_file()]
    rest = sorted(p for p in src.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p not in first)
    return first + rest


def find_yolo_yaml(src: Path, limits: FormatLimits = DEFAULT_LIMITS) -> tuple[Path, dict[str, Any]] | None:
    """The first root YAML with `names` (data.yaml first). YAML is read without aliases, with
    bounded size and depth (`read_yaml_file`): a hostile data.yaml is an error naming it, while
    another unreadable .yaml next to it is skipped."""
    for p in _yaml_candidates(src):
        try:
            data = read_yaml_file(p, file=p.name, limits=limits)
        except DatasetFormatError:
            if p.name in ("data.yaml", "data.yml"):
                raise
            continue
        if isinstance(data, dict) and "names" in data:
            return p, data
    return None


def coco_jsons(src: Path) -> list[Path]:
    """The COCO annotation files in `src`, then in `src/annotations` (each folder's sorted by name)."""
    found: list[Path] = []
    for folder in (src, src / "annotations"):
        if folder.is_dir():
            found.extend(p for p in sorted(folder.glob("*.json")) if _sniff_json(p) == "coco")
    return found


def imagefolder_layout(src: Path) -> tuple[list[tuple[str | None, Path]], list[str]] | None:
    """[(split or None, class folder)], sorted class names; None when `src` is not an ImageFolder."""
    tops = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not tops:
        return None
    if all(d.name.lower() in _SPLIT_DIRS for d in tops):
        pairs: list[tuple[str | None, Path]] = []
        for split in tops:
            for d in sorted(split.iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    pairs.append((split.name, d))
    else:
        pairs = [(None, d) for d in tops]
    pairs = [(s, d) for s, d in pairs if next(iter_images(d), None) is not None]
    if not pairs or [d.name for _, d in pairs] == ["images"]:  # an unlabeled DICE folder
        return None
    return pairs, sorted({d.name for _, d in pairs})


def detect_format(src: Path, limits: FormatLimits = DEFAULT_LIMITS) -> str:
    """'dice', 'yolo', 'coco' or 'imagefolder' for a dataset folder (or a COCO .json file)."""
    src = Path(src)
    if src.is_file():
        if src.suffix.lower() == ".json" and _sniff_json(src) in ("coco", "dice"):
            return _sniff_json(src) or "coco"
        raise DatasetFormatError("not a dataset folder or COCO json file", file=src.name)
    if not src.is_dir():
        raise DatasetFormatError(f"dataset folder {src} does not exist")
    ann = src / "annotations.json"
    if ann.is_file() and _sniff_json(ann) == "dice":
        return "dice"
    if find_yolo_yaml(src, limits) is not None:
        return "yolo"
    if coco_jsons(src):
        return "coco"
    if (src / "images").is_dir() and (src / "labels").is_dir():
        return "yolo"
    if imagefolder_layout(src) is not None:
        return "imagefolder"
    raise DatasetFormatError(
        "cannot tell the dataset format: expected annotations.json (DICE), a data.yaml with names (YOLO),"
        " a COCO json (images/annotations/categories) or class sub-folders of images (ImageFolder)",
        file=src.name,
    )
