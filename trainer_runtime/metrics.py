"""Evaluation metrics in pure numpy: classification accuracy and COCO-style box mAP.

Used by the torch adapters during validation and reusable for batch test runs (no torch here).

Classification
    `topk_accuracy(scores, targets, ks)` — fraction of samples whose target is among the k highest
    scores (k larger than the number of classes counts every sample as a hit);
    `confusion_matrix(targets, preds, num_classes)` — rows are true classes, columns predictions;
    `per_class_report(cm)` — precision / recall / F1 / support per class.

Detection (COCO conventions)
    Boxes are ``[x1, y1, x2, y2]`` in pixels. For each class and IoU threshold (0.50:0.05:0.95),
    detections of all images are sorted by score (stable, so ties keep input order); each is matched
    to the unmatched ground-truth box of the same class and image with the highest IoU at or above
    the threshold; the precision envelope is sampled at 101 recall points (0, 0.01, ..., 1) and
    averaged. At most `max_dets` detections per image are kept (highest scores). A class without
    ground truth is left out of the mean (its AP is NaN), a class with ground truth but no detections
    scores 0. No area ranges and no crowd regions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.5, 0.95, 10), 2))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)

# ------------------------------------------------------------------------------ classification


def topk_accuracy(scores: Any, targets: Any, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy for each k in `ks`: ``{k: fraction}``; an empty input gives 0.0."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"scores must be (N, C) with N = len(targets); got {s.shape} and {t.shape}")
    out: dict[int, float] = {}
    n, c = s.shape
    if n == 0:
        return {int(k): 0.0 for k in ks}
    # rank of the target = number of classes scoring strictly higher (a tie counts for the target)
    target_scores = s[np.arange(n), t]
    rank = (s > target_scores[:, None]).sum(axis=1)
    for k in ks:
        kk = min(int(k), c)
        out[int(k)] = float((rank < kk).mean())
    return out


def confusion_matrix(targets: Any, preds: Any, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; ``cm[true, pred]``."""
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    p = np.asarray(preds, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError("targets and preds must have the same length")
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes})")
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return np.asarray(cm.reshape(num_classes, num_classes), dtype=np.int64)


