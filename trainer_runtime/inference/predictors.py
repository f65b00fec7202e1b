"""Predictors: load a checkpoint of one framework, predict batches of images into one schema.

    load_predictor(framework, path, device="cpu") -> Predictor
    Predictor.predict(images, conf=0.25, iou=0.7, max_det=300) -> [result per image]

The result schema is in `trainer_runtime.inference` (package doc). Preprocessing repeats what the
adapter's validation does, so a test run over the validation images reproduces its accuracy:

- Ultralytics: the checkpoint's own ``YOLO.predict`` (letterbox to the training ``imgsz``, NMS
  with `conf`/`iou`, boxes/masks/keypoints mapped back to the original pixels);
- timm: ``timm.data.create_transform(size, is_training=False, crop_pct=1.0)`` (the adapter's
  eval transform), softmax, top-5;
- transformers classification: ``Resize((s, s))``, ``ToTensor``, ``Normalize`` (0.5 for ViT/DeiT,
  ImageNet otherwise); DETR: PIL resize to ``s x s``, ImageNet normalisation, softmax without the
  no-object class, boxes scaled to the original size, kept when the score >= `conf` (no NMS:
  DETR's set prediction does not need it).

Images arrive as bytes; `decode_image` opens them with Pillow (RGB), enforcing a pixel limit and
reporting corrupt files as `InvalidImageError`. torch and the frameworks are imported lazily.
"""

from __future__ import annotations

import abc
import io
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
TOP_K = 5


