"""What a dataset can train (contract 3 in docs/architecture.md), derived from its annotations.

`summarize` counts the kinds of annotations once (the result is JSON and is cached in the database);
`check_compatibility` answers, for one task, whether the annotations serve it natively, after a
named conversion, or not at all, with a reason a person understands.

Kinds of annotation (one annotation may carry several):

- image label: only ``category_id`` (no bbox, polygon, keypoints or rotated box);
- box: ``bbox``; a *standalone* box is one without a polygon or rotated box (e.g. a detection box,
  or a pose instance's person box);
- polygon: a non-empty ``segmentation``;
- keypoints: ``keypoints`` on a category that declares keypoint names;
- rotated box: ``rotated_bbox`` ``[cx, cy, w, h, angle_deg]``.

Rotated boxes: the side of length ``w`` points along ``(cos a, sin a)`` in image coordinates (x to
the right, y down), so a positive angle turns the box clockwise on screen, as in OpenCV.
`min_area_rect` returns angles in ``[0, 90)``.

Conversion names are fixed strings shared with the converters: see `CONVERSIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from trainer_runtime.formats.schema import TASK_TYPES, Annotation, DiceDataset

POLYGON_TO_BOX = "polygon_to_box"
ROTATED_TO_BOX = "rotated_to_box"
KEYPOINTS_TO_BOX = "keypoints_to_box"
DOMINANT_CLASS = "dominant_class"
POLYGON_TO_ROTATED_BOX = "polygon_to_rotated_box"
CONVERSIONS = (POLYGON_TO_BOX, ROTATED_TO_BOX, KEYPOINTS_TO_BOX, DOMINANT_CLASS, POLYGON_TO_ROTATED_BOX)

NATIVE, CONVERTIBLE, INCOMPATIBLE = "native", "convertible", "incompatible"

_KINDS = ("image_labels", "boxes", "standalone_boxes", "polygons", "keypoints", "rotated_boxes")


# ------------------------------------------------------------------------------------ geometry


def polygon_area(poly: Sequence[float]) -> float:
    """Area of a flat polygon ``[x1, y1, x2, y2, ...]`` (shoelace formula)."""
    n = len(poly) // 2
    if n < 3:
        return 0.0
    xs = poly[0 : 2 * n : 2]
    ys = poly[1 : 2 * n : 2]
    s = 0.0
    for i in range(n):
        j = (i + 1) % n
        s += xs[i] * ys[j] - xs[j] * ys[i]
    return abs(s) / 2.0


def _as_points(polygon: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim == 1:
        if pts.size % 2:
            raise ValueError("a flat polygon needs an even number of coordinates")
        pts = pts.reshape(-1, 2)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError("polygon must be [x1, y1, x2, y2, ...] or a list of (x, y) points")
    return pts


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; returns hull points counter-clockwise (math orientation)."""
    uniq = np.unique(pts, axis=0)  # sorted by x then y
    if len(uniq) <= 2:
        return uniq

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    lower: list[np.ndarray] = []
    for p in uniq:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[np.ndarray] = []
    for p in uniq[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def normalize_rotated_box(cx: float, cy: float, w: float, h: float, angle_deg: float) -> list[float]:
    """The same rectangle with its angle in ``[0, 90)`` (swapping w and h when needed)."""
    a = angle_deg % 180.0
    if a >= 90.0:
        a -= 90.0
        w, h = h, w
    if a >= 90.0 - 1e-9:  # float noise just below 90
        a = 0.0
        w, h = h, w
    return [float(cx), float(cy), float(w), float(h), float(a)]


def min_area_rect(polygon: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> list[float]:
    """Minimum-area enclosing rectangle ``[cx, cy, w, h, angle_deg]`` (angle in ``[0, 90)``).

    Tries the direction of every convex-hull edge (the optimum is aligned with one). `polygon` is
    flat ``[x1, y1, ...]`` or a list of points. Degenerate input (all points on a line) yields a
    zero height.
    """
    pts = _as_points(polygon)
    hull = _convex_hull(pts)
    if len(hull) == 1:
        return [float(hull[0, 0]), float(hull[0, 1]), 0.0, 0.0, 0.0]
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0]) % (np.pi / 2)
    angles = np.unique(np.round(angles, 12))
    cos, sin = np.cos(angles), np.sin(angles)
    # Coordinates of every hull point in each candidate frame: u along (cos, sin), v perpendicular.
    u = hull[:, 0][None, :] * cos[:, None] + hull[:, 1][None, :] * sin[:, None]
    v = -hull[:, 0][None, :] * sin[:, None] + hull[:, 1][None, :] * cos[:, None]
    umin, umax = u.min(axis=1), u.max(axis=1)
    vmin, vmax = v.min(axis=1), v.max(axis=1)
    areas = (umax - umin) * (vmax - vmin)
    best = int(np.argmin(areas))
    c, s = cos[best], sin[best]
    uc, vc = (umin[best] + umax[best]) / 2, (vmin[best] + vmax[best]) / 2
    cx, cy = uc * c - vc * s, uc * s + vc * c
    w, h = umax[best] - umin[best], vmax[best] - vmin[best]
    return normalize_rotated_box(float(cx), float(cy), float(w), float(h), math.degrees(float(angles[best])))


