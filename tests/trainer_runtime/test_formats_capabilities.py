"""Compatibility matrix (contract 3 in docs/architecture.md), summary, dominant class and minimum-area rectangles."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from tests.trainer_runtime._dice_factory import dice_dict
from trainer_runtime.formats.capabilities import (
    CONVERSIONS,
    check_compatibility,
    dominant_class,
    min_area_rect,
    polygon_area,
    rotated_box_corners,
    summarize,
)
from trainer_runtime.formats.schema import TASK_TYPES, DiceDataset

CATS = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
KP_CATS = [{"id": 1, "name": "person", "keypoints": ["head", "hand", "foot"]}]


def _ds(kind: str, n_images: int = 6, per_image: int = 2) -> DiceDataset:
    """A dataset whose annotations are all of one kind."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 100} for i in range(1, n_images + 1)]
    anns: list[dict[str, Any]] = []
    cats = KP_CATS if kind.startswith("pose") else CATS
    for img in images:
        for j in range(per_image):
            a: dict[str, Any] = {"id": len(anns) + 1, "image_id": img["id"], "category_id": 1 + j % len(cats)}
            x = 10 + 60 * j
            if kind == "labels":
                pass
            elif kind == "boxes":
                a["bbox"] = [x, 10, 40, 30]
            elif kind == "polygons":
                a["segmentation"] = [[x, 10, x + 40, 10, x + 20, 50]]
                a["bbox"] = [x, 10, 40, 40]
            elif kind == "rotated":
                a["rotated_bbox"] = [x + 20, 40, 30, 10, 25.0]
            elif kind == "pose":
                a["bbox"] = [x, 10, 40, 60]
                a["keypoints"] = [x + 5, 15, 2, x + 10, 30, 2, x + 20, 60, 1]
            elif kind == "pose_nobox":
                a["keypoints"] = [x + 5, 15, 2, x + 10, 30, 2, x + 20, 60, 1]
            anns.append(a)
    return DiceDataset.model_validate(
        dice_dict(dataset={"name": f"{kind}-demo"}, categories=cats, images=images, annotations=anns)
    )


# (kind, task) -> (status, conversion)
MATRIX = {
    ("labels", "image_classification"): ("native", None),
    ("labels", "object_detection"): ("incompatible", None),
    ("labels", "instance_segmentation"): ("incompatible", None),
    ("labels", "oriented_object_detection"): ("incompatible", None),
    ("labels", "pose_estimation"): ("incompatible", None),
    ("boxes", "image_classification"): ("convertible", "dominant_class"),
    ("boxes", "object_detection"): ("native", None),
    ("boxes", "instance_segmentation"): ("incompatible", None),
    ("boxes", "oriented_object_detection"): ("incompatible", None),
    ("boxes", "pose_estimation"): ("incompatible", None),
    ("polygons", "image_classification"): ("convertible", "dominant_class"),
    ("polygons", "object_detection"): ("convertible", "polygon_to_box"),
    ("polygons", "instance_segmentation"): ("native", None),
    ("polygons", "oriented_object_detection"): ("convertible", "polygon_to_rotated_box"),
    ("polygons", "pose_estimation"): ("incompatible", None),
    ("rotated", "image_classification"): ("convertible", "dominant_class"),
    ("rotated", "object_detection"): ("convertible", "rotated_to_box"),
    ("rotated", "instance_segmentation"): ("incompatible", None),
    ("rotated", "oriented_object_detection"): ("native", None),
    ("rotated", "pose_estimation"): ("incompatible", None),
    ("pose", "image_classification"): ("convertible", "dominant_class"),
    ("pose", "object_detection"): ("native", None),
    ("pose", "instance_segmentation"): ("incompatible", None),
    ("pose", "oriented_object_detection"): ("incompatible", None),
    ("pose", "pose_estimation"): ("native", None),
    ("pose_nobox", "object_detection"): ("convertible", "keypoints_to_box"),
    ("pose_nobox", "pose_estimation"): ("native", None),
    ("pose_nobox", "image_classification"): ("convertible", "dominant_class"),
}


@pytest.mark.parametrize(("kind", "task"), sorted(MATRIX))
def test_compatibility_matrix(kind: str, task: str) -> None:
    ds = _ds(kind)
    res = check_compatibility(ds, task)
    assert set(res) == {"status", "conversion", "reason"}
    assert (res["status"], res["conversion"]) == MATRIX[(kind, task)], res
    assert res["reason"].startswith(f"{kind}-demo ")
    assert res["reason"].endswith(".")
    assert res["conversion"] is None or res["conversion"] in CONVERSIONS
    # the cached summary gives the same answer
    assert check_compatibility(summarize(ds), task) == res


def test_seed_matrix_reasons_are_plain_sentences_with_numbers() -> None:
    seg = _ds("polygons", n_images=60, per_image=7)
    res = check_compatibility(seg, "object_detection", dataset_name="shapes-demo")
    assert res == {
        "status": "convertible",
        "conversion": "polygon_to_box",
        "reason": "shapes-demo has 420 polygons on 60 images; each polygon becomes its bounding box for detection.",
    }
    det = check_compatibility(_ds("boxes"), "image_classification")
    assert det["status"] == "convertible" and "12 boxes on 6 images" in det["reason"]
    cls = check_compatibility(_ds("labels"), "object_detection")
    assert cls["status"] == "incompatible"
    assert "image-level labels have no object locations" in cls["reason"]
    obb = check_compatibility(_ds("boxes"), "oriented_object_detection")
    assert "axis-aligned boxes carry no orientation" in obb["reason"]
    seg_to_obb = check_compatibility(seg, "oriented_object_detection")
    assert "minimum-area" in seg_to_obb["reason"]


