"""Exports of every framework (ONNX, TorchScript, OpenVINO), checked against PyTorch with each
format's own runtime; changed or broken exports fail the check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.inference_models import models_root, trained_model
from tests.trainer_runtime._demo_fixtures import demo_datasets_root, demo_shapes_dir  # noqa: F401
from trainer_runtime.inference.export import (
    FORMAT_SUFFIX,
    ExportError,
    export_model,
    export_onnx,
    synthetic_image,
    verify_export,
)

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
        assert report["input_shape"][0] == "batch" and parity["batch"] == 3  # dynamic batch checked


def test_export_errors(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx("timm", tmp_path / "nope.pt", tmp_path / "m.onnx")
    root = models_root(request.config)
    m = trained_model("timm-digits", root, root / "demo")
    with pytest.raises(ExportError, match="framework"):
        export_onnx("caffe", m.best, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="parity check failed"):
        export_onnx("timm", m.best, tmp_path / "m.onnx", tolerance=-1.0)


# ------------------------------------------------------------------- TorchScript and OpenVINO

FORMAT_KINDS = ["yolo-detect", "yolo-segment", "yolo-classify", "timm-digits", "hf-vit-digits"]


@pytest.mark.parametrize("fmt", ["torchscript", "openvino"])
@pytest.mark.parametrize("kind", FORMAT_KINDS)
def test_torchscript_and_openvino_parity(
    kind: str, fmt: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    home = tmp_path / "home"  # OpenVINO's telemetry keeps its client id and stats under ~/intel
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    import zipfile

    import torch

    root = models_root(request.config)
    m = trained_model(kind, root, root / "demo")
    dest = tmp_path / f"model{FORMAT_SUFFIX[fmt]}"
    report = export_model(fmt, m.framework, m.best, dest, sample=synthetic_image(48))
    parity = report["parity"]
    # the same report shape as ONNX: every output, over the given image and two fixed synthetic ones
    assert parity["ok"] and parity["max_abs_diff"] < 1e-3 and parity["images"] == 3, parity
    assert set(parity["per_output"]) == set(report["outputs"]) and report["outputs"]
    assert report["format"] == fmt and report["runtime"] == ("torch.jit" if fmt == "torchscript" else "openvino")
    assert report["size"] == dest.stat().st_size and len(report["sha256"]) == 64
    size = 32 if kind in ("yolo-classify", "timm-digits", "hf-vit-digits") else 64
    assert report["input_shape"][2:] == [size, size]
    if m.framework == "ultralytics":
        assert parity["batch"] == 1
    else:
        assert parity["batch"] == 3  # one batch: the traced / converted model takes other batch sizes
    if kind == "yolo-segment":
        assert len(report["outputs"]) == 2  # boxes + mask coefficients, and the prototypes
    if fmt == "torchscript":
        module = torch.jit.load(str(dest))  # a plain torch.jit archive
        assert isinstance(module, torch.jit.ScriptModule)
    else:
        names = zipfile.ZipFile(dest).namelist()
        top = dest.name.removesuffix(".zip")
        assert {f"{top}/model.xml", f"{top}/model.bin"} <= set(names), names
        if m.framework == "ultralytics":
            assert f"{top}/metadata.yaml" in names  # YOLO("<unzipped folder>") loads it
        assert not (home / "intel").exists(), "OpenVINO's telemetry was on (it would call Google Analytics)"


def test_a_changed_export_fails_its_parity_check(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check really compares: an export whose weights differ from the checkpoint's, or whose
    file is broken, is an ExportError (with the figures), never a report saying ok."""
    import torch

    from trainer_runtime.inference import export as export_mod

    root = models_root(request.config)
    m = trained_model("timm-digits", root, root / "demo")
    good = tmp_path / "good.torchscript"
    export_model("torchscript", "timm", m.best, good)

    # the same module with one bias nudged: verify_export sees the difference
    module = torch.jit.load(str(good))
    with torch.no_grad():
        module.fc.bias.add_(0.5)
    nudged = tmp_path / "nudged.torchscript"
    torch.jit.save(module, str(nudged))
    report = verify_export("torchscript", "timm", m.best, nudged)
    assert not report["parity"]["ok"] and report["parity"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-4)

    # export_model raises when what it produced does not match (the produced file is changed here)
    real = export_mod._produce_torch

    def produce_then_change(fmt: str, ref: object, dest: Path) -> None:
        real(fmt, ref, dest)  # type: ignore[arg-type]
        shutil.copyfile(nudged, dest)

    monkeypatch.setattr(export_mod, "_produce_torch", produce_then_change)
    with pytest.raises(ExportError, match="torchscript parity check failed") as info:
        export_model("torchscript", "timm", m.best, tmp_path / "bad.torchscript")
    assert info.value.report["parity"]["ok"] is False and info.value.report["parity"]["max_abs_diff"] > 0.4
    monkeypatch.undo()

    # a file its runtime cannot load
    broken = tmp_path / "broken.torchscript"
    broken.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ExportError, match=r"cannot be loaded with torch\.jit"):
        verify_export("torchscript", "timm", m.best, broken)