def rotated_box_corners(rbox: Sequence[float]) -> list[tuple[float, float]]:
    """The four corners of ``[cx, cy, w, h, angle_deg]``, in order around the box."""
    cx, cy, w, h, a = (float(v) for v in rbox[:5])
    t = math.radians(a)
    c, s = math.cos(t), math.sin(t)
    corners = []
    for du, dv in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        corners.append((cx + du * c - dv * s, cy + du * s + dv * c))
    return corners


def _get(ann: Annotation | Mapping[str, Any], key: str) -> Any:
    if isinstance(ann, Mapping):
        return ann.get(key)
    return getattr(ann, key, None)


def annotation_area(ann: Annotation | Mapping[str, Any]) -> float:
    """Geometric area of one annotation: polygons, else bbox, else rotated box, else `area`, else
    the extent of its visible keypoints; 0 for an image-level label."""
    seg = _get(ann, "segmentation")
    if seg:
        return float(sum(polygon_area(p) for p in seg))
    bbox = _get(ann, "bbox")
    if bbox and len(bbox) >= 4:
        return max(float(bbox[2]), 0.0) * max(float(bbox[3]), 0.0)
    rb = _get(ann, "rotated_bbox")
    if rb and len(rb) >= 4:
        return max(float(rb[2]), 0.0) * max(float(rb[3]), 0.0)
    area = _get(ann, "area")
    if area:
        return float(area)
    kps = _get(ann, "keypoints")
    if kps:
        pts = [(kps[i], kps[i + 1]) for i in range(0, len(kps) - 2, 3) if kps[i + 2]]
        if pts:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            return float((max(xs) - min(xs)) * (max(ys) - min(ys)))
    return 0.0


def _is_image_label(ann: Annotation | Mapping[str, Any]) -> bool:
    return not (_get(ann, "bbox") or _get(ann, "segmentation") or _get(ann, "keypoints") or _get(ann, "rotated_bbox"))


def dominant_class(annotations: Iterable[Annotation | Mapping[str, Any]]) -> int:
    """The category of one image for classification.

    Image-level labels win (the most frequent one); otherwise the class with the largest total
    area. Ties go to the class with more annotations, then the smaller category id. Raises
    `ValueError` for an image without annotations.
    """
    labels: dict[int, int] = {}
    area: dict[int, float] = {}
    count: dict[int, int] = {}
    for ann in annotations:
        cid = int(_get(ann, "category_id"))
        count[cid] = count.get(cid, 0) + 1
        if _is_image_label(ann):
            labels[cid] = labels.get(cid, 0) + 1
        else:
            area[cid] = area.get(cid, 0.0) + annotation_area(ann)
    if not count:
        raise ValueError("dominant_class needs at least one annotation")
    if labels:
        return min(labels, key=lambda c: (-labels[c], c))
    return min(area, key=lambda c: (-area[c], -count[c], c))


# ------------------------------------------------------------------------------------- summary


