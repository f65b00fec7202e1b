"""Predictors of every framework and task on tiny real models, result schema, overlays, metrics."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.inference_models import KINDS, TrainedModel, models_root, trained_model
from trainer_runtime.inference.predictors import InvalidImageError, decode_image, load_predictor
from trainer_runtime.inference.render import font_info, render

pytest.importorskip("ultralytics")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest) -> dict[str, TrainedModel]:
    root = models_root(request.config)
    return {k: trained_model(k, root, root / "demo") for k in KINDS}


def _images(m: TrainedModel, n: int = 3) -> list[Path]:
    return sorted((m.dataset_dir / "images").rglob("*.png"))[:n]


def _check_common(r: dict[str, Any], m: TrainedModel, im: Image.Image) -> None:
    assert r["task_type"] == m.task_type
    assert r["image"] == {"width": im.width, "height": im.height}
    for k in ("inference_time_ms", "preprocessing_time_ms", "postprocessing_time_ms"):
        assert isinstance(r[k], float) and r[k] >= 0.0
    json.dumps(r, allow_nan=False)  # plain JSON


@pytest.mark.parametrize("kind", KINDS)
def test_predictions_have_the_task_shape(models: dict[str, TrainedModel], kind: str) -> None:
    m = models[kind]
    pred = load_predictor(m.framework, m.best, "cpu")
    assert pred.task_type == m.task_type and pred.class_names == m.class_names
    assert pred.memory_bytes() > 0
    files = _images(m)
    ims = [decode_image(f.read_bytes()) for f in files]
    results = pred.predict(ims, conf=0.0001, iou=0.7, max_det=50)
    assert len(results) == len(ims)
    names = set(m.class_names)
    for r, im in zip(results, ims, strict=True):
        _check_common(r, m, im)
        assert r["batch_size"] == len(ims)
        preds = r["predictions"]
        for p in preds:
            assert p["label"] in names and 0 <= p["class_id"] < len(names)
            assert 0.0 <= p["confidence"] <= 1.0
        if m.task_type == "image_classification":
            assert len(preds) == 5
            assert [p["confidence"] for p in preds] == sorted((p["confidence"] for p in preds), reverse=True)
            assert r["predicted_label"] == preds[0]["label"] and r["confidence"] == preds[0]["confidence"]
            continue
        assert len(preds) <= 50
        for p in preds:
            assert len(p["box"]) == 4 and p["box"][0] <= p["box"][2] and p["box"][1] <= p["box"][3]
            if m.task_type == "instance_segmentation":
                assert isinstance(p["polygon"], list) and all(len(q) == 2 for q in p["polygon"])
            if m.task_type == "pose_estimation":
                assert len(p["keypoints"]) == 11 and all(len(k) == 3 for k in p["keypoints"])
            if m.task_type == "oriented_object_detection":
                assert len(p["rotated_box"]) == 5 and -180 <= p["rotated_box"][4] <= 180
                assert len(p["polygon"]) == 4
    if m.task_type != "image_classification":
        assert any(r["predictions"] for r in results), "a near-zero conf threshold keeps some boxes"
        png = render(files[0].read_bytes(), results[0])
        with Image.open(io.BytesIO(png)) as out:
            assert out.format == "PNG" and out.size[0] >= im.width


def test_original_pixels_for_non_square_images(models: dict[str, TrainedModel]) -> None:
    m = models["yolo-detect"]
    pred = load_predictor(m.framework, m.best, "cpu")
    im = decode_image(_images(m, 1)[0].read_bytes()).resize((200, 100))
    (r,) = pred.predict([im], conf=0.0001)
    assert r["image"] == {"width": 200, "height": 100}
    for p in r["predictions"]:
        x1, y1, x2, y2 = p["box"]
        assert -1 <= x1 <= x2 <= 201 and -1 <= y1 <= y2 <= 101


def test_timm_matches_the_adapter_eval_transform(models: dict[str, TrainedModel]) -> None:
    import torch
    from timm.data import create_transform

    from trainer_runtime.adapters.timm_adapter import TimmAdapter

    m = models["timm-digits"]
    model, meta = TimmAdapter.build_model_from_checkpoint(m.last)
    tf = create_transform(int(meta["image_size"]), is_training=False, crop_pct=1.0)
    files = _images(m, 4)
    ims = [Image.open(f).convert("RGB") for f in files]
    with torch.no_grad():
        ref = model(torch.stack([tf(i) for i in ims])).softmax(-1).numpy()
    out = load_predictor("timm", m.last).predict(ims)
    for row, r in zip(ref, out, strict=True):
        assert r["predictions"][0]["class_id"] == int(row.argmax())
        assert r["confidence"] == pytest.approx(float(row.max()), abs=1e-5)


def test_decode_image_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="not an image"):
        decode_image(b"hello, not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, format="PNG")
    data = buf.getvalue()
    with pytest.raises(InvalidImageError, match=r"corrupt|truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="over the limit") as exc:
        decode_image(data, max_pixels=100)
    assert exc.value.too_large
    assert decode_image(data).size == (64, 64)


def test_render_classification_and_korean_labels() -> None:
    im = Image.new("RGB", (32, 32), (0, 0, 0))
    result = {
        "task_type": "image_classification",
        "predictions": [
            {"label": "고양이", "class_id": 0, "confidence": 0.9},
            {"label": "개", "class_id": 1, "confidence": 0.1},
        ],
    }
    png = render(im, result)
    with Image.open(io.BytesIO(png)) as out:
        assert out.format == "PNG" and out.size == (384, 384)
    info = font_info()
    assert info["source"]  # which font is used is reported (CJK when one is installed)


def test_the_font_comes_from_the_caller_not_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    system = font_info()
    monkeypatch.setenv("VTA_RENDER_FONT", str(tmp_path / "ignored.ttf"))
    (tmp_path / "ignored.ttf").write_bytes(b"x")
    assert font_info() == system  # the trainer_runtime reads no environment: the server passes its setting
    if system["path"]:
        chosen = font_info(system["path"])
        assert chosen == {"path": system["path"], "cjk": True, "source": "VTA_RENDER_FONT"}
        im = Image.new("RGB", (64, 64))
        result = {
            "task_type": "image_classification",
            "predictions": [{"label": "개", "class_id": 1, "confidence": 1.0}],
        }
        assert render(im, result, font_path=system["path"])[:4] == b"\x89PNG"
    assert font_info(str(tmp_path / "missing.ttf")) == system  # a path that is not a file falls back


def test_evaluate_metrics() -> None:
    from trainer_runtime.inference.evaluate import classification_metrics, detection_metrics

    cls = classification_metrics([("a", ["a", "b"]), ("b", ["a", "b"]), ("c", ["a"]), (None, ["a"])], ["a", "b"])
    assert cls["evaluated_images"] == 2 and cls["accuracy_top1"] == 0.5 and cls["accuracy_top5"] == 1.0
    assert cls["confusion_matrix"] == [[1, 0], [1, 0]] and cls["unknown_labels"] == {"c": 1}
    square = [[10, 10], [50, 10], [50, 50], [10, 50]]
    result = {
        "predictions": [
            {"class_id": 0, "confidence": 0.9, "box": [10, 10, 50, 50], "polygon": square},
            {"class_id": 0, "confidence": 0.2, "box": [60, 60, 90, 90], "polygon": []},
        ]
    }
    anns = [{"category_id": 7, "bbox": [10, 10, 40, 40], "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]]}]
    det = detection_metrics(
        [(result, anns, {"width": 100, "height": 100})], ["box"], {7: "box"}, "instance_segmentation"
    )
    assert det["box_mAP50"] == pytest.approx(1.0) and det["box_mAP50-95"] == pytest.approx(1.0)
    assert det["mask_mAP50"] == pytest.approx(1.0) and det["mask_mAP50-95"] > 0.8


def test_mask_iou_in_the_box_equals_the_full_canvas() -> None:
    """The evaluator rasterises each polygon inside its own box; the IoU must be the one of the two
    polygons drawn on the whole image, also for polygons that leave the image."""
    import numpy as np
    from PIL import Image, ImageDraw

    from trainer_runtime.inference.evaluate import _Mask

    def full(polys: list[list[list[float]]], w: int, h: int) -> np.ndarray:
        im = Image.new("1", (w, h), 0)
        for poly in polys:
            ImageDraw.Draw(im).polygon([(x, y) for x, y in poly], fill=1)
        return np.asarray(im, dtype=bool)

    rng = np.random.default_rng(3)
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        shapes = []
        for _ in range(2):
            cx, cy, r = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10), rng.uniform(2, 40)
            ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            shapes.append([[float(cx + r * np.cos(t)), float(cy + r * np.sin(t))] for t in ang])
        a, b = full([shapes[0]], w, h), full([shapes[1]], w, h)
        union = np.logical_or(a, b).sum()
        expected = np.logical_and(a, b).sum() / union if union else 0.0
        assert _Mask([shapes[0]], w, h).iou(_Mask([shapes[1]], w, h)) == pytest.approx(expected, abs=1e-12)
        assert _Mask([shapes[0]], w, h).area == a.sum()
