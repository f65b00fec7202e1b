"""The adapter interface every framework implements.

An adapter module must import its framework (torch, ultralytics, ...) only inside methods that
train, so that the class attributes below (catalog, schema, presets) are readable without it.

The flow, driven by `trainer_runtime.runner`:
1. `Adapter.validate_spec(spec, dataset_summary)` — unknown model, task mismatch, batch larger than
   the dataset ... raise `ConfigError` before any work.
2. `Adapter.resolve_config(preset, advanced_config, hyperparameters)` — the preset's values, then
   the canonical `advanced_config` keys (TrainingIntent) mapped to framework arguments, then the
   explicit hyper-parameters; an unknown key raises `ConfigError` naming the closest valid key.
3. `adapter = Adapter(ctx)`; `adapter.train()` returns a `TrainResult`. While training it calls
   `ctx.callbacks.run_callbacks(...)` (see `trainer_runtime.callbacks`) and checks
   `ctx.stop_event` after every batch (set on SIGINT/SIGTERM or early stop): when set, it finishes
   the batch, saves last.pt (resumable) and returns with `stopped=True`.
4. Checkpoints: the adapter writes `ctx.output_dir/best.pt` and `ctx.output_dir/last.pt`;
   last.pt holds everything needed to resume (weights, optimizer, scheduler, scaler, epoch, best
   metric). `ctx.resume_from` is a last.pt to continue from; the adapter then runs the remaining
   epochs only.
"""

from __future__ import annotations

import abc
import difflib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainer_runtime.callbacks import Callbacks
from trainer_runtime.errors import TrainerRuntimeError

if TYPE_CHECKING:
    from trainer_runtime.formats.schema import DiceDataset
    from trainer_runtime.spec import JobSpec
    from trainer_runtime.weights import ResolvedWeights

# Canonical advanced_config keys of the TrainingIntent (contract 1 in docs/architecture.md).
CANONICAL_KEYS = (
    "optimizer",
    "scheduler",
    "mixup",
    "cutmix",
    "mosaic",
    "copy_paste",
    "weight_decay",
    "momentum",
    "warmup_epochs",
    "patience",
    "label_smoothing",
    "freeze_backbone",  # train only the head on top of pretrained weights (Ultralytics: its backbone layers)
)


class ConfigError(TrainerRuntimeError):
    """A model, task, preset or config key the adapter cannot use; the message says what would work."""


