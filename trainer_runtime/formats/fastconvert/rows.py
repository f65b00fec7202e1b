"""Label rows of a batch of images: batches cut from a `FastDataset` (`iter_batches`), polygons
decoded in bulk, boxes and polygons normalised with numpy, multi-polygon merges and duplicate rows
handled as `yolo_rows` does, and the text rendered with `format_g` (`render_batch`).
See docs/architecture.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from trainer_runtime.formats.fastconvert.dataset import FastDataset, columns
from trainer_runtime.formats.fastconvert.gformat import format_g
from trainer_runtime.formats.fastconvert.scope import FastPathUnsupported
from trainer_runtime.formats.yolo_rows import label_relpath, merge_indices, valid_polygons


@dataclass
class Batch:
    """One batch of images, in a form that pickles cheaply to a worker process."""

    label_paths: list[str]  # relative label paths (…/name.txt), one per image
    first_ann: np.ndarray  # per image: start offset into the batch's annotations (len = images+1)
    wh: np.ndarray  # (images, 2) float64
    cls: np.ndarray  # per annotation: class index
    boxes: np.ndarray  # (annotations, 4) float64 bbox x, y, w, h
    crowd: np.ndarray  # per annotation: bool
    segs: bytes | None  # JSON array of the annotations' segmentations (segmentation task only)


_NULL = b"null"


def iter_batches(ds: FastDataset, task: str, batch_images: int) -> Iterator[Batch]:
    """The dataset's YOLO label rows in batches of `batch_images` images; FastPathUnsupported when an
    annotation has no box (the slow path handles it)."""
    n_img = len(ds.images)
    c = columns(ds)
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
        yield Batch(
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


def _build_rows(b: Batch, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def render_batch(b: Batch, task: str) -> tuple[bytes, np.ndarray, int]:
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
