"""Read YOLO, COCO, ImageFolder (and DICE) folders into a DICE folder (contract 2 in docs/architecture.md).

``import_dataset(src, dest, fmt)`` writes ``dest/images/<relative path>`` (hard links when possible)
and ``dest/annotations.json`` and returns the `DiceDataset`. Every name that comes from the source
(yaml entries, txt lists, COCO ``file_name``) goes through `safe_relpath`/`safe_join`, and every
source file must resolve inside `src`, so nothing is read from or written outside the two folders.
Image sizes come from the image headers. The result is checked with `validate_dataset` before
anything is written; errors name the source file, line and field.

One module per source format (`yolo`, `coco`, `imagefolder`, `dice`), each filling a
`builder.Builder`; `detect` tells the format of a folder; this module picks the reader.
"""

from __future__ import annotations

from pathlib import Path

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers.builder import Builder, is_inside, write_dice
from trainer_runtime.formats.importers.coco import import_coco
from trainer_runtime.formats.importers.detect import coco_jsons, detect_format
from trainer_runtime.formats.importers.dice import import_dice
from trainer_runtime.formats.importers.imagefolder import import_imagefolder
from trainer_runtime.formats.importers.yolo import import_yolo
from trainer_runtime.formats.limits import DEFAULT_LIMITS, FormatLimits
from trainer_runtime.formats.schema import DiceDataset

__all__ = ["FORMATS", "detect_format", "import_dataset", "write_dice"]

FORMATS = ("auto", "dice", "yolo", "coco", "imagefolder")


def import_dataset(
    src: Path,
    dest: Path,
    fmt: str = "auto",
    *,
    name: str | None = None,
    link: bool = True,
    limits: FormatLimits = DEFAULT_LIMITS,
) -> DiceDataset:
    """Import a YOLO / COCO / ImageFolder / DICE dataset at `src` into a DICE folder at `dest`.

    `fmt`: one of `FORMATS`; ``"auto"`` uses `detect_format`. `src` may also be a COCO .json file
    (its folder is the root). Writes ``dest/images/...`` (hard links when `link` and possible,
    else copies) and ``dest/annotations.json``; returns the dataset. Raises `DatasetFormatError`
    (file, line, field) for anything malformed, before writing anything. `limits` bounds what the
    files may contain (class names, category count, YAML/JSON size and nesting; `FormatLimits`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    src, dest = Path(src), Path(dest)
    coco_files: list[Path] | None = None
    if src.is_file():
        if src.suffix.lower() != ".json":
            raise DatasetFormatError("expected a dataset folder or a COCO .json file", file=src.name)
        coco_files = [src]
        root = src.parent.parent if src.parent.name == "annotations" else src.parent
        if fmt == "auto":
            fmt = "coco"
    else:
        root = src
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder {src} does not exist")
    root_res, dest_res = root.resolve(), dest.resolve()
    if is_inside(dest_res, root_res) or is_inside(root_res, dest_res):
        raise ValueError(f"destination {dest} must not be inside the source {root} (or contain it)")
    if fmt == "auto":
        fmt = detect_format(root, limits)

    b = Builder(root, limits)
    source_file = "annotations.json"
    if fmt == "dice":
        found_name = import_dice(root, b)
    elif fmt == "yolo":
        found_name = import_yolo(root, b)
        source_file = "data.yaml"
    elif fmt == "coco":
        if coco_files is None:
            coco_files = coco_jsons(root)
        if not coco_files:
            raise DatasetFormatError("no COCO json (images, annotations, categories) found", file=root.name)
        found_name = import_coco(root, b, coco_files, root)
        source_file = coco_files[0].name
    else:
        found_name = import_imagefolder(root, b)
    ds_name = name or found_name or (src.stem if src.is_file() else src.name)
    dest.mkdir(parents=True, exist_ok=True)
    return b.finish(dest, ds_name, link, source_file=source_file)