def test_unlabeled_and_empty_datasets() -> None:
    for task in TASK_TYPES:
        res = check_compatibility(None, task, dataset_name="raw-photos")
        assert res["status"] == "incompatible"
        assert res["reason"] == "raw-photos has images but no annotations.json; label it first."
    empty = DiceDataset.model_validate(dice_dict(annotations=[]))
    assert check_compatibility(empty, "object_detection")["status"] == "incompatible"
    assert "no annotations" in check_compatibility(empty, "object_detection")["reason"]


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="object_detection") as ei:
        check_compatibility(_ds("boxes"), "depth_estimation")
    for t in TASK_TYPES:
        assert t in str(ei.value)


def test_summary_counts_and_json() -> None:
    ds = DiceDataset.model_validate(dice_dict())  # one of every kind
    s = summarize(ds)
    json.dumps(s)
    c = s["counts"]
    assert c == {
        "images": 3,
        "labeled_images": 3,
        "annotations": 5,
        "image_labels": 1,
        "boxes": 3,
        "standalone_boxes": 2,
        "polygons": 1,
        "keypoints": 1,
        "rotated_boxes": 1,
    }
    assert s["images"] == 3 and s["polygons"] == 1
    assert s["categories"] == [
        {"id": 1, "name": "cat", "count": 2},
        {"id": 2, "name": "dog", "count": 2},
        {"id": 3, "name": "person", "count": 1},
    ]
    assert s["keypoint_categories"] == [{"id": 3, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"]}]
    assert set(s["tasks"]) == set(TASK_TYPES)
    assert all(t["status"] == "native" for t in s["tasks"].values())


def test_keypoints_without_declared_names_are_not_pose() -> None:
    ds = _ds("pose")
    d = ds.model_dump()
    d["categories"][0]["keypoints"] = None
    res = check_compatibility(DiceDataset.model_validate(d), "pose_estimation")
    assert res["status"] == "incompatible"


def test_dominant_class_by_area() -> None:
    anns = [
        {"category_id": 1, "bbox": [0, 0, 10, 10]},
        {"category_id": 1, "bbox": [0, 0, 10, 10]},
        {"category_id": 2, "bbox": [0, 0, 15, 15]},  # 225 > 200
        {"category_id": 3, "segmentation": [[0, 0, 10, 0, 10, 10]]},  # 50
    ]
    assert dominant_class(anns) == 2
    anns.append({"category_id": 3, "segmentation": [[0, 0, 20, 0, 20, 20, 0, 20]]})  # +400
    assert dominant_class(anns) == 3
    # an image-level label wins over geometry
    assert dominant_class([*anns, {"category_id": 7}]) == 7
    with pytest.raises(ValueError):
        dominant_class([])


def test_polygon_area_shoelace() -> None:
    assert polygon_area([0, 0, 4, 0, 4, 3, 0, 3]) == 12.0
    assert polygon_area([0, 0, 4, 0, 0, 3]) == 6.0


@pytest.mark.parametrize(
    ("angle", "expected"),
    [
        (0.0, (50.0, 20.0, 0.0)),
        (15.0, (50.0, 20.0, 15.0)),
        (30.0, (50.0, 20.0, 30.0)),
        (45.0, (50.0, 20.0, 45.0)),
        (89.0, (50.0, 20.0, 89.0)),
        (120.0, (20.0, 50.0, 30.0)),  # normalised into [0, 90) by swapping w and h
        (-20.0, (20.0, 50.0, 70.0)),
    ],
)
def test_min_area_rect_on_known_rotated_rectangle(angle: float, expected: tuple[float, float, float]) -> None:
    corners = rotated_box_corners([120.0, 80.0, 50.0, 20.0, angle])
    flat = [v for p in corners for v in p]
    flat += [120.0, 80.0, 125.0, 82.0]  # interior points must not change the rectangle
    cx, cy, w, h, a = min_area_rect(flat)
    assert (cx, cy) == pytest.approx((120.0, 80.0), abs=1e-6)
    assert (w, h, a) == pytest.approx(expected, abs=1e-6)
    # the corners of the result are the input corners
    got = np.array(rotated_box_corners([cx, cy, w, h, a]))
    for p in corners:
        assert np.min(np.hypot(*(got - np.array(p)).T)) < 1e-6


def test_min_area_rect_of_an_axis_aligned_triangle_and_points() -> None:
    cx, cy, w, h, a = min_area_rect([[0, 0], [4, 0], [0, 2]])
    assert w * h == pytest.approx(8.0)
    assert a == pytest.approx(0.0)
    assert (cx, cy) == pytest.approx((2.0, 1.0))
    assert min_area_rect([[3, 3]]) == [3.0, 3.0, 0.0, 0.0, 0.0]
    r = min_area_rect([0, 0, 10, 10])  # a line: zero height
    assert r[2] * r[3] == pytest.approx(0.0, abs=1e-9)
    assert max(r[2], r[3]) == pytest.approx(math.hypot(10, 10))
