"""Load and validate DICE `annotations.json` (contract 2 in docs/architecture.md).

`load_annotations` turns bytes into a `DiceDataset` or raises one `DatasetFormatError` that names the
file, line/column (bad JSON) or field path (bad record). `validate_dataset` does the cross-record
checks (ids, references, geometry within the image, keypoints, files, sizes) and collects every
problem into a `ValidationReport` instead of stopping at the first.

Every error names the file, a field path such as ``annotations[3].bbox`` and the record's id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer_runtime.errors import DatasetFormatError, UnsafePathError
from trainer_runtime.formats.limits import DEFAULT_LIMITS, FormatLimits, check_category_count, check_label, load_json
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.schema import SUPPORTED_VERSIONS, Annotation, DiceDataset

TOLERANCE_PX = 1.0
"""Coordinates may lie this far outside the image (float rounding of converted datasets)."""

_RECORD_NAMES = {"images": "image", "annotations": "annotation", "categories": "category"}


# --------------------------------------------------------------------------------------- loading


def _field_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "(" in part:  # pydantic union/function tags such as "list[float]"
            continue
        else:
            out += f".{part}" if out else part
    return out


def _record_label(data: Mapping[str, Any], loc: Sequence[int | str]) -> str | None:
    """'annotation 17' for loc ('annotations', 3, ...) when record 3 has an id."""
    if len(loc) < 2 or not isinstance(loc[0], str) or not isinstance(loc[1], int):
        return None
    kind = _RECORD_NAMES.get(loc[0])
    records = data.get(loc[0])
    if kind is None or not isinstance(records, list) or not 0 <= loc[1] < len(records):
        return None
    rec = records[loc[1]]
    if isinstance(rec, Mapping) and "id" in rec and isinstance(rec["id"], int | str):
        return f"{kind} {rec['id']}"
    return f"{kind} at index {loc[1]}"


def load_annotations(
    source: str | bytes | Path, *, file: str = "annotations.json", limits: FormatLimits | None = None
) -> DiceDataset:
    """Parse DICE annotations.

    `source` is the JSON text (`str` or `bytes`) or a `Path` to read. Raises `DatasetFormatError`
    (file=`file`) for malformed JSON (with line and column), JSON nested deeper than
    ``limits.max_depth``, a top level that is not an object, a missing or unsupported
    ``format_version``, any schema error (field path and record id), more than
    ``limits.max_categories`` categories, and names that are not short plain strings
    (`check_dataset_labels`). `limits` None (trusted files the server already accepted, read by a
    trainer) checks none of these limits, so raising a server limit never breaks training.
    """
    if isinstance(source, Path):
        try:
            raw: str | bytes = source.read_bytes()
        except OSError as exc:
            raise DatasetFormatError(f"cannot read file: {exc.strerror or exc}", file=file) from None
    else:
        raw = source
    data = load_json(raw, file=file, limits=limits)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"the top level must be a JSON object, not {type(data).__name__}", file=file)
    supported = ", ".join(sorted(SUPPORTED_VERSIONS))
    if "format_version" not in data:
        raise DatasetFormatError(
            f"missing format_version (supported versions: {supported})", file=file, field="format_version"
        )
    version = data["format_version"]
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise DatasetFormatError(
            f"unsupported format_version {version!r} (supported versions: {supported})",
            file=file,
            field="format_version",
        )
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise DatasetFormatError(f"{key} must be a list, not {type(data[key]).__name__}", file=file, field=key)
    if limits is not None:
        check_category_count(len(data.get("categories") or ()), limits, file=file, field="categories")
    try:
        ds = DiceDataset.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        loc = first.get("loc", ())
        path = _field_path(loc)
        label = _record_label(data, loc)
        msg = first.get("msg", "invalid value")
        if "input" in first and first.get("type") not in ("missing",):
            shown = repr(first["input"])
            if len(shown) <= 60:
                msg = f"{msg} (got {shown})"
        if label:
            sub = _field_path(loc[2:])
            message = f"{label}: {sub}: {msg}" if sub else f"{label}: {msg}"
        else:
            message = f"{path}: {msg}" if path else msg
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more errors)"
        raise DatasetFormatError(message, file=file, field=path or None) from None
    if limits is not None:
        check_dataset_labels(ds, limits, file=file)
    return ds


def check_dataset_labels(ds: DiceDataset, limits: FormatLimits = DEFAULT_LIMITS, *, file: str) -> None:
    """Every category, supercategory and keypoint name is a short plain string (`check_label`),
    and there are at most ``limits.max_categories`` categories and ``limits.max_keypoints``
    keypoints per category. Raises the first problem as `DatasetFormatError` (file and field)."""
    check_category_count(len(ds.categories), limits, file=file, field="categories")
    for i, cat in enumerate(ds.categories):
        where = f"categories[{i}]"
        check_label(cat.name, limits, what=f"category {cat.id} name", file=file, field=f"{where}.name")
        if cat.supercategory is not None and cat.supercategory != "":
            check_label(
                cat.supercategory,
                limits,
                what=f"category {cat.id} supercategory",
                file=file,
                field=f"{where}.supercategory",
            )
        if cat.keypoints:
            if len(cat.keypoints) > limits.max_keypoints:
                raise DatasetFormatError(
                    f"category {cat.id} has {len(cat.keypoints)} keypoints; the limit is {limits.max_keypoints}",
                    file=file,
                    field=f"{where}.keypoints",
                )
            for j, kp in enumerate(cat.keypoints):
                check_label(
                    kp, limits, what=f"category {cat.id} keypoint name", file=file, field=f"{where}.keypoints[{j}]"
                )


# ------------------------------------------------------------------------------------ validation


@dataclass
class ValidationReport:
    """What validating a dataset found: errors (at most `max_errors` kept), warnings and statistics."""

    errors: list[DatasetFormatError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    error_count: int = 0
    """All errors found, including those beyond `max_errors` that were not kept."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_first(self) -> None:
        """Raise the first error (its message says how many more there are), if any."""
        if not self.errors:
            return
        first = self.errors[0]
        more = max(self.error_count, len(self.errors)) - 1
        if more <= 0:
            raise first
        raise type(first)(
            f"{first.message} (and {more} more error{'s' if more != 1 else ''})",
            file=first.file,
            line=first.line,
            field=first.field,
        )