def test_a_changed_openvino_export_fails_its_check(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino")
    import zipfile

    import numpy as np

    from trainer_runtime.inference import export as export_mod

    root = models_root(request.config)
    m = trained_model("yolo-classify", root, root / "demo")
    real = export_mod._produce_ultralytics

    def produce_then_scale(fmt: str, ckpt: Path, dest: Path) -> None:
        """What Ultralytics made, with every number in model.bin times 1.5."""
        real(fmt, ckpt, dest)
        raw = tmp_path / "raw.zip"
        shutil.move(dest, raw)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(dest, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("model.bin"):
                    n = len(data) // 4 * 4
                    arr = np.frombuffer(data[:n], dtype=np.float32).copy()
                    arr[np.isfinite(arr)] *= 1.5
                    data = arr.tobytes() + data[n:]
                dst.writestr(info, data)

    monkeypatch.setattr(export_mod, "_produce_ultralytics", produce_then_scale)
    with pytest.raises(ExportError, match="openvino"):
        export_model("openvino", "ultralytics", m.best, tmp_path / "model_openvino_model.zip")
    monkeypatch.undo()
    garbage = tmp_path / "garbage_openvino_model.zip"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="cannot be loaded with openvino"):
        verify_export("openvino", "ultralytics", m.best, garbage)


def test_formats_that_are_not_made_here_say_why(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = models_root(request.config)
    m = trained_model("timm-digits", root, root / "demo")
    with pytest.raises(ExportError, match="TensorFlow"):
        export_model("saved_model", "timm", m.best, tmp_path / "m")
    with pytest.raises(ExportError, match="NVIDIA GPU"):
        export_model("engine", "ultralytics", m.best, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_detr_exports_keep_boxes_and_logits(
    demo_shapes_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """transformers detection (DETR, timm ResNet-50 backbone, few queries): every format carries
    both outputs, checked against PyTorch."""
    from tests.trainer_runtime._demo_fixtures import dice_subset
    from tests.trainer_runtime.test_transformers_adapter import DETR, TINY_DETR, Recorder, make_ctx, make_spec
    from trainer_runtime.adapters.transformers_adapter import TransformersAdapter

    data = dice_subset(demo_shapes_dir, tmp_path_factory.mktemp("detr-shapes"), 8)
    spec = make_spec(DETR, "object_detection", batch_size=4, image_size=64, epochs=1)
    cfg = TransformersAdapter.resolve_config("easy", {}, {"model_config": TINY_DETR})
    TransformersAdapter(make_ctx(data, tmp_path, spec, cfg, Recorder())).train()
    fmts = ["onnx", "torchscript"]
    try:
        import openvino  # noqa: F401

        fmts.append("openvino")
    except ImportError:
        pass
    for fmt in fmts:
        dest = tmp_path / f"detr{FORMAT_SUFFIX[fmt]}"
        report = export_model(fmt, "transformers", tmp_path / "best.pt", dest)
        parity = report["parity"]
        assert report["outputs"] == ["logits", "pred_boxes"], report
        assert parity["ok"] and set(parity["per_output"]) == {"logits", "pred_boxes"} and parity["batch"] == 3, parity
