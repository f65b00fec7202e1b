"""Ultralytics YOLO adapter: detect, segment, pose, obb and classify with ``yolov8*`` / ``yolo11*``.

Everything the class publishes (catalog, schema, presets, config resolution, spec checks) works
without Ultralytics installed; `train()` imports it after `_ultralytics_env.prepare_ultralytics()`
made it safe offline (no DNS probe, no font or weight download, no auto-install, its own
MLflow/W&B/... loggers off).

Models are built from their architecture yaml (``YOLO("yolo11n-seg.yaml", task="segment")``) and
trained from scratch. Pretrained weights the runner resolved (`TrainContext.pretrained`: registry
or release asset, `trainer_runtime.weights`) are loaded instead (transfer learning: Ultralytics
copies every tensor that fits, `pretrained.ultralytics_reporter` counts them), else
``<weights dir>/<model name>.pt`` when it exists; the weights dir is ``$VTA_WEIGHTS_DIR``, else
``<ctx.work_dir>/../weights``. The adapter itself never downloads.

How Ultralytics 8.4's trainer is mapped (checked against the installed source and by the tests):

- ``on_train_start`` -> ``on_train_start(epochs, start_epoch)``; `start_epoch` is the 1-based
  number of the first epoch this run trains (``k + 1`` when resuming after ``k`` epochs).
- ``on_train_batch_end`` -> ``on_batch_end(epoch, batch, batches, loss)`` (1-based epoch and batch,
  loss = sum of the running mean train losses); when ``ctx.stop_event`` is set it sets
  ``trainer.stop = True``: Ultralytics leaves the batch loop, validates, saves last.pt for that
  (partial) epoch, calls ``on_fit_epoch_end`` and ends. That epoch counts as done: last.pt records it
  and a resume starts at the next one.
- ``on_fit_epoch_end`` -> ``on_fit_epoch_end(epoch, epochs, metrics)`` with the metrics of the
  validation of THAT epoch (``trainer.metrics``; in ``on_train_epoch_end`` they are still the
  previous epoch's, zeros at first) plus the epoch's mean train losses. Ultralytics calls
  ``on_fit_epoch_end`` once more from ``final_eval`` (validation of best.pt) with ``trainer.epoch``
  bumped by one; that call is skipped: it is recognised as the call after the one where
  ``trainer.stop`` was already true (the ``trainer.epoch >= trainer.epochs`` test alone misses it
  when the run stopped early).
- ``on_model_save`` -> the fresh ``weights/last.pt`` (and ``best.pt`` when this epoch is the best)
  are copied atomically to ``ctx.output_dir`` and ``on_model_save(epoch, last, best, is_best)``
  fires. These copies still hold the optimizer: ``final_eval`` strips the optimizer from
  ``weights/last.pt`` at the end of EVERY run, including a stopped one, so the copy is what keeps a
  stopped run resumable. At the end of a completed (or early-stopped) run the stripped files
  replace the copies; a stopped run keeps its resumable last.pt.
- AMP: on CUDA Ultralytics checks AMP by downloading ``yolo26n.pt``. During `train()` that check is
  replaced by one that runs the original when the weights are on disk and otherwise only rejects
  the GPUs Ultralytics lists as AMP-broken and warns (AMP stays on). The original is restored
  afterwards, so nothing global stays patched.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainer_runtime.adapters import init_weights, pretrained
from trainer_runtime.adapters.base import (
    CANONICAL_KEYS,
    Adapter,
    ConfigError,
    ConfigField,
    ModelInfo,
    TrainContext,
    TrainResult,
    check_image_size,
    unknown_key_error,
)
from trainer_runtime.errors import IncompatibleDatasetError
from trainer_runtime.weights import USER_UPLOAD

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec

FRAMEWORK = "ultralytics"

# suffix -> (task_type, Ultralytics task)
SUFFIX_TASKS: dict[str, tuple[str, str]] = {
    "": ("object_detection", "detect"),
    "-seg": ("instance_segmentation", "segment"),
    "-pose": ("pose_estimation", "pose"),
    "-obb": ("oriented_object_detection", "obb"),
    "-cls": ("image_classification", "classify"),
}
TASK_SUFFIX = {task: suffix for suffix, (task, _) in SUFFIX_TASKS.items()}
ULTRA_TASK = {task: ultra for _, (task, ultra) in SUFFIX_TASKS.items()}

# Approximate parameter counts in millions (Ultralytics' model tables).
_PARAMS: dict[str, dict[str, tuple[float, ...]]] = {
    "yolov8": {
        "": (3.2, 11.2, 25.9, 43.7, 68.2),
        "-seg": (3.4, 11.8, 27.3, 46.0, 71.8),
        "-pose": (3.3, 11.6, 26.4, 44.4, 69.4),
        "-obb": (3.1, 11.4, 26.4, 44.5, 69.5),
        "-cls": (2.7, 6.4, 17.0, 37.5, 57.4),
    },
    "yolo11": {
        "": (2.6, 9.4, 20.1, 25.3, 56.9),
        "-seg": (2.9, 10.1, 22.4, 27.6, 62.1),
        "-pose": (2.9, 9.9, 20.9, 26.2, 58.8),
        "-obb": (2.7, 9.7, 20.9, 26.2, 58.8),
        "-cls": (1.6, 5.5, 10.4, 12.9, 28.4),
    },
}
_SIZES = ("n", "s", "m", "l", "x")
_SIZE_WORDS = {"n": "nano", "s": "small", "m": "medium", "l": "large", "x": "extra-large"}
_TASK_WORDS = {
    "object_detection": "object detection",
    "instance_segmentation": "instance segmentation",
    "pose_estimation": "pose estimation (keypoints)",
    "oriented_object_detection": "oriented (rotated box) detection",
    "image_classification": "image classification",
}
_FAMILY_WORDS = {"yolov8": "YOLOv8", "yolo11": "YOLO11"}

# Ultralytics metric key -> canonical metric key
METRIC_NAMES = {
    "metrics/precision(B)": "val/precision",
    "metrics/recall(B)": "val/recall",
    "metrics/mAP50(B)": "val/mAP50",
    "metrics/mAP50-95(B)": "val/mAP50-95",
    "metrics/precision(M)": "val/mask_precision",
    "metrics/recall(M)": "val/mask_recall",
    "metrics/mAP50(M)": "val/mask_mAP50",
    "metrics/mAP50-95(M)": "val/mask_mAP50-95",
    "metrics/precision(P)": "val/pose_precision",
    "metrics/recall(P)": "val/pose_recall",
    "metrics/mAP50(P)": "val/pose_mAP50",
    "metrics/mAP50-95(P)": "val/pose_mAP50-95",
    "metrics/accuracy_top1": "val/accuracy_top1",
    "metrics/accuracy_top5": "val/accuracy_top5",
}

PRIMARY_METRIC = {
    "object_detection": "val/mAP50-95",
    "oriented_object_detection": "val/mAP50-95",
    "instance_segmentation": "val/mask_mAP50-95",
    "pose_estimation": "val/pose_mAP50-95",
    "image_classification": "val/accuracy_top1",
}

OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp")
_OPTIMIZER_ALIASES = {o.lower(): o for o in OPTIMIZERS}

# Settings a resumed run may change (Ultralytics ignores the others and keeps the checkpoint's).
_RESUME_ALLOWED = ("device", "workers", "save_dir", "plots", "val", "data")

# Sensible strengths when an augmentation is switched on with `True` and the preset has it off.
_AUG_ON = {"mosaic": 1.0, "mixup": 0.1, "cutmix": 0.1, "copy_paste": 0.3}

_HYPER_KEYS = {
    "epochs": "epochs",
    "batch_size": "batch",
    "batch": "batch",
    "image_size": "imgsz",
    "imgsz": "imgsz",
    "learning_rate": "lr0",
    "seed": "seed",
    "workers": "workers",
}
_HYPER_IGNORED = ("device", "val_fraction", "preset", "advanced_config")


def _f(name: str, default: float, help_: str, lo: float | None = 0.0, hi: float | None = None) -> ConfigField:
    return ConfigField(name, "float", default, help_, minimum=lo, maximum=hi)


CONFIG_SCHEMA: tuple[ConfigField, ...] = (
    ConfigField(
        "optimizer",
        "select",
        "auto",
        "Optimizer; 'auto' lets Ultralytics pick SGD or AdamW (and its own learning rate) by run length",
        options=OPTIMIZERS,
    ),
    _f("lr0", 0.01, "Initial learning rate (SGD ~1e-2, Adam/AdamW ~1e-3); ignored by optimizer 'auto'", 0.0),
    _f("lrf", 0.01, "Final learning rate as a fraction of lr0", 0.0, 1.0),
    ConfigField("cos_lr", "bool", False, "Cosine learning-rate schedule (else linear decay)"),
    _f("momentum", 0.937, "SGD momentum / Adam beta1", 0.0, 1.0),
    _f("weight_decay", 0.0005, "Weight decay (L2)", 0.0, 1.0),
    _f("warmup_epochs", 3.0, "Warm-up epochs (fractions allowed)", 0.0),
    _f(
        "warmup_bias_lr",
        0.1,
        "Bias learning rate at the start of the warm-up (0 with AdamW: what optimizer auto sets)",
        0.0,
    ),
    ConfigField("patience", "int", 100, "Stop early after this many epochs without validation improvement", minimum=0),
    _f("mosaic", 1.0, "Mosaic augmentation probability (detect/segment/pose/obb)", 0.0, 1.0),
    _f("mixup", 0.0, "MixUp augmentation probability", 0.0, 1.0),
    _f("cutmix", 0.0, "CutMix augmentation probability", 0.0, 1.0),
    _f("copy_paste", 0.0, "Copy-paste augmentation (segment/obb only; others ignore it)", 0.0, 1.0),
    ConfigField("close_mosaic", "int", 10, "Turn mosaic off for the last N epochs (0 keeps it on)", minimum=0),
    _f("hsv_h", 0.015, "Hue augmentation fraction", 0.0, 1.0),
    _f("hsv_s", 0.7, "Saturation augmentation fraction", 0.0, 1.0),
    _f("hsv_v", 0.4, "Brightness augmentation fraction", 0.0, 1.0),
    _f("degrees", 0.0, "Random rotation range (+/- degrees)", 0.0, 180.0),
    _f("translate", 0.1, "Random translation (+/- fraction of the image)", 0.0, 1.0),
    _f("scale", 0.5, "Random scale gain (+/-)", 0.0),
    _f("shear", 0.0, "Random shear (+/- degrees)", 0.0, 180.0),
    _f("perspective", 0.0, "Random perspective (0-0.001 typical)", 0.0, 0.001),
    _f("fliplr", 0.5, "Horizontal flip probability", 0.0, 1.0),
    _f("flipud", 0.0, "Vertical flip probability", 0.0, 1.0),
    _f("erasing", 0.4, "Random erasing probability (classify only)", 0.0, 0.9),
    _f("dropout", 0.0, "Dropout of the classification head (classify only)", 0.0, 1.0),
    ConfigField("freeze", "int", 0, "Freeze the first N layers (useful with local pretrained weights)", minimum=0),
    ConfigField("amp", "bool", True, "Mixed precision on CUDA (always off on CPU)"),
    ConfigField(
        "nbs",
        "int",
        64,
        "Nominal batch size: gradients of smaller batches add up to this many images before each "
        "optimiser step (set it to the batch size for one step per batch on small datasets)",
        minimum=1,
    ),
    ConfigField("workers", "int", 0, "Data-loader worker processes (Ultralytics uses 0 on CPU)", minimum=0),
)
_SCHEMA_BY_NAME = {f.name: f for f in CONFIG_SCHEMA}

PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "optimizer": "auto",
        "cos_lr": False,
        "mosaic": 1.0,
        "mixup": 0.0,
        "cutmix": 0.0,
        "copy_paste": 0.0,
        "patience": 100,
        "close_mosaic": 10,
    },
    "medium": {
        "optimizer": "AdamW",
        "lr0": 0.001,
        "cos_lr": True,
        "mosaic": 1.0,
        "mixup": 0.1,
        "cutmix": 0.0,
        "copy_paste": 0.1,
        "patience": 50,
        "close_mosaic": 10,
        "weight_decay": 0.0005,
    },
    "advanced": {
        "optimizer": "AdamW",
        "lr0": 0.001,
        "cos_lr": True,
        "mosaic": 1.0,
        "mixup": 0.2,
        "cutmix": 0.1,
        "copy_paste": 0.3,
        "patience": 30,
        "close_mosaic": 15,
        "weight_decay": 0.001,
        "degrees": 10.0,
        "translate": 0.2,
        "scale": 0.7,
        "hsv_s": 0.8,
        "hsv_v": 0.5,
    },
}


# ------------------------------------------------------------------------------------ catalog


def _catalog() -> dict[str, ModelInfo]:
    out: dict[str, ModelInfo] = {}
    for family, by_suffix in _PARAMS.items():
        for suffix, params in by_suffix.items():
            task = SUFFIX_TASKS[suffix][0]
            for size, p in zip(_SIZES, params, strict=True):
                name = f"{family}{size}{suffix}"
                out[name] = ModelInfo(
                    name=name,
                    framework=FRAMEWORK,
                    task_type=task,
                    description=f"{_FAMILY_WORDS[family]} {_SIZE_WORDS[size]} for {_TASK_WORDS[task]}",
                    params_m=p,
                    default_image_size=224 if task == "image_classification" else 640,
                    max_image_size=2048 if task == "image_classification" else 4096,
                )
    return out


CATALOG = _catalog()


def normalize_model_name(name: str) -> str:
    """``YOLO11n-SEG.pt`` -> ``yolo11n-seg`` (case, spaces and a .pt/.yaml suffix do not matter)."""
    n = name.strip().lower().replace(" ", "")
    for ext in (".pt", ".yaml", ".yml"):
        n = n.removesuffix(ext)
    return n


def model_info(name: str) -> ModelInfo:
    """The catalog entry of `name`; ConfigError naming the closest model when unknown."""
    n = normalize_model_name(name)
    if n in CATALOG:
        return CATALOG[n]
    raise unknown_key_error(name, tuple(CATALOG), what="Ultralytics model")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def model_for_task(name: str, task_type: str) -> str:
    """The same family and size with the suffix of `task_type` (``yolo11n-seg`` -> ``yolo11n-cls``)."""
    base = re.sub(r"-(seg|pose|obb|cls)$", "", normalize_model_name(name))
    return f"{base}{TASK_SUFFIX[task_type]}"


# ------------------------------------------------------------------------------- config values


def _number(key: str, value: Any, lo: float | None, hi: float | None, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key} must be {kind}, not {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{key} must be an integer, not {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{key} must be finite, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else f">= {lo:g}"
        raise ConfigError(f"{key} must be {rng}, not {value!r}")
    return int(value) if integer else float(value)


def _native_value(key: str, value: Any) -> Any:
    """Check a framework-native value against the schema."""
    f = _SCHEMA_BY_NAME[key]
    if f.type == "select":
        return _optimizer(value) if key == "optimizer" else value
    if f.type == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value
    return _number(key, value, f.minimum, f.maximum, integer=f.type == "int")


def _optimizer(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in _OPTIMIZER_ALIASES:
        raise unknown_key_error(str(value), OPTIMIZERS, what="optimizer")
    return _OPTIMIZER_ALIASES[value.strip().lower()]


def _aug(key: str, value: Any, current: Any) -> float:
    """mosaic / mixup / cutmix / copy_paste: True -> the preset's strength (or a default), False -> 0."""
    if isinstance(value, bool):
        if not value:
            return 0.0
        cur = float(current or 0.0)
        return cur if cur > 0 else _AUG_ON[key]
    return float(_number(key, value, 0.0, 1.0))