class _Collector:
    def __init__(self, file: str, max_errors: int) -> None:
        self.file = file
        self.max_errors = max_errors
        self.errors: list[DatasetFormatError] = []
        self.count = 0

    def add(self, field_path: str, message: str, cls: type[DatasetFormatError] = DatasetFormatError) -> None:
        self.count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(cls(message, file=self.file, field=field_path))


def _fmt(v: float) -> str:
    return f"{v:g}"


def _check_categories(ds: DiceDataset, out: _Collector, warnings: list[str]) -> dict[int, int | None]:
    """Category ids, names and skeletons; returns the keypoint count of each category id."""
    cat_kpts: dict[int, int | None] = {}
    cat_index: dict[int, int] = {}
    names: dict[str, int] = {}
    for i, cat in enumerate(ds.categories):
        cid = cat.id
        if cid in cat_index:
            out.add(
                f"categories[{i}].id",
                f"category {cid}: duplicate category id {cid} (first at categories[{cat_index[cid]}])",
            )
            continue
        cat_index[cid] = i
        if cat.name in names:
            warnings.append(f"categories {names[cat.name]} and {cid} have the same name {cat.name!r}")
        else:
            names[cat.name] = cid
        k = len(cat.keypoints) if cat.keypoints else None
        cat_kpts[cid] = k
        if cat.skeleton:
            if not k:
                out.add(f"categories[{i}].skeleton", f"category {cid}: has a skeleton but declares no keypoints")
            else:
                for j, edge in enumerate(cat.skeleton):
                    if len(edge) != 2 or not all(1 <= e <= k for e in edge):
                        out.add(
                            f"categories[{i}].skeleton[{j}]",
                            f"category {cid}: skeleton edge {edge} must be two keypoint numbers in 1..{k}"
                            " (1-based as in COCO)",
                        )
    return cat_kpts


@dataclass
class _Images:
    index: dict[int, int] = field(default_factory=dict)
    """image id -> position in ``images``"""
    wh: dict[int, tuple[int, int]] = field(default_factory=dict)
    missing_files: int = 0


