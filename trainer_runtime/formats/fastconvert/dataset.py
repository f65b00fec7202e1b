"""Decode ``annotations.json`` for the fast path (`load_fast`, msgspec structs, segmentations left
as raw JSON), check what the writer relies on, and derive per-annotation columns, the counts the
compatibility check needs (`summary_for_compat`) and the view the split needs (`split_view`).
See docs/architecture.md.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.paths import safe_relpath


class _Cat(msgspec.Struct, gc=False):
    id: int
    name: str
    keypoints: list[str] | None = None


class _Img(msgspec.Struct, gc=False):
    id: int
    file_name: str
    width: int
    height: int


class _Ann(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    bbox: list[float] | None = None
    segmentation: msgspec.Raw = msgspec.Raw()
    keypoints: msgspec.Raw = msgspec.Raw()
    rotated_bbox: msgspec.Raw = msgspec.Raw()
    iscrowd: int | bool = 0


class _Info(msgspec.Struct, gc=False):
    name: str = ""


class _Doc(msgspec.Struct, gc=False):
    format_version: str
    dataset: _Info = msgspec.field(default_factory=_Info)
    categories: list[_Cat] = msgspec.field(default_factory=list)
    images: list[_Img] = msgspec.field(default_factory=list)
    annotations: list[_Ann] = msgspec.field(default_factory=list)


_FIELD_RE = re.compile(r"at `\$(.*)`")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*")


@dataclass
class FastDataset:
    """The parts of ``annotations.json`` the fast path needs (duck-types the attributes that
    `stratified_split` reads: ``images[].id/.file_name``, ``annotations[].image_id/.category_id``,
    ``categories[].id/.name``)."""

    name: str
    categories: list[Any]
    images: list[Any]
    annotations: list[Any]
    rel_names: list[str] = field(default_factory=list)


def load_fast(path: Path, *, file: str = "annotations.json") -> FastDataset:
    """Decode ``annotations.json`` with msgspec (segmentations stay raw); check what the writer
    relies on: types, positive image sizes, unique image ids and file names, safe file names,
    known image and category ids. Raises `DatasetFormatError` / `UnsafePathError`."""
    from trainer_runtime.formats.schema import SUPPORTED_VERSIONS

    data = Path(path).read_bytes()
    was = gc.isenabled()
    gc.disable()
    try:
        doc = msgspec.json.Decoder(_Doc).decode(data)
    except msgspec.ValidationError as exc:
        m = _FIELD_RE.search(str(exc))
        fld = m.group(1).lstrip(".") if m else None
        raise DatasetFormatError(str(exc).split(" - at ")[0], file=file, field=fld) from None
    except msgspec.DecodeError as exc:
        raise DatasetFormatError(f"not valid JSON: {exc}", file=file) from None
    finally:
        if was:
            gc.enable()
    del data
    if doc.format_version not in SUPPORTED_VERSIONS:
        raise DatasetFormatError(
            f"unsupported format_version {doc.format_version!r} (supported: {', '.join(sorted(SUPPORTED_VERSIONS))})",
            file=file,
            field="format_version",
        )
    rels: list[str] = []
    fullmatch = _SAFE_NAME.fullmatch
    seen_ids: set[int] = set()
    for i, img in enumerate(doc.images):
        name = img.file_name
        if len(name) <= 255 and fullmatch(name):
            rels.append(name)
        else:
            rels.append(safe_relpath(name, file=file, field=f"images[{i}].file_name"))
        if img.width <= 0 or img.height <= 0:
            raise DatasetFormatError("width and height must be positive", file=file, field=f"images[{i}]")
        if img.id in seen_ids:
            raise DatasetFormatError(f"duplicate image id {img.id}", file=file, field=f"images[{i}].id")
        seen_ids.add(img.id)
    if len(set(rels)) != len(rels):
        dup = next(r for r, c in _count(rels) if c > 1)
        raise DatasetFormatError(f"two images have the file name {dup!r}", file=file, field="images")
    cat_ids = {c.id for c in doc.categories}
    if len(cat_ids) != len(doc.categories):
        raise DatasetFormatError("duplicate category id", file=file, field="categories")
    fds = FastDataset(doc.dataset.name, doc.categories, doc.images, doc.annotations, rels)
    columns(fds, file=file)  # checks image_id / category_id of every annotation
    return fds


def _count(items: Sequence[str]) -> Iterator[tuple[str, int]]:
    counts: dict[str, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return iter(counts.items())


def _raw_kind(raw: bytes) -> int:
    """0: no polygon value (absent, null or empty list), 1: one list level inside, 2: more."""
    if not raw or raw == b"null" or raw == b"[]":
        return 0
    n = raw.count(b"[")
    return 1 if n == 2 else 2


@dataclass
class Columns:
    """Per-annotation columns, computed once (annotations in file order)."""

    img: np.ndarray  # image index
    cat: np.ndarray  # category index (position in categories)
    has_bbox: np.ndarray
    poly: np.ndarray  # segmentation holds something (longer than ``null``/``[]``)
    rot: np.ndarray
    kp: np.ndarray
    crowd: np.ndarray


def columns(ds: FastDataset, *, file: str = "annotations.json") -> Columns:
    """The per-annotation columns of `ds`, computed on first use and cached on it; DatasetFormatError (in
    `file`) when an annotation names an unknown image or category."""
    cached: Columns | None = getattr(ds, "_cols", None)
    if cached is not None:
        return cached
    anns = ds.annotations
    n = len(anns)
    id_to_idx = {img.id: i for i, img in enumerate(ds.images)}
    cat_index = {c.id: i for i, c in enumerate(ds.categories)}
    try:
        img = np.fromiter((id_to_idx[a.image_id] for a in anns), np.int64, count=n)
    except KeyError:
        i = next(i for i, a in enumerate(anns) if a.image_id not in id_to_idx)
        msg = f"image_id {anns[i].image_id} is not in images"
        raise DatasetFormatError(msg, file=file, field=f"annotations[{i}].image_id") from None
    try:
        cat = np.fromiter((cat_index[a.category_id] for a in anns), np.int64, count=n)
    except KeyError:
        i = next(i for i, a in enumerate(anns) if a.category_id not in cat_index)
        msg = f"category_id {anns[i].category_id} is not in categories"
        raise DatasetFormatError(msg, file=file, field=f"annotations[{i}].category_id") from None
    cols = Columns(
        img=img,
        cat=cat,
        has_bbox=np.fromiter((bool(a.bbox) for a in anns), bool, count=n),
        poly=np.fromiter((len(a.segmentation) > 4 for a in anns), bool, count=n),
        rot=np.fromiter((len(a.rotated_bbox) > 4 for a in anns), bool, count=n),
        kp=np.fromiter((len(a.keypoints) > 4 for a in anns), bool, count=n),
        crowd=np.fromiter((bool(a.iscrowd) for a in anns), bool, count=n),
    )
    ds._cols = cols  # type: ignore[attr-defined]
    return cols


def summary_for_compat(ds: FastDataset) -> dict[str, Any]:
    """The counts `capabilities.check_compatibility` needs (as `capabilities.summarize` computes
    them), without pydantic and without a Python loop per annotation."""
    c = columns(ds)
    kp_cat = np.array([bool(cat.keypoints) for cat in ds.categories], bool)
    kp = c.kp & kp_cat[c.cat] if c.cat.size else c.kp
    kinds = {
        "boxes": c.has_bbox,
        "standalone_boxes": c.has_bbox & ~c.poly & ~c.rot,
        "polygons": c.poly,
        "keypoints": kp,
        "rotated_boxes": c.rot,
        "image_labels": ~(c.has_bbox | c.poly | c.rot | c.kp),
    }
    order = ("image_labels", "boxes", "standalone_boxes", "polygons", "keypoints", "rotated_boxes")
    full: dict[str, int] = {
        "images": len(ds.images),
        "labeled_images": int(np.unique(c.img).size),
        "annotations": len(ds.annotations),
    }
    full.update({k: int(kinds[k].sum()) for k in order})
    return {
        "name": ds.name,
        "counts": full,
        **full,
        "images_with": {k: int(np.unique(c.img[kinds[k]]).size) for k in order},
        "categories": [{"id": cat.id, "name": cat.name} for cat in ds.categories],
        "keypoint_categories": [
            {"id": cat.id, "name": cat.name, "keypoints": list(cat.keypoints or [])}
            for cat in ds.categories
            if cat.keypoints
        ],
    }


@dataclass
class _Pair:
    image_id: int
    category_id: int


def split_view(ds: FastDataset) -> Any:
    """An object `stratified_split` accepts: the images and categories, and one (image, category)
    pair per distinct pair (the split only uses the set of classes of each image, so the result is
    the same as with every annotation)."""
    c = columns(ds)
    ids = np.array([img.id for img in ds.images], np.int64)
    cat_ids = np.array([cat.id for cat in ds.categories], np.int64)
    ncat = max(1, len(ds.categories))
    pairs = np.unique(c.img * ncat + c.cat) if c.img.size else np.zeros(0, np.int64)
    anns = [
        _Pair(int(i), int(k)) for i, k in zip(ids[pairs // ncat].tolist(), cat_ids[pairs % ncat].tolist(), strict=True)
    ]
    return FastDataset(ds.name, ds.categories, ds.images, anns, ds.rel_names)