def _canonical(key: str, value: Any, cfg: dict[str, Any]) -> None:
    """Apply one canonical advanced_config key (contract 1 in docs/architecture.md) to `cfg`."""
    if key == "optimizer":
        cfg["optimizer"] = _optimizer(value)
    elif key == "scheduler":
        v = str(value).strip().lower()
        if v == "cosine":
            cfg["cos_lr"] = True
        elif v == "linear":
            cfg["cos_lr"] = False
        elif v in ("step", "plateau"):
            raise ConfigError(
                f"scheduler {value!r} is not available with Ultralytics: it supports cosine or linear "
                "learning-rate decay only (scheduler 'cosine' or 'linear')"
            )
        else:
            raise unknown_key_error(str(value), ("cosine", "linear"), what="scheduler")
    elif key in _AUG_ON:
        cfg[key] = _aug(key, value, cfg.get(key))
    elif key in ("weight_decay", "momentum", "warmup_epochs"):
        f = _SCHEMA_BY_NAME[key]
        cfg[key] = _number(key, value, f.minimum, f.maximum)
    elif key == "patience":
        cfg["patience"] = _number(key, value, 0, None, integer=True)
    elif key == "freeze_backbone":
        if value in (True, "true", "yes", 1):
            cfg["freeze"] = pretrained.ULTRALYTICS_BACKBONE_LAYERS
        elif value not in (False, None, "false", "no", 0):
            raise ConfigError(f"freeze_backbone is true or false, not {value!r}")
    elif key == "label_smoothing":
        if value in (None, False, 0, 0.0):
            return
        raise ConfigError(
            "label_smoothing is not supported by Ultralytics 8.4 (it was removed from its train settings); "
            "leave it out, or train a timm model for classification with label smoothing"
        )
    else:  # pragma: no cover - CANONICAL_KEYS and this function agree
        raise unknown_key_error(key, CANONICAL_KEYS)