def _check_images(
    ds: DiceDataset,
    out: _Collector,
    available_files: Set[str] | None,
    image_sizes: Mapping[str, tuple[int, int]] | None,
) -> _Images:
    """Image ids, file names (safe, unique, present) and declared sizes."""
    seen = _Images()
    seen_names: dict[str, int] = {}
    for i, img in enumerate(ds.images):
        iid = img.id
        if iid in seen.index:
            out.add(
                f"images[{i}].id",
                f"image {iid}: duplicate image id {iid} (first at images[{seen.index[iid]}])",
            )
            continue
        seen.index[iid] = i
        seen.wh[iid] = (img.width, img.height)
        fname = img.file_name
        try:
            rel = safe_relpath(fname)
        except UnsafePathError as exc:
            out.add(f"images[{i}].file_name", f"image {iid}: {exc.message}", UnsafePathError)
            continue
        if rel in seen_names:
            out.add(
                f"images[{i}].file_name",
                f"image {iid}: file_name {fname!r} is also used by image {seen_names[rel]}",
            )
            continue
        seen_names[rel] = iid
        if available_files is not None and rel not in available_files and fname not in available_files:
            seen.missing_files += 1
            out.add(f"images[{i}].file_name", f"image {iid} {fname!r} has no file in images/")
            continue
        if image_sizes is not None:
            actual = image_sizes.get(rel) or image_sizes.get(fname)
            if actual is not None and (int(actual[0]), int(actual[1])) != (img.width, img.height):
                out.add(
                    f"images[{i}].width",
                    f"image {iid} {fname!r} declares {img.width}x{img.height} but the file is {actual[0]}x{actual[1]}",
                )
    return seen


def _check_bbox(out: _Collector, where: str, ann: Annotation, W: float, H: float) -> None:
    bbox, aid, tol = ann.bbox, ann.id, TOLERANCE_PX
    if bbox is None:
        return
    if len(bbox) != 4:
        out.add(f"{where}.bbox", f"annotation {aid}: bbox must be 4 numbers [x, y, w, h], got {len(bbox)}")
        return
    x, y, w, h = bbox
    if not (w > 0 and h > 0) or not math.isfinite(x + y + w + h):
        out.add(
            f"{where}.bbox",
            f"annotation {aid}: bbox width and height must be > 0, got w={_fmt(w)} h={_fmt(h)}",
        )
    elif x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
        out.add(
            f"{where}.bbox",
            f"annotation {aid}: bbox [{_fmt(x)}, {_fmt(y)}, {_fmt(w)}, {_fmt(h)}] lies outside"
            f" image {ann.image_id} ({W}x{H})",
        )