class InvalidImageError(Exception):
    """The bytes are not a decodable image, or it is over the pixel limit."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(message)


class CheckpointLoadError(Exception):
    """The file is not a checkpoint this predictor can load."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB image from file bytes; InvalidImageError when it is not one or too big."""
    if not data:
        raise InvalidImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _pil_open()(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise InvalidImageError(
                    f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}", too_large=True
                )
            im.load()
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"image is too large: {exc}", too_large=True) from None
    except UnidentifiedImageError:
        raise InvalidImageError("not an image (Pillow cannot identify the file)") from None
    except ImportError:  # a framework's Image.open patch wanted an optional decoder plugin
        raise InvalidImageError("not an image (Pillow cannot identify the file)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImageError(f"corrupt or truncated image: {exc}") from None
    rgb: Image.Image = im if im.mode == "RGB" else im.convert("RGB")
    return rgb


def _pil_open() -> Any:
    """Pillow's own ``Image.open``: Ultralytics replaces it with a wrapper that, on a file Pillow
    cannot identify, checks for (and without auto-install fails to import) a HEIF plugin."""
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", None) or Image.open


def _r(v: Any, nd: int = 2) -> float:
    return round(float(v), nd)


def _classification(probs: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Top-5 of one probability row (numpy)."""
    import numpy as np

    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    order = np.argsort(-p, kind="stable")[:TOP_K]
    preds = [{"label": str(class_names[i]), "class_id": int(i), "confidence": _r(p[i], 6)} for i in order]
    return {
        "predictions": preds,
        "predicted_label": preds[0]["label"] if preds else None,
        "confidence": preds[0]["confidence"] if preds else None,
    }


class Predictor(abc.ABC):
    """A loaded checkpoint. `predict` is not thread-safe: the worker calls it from one thread."""

    framework: str = ""
    task_type: str = ""
    model_name: str = ""
    class_names: list[str]
    image_size: int = 0
    device: str = "cpu"
    num_keypoints: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "model_name": self.model_name,
            "task_type": self.task_type,
            "class_names": list(self.class_names),
            "image_size": self.image_size,
            "device": self.device,
        }

    @abc.abstractmethod
    def torch_module(self) -> Any:
        """The underlying torch.nn.Module (memory accounting, export)."""

    def memory_bytes(self) -> int:
        """Bytes of parameters and buffers (what the cache limit counts)."""
        mod = self.torch_module()
        total = 0
        for t in list(mod.parameters()) + list(mod.buffers()):
            total += t.numel() * t.element_size()
        return int(total)

    @abc.abstractmethod
    def predict(
        self, images: Sequence[Image.Image], *, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> list[dict[str, Any]]:
        """One result per image, in order."""

    def _base(self, im: Image.Image) -> dict[str, Any]:
        return {"task_type": self.task_type, "predictions": [], "image": {"width": im.width, "height": im.height}}

    @staticmethod
    def _timed(results: list[dict[str, Any]], pre: float, inf: float, post: float) -> list[dict[str, Any]]:
        n = max(len(results), 1)
        for r in results:
            r["preprocessing_time_ms"] = _r(pre * 1000 / n, 3)
            r["inference_time_ms"] = _r(inf * 1000 / n, 3)
            r["postprocessing_time_ms"] = _r(post * 1000 / n, 3)
            r["batch_size"] = len(results)
        return results


def _torch_device(device: str) -> Any:
    import torch

    d = (device or "cpu").lower()
    if d.startswith("cuda") and not torch.cuda.is_available():
        d = "cpu"
    return torch.device(d)


def _sync(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ ultralytics

_ULTRA_TASKS = {
    "detect": "object_detection",
    "segment": "instance_segmentation",
    "pose": "pose_estimation",
    "obb": "oriented_object_detection",
    "classify": "image_classification",
}


class UltralyticsPredictor(Predictor):
    """Predictions with an Ultralytics YOLO checkpoint: detect, segment, pose, obb or classify
    (CheckpointLoadError for another task)."""

    framework = "ultralytics"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

        prepare_ultralytics()
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(path))
        except Exception as exc:
            raise CheckpointLoadError(f"not an Ultralytics checkpoint: {exc}") from exc
        task = str(self.model.task)
        if task not in _ULTRA_TASKS:
            raise CheckpointLoadError(f"Ultralytics task {task!r} is not supported")
        self.task_type = _ULTRA_TASKS[task]
        names = self.model.names
        self.class_names = [str(names[i]) for i in sorted(names)]
        imgsz = self.model.overrides.get("imgsz") or 640
        self.image_size = int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)
        ckpt = getattr(self.model, "ckpt", None) or {}
        train_model = str((ckpt.get("train_args") or {}).get("model") or "")
        self.model_name = Path(train_model).stem if train_model else task
        self.tdevice = _torch_device(device)
        self.device = str(self.tdevice)
        self._ul_device = "cpu" if self.tdevice.type == "cpu" else str(self.tdevice.index or 0)
        kpt = getattr(self.model.model, "kpt_shape", None)
        self.num_keypoints = int(kpt[0]) if kpt else 0

    def torch_module(self) -> Any:
        return self.model.model

    def predict(
        self, images: Sequence[Image.Image], *, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        res: Any = self.model.predict(
            list(images),
            conf=conf,
            iou=iou,
            imgsz=self.image_size,
            device=self._ul_device,
            max_det=max_det,
            verbose=False,
        )
        wall = time.perf_counter() - t0
        out: list[dict[str, Any]] = []
        pre = inf = post = 0.0
        for im, r in zip(images, res, strict=True):
            t1 = time.perf_counter()
            item = self._base(im)
            item.update(self._convert(r))
            sp = r.speed or {}
            pre += float(sp.get("preprocess") or 0.0) / 1000
            inf += float(sp.get("inference") or 0.0) / 1000
            post += float(sp.get("postprocess") or 0.0) / 1000 + (time.perf_counter() - t1)
            out.append(item)
        # Ultralytics' speeds are per-image averages; the rest of the call (source setup) is preprocessing
        known = pre + inf + post
        pre += max(0.0, wall - known)
        return self._timed(out, pre, inf, post)

    def _convert(self, r: Any) -> dict[str, Any]:
        names = self.class_names

        def label(c: int) -> str:
            return names[c] if 0 <= c < len(names) else str(c)

        if self.task_type == "image_classification":
            return _classification(r.probs.data.float().cpu().numpy(), names)
        preds: list[dict[str, Any]] = []
        if self.task_type == "oriented_object_detection":
            obb = r.obb
            if obb is None or len(obb) == 0:
                return {"predictions": []}
            xywhr = obb.xywhr.float().cpu().numpy()
            corners = obb.xyxyxyxy.float().cpu().numpy()
            confs = obb.conf.float().cpu().numpy()
            cls = obb.cls.cpu().numpy().astype(int)
            import math

            for i in range(len(confs)):
                cx, cy, w, h, rad = (float(v) for v in xywhr[i])
                poly = [[_r(x), _r(y)] for x, y in corners[i]]
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                preds.append(
                    {
                        "label": label(int(cls[i])),
                        "class_id": int(cls[i]),
                        "confidence": _r(confs[i], 5),
                        "rotated_box": [_r(cx), _r(cy), _r(w), _r(h), _r(math.degrees(rad), 3)],
                        "polygon": poly,
                        "box": [min(xs), min(ys), max(xs), max(ys)],
                    }
                )
            return {"predictions": preds}
        boxes = r.boxes
        if boxes is None or len(boxes) == 0:
            return {"predictions": []}
        xyxy = boxes.xyxy.float().cpu().numpy()
        confs = boxes.conf.float().cpu().numpy()
        cls = boxes.cls.cpu().numpy().astype(int)
        polys = r.masks.xy if (self.task_type == "instance_segmentation" and r.masks is not None) else None
        kps = None
        if self.task_type == "pose_estimation" and r.keypoints is not None:
            kps = r.keypoints.data.float().cpu().numpy()
        for i in range(len(confs)):
            item: dict[str, Any] = {
                "label": label(int(cls[i])),
                "class_id": int(cls[i]),
                "confidence": _r(confs[i], 5),
                "box": [_r(v) for v in xyxy[i]],
            }
            if polys is not None:
                item["polygon"] = [[_r(x), _r(y)] for x, y in polys[i]] if i < len(polys) else []
            if kps is not None:
                k = kps[i]
                item["keypoints"] = [
                    [_r(p[0]), _r(p[1]), _r(p[2], 4) if len(p) > 2 else 1.0] for p in k.reshape(len(k), -1)
                ]
            preds.append(item)
        return {"predictions": preds}


# ------------------------------------------------------------------------------- torch ones


class _TorchClassifier(Predictor):
    """Shared batch loop of the timm and transformers classifiers."""

    task_type = "image_classification"
    transform: Any
    model: Any
    tdevice: Any

    def torch_module(self) -> Any:
        return self.model

    def logits(self, x: Any) -> Any:
        return self.model(x)

    def predict(
        self,
        images: Sequence[Image.Image],
        *,
        conf: float = 0.25,  # noqa: ARG002  the Predictor interface's; a classifier keeps every class
        iou: float = 0.7,  # noqa: ARG002  (detection only)
        max_det: int = 300,  # noqa: ARG002  (detection only)
    ) -> list[dict[str, Any]]:
        import torch

        t0 = time.perf_counter()
        x = torch.stack([self.transform(im) for im in images]).to(self.tdevice)
        t1 = time.perf_counter()
        with torch.inference_mode():
            probs = self.logits(x).float().softmax(-1)
        _sync(self.tdevice)
        t2 = time.perf_counter()
        p = probs.cpu().numpy()
        out = []
        for im, row in zip(images, p, strict=True):
            item = self._base(im)
            item.update(_classification(row, self.class_names))
            out.append(item)
        return self._timed(out, t1 - t0, t2 - t1, time.perf_counter() - t2)


class TimmPredictor(_TorchClassifier):
    """Image classification with a timm checkpoint of this project."""

    framework = "timm"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from timm.data import create_transform

        from trainer_runtime.adapters.timm_adapter import TimmAdapter

        try:
            model, meta = TimmAdapter.build_model_from_checkpoint(path)
        except Exception as exc:
            raise CheckpointLoadError(f"not a timm checkpoint of this project: {exc}") from exc
        self.tdevice = _torch_device(device)
        self.device = str(self.tdevice)
        self.model = model.to(self.tdevice).eval()
        self.meta = meta
        self.class_names = [str(c) for c in meta["class_names"]]
        self.image_size = int(meta["image_size"])
        self.model_name = str(meta.get("model_name") or "")
        self.transform = create_transform(self.image_size, is_training=False, crop_pct=1.0)


class TransformersPredictor(_TorchClassifier):
    """Image classification with a transformers checkpoint of this project."""

    framework = "transformers"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from trainer_runtime.adapters import _torch_data as common
        from trainer_runtime.adapters.transformers_adapter import TransformersAdapter

        try:
            model, meta = TransformersAdapter.build_model_from_checkpoint(path)
        except Exception as exc:
            raise CheckpointLoadError(f"not a transformers checkpoint of this project: {exc}") from exc
        self.tdevice = _torch_device(device)
        self.device = str(self.tdevice)
        self.model = model.to(self.tdevice).eval()
        self.meta = meta
        self.task_type = str(meta.get("task_type") or "image_classification")
        self.class_names = [str(c) for c in meta["class_names"]]
        self.image_size = int(meta["image_size"])
        self.model_name = str(meta.get("model_name") or "")
        s = self.image_size
        if self.task_type == "image_classification":
            from torchvision import transforms as T

            vit_like = getattr(model.config, "model_type", "") in ("vit", "deit")
            mean, std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) if vit_like else (common.IMAGENET_MEAN, common.IMAGENET_STD)
            self.transform = T.Compose([T.Resize((s, s)), T.ToTensor(), T.Normalize(mean, std)])
        else:
            from torchvision.transforms import functional as F

            def detr_tf(im: Image.Image) -> Any:
                return F.normalize(F.to_tensor(im.resize((s, s))), common.IMAGENET_MEAN, common.IMAGENET_STD)

            self.transform = detr_tf

    def logits(self, x: Any) -> Any:
        return self.model(pixel_values=x).logits

    def predict(
        self, images: Sequence[Image.Image], *, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
    ) -> list[dict[str, Any]]:
        if self.task_type == "image_classification":
            return super().predict(images, conf=conf, iou=iou, max_det=max_det)
        import torch

        t0 = time.perf_counter()
        x = torch.stack([self.transform(im) for im in images]).to(self.tdevice)
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(pixel_values=x)
            probs = out.logits.float().softmax(-1)[..., :-1]
            scores, labels = probs.max(-1)
            boxes = out.pred_boxes.float()
        _sync(self.tdevice)
        t2 = time.perf_counter()
        scores_np, labels_np, boxes_np = scores.cpu().numpy(), labels.cpu().numpy(), boxes.cpu().numpy()
        results = []
        for k, im in enumerate(images):
            item = self._base(im)
            w, h = im.width, im.height
            order = [int(i) for i in scores_np[k].argsort()[::-1] if scores_np[k][i] >= conf][:max_det]
            preds = []
            for i in order:
                cx, cy, bw, bh = (float(v) for v in boxes_np[k][i])
                x1, y1 = max(0.0, (cx - bw / 2) * w), max(0.0, (cy - bh / 2) * h)
                x2, y2 = min(float(w), (cx + bw / 2) * w), min(float(h), (cy + bh / 2) * h)
                c = int(labels_np[k][i])
                preds.append(
                    {
                        "label": self.class_names[c] if c < len(self.class_names) else str(c),
                        "class_id": c,
                        "confidence": _r(scores_np[k][i], 5),
                        "box": [_r(x1), _r(y1), _r(x2), _r(y2)],
                    }
                )
            item["predictions"] = preds
            results.append(item)
        return self._timed(results, t1 - t0, t2 - t1, time.perf_counter() - t2)


PREDICTORS: dict[str, type[Predictor]] = {
    "ultralytics": UltralyticsPredictor,
    "timm": TimmPredictor,
    "transformers": TransformersPredictor,
}


def load_predictor(framework: str, path: str | Path, device: str = "cpu") -> Predictor:
    """Load `path` (a best.pt / last.pt of `framework`) for inference on `device`."""
    cls = PREDICTORS.get(framework)
    if cls is None:
        raise CheckpointLoadError(f"unknown framework {framework!r} (known: {', '.join(PREDICTORS)})")
    p = Path(path)
    if not p.is_file():
        raise CheckpointLoadError(f"checkpoint {p} does not exist")
    return cls(p, device)  # type: ignore[call-arg]


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = [
    "PREDICTORS",
    "CheckpointLoadError",
    "InvalidImageError",
    "Predictor",
    "TimmPredictor",
    "TransformersPredictor",
    "UltralyticsPredictor",
    "decode_image",
    "default_device",
    "load_predictor",
]
