"""Read a YOLO folder (data.yaml or classes.txt, image folders or list files, one label file per
image) into a `Builder`: boxes, polygons, oriented boxes and pose keypoints, normalised
coordinates turned into pixels. Errors name the label file, line and field. Contract 2 in
docs/architecture.md.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.capabilities import min_area_rect, polygon_area
from trainer_runtime.formats.images import is_image_name
from trainer_runtime.formats.importers.builder import Builder, is_inside, iter_images, rel_to
from trainer_runtime.formats.importers.detect import find_yolo_yaml
from trainer_runtime.formats.limits import DEFAULT_LIMITS, FormatLimits, check_category_count, check_label

log = logging.getLogger(__name__)


COORD_TOLERANCE = 0.01
"""Normalised YOLO coordinates may lie this far outside [0, 1]; they are clipped."""


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
        if res is not None and res.is_dir() and is_inside(res, src_resolved):
            return res
        log.info("data.yaml path %r is not a folder inside the dataset; using the yaml's folder", p)
    return yaml_dir.resolve()


def _yolo_list_file(cand: Path, root: Path, b: Builder) -> list[Path]:
    """The images a YOLO list file (``train.txt``) names, one a line (``./`` relative to the file,
    else to the dataset root); lines that are not image names are skipped."""
    paths: list[Path] = []
    txt_rel = rel_to(cand, b.src_resolved)
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


def _yolo_image_paths(cfg: Mapping[str, Any], root: Path, b: Builder, yaml_rel: str) -> list[Path]:
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
            paths.extend(iter_images(cand))
        else:
            paths.extend(_yolo_list_file(cand, root, b))
    if not entries or not paths:
        for folder in (root / "images", root):
            if folder.is_dir():
                paths = [p for p in iter_images(folder) if "/labels/" not in p.as_posix()]
                if paths:
                    break
    seen: set[Path] = set()
    unique = []
    for p in paths:
        r = b.source_file(p, file=rel_to(p, b.src_resolved) if is_inside(p, b.src_resolved) else p.name)
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


def import_yolo(src: Path, b: Builder) -> str:
    """Add a YOLO dataset (classes from data.yaml or classes.txt) to `b`; returns the name from
    data.yaml ("" if none). DatasetFormatError when no file lists the class names."""
    found = find_yolo_yaml(src, b.limits)
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
    yaml_rel = rel_to(yaml_path, src)
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
        rel = rel_to(p, root) if is_inside(p, root) else rel_to(p, b.src_resolved)
        if rel.startswith("images/"):
            rel = rel[len("images/") :]
        lp = _label_path(p)
        lines = _parse_label_file(lp, rel_to(lp, b.src_resolved)) if lp.is_file() else []
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
