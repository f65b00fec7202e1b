"""What the Ultralytics adapter publishes and checks, without Ultralytics: the model catalog
(``yolov8*`` / ``yolo11*`` x detect, segment, pose, obb, classify), the config schema with its
presets, `resolve_config` (canonical advanced_config keys mapped to Ultralytics ``train()``
arguments, native keys checked) and `check_spec`. Plain data; contracts in docs/architecture.md.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from trainer_runtime.adapters import pretrained
from trainer_runtime.adapters.base import (
    CANONICAL_KEYS,
    ConfigError,
    ConfigField,
    ModelInfo,
    check_image_size,
    unknown_key_error,
)
from trainer_runtime.errors import IncompatibleDatasetError
from trainer_runtime.formats.schema import (
    IMAGE_CLASSIFICATION,
    INSTANCE_SEGMENTATION,
    OBJECT_DETECTION,
    ORIENTED_OBJECT_DETECTION,
    POSE_ESTIMATION,
)
from trainer_runtime.spec import ULTRALYTICS

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec


# suffix -> (task_type, Ultralytics task)
SUFFIX_TASKS: dict[str, tuple[str, str]] = {
    "": (OBJECT_DETECTION, "detect"),
    "-seg": (INSTANCE_SEGMENTATION, "segment"),
    "-pose": (POSE_ESTIMATION, "pose"),
    "-obb": (ORIENTED_OBJECT_DETECTION, "obb"),
    "-cls": (IMAGE_CLASSIFICATION, "classify"),
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
    OBJECT_DETECTION: "object detection",
    INSTANCE_SEGMENTATION: "instance segmentation",
    POSE_ESTIMATION: "pose estimation (keypoints)",
    ORIENTED_OBJECT_DETECTION: "oriented (rotated box) detection",
    IMAGE_CLASSIFICATION: "image classification",
}
_FAMILY_WORDS = {"yolov8": "YOLOv8", "yolo11": "YOLO11"}


PRIMARY_METRIC = {
    OBJECT_DETECTION: "val/mAP50-95",
    ORIENTED_OBJECT_DETECTION: "val/mAP50-95",
    INSTANCE_SEGMENTATION: "val/mask_mAP50-95",
    POSE_ESTIMATION: "val/pose_mAP50-95",
    IMAGE_CLASSIFICATION: "val/accuracy_top1",
}

OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp")
_OPTIMIZER_ALIASES = {o.lower(): o for o in OPTIMIZERS}

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
                    framework=ULTRALYTICS,
                    task_type=task,
                    description=f"{_FAMILY_WORDS[family]} {_SIZE_WORDS[size]} for {_TASK_WORDS[task]}",
                    params_m=p,
                    default_image_size=224 if task == IMAGE_CLASSIFICATION else 640,
                    max_image_size=2048 if task == IMAGE_CLASSIFICATION else 4096,
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


def resolve_config(
    preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
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


def check_spec(spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
    """Unknown model (closest name), a model of another task (the one that fits), image size, a
    dataset that cannot serve the task, a batch larger than the training split."""
    info = model_info(spec.model_name)
    if info.task_type != spec.task_type:
        suggestion = model_for_task(info.name, spec.task_type) if spec.task_type in TASK_SUFFIX else None
        hint = f"; use {suggestion} for {spec.task_type}" if suggestion in CATALOG else ""
        raise ConfigError(
            f"{info.name} is {_article(info.task_type)} {info.task_type} model; it cannot train {spec.task_type}{hint}"
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


def estimate_train_images(summary: dict[str, Any], task_type: str, val_fraction: float) -> int | None:
    """How many images the train split will hold (about; None when the summary has no counts)."""
    counts = summary.get("counts") or summary
    key = "labeled_images" if task_type == IMAGE_CLASSIFICATION else "images"
    n = counts.get(key)
    if not isinstance(n, int) or n <= 0:
        return None
    return max(0, n - max(1, round(n * val_fraction)))
