"""The model catalog: which models exist, which framework and task each one trains, and the
defaults the job tool falls back on.

Everything comes from the framework adapters' class methods (`models()`, `presets()`,
`config_schema()`), which are readable without importing torch or a training framework, so the
server process stays torch-free.

Defaults (documented choices, used when a request does not say):

* a model per task: `DEFAULT_MODELS` — ``yolo11n`` (object_detection), ``yolo11n-seg``
  (instance_segmentation), ``yolo11n-pose`` (pose_estimation), ``yolo11n-obb``
  (oriented_object_detection), ``resnet18`` (image_classification, timm); with a framework named,
  that framework's entry of `DEFAULT_MODELS_BY_FRAMEWORK`.
* a task for a dataset when neither task nor model is given: the most specific task its
  annotations serve natively, in the order of `TASK_PREFERENCE` (keypoints say pose, polygons say
  segmentation, rotated boxes say OBB, boxes say detection, labels say classification).
* epochs per preset: `DEFAULT_EPOCHS` (no preset: 10).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from tools.errors import InvalidInputError
from trainer_runtime.adapters import get_adapter
from trainer_runtime.adapters.base import ModelInfo
from trainer_runtime.formats.schema import TASK_TYPES
from trainer_runtime.spec import FRAMEWORKS

PRESETS = ("easy", "medium", "advanced")

DEFAULT_MODELS: dict[str, str] = {
    "object_detection": "yolo11n",
    "instance_segmentation": "yolo11n-seg",
    "pose_estimation": "yolo11n-pose",
    "oriented_object_detection": "yolo11n-obb",
    "image_classification": "resnet18",
}
DEFAULT_MODELS_BY_FRAMEWORK: dict[str, dict[str, str]] = {
    "ultralytics": {
        "object_detection": "yolo11n",
        "instance_segmentation": "yolo11n-seg",
        "pose_estimation": "yolo11n-pose",
        "oriented_object_detection": "yolo11n-obb",
        "image_classification": "yolo11n-cls",
    },
    "timm": {"image_classification": "resnet18"},
    "transformers": {
        "image_classification": "microsoft/resnet-50",
        "object_detection": "facebook/detr-resnet-50",
    },
}
TASK_PREFERENCE = (
    "pose_estimation",
    "instance_segmentation",
    "oriented_object_detection",
    "object_detection",
    "image_classification",
)
DEFAULT_EPOCHS: dict[str | None, int] = {None: 10, "easy": 10, "medium": 30, "advanced": 50}
DEFAULT_BATCH_SIZE: dict[str, int] = {"ultralytics": 16, "timm": 32, "transformers": 16}
_LR_KEYS = ("lr0", "lr", "learning_rate")  # where each framework's resolved config keeps the rate


@lru_cache
def _all_models() -> tuple[ModelInfo, ...]:
    return tuple(m for fw in FRAMEWORKS for m in get_adapter(fw).models())


def _norm(name: str) -> str:
    text = name.strip()
    for suffix in (".pt", ".yaml", ".yml"):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.lower()


def _model_dict(m: ModelInfo) -> dict[str, Any]:
    return {
        "name": m.name,
        "framework": m.framework,
        "task_type": m.task_type,
        "description": m.description,
        "params_m": m.params_m,
        "default_image_size": m.default_image_size,
    }


def list_models(framework: str | None = None, task_type: str | None = None) -> list[dict[str, Any]]:
    """Every trainable model, optionally only one framework's or one task's.

    Each item: {"name", "framework", "task_type", "description", "params_m", "default_image_size"};
    `name` is the canonical name to put in a TrainingIntent's `model_name`.
    """
    if framework is not None and framework not in FRAMEWORKS:
        raise InvalidInputError(
            f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}", detail={"field": "framework"}
        )
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidInputError(
            f"unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}", detail={"field": "task_type"}
        )
    return [
        _model_dict(m)
        for m in _all_models()
        if (framework is None or m.framework == framework) and (task_type is None or m.task_type == task_type)
    ]


def find_model(name: str) -> ModelInfo | None:
    """The catalog entry for a model name (case-insensitive; a ``.pt``/``.yaml`` suffix is ignored)."""
    key = _norm(name)
    for m in _all_models():
        if m.name.lower() == key:
            return m
    return None


def model_suggestions(name: str, framework: str | None = None, task_type: str | None = None, n: int = 5) -> list[str]:
    """Catalog names close to `name` (for "did you mean"), best first."""
    import difflib

    names = [
        m.name
        for m in _all_models()
        if (framework is None or m.framework == framework) and (task_type is None or m.task_type == task_type)
    ]
    lowered = {x.lower(): x for x in names}
    return [lowered[c] for c in difflib.get_close_matches(_norm(name), list(lowered), n=n, cutoff=0.4)]


def resolve_model(name: str, framework: str | None = None, task_type: str | None = None) -> ModelInfo:
    """The catalog entry for `name`, checked against a framework and task when they are given.

    Raises InvalidInputError (422) naming close models for an unknown name, and saying which
    framework/task the model belongs to on a mismatch.
    """
    info = find_model(name)
    if info is None:
        suggestions = model_suggestions(name, framework, task_type) or model_suggestions(name)
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise InvalidInputError(
            f"unknown model {name!r}{hint}",
            detail={"field": "model_name", "suggestions": suggestions},
        )
    if framework is not None and info.framework != framework:
        alt = default_model(info.task_type, framework, strict=False)
        hint = f"; with {framework} use e.g. {alt!r}" if alt else ""
        raise InvalidInputError(
            f"{info.name} is a {info.framework} model, not a {framework} one{hint}",
            detail={"field": "framework", "suggestions": [alt] if alt else []},
        )
    if task_type is not None and info.task_type != task_type:
        alt = default_model(task_type, info.framework, strict=False) or default_model(task_type, strict=False)
        hint = f"; for {task_type} use e.g. {alt!r}" if alt else ""
        raise InvalidInputError(
            f"{info.name} trains {info.task_type}, not {task_type}{hint}",
            detail={"field": "model_name", "suggestions": [alt] if alt else []},
        )
    return info


def default_model(task_type: str, framework: str | None = None, *, strict: bool = True) -> str | None:
    """The documented default model for a task (and framework); see the module doc.

    strict: raise InvalidInputError when the framework cannot train the task (else return None).
    """
    if task_type not in TASK_TYPES:
        if strict:
            raise InvalidInputError(
                f"unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}",
                detail={"field": "task_type"},
            )
        return None
    if framework is None:
        return DEFAULT_MODELS[task_type]
    name = DEFAULT_MODELS_BY_FRAMEWORK.get(framework, {}).get(task_type)
    if name is None and strict:
        can = sorted(DEFAULT_MODELS_BY_FRAMEWORK.get(framework, {}))
        raise InvalidInputError(
            f"{framework} cannot train {task_type} here (it trains: {', '.join(can) or 'nothing'}); "
            f"use {DEFAULT_MODELS[task_type]!r} or leave the framework out",
            detail={"field": "framework"},
        )
    return name


def framework_tasks(framework: str) -> tuple[str, ...]:
    """The tasks a framework's adapter trains."""
    return tuple(get_adapter(framework).tasks)


