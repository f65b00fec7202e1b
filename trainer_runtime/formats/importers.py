"""Read YOLO, COCO, ImageFolder (and DICE) folders into a DICE folder (contract 2 in docs/architecture.md).

``import_dataset(src, dest, fmt)`` writes ``dest/images/<relative path>`` (hard links when possible)
and ``dest/annotations.json`` and returns the `DiceDataset`. Every name that comes from the source
(yaml entries, txt lists, COCO ``file_name``) goes through `safe_relpath`/`safe_join`, and every
source file must resolve inside `src`, so nothing is read from or written outside the two folders.
Image sizes come from the image headers. The result is checked with `validate_dataset` before
anything is written; errors name the source file, line and field.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError, UnsafePathError
from trainer_runtime.formats.capabilities import min_area_rect, polygon_area
from trainer_runtime.formats.images import is_image_name, read_image_size
from trainer_runtime.formats.limits import (
    DEFAULT_LIMITS,
    FormatLimits,
    check_category_count,
    check_label,
    load_json,
    read_yaml_file,
)
from trainer_runtime.formats.paths import safe_join, safe_relpath
from trainer_runtime.formats.schema import FORMAT_VERSION, DiceDataset
from trainer_runtime.formats.validate import check_dataset_labels, load_annotations, validate_dataset

log = logging.getLogger(__name__)

FORMATS = ("auto", "dice", "yolo", "coco", "imagefolder")
COORD_TOLERANCE = 0.01
"""Normalised YOLO coordinates may lie this far outside [0, 1]; they are clipped."""

_SPLIT_DIRS = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})
_SNIFF_BYTES = 1 << 20


# ------------------------------------------------------------------------------------ helpers


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _inside(path: Path, root_resolved: Path) -> bool:
    return path == root_resolved or root_resolved in path.parents


def _iter_images(folder: Path) -> Iterator[Path]:
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
class _Builder:
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
        if not _inside(resolved, self.src_resolved):
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
        size = read_image_size(resolved, rel=_rel(resolved, self.src_resolved))
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


# ---------------------------------------------------------------------------------- detection


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


def _find_yolo_yaml(src: Path, limits: FormatLimits = DEFAULT_LIMITS) -> tuple[Path, dict[str, Any]] | None:
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


def _coco_jsons(src: Path) -> list[Path]:
    found: list[Path] = []
    for folder in (src, src / "annotations"):
        if folder.is_dir():
            found.extend(p for p in sorted(folder.glob("*.json")) if _sniff_json(p) == "coco")
    return found


def _imagefolder_layout(src: Path) -> tuple[list[tuple[str | None, Path]], list[str]] | None:
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
    pairs = [(s, d) for s, d in pairs if next(_iter_images(d), None) is not None]
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
    if _find_yolo_yaml(src, limits) is not None:
        return "yolo"
    if _coco_jsons(src):
        return "coco"
    if (src / "images").is_dir() and (src / "labels").is_dir():
        return "yolo"
    if _imagefolder_layout(src) is not None:
        return "imagefolder"
    raise DatasetFormatError(
        "cannot tell the dataset format: expected annotations.json (DICE), a data.yaml with names (YOLO),"
        " a COCO json (images/annotations/categories) or class sub-folders of images (ImageFolder)",
        file=src.name,
    )


# -------------------------------------------------------------------------------------- DICE


def _import_dice(src: Path, b: _Builder) -> str:
    ds = load_annotations(src / "annotations.json", file="annotations.json", limits=b.limits)
    images_dir = src / "images"
    missing: list[DatasetFormatError] = []
    for i, img in enumerate(ds.images):
        field_path = f"images[{i}].file_name"
        rel = safe_relpath(img.file_name, file="annotations.json", field=field_path)
        path = images_dir / rel
        if not path.is_file():
            missing.append(
                DatasetFormatError(
                    f"image {img.id} {img.file_name!r} has no file in images/",
                    file="annotations.json",
                    field=field_path,
                )
            )
            continue
        b.add_image(
            path,
            rel,
            image_id=img.id,
            declared=(img.width, img.height),
            file="annotations.json",
            field=field_path,
        )
        b.images[-1].update({k: v for k, v in img.model_dump(exclude_none=True).items() if k not in b.images[-1]})
    if missing:
        first = missing[0]
        if len(missing) > 1:
            raise DatasetFormatError(
                f"{first.message} (and {len(missing) - 1} more missing files)",
                file=first.file,
                field=first.field,
            )
        raise first
    b.categories = [c.model_dump(exclude_none=True) for c in ds.categories]
    b.annotations = [a.model_dump(exclude_none=True) for a in ds.annotations]
    return ds.dataset.name


# -------------------------------------------------------------------------------------- YOLO


def _yolo_names(raw: Any, rel: str, limits: FormatLimits = DEFAULT_LIMITS) -> dict[int, str]:
    """Class number -> name from data.yaml `names` (a list or a mapping); every name a short plain
    string (`check_label`), at most ``limits.max_categories`` of them."""
    if isinstance(raw, list | dict):
        check_category_count(len(raw), limits, file=rel, field="names")
    if isinstance(raw, list):
        return {i: check_label(n, limits, what="class name", file=rel, field=f"names[{i}]") for i, n in enumerate(raw)}
    if isinstance(raw, dict):
        out: dict[int, str] = {}
        for k, v in raw.items():
            try:
                cls = int(k)
            except (TypeError, ValueError):
                shown = repr(k) if len(repr(k)) <= 40 else repr(k)[:40] + "..."
                raise DatasetFormatError(f"names key {shown} is not a class number", file=rel, field="names") from None
            out[cls] = check_label(v, limits, what="class name", file=rel, field=f"names.{cls}")
        return out
    raise DatasetFormatError("names must be a list or a mapping of class number to name", file=rel, field="names")


def _yolo_entries(cfg: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("train", "val", "test"):
        v = cfg.get(key)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(str(x) for x in v)
    return out


def _yolo_root(cfg: Mapping[str, Any], yaml_dir: Path, src_resolved: Path) -> Path:
    p = cfg.get("path")
    if isinstance(p, str) and p:
        cand = Path(p) if os.path.isabs(p) else yaml_dir / p
        try:
            res = cand.resolve()
        except OSError:
            res = None
        if res is not None and res.is_dir() and _inside(res, src_resolved):
            return res
        log.info("data.yaml path %r is not a folder inside the dataset; using the yaml's folder", p)
    return yaml_dir.resolve()


def _yolo_list_file(cand: Path, root: Path, b: _Builder) -> list[Path]:
    """The images a YOLO list file (``train.txt``) names, one a line (``./`` relative to the file,
    else to the dataset root); lines that are not image names are skipped."""
    paths: list[Path] = []
    txt_rel = _rel(cand, b.src_resolved)
    for n, line in enumerate(cand.read_text(encoding="utf-8").splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        if item.startswith("./"):
            p = cand.parent / item[2:]
        elif os.path.isabs(item):
            p = Path(item)
        else:
            p = root / item
        if not is_image_name(p.name):
            continue
        if not p.exists():
            raise DatasetFormatError(f"image {item!r} does not exist", file=txt_rel, line=n)
        paths.append(b.source_file(p, file=txt_rel, field=f"line {n}"))
    return paths


def _yolo_image_paths(cfg: Mapping[str, Any], root: Path, b: _Builder, yaml_rel: str) -> list[Path]:
    paths: list[Path] = []
    entries = _yolo_entries(cfg)
    for entry in entries:
        cand = Path(entry) if os.path.isabs(entry) else root / entry
        if not cand.exists() and entry.startswith("../"):
            cand = root / entry[3:]
        if not cand.exists():
            log.info("%s: %r does not exist; skipped", yaml_rel, entry)
            continue
        cand = b.source_file(cand, file=yaml_rel, field="train/val/test")
        if cand.is_dir():
            paths.extend(_iter_images(cand))
        else:
            paths.extend(_yolo_list_file(cand, root, b))
    if not entries or not paths:
        for folder in (root / "images", root):
            if folder.is_dir():
                paths = [p for p in _iter_images(folder) if "/labels/" not in p.as_posix()]
                if paths:
                    break
    seen: set[Path] = set()
    unique = []
    for p in paths:
        r = b.source_file(p, file=_rel(p, b.src_resolved) if _inside(p, b.src_resolved) else p.name)
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return unique


def _label_path(image: Path) -> Path:
    s = image.as_posix()
    i = s.rfind("/images/")
    if i >= 0:
        s = s[:i] + "/labels/" + s[i + len("/images/") :]
    return Path(s).with_suffix(".txt")


def _px(x: float, size: int) -> float:
    """A normalised coordinate clipped to [0, 1], in pixels."""
    return min(max(x, 0.0), 1.0) * size


@dataclass
class _LabelLine:
    file: str
    line: int
    values: list[float]


def _parse_label_file(path: Path, rel: str) -> list[_LabelLine]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read label file: {exc}", file=rel) from None
    for n, line in enumerate(text.splitlines(), 1):
        toks = line.split()
        if not toks:
            continue
        vals = []
        for t in toks:
            try:
                v = float(t)
            except ValueError:
                raise DatasetFormatError(f"{t!r} is not a number", file=rel, line=n, field="values") from None
            if not math.isfinite(v):
                raise DatasetFormatError(f"{t!r} is not a finite number", file=rel, line=n, field="values")
            vals.append(v)
        out.append(_LabelLine(rel, n, vals))
    return out


def _yolo_flavour(
    cfg: Mapping[str, Any], yaml_path: Path, lines: Iterable[_LabelLine], limits: FormatLimits = DEFAULT_LIMITS
) -> tuple[str, int, int]:
    """('pose', K, D) | ('obb', 0, 0) | ('detect', 0, 0) (boxes and/or polygons, per line)."""
    kpt = cfg.get("kpt_shape")
    if kpt is not None:
        if not (isinstance(kpt, list) and len(kpt) == 2 and all(isinstance(x, int) for x in kpt) and kpt[1] in (2, 3)):
            raise DatasetFormatError("kpt_shape must be [K, 2] or [K, 3]", file=yaml_path.name, field="kpt_shape")
        if kpt[0] > limits.max_keypoints:
            raise DatasetFormatError(
                f"kpt_shape declares {kpt[0]} keypoints; the limit is {limits.max_keypoints}",
                file=yaml_path.name,
                field="kpt_shape",
            )
        return "pose", kpt[0], kpt[1]
    hint = " ".join(str(x) for x in (cfg.get("task", ""), yaml_path.name, cfg.get("path", ""))).lower()
    if re.search(r"(^|[^a-z])(obb|dota)", hint):
        return "obb", 0, 0
    counts = {len(ln.values) for ln in lines}
    if counts == {9}:
        return "obb", 0, 0
    if len(counts) == 1:
        (n,) = counts
        if n >= 8 and n % 2 == 0 and (n - 5) % 3 == 0:
            return "pose", (n - 5) // 3, 3
    return "detect", 0, 0


def _kpt_names(
    cfg: Mapping[str, Any], cls: int, k: int, *, file: str = "data.yaml", limits: FormatLimits = DEFAULT_LIMITS
) -> list[str]:
    raw = cfg.get("kpt_names")
    names: Any = None
    where = "kpt_names"
    if isinstance(raw, dict):
        names = raw.get(cls, raw.get(str(cls)))
        where = f"kpt_names.{cls}"
    elif isinstance(raw, list):
        names = raw
    if isinstance(names, list) and len(names) == k:
        return [
            check_label(x, limits, what="keypoint name", file=file, field=f"{where}[{i}]") for i, x in enumerate(names)
        ]
    return [f"kp{i}" for i in range(k)]


def _yolo_check_line(
    ln: _LabelLine, names: Mapping[int, str], lo_hi: tuple[int, int], flavour: str, kd: tuple[int, int]
) -> int:
    """The class of a label line whose value count fits the flavour and whose coordinates are
    normalised; raises `DatasetFormatError` naming the line otherwise."""
    v = ln.values
    k, d = kd
    tol = COORD_TOLERANCE
    c = v[0]
    if c != int(c):
        raise _line_error(ln, f"class {c:g} is not a whole number", "class")
    cls = int(c)
    if cls not in names:
        raise _line_error(ln, f"class {cls} is not in names ({lo_hi[0]}..{lo_hi[1]})", "class")
    n = len(v)
    if flavour == "pose":
        expected = 5 + k * d
        if n != expected:
            raise _line_error(ln, f"expected {expected} values (class, 4 box values, {k} keypoints x {d}), got {n}")
    elif flavour == "obb":
        if n != 9:
            raise _line_error(ln, f"expected 9 values (class x1 y1 x2 y2 x3 y3 x4 y4) for an oriented box, got {n}")
    elif n != 5 and (n < 7 or n % 2 == 0):
        raise _line_error(
            ln, f"expected 5 values (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...), got {n}"
        )
    coords = v[1:] if flavour != "pose" else v[1:5] + [x for j, x in enumerate(v[5:]) if d == 2 or j % 3 != 2]
    bad = next((x for x in coords if x < -tol or x > 1 + tol), None)
    if bad is not None:
        raise _line_error(ln, f"coordinate {bad:g} is outside [0, 1]; YOLO labels are normalised to the image size")
    return cls


def _line_error(ln: _LabelLine, msg: str, fld: str | None = "values") -> DatasetFormatError:
    return DatasetFormatError(msg, file=ln.file, line=ln.line, field=fld)


def _yolo_keypoints(ln: _LabelLine, kd: tuple[int, int], wh: tuple[int, int]) -> tuple[list[float], int]:
    """A pose line's keypoints in pixels (``x y v`` each) and how many are visible."""
    v = ln.values
    k, d = kd
    W, H = wh
    kps: list[float] = []
    visible = 0
    for j in range(k):
        x, y = v[5 + j * d], v[6 + j * d]
        if d == 3:
            vis = v[7 + j * d]
            if vis not in (0, 1, 2):
                raise _line_error(ln, f"keypoint {j} visibility {vis:g} must be 0, 1 or 2")
        else:
            vis = 0 if x == 0 and y == 0 else 2
        if vis == 0:
            kps += [0.0, 0.0, 0]
        else:
            kps += [_px(x, W), _px(y, H), int(vis)]
            visible += 1
    return kps, visible


