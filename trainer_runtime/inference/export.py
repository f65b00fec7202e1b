"""Model export of a checkpoint (ONNX, TorchScript, OpenVINO), checked against PyTorch.

    export_model(fmt, framework, checkpoint, dest, sample=None, tolerance=1e-3) -> report
    verify_export(fmt, framework, checkpoint, exported, sample=None, tolerance=1e-3) -> report
    export_onnx(framework, checkpoint, dest, ...)   == export_model("onnx", ...)

Formats (every framework: ultralytics, timm, transformers incl. DETR detection):

- ``onnx`` (``.onnx``): Ultralytics ``export(format="onnx")``; timm / transformers
  ``torch.onnx.export`` (``dynamo=False``: the dynamo exporter needs ``onnxscript``), opset 17,
  input ``pixel_values`` with a dynamic batch axis, outputs ``logits`` (DETR: ``logits``,
  ``pred_boxes``). Parity: onnxruntime (CPU).
- ``torchscript`` (``.torchscript``, a ``torch.jit`` archive): Ultralytics
  ``export(format="torchscript")``; timm / transformers ``torch.jit.trace`` of the same module the
  ONNX export uses. Parity: ``torch.jit.load``.
- ``openvino`` (``_openvino_model.zip``: a folder with ``model.xml`` / ``model.bin``): Ultralytics
  ``export(format="openvino")``; timm / transformers ``openvino.convert_model`` of the ONNX export,
  saved FP32. Parity: the OpenVINO runtime (CPU, ``INFERENCE_PRECISION_HINT=f32``: CPUs with bf16
  would otherwise run it in bf16).

Ultralytics exports run on a private copy of the checkpoint (they write next to it) with the
training ``imgsz`` (static 1x3xSxS input ``images``); nothing is installed at run time
(``YOLO_AUTOINSTALL=false``): ``onnx`` / ``onnxslim`` / ``openvino`` come from the venv (openvino is
in the ``train`` extra; without it the openvino export fails with that reason). The folder in the
OpenVINO zip is named like Ultralytics names it (``<name>_openvino_model/``, with its
``metadata.yaml`` for Ultralytics exports), so ``YOLO("<unzipped folder>")`` loads it.

Ultralytics formats NOT offered here (`UNSUPPORTED_FORMATS` gives each reason; the API answers
422 naming the field ``format`` with it): ``saved_model``, ``pb`` and ``edgetpu`` need TensorFlow
(a 270 MB wheel plus onnx2tf) and Ultralytics downloads a calibration file (edgetpu: the Edge TPU
compiler) from GitHub while exporting them, and there is no internet here; ``litert`` (``tflite``,
``tfjs`` now map to it) needs litert-torch and ai-edge-litert, not installed or wired up here;
``engine`` (TensorRT) needs an NVIDIA GPU and tensorrt, and exports run on the CPU; ``coreml`` /
``coreai`` install on Linux but the models run only on Apple systems, so parity cannot be
checked; ``ncnn`` needs ncnn and pnnx (a 29 MB wheel of native tools) and ``mnn`` the MNN package
(18 MB): both install from PyPI but are not wired up yet; ``paddle`` needs paddlepaddle (a 195 MB
wheel) and x2paddle; ``executorch`` needs ExecuTorch built for this torch; ``imx``, ``rknn``,
``axelera``, ``deepx``, ``qnn``, ``hailo``, ``ascend``, ``xilinx`` need vendor toolkits and their
accelerators.

Parity: the same few images (the one given, else a fixed synthetic one, plus two fixed synthetic
ones: `parity_images`) are preprocessed like the predictor does (Ultralytics: a plain resize to
SxS; timm / transformers: the model's evaluation transform) and run through PyTorch and the
exported model with its own runtime: Ultralytics one image at a time (static batch of 1), timm /
transformers as one batch (exercises the dynamic batch axis). The report (one shape for every
format) gives the max absolute difference of every output over all images and ``ok`` when each
is within `tolerance` times max(1, the output's largest magnitude: box coordinates are in
pixels). A failed parity check, or an exported file its runtime cannot load or run, raises
`ExportError` with the figures.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from trainer_runtime.spec import FRAMEWORKS

DEFAULT_TOLERANCE = 1e-3
OPSET = 17
EXPORT_FORMATS = ("onnx", "torchscript", "openvino")
# the frameworks each format is offered for (all three for every format here)
FORMAT_FRAMEWORKS: dict[str, tuple[str, ...]] = {fmt: FRAMEWORKS for fmt in EXPORT_FORMATS}
# the stored file's name ends with this (openvino: a folder, zipped)
FORMAT_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": "_openvino_model.zip"}
FORMAT_CONTENT_TYPE = {
    "onnx": "application/octet-stream",
    "torchscript": "application/octet-stream",
    "openvino": "application/zip",
}
FORMAT_RUNTIME = {"onnx": "onnxruntime", "torchscript": "torch.jit", "openvino": "openvino"}
_TF = (
    "needs TensorFlow (a 270 MB wheel plus onnx2tf and its tools) and Ultralytics downloads a calibration file "
    "from GitHub while exporting it; there is no internet here"
)
UNSUPPORTED_FORMATS: dict[str, str] = {
    "tflite": "is Ultralytics' LiteRT export (litert-torch, ai-edge-litert): not installed or wired up here",
    "litert": "needs litert-torch and ai-edge-litert, which are not installed or wired up here",
    "tfjs": "is Ultralytics' LiteRT export now (litert-torch, ai-edge-litert): not installed or wired up here",
    "saved_model": _TF,
    "pb": _TF,
    "edgetpu": "needs TensorFlow and the Edge TPU compiler, which Ultralytics downloads from GitHub (no internet here)",
    "engine": "(TensorRT) needs an NVIDIA GPU and the tensorrt package; this server exports on the CPU",
    "tensorrt": "needs an NVIDIA GPU and the tensorrt package; this server exports on the CPU",
    "coreml": "installs on Linux, but a Core ML model runs only on Apple systems, so its parity cannot be checked here",
    "mlmodel": "(Core ML) runs only on Apple systems, so its parity cannot be checked here",
    "coreai": "(Apple Core AI) runs only on Apple systems, so its parity cannot be checked here",
    "ncnn": "needs ncnn and pnnx (a 29 MB wheel of native tools), which are not installed or wired up here",
    "paddle": "needs paddlepaddle (a 195 MB wheel) and x2paddle, which are not installed here",
    "mnn": "needs the MNN package (installable, 18 MB), which is not wired up here yet",
    "executorch": "needs ExecuTorch built for this torch version, which is not installed here",
    "imx": "needs Sony's model compression toolkit, the IMX500 converter and a Java runtime",
    "rknn": "needs Rockchip's rknn-toolkit2 and a Rockchip NPU to run the model",
    "axelera": "needs Axelera's SDK and accelerator",
    "deepx": "needs DEEPX's SDK and accelerator",
    "qnn": "needs Qualcomm's QNN SDK and hardware",
    "hailo": "needs Hailo's dataflow compiler and accelerator",
    "ascend": "needs Huawei's Ascend toolkit and NPU",
    "xilinx": "needs AMD Xilinx's Vitis AI toolchain",
}


class ExportError(Exception):
    """The export or its parity check failed."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        self.report = report or {}
        super().__init__(message)


