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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from trainer_runtime.metrics import (
    COCO_IOU_THRESHOLDS,
    RECALL_POINTS,
    confusion_matrix,
    evaluate_detections,
    per_class_report,
)

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


def _mask(polys: Sequence[Sequence[Sequence[float]]], width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.new("1", (max(1, width), max(1, height)), 0)
    draw = ImageDraw.Draw(im)
    for poly in polys:
        pts = [(float(p[0]), float(p[1])) for p in poly]
        if len(pts) >= 3:
            draw.polygon(pts, fill=1)
    return np.asarray(im, dtype=bool)


def _mask_iou(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, ma in enumerate(a):
        for j, mb in enumerate(b):
            inter = np.logical_and(ma, mb).sum()
            union = np.logical_or(ma, mb).sum()
            out[i, j] = inter / union if union else 0.0
    return out


def _ap_with_iou(
    dets: Sequence[tuple[np.ndarray, np.ndarray, list[Any]]],
    gts: Sequence[tuple[np.ndarray, list[Any]]],
    class_ids: Sequence[int],
    iou_fn: Callable[[Sequence[Any], Sequence[Any]], np.ndarray],
) -> np.ndarray:
    """COCO AP (101-point) per class and threshold with a custom IoU (same rules as
    `trainer_runtime.metrics.evaluate_detections`)."""
    thresholds = COCO_IOU_THRESHOLDS
    ap = np.full((len(class_ids), len(thresholds)), np.nan)
    for ci, cid in enumerate(class_ids):
        items: list[tuple[float, int, Any]] = []
        gt_by_img: dict[int, list[Any]] = {}
        total = 0
        for img, ((labels, scores, objs), (glabels, gobjs)) in enumerate(zip(dets, gts, strict=True)):
            for k in np.nonzero(labels == cid)[0]:
                items.append((float(scores[k]), img, objs[k]))
            g = [gobjs[k] for k in np.nonzero(glabels == cid)[0]]
            gt_by_img[img] = g
            total += len(g)
        if total == 0:
            continue
        if not items:
            ap[ci] = 0.0
            continue
        order = sorted(range(len(items)), key=lambda i: -items[i][0])
        ious = {}
        for img in {it[1] for it in items}:
            idx = [i for i in order if items[i][1] == img]
            ious[img] = (idx, iou_fn([items[i][2] for i in idx], gt_by_img[img]))
        pos = {img: {i: p for p, i in enumerate(idx)} for img, (idx, _) in ious.items()}
        for ti, thr in enumerate(thresholds):
            used = {img: np.zeros(len(gt_by_img[img]), dtype=bool) for img in gt_by_img}
            tp = np.zeros(len(order))
            for rank, i in enumerate(order):
                img = items[i][1]
                row = ious[img][1][pos[img][i]] if len(gt_by_img[img]) else np.zeros(0)
                best, best_j = -1.0, -1
                for j, v in enumerate(row):
                    if not used[img][j] and v >= thr and v > best:
                        best, best_j = float(v), j
                if best_j >= 0:
                    used[img][best_j] = True
                    tp[rank] = 1
            ctp = np.cumsum(tp)
            recall = ctp / total
            precision = ctp / np.arange(1, len(order) + 1)
            env = np.maximum.accumulate(precision[::-1])[::-1]
            idxs = np.searchsorted(recall, RECALL_POINTS, side="left")
            ap[ci, ti] = float(np.mean([env[k] if k < len(env) else 0.0 for k in idxs]))
    return ap


def detection_metrics(
    items: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]], Mapping[str, int]]],
    class_names: Sequence[str],
    cat_names: Mapping[int, str],
    task_type: str,
) -> dict[str, Any]:
    """`items`: (result, ground-truth annotations, image size {width, height}) per labeled image."""
    index = {n: i for i, n in enumerate(class_names)}
    preds: list[dict[str, Any]] = []
    gts: list[dict[str, Any]] = []
    unknown: Counter[str] = Counter()
    mask_dets: list[tuple[np.ndarray, np.ndarray, list[Any]]] = []
    mask_gts: list[tuple[np.ndarray, list[Any]]] = []
    seg = task_type == "instance_segmentation"
    for result, anns, size in items:
        pb, pl, ps = [], [], []
        masks: list[Any] = []
        for p in result.get("predictions") or []:
            box = p.get("box")
            if not box:
                continue
            pb.append(box)
            pl.append(int(p["class_id"]))
            ps.append(float(p["confidence"]))
            if seg:
                masks.append(p.get("polygon") or [])
        gb, gl, gmasks = [], [], []
        for a in anns:
            name = cat_names.get(int(a["category_id"]))
            if name is None:
                continue
            if name not in index:
                unknown[name] += 1
                continue
            box = _box_xyxy(a)
            if box is None:
                continue
            gb.append(box)
            gl.append(index[name])
            if seg:
                gpolys = [
                    [[poly[i], poly[i + 1]] for i in range(0, len(poly) - 1, 2)] for poly in a.get("segmentation") or []
                ]
                gmasks.append(gpolys)
        preds.append({"boxes": pb, "labels": pl, "scores": ps})
        gts.append({"boxes": gb, "labels": gl})
        if seg:
            w, h = int(size.get("width") or 1), int(size.get("height") or 1)
            mask_dets.append((np.asarray(pl, dtype=int), np.asarray(ps), [_mask([m], w, h) for m in masks]))
            mask_gts.append((np.asarray(gl, dtype=int), [_mask(m, w, h) for m in gmasks]))
    ids = list(range(len(class_names)))
    res = evaluate_detections(preds, gts, class_ids=ids, class_names=dict(enumerate(class_names)))
    out: dict[str, Any] = {
        "evaluated_images": len(items),
        "box_mAP50": res.map50,
        "box_mAP50-95": res.map50_95,
        "per_class": res.per_class(),
        "class_names": list(class_names),
        "unknown_labels": dict(unknown),
    }
    if seg:
        ap = _ap_with_iou(mask_dets, mask_gts, ids, _mask_iou)
        with np.errstate(all="ignore"):
            has = ~np.all(np.isnan(ap), axis=1)
            out["mask_mAP50"] = float(np.nanmean(ap[has, 0])) if has.any() else 0.0
            out["mask_mAP50-95"] = float(np.nanmean(ap[has])) if has.any() else 0.0
        for ci, name in enumerate(class_names):
            if name in out["per_class"] and has[ci]:
                out["per_class"][name]["mask_AP50"] = float(ap[ci, 0])
                out["per_class"][name]["mask_AP50-95"] = float(np.nanmean(ap[ci]))
        out["mask_iou"] = "rasterised polygon IoU (approximation of COCO mask IoU)"
    return finite(out)


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


__all__ = ["DETECTION_TASKS", "classification_metrics", "detection_metrics", "finite", "image_label"]
