"""Config resolution and spec checks shared by the torch-based adapters (timm, transformers).

`resolve_layered`: schema defaults < preset < canonical advanced_config < explicit hyper-parameters,
every value checked against the schema, an unknown key named with the closest valid one;
`check_common_spec`: unknown model, task mismatch, batch larger than the training set. Plain data,
no torch (the server resolves configs). Contracts: docs/architecture.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from trainer_runtime.adapters.base import (
    CANONICAL_KEYS,
    ConfigError,
    ConfigField,
    closest,
    unknown_key_error,
)

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec


# Keys of the job's hyper-parameters that are not framework settings: accepted (and ignored) by
# resolve_config so a runner may pass the whole `Hyperparameters` dict.
JOB_KEYS = frozenset(
    {"epochs", "batch_size", "image_size", "preset", "advanced_config", "seed", "val_fraction", "device", "workers"}
)


def _coerce_number(f: ConfigField, value: Any) -> int | float:
    """An int or float field's value: a whole number for int, finite for float, within the range."""
    name = f.name
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if f.type == "int":
        if float(value) != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if f.minimum is not None and value < f.minimum:
        raise ConfigError(f"{name} must be >= {f.minimum}, got {value}")
    if f.maximum is not None and value > f.maximum:
        raise ConfigError(f"{name} must be <= {f.maximum}, got {value}")
    number: int | float = value
    return number


def _coerce(f: ConfigField, value: Any) -> Any:
    """Check one value against its schema field (bools for bool fields, numbers in range ...)."""
    name = f.name
    if f.type == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if f.type in ("int", "float"):
        return _coerce_number(f, value)
    if f.type == "select":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be one of {', '.join(map(str, f.options or ()))}, got {value!r}")
        v = value.strip().lower()
        if f.options and v not in f.options:
            raise unknown_key_error(value, [str(o) for o in f.options], what=f"value for {name}")
        return v
    if f.type == "dict":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be an object of settings, got {value!r}")
        return dict(value)
    if f.type == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value


def resolve_layered(
    schema: Sequence[ConfigField],
    presets: Mapping[str, Mapping[str, Any]],
    map_canonical: Callable[[str, Any], dict[str, Any]],
    preset: str | None,
    advanced_config: Mapping[str, Any] | None,
    hyperparameters: Mapping[str, Any] | None,
    *,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Schema defaults < preset < advanced_config < hyperparameters, every value checked.

    advanced_config and hyperparameters may hold canonical keys (mapped by `map_canonical`, which
    raises `ConfigError` for keys the framework cannot use) or schema field names; hyperparameters
    may also hold the job keys (`JOB_KEYS`, ignored) and aliases (``learning_rate`` -> ``lr``).
    A `None` value means "not given".
    """
    fields = {f.name: f for f in schema}
    aliases = dict(aliases or {})
    config: dict[str, Any] = {f.name: f.default for f in schema}
    if preset is not None:
        if preset not in presets:
            raise unknown_key_error(preset, list(presets), what="preset")
        config.update(presets[preset])

    def apply(key: str, value: Any, *, allow_job_keys: bool) -> None:
        if value is None:
            return
        if key in aliases:
            key = aliases[key]
        if key in fields:
            config[key] = _coerce(fields[key], value)
        elif key in CANONICAL_KEYS:
            for k, v in map_canonical(key, value).items():
                config[k] = _coerce(fields[k], v) if k in fields else v
        elif allow_job_keys and key in JOB_KEYS:
            return
        else:
            valid = sorted({*CANONICAL_KEYS, *fields, *aliases})
            raise unknown_key_error(key, valid)

    for k, v in dict(advanced_config or {}).items():
        apply(str(k), v, allow_job_keys=False)
    for k, v in dict(hyperparameters or {}).items():
        apply(str(k), v, allow_job_keys=True)
    for k, f in fields.items():
        if config.get(k) is not None:
            config[k] = _coerce(f, config[k])
    return config


def alpha_value(key: str, value: Any, default_alpha: float) -> float:
    """mixup / cutmix: a bool (on with `default_alpha`, off) or a float alpha >= 0."""
    if isinstance(value, bool):
        return default_alpha if value else 0.0
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    raise ConfigError(f"{key} must be true/false or an alpha >= 0, got {value!r}")


def choice_value(key: str, value: Any, mapping: Mapping[str, str]) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be one of {', '.join(mapping)}, got {value!r}")
    v = value.strip().lower()
    if v not in mapping:
        raise unknown_key_error(v, list(mapping), what=key)
    return mapping[v]


def reject_detection_aug(key: str, value: Any, framework: str) -> dict[str, Any]:
    """mosaic / copy_paste are Ultralytics detection augmentations: a clear error when asked for."""
    if value is False or value == 0:
        return {}
    raise ConfigError(
        f"{key} is an Ultralytics detection augmentation; {framework} does not use it"
        " (remove it, or train an Ultralytics model)"
    )


def dataset_image_count(summary: Mapping[str, Any]) -> int | None:
    counts = summary.get("counts") if isinstance(summary.get("counts"), Mapping) else summary
    for key in ("labeled_images", "images"):
        v = counts.get(key) if isinstance(counts, Mapping) else None
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_common_spec(
    spec: JobSpec,
    summary: Mapping[str, Any],
    *,
    framework: str,
    known_models: Mapping[str, str],
    extra_model_ok: Callable[[str], bool] | None = None,
) -> str:
    """Unknown model (closest names), task mismatch, batch larger than the training set.

    `known_models` maps model name -> task type. Returns the model's task type.
    """
    name = spec.model_name
    task = known_models.get(name)
    if task is None and extra_model_ok is not None and extra_model_ok(name):
        task = spec.task_type
    if task is None:
        guess = closest(name, list(known_models))
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ConfigError(f"unknown {framework} model {name!r}{hint} Known models: {', '.join(sorted(known_models))}")
    if spec.task_type != task:
        tasks = sorted(set(known_models.values()))
        raise ConfigError(
            f"{framework} model {name!r} trains {task}, not {spec.task_type}"
            f" ({framework} here trains: {', '.join(tasks)})"
        )
    hp = spec.hyperparameters
    images = dataset_image_count(summary)
    if images is not None and hp.batch_size is not None:
        train_images = max(1, images - round(images * hp.val_fraction))
        if hp.batch_size > train_images:
            raise ConfigError(
                f"batch_size {hp.batch_size} is larger than the training set ({train_images} of {images}"
                f" labeled images after holding out {hp.val_fraction:.0%} for validation); use at most"
                f" {train_images}"
            )
    return task
