"""The job spec (contract 4 in docs/architecture.md): one JSON file the server hands a trainer.

`python -m trainer_runtime --spec job.json [--resume]` reads it with `load_spec`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trainer_runtime.errors import TrainerRuntimeError
from trainer_runtime.formats.schema import TASK_TYPES
from trainer_runtime.storage import StorageConfig
from trainer_runtime.weights import WeightsPlan

SPEC_VERSION: Literal["1"] = "1"
ULTRALYTICS, TIMM, TRANSFORMERS = "ultralytics", "timm", "transformers"
FRAMEWORKS = (ULTRALYTICS, TIMM, TRANSFORMERS)  # the `Literal` of the fields below lists the same
PRESETS = ("easy", "medium", "advanced")


class SpecError(TrainerRuntimeError):
    """The job spec is unreadable or invalid (names the field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowSpec(_Strict):
    """Where and whether the job logs to MLflow, and at what CPU priority the logger runs."""

    enabled: bool = True
    tracking_uri: str | None = None  # None: sqlite store under <work_dir>/mlflow
    experiment_name: str = "vision-training-agent"
    # the logger process's CPU priority: idle (nice 19 + SCHED_IDLE), low (nice 19) or normal
    logger_priority: Literal["idle", "low", "normal"] = "idle"


class Hyperparameters(_Strict):
    """The job's training settings: epochs, batch and image size, learning rate, preset and advanced
    config, seed, validation fraction, device and data-loader workers."""

    epochs: int = Field(gt=0, le=10_000)
    batch_size: int | None = Field(default=None, gt=0)
    image_size: int | None = Field(default=None, gt=0, le=8192)
    learning_rate: float | None = Field(default=None, gt=0)
    preset: Literal["easy", "medium", "advanced"] | None = None
    advanced_config: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = Field(default=0, ge=0)


class InitFromSpec(_Strict):
    """Initial weights from an earlier job's checkpoint (fine-tuning): the trainer downloads `key`
    from the internal store and loads every tensor whose name and shape match into the freshly
    built model (a head for other classes is rebuilt). Unlike resume: fresh optimizer, epoch 0."""

    job_id: int = Field(gt=0)
    checkpoint: Literal["best.pt", "last.pt"]
    key: str = Field(min_length=1)
    framework: Literal["ultralytics", "timm", "transformers"]
    model_name: str = Field(min_length=1)


class JobSpec(_Strict):
    """The job spec the server writes and a trainer runs from (contract 4 in docs/architecture.md)."""

    spec_version: Literal["1"] = SPEC_VERSION
    job_id: int = Field(gt=0)
    project_id: int | None = None
    framework: Literal["ultralytics", "timm", "transformers"]
    model_name: str = Field(min_length=1)
    task_type: str
    dataset_id: str = Field(min_length=1)
    snapshot_id: str | None = None
    class_names: list[str] | None = None
    hyperparameters: Hyperparameters
    storage: StorageConfig = Field(default_factory=StorageConfig)  # the stores' model itself (extra fields refused)
    callback_url: str | None = None
    callback_token: str | None = None
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec)
    work_dir: str = "./data/trainer"
    resume: bool = False
    init_from: InitFromSpec | None = None
    checkpoint_upload_interval_s: float = Field(default=300.0, ge=0)
    # how long a finished trainer keeps delivering its last events to the callback URL (the rest
    # stays in its spool for the next attempt)
    reporter_close_timeout_s: float = Field(default=120.0, ge=0)
    # pretrained weights the server resolved (registry entry, a download to try, or scratch)
    pretrained: WeightsPlan | None = None

    @field_validator("task_type")
    @classmethod
    def _task(cls, v: str) -> str:
        if v not in TASK_TYPES:
            raise ValueError(f"unknown task_type {v!r}; expected one of {', '.join(TASK_TYPES)}")
        return v


def load_spec(source: str | Path | bytes | dict[str, Any]) -> JobSpec:
    """Read a job spec from a path, JSON text/bytes or a dict; raise `SpecError` naming the field."""
    try:
        if isinstance(source, dict):
            data = source
        elif isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        else:
            data = json.loads(source)
    except FileNotFoundError as exc:
        raise SpecError(f"job spec not found: {exc.filename}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read job spec: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"job spec is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"job spec field {loc}: {first['msg']}") from exc
