"""trainer_runtime.metrics: hand-computed classification and COCO-style detection cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer_runtime.metrics import (
    COCO_IOU_THRESHOLDS,
    DetectionAccumulator,
    average_precision_101,
    box_iou,
    confusion_matrix,
    evaluate_detections,
    per_class_report,
    topk_accuracy,
    xywh_to_xyxy,
)

# ----------------------------------------------------------------------------- classification


def test_topk_accuracy_hand_case() -> None:
    scores = np.array(
        [
            [0.1, 0.7, 0.2],  # target 1: top-1 hit
            [0.5, 0.3, 0.2],  # target 1: rank 2 -> top-2 hit only
            [0.6, 0.3, 0.1],  # target 2: rank 3
            [0.2, 0.2, 0.6],  # target 2: top-1 hit
        ]
    )
    targets = [1, 1, 2, 2]
    acc = topk_accuracy(scores, targets, ks=(1, 2, 5))
    assert acc[1] == pytest.approx(0.5)
    assert acc[2] == pytest.approx(0.75)
    assert acc[5] == pytest.approx(1.0)  # k above the class count counts every sample


def test_topk_accuracy_empty_and_bad_shape() -> None:
    assert topk_accuracy(np.zeros((0, 3)), [], ks=(1, 5)) == {1: 0.0, 5: 0.0}
    with pytest.raises(ValueError):
        topk_accuracy(np.zeros((2, 3)), [0], ks=(1,))


def test_confusion_matrix_and_report() -> None:
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.sum() == 6
    rows = per_class_report(cm, ["a", "b", "c"])
    assert rows[0]["class"] == "a"
    assert rows[0]["precision"] == pytest.approx(0.5)  # predicted a twice, right once
    assert rows[0]["recall"] == pytest.approx(0.5)
    assert rows[1]["precision"] == pytest.approx(0.5) and rows[1]["recall"] == pytest.approx(1.0)
    assert rows[2]["recall"] == pytest.approx(2 / 3) and rows[2]["support"] == 3
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], num_classes=3)


# ---------------------------------------------------------------------------------- geometry


def test_box_iou_and_conversion() -> None:
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 6]]
    iou = box_iou(a, b)[0]
    assert iou.tolist() == pytest.approx([1.0, 50 / 150, 0.0, 0.6])
    assert xywh_to_xyxy([[1, 2, 3, 4]]).tolist() == [[1, 2, 4, 6]]
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 1)


def test_thresholds_are_coco() -> None:
    assert COCO_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_ap_101_points_of_a_curve() -> None:
    # precision 1 up to recall 0.5, then 2/3 until recall 1
    ap = average_precision_101([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
    assert ap == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101)
    assert average_precision_101([], []) == 0.0


# ---------------------------------------------------------------------------------- detection


def _gt(boxes: list[list[float]], labels: list[int]) -> dict[str, object]:
    return {"boxes": boxes, "labels": labels}


def _pred(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, object]:
    return {"boxes": boxes, "labels": labels, "scores": scores}


def test_perfect_predictions_score_one() -> None:
    gts = [_gt([[0, 0, 10, 10], [20, 20, 40, 50]], [0, 1]), _gt([[5, 5, 25, 25]], [0])]
    preds = [
        _pred([[0, 0, 10, 10], [20, 20, 40, 50]], [0, 1], [0.9, 0.8]),
        _pred([[5, 5, 25, 25]], [0], [0.7]),
    ]
    m = evaluate_detections(preds, gts)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(1.0)
    assert m.as_metrics() == {"val/mAP50-95": 1.0, "val/mAP50": 1.0, "val/mAP75": 1.0}
    assert m.per_class()["0"]["num_gt"] == 2


def test_one_false_positive_ranked_below_is_free_above_costs_half() -> None:
    gt = [_gt([[0, 0, 10, 10]], [0])]
    below = [_pred([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.9, 0.8])]
    assert evaluate_detections(below, gt).map50 == pytest.approx(1.0)
    above = [_pred([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.9, 0.95])]
    # precision 0 then 1/2 at recall 1: the envelope is 1/2 everywhere
    assert evaluate_detections(above, gt).map50 == pytest.approx(0.5)


def test_shuffled_scores_give_the_interpolated_curve() -> None:
    gts = [_gt([[0, 0, 10, 10]], [0]), _gt([[0, 0, 10, 10]], [0])]
    # detections listed out of score order: TP 0.7 (img 1), FP 0.8 (img 0), TP 0.9 (img 0)
    preds = [
        _pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.8, 0.9]),
        _pred([[0, 0, 10, 10]], [0], [0.7]),
    ]
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    m = evaluate_detections(preds, gts)
    assert m.map50 == pytest.approx(expected)
    assert m.map50_95 == pytest.approx(expected)  # exact boxes: every threshold alike


def test_two_classes_mean_and_missing_class() -> None:
    gts = [_gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])]
    preds = [_pred([[0, 0, 10, 10], [60, 60, 70, 70]], [0, 1], [0.9, 0.9])]
    m = evaluate_detections(preds, gts, class_ids=[0, 1, 2], class_names={0: "cat", 1: "dog", 2: "eel"})
    assert m.map50 == pytest.approx(0.5)  # cat 1.0, dog 0.0, eel has no ground truth (left out)
    per = m.per_class()
    assert per["cat"]["AP50"] == pytest.approx(1.0)
    assert per["dog"]["AP50"] == pytest.approx(0.0)
    assert math.isnan(per["eel"]["AP50"])
    # a class without ground truth but with detections is left out too (COCO)
    preds2 = [_pred([[0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 5, 5]], [0, 1, 2], [0.9, 0.9, 0.9])]
    assert evaluate_detections(preds2, gts).map50 == pytest.approx(1.0)


def test_no_detections_scores_zero() -> None:
    gts = [_gt([[0, 0, 10, 10]], [0])]
    m = evaluate_detections([_pred([], [], [])], gts)
    assert m.map50 == 0.0 and m.map50_95 == 0.0


def test_iou_060_counts_at_three_of_ten_thresholds() -> None:
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[0, 0, 10, 6]], [0], [0.9])]  # IoU exactly 0.6
    m = evaluate_detections(preds, gts)
    assert m.map50 == pytest.approx(1.0)
    assert m.map75 == pytest.approx(0.0)
    assert m.map50_95 == pytest.approx(0.3)


def test_one_prediction_matches_one_ground_truth() -> None:
    gts = [_gt([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0])]  # two identical objects
    preds = [_pred([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    assert evaluate_detections(preds, gts).map50 == pytest.approx(1.0)
    dup = [_pred([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    one_gt = [_gt([[0, 0, 10, 10]], [0])]
    # the duplicate is a false positive below the hit: AP stays 1.0
    assert evaluate_detections(dup, one_gt).map50 == pytest.approx(1.0)


def test_max_dets_keeps_the_best_scores() -> None:
    gts = [_gt([[0, 0, 10, 10]], [0])]
    preds = [_pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.99, 0.5])]
    assert evaluate_detections(preds, gts, max_dets=1).map50 == 0.0
    assert evaluate_detections(preds, gts, max_dets=2).map50 == pytest.approx(0.5)


def test_mismatched_inputs_raise() -> None:
    with pytest.raises(ValueError):
        evaluate_detections([_pred([], [], [])], [])
    with pytest.raises(ValueError):
        evaluate_detections([_pred([[0, 0, 1, 1]], [0], [])], [_gt([], [])])


# ------------------------------------------------------------- incremental evaluation vs an oracle


def _oracle_ap(preds: list[dict], gts: list[dict], cid: int, thr: float, max_dets: int) -> float:
    """COCO AP of one class at one threshold written the plain way: every detection of every image
    in one list, sorted by score (stable), each matched greedily in that order."""
    dets: list[tuple[float, int, list[float]]] = []
    for img, p in enumerate(preds):
        order = sorted(range(len(p["scores"])), key=lambda k: -p["scores"][k])[:max_dets]
        dets += [(p["scores"][k], img, p["boxes"][k]) for k in sorted(order) if p["labels"][k] == cid]
    gt = {img: [b for b, lab in zip(g["boxes"], g["labels"], strict=True) if lab == cid] for img, g in enumerate(gts)}
    total = sum(len(v) for v in gt.values())
    if total == 0:
        return math.nan
    dets.sort(key=lambda d: -d[0])
    used = {img: [False] * len(v) for img, v in gt.items()}
    tps = []
    for _, img, box in dets:
        best, best_j = -1.0, -1
        for j, g in enumerate(gt[img]):
            iou = float(box_iou([box], [g])[0, 0])
            if not used[img][j] and iou >= thr and iou > best:
                best, best_j = iou, j
        if best_j >= 0:
            used[img][best_j] = True
        tps.append(1.0 if best_j >= 0 else 0.0)
    ctp = np.cumsum(tps)
    recall = ctp / total
    precision = ctp / np.arange(1, len(tps) + 1)
    return average_precision_101(recall, precision) if tps else 0.0


def _random_images(rng: np.random.Generator, n: int, classes: int) -> tuple[list[dict], list[dict]]:
    preds, gts = [], []
    for _ in range(n):
        gb = [
            [x, y, x + w, y + h] for x, y, w, h in rng.uniform([0, 0, 4, 4], [60, 60, 30, 30], (rng.integers(0, 5), 4))
        ]
        gl = [int(v) for v in rng.integers(0, classes, len(gb))]
        pb, pl, ps = [], [], []
        for _ in range(int(rng.integers(0, 12))):
            if gb and rng.random() < 0.6:  # a noisy copy of a ground-truth box, mostly the right class
                k = int(rng.integers(0, len(gb)))
                pb.append([float(v) for v in np.asarray(gb[k]) + rng.normal(0, 2.5, 4)])
                pl.append(gl[k] if rng.random() < 0.8 else int(rng.integers(0, classes)))
            else:
                x, y = rng.uniform(0, 60, 2)
                pb.append([float(x), float(y), float(x) + 10, float(y) + 12])
                pl.append(int(rng.integers(0, classes)))
            ps.append(float(np.round(rng.random(), 1)))  # coarse scores: many ties across images
        preds.append(_pred(pb, pl, ps))
        gts.append(_gt(gb, gl))
    return preds, gts


@pytest.mark.parametrize("seed", range(6))
def test_accumulator_matches_the_plain_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    preds, gts = _random_images(rng, int(rng.integers(1, 25)), 3)
    max_dets = 5 if seed % 2 else 100
    acc = DetectionAccumulator(max_dets=max_dets)
    for p, g in zip(preds, gts, strict=True):  # one image at a time, as a test run feeds it
        acc.add(p, g)
    m = acc.result(class_ids=[0, 1, 2])
    for ci in range(3):
        for ti, thr in enumerate(COCO_IOU_THRESHOLDS):
            expected = _oracle_ap(preds, gts, ci, thr, max_dets)
            got = m.ap[ci, ti]
            assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-12)
    whole = evaluate_detections(preds, gts, class_ids=[0, 1, 2], max_dets=max_dets)
    np.testing.assert_array_equal(whole.ap, m.ap)
    assert whole.num_gt == m.num_gt and whole.num_pred == m.num_pred


def test_accumulator_empty_and_custom_overlap() -> None:
    acc = DetectionAccumulator()
    assert acc.result().ap.shape == (0, 10) and acc.result().map50 == 0.0
    # a custom overlap (masks use one): the detection overlaps the object by 0.55
    acc.add_arrays(np.array([0]), np.array([0.9]), np.array([0]), lambda d, g: np.full((len(d), len(g)), 0.55))
    m = acc.result()
    assert m.map50 == pytest.approx(1.0) and m.map50_95 == pytest.approx(0.2)
