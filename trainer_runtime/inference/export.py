"""ONNX export of a checkpoint, validated with onnxruntime against the PyTorch output.

    export_onnx(framework, checkpoint, dest, sample=None, tolerance=1e-3) -> dict

- Ultralytics: ``YOLO(ckpt).export(format="onnx", imgsz=<training imgsz>)`` on a private copy of
  the checkpoint (Ultralytics writes the .onnx next to it), static 1x3xSxS input named ``images``
  (Ultralytics' default opset, onnxslim simplification when installed). Nothing is installed at
  run time (``YOLO_AUTOINSTALL=false``): it needs ``onnx`` (and uses ``onnxslim``) from the venv.
- timm / transformers: ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``: the
  dynamo exporter needs ``onnxscript``), opset 17, input ``pixel_values`` with a dynamic batch
  axis; outputs ``logits`` (DETR: ``logits``, ``pred_boxes``).

Parity: one sample image (the one given, else a fixed synthetic one) is preprocessed like the
predictor does (Ultralytics: a plain resize to SxS, the same tensor goes to both runtimes), run
through PyTorch and onnxruntime (CPU); the report gives the max absolute difference of every
output and ``ok`` when each is within `tolerance` times max(1, the output's largest magnitude:
box coordinates are in pixels) (timm/transformers are checked with a batch of 2
to exercise the dynamic axis). A failed parity check raises `ExportError` with the figures.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

DEFAULT_TOLERANCE = 1e-3
OPSET = 17


class ExportError(Exception):
    """The export or its parity check failed."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        self.report = report or {}
        super().__init__(message)


def synthetic_image(size: int = 64) -> Image.Image:
    """A deterministic RGB test image (gradients and a square)."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size]
    arr = np.stack([x * 255 // max(size - 1, 1), y * 255 // max(size - 1, 1), (x + y) * 127 // max(size - 1, 1)], -1)
    arr = arr.astype("uint8")
    q = size // 4
    arr[q : 3 * q, q : 3 * q] = (240, 20, 20)
    return Image.fromarray(arr, "RGB")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _as_list(out: Any) -> list[Any]:
    if isinstance(out, list | tuple):
        flat: list[Any] = []
        for o in out:
            flat.extend(_as_list(o))
        return flat
    return [out]


def _compare(torch_outs: list[Any], ort_outs: list[Any], names: list[str], tolerance: float) -> dict[str, Any]:
    import numpy as np

    diffs: dict[str, float] = {}
    ok = True
    for i, ort_out in enumerate(ort_outs):
        if i >= len(torch_outs):
            break
        ref = torch_outs[i].detach().float().cpu().numpy()
        got = np.asarray(ort_out, dtype=np.float32)
        name = names[i] if i < len(names) else f"output{i}"
        if ref.shape != got.shape:
            raise ExportError(f"onnxruntime output {name} has shape {got.shape}, PyTorch {ref.shape}")
        diffs[name] = float(np.abs(ref - got).max()) if ref.size else 0.0
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
        ok = ok and diffs[name] <= tolerance * scale
    worst = max(diffs.values()) if diffs else 0.0
    return {"max_abs_diff": worst, "per_output": diffs, "tolerance": tolerance, "ok": ok}


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _export_ultralytics(ckpt: Path, dest: Path, sample: Image.Image, tolerance: float) -> dict[str, Any]:
    import numpy as np
    import torch

    from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="vta-export-") as tmp:
        local = Path(tmp) / "model.pt"
        shutil.copyfile(ckpt, local)
        model = YOLO(str(local))
        imgsz = model.overrides.get("imgsz") or 640
        size = int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)
        try:
            produced = model.export(format="onnx", imgsz=size, device="cpu", verbose=False)
        except Exception as exc:
            raise ExportError(f"Ultralytics ONNX export failed: {exc}") from exc
        if not produced or not Path(produced).is_file():
            raise ExportError("Ultralytics ONNX export produced no file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), dest)
        ref_model: Any = YOLO(str(local)).model
        ref = ref_model.float().eval()
    arr = np.asarray(sample.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
    x = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])
    with torch.inference_mode():
        torch_out = _as_list(ref(torch.from_numpy(x)))
    sess = _ort_session(dest)
    inp = sess.get_inputs()[0]
    names = [o.name for o in sess.get_outputs()]
    ort_out = sess.run(None, {inp.name: x})
    parity = _compare(torch_out, ort_out, names, tolerance)
    return {"input_name": inp.name, "input_shape": list(inp.shape), "outputs": names, "parity": parity}


class _LogitsOnly:
    """torch.nn.Module wrapper factory (built lazily so this module imports without torch)."""

    @staticmethod
    def wrap(model: Any, detr: bool) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, pixel_values: Any) -> Any:
                out = self.inner(pixel_values=pixel_values)
                if detr:
                    return out.logits, out.pred_boxes
                return out.logits

        return Wrapper(model).eval()


def _export_torch(framework: str, ckpt: Path, dest: Path, sample: Image.Image, tolerance: float) -> dict[str, Any]:
    import warnings

    import torch

    from trainer_runtime.inference.predictors import load_predictor

    pred: Any = load_predictor(framework, ckpt, "cpu")
    detr = framework == "transformers" and pred.task_type != "image_classification"
    module = _LogitsOnly.wrap(pred.model, detr) if framework == "transformers" else pred.model.eval()
    x1 = pred.transform(sample.convert("RGB"))
    x = torch.stack([x1, pred.transform(sample.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT))])
    outputs = ["logits", "pred_boxes"] if detr else ["logits"]
    dynamic = {"pixel_values": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (x1[None],),
                str(dest),
                dynamo=False,
                input_names=["pixel_values"],
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=OPSET,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc
    with torch.inference_mode():
        torch_out = _as_list(module(x))
    sess = _ort_session(dest)
    inp = sess.get_inputs()[0]
    ort_out = sess.run(None, {inp.name: x.numpy()})
    parity = _compare(torch_out, ort_out, outputs, tolerance)
    parity["batch"] = int(x.shape[0])
    return {"input_name": inp.name, "input_shape": list(inp.shape), "outputs": outputs, "parity": parity}


def export_onnx(
    framework: str,
    checkpoint: str | Path,
    dest: str | Path,
    *,
    sample: Image.Image | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Export `checkpoint` to ONNX at `dest` and check it; returns the report (see module doc)."""
    ckpt, out = Path(checkpoint), Path(dest)
    if not ckpt.is_file():
        raise ExportError(f"checkpoint {ckpt} does not exist")
    sample = sample or synthetic_image()
    started = time.perf_counter()
    if framework == "ultralytics":
        report = _export_ultralytics(ckpt, out, sample, tolerance)
    elif framework in ("timm", "transformers"):
        report = _export_torch(framework, ckpt, out, sample, tolerance)
    else:
        raise ExportError(f"no ONNX export for framework {framework!r}")
    import onnxruntime

    report.update(
        {
            "format": "onnx",
            "framework": framework,
            "path": str(out),
            "size": out.stat().st_size,
            "sha256": _sha256(out),
            "onnxruntime": onnxruntime.__version__,
            "export_time_s": round(time.perf_counter() - started, 3),
        }
    )
    if not report["parity"]["ok"]:
        raise ExportError(
            f"ONNX parity check failed: max abs diff {report['parity']['max_abs_diff']:.3g} "
            f"> tolerance {tolerance:.3g}",
            report,
        )
    return report


__all__ = ["DEFAULT_TOLERANCE", "ExportError", "export_onnx", "synthetic_image"]