def summarize(ds: DiceDataset) -> dict[str, Any]:
    """A JSON-serialisable summary of what the annotations hold, with every task's compatibility.

    Keys: ``name``; ``counts`` (and the same numbers at the top level): ``images``,
    ``labeled_images``, ``annotations``, ``image_labels``, ``boxes``, ``standalone_boxes``,
    ``polygons``, ``keypoints``, ``rotated_boxes``; ``images_with`` (how many images have each kind);
    ``categories`` ``[{"id", "name", "count"}]``; ``keypoint_categories``
    ``[{"id", "name", "keypoints"}]``; ``tasks`` ``{task_type: {"status", "conversion", "reason"}}``.
    """
    kp_cats = {c.id: c for c in ds.categories if c.keypoints}
    known_images = {img.id for img in ds.images}
    counts = dict.fromkeys(_KINDS, 0)
    images_with: dict[str, set[int]] = {k: set() for k in _KINDS}
    per_cat: dict[int, int] = {}
    labeled: set[int] = set()
    for ann in ds.annotations:
        iid = ann.image_id
        if iid in known_images:
            labeled.add(iid)
        per_cat[ann.category_id] = per_cat.get(ann.category_id, 0) + 1
        has_poly = bool(ann.segmentation)
        has_rot = bool(ann.rotated_bbox)
        has_kp = bool(ann.keypoints) and ann.category_id in kp_cats
        kinds: list[str] = []
        if ann.bbox:
            kinds.append("boxes")
            if not has_poly and not has_rot:
                kinds.append("standalone_boxes")
        if has_poly:
            kinds.append("polygons")
        if has_kp:
            kinds.append("keypoints")
        if has_rot:
            kinds.append("rotated_boxes")
        if not (ann.bbox or has_poly or has_rot or ann.keypoints):
            kinds.append("image_labels")
        for k in kinds:
            counts[k] += 1
            images_with[k].add(iid)
    full_counts: dict[str, int] = {
        "images": len(ds.images),
        "labeled_images": len(labeled),
        "annotations": len(ds.annotations),
        **counts,
    }
    summary: dict[str, Any] = {
        "name": ds.dataset.name,
        "counts": full_counts,
        **full_counts,
        "images_with": {k: len(v) for k, v in images_with.items()},
        "categories": [{"id": c.id, "name": c.name, "count": per_cat.get(c.id, 0)} for c in ds.categories],
        "keypoint_categories": [
            {"id": c.id, "name": c.name, "keypoints": list(c.keypoints or [])} for c in kp_cats.values()
        ],
    }
    summary["tasks"] = {t: _decide(summary, t, ds.dataset.name or "This dataset") for t in TASK_TYPES}
    return summary