def _check_segmentation(out: _Collector, where: str, ann: Annotation, W: float, H: float) -> None:
    aid, tol = ann.id, TOLERANCE_PX
    for j, poly in enumerate(ann.segmentation or []):
        n = len(poly)
        if n % 2:
            out.add(
                f"{where}.segmentation[{j}]",
                f"annotation {aid}: polygon has an odd number of coordinates ({n})",
            )
            continue
        if n < 6:
            out.add(
                f"{where}.segmentation[{j}]",
                f"annotation {aid}: polygon has {n // 2} points; at least 3 are needed",
            )
            continue
        xs = poly[0::2]
        ys = poly[1::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if not math.isfinite(x0 + x1 + y0 + y1):
            out.add(f"{where}.segmentation[{j}]", f"annotation {aid}: polygon has non-finite coordinates")
        elif x0 < -tol or y0 < -tol or x1 > W + tol or y1 > H + tol:
            out.add(
                f"{where}.segmentation[{j}]",
                f"annotation {aid}: polygon coordinates lie outside image {ann.image_id} ({W}x{H})",
            )


def _check_keypoints(
    out: _Collector, where: str, ann: Annotation, cat_kpts: dict[int, int | None], W: float, H: float
) -> None:
    kps, aid, cid, tol = ann.keypoints, ann.id, ann.category_id, TOLERANCE_PX
    if kps is None:
        return
    k = cat_kpts.get(cid)
    if cid in cat_kpts and not k:
        out.add(
            f"{where}.keypoints",
            f"annotation {aid}: has keypoints but category {cid} declares no keypoint names",
        )
    elif k and len(kps) != 3 * k:
        out.add(
            f"{where}.keypoints",
            f"annotation {aid}: keypoints must be 3*{k} = {3 * k} numbers (x, y, v for each of"
            f" category {cid}'s {k} keypoints), got {len(kps)}",
        )
    elif k:
        vis = kps[2::3]
        if any(v not in (0, 1, 2) for v in vis):
            out.add(f"{where}.keypoints", f"annotation {aid}: keypoint visibility must be 0, 1 or 2")
            return
        for t in range(k):
            if vis[t] and not (-tol <= kps[3 * t] <= W + tol and -tol <= kps[3 * t + 1] <= H + tol):
                out.add(
                    f"{where}.keypoints",
                    f"annotation {aid}: keypoint {t + 1}"
                    f" ({_fmt(kps[3 * t])}, {_fmt(kps[3 * t + 1])}) lies outside image"
                    f" {ann.image_id} ({W}x{H})",
                )
                break
    elif cid not in cat_kpts and len(kps) % 3:
        out.add(f"{where}.keypoints", f"annotation {aid}: keypoints must be x, y, v triples")


def _check_rotated_bbox(out: _Collector, where: str, ann: Annotation) -> None:
    rb, aid = ann.rotated_bbox, ann.id
    if rb is None:
        return
    if len(rb) != 5:
        out.add(
            f"{where}.rotated_bbox",
            f"annotation {aid}: rotated_bbox must be 5 numbers [cx, cy, w, h, angle], got {len(rb)}",
        )
    elif not (rb[2] > 0 and rb[3] > 0) or not math.isfinite(sum(rb)):
        out.add(
            f"{where}.rotated_bbox",
            f"annotation {aid}: rotated_bbox width and height must be > 0, got w={_fmt(rb[2])} h={_fmt(rb[3])}",
        )


def _check_annotations(
    ds: DiceDataset, out: _Collector, cat_kpts: dict[int, int | None], img_wh: dict[int, tuple[int, int]]
) -> tuple[set[int], set[int]]:
    """Every annotation's ids and geometry; returns the labelled image ids and the used category ids."""
    ann_index: dict[int, int] = {}
    labeled: set[int] = set()
    used_cats: set[int] = set()
    for i, ann in enumerate(ds.annotations):
        aid = ann.id
        where = f"annotations[{i}]"
        if aid in ann_index:
            out.add(
                f"{where}.id",
                f"annotation {aid}: duplicate annotation id {aid} (first at annotations[{ann_index[aid]}])",
            )
            continue
        ann_index[aid] = i
        wh = img_wh.get(ann.image_id)
        if wh is None:
            out.add(f"{where}.image_id", f"annotation {aid}: image_id {ann.image_id} is not an image id")
        else:
            labeled.add(ann.image_id)
        cid = ann.category_id
        if cid not in cat_kpts:
            out.add(f"{where}.category_id", f"annotation {aid}: category_id {cid} is not a category id")
        else:
            used_cats.add(cid)
        W, H = wh if wh is not None else (math.inf, math.inf)
        _check_bbox(out, where, ann, W, H)
        _check_segmentation(out, where, ann, W, H)
        _check_keypoints(out, where, ann, cat_kpts, W, H)
        _check_rotated_bbox(out, where, ann)
        if ann.area is not None and not ann.area >= 0:
            out.add(f"{where}.area", f"annotation {aid}: area must be >= 0, got {_fmt(ann.area)}")
    return labeled, used_cats


def validate_dataset(
    ds: DiceDataset,
    *,
    available_files: Set[str] | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    file: str = "annotations.json",
    max_errors: int = 50,
) -> ValidationReport:
    """Cross-record checks of a parsed dataset; collects up to `max_errors` errors.

    `available_files`: relative names of the files under ``images/``; every image's file_name must
    be one of them. `image_sizes`: actual decoded (width, height) keyed by file_name; declared sizes
    must match. Tolerance for coordinates outside the image: `TOLERANCE_PX`.
    """
    out = _Collector(file, max_errors)
    warnings: list[str] = []
    cat_kpts = _check_categories(ds, out, warnings)
    images = _check_images(ds, out, available_files, image_sizes)
    labeled, used_cats = _check_annotations(ds, out, cat_kpts, images.wh)

    unused = [c.name for c in ds.categories if c.id not in used_cats]
    if unused and ds.annotations:
        shown = ", ".join(unused[:10]) + (", …" if len(unused) > 10 else "")
        warnings.append(f"{len(unused)} categories have no annotations: {shown}")
    unlabeled = len(images.index) - len(labeled)
    if unlabeled and ds.annotations:
        warnings.append(f"{unlabeled} of {len(images.index)} images have no annotations")

    stats: dict[str, Any] = {
        "images": len(ds.images),
        "annotations": len(ds.annotations),
        "categories": len(ds.categories),
        "labeled_images": len(labeled),
        "unlabeled_images": unlabeled,
        "missing_files": images.missing_files,
        "errors": out.count,
    }
    return ValidationReport(errors=out.errors, warnings=warnings, stats=stats, error_count=out.count)