def _yolo_shape(ln: _LabelLine, ann: dict[str, Any], flavour: str, wh: tuple[int, int]) -> None:
    """A polygon or oriented-box line's segmentation, box or rotated box and area, into `ann`."""
    W, H = wh
    poly = [_px(x, W) if j % 2 == 0 else _px(x, H) for j, x in enumerate(ln.values[1:])]
    xs, ys = poly[0::2], poly[1::2]
    if flavour == "obb":
        rb = min_area_rect(poly)
        if not (rb[2] > 0 and rb[3] > 0):
            raise _line_error(ln, "oriented box has zero width or height")
        ann["rotated_bbox"] = rb
        ann["segmentation"] = [poly]
        ann["area"] = rb[2] * rb[3]
    else:
        w, h = max(xs) - min(xs), max(ys) - min(ys)
        if not (w > 0 and h > 0):
            raise _line_error(ln, "polygon has zero width or height")
        ann["segmentation"] = [poly]
        ann["bbox"] = [min(xs), min(ys), w, h]
        ann["area"] = polygon_area(poly)


def _yolo_annotation(
    ln: _LabelLine,
    iid: int,
    names: Mapping[int, str],
    lo_hi: tuple[int, int],
    flavour: str,
    kd: tuple[int, int],
    wh: tuple[int, int],
) -> dict[str, Any]:
    """One label line as a DICE annotation (pixels) of image `iid`."""
    cls = _yolo_check_line(ln, names, lo_hi, flavour, kd)
    v = ln.values
    W, H = wh
    ann: dict[str, Any] = {"image_id": iid, "category_id": cls}
    if len(v) == 5 or flavour == "pose":
        bx, by, bw, bh = v[1:5]
        if not (bw > 0 and bh > 0):
            raise _line_error(ln, f"box width and height must be > 0, got w={bw:g} h={bh:g}")
        x0, y0, x1, y1 = (
            _px(bx - bw / 2, W),
            _px(by - bh / 2, H),
            _px(bx + bw / 2, W),
            _px(by + bh / 2, H),
        )
        if not (x1 > x0 and y1 > y0):
            raise _line_error(ln, "box lies outside the image")
        ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        ann["area"] = (x1 - x0) * (y1 - y0)
        if flavour == "pose":
            ann["keypoints"], ann["num_keypoints"] = _yolo_keypoints(ln, kd, wh)
    else:
        _yolo_shape(ln, ann, flavour, wh)
    return ann