# --------------------------------------------------------------------------- file helpers


def _atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def ultralytics_device(device: str) -> str:
    """``cuda:1`` -> ``1``, ``cuda`` -> ``0``, ``cpu`` -> ``cpu`` (what Ultralytics' ``device=`` takes)."""
    d = (device or "cpu").strip().lower()
    if d in ("cuda", "gpu"):
        return "0"
    if d.startswith("cuda:"):
        return d.split(":", 1)[1]
    return d


def load_checkpoint_dict(path: Path) -> dict[str, Any]:
    """The raw dict of an Ultralytics checkpoint (needs Ultralytics importable)."""
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(str(path), map_location="cpu")
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path} is not an Ultralytics checkpoint")
    return ckpt


def resume_state(path: Path, ckpt: dict[str, Any] | None = None, task: str | None = None) -> tuple[int, int]:
    """``(epochs_done, epochs_total)`` of a resumable last.pt; ConfigError when it cannot resume
    (missing, unreadable, a finished run's stripped checkpoint, all epochs done, another task)."""
    if ckpt is None:
        if not path.is_file():
            raise ConfigError(f"cannot resume: checkpoint {path} does not exist")
        try:
            ckpt = load_checkpoint_dict(path)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot resume: {path} is not a readable Ultralytics checkpoint ({exc})") from exc
    ckpt_task = (ckpt.get("train_args") or {}).get("task")
    if task is not None and ckpt_task and ckpt_task != task:
        raise ConfigError(f"cannot resume: {path} was trained for task {ckpt_task!r}, this job is {task!r}")
    total = int((ckpt.get("train_args") or {}).get("epochs") or 0)
    epoch = ckpt.get("epoch", -1)
    if ckpt.get("optimizer") is None or epoch is None or epoch < 0:
        raise ConfigError(
            f"cannot resume from {path}: it is the checkpoint of a finished run (Ultralytics removed its "
            "optimizer state when training ended), so there is nothing to continue; start a new job "
            "instead (its weights can seed one as local weights)"
        )
    done = int(epoch) + 1
    if total and done >= total:
        raise ConfigError(f"cannot resume from {path}: all {total} epochs are already done")
    return done, total


