"""YOLO label rows: the reference rules shared by `converters` (pydantic datasets) and `fastconvert`
(the byte-identical fast path), in their own module so that neither imports the other.

Rows per task (`yolo_rows`; `fastconvert` reproduces them byte for byte):

- every task skips ``iscrowd`` annotations and annotations whose normalised box has ``w <= 0`` or
  ``h <= 0``; within one image a row equal (as numbers) to an earlier row is dropped;
- object_detection: ``cls cx cy w h``; the box is ``bbox``, else derived (polygon_to_box: extent of
  the polygons; rotated_to_box: extent of the corners; keypoints_to_box: extent of the labelled
  keypoints);
- instance_segmentation: ``cls x1 y1 x2 y2 ...``: one polygon as is, several merged into one outline
  the way Ultralytics' ``merge_multi_segment`` does; polygons with fewer than 3 points or an odd
  number of values are dropped; an annotation without a usable polygon gets its box as a
  4-corner polygon;
- pose_estimation: ``cls cx cy w h`` + ``x y v`` per keypoint (x, y normalised, v as given);
  annotations with no labelled keypoint are skipped (like ``convert_coco(use_keypoints=True)``);
- oriented_object_detection: ``cls x1 y1 x2 y2 x3 y3 x4 y4``: the corners of ``rotated_bbox``, else
  of the polygons' minimum-area rectangle (polygon_to_rotated_box), else of ``bbox``;
- numbers are written with ``'%g'`` (six significant digits), like Ultralytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer_runtime.formats.capabilities import min_area_rect, rotated_box_corners
from trainer_runtime.formats.schema import Annotation


def label_relpath(rel: str) -> str:
    """``a/b.jpg`` -> ``a/b.txt`` (Path.with_suffix on the last part)."""
    head, _, base = rel.rpartition("/")
    stem = base.rsplit(".", 1)[0] if "." in base[1:] else base
    return f"{head}/{stem}.txt" if head else f"{stem}.txt"


def valid_polygons(seg: Any) -> list[list[float]]:
    """Polygons that can be written: number lists of even length >= 6 (others are dropped)."""
    if not isinstance(seg, list):
        return []
    return [
        p
        for p in seg
        if isinstance(p, list)
        and len(p) >= 6
        and not len(p) % 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in p)
    ]


def _extent(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    x0, y0 = min(xs), min(ys)
    return [x0, y0, max(xs) - x0, max(ys) - y0]


def annotation_box(ann: Annotation) -> list[float] | None:
    """``[x, y, w, h]``: bbox, else the extent of the polygons, the rotated box corners or the
    labelled keypoints (the polygon_to_box / rotated_to_box / keypoints_to_box conversions)."""
    if ann.bbox is not None and len(ann.bbox) == 4:
        return list(ann.bbox)
    polys = valid_polygons(ann.segmentation)
    if polys:
        pts = [c for p in polys for c in p]
        return _extent(pts[0::2], pts[1::2])
    if ann.rotated_bbox and len(ann.rotated_bbox) >= 5:
        cs = rotated_box_corners(ann.rotated_bbox)
        return _extent([c[0] for c in cs], [c[1] for c in cs])
    kps = ann.keypoints or []
    pts2 = [(kps[i], kps[i + 1]) for i in range(0, len(kps) - 2, 3) if kps[i + 2]]
    if pts2:
        return _extent([p[0] for p in pts2], [p[1] for p in pts2])
    return None


def _min_index(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i = int(np.argmin(d))
    return i // d.shape[1], i % d.shape[1]


def merge_indices(sizes: Sequence[int], links: Sequence[Sequence[int]]) -> list[int]:
    """Point order of Ultralytics' ``merge_multi_segment`` as indices into the concatenated points.

    `sizes`: points per polygon; `links[i]`: the point of polygon i closest to polygon i-1 (absent
    for the first) and to polygon i+1 (absent for the last). The walk goes forward through every
    polygon (each rolled to start at its link, closed with its first point, middle ones cut at
    their second link, reversed when needed) and back through the middle ones.
    """
    k = len(sizes)
    offs = [0] * k
    for i in range(1, k):
        offs[i] = offs[i - 1] + sizes[i - 1]
    rolled: list[list[int]] = []
    out: list[int] = []
    for i in range(k):
        n = sizes[i]
        idx = list(links[i])
        rev = len(idx) == 2 and idx[0] > idx[1]
        if rev:
            idx = [n - 1 - x for x in idx]
        r = idx[0]
        seq = [*range(r, n), *range(0, r), r]
        o = offs[i]
        seq = [o + n - 1 - x for x in seq] if rev else [o + x for x in seq]
        rolled.append(seq)
        out.extend(seq if i in (0, k - 1) else seq[: idx[1] - idx[0] + 1])
    for i in range(k - 2, 0, -1):
        out.extend(rolled[i][abs(links[i][1] - links[i][0]) :])
    return out


def merge_polygons(polys: Sequence[np.ndarray]) -> np.ndarray:
    """Join polygons (each ``(n, 2)``) into one outline as Ultralytics' ``merge_multi_segment``:
    neighbours are linked at their closest pair of points (first in row-major order on ties); see
    `merge_indices` for the walk."""
    k = len(polys)
    if k == 1:
        return polys[0]
    links: list[list[int]] = [[] for _ in range(k)]
    for i in range(1, k):
        a, b = _min_index(polys[i - 1], polys[i])
        links[i - 1].append(a)
        links[i].append(b)
    pts = np.concatenate(polys, axis=0)
    return pts[merge_indices([len(p) for p in polys], links)]


def _norm_box(box: Sequence[float], w: int, h: int) -> list[float]:
    b = np.array(box, dtype=np.float64)
    b[:2] += b[2:] / 2
    b[[0, 2]] /= w
    b[[1, 3]] /= h
    return [float(x) for x in b.tolist()]


def yolo_rows(
    anns: Sequence[Annotation], width: int, height: int, task: str, cls_index: dict[int, int]
) -> list[tuple[float, ...]]:
    """The label rows of one image (reference implementation; see the module doc for the rules)."""
    rows: list[tuple[float, ...]] = []
    for ann in anns:
        if ann.iscrowd:
            continue
        cls = cls_index[ann.category_id]
        if task == "pose_estimation" and not any((ann.keypoints or [])[2::3]):
            continue
        if task == "oriented_object_detection":
            rb = _rotated_box(ann)
            if rb is None or not rb[2] > 0 or not rb[3] > 0:
                continue
            corners = rotated_box_corners(rb)
            rows.append((cls, *(v for x, y in corners for v in (x / width, y / height))))
            continue
        raw = annotation_box(ann)
        if raw is None:
            continue
        box = _norm_box(raw, width, height)
        if box[2] <= 0 or box[3] <= 0:
            continue
        if task == "object_detection":
            rows.append((cls, *box))
        elif task == "pose_estimation":
            k = np.array(ann.keypoints, dtype=np.float64).reshape(-1, 3) / np.array([width, height, 1])
            rows.append((cls, *box, *k.reshape(-1).tolist()))
        else:  # instance_segmentation
            polys = valid_polygons(ann.segmentation)
            if not polys:
                cx, cy, bw, bh = box
                x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
                rows.append((cls, x1, y1, x2, y1, x2, y2, x1, y2))
            elif len(polys) > 1:
                merged = merge_polygons([np.array(p, np.float64).reshape(-1, 2) for p in polys])
                rows.append((cls, *(merged / np.array([width, height])).reshape(-1).tolist()))
            else:
                s = (np.array(polys[0], np.float64).reshape(-1, 2) / np.array([width, height])).reshape(-1)
                rows.append((cls, *s.tolist()))
    return list(dict.fromkeys(rows))


def _rotated_box(ann: Annotation) -> list[float] | None:
    if ann.rotated_bbox and len(ann.rotated_bbox) >= 5:
        return [float(v) for v in ann.rotated_bbox[:5]]
    polys = valid_polygons(ann.segmentation)
    if polys:
        return min_area_rect([c for p in polys for c in p])
    if ann.bbox and len(ann.bbox) == 4:
        x, y, w, h = (float(v) for v in ann.bbox)
        return [x + w / 2, y + h / 2, w, h, 0.0]
    return None


def format_rows(rows: Sequence[Sequence[float]]) -> str:
    """Rows as YOLO text, numbers with ``'%g'`` (Ultralytics' formatting)."""
    return "".join(("%g " * len(r)).rstrip() % tuple(r) + "\n" for r in rows)