def _import_yolo(src: Path, b: _Builder) -> str:
    found = _find_yolo_yaml(src, b.limits)
    if found is not None:
        yaml_path, cfg = found
    elif (src / "classes.txt").is_file():
        yaml_path = src / "classes.txt"
        names_list = [ln.strip() for ln in (src / "classes.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
        cfg = {"names": names_list}
    else:
        raise DatasetFormatError(
            "YOLO dataset without a data.yaml (or classes.txt) that lists the class names", file=src.name
        )
    yaml_rel = _rel(yaml_path, src)
    names = _yolo_names(cfg["names"], yaml_rel, b.limits)
    if not names:
        raise DatasetFormatError("names is empty", file=yaml_rel, field="names")
    lo, hi = min(names), max(names)
    root = _yolo_root(cfg, yaml_path.parent, b.src_resolved)
    image_paths = _yolo_image_paths(cfg, root, b, yaml_rel)
    if not image_paths:
        raise DatasetFormatError("no images found for train/val/test or under images/", file=yaml_rel)

    per_image: list[tuple[Path, str, list[_LabelLine]]] = []
    for p in image_paths:
        rel = _rel(p, root) if _inside(p, root) else _rel(p, b.src_resolved)
        if rel.startswith("images/"):
            rel = rel[len("images/") :]
        lp = _label_path(p)
        lines = _parse_label_file(lp, _rel(lp, b.src_resolved)) if lp.is_file() else []
        per_image.append((p, rel, lines))
    flavour, k, d = _yolo_flavour(cfg, yaml_path, (ln for _, _, ls in per_image for ln in ls), b.limits)

    for cls_id in sorted(names):
        cat: dict[str, Any] = {"id": cls_id, "name": names[cls_id]}
        if flavour == "pose":
            cat["keypoints"] = _kpt_names(cfg, cls_id, k, file=yaml_rel, limits=b.limits)
        b.categories.append(cat)

    for p, rel, lines in per_image:
        iid = b.add_image(p, rel)
        W, H = b.sizes[b.images[-1]["file_name"]]
        for ln in lines:
            b.add_annotation(**_yolo_annotation(ln, iid, names, (lo, hi), flavour, (k, d), (W, H)))
    return str(cfg.get("name") or "")


# -------------------------------------------------------------------------------------- COCO


def _coco_split_name(json_path: Path) -> str:
    stem = json_path.stem
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def _coco_image_bases(root: Path, json_path: Path) -> list[Path]:
    split = _coco_split_name(json_path)
    bases = [
        root / "images" / split,
        root / split,
        root / "images",
        root,
        json_path.parent / "images",
        json_path.parent,
    ]
    out: list[Path] = []
    for p in bases:
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _req_int(rec: Mapping[str, Any], key: str, file: str, where: str) -> int:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
        raise DatasetFormatError(f"{key} must be an integer, got {v!r}", file=file, field=f"{where}.{key}")
    return int(v)


def _check_coco_category(cat: Mapping[str, Any], limits: FormatLimits, file: str, where: str) -> None:
    """Names of one COCO category (name, supercategory, keypoints): short plain strings."""
    check_label(cat.get("name"), limits, what="category name", file=file, field=f"{where}.name")
    if cat.get("supercategory") not in (None, ""):
        check_label(cat["supercategory"], limits, what="supercategory", file=file, field=f"{where}.supercategory")
    kps = cat.get("keypoints")
    if kps is not None:
        if not isinstance(kps, list) or len(kps) > limits.max_keypoints:
            raise DatasetFormatError(
                f"keypoints must be a list of at most {limits.max_keypoints} names",
                file=file,
                field=f"{where}.keypoints",
            )
        for j, kp in enumerate(kps):
            check_label(kp, limits, what="keypoint name", file=file, field=f"{where}.keypoints[{j}]")


def _coco_categories(
    data: dict[str, Any], b: _Builder, jrel: str, cats_by_id: dict[int, dict[str, Any]], cat_file: dict[int, str]
) -> None:
    """Add a COCO file's categories to `cats_by_id` (a category id seen in an earlier file must
    keep its name); `cat_file`: the file that declared each id."""
    for i, cat in enumerate(data["categories"]):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise DatasetFormatError("a category must be an object", file=jrel, field=where)
        cid = _req_int(cat, "id", jrel, where)
        _check_coco_category(cat, b.limits, jrel, where)
        rec = {k: cat[k] for k in ("id", "name", "supercategory", "keypoints", "skeleton") if cat.get(k) is not None}
        if cid in cats_by_id:
            if cats_by_id[cid].get("name") != rec.get("name"):
                raise DatasetFormatError(
                    f"category {cid} is {rec.get('name')!r} here but {cats_by_id[cid].get('name')!r} in"
                    f" {cat_file[cid]}",
                    file=jrel,
                    field=f"{where}.name",
                )
            continue
        cats_by_id[cid] = rec
        cat_file[cid] = jrel


def _coco_images(
    data: dict[str, Any], b: _Builder, src: Path, root: Path, jp: Path, jrel: str, multi: bool, next_img: int
) -> tuple[dict[int, int], int]:
    """Add a COCO file's images to `b`: ``(file's image id -> dataset image id, next free id)``."""
    bases = _coco_image_bases(root, jp)
    id_map: dict[int, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            raise DatasetFormatError("an image must be an object", file=jrel, field=where)
        iid = _req_int(img, "id", jrel, where)
        fn = img.get("file_name")
        if not isinstance(fn, str):
            raise DatasetFormatError(f"image {iid}: file_name must be a string", file=jrel, field=f"{where}.file_name")
        rel = safe_relpath(fn, file=jrel, field=f"{where}.file_name")
        path = next((base / rel for base in bases if (base / rel).is_file()), None)
        if path is None:
            looked = ", ".join((_rel(p, src) or ".") for p in bases)
            raise DatasetFormatError(
                f"image {iid} {fn!r} has no file (looked in {looked or 'no folder'})",
                file=jrel,
                field=f"{where}.file_name",
            )
        images_dir = root / "images"
        dice_rel = _rel(path, images_dir) if _inside(path, images_dir) else _rel(path, root)
        if dice_rel in b.sources:
            raise DatasetFormatError(
                f"image {iid} {fn!r} is also described by another COCO file; import one file at a time",
                file=jrel,
                field=f"{where}.file_name",
            )
        declared = None
        if isinstance(img.get("width"), int) and isinstance(img.get("height"), int):
            declared = (img["width"], img["height"])
        new_id = next_img if multi else iid
        if iid in id_map:
            raise DatasetFormatError(f"duplicate image id {iid}", file=jrel, field=f"{where}.id")
        id_map[iid] = new_id
        next_img += 1
        b.add_image(path, dice_rel, image_id=new_id, declared=declared, file=jrel, field=f"{where}.file_name")
    return id_map, next_img


def _load_coco_file(jp: Path, root: Path, b: _Builder) -> tuple[str, dict[str, Any]]:
    """A COCO file's name (for errors) and its JSON, which must hold lists images, annotations and
    categories."""
    jrel = _rel(jp, root) if _inside(jp, root) else jp.name
    try:
        raw = jp.read_bytes()
    except OSError as exc:
        raise DatasetFormatError(f"cannot read file: {exc.strerror or exc}", file=jrel) from None
    data = load_json(raw, file=jrel, limits=b.limits)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetFormatError("a COCO file needs lists images, annotations and categories", file=jrel)
    return jrel, data


def _import_coco(src: Path, b: _Builder, jsons: list[Path], root: Path) -> str:
    multi = len(jsons) > 1
    cats_by_id: dict[int, dict[str, Any]] = {}
    cat_file: dict[int, str] = {}
    next_img = 1
    next_ann = 1
    name = ""
    skipped_crowd = 0
    for jp in jsons:
        jrel, data = _load_coco_file(jp, root, b)
        info = data.get("info")
        if isinstance(info, dict) and not name and isinstance(info.get("description"), str):
            name = info["description"][:200]
        check_category_count(len(data["categories"]), b.limits, file=jrel, field="categories")
        _coco_categories(data, b, jrel, cats_by_id, cat_file)
        id_map, next_img = _coco_images(data, b, src, root, jp, jrel, multi, next_img)

        for i, a in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(a, dict):
                raise DatasetFormatError("an annotation must be an object", file=jrel, field=where)
            aid = _req_int(a, "id", jrel, where)
            img_id = _req_int(a, "image_id", jrel, where)
            cat_id = _req_int(a, "category_id", jrel, where)
            if img_id not in id_map:
                raise DatasetFormatError(
                    f"annotation {aid}: image_id {img_id} is not an image id",
                    file=jrel,
                    field=f"{where}.image_id",
                )
            iscrowd = int(a.get("iscrowd") or 0)
            ann: dict[str, Any] = {
                "id": next_ann if multi else aid,
                "image_id": id_map[img_id],
                "category_id": cat_id,
                "iscrowd": iscrowd,
            }
            next_ann += 1
            seg = a.get("segmentation")
            if isinstance(seg, dict) or (isinstance(seg, list) and seg and not isinstance(seg[0], list)):
                if iscrowd:
                    skipped_crowd += 1
                    continue
                raise DatasetFormatError(
                    f"RLE masks are not supported; annotation {aid}", file=jrel, field=f"{where}.segmentation"
                )
            if seg:
                polys = [list(p) for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
                if len(polys) != len(seg):
                    log.warning("%s: annotation %s: dropped %d degenerate polygons", jrel, aid, len(seg) - len(polys))
                if polys:
                    ann["segmentation"] = polys
            for key in ("bbox", "keypoints", "num_keypoints", "area"):
                if a.get(key) is not None:
                    ann[key] = a[key]
            if "bbox" not in ann and "segmentation" in ann:
                xs = [x for p in ann["segmentation"] for x in p[0::2]]
                ys = [y for p in ann["segmentation"] for y in p[1::2]]
                ann["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            b.add_annotation(**ann)
    if skipped_crowd:
        log.warning("skipped %d crowd annotations with RLE masks", skipped_crowd)
    b.categories = [cats_by_id[c] for c in sorted(cats_by_id)]
    return name


# ------------------------------------------------------------------------------- ImageFolder


def _import_imagefolder(src: Path, b: _Builder) -> str:
    layout = _imagefolder_layout(src)
    if layout is None:
        raise DatasetFormatError(
            "no class folders with images (expected root/<class>/*.jpg or root/train/<class>/*.jpg)",
            file=src.name,
        )
    pairs, classes = layout
    check_category_count(len(classes), b.limits, file=src.name, field="class folders")
    for n in classes:
        check_label(n, b.limits, what="class folder name", file=n, field=None)
    ids = {n: i for i, n in enumerate(classes)}
    b.categories = [{"id": i, "name": n} for n, i in ids.items()]
    for _, folder in pairs:
        cid = ids[folder.name]
        for p in _iter_images(folder):
            iid = b.add_image(p, _rel(p, src))
            b.add_annotation(image_id=iid, category_id=cid)
    return ""


# -------------------------------------------------------------------------------------- entry


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
    if _inside(dest_res, root_res) or _inside(root_res, dest_res):
        raise ValueError(f"destination {dest} must not be inside the source {root} (or contain it)")
    if fmt == "auto":
        fmt = detect_format(root, limits)

    b = _Builder(root, limits)
    source_file = "annotations.json"
    if fmt == "dice":
        found_name = _import_dice(root, b)
    elif fmt == "yolo":
        found_name = _import_yolo(root, b)
        source_file = "data.yaml"
    elif fmt == "coco":
        if coco_files is None:
            coco_files = _coco_jsons(root)
        if not coco_files:
            raise DatasetFormatError("no COCO json (images, annotations, categories) found", file=root.name)
        found_name = _import_coco(root, b, coco_files, root)
        source_file = coco_files[0].name
    else:
        found_name = _import_imagefolder(root, b)
    ds_name = name or found_name or (src.stem if src.is_file() else src.name)
    dest.mkdir(parents=True, exist_ok=True)
    return b.finish(dest, ds_name, link, source_file=source_file)
