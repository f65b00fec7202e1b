"""Aggregate metrics of a batch test run from per-image results and DICE ground truth (numpy only).

Ground truth is matched to the model's classes by category *name* (the model knows names, the
dataset knows ids); images whose label the model does not know are counted in ``unknown_labels``.

- classification: the image-level label (or the dominant class of its annotations, as in
  training); top-1 / top-5 accuracy from the returned top-5, confusion matrix (rows: true class),
  per-class precision / recall / F1 (`trainer_runtime.metrics`).
- detection, segmentation, pose, oriented boxes: COCO box mAP50 and mAP50-95 per class
  (`trainer_runtime.metrics.evaluate_detections`) on axis-aligned boxes (an oriented box counts
  by its extent). Segmentation also gets a mask mAP where the mask IoU is the IoU of the
  *rasterised polygons* (predicted polygon vs annotation polygons, drawn with Pillow at the image
  size): an approximation of COCO's RLE mask IoU, exact up to pixel rounding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainer_runtime.metrics import DetectionAccumulator, confusion_matrix, per_class_report

DETECTION_TASKS = ("object_detection", "instance_segmentation", "pose_estimation", "oriented_object_detection")


def image_label(annotations: Sequence[Mapping[str, Any]], cat_names: Mapping[int, str]) -> str | None:
    """The image-level class: the label annotation, else the most frequent category (ties: the
    larger total area, then the lower id)."""
    if not annotations:
        return None
    counts: Counter[int] = Counter()
    areas: dict[int, float] = {}
    for a in annotations:
        cid = int(a["category_id"])
        counts[cid] += 1
        areas[cid] = areas.get(cid, 0.0) + float(a.get("area") or 0.0)
    best = sorted(counts, key=lambda c: (-counts[c], -areas[c], c))[0]
    return cat_names.get(best)


def _box_xyxy(a: Mapping[str, Any]) -> list[float] | None:
    b = a.get("bbox")
    if b and len(b) == 4:
        return [float(b[0]), float(b[1]), float(b[0]) + float(b[2]), float(b[1]) + float(b[3])]
    pts: list[tuple[float, float]] = []
    for poly in a.get("segmentation") or []:
        pts += [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
    rb = a.get("rotated_bbox")
    if not pts and rb and len(rb) >= 5:
        cx, cy, w, h, ang = (float(v) for v in rb[:5])
        t = np.deg2rad(ang)
        c, s = np.cos(t), np.sin(t)
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
            pts.append((cx + c * dx - s * dy, cy + s * dx + c * dy))
    kps = a.get("keypoints") or []
    if not pts and kps:
        pts = [(float(kps[i]), float(kps[i + 1])) for i in range(0, len(kps) - 2, 3) if kps[i + 2]]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)]


def classification_metrics(
    records: Sequence[tuple[str | None, Sequence[str]]], class_names: Sequence[str]
) -> dict[str, Any]:
    """`records`: (true label or None, predicted labels best first) per image."""
    index = {n: i for i, n in enumerate(class_names)}
    targets: list[int] = []
    preds: list[int] = []
    top1 = top5 = 0
    unknown: Counter[str] = Counter()
    for truth, ranked in records:
        if truth is None:
            continue
        if truth not in index:
            unknown[truth] += 1
            continue
        if not ranked:
            continue
        targets.append(index[truth])
        preds.append(index.get(ranked[0], -1))
        top1 += int(ranked[0] == truth)
        top5 += int(truth in list(ranked)[:5])
    n = len(targets)
    valid = [(t, p) for t, p in zip(targets, preds, strict=True) if p >= 0]
    cm = confusion_matrix([t for t, _ in valid], [p for _, p in valid], len(class_names))
    return {
        "evaluated_images": n,
        "accuracy_top1": top1 / n if n else 0.0,
        "accuracy_top5": top5 / n if n else 0.0,
        "confusion_matrix": cm.astype(int).tolist(),
        "class_names": list(class_names),
        "per_class": per_class_report(cm, list(class_names)),
        "unknown_labels": dict(unknown),
    }


class _Mask:
    """A polygon mask rasterised with Pillow inside its own box (clipped to the image): the same
    pixels as drawing it on a full image canvas, without an image-sized array per object."""

    __slots__ = ("area", "mask", "x0", "x1", "y0", "y1")

    def __init__(self, polys: Sequence[Sequence[Sequence[float]]], width: int, height: int) -> None:
        from PIL import Image, ImageDraw

        shapes = [[(float(p[0]), float(p[1])) for p in poly] for poly in polys]
        shapes = [pts for pts in shapes if len(pts) >= 3]
        xs = [x for pts in shapes for x, _ in pts]
        ys = [y for pts in shapes for _, y in pts]
        self.x0 = self.y0 = self.x1 = self.y1 = 0
        self.mask = np.zeros((0, 0), dtype=bool)
        if shapes:
            self.x0, self.y0 = max(0, int(np.floor(min(xs)))), max(0, int(np.floor(min(ys))))
            self.x1, self.y1 = (
                min(max(1, width), int(np.ceil(max(xs))) + 2),
                min(max(1, height), int(np.ceil(max(ys))) + 2),
            )
        if self.x1 > self.x0 and self.y1 > self.y0:
            im = Image.new("1", (self.x1 - self.x0, self.y1 - self.y0), 0)
            draw = ImageDraw.Draw(im)
            for pts in shapes:
                draw.polygon([(x - self.x0, y - self.y0) for x, y in pts], fill=1)
            self.mask = np.asarray(im, dtype=bool)
        self.area = int(self.mask.sum())

    def iou(self, other: _Mask) -> float:
        x0, x1 = max(self.x0, other.x0), min(self.x1, other.x1)
        y0, y1 = max(self.y0, other.y0), min(self.y1, other.y1)
        inter = 0
        if x1 > x0 and y1 > y0:
            a = self.mask[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]
            b = other.mask[y0 - other.y0 : y1 - other.y0, x0 - other.x0 : x1 - other.x0]
            inter = int(np.logical_and(a, b).sum())
        union = self.area + other.area - inter
        return inter / union if union else 0.0


class DetectionEvaluator:
    """Box mAP (and for segmentation, mask mAP) of a test run, fed one image at a time with `add`
    as its predictions arrive; `result` gives the metrics dict. Both use
    `trainer_runtime.metrics.DetectionAccumulator` (COCO rules, at most 100 detections per image);
    the mask IoU is that of the polygons rasterised at the image size, computed only for the pairs
    of one class in one image, within the overlap of their boxes."""

    def __init__(self, class_names: Sequence[str], cat_names: Mapping[int, str], task_type: str) -> None:
        self.class_names = list(class_names)
        self.cat_names = dict(cat_names)
        self.index = {n: i for i, n in enumerate(self.class_names)}
        self.seg = task_type == "instance_segmentation"
        self.boxes = DetectionAccumulator()
        self.masks = DetectionAccumulator() if self.seg else None
        self.unknown: Counter[str] = Counter()
        self.images = 0

    def add(self, result: Mapping[str, Any], anns: Sequence[Mapping[str, Any]], size: Mapping[str, int]) -> None:
        """One labeled image: the predictor's result, its DICE annotations, {width, height}."""
        self.images += 1
        pb: list[Any] = []
        pl: list[int] = []
        ps: list[float] = []
        ppolys: list[Any] = []
        for p in result.get("predictions") or []:
            box = p.get("box")
            if not box:
                continue
            pb.append(box)
            pl.append(int(p["class_id"]))
            ps.append(float(p["confidence"]))
            if self.seg:
                ppolys.append(p.get("polygon") or [])
        gb: list[Any] = []
        gl: list[int] = []
        gpolys: list[Any] = []
        for a in anns:
            name = self.cat_names.get(int(a["category_id"]))
            if name is None:
                continue
            if name not in self.index:
                self.unknown[name] += 1
                continue
            box = _box_xyxy(a)
            if box is None:
                continue
            gb.append(box)
            gl.append(self.index[name])
            if self.seg:
                flat = a.get("segmentation") or []
                gpolys.append([[[poly[i], poly[i + 1]] for i in range(0, len(poly) - 1, 2)] for poly in flat])
        self.boxes.add({"boxes": pb, "labels": pl, "scores": ps}, {"boxes": gb, "labels": gl})
        if self.masks is not None:
            w, h = int(size.get("width") or 1), int(size.get("height") or 1)
            det_masks: dict[int, _Mask] = {}
            gt_masks: dict[int, _Mask] = {}

            def mask_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
                for k in d:
                    if int(k) not in det_masks:
                        det_masks[int(k)] = _Mask([ppolys[int(k)]], w, h)
                for k in g:
                    if int(k) not in gt_masks:
                        gt_masks[int(k)] = _Mask(list(gpolys[int(k)]), w, h)
                return np.array([[det_masks[int(i)].iou(gt_masks[int(j)]) for j in g] for i in d]).reshape(
                    len(d), len(g)
                )

            self.masks.add_arrays(np.asarray(pl, dtype=int), np.asarray(ps), np.asarray(gl, dtype=int), mask_iou)

    def result(self) -> dict[str, Any]:
        ids = list(range(len(self.class_names)))
        res = self.boxes.result(ids, dict(enumerate(self.class_names)))
        out: dict[str, Any] = {
            "evaluated_images": self.images,
            "box_mAP50": res.map50,
            "box_mAP50-95": res.map50_95,
            "per_class": res.per_class(),
            "class_names": list(self.class_names),
            "unknown_labels": dict(self.unknown),
        }
        if self.masks is not None:
            ap = self.masks.result(ids).ap
            with np.errstate(all="ignore"):
                has = ~np.all(np.isnan(ap), axis=1)
                out["mask_mAP50"] = float(np.nanmean(ap[has, 0])) if has.any() else 0.0
                out["mask_mAP50-95"] = float(np.nanmean(ap[has])) if has.any() else 0.0
            for ci, name in enumerate(self.class_names):
                if name in out["per_class"] and has[ci]:
                    out["per_class"][name]["mask_AP50"] = float(ap[ci, 0])
                    out["per_class"][name]["mask_AP50-95"] = float(np.nanmean(ap[ci]))
            out["mask_iou"] = "rasterised polygon IoU (approximation of COCO mask IoU)"
        cleaned: dict[str, Any] = finite(out)
        return cleaned


def detection_metrics(
    items: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]], Mapping[str, int]]],
    class_names: Sequence[str],
    cat_names: Mapping[int, str],
    task_type: str,
) -> dict[str, Any]:
    """`items`: (result, ground-truth annotations, image size {width, height}) per labeled image."""
    ev = DetectionEvaluator(class_names, cat_names, task_type)
    for result, anns, size in items:
        ev.add(result, anns, size)
    return ev.result()


def finite(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become None (a class without ground truth has no AP)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return finite(value.item())
    return value


__all__ = [
    "DETECTION_TASKS",
    "DetectionEvaluator",
    "classification_metrics",
    "detection_metrics",
    "finite",
    "image_label",
]