def closest(name: str, valid: list[str] | tuple[str, ...]) -> str | None:
    """The entry of `valid` most like `name` (difflib, at least 0.5 similar), or None: the "did you mean"
    of error messages."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_key_error(key: str, valid: list[str] | tuple[str, ...], what: str = "config key") -> ConfigError:
    """A ConfigError for an unknown `what` named `key`, suggesting the closest valid name or else listing
    them all."""
    guess = closest(key, valid)
    hint = f"; did you mean {guess!r}?" if guess else f"; valid: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown {what} {key!r}{hint}")


@dataclass(frozen=True)
class ConfigField:
    """One entry of an adapter's config schema (shown to users and to the agent)."""

    name: str
    type: str  # select | bool | int | float | str
    default: Any
    help: str
    options: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "help": self.help,
            "options": list(self.options) if self.options is not None else None,
            "min": self.minimum,
            "max": self.maximum,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model of the catalog: canonical name (contract 1 in docs/architecture.md), task, size, a line about it."""

    name: str
    framework: str
    task_type: str
    description: str
    params_m: float | None = None
    default_image_size: int = 224
    max_image_size: int = 8192  # the largest image_size a job may ask for (IMAGE_SIZE_LIMIT at most)


IMAGE_SIZE_LIMIT = 8192
"""No model trains above this image size (`Hyperparameters.image_size` has the same bound)."""


def check_image_size(spec: JobSpec, models: list[ModelInfo]) -> None:
    """ConfigError when the job's image_size is above its model's `max_image_size` (a model outside
    the catalog, e.g. local weights: `IMAGE_SIZE_LIMIT`), naming the limit."""
    size = spec.hyperparameters.image_size
    if size is None:
        return
    limit = next((m.max_image_size for m in models if m.name == spec.model_name), IMAGE_SIZE_LIMIT)
    limit = min(limit, IMAGE_SIZE_LIMIT)
    if size > limit:
        raise ConfigError(f"image_size {size} is above the limit of {limit} for {spec.model_name}; use {limit} or less")


@dataclass
class TrainContext:
    """What an adapter's `train` gets: the job spec, the dataset (its DICE folder and parsed annotations),
    the resolved config, folders to work and write checkpoints in, the device, callbacks and stop signal."""

    spec: JobSpec
    dataset_dir: Path  # DICE folder: images/ + annotations.json (a read-only cache: never write into it)
    dataset: DiceDataset
    conversion: str | None  # from check_compatibility, e.g. "polygon_to_box"
    work_dir: Path  # private scratch for converted data (YOLO layout, ImageFolder)
    output_dir: Path  # best.pt / last.pt go here
    config: dict[str, Any]  # resolve_config() output
    device: str  # "cpu" or "cuda:0"
    callbacks: Callbacks = field(default_factory=Callbacks)
    stop_event: threading.Event = field(default_factory=threading.Event)
    resume_from: Path | None = None
    # fine-tuning: a local copy of the earlier job's checkpoint (spec.init_from) whose matching
    # tensors initialise the fresh model; ignored when resuming (last.pt has the weights)
    init_weights: Path | None = None
    # pretrained weights resolved by the runner (`trainer_runtime.weights.fetch`); None: scratch
    pretrained: ResolvedWeights | None = None


@dataclass
class TrainResult:
    """What an adapter's `train` returns: epochs done, the best epoch and metric, the final metrics, the
    checkpoint paths, and whether it ended on a stop request or early stopping."""

    epochs_completed: int  # last finished epoch (1-based)
    best_epoch: int | None
    best_metric_name: str
    best_metric: float | None
    final_metrics: dict[str, float]
    best_path: Path | None
    last_path: Path | None
    stopped: bool = False  # stop_event honoured
    early_stopped: bool = False  # patience ran out


class Adapter(abc.ABC):
    """An adapter declares its framework's data (`framework`, `tasks`, `primary_metric`,
    `catalog`, `schema`, `preset_values`) and implements what differs: `resolve_config`,
    `validate_spec`, `train` (and `build_model_from_checkpoint` where our code rebuilds models)."""

    framework: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[dict[str, str]]  # task -> metric key used for best.pt, e.g. "val/mAP50-95"
    catalog: ClassVar[tuple[ModelInfo, ...]] = ()  # the models of this framework
    schema: ClassVar[tuple[ConfigField, ...]] = ()  # every framework-specific setting
    preset_values: ClassVar[Mapping[str, Mapping[str, Any]]] = {}  # easy / medium / advanced -> values

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx = ctx

    @classmethod
    def models(cls) -> list[ModelInfo]:
        """The model catalog of this framework."""
        return list(cls.catalog)

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        """Every framework-specific setting with type, options, default and help."""
        return list(cls.schema)

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """easy / medium / advanced -> concrete values of config_schema fields (a copy)."""
        return {k: dict(v) for k, v in cls.preset_values.items()}

    @classmethod
    def check_framework(cls, spec: JobSpec) -> None:
        """ConfigError when `spec` is another framework's job."""
        if spec.framework != cls.framework:
            raise ConfigError(f"{cls.__name__} cannot run a {spec.framework} job")

    @classmethod
    @abc.abstractmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge preset < advanced_config (canonical keys mapped) < explicit hyper-parameters."""

    @classmethod
    @abc.abstractmethod
    def validate_spec(cls, spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
        """Raise ConfigError for an unknown model, a task mismatch, a batch larger than the dataset..."""

    @abc.abstractmethod
    def train(self) -> TrainResult:
        """Train (or resume), reporting through ctx.callbacks; honour ctx.stop_event."""

    @classmethod
    def build_model_from_checkpoint(cls, path: Any) -> tuple[Any, dict[str, Any]]:
        """Rebuild the model of a best.pt / last.pt for inference: (model in eval mode, metadata).
        Frameworks that load their own checkpoints (Ultralytics' ``YOLO(path)``) do not override it."""
        raise NotImplementedError(f"{cls.__name__} checkpoints are loaded by {cls.framework} itself")