def per_class_report(cm: np.ndarray, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0.0 when undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    rows = []
    for i in range(cm.shape[0]):
        prec = tp[i] / predicted[i] if predicted[i] else 0.0
        rec = tp[i] / support[i] if support[i] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        rows.append(
            {
                "class": class_names[i] if class_names is not None else i,
                "precision": float(prec),
                "recall": float(rec),
                "f1": float(f1),
                "support": int(support[i]),
            }
        )
    return rows


# ----------------------------------------------------------------------------------- detection


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of ``[x1, y1, x2, y2]`` boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.asarray(iou)


def xywh_to_xyxy(boxes: Any) -> np.ndarray:
    """Boxes given as [x, y, w, h] rows as an (n, 4) float array of [x1, y1, x2, y2]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def average_precision_101(recall: Any, precision: Any) -> float:
    """COCO 101-point interpolated AP of a precision/recall curve (detections in score order)."""
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    if r.size == 0:
        return 0.0
    # precision envelope: max precision at any recall >= r
    env = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.searchsorted(r, RECALL_POINTS, side="left")
    sampled = np.where(idx < r.size, env[np.minimum(idx, r.size - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class DetectionMetrics:
    """`ap[c, t]`: AP of class c at IoU threshold t (NaN for a class without ground truth)."""

    ap: np.ndarray
    iou_thresholds: tuple[float, ...]
    class_ids: list[int]
    num_gt: dict[int, int]
    num_pred: dict[int, int]
    class_names: dict[int, str] = field(default_factory=dict)

    def _col(self, thr: float) -> int:
        for i, t in enumerate(self.iou_thresholds):
            if abs(t - thr) < 1e-9:
                return i
        raise KeyError(f"IoU threshold {thr} was not evaluated")

    @staticmethod
    def _mean(values: np.ndarray) -> float:
        valid = values[~np.isnan(values)]
        return float(valid.mean()) if valid.size else 0.0

    @property
    def map50(self) -> float:
        return self._mean(self.ap[:, self._col(0.5)]) if self.ap.size else 0.0

    @property
    def map75(self) -> float:
        return self._mean(self.ap[:, self._col(0.75)]) if self.ap.size else 0.0

    @property
    def map50_95(self) -> float:
        if not self.ap.size:
            return 0.0
        per_class = np.array([self._mean(row) if not np.all(np.isnan(row)) else np.nan for row in self.ap])
        return self._mean(per_class)

    def per_class(self) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for i, cid in enumerate(self.class_ids):
            row = self.ap[i]
            has_gt = not np.all(np.isnan(row))
            name = self.class_names.get(cid, str(cid))
            out[name] = {
                "AP50": float(row[self._col(0.5)]) if has_gt and 0.5 in self.iou_thresholds else float("nan"),
                "AP50-95": float(np.nanmean(row)) if has_gt else float("nan"),
                "num_gt": self.num_gt.get(cid, 0),
                "num_pred": self.num_pred.get(cid, 0),
            }
        return out

    def as_metrics(self, prefix: str = "val/") -> dict[str, float]:
        out = {f"{prefix}mAP50-95": self.map50_95}
        if 0.5 in self.iou_thresholds:
            out[f"{prefix}mAP50"] = self.map50
        if 0.75 in self.iou_thresholds:
            out[f"{prefix}mAP75"] = self.map75
        return out


def _as_arrays(item: Mapping[str, Any], with_scores: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(item.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(item.get("labels", []), dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError("boxes and labels must have the same length")
    if with_scores:
        scores = np.asarray(item.get("scores", []), dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError("boxes and scores must have the same length")
    else:
        scores = np.ones(len(boxes))
    return boxes, labels, scores


class DetectionAccumulator:
    """COCO-style detection AP built up one image at a time (`evaluate_detections` in pieces).

    The matching of COCO is per image (an image's detections, best first, each take the unmatched
    ground truth of its class with the highest IoU at or above the threshold), so `add` does all of
    an image's work when its predictions arrive: a batch test run evaluates while the model is still
    predicting the next images, and `result` only sorts the matched flags of each class by score
    and integrates. Per class it keeps the scores and an ``(n, thresholds)`` matrix of true
    positives; the order of equal scores is the order of `add` calls, then of the detections within
    the image, exactly as one stable sort over all images.
    """

    def __init__(self, iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS, max_dets: int | None = 100) -> None:
        self.thresholds = tuple(float(t) for t in iou_thresholds)
        self._thr = np.asarray(self.thresholds, dtype=np.float64)
        self._min_thr = float(self._thr.min()) if self._thr.size else 0.0
        self.max_dets = max_dets
        self.images = 0
        self._scores: dict[int, list[np.ndarray]] = {}
        self._tp: dict[int, list[np.ndarray]] = {}
        self.num_gt: dict[int, int] = {}
        self.num_pred: dict[int, int] = {}

    def add(self, prediction: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> None:
        """One image: ``{"boxes", "labels", "scores"}`` and ``{"boxes", "labels"}`` (xyxy pixels)."""
        boxes, labels, scores = _as_arrays(prediction, True)
        gboxes, glabels, _ = _as_arrays(ground_truth, False)
        self.add_arrays(labels, scores, glabels, lambda d, g: box_iou(boxes[d], gboxes[g]))

    def add_arrays(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        gt_labels: np.ndarray,
        iou: Any,
    ) -> None:
        """One image with any overlap measure: `iou(det_index, gt_index)` (integer index arrays into
        this image's detections and ground truth) answers the IoU matrix between them."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        self.images += 1
        keep = np.arange(len(scores))
        if self.max_dets is not None and len(scores) > self.max_dets:
            keep = np.argsort(-scores, kind="stable")[: self.max_dets]
        kept_labels = labels[keep]
        n_thr = len(self.thresholds)
        for cid in {int(v) for v in kept_labels} | {int(v) for v in gt_labels}:
            g = np.nonzero(gt_labels == cid)[0]
            self.num_gt[cid] = self.num_gt.get(cid, 0) + len(g)
            d = keep[kept_labels == cid]
            self.num_pred[cid] = self.num_pred.get(cid, 0) + len(d)
            self._scores.setdefault(cid, [])
            self._tp.setdefault(cid, [])
            if not len(d):
                continue
            d = d[np.argsort(-scores[d], kind="stable")]
            tp = np.zeros((len(d), n_thr))
            if len(g):
                ious = np.asarray(iou(d, g), dtype=np.float64).reshape(len(d), len(g))
                used = np.zeros((n_thr, len(g)), dtype=bool)
                rows = np.arange(n_thr)
                for k in np.nonzero(ious.max(axis=1) >= self._min_thr)[0]:
                    cand = np.where(used, -1.0, ious[k][None, :])
                    j = cand.argmax(axis=1)
                    hit = cand[rows, j] >= self._thr
                    used[rows[hit], j[hit]] = True
                    tp[k, hit] = 1.0
            self._scores[cid].append(scores[d])
            self._tp[cid].append(tp)

    def result(
        self, class_ids: Sequence[int] | None = None, class_names: Mapping[int, str] | None = None
    ) -> DetectionMetrics:
        """AP per class (`class_ids`, default: every label seen) and threshold."""
        cids = [int(c) for c in (class_ids if class_ids is not None else sorted(self.num_gt))]
        ap = np.full((len(cids), len(self.thresholds)), np.nan)
        for ci, cid in enumerate(cids):
            total_gt = self.num_gt.get(cid, 0)
            if total_gt == 0:
                continue  # NaN: left out of the mean
            parts = self._scores.get(cid) or []
            if not parts:
                ap[ci, :] = 0.0
                continue
            scores = np.concatenate(parts)
            order = np.argsort(-scores, kind="stable")
            tp = np.concatenate(self._tp[cid])[order]
            ctp = np.cumsum(tp, axis=0)
            cfp = np.cumsum(1.0 - tp, axis=0)
            recall = ctp / total_gt
            precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
            for ti in range(len(self.thresholds)):
                ap[ci, ti] = average_precision_101(recall[:, ti], precision[:, ti])
        return DetectionMetrics(
            ap=ap,
            iou_thresholds=self.thresholds,
            class_ids=cids,
            num_gt={c: self.num_gt.get(c, 0) for c in cids},
            num_pred={c: self.num_pred.get(c, 0) for c in cids},
            class_names=dict(class_names or {}),
        )


def evaluate_detections(
    predictions: Sequence[Mapping[str, Any]],
    ground_truths: Sequence[Mapping[str, Any]],
    *,
    class_ids: Sequence[int] | None = None,
    class_names: Mapping[int, str] | None = None,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    max_dets: int = 100,
) -> DetectionMetrics:
    """COCO-style AP per class and IoU threshold.

    `predictions[i]` and `ground_truths[i]` belong to the same image: ``{"boxes": (N, 4) xyxy,
    "labels": (N,), "scores": (N,)}`` (ground truth without scores). `class_ids` defaults to every
    label seen in either.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError("predictions and ground_truths must list the same images")
    acc = DetectionAccumulator(iou_thresholds, max_dets)
    for pred, gt in zip(predictions, ground_truths, strict=True):
        acc.add(pred, gt)
    return acc.result(class_ids, class_names)
