"""ONNX export of every framework, checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inference_models import models_root, trained_model
from trainer_runtime.inference.export import ExportError, export_onnx, synthetic_image

pytest.importorskip("onnxruntime")
pytest.importorskip("ultralytics")
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["yolo-detect", "yolo-segment", "yolo-classify", "timm-digits", "hf-vit-digits"])
def test_onnx_parity(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import onnx

    root = models_root(request.config)
    m = trained_model(kind, root, root / "demo")
    dest = tmp_path / "model.onnx"
    sample = synthetic_image(48)
    report = export_onnx(m.framework, m.best, dest, sample=sample)
    onnx.checker.check_model(str(dest))
    parity = report["parity"]
    assert parity["ok"] and parity["max_abs_diff"] < 1e-3, parity
    assert report["size"] == dest.stat().st_size and len(report["sha256"]) == 64
    if m.framework == "ultralytics":
        assert report["input_shape"][2:] == [64, 64] if kind != "yolo-classify" else [32, 32]
    else:
        assert report["input_shape"][0] == "batch" and parity["batch"] == 2  # dynamic batch checked


def test_export_errors(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx("timm", tmp_path / "nope.pt", tmp_path / "m.onnx")
    root = models_root(request.config)
    m = trained_model("timm-digits", root, root / "demo")
    with pytest.raises(ExportError, match="framework"):
        export_onnx("caffe", m.best, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="parity check failed"):
        export_onnx("timm", m.best, tmp_path / "m.onnx", tolerance=-1.0)