def _n(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _result(status: str, conversion: str | None, reason: str) -> dict[str, Any]:
    return {"status": status, "conversion": conversion, "reason": reason}


class _Tally:
    """The counts `_decide` reads from a `summarize` result (also one stored before a key existed)."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self.counts: Mapping[str, Any] = summary.get("counts") or summary
        self.with_: Mapping[str, Any] = summary.get("images_with") or {}
        self.kp_cats: list[Any] = summary.get("keypoint_categories") or []
        self.images = self.c("images")
        self.boxes, self.plain, self.polys, self.kps, self.rots, self.labels = (
            self.c("boxes"),
            self.c("standalone_boxes"),
            self.c("polygons"),
            self.c("keypoints"),
            self.c("rotated_boxes"),
            self.c("image_labels"),
        )
        if "standalone_boxes" not in self.counts:  # a summary from before the key existed
            self.plain = self.boxes if not (self.polys or self.rots) else 0

    def c(self, k: str) -> int:
        return int(self.counts.get(k, 0) or 0)

    def on(self, k: str) -> str:
        n = int(self.with_.get(k, 0) or 0)
        return f" on {_n(n, 'image')}" if n else ""


def _decide_classification(t: _Tally, name: str) -> dict[str, Any]:
    if t.labels:
        return _result(NATIVE, None, f"{name} has {_n(t.labels, 'image-level label')}{t.on('image_labels')}.")
    parts = []
    if t.polys:
        parts.append(_n(t.polys, "polygon"))
    if t.rots:
        parts.append(_n(t.rots, "rotated box", "rotated boxes"))
    if t.plain:
        parts.append(_n(t.plain, "box", "boxes"))
    if t.kps and not t.plain:
        parts.append(_n(t.kps, "keypoint instance"))
    what = " and ".join(parts) if parts else _n(t.c("annotations"), "annotation")
    return _result(
        CONVERTIBLE,
        DOMINANT_CLASS,
        f"{name} has {what} on {_n(t.c('labeled_images'), 'image')} but no image-level labels; each image"
        " is labeled with its dominant class (the class with the largest total area).",
    )


def _decide_detection(t: _Tally, name: str) -> dict[str, Any]:
    if t.plain:
        return _result(
            NATIVE,
            None,
            f"{name} has {_n(t.plain, 'bounding box', 'bounding boxes')}{t.on('standalone_boxes')}.",
        )
    if t.rots:
        return _result(
            CONVERTIBLE,
            ROTATED_TO_BOX,
            f"{name} has {_n(t.rots, 'rotated box', 'rotated boxes')}{t.on('rotated_boxes')}; each becomes"
            " the axis-aligned box around it for detection.",
        )
    if t.polys:
        return _result(
            CONVERTIBLE,
            POLYGON_TO_BOX,
            f"{name} has {_n(t.polys, 'polygon')}{t.on('polygons')}; each polygon becomes its bounding box"
            " for detection.",
        )
    if t.kps:
        return _result(
            CONVERTIBLE,
            KEYPOINTS_TO_BOX,
            f"{name} has {_n(t.kps, 'keypoint instance')}{t.on('keypoints')} without boxes; each becomes"
            " the box around its visible keypoints.",
        )
    if t.boxes:  # boxes that travel with polygons/rotated boxes but nothing above matched
        return _result(NATIVE, None, f"{name} has {_n(t.boxes, 'bounding box', 'bounding boxes')}{t.on('boxes')}.")
    return _result(
        INCOMPATIBLE,
        None,
        f"{name} has only image-level labels ({_n(t.labels, 'label')}); image-level labels have no object"
        " locations, so it cannot train detection. Draw boxes first.",
    )


def _decide_segmentation(t: _Tally, name: str) -> dict[str, Any]:
    if t.polys:
        return _result(NATIVE, None, f"{name} has {_n(t.polys, 'polygon')}{t.on('polygons')}.")
    if t.boxes or t.rots:
        what = _n(t.boxes, "box", "boxes") if t.boxes else _n(t.rots, "rotated box", "rotated boxes")
        return _result(
            INCOMPATIBLE,
            None,
            f"{name} has {what} but no polygons; boxes do not give object masks, so it cannot train"
            " instance segmentation. Draw polygons first.",
        )
    return _result(
        INCOMPATIBLE,
        None,
        f"{name} has no polygons; instance segmentation needs a polygon outline for each object.",
    )


def _decide_oriented(t: _Tally, name: str) -> dict[str, Any]:
    if t.rots:
        return _result(NATIVE, None, f"{name} has {_n(t.rots, 'rotated box', 'rotated boxes')}{t.on('rotated_boxes')}.")
    if t.polys:
        return _result(
            CONVERTIBLE,
            POLYGON_TO_ROTATED_BOX,
            f"{name} has {_n(t.polys, 'polygon')}{t.on('polygons')}; each polygon becomes its minimum-area"
            " rotated rectangle for oriented detection.",
        )
    if t.boxes:
        return _result(
            INCOMPATIBLE,
            None,
            f"{name} has {_n(t.boxes, 'axis-aligned box', 'axis-aligned boxes')} but no rotated boxes or"
            " polygons; axis-aligned boxes carry no orientation.",
        )
    return _result(
        INCOMPATIBLE,
        None,
        f"{name} has no rotated boxes or polygons; oriented detection needs the orientation of each object.",
    )


def _decide_pose(t: _Tally, name: str) -> dict[str, Any]:
    if t.kps:
        names = ", ".join(str(k.get("name")) for k in t.kp_cats if isinstance(k, Mapping)) or "its categories"
        return _result(NATIVE, None, f"{name} has {_n(t.kps, 'keypoint instance')}{t.on('keypoints')} ({names}).")
    if t.kp_cats:
        return _result(
            INCOMPATIBLE,
            None,
            f"{name} declares keypoint names but has no keypoint annotations; label keypoints first.",
        )
    return _result(
        INCOMPATIBLE,
        None,
        f"{name} has no keypoints; pose estimation needs categories with keypoint names and keypoint annotations.",
    )


_DECIDERS = {
    "image_classification": _decide_classification,
    "object_detection": _decide_detection,
    "instance_segmentation": _decide_segmentation,
    "oriented_object_detection": _decide_oriented,
    "pose_estimation": _decide_pose,
}


def _decide(summary: Mapping[str, Any], task: str, name: str) -> dict[str, Any]:
    t = _Tally(summary)
    if t.c("annotations") == 0:
        return _result(INCOMPATIBLE, None, f"{name} has {_n(t.images, 'image')} and no annotations; label it first.")
    decide = _DECIDERS.get(task)
    if decide is None:
        raise ValueError(f"unknown task type {task!r}; valid: {', '.join(TASK_TYPES)}")  # pragma: no cover
    return decide(t, name)


def check_compatibility(
    dataset: DiceDataset | Mapping[str, Any] | None,
    task_type: str,
    *,
    dataset_name: str | None = None,
) -> dict[str, Any]:
    """``{"status": "native"|"convertible"|"incompatible", "conversion": str|None, "reason": str}``.

    `dataset` is a `DiceDataset`, a `summarize` result, or `None` for a dataset that has images but
    no annotations.json. Raises `ValueError` for an unknown task type.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; valid task types: {', '.join(TASK_TYPES)}")
    if dataset is None:
        name = dataset_name or "This dataset"
        return _result(INCOMPATIBLE, None, f"{name} has images but no annotations.json; label it first.")
    summary = summarize(dataset) if isinstance(dataset, DiceDataset) else dataset
    name = dataset_name or str(summary.get("name") or "") or "This dataset"
    return _decide(summary, task_type, name)