@contextlib.contextmanager
def _offline_amp_check() -> Iterator[None]:
    """Replace Ultralytics' AMP check (which downloads yolo26n.pt on CUDA) for the duration."""
    import ultralytics.engine.trainer as trainer_mod
    from ultralytics.utils import LOGGER, WEIGHTS_DIR

    original: Callable[[Any], bool] = trainer_mod.check_amp
    broken = re.compile(
        r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
    )

    def check_amp(model: Any) -> bool:
        import torch

        device = next(model.parameters()).device
        if device.type != "cuda" or (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file():
            return bool(original(model))
        name = torch.cuda.get_device_name(device)
        if broken.search(name):
            LOGGER.warning(f"AMP: disabled on {name} (Ultralytics lists it as unreliable with AMP)")
            return False
        LOGGER.warning("AMP: check skipped offline (no local yolo26n.pt); training with amp=True")
        return True

    trainer_mod.check_amp = check_amp
    try:
        yield
    finally:
        trainer_mod.check_amp = original


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        try:
            fv = float(v)
        except (TypeError, ValueError):
            continue
        out[k] = fv
    return out


# ---------------------------------------------------------------------------------- adapter


class UltralyticsAdapter(Adapter):
    framework: ClassVar[str] = FRAMEWORK
    tasks: ClassVar[tuple[str, ...]] = tuple(TASK_SUFFIX)
    primary_metric: ClassVar[dict[str, str]] = PRIMARY_METRIC

    # ------------------------------------------------------------------ published information

    @classmethod
    def models(cls) -> list[ModelInfo]:
        return list(CATALOG.values())

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return list(CONFIG_SCHEMA)

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in PRESETS.items()}

    @classmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        """Schema defaults < preset < advanced_config (canonical keys mapped, native keys checked) <
        explicit hyper-parameters (epochs, batch_size -> batch, image_size -> imgsz,
        learning_rate -> lr0, seed, workers). Returns Ultralytics ``train()`` arguments.

        An explicit learning rate with optimizer 'auto' switches the optimizer to SGD, because
        Ultralytics' 'auto' ignores lr0.
        """
        cfg: dict[str, Any] = {f.name: f.default for f in CONFIG_SCHEMA}
        if preset is not None:
            if preset not in PRESETS:
                raise unknown_key_error(str(preset), tuple(PRESETS), what="preset")
            cfg.update(PRESETS[preset])
        valid = tuple(dict.fromkeys((*CANONICAL_KEYS, *_SCHEMA_BY_NAME)))
        explicit_optimizer = False
        for key, value in (advanced_config or {}).items():
            if key in CANONICAL_KEYS:
                _canonical(key, value, cfg)
            elif key in _SCHEMA_BY_NAME:
                cfg[key] = _native_value(key, value)
            else:
                raise unknown_key_error(key, valid, what="advanced_config key")
            explicit_optimizer |= key == "optimizer"
        hp_valid = (*_HYPER_KEYS, *_HYPER_IGNORED)
        for key, value in (hyperparameters or {}).items():
            if key in _HYPER_IGNORED or value is None:
                continue
            if key not in _HYPER_KEYS:
                raise unknown_key_error(key, hp_valid, what="hyper-parameter")
            native = _HYPER_KEYS[key]
            if native == "lr0":
                cfg["lr0"] = _number("learning_rate", value, 0.0, None)
                if cfg["optimizer"] == "auto" and not explicit_optimizer:
                    cfg["optimizer"] = "SGD"
            elif native == "seed":
                cfg["seed"] = _number(key, value, 0, None, integer=True)
            elif native == "workers":
                cfg["workers"] = _number(key, value, 0, None, integer=True)
            else:
                cfg[native] = _number(key, value, 1, None, integer=True)
        return cfg

    @classmethod
    def validate_spec(cls, spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
        if spec.framework != FRAMEWORK:
            raise ConfigError(f"the Ultralytics adapter cannot train framework {spec.framework!r}")
        info = model_info(spec.model_name)
        if info.task_type != spec.task_type:
            suggestion = model_for_task(info.name, spec.task_type) if spec.task_type in TASK_SUFFIX else None
            hint = f"; use {suggestion} for {spec.task_type}" if suggestion in CATALOG else ""
            raise ConfigError(
                f"{info.name} is {_article(info.task_type)} {info.task_type} model; "
                f"it cannot train {spec.task_type}{hint}"
            )
        check_image_size(spec, [info])
        summary = dataset_summary or {}
        task_info = (summary.get("tasks") or {}).get(spec.task_type)
        if task_info and task_info.get("status") == "incompatible":
            raise IncompatibleDatasetError(task_info.get("reason") or "incompatible", task_type=spec.task_type)
        hp = spec.hyperparameters
        n_train = estimate_train_images(summary, spec.task_type, hp.val_fraction)
        if hp.batch_size is not None and n_train is not None and hp.batch_size > n_train:
            raise ConfigError(
                f"batch_size {hp.batch_size} is larger than the {n_train} training images of this dataset "
                f"(after the {hp.val_fraction:.0%} validation split); use batch_size {max(1, n_train)} or less"
            )

    # --------------------------------------------------------------------------- training

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.info = model_info(ctx.spec.model_name)
        self.task_type = self.info.task_type
        self._reset_state()

    def _reset_state(self) -> None:
        self._batch = 0
        self._loop_done = False
        self._stop_requested = False
        self._history: list[tuple[int, dict[str, float]]] = []
        self._best_epoch: int | None = None
        self._last_epoch = 0
        self._save_dir: Path | None = None
        self._t_start = 0.0

    def _log(self, level: str, message: str) -> None:
        self.ctx.callbacks.run_callbacks("on_log", level=level, message=message)

    def weights_dir(self) -> Path:
        env = os.environ.get("VTA_WEIGHTS_DIR")
        return Path(env).expanduser() if env else Path(self.ctx.work_dir).parent / "weights"

    def prepare_data(self) -> Path:
        """Convert the DICE dataset into ``<work_dir>/data`` (same path every time, so a resumed run
        finds it again) and return what Ultralytics takes as ``data=``."""
        from trainer_runtime.formats.converters import to_yolo

        hp = self.ctx.spec.hyperparameters
        export = to_yolo(
            self.ctx.dataset,
            Path(self.ctx.dataset_dir),
            Path(self.ctx.work_dir) / "data",
            self.task_type,
            val_fraction=hp.val_fraction,
            seed=hp.seed,
        )
        return export.data_yaml

    def _train_count(self, data: Path) -> int:
        if self.task_type == "image_classification":
            return sum(1 for p in (data / "train").rglob("*") if p.is_file())
        train_txt = data.parent / "train.txt"
        return sum(1 for line in train_txt.read_text(encoding="utf-8").splitlines() if line.strip())

    # ------------------------------------------------------------------ ultralytics callbacks

    def _metrics(self, trainer: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in _finite(dict(trainer.metrics or {})).items():
            out[METRIC_NAMES.get(k, k)] = v
        if trainer.tloss is not None:
            train = _finite(trainer.label_loss_items(trainer.tloss, prefix="train"))
            out.update(train)
            if "train/loss" not in train:  # classify's only loss is already called "loss"
                out["train/loss"] = float(sum(train.values()))
        out.update(_finite(getattr(trainer, "lr", None) or {}))
        if trainer.fitness is not None:
            out["val/fitness"] = float(trainer.fitness)
        return out

    def _on_train_start(self, trainer: Any) -> None:
        self._save_dir = Path(trainer.save_dir)
        self.ctx.callbacks.run_callbacks(
            "on_train_start", epochs=int(trainer.epochs), start_epoch=trainer.start_epoch + 1
        )

    def _on_train_epoch_start(self, trainer: Any) -> None:
        self._batch = 0

    def _on_train_batch_end(self, trainer: Any) -> None:
        self._batch += 1
        loss = None
        if trainer.tloss is not None:
            loss = float(sum(float(v) for v in trainer.tloss.values()))
        self.ctx.callbacks.run_callbacks(
            "on_batch_end",
            epoch=trainer.epoch + 1,
            batch=self._batch,
            batches=len(trainer.train_loader),
            loss=loss,
        )
        if self.ctx.stop_event.is_set():
            trainer.stop = True
            self._stop_requested = True

    def _on_model_save(self, trainer: Any) -> None:
        out = Path(self.ctx.output_dir)
        last = out / "last.pt"
        _atomic_copy(Path(trainer.last), last)
        is_best = trainer.best_fitness is not None and trainer.best_fitness == trainer.fitness
        epoch = trainer.epoch + 1
        if is_best and Path(trainer.best).is_file():
            _atomic_copy(Path(trainer.best), out / "best.pt")
            self._best_epoch = epoch
        best = out / "best.pt"
        self.ctx.callbacks.run_callbacks(
            "on_model_save", epoch=epoch, last=last, best=best if best.is_file() else None, is_best=is_best
        )

    def _on_fit_epoch_end(self, trainer: Any) -> None:
        if self._loop_done or trainer.epoch >= trainer.epochs:
            return  # final_eval's extra call (validation of best.pt), not an epoch
        epoch = trainer.epoch + 1
        metrics = self._metrics(trainer)
        self._history.append((epoch, metrics))
        self._last_epoch = epoch
        self.ctx.callbacks.run_callbacks("on_fit_epoch_end", epoch=epoch, epochs=int(trainer.epochs), metrics=metrics)
        if self.ctx.stop_event.is_set() and not trainer.stop:
            trainer.stop = True
            self._stop_requested = True
        self._loop_done = bool(trainer.stop)

    # ------------------------------------------------------------------------------ train

    def train(self) -> TrainResult:
        from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

        prepare_ultralytics()
        from ultralytics import YOLO

        self._reset_state()
        self._t_start = time.time()
        ctx = self.ctx
        spec = ctx.spec
        cfg = dict(ctx.config)
        out_dir = Path(ctx.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        work_dir = Path(os.path.abspath(ctx.work_dir))
        work_dir.mkdir(parents=True, exist_ok=True)
        save_dir = work_dir / "run"
        task = ULTRA_TASK[self.task_type]
        device = ultralytics_device(ctx.device)

        resume = Path(ctx.resume_from) if ctx.resume_from else None
        prior_best: int | None = None
        if resume is not None:
            done, total = resume_state(resume, task=task)
            if spec.hyperparameters.epochs != total:
                self._log(
                    "warning",
                    f"resuming keeps the checkpoint's {total} epochs (the spec asks for {spec.hyperparameters.epochs})",
                )
            with contextlib.suppress(Exception):
                stopper = load_checkpoint_dict(resume).get("stopper") or {}
                prior_best = int(stopper.get("best_epoch") or 0) or None
            self._log("info", f"resuming {self.info.name} from {resume} after epoch {done} of {total}")

        data = self.prepare_data()
        n_train = self._train_count(data)

        if resume is not None:
            if not (out_dir / "best.pt").is_file() and (resume.parent / "best.pt").is_file():
                _atomic_copy(resume.parent / "best.pt", out_dir / "best.pt")
            model = YOLO(str(resume), task=task)
            args: dict[str, Any] = {
                "resume": str(resume),
                "data": str(data),
                "device": device,
                "workers": int(cfg.get("workers", 0)),
                "save_dir": str(save_dir),
                "plots": False,
                "val": True,
            }
            self._best_epoch = prior_best
        else:
            local = self.weights_dir() / f"{self.info.name}.pt"
            if ctx.pretrained is not None and ctx.pretrained.path is not None:
                local = ctx.pretrained.path  # registry or release asset (`trainer_runtime.weights`)
            init = init_weights.init_source(ctx)
            if init is not None:
                # Ultralytics builds the model for this dataset's classes and copies every tensor
                # of the checkpoint whose name and shape match (`report_transfer` counts them)
                model = YOLO(str(init), task=task)
                source: Any = model.model  # the checkpoint's nn.Module
                self._init_shapes = {k: tuple(v.shape) for k, v in source.state_dict().items()}
                model.add_callback("on_pretrain_routine_end", self._report_transfer)
            elif local.is_file():
                self._log("info", f"loading local weights {local} (transfer learning)")
                model = YOLO(str(local), task=task)
                if ctx.pretrained is not None and ctx.pretrained.source == USER_UPLOAD:
                    pretrained.check_ultralytics_architecture(model, self.info.name, task, ctx.pretrained)
                if ctx.pretrained is not None and ctx.pretrained.path is not None:
                    report = pretrained.ultralytics_reporter(ctx.pretrained, lambda m: self._log("info", m))
                    model.add_callback("on_pretrain_routine_end", report)
            else:
                model = YOLO(f"{self.info.name}.yaml", task=task)
            args = dict(cfg)
            args.setdefault("imgsz", self.info.default_image_size)
            args.setdefault("batch", max(1, min(16, n_train)))
            args.setdefault("epochs", spec.hyperparameters.epochs)
            if device == "cpu":
                args["amp"] = False
            args.update(
                data=str(data),
                device=device,
                save_dir=str(save_dir),
                exist_ok=True,
                save_period=-1,
                val=True,
                plots=False,
                verbose=False,
                deterministic=True,
                pretrained=init is not None or local.is_file(),
                freeze=int(cfg.get("freeze") or 0) or None,
            )

        model.add_callback("on_train_start", self._on_train_start)
        model.add_callback("on_train_epoch_start", self._on_train_epoch_start)
        model.add_callback("on_train_batch_end", self._on_train_batch_end)
        model.add_callback("on_model_save", self._on_model_save)
        model.add_callback("on_fit_epoch_end", self._on_fit_epoch_end)

        trainer: Any = None
        try:
            with _offline_amp_check():
                model.train(**args)
            trainer = model.trainer
        except BaseException:
            self._rescue_checkpoints(getattr(model, "trainer", None))
            raise
        result = self._finish(trainer)
        ctx.callbacks.run_callbacks("on_train_end", result=result)
        return result

    def _report_transfer(self, trainer: Any) -> None:
        """Fine-tuning: log how many tensors of the source checkpoint the built model took."""
        src = getattr(self, "_init_shapes", None) or {}
        dst = trainer.model.state_dict()
        loaded = sum(1 for k, v in dst.items() if src.get(k) == tuple(v.shape))
        skipped = sorted(k for k, shape in src.items() if k not in dst or tuple(dst[k].shape) != shape)
        init_weights.report(self.ctx, loaded, skipped, len(dst), lambda m: self._log("info", m))

    def _rescue_checkpoints(self, trainer: Any) -> None:
        """After an exception: make sure what Ultralytics wrote is in output_dir (the runner uploads it)."""
        out = Path(self.ctx.output_dir)
        wdir = Path(trainer.wdir) if trainer is not None and hasattr(trainer, "wdir") else None
        if wdir is None and self._save_dir is not None:
            wdir = self._save_dir / "weights"
        if wdir is None:
            return
        for name in ("last.pt", "best.pt"):
            src = wdir / name
            # only what this run wrote (a stale file of an earlier run in the same folder is not ours)
            if not (out / name).is_file() and src.is_file() and src.stat().st_mtime >= self._t_start - 1:
                with contextlib.suppress(OSError):
                    _atomic_copy(src, out / name)

    def _finish(self, trainer: Any) -> TrainResult:
        out = Path(self.ctx.output_dir)
        wdir = Path(trainer.wdir)
        epochs = int(trainer.epochs)
        # a stop during the last epoch still completes the run (Ultralytics validates and saves it)
        stopped = self._stop_requested and self._last_epoch < epochs
        # final_eval stripped weights/last.pt and best.pt: take the stripped (final) files, except a
        # stopped run's last.pt, whose resumable copy from on_model_save must stay.
        if (wdir / "best.pt").is_file():
            _atomic_copy(wdir / "best.pt", out / "best.pt")
        if (wdir / "last.pt").is_file() and not (stopped and (out / "last.pt").is_file()):
            _atomic_copy(wdir / "last.pt", out / "last.pt")
        early = not self._stop_requested and 0 < self._last_epoch < epochs
        metric_name = PRIMARY_METRIC[self.task_type]
        by_epoch = dict(self._history)
        best_epoch = self._best_epoch
        if best_epoch is None and self._history:
            best_epoch = max(self._history, key=lambda h: h[1].get("val/fitness", float("-inf")))[0]
        best_metric = by_epoch.get(best_epoch, {}).get(metric_name) if best_epoch is not None else None
        final = self._history[-1][1] if self._history else {}
        if early:
            self._log(
                "info", f"early stop after epoch {self._last_epoch}: no improvement for {trainer.args.patience} epochs"
            )
        return TrainResult(
            epochs_completed=self._last_epoch,
            best_epoch=best_epoch,
            best_metric_name=metric_name,
            best_metric=best_metric,
            final_metrics=final,
            best_path=out / "best.pt" if (out / "best.pt").is_file() else None,
            last_path=out / "last.pt" if (out / "last.pt").is_file() else None,
            stopped=stopped,
            early_stopped=early,
        )


def estimate_train_images(summary: dict[str, Any], task_type: str, val_fraction: float) -> int | None:
    """How many images the train split will hold (about; None when the summary has no counts)."""
    counts = summary.get("counts") or summary
    key = "labeled_images" if task_type == "image_classification" else "images"
    n = counts.get(key)
    if not isinstance(n, int) or n <= 0:
        return None
    return max(0, n - max(1, round(n * val_fraction)))


__all__ = [
    "CATALOG",
    "PRIMARY_METRIC",
    "UltralyticsAdapter",
    "load_checkpoint_dict",
    "model_for_task",
    "model_info",
    "resume_state",
]