def unsupported_reason(fmt: str, framework: str | None = None) -> str | None:
    """None when `fmt` can be exported (for `framework`), else why not, as a sentence."""
    fmt = (fmt or "").lower()
    supported = ", ".join(EXPORT_FORMATS)
    if fmt in UNSUPPORTED_FORMATS:
        return f"export format {fmt!r} {UNSUPPORTED_FORMATS[fmt]}; supported formats: {supported}"
    if fmt not in EXPORT_FORMATS:
        return f"export format {fmt!r} is unknown; supported formats: {supported}"
    if framework is not None and framework not in FORMAT_FRAMEWORKS[fmt]:
        return f"export format {fmt!r} is not offered for {framework} models; supported formats: {supported}"
    return None


def synthetic_image(size: int = 64, variant: int = 0) -> Image.Image:
    """A deterministic RGB test image: variant 0 gradients and a square, 1 other gradients and a
    disc, 2 and up seeded noise."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size]
    n = max(size - 1, 1)
    if variant == 0:
        arr = np.stack([x * 255 // n, y * 255 // n, (x + y) * 127 // n], -1).astype("uint8")
        q = size // 4
        arr[q : 3 * q, q : 3 * q] = (240, 20, 20)
    elif variant == 1:
        arr = np.stack([255 - y * 255 // n, (x * y) * 255 // (n * n), 255 - x * 255 // n], -1).astype("uint8")
        disc = (x - size / 2) ** 2 + (y - size / 3) ** 2 < (size / 4) ** 2
        arr[disc] = (20, 200, 60)
    else:
        arr = np.random.default_rng(variant).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def parity_images(sample: Image.Image | None = None) -> list[Image.Image]:
    """The images parity is checked on: `sample` (else synthetic variant 0) and two fixed synthetic ones."""
    first = sample.convert("RGB") if sample is not None else synthetic_image(64, 0)
    return [first, synthetic_image(64, 1), synthetic_image(64, 2)]


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


def _compare(torch_outs: list[Any], got_outs: list[Any], names: list[str], tolerance: float) -> dict[str, Any]:
    """Parity of one forward: the exported model's outputs against PyTorch's first ones."""
    import numpy as np

    diffs: dict[str, float] = {}
    ok = True
    if not got_outs:
        raise ExportError("the exported model returned no outputs")
    for i, got_out in enumerate(got_outs):
        if i >= len(torch_outs):
            break
        ref = torch_outs[i].detach().float().cpu().numpy()
        got = np.asarray(got_out, dtype=np.float32)
        name = names[i] if i < len(names) else f"output{i}"
        if ref.shape != got.shape:
            raise ExportError(f"exported output {name} has shape {got.shape}, PyTorch {ref.shape}")
        diffs[name] = float(np.abs(ref - got).max()) if ref.size else 0.0
        if not np.isfinite(diffs[name]):
            diffs[name] = float("inf")
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
        ok = ok and diffs[name] <= tolerance * scale
    worst = max(diffs.values()) if diffs else 0.0
    return {"max_abs_diff": worst, "per_output": diffs, "tolerance": tolerance, "ok": ok}


def _merge(parts: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    per: dict[str, float] = {}
    for p in parts:
        for k, v in p["per_output"].items():
            per[k] = max(per.get(k, 0.0), v)
    return {
        "max_abs_diff": max(per.values()) if per else 0.0,
        "per_output": per,
        "tolerance": tolerance,
        "ok": all(p["ok"] for p in parts),
    }


# ------------------------------------------------------------------------- runtimes (parity)


class _Runner:
    """An exported model loaded in its own runtime: input name and shape, output names, run(x)."""

    def __init__(self, input_name: str, input_shape: list[Any], outputs: list[str], run: Any, version: str) -> None:
        self.input_name, self.input_shape, self.outputs, self.run, self.version = (
            input_name,
            input_shape,
            outputs,
            run,
            version,
        )


def _onnx_runner(path: Path) -> _Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    return _Runner(
        inp.name,
        list(inp.shape),
        [o.name for o in sess.get_outputs()],
        lambda x: sess.run(None, {inp.name: x}),
        ort.__version__,
    )


def _torchscript_runner(path: Path) -> _Runner:
    import torch

    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: Any) -> list[Any]:
        with torch.inference_mode():
            return [o.detach().float().numpy() for o in _as_list(module(torch.from_numpy(x)))]

    args = [a for a in module.forward.schema.arguments if a.name != "self"]
    name = args[0].name if args else "input"
    return _Runner(name, [], [], run, torch.__version__)


def _openvino() -> Any:
    """The openvino module, with its usage telemetry off in this process: ``openvino.convert_model``
    (also inside Ultralytics' export) sends events to Google Analytics unless a consent file in the
    home folder says no; a self-hosted server (and its tests) must not call out."""
    try:
        from openvino_telemetry.utils import opt_in_checker

        declined = opt_in_checker.ConsentCheckResult.DECLINED
        opt_in_checker.OptInChecker.check = lambda *_a, **_k: declined
    except Exception:  # no telemetry package: nothing to turn off
        pass
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError(f"openvino is not installed in this environment: {exc}") from None
    return ov


def _openvino_runner(folder: Path) -> _Runner:
    ov = _openvino()
    xml = next(iter(sorted(folder.rglob("*.xml"))), None)
    if xml is None:
        raise ExportError(f"the OpenVINO export has no .xml model in {folder.name}")
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )
    inp = compiled.inputs[0]
    shape = [d.get_length() if d.is_static else -1 for d in inp.get_partial_shape()]

    def run(x: Any) -> list[Any]:
        res = compiled(x)
        return [res[o] for o in compiled.outputs]

    # output names: the reference's (OpenVINO renames Ultralytics' second output after a tensor)
    return _Runner(inp.get_any_name() if inp.get_names() else "input", shape, [], run, ov.__version__)


def _load_runner(fmt: str, path: Path, tmp: Path) -> _Runner:
    try:
        if fmt == "onnx":
            return _onnx_runner(path)
        if fmt == "torchscript":
            return _torchscript_runner(path)
        folder = tmp / "openvino"
        with zipfile.ZipFile(path) as zf:
            _safe_extract(zf, folder)
        return _openvino_runner(folder)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"the exported {fmt} model cannot be loaded with {FORMAT_RUNTIME[fmt]}: {exc}") from exc


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if not target.is_relative_to(root):
            raise ExportError(f"the OpenVINO zip has an entry outside its folder: {info.filename}")
    zf.extractall(dest)


def _zip_folder(folder: Path, dest: Path) -> None:
    """`folder` (its files) into the zip `dest`, under a top folder named like `dest` without .zip."""
    top = dest.name.removesuffix(".zip")
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, f"{top}/{f.relative_to(folder).as_posix()}")


# -------------------------------------------------------------------------- PyTorch reference


class _Reference:
    """The checkpoint in PyTorch: the inputs parity runs (numpy, one per forward) and its outputs."""

    def __init__(self, framework: str, ckpt: Path, images: list[Image.Image]) -> None:
        import numpy as np
        import torch

        self.framework = framework
        self.detr = False
        if framework == "ultralytics":
            from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

            prepare_ultralytics()
            from ultralytics import YOLO

            yolo = YOLO(str(ckpt))
            imgsz = yolo.overrides.get("imgsz") or 640
            self.size = int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)
            model: Any = yolo.model
            self.module = model.float().eval()
            self.inputs = []
            for im in images:
                arr = np.asarray(im.convert("RGB").resize((self.size, self.size)), dtype=np.float32) / 255.0
                self.inputs.append(np.ascontiguousarray(arr.transpose(2, 0, 1)[None]))
        else:
            from trainer_runtime.inference.predictors import load_predictor

            pred: Any = load_predictor(framework, ckpt, "cpu")
            self.detr = framework == "transformers" and pred.task_type != "image_classification"
            self.module = _LogitsOnly.wrap(pred.model, self.detr) if framework == "transformers" else pred.model.eval()
            batch = torch.stack([pred.transform(im.convert("RGB")) for im in images])
            self.inputs = [np.ascontiguousarray(batch.numpy())]
            self.size = int(batch.shape[-1])
        self.output_names = ["logits", "pred_boxes"] if self.detr else ["logits"]
        with torch.inference_mode():
            self.outputs = [_as_list(self.module(torch.from_numpy(x))) for x in self.inputs]

    def check(self, runner: _Runner, tolerance: float) -> dict[str, Any]:
        parts = []
        for x, ref in zip(self.inputs, self.outputs, strict=True):
            try:
                got = runner.run(x)
            except ExportError:
                raise
            except Exception as exc:
                raise ExportError(f"the exported model failed to run: {exc}") from exc
            names = runner.outputs or (
                self.output_names if self.framework != "ultralytics" else [f"output{i}" for i in range(len(got))]
            )
            parts.append(_compare(ref, got, names, tolerance))
        parity = _merge(parts, tolerance)
        parity["images"] = sum(int(x.shape[0]) for x in self.inputs)
        parity["batch"] = int(self.inputs[0].shape[0])
        return parity


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


# ------------------------------------------------------------------------------- producing


def _produce_ultralytics(fmt: str, ckpt: Path, dest: Path) -> None:
    from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO

    if fmt == "openvino":
        _openvino()
    with tempfile.TemporaryDirectory(prefix="vta-export-") as tmp:
        local = Path(tmp) / "model.pt"
        shutil.copyfile(ckpt, local)
        model = YOLO(str(local))
        imgsz = model.overrides.get("imgsz") or 640
        size = int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)
        try:
            produced = model.export(format=fmt, imgsz=size, device="cpu", verbose=False)
        except Exception as exc:
            raise ExportError(f"Ultralytics {fmt} export failed: {exc}") from exc
        out = Path(produced) if produced else None
        dest.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "openvino":
            if out is None or not out.is_dir():
                raise ExportError("Ultralytics OpenVINO export produced no folder")
            _zip_folder(out, dest)
        else:
            if out is None or not out.is_file():
                raise ExportError(f"Ultralytics {fmt} export produced no file")
            shutil.move(str(out), dest)


def _torch_onnx(ref: _Reference, dest: Path) -> None:
    import warnings

    import torch

    outputs = ref.output_names
    dynamic = {"pixel_values": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    x1 = torch.from_numpy(ref.inputs[0][:1].copy())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                ref.module,
                (x1,),
                str(dest),
                dynamo=False,
                input_names=["pixel_values"],
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=OPSET,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc


def _produce_torch(fmt: str, ref: _Reference, dest: Path) -> None:
    import warnings

    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        _torch_onnx(ref, dest)
    elif fmt == "torchscript":
        x1 = torch.from_numpy(ref.inputs[0][:1].copy())
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(ref.module, (x1,), check_trace=False)
            torch.jit.save(traced, str(dest))
        except Exception as exc:
            raise ExportError(f"torch.jit.trace failed: {exc}") from exc
    else:
        ov = _openvino()
        with tempfile.TemporaryDirectory(prefix="vta-export-") as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            _torch_onnx(ref, onnx_path)
            folder = Path(tmp) / "model_openvino_model"
            folder.mkdir()
            try:
                ov.save_model(ov.convert_model(str(onnx_path)), str(folder / "model.xml"), compress_to_fp16=False)
            except Exception as exc:
                raise ExportError(f"openvino.convert_model failed: {exc}") from exc
            _zip_folder(folder, dest)


# ----------------------------------------------------------------------------------- public


def _check_args(fmt: str, framework: str, ckpt: Path) -> None:
    if framework not in FRAMEWORKS:
        raise ExportError(f"no export for framework {framework!r}")
    reason = unsupported_reason(fmt, framework)
    if reason:
        raise ExportError(reason)
    if not ckpt.is_file():
        raise ExportError(f"checkpoint {ckpt} does not exist")


def verify_export(
    fmt: str,
    framework: str,
    checkpoint: str | Path,
    exported: str | Path,
    *,
    sample: Image.Image | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    reference: _Reference | None = None,
) -> dict[str, Any]:
    """Run the exported file with its runtime against the checkpoint in PyTorch on `parity_images`;
    returns the report (without raising on a mismatch: see ``report["parity"]["ok"]``)."""
    fmt = (fmt or "").lower()
    ckpt, path = Path(checkpoint), Path(exported)
    _check_args(fmt, framework, ckpt)
    if not path.is_file():
        raise ExportError(f"exported file {path} does not exist")
    ref = reference or _Reference(framework, ckpt, parity_images(sample))
    with tempfile.TemporaryDirectory(prefix="vta-verify-") as tmp:
        runner = _load_runner(fmt, path, Path(tmp))
        parity = ref.check(runner, tolerance)
    outputs = runner.outputs or (
        ref.output_names if framework != "ultralytics" else [f"output{i}" for i in range(len(parity["per_output"]))]
    )
    shape: list[Any] = runner.input_shape or [
        "batch" if framework != "ultralytics" else 1,
        3,
        ref.size,
        ref.size,
    ]
    return {
        "format": fmt,
        "framework": framework,
        "input_name": runner.input_name,
        "input_shape": shape,
        "outputs": outputs,
        "runtime": FORMAT_RUNTIME[fmt],
        "runtime_version": runner.version,
        "parity": parity,
    }


def export_model(
    fmt: str,
    framework: str,
    checkpoint: str | Path,
    dest: str | Path,
    *,
    sample: Image.Image | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Export `checkpoint` as `fmt` to `dest` (a file; openvino: a zip) and check its parity;
    returns the report (see the module doc), raises `ExportError` when either fails."""
    fmt = (fmt or "").lower()
    ckpt, out = Path(checkpoint), Path(dest)
    _check_args(fmt, framework, ckpt)
    started = time.perf_counter()
    ref = _Reference(framework, ckpt, parity_images(sample))
    out.parent.mkdir(parents=True, exist_ok=True)
    if framework == "ultralytics":
        _produce_ultralytics(fmt, ckpt, out)
    else:
        _produce_torch(fmt, ref, out)
    report = verify_export(fmt, framework, ckpt, out, tolerance=tolerance, reference=ref)
    report.update(
        {
            "path": str(out),
            "filename_suffix": FORMAT_SUFFIX[fmt],
            "size": out.stat().st_size,
            "sha256": _sha256(out),
            "export_time_s": round(time.perf_counter() - started, 3),
        }
    )
    if fmt == "onnx":
        report["onnxruntime"] = report["runtime_version"]
    if not report["parity"]["ok"]:
        raise ExportError(
            f"{fmt} parity check failed: max abs diff {report['parity']['max_abs_diff']:.3g} "
            f"> tolerance {tolerance:.3g}",
            report,
        )
    return report


def export_onnx(
    framework: str,
    checkpoint: str | Path,
    dest: str | Path,
    *,
    sample: Image.Image | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """`export_model("onnx", ...)`."""
    return export_model("onnx", framework, checkpoint, dest, sample=sample, tolerance=tolerance)


__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORT_FORMATS",
    "FORMAT_CONTENT_TYPE",
    "FORMAT_FRAMEWORKS",
    "FORMAT_SUFFIX",
    "UNSUPPORTED_FORMATS",
    "ExportError",
    "export_model",
    "export_onnx",
    "parity_images",
    "synthetic_image",
    "unsupported_reason",
    "verify_export",
]