def pick_task(capabilities: dict[str, Any], framework: str | None = None) -> str | None:
    """The task to train on a dataset when the request names neither task nor model: the most
    specific task its annotations serve natively (`TASK_PREFERENCE`), among the framework's tasks."""
    allowed = set(DEFAULT_MODELS_BY_FRAMEWORK[framework]) if framework else set(TASK_TYPES)
    for wanted in ("native", "convertible"):
        for task in TASK_PREFERENCE:
            if task in allowed and (capabilities.get(task) or {}).get("status") == wanted:
                return task
    return None


def presets(framework: str) -> dict[str, dict[str, Any]]:
    """easy / medium / advanced -> the framework settings each preset sets."""
    return get_adapter(framework).presets()


def config_schema(framework: str) -> list[dict[str, Any]]:
    """The framework's settings with type, options, default and help."""
    return [f.to_dict() for f in get_adapter(framework).config_schema()]


def default_epochs(preset: str | None) -> int:
    """Epochs when the request gives none (`DEFAULT_EPOCHS`)."""
    return DEFAULT_EPOCHS.get(preset, DEFAULT_EPOCHS[None])


def learning_rate_of(config: dict[str, Any]) -> float | None:
    """The learning rate a resolved framework config uses (ultralytics lr0, timm lr, transformers
    learning_rate)."""
    for key in _LR_KEYS:
        value = config.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_MODELS",
    "DEFAULT_MODELS_BY_FRAMEWORK",
    "FRAMEWORKS",
    "PRESETS",
    "TASK_PREFERENCE",
    "config_schema",
    "default_epochs",
    "default_model",
    "find_model",
    "framework_tasks",
    "learning_rate_of",
    "list_models",
    "model_suggestions",
    "pick_task",
    "presets",
    "resolve_model",
]
