"""Fast DICE -> YOLO label writer for big datasets (object detection and instance segmentation).

`converters.to_yolo` works on a validated pydantic `DiceDataset` and formats every number in
Python; that is clear but slow for COCO-sized files (860k annotations, ~47M polygon coordinates).
This module produces *byte-identical* label files straight from ``annotations.json``:

- decoding: `msgspec` with typed structs; every ``segmentation`` is kept as raw JSON bytes
  (`msgspec.Raw`) and decoded batch-wise, so no more than one batch of Python floats exists at a
  time (peak memory ~ the file size plus ~250 bytes per annotation);
- normalisation with numpy in one pass per batch (same IEEE operations as the reference, so the
  same doubles);
- formatting: `format_g` renders ``'%g'`` exactly (correct rounding, ties resolved on the exact
  binary value) for the whole batch with table look-ups, falling back to Python's ``'%g'`` for the
  rare values outside ``[1e-4, 1)`` that are not small integers;
- output: one ``open/write/close`` per label file with `os` calls; optionally a second worker
  process, started before the file is read (so its memory stays small), formats and writes every
  other batch.

The semantics (which annotations become which rows) are exactly those of
`trainer_runtime.formats.yolo_rows.yolo_rows` (the reference) and therefore of Ultralytics'
``convert_coco(use_segments=True, cls91to80=False)`` when category ids are 1..N in order; see
`yolo_rows` for the rules and `converters` for the intended differences. Anything the fast path
does not handle (an annotation without ``bbox``, keypoints or rotated-box tasks) raises
`FastPathUnsupported` and the caller uses the reference path.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.yolo_rows import label_relpath, merge_indices, valid_polygons

FAST_TASKS = ("object_detection", "instance_segmentation")


class FastPathUnsupported(Exception):
    """The dataset or task needs the reference converter (the message says why)."""


# ------------------------------------------------------------------------------- '%g' formatting

_SLOT = 16  # bytes per token while formatting: the longest '%g' text is 13 characters + separator
_LITTLE = sys.byteorder == "little"
_INT_TABLE_SIZE = 4096


def _build_tables() -> dict[str, np.ndarray]:
    """Look-up tables, as little-endian uint64 words holding ASCII bytes (NUL = nothing)."""
    q = np.arange(1000, dtype=np.uint64)
    d = [np.uint64(48) + q // np.uint64(100), np.uint64(48) + q // np.uint64(10) % np.uint64(10)]
    d.append(np.uint64(48) + q % np.uint64(10))
    full = d[0] | (d[1] << np.uint64(8)) | (d[2] << np.uint64(16))  # three digits of 000..999
    ns = np.full(1000, 3, np.int64)
    ns[q % np.uint64(10) == 0] = 2
    ns[q % np.uint64(100) == 0] = 1
    strip = full.copy()  # the same without trailing zeros
    strip[ns == 2] &= np.uint64(0xFFFF)
    strip[ns == 1] &= np.uint64(0xFF)
    lo = np.where(q == 0, np.uint64(0), strip) << np.uint64(24)  # low half, placed at bytes 3..5
    lo_ns = np.where(q == 0, 0, ns)
    prefix = np.zeros((4, 8), np.uint8)  # '0.' + z zeros, right-aligned in bytes 0..7
    for z in range(4):
        txt = b"0." + b"0" * z
        prefix[z, 8 - len(txt) :] = np.frombuffer(txt, np.uint8)
    ints = np.zeros((_INT_TABLE_SIZE, 8), np.uint8)
    int_len = np.zeros(_INT_TABLE_SIZE, np.int64)
    for i in range(_INT_TABLE_SIZE):
        txt = str(i).encode()
        ints[i, : len(txt)] = np.frombuffer(txt, np.uint8)
        int_len[i] = len(txt)
    return {
        "full": full,
        "strip": strip,
        "ns": ns,
        "lo": lo,
        "lo_ns": lo_ns,
        "prefix": prefix.view(np.uint64).ravel(),
        "ints": ints.view(np.uint64).ravel(),
        "int_len": int_len,
        "scales": np.array([1e6, 1e7, 1e8, 1e9]),
    }


_TABLES: dict[str, np.ndarray] | None = None


def _tables() -> dict[str, np.ndarray]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _build_tables()
    return _TABLES


def _two_product_err(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact ``a*b - fl(a*b)`` (Dekker's TwoProduct without FMA)."""
    split = 134217729.0  # 2**27 + 1
    c = split * a
    ah = c - (c - a)
    al = a - ah
    c = split * b
    bh = c - (c - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _format_unit(
    a: np.ndarray, seps: np.ndarray, t: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words and lengths of '%g' for `a` in ``[1e-4, 1)``; also the positions that round up to 1."""
    u8 = np.uint8
    z = (a < 0.1).view(u8) + (a < 0.01).view(u8) + (a < 0.001).view(u8)  # zeros after '0.'
    scale = t["scales"][z]
    p = a * scale  # exact power of ten: one rounding, so ties can be told apart below
    m = np.rint(p)
    tie = np.flatnonzero(np.abs(m - p) == 0.5)
    if tie.size:  # p sits on .5: the exact product decides (round half to even only on a real tie)
        err = _two_product_err(a[tie], scale[tie], p[tie])
        f = np.floor(p[tie])
        m[tie] = f + ((err > 0) | ((err == 0) & (np.mod(f, 2.0) == 1.0)))
    mi = m.astype(np.int64)
    ones = np.zeros(0, np.int64)
    carry = np.flatnonzero(mi >= 1_000_000)
    if carry.size:  # 0.0999999.. -> 0.1: one zero less; 0.9999996 -> 1 (formatted elsewhere)
        ones = carry[z[carry] == 0]
        mi[carry] = 100_000
        z[carry] = np.maximum(z[carry], 1) - 1
    hi = mi // 1000
    lo = mi - hi * 1000
    lo0 = lo == 0
    w1 = np.where(lo0, t["strip"][hi], t["full"][hi] | t["lo"][lo])
    ns = np.where(lo0, t["ns"][hi], 3 + t["lo_ns"][lo])
    w1 |= seps.astype(np.uint64) << (ns.astype(np.uint64) << np.uint64(3))
    words = np.empty((a.size, 2), np.uint64)
    words[:, 0] = t["prefix"][z]
    words[:, 1] = w1
    return words, 3 + z + ns, ones


def format_g(values: np.ndarray, seps: np.ndarray) -> tuple[bytes, np.ndarray]:
    """``b"".join(b"%g" % v + sep)`` for float64 `values` and separator bytes `seps` (uint8).

    Returns the text and the byte length of each token (separator included). Identical to
    Python's ``'%g'`` for every double: values in ``[1e-4, 1)`` are rounded to six significant
    digits exactly (a product by an exact power of ten, with an exact error term where the product
    lands on a tie), integers ``0..4095`` come from a table, anything else is formatted by Python.
    """
    n = int(values.shape[0])
    if n == 0:
        return b"", np.zeros(0, np.int64)
    if not _LITTLE:  # pragma: no cover - the word tables assume little-endian
        toks = [(b"%g" % v) + bytes((s,)) for v, s in zip(values.tolist(), seps.tolist(), strict=True)]
        return b"".join(toks), np.array([len(t) for t in toks], np.int64)
    t = _tables()
    fast = (values >= 1e-4) & (values < 1.0)
    if fast.all():
        words, lengths, ones = _format_unit(values, seps, t)
        rest = ones
    else:
        fi = np.flatnonzero(fast)
        words = np.zeros((n, 2), np.uint64)
        lengths = np.zeros(n, np.int64)
        w, ln, ones = _format_unit(values[fi], seps[fi], t)
        words[fi] = w
        lengths[fi] = ln
        rest = np.union1d(np.flatnonzero(~fast), fi[ones])
    if rest.size:
        v = values[rest].copy()
        v[np.isin(rest, fi[ones] if not fast.all() else ones)] = 1.0
        s = seps[rest]
        is_int = (v >= 0.0) & (v < _INT_TABLE_SIZE) & (np.floor(v) == v) & ~np.signbit(v)
        ii = np.flatnonzero(is_int)
        if ii.size:
            iv = v[ii].astype(np.int64)
            il = t["int_len"][iv]
            words[rest[ii], 0] = 0
            words[rest[ii], 1] = t["ints"][iv] | (s[ii].astype(np.uint64) << (il.astype(np.uint64) << np.uint64(3)))
            lengths[rest[ii]] = il + 1
        slow = np.flatnonzero(~is_int)
        if slow.size:
            toks = [(b"%g" % x) + bytes((c,)) for x, c in zip(v[slow].tolist(), s[slow].tolist(), strict=True)]
            buf = b"".join(tok.ljust(_SLOT, b"\0") for tok in toks)
            words[rest[slow]] = np.frombuffer(buf, np.uint64).reshape(-1, 2)
            lengths[rest[slow]] = [len(tok) for tok in toks]
    return words.view(np.uint8).tobytes().translate(None, b"\0"), lengths


# ------------------------------------------------------------------------------------ decoding


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
    _columns(fds, file=file)  # checks image_id / category_id of every annotation
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
class _Columns:
    """Per-annotation columns, computed once (annotations in file order)."""

    img: np.ndarray  # image index
    cat: np.ndarray  # category index (position in categories)
    has_bbox: np.ndarray
    poly: np.ndarray  # segmentation holds something (longer than ``null``/``[]``)
    rot: np.ndarray
    kp: np.ndarray
    crowd: np.ndarray


def _columns(ds: FastDataset, *, file: str = "annotations.json") -> _Columns:
    cached = getattr(ds, "_cols", None)
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
    cols = _Columns(
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
    c = _columns(ds)
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
    c = _columns(ds)
    ids = np.array([img.id for img in ds.images], np.int64)
    cat_ids = np.array([cat.id for cat in ds.categories], np.int64)
    ncat = max(1, len(ds.categories))
    pairs = np.unique(c.img * ncat + c.cat) if c.img.size else np.zeros(0, np.int64)
    anns = [
        _Pair(int(i), int(k)) for i, k in zip(ids[pairs // ncat].tolist(), cat_ids[pairs % ncat].tolist(), strict=True)
    ]
    return FastDataset(ds.name, ds.categories, ds.images, anns, ds.rel_names)


# ------------------------------------------------------------------------------------- batches


@dataclass
class _Batch:
    """One batch of images, in a form that pickles cheaply to a worker process."""

    label_paths: list[str]  # relative label paths (…/name.txt), one per image
    first_ann: np.ndarray  # per image: start offset into the batch's annotations (len = images+1)
    wh: np.ndarray  # (images, 2) float64
    cls: np.ndarray  # per annotation: class index
    boxes: np.ndarray  # (annotations, 4) float64 bbox x, y, w, h
    crowd: np.ndarray  # per annotation: bool
    segs: bytes | None  # JSON array of the annotations' segmentations (segmentation task only)


_NULL = b"null"


def _iter_batches(ds: FastDataset, task: str, batch_images: int) -> Iterator[_Batch]:
    n_img = len(ds.images)
    c = _columns(ds)
    anns = ds.annotations
    if (~c.has_bbox & ~c.crowd).any():
        raise FastPathUnsupported("an annotation has no bbox")
    order = np.argsort(c.img, kind="stable")
    starts = np.searchsorted(c.img[order], np.arange(n_img + 1))
    seg_task = task == "instance_segmentation"
    wh_all = np.array([(img.width, img.height) for img in ds.images], np.float64).reshape(-1, 2)
    zero = (0.0, 0.0, 0.0, 0.0)
    for b0 in range(0, n_img, batch_images):
        b1 = min(n_img, b0 + batch_images)
        a0, a1 = int(starts[b0]), int(starts[b1])
        idx = order[a0:a1]
        sel = [anns[j] for j in idx.tolist()]
        bbs = [a.bbox if a.bbox is not None else zero for a in sel]
        try:
            boxes = np.array(bbs, np.float64).reshape(-1, 4)
        except ValueError:
            raise FastPathUnsupported("a bbox does not have 4 numbers") from None
        segs = None
        if seg_task:
            segs = b"[" + b",".join([a.segmentation if len(a.segmentation) else _NULL for a in sel]) + b"]"
        yield _Batch(
            label_paths=[label_relpath(r) for r in ds.rel_names[b0:b1]],
            first_ann=(starts[b0 : b1 + 1] - a0).astype(np.int64),
            wh=wh_all[b0:b1],
            cls=c.cat[idx],
            boxes=boxes,
            crowd=c.crowd[idx],
            segs=segs,
        )


_STRIP_BRACKETS = bytes.maketrans(b"[]", b" ,")


def _decode_polys(blob: bytes, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Polygons of the `kept` annotations of a batch.

    Returns (polygon count per kept annotation, coordinate count per polygon, all coordinates
    (flat float64)). Invalid polygons (fewer than 6 numbers, odd
    count) are already dropped. The numbers are decoded in one flat msgspec pass: the polygon
    structure comes from the raw JSON of each polygon.
    """
    per_ann = msgspec.json.decode(blob, type=list[msgspec.Raw])
    kept_l = kept.tolist()
    try:
        structs = msgspec.json.decode(
            b"[" + b",".join([per_ann[j] for j in kept_l]) + b"]", type=list[list[msgspec.Raw] | None]
        )
    except msgspec.ValidationError:
        structs = None
    if structs is not None:
        npoly = [len(x) if x else 0 for x in structs]
        praws = [r for x in structs if x for r in x]
        joined = b"".join(praws)
        if joined.count(b"[") == len(praws):  # flat polygons only
            lens = np.fromiter(map(len, praws), np.int64, count=len(praws))
            ends = np.cumsum(lens)
            commas = np.frombuffer(joined, np.uint8) == 44
            ncomma = np.add.reduceat(commas, ends - lens, dtype=np.int64) if lens.size else lens
            counts = np.where(lens > 2, ncomma + 1, 0)
            text = joined.translate(_STRIP_BRACKETS).rstrip(b", \t\r\n")
            try:
                flat = msgspec.json.decode(b"[" + text + b"]", type=list[float]) if text.strip() else []
            except msgspec.ValidationError:
                flat = None
            if flat is not None and len(flat) == int(counts.sum()):
                coords = np.array(flat, np.float64)
                good = (counts >= 6) & (counts % 2 == 0)
                if not good.all():
                    keep_c = np.repeat(good, counts)
                    coords = coords[keep_c]
                    gi = np.cumsum(np.concatenate([[0], good.astype(np.int64)]))
                    pstart = np.cumsum([0, *npoly])
                    npoly = (gi[pstart[1:]] - gi[pstart[:-1]]).tolist()
                    counts = counts[good]
                return np.asarray(npoly, np.int64), counts, coords
    # general path: decode each annotation, keep what Ultralytics keeps
    general = [valid_polygons(msgspec.json.decode(per_ann[j])) for j in kept_l]
    polys = [p for g in general for p in g]
    counts = np.fromiter(map(len, polys), np.int64, count=len(polys))
    coords = np.fromiter(itertools.chain.from_iterable(polys), np.float64, count=int(counts.sum()))
    return np.fromiter(map(len, general), np.int64, count=len(general)), counts, coords


def _build_rows(b: _Batch, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values of every row of the batch (normalised), row lengths, row image, row keep flags."""
    n_img = len(b.label_paths)
    n_ann = len(b.cls)
    ann_img = np.repeat(np.arange(n_img), np.diff(b.first_ann))
    wh = b.wh[ann_img] if n_ann else np.zeros((0, 2))
    box = b.boxes.copy()
    box[:, :2] += box[:, 2:] / 2
    box[:, 0] /= wh[:, 0]
    box[:, 2] /= wh[:, 0]
    box[:, 1] /= wh[:, 1]
    box[:, 3] /= wh[:, 1]
    keep = ~b.crowd & ~(box[:, 2] <= 0) & ~(box[:, 3] <= 0)
    kept = np.flatnonzero(keep)
    cls = b.cls.astype(np.float64)
    if task == "object_detection" or b.segs is None:
        det = np.empty((kept.size, 5), np.float64)
        det[:, 0] = cls[kept]
        det[:, 1:] = box[kept]
        return det.ravel(), np.full(kept.size, 5, np.int64), ann_img[kept], kept
    npoly, counts, coords = _decode_polys(b.segs, kept)
    pfirst = np.zeros(npoly.size + 1, np.int64)  # first polygon of each kept annotation
    np.cumsum(npoly, out=pfirst[1:])
    cfirst = np.zeros(counts.size + 1, np.int64)  # first coordinate of each polygon
    np.cumsum(counts, out=cfirst[1:])
    single = np.flatnonzero(npoly == 1)
    multi = np.flatnonzero(npoly > 1)
    none = np.flatnonzero(npoly == 0)
    lengths = np.empty(kept.size, np.int64)
    lengths[single] = counts[pfirst[single]] + 1
    lengths[none] = 9
    merged = _merge_batch(multi, pfirst, counts, cfirst, coords, wh[kept[multi]]) if multi.size else []
    for r, v in merged:
        lengths[r] = v.size + 1
    total = int(lengths.sum())
    vals = np.empty(total, np.float64)
    row_start = np.zeros(kept.size + 1, np.int64)
    np.cumsum(lengths, out=row_start[1:])
    vals[row_start[:-1]] = cls[kept]
    if single.size:
        n_coords = lengths[single] - 1
        before = np.cumsum(n_coords) - n_coords
        offs = np.arange(int(n_coords.sum())) - np.repeat(before, n_coords)
        src = np.repeat(cfirst[pfirst[single]], n_coords) + offs
        xy = coords[src].reshape(-1, 2) / np.repeat(wh[kept[single]], n_coords // 2, axis=0)
        vals[np.repeat(row_start[single] + 1, n_coords) + offs] = xy.ravel()
    if none.size:  # no usable polygon: the box as a 4-corner polygon (normalised already)
        cx, cy, bw, bh = (box[kept[none], k] for k in range(4))
        x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        rect = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], 1)
        vals[(row_start[none] + 1)[:, None] + np.arange(8)] = rect
    for r, v in merged:
        vals[row_start[r] + 1 : row_start[r + 1]] = v
    return vals, lengths, ann_img[kept], kept


def _merge_batch(
    multi: np.ndarray,
    pfirst: np.ndarray,
    counts: np.ndarray,
    cfirst: np.ndarray,
    coords: np.ndarray,
    wh: np.ndarray,
) -> list[tuple[int, np.ndarray]]:
    """`merge_polygons` for many annotations at once: the closest pairs of points of all neighbouring
    polygons come from one vectorised distance computation (same arithmetic, same first-minimum
    rule), the walk from `merge_indices`. `multi`: rows with several polygons; `wh`: their image
    sizes. Returns (row, normalised merged values)."""
    pts = coords.reshape(-1, 2)
    sizes_all = counts // 2
    starts_all = cfirst[:-1] // 2  # first point of each polygon
    mrows = multi.tolist()
    p0 = pfirst[multi]
    p1 = pfirst[multi + 1]
    # neighbouring pairs (polygon i-1, polygon i) inside each annotation
    a_idx = np.concatenate([np.arange(x, y - 1) for x, y in zip(p0.tolist(), p1.tolist(), strict=True)])
    b_idx = a_idx + 1
    na, nb = sizes_all[a_idx], sizes_all[b_idx]
    block = na * nb
    bstart = np.zeros(block.size, np.int64)
    np.cumsum(block[:-1], out=bstart[1:])
    local = np.arange(int(block.sum()), dtype=np.int64) - np.repeat(bstart, block)
    nb_rep = np.repeat(nb, block)
    ia = np.repeat(starts_all[a_idx], block) + local // nb_rep
    ib = np.repeat(starts_all[b_idx], block) + local % nb_rep
    d = (pts[ia, 0] - pts[ib, 0]) ** 2 + (pts[ia, 1] - pts[ib, 1]) ** 2
    mins = np.minimum.reduceat(d, bstart)
    hits = np.flatnonzero(d == np.repeat(mins, block))
    first = hits[np.searchsorted(hits, bstart)] - bstart
    la = (first // nb).tolist()
    lb = (first % nb).tolist()
    sizes_l = sizes_all.tolist()
    starts_l = starts_all.tolist()
    order: list[np.ndarray] = []
    q = 0  # pair counter
    for x, y in zip(p0.tolist(), p1.tolist(), strict=True):
        k = y - x
        links: list[list[int]] = [[] for _ in range(k)]
        for i in range(1, k):
            links[i - 1].append(la[q])
            links[i].append(lb[q])
            q += 1
        order.append(np.asarray(merge_indices(sizes_l[x:y], links), np.int64) + starts_l[x])
    n_each = [len(o) for o in order]
    merged = (pts[np.concatenate(order)] / np.repeat(wh, n_each, axis=0)).ravel()
    out: list[tuple[int, np.ndarray]] = []
    pos = 0
    for r, c in zip(mrows, n_each, strict=True):
        out.append((r, merged[2 * pos : 2 * (pos + c)]))
        pos += c
    return out


def _dedup(vals: np.ndarray, lengths: np.ndarray, row_img: np.ndarray) -> np.ndarray:
    """Rows to keep: within one image, a row equal (as numbers) to an earlier one is dropped."""
    n = lengths.size
    if n < 2:
        return np.ones(n, bool)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    bits = (vals + 0.0).view(np.uint64)
    pos = (np.arange(vals.size, dtype=np.int64) - np.repeat(starts, lengths)).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = bits * np.uint64(0x9E3779B97F4A7C15) + pos * np.uint64(0xC2B2AE3D27D4EB4F)
        h1 = np.bitwise_xor.reduceat(mixed ^ (mixed >> np.uint64(29)), starts)
        h2 = np.add.reduceat(mixed, starts)
    key = np.stack([row_img.astype(np.uint64), lengths.astype(np.uint64), h1, h2], 1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    cand = np.flatnonzero(first[inverse] != np.arange(n))
    keep = np.ones(n, bool)
    for r in cand.tolist():
        row = vals[starts[r] : starts[r] + lengths[r]]
        for q in range(r - 1, -1, -1):  # compare with the earlier rows of the same image
            if row_img[q] != row_img[r]:
                break
            if keep[q] and lengths[q] == lengths[r] and np.array_equal(vals[starts[q] : starts[q] + lengths[q]], row):
                keep[r] = False
                break
    return keep


def render_batch(b: _Batch, task: str) -> tuple[bytes, np.ndarray, int]:
    """Label text of a batch, byte offset of each image's end, number of rows."""
    vals, lengths, row_img, _ = _build_rows(b, task)
    keep = _dedup(vals, lengths, row_img)
    if not keep.all():
        vals = vals[np.repeat(keep, lengths)]
        lengths = lengths[keep]
        row_img = row_img[keep]
    seps = np.full(vals.size, 32, np.uint8)
    if lengths.size:
        seps[np.cumsum(lengths) - 1] = 10
    text, tok_len = format_g(vals, seps)
    tok_end = np.cumsum(tok_len)
    n_img = len(b.label_paths)
    # byte end of each image = end of its last token; images without rows end where the previous ended
    rows_per_img = np.bincount(row_img, minlength=n_img)
    row_end_tok = np.cumsum(lengths) - 1
    last_row = np.cumsum(rows_per_img) - 1
    img_end = np.zeros(n_img, np.int64)
    has = last_row >= 0
    img_end[has] = tok_end[row_end_tok[last_row[has]]] if tok_end.size else 0
    img_end = np.maximum.accumulate(img_end) if n_img else img_end
    return text, img_end, int(lengths.size)


def _write_files(labels_dir: str, label_paths: list[str], text: bytes, img_end: np.ndarray) -> None:
    """One label file per image: ``text[previous end:end]`` (an empty file when nothing)."""
    mv = memoryview(text)
    made: set[str] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    start = 0
    for rel, end in zip(label_paths, img_end.tolist(), strict=True):
        head = rel.rpartition("/")[0]
        if head and head not in made:
            os.makedirs(os.path.join(labels_dir, head), exist_ok=True)
            made.add(head)
        fd = os.open(os.path.join(labels_dir, rel), flags, 0o644)
        try:
            if end > start:
                os.write(fd, mv[start:end])
        finally:
            os.close(fd)
        start = end


def write_batch(b: _Batch, task: str, labels_dir: str) -> int:
    """Render and write one batch (runs in the worker process)."""
    gc.disable()
    text, img_end, rows = render_batch(b, task)
    _write_files(labels_dir, b.label_paths, text, img_end)
    return rows


def _noop() -> int:
    return os.getpid()


class LabelWriter:
    """Renders and writes label batches.

    File creation is done by a background thread (``open``/``write`` release the GIL), so the
    file system's latency overlaps with formatting the next batch. With ``workers=2`` a second
    process renders and writes every other batch; create the writer *before* loading a big file so
    that process is forked while this one is still small.
    """

    def __init__(self, workers: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.workers = max(1, workers)
        self._pool: Any = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-io")
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers - 1, mp_context=ctx)
            self._pool.submit(_noop).result()  # start it now, while this process is small

    def run(self, batches: Iterator[_Batch], task: str, labels_dir: Path) -> int:
        rows = 0
        pending: list[Any] = []  # worker-process futures (return row counts)
        io: list[Any] = []  # writes of this process's batches
        for i, b in enumerate(batches):
            if self._pool is not None and i % self.workers:
                pending.append(self._pool.submit(write_batch, b, task, str(labels_dir)))
                while len(pending) > self.workers:
                    rows += pending.pop(0).result()
                continue
            text, img_end, n = render_batch(b, task)
            rows += n
            io.append(self._io.submit(_write_files, str(labels_dir), b.label_paths, text, img_end))
            while len(io) > 2:
                io.pop(0).result()
        for f in io:
            f.result()
        for f in pending:
            rows += f.result()
        return rows

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def write_yolo_labels(
    ds: FastDataset,
    task: str,
    labels_dir: Path,
    *,
    writer: LabelWriter | None = None,
    batch_images: int = 4000,
) -> int:
    """Write one label file per image under `labels_dir` (which must exist and be empty).
    Returns the number of label rows written."""
    if task not in FAST_TASKS:
        raise FastPathUnsupported(f"the fast path does not handle {task}")
    own = writer is None
    w = writer or LabelWriter(1)
    was = gc.isenabled()
    gc.disable()  # millions of short-lived lists: the cyclic GC would only rescan them
    try:
        return w.run(_iter_batches(ds, task, batch_images), task, labels_dir)
    finally:
        if was:
            gc.enable()
        if own:
            w.close()
