"""Shared parts of the torch-based adapters (timm, transformers).

Importable without torch: torch is imported inside the functions that use it, so the adapters'
catalogs, schemas and presets stay readable in the server process.

- config: `resolve_layered` (preset < canonical advanced_config < explicit hyper-parameters, type
  checks against the schema, unknown keys with the closest valid name), `check_common_spec`;
- runtime: `prepare_offline_env` (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE before any hub import),
  `resolve_device`, `seed_everything`, `get_rng_state` / `set_rng_state` (python, numpy, torch,
  cuda; stored as plain lists so checkpoints load with ``torch.load(weights_only=True)``);
- data: `build_classification_data` (DICE -> image-level labels: the image-level label, or the
  dominant class of a detection/segmentation image), stratified train/val split, and
  `ImageListDataset` reading images straight from the DICE folder;
- checkpoints: `atomic_save` (tmp file + fsync + os.replace), `load_checkpoint`;
- `EpochLoop`: the epoch loop both adapters run — callbacks, stop_event after every batch, per-epoch
  validation, best/last checkpoints, patience, resume.

Checkpoint format (``format: "vta-torch-v1"``). last.pt: ``model`` (state dict), ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch`` (last completed epoch), ``epochs``, ``best_metric``,
``best_epoch``, ``metric_name``, ``bad_epochs`` (patience counter), ``updates`` (optimizer steps),
``metrics`` (of ``epoch``), ``rng``, ``partial_epoch`` (the epoch interrupted mid-way, else None)
and the metadata below.
best.pt: ``model`` (the weights that were validated: EMA weights when EMA is on), ``epoch``,
``metrics`` and the metadata: ``framework``, ``task_type``, ``model_name``, ``class_names``,
``config``, ``image_size`` plus adapter extras (e.g. ``hf_config``). Everything is tensors and
plain Python values.

Determinism and resume: everything is seeded from the job's seed; the shuffle order of an epoch
depends on (seed, epoch) only and the RNG states are saved at the end of each epoch, so a run
resumed from an end-of-epoch last.pt reproduces the uninterrupted run on CPU. A stop in the middle
of an epoch saves the weights as they are and the epoch is run again on resume.

AMP: on CUDA only (config ``amp``), bf16 autocast where the card supports it (no loss scaling,
no skipped steps), else fp16 autocast with a GradScaler.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer_runtime.adapters.base import (
    CANONICAL_KEYS,
    ConfigError,
    ConfigField,
    TrainContext,
    TrainResult,
    closest,
    unknown_key_error,
)
from trainer_runtime.formats.capabilities import dominant_class
from trainer_runtime.formats.paths import safe_join
from trainer_runtime.formats.schema import Annotation, DiceDataset
from trainer_runtime.formats.split import SplitResult, stratified_split

if TYPE_CHECKING:
    import torch

    from trainer_runtime.spec import JobSpec

CHECKPOINT_FORMAT = "vta-torch-v1"

# Keys of the job's hyper-parameters that are not framework settings: accepted (and ignored) by
# resolve_config so a runner may pass the whole `Hyperparameters` dict.
JOB_KEYS = frozenset(
    {"epochs", "batch_size", "image_size", "preset", "advanced_config", "seed", "val_fraction", "device", "workers"}
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ===================================================================================== config


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
    return value


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


# ===================================================================================== runtime


def prepare_offline_env() -> None:
    """Never reach for the Hugging Face Hub (no network here): set before importing timm/transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def resolve_device(device: str) -> torch.device:
    import torch

    d = (device or "auto").strip().lower()
    if d in ("auto", ""):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(d if d != "cuda" else "cuda:0")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def get_rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            str(np_state[0]),
            [int(v) for v in np_state[1]],
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any] | None) -> None:
    import torch

    if not state:
        return
    with contextlib.suppress(KeyError, TypeError, ValueError):
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    with contextlib.suppress(KeyError, TypeError, ValueError):
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"]).cpu())
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, ValueError):
            torch.cuda.set_rng_state_all([torch.as_tensor(s).cpu() for s in state["cuda"]])


# ======================================================================================== data


@dataclass
class ClassificationData:
    class_names: list[str]
    category_ids: list[int]  # class index -> DICE category id
    train: list[tuple[str, int]]  # (file_name, class index)
    val: list[tuple[str, int]]
    split: SplitResult
    converted: int = 0  # images labeled by their dominant class
    val_is_train: bool = False  # no image could be held out: validation runs on the training set


def group_annotations(ds: DiceDataset) -> dict[int, list[Annotation]]:
    by_image: dict[int, list[Annotation]] = {}
    for ann in ds.annotations:
        by_image.setdefault(ann.image_id, []).append(ann)
    return by_image


def build_classification_data(ds: DiceDataset, val_fraction: float, seed: int) -> ClassificationData:
    """Image-level labels (or each image's dominant class) and a stratified split on them."""
    cats = sorted(ds.categories, key=lambda c: c.id)
    if not cats:
        raise ConfigError("the dataset has no categories to classify")
    index = {c.id: i for i, c in enumerate(cats)}
    by_image = group_annotations(ds)
    labels: dict[int, int] = {}
    converted = 0
    for img in ds.images:
        anns = by_image.get(img.id)
        if not anns:
            continue  # unlabeled: not used for supervised training
        cid = dominant_class(anns)
        if cid not in index:
            continue
        if any(a.bbox or a.segmentation or a.keypoints or a.rotated_bbox for a in anns):
            converted += 1
        labels[img.id] = cid
    if not labels:
        raise ConfigError("the dataset has no labeled images to train on")
    images = [img for img in ds.images if img.id in labels]
    derived = DiceDataset(
        format_version=ds.format_version,
        categories=list(cats),
        images=images,
        annotations=[Annotation(id=i + 1, image_id=img.id, category_id=labels[img.id]) for i, img in enumerate(images)],
    )
    split = stratified_split(derived, val_fraction=val_fraction, seed=seed)
    names = {img.id: img.file_name for img in images}
    train = [(names[i], index[labels[i]]) for i in split.train if i in labels]
    val = [(names[i], index[labels[i]]) for i in split.val if i in labels]
    val_is_train = False
    if not val:
        val, val_is_train = list(train), True
    return ClassificationData(
        class_names=[c.name for c in cats],
        category_ids=[c.id for c in cats],
        train=train,
        val=val,
        split=split,
        converted=converted,
        val_is_train=val_is_train,
    )


def open_rgb(root: Path, rel: str) -> Any:
    from PIL import Image

    path = safe_join(root / "images", rel)
    with Image.open(path) as im:
        return im.convert("RGB")


class ImageListDataset:
    """Map-style dataset over ``(file_name, label)`` pairs of a DICE folder (no copy, no conversion).

    A plain sequence object: `torch.utils.data.DataLoader` needs only ``__len__``/``__getitem__``.
    """

    def __init__(self, root: Path, items: Sequence[tuple[str, int]], transform: Callable[[Any], Any]) -> None:
        self.root = Path(root)
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        rel, label = self.items[i]
        return self.transform(open_rgb(self.root, rel)), label


def seeded_loader(
    dataset: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> Any:
    """A DataLoader whose shuffle order is re-seeded per epoch by `EpochLoop` (resume-proof)."""
    import torch
    from torch.utils.data import DataLoader

    gen = torch.Generator()
    gen.manual_seed(seed)

    def init_worker(worker_id: int) -> None:  # pragma: no cover - runs in worker processes
        s = torch.initial_seed() % (2**32)
        np.random.seed(s)
        random.seed(s)

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=gen,
        worker_init_fn=init_worker if workers else None,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )


def simple_mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, mixup_alpha: float, cutmix_alpha: float, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mixup or cutmix (one picked at random when both are on) with soft targets."""
    import torch
    import torch.nn.functional as F

    off = smoothing / num_classes
    y1 = F.one_hot(y, num_classes).float() * (1.0 - smoothing) + off
    y2 = y1.flip(0)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or np.random.rand() < 0.5)
    if use_cutmix:
        lam = float(np.random.beta(cutmix_alpha, cutmix_alpha))
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(np.random.randint(h)), int(np.random.randint(w))
        y0, y1_, x0, x1 = (
            max(cy - ch // 2, 0),
            min(cy + ch // 2, h),
            max(cx - cw // 2, 0),
            min(cx + cw // 2, w),
        )
        x = x.clone()
        x[..., y0:y1_, x0:x1] = x.flip(0)[..., y0:y1_, x0:x1]
        lam = 1.0 - (y1_ - y0) * (x1 - x0) / float(h * w)
    else:
        lam = float(np.random.beta(mixup_alpha, mixup_alpha))
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, torch.as_tensor(y1 * lam + y2 * (1.0 - lam))


# ================================================================================= checkpoints


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temporary sibling, fsync, then os.replace: a reader never sees half a file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load one of our checkpoints (tensors and plain values only: ``weights_only=True``)."""
    import torch

    try:
        ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"checkpoint not found: {path}") from exc
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
    return ckpt


def find_local_weights(
    model_name: str, suffixes: Iterable[str] = (".safetensors", ".pth", ".pt", ".bin")
) -> Path | None:
    """``$VTA_WEIGHTS_DIR/<name><suffix>`` (a hub id's ``/`` becomes ``__``) when it exists."""
    root = os.environ.get("VTA_WEIGHTS_DIR")
    if not root:
        return None
    stem = model_name.replace("/", "__")
    for suffix in suffixes:
        p = Path(root) / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def read_weights_file(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return dict(obj[key])
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} holds no state dict")
    return dict(obj)


def load_partial_state(model: torch.nn.Module, state: Mapping[str, Any]) -> tuple[int, list[str]]:
    """Copy the tensors whose names and shapes match (a classifier for another class count is
    skipped). Returns (tensors loaded, names skipped)."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    skipped = sorted(k for k in state if k not in usable)
    model.load_state_dict(usable, strict=False)
    return len(usable), skipped


# ================================================================================== epoch loop


@dataclass
class LoopMeta:
    framework: str
    task_type: str
    model_name: str
    class_names: list[str]
    image_size: int
    epochs: int
    primary_metric: str
    patience: int = 0  # epochs without improvement before stopping; 0: off
    mode: str = "max"
    extra: dict[str, Any] = field(default_factory=dict)  # stored in both checkpoints


class EpochLoop(abc.ABC):
    """The epoch loop of the torch adapters. Subclasses set `model`, `optimizer` (and optionally
    `scheduler`, `scaler`, `ema`) in `setup()` and implement `train_step` and `validate`.

    Per epoch: train (stop_event checked after every batch, ``on_batch_end`` each batch),
    `validate()` on that epoch's weights, `end_of_epoch` (scheduler), write last.pt (and best.pt
    on improvement), then ``on_fit_epoch_end`` and ``on_model_save``; patience may end it early.
    """

    model: Any
    optimizer: Any
    scheduler: Any = None
    scaler: Any = None
    ema: Any = None
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    updates: int = 0  # optimizer steps so far (EMA warm-up)
    last_metrics: dict[str, float]

    def __init__(self, ctx: TrainContext, meta: LoopMeta) -> None:
        self.ctx = ctx
        self.meta = meta
        self.seed = int(ctx.spec.hyperparameters.seed)
        self.device = resolve_device(ctx.device)
        self.amp = self.device.type == "cuda" and bool(ctx.config.get("amp", True))
        self.amp_dtype: Any = None
        if self.amp:
            import torch

            # bf16 where the card has it (no loss scaling, no skipped steps), else fp16 + GradScaler
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.train_loader: Any = None
        self.epoch = 0  # epoch being trained (1-based)

    # --------------------------------------------------------------------- subclass interface
    @abc.abstractmethod
    def setup(self) -> None:
        """Build data loaders, model, optimizer, scheduler, scaler, EMA (weights: fresh)."""

    @abc.abstractmethod
    def train_step(self, batch: Any) -> float:
        """One optimisation step on `batch`; returns the loss."""

    @abc.abstractmethod
    def validate(self) -> dict[str, float]:
        """Metrics of the current weights on the validation set (keys with ``val/``)."""

    def end_of_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:  # noqa: B027 - optional hook
        """Step per-epoch schedulers (after validation, so plateau schedulers see the metric)."""

    def eval_model(self) -> Any:
        """The weights that are validated and saved as best (EMA when on)."""
        return self.ema.module if self.ema is not None else self.model

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def log(self, message: str, level: str = "info") -> None:
        self.ctx.callbacks.run_callbacks("on_log", level=level, message=message)

    # --------------------------------------------------------------------------- checkpoints
    @property
    def last_path(self) -> Path:
        return Path(self.ctx.output_dir) / "last.pt"

    @property
    def best_path(self) -> Path:
        return Path(self.ctx.output_dir) / "best.pt"

    def _meta_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "framework": self.meta.framework,
            "task_type": self.meta.task_type,
            "model_name": self.meta.model_name,
            "class_names": list(self.meta.class_names),
            "config": dict(self.ctx.config),
            "image_size": int(self.meta.image_size),
            "metric_name": self.meta.primary_metric,
            **self.meta.extra,
        }

    def _save_last(self, completed: int, metrics: Mapping[str, float], partial: int | None) -> Path:
        ckpt = {
            **self._meta_dict(),
            "epoch": completed,
            "epochs": self.meta.epochs,
            "partial_epoch": partial,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "updates": self.updates,
            "metrics": dict(metrics),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": get_rng_state(),
        }
        return atomic_save(ckpt, self.last_path)

    def _save_best(self, epoch: int, metrics: Mapping[str, float]) -> Path:
        ckpt = {**self._meta_dict(), "epoch": epoch, "metrics": dict(metrics), "model": self.eval_model().state_dict()}
        return atomic_save(ckpt, self.best_path)

    def _restore(self, path: Path) -> int:
        ckpt = load_checkpoint(path, map_location="cpu")  # load_state_dict moves tensors to the model
        for key, want in (("framework", self.meta.framework), ("model_name", self.meta.model_name)):
            if ckpt.get(key) != want:
                raise ConfigError(f"cannot resume: {path} was trained with {key} {ckpt.get(key)!r}, not {want!r}")
        if list(ckpt.get("class_names") or []) != list(self.meta.class_names):
            raise ConfigError(
                f"cannot resume: {path} has classes {ckpt.get('class_names')}, the dataset has {self.meta.class_names}"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.best_metric = ckpt.get("best_metric")
        self.best_epoch = ckpt.get("best_epoch")
        self.bad_epochs = int(ckpt.get("bad_epochs") or 0)
        self.updates = int(ckpt.get("updates") or 0)
        self.last_metrics = dict(ckpt.get("metrics") or {})
        set_rng_state(ckpt.get("rng"))
        completed = int(ckpt.get("epoch") or 0)
        if self.best_epoch is not None and not self.best_path.exists():
            sibling = Path(path).with_name("best.pt")
            if sibling.exists() and sibling.resolve() != self.best_path.resolve():
                import shutil

                self.best_path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sibling, self.best_path)
            else:
                self.log(f"best.pt of epoch {self.best_epoch} is not next to {path}; tracking best anew", "warning")
                self.best_metric, self.best_epoch = None, None
        self.log(f"resumed from {path}: {completed} of {self.meta.epochs} epochs done")
        return completed

    # ------------------------------------------------------------------------------- the loop
    def _improved(self, value: float | None) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.meta.mode == "max" else value < self.best_metric

    def _result(self, completed: int, *, stopped: bool = False, early: bool = False) -> TrainResult:
        result = TrainResult(
            epochs_completed=completed,
            best_epoch=self.best_epoch,
            best_metric_name=self.meta.primary_metric,
            best_metric=self.best_metric,
            final_metrics=dict(self.last_metrics),
            best_path=self.best_path if self.best_path.exists() else None,
            last_path=self.last_path if self.last_path.exists() else None,
            stopped=stopped,
            early_stopped=early,
        )
        self.ctx.callbacks.run_callbacks("on_train_end", result=result)
        return result

    def run(self) -> TrainResult:
        import torch

        seed_everything(self.seed)
        self.best_metric = None
        self.best_epoch = None
        self.bad_epochs = 0
        self.updates = 0
        self.last_metrics = {}
        self.setup()
        completed = 0
        if self.ctx.resume_from is not None:
            completed = self._restore(Path(self.ctx.resume_from))
        epochs = self.meta.epochs
        cb = self.ctx.callbacks
        cb.run_callbacks("on_train_start", epochs=epochs, start_epoch=completed + 1)
        if completed >= epochs:
            self.log(f"nothing to do: {completed} of {epochs} epochs already done")
            return self._result(completed)
        stop = self.ctx.stop_event
        batches = len(self.train_loader)
        for epoch in range(completed + 1, epochs + 1):
            self.epoch = epoch
            if stop.is_set():
                self._save_last(epoch - 1, self.last_metrics, None)
                return self._result(epoch - 1, stopped=True)
            # the shuffle order depends on (seed, epoch) only: a resumed run sees the same order
            gen = getattr(self.train_loader, "generator", None)
            if gen is not None:
                gen.manual_seed(self.seed * 100_003 + epoch)
            self.model.train()
            lr = self.current_lr()
            total, count = 0.0, 0
            for i, batch in enumerate(self.train_loader, start=1):
                lr = self.current_lr()  # reported: the lr of the epoch's last step
                loss = self.train_step(batch)
                if math.isfinite(loss):
                    total += loss
                    count += 1
                cb.run_callbacks("on_batch_end", epoch=epoch, batch=i, batches=batches, loss=loss)
                if stop.is_set():
                    self._save_last(epoch - 1, self.last_metrics, epoch)
                    self.log(f"stopped in epoch {epoch} after batch {i}/{batches}; last.pt is resumable")
                    return self._result(epoch - 1, stopped=True)
            self.model.eval()
            with torch.no_grad():
                val = self.validate()
            metrics = {"train/loss": total / count if count else float("nan"), **val, "lr": lr}
            self.end_of_epoch(epoch, metrics)
            value = metrics.get(self.meta.primary_metric)
            is_best = self._improved(value)
            if is_best:
                self.best_metric, self.best_epoch, self.bad_epochs = float(value or 0.0), epoch, 0
            else:
                self.bad_epochs += 1
            self.last_metrics = metrics
            if is_best:
                self._save_best(epoch, metrics)
            self._save_last(epoch, metrics, None)
            cb.run_callbacks("on_fit_epoch_end", epoch=epoch, epochs=epochs, metrics=dict(metrics))
            cb.run_callbacks(
                "on_model_save",
                epoch=epoch,
                last=self.last_path,
                best=self.best_path if self.best_path.exists() else None,
                is_best=is_best,
            )
            if self.meta.patience > 0 and self.bad_epochs >= self.meta.patience and epoch < epochs:
                self.log(
                    f"early stop after epoch {epoch}: {self.meta.primary_metric} did not improve for"
                    f" {self.bad_epochs} epochs (best {self.best_metric} at epoch {self.best_epoch})"
                )
                return self._result(epoch, early=True)
            if stop.is_set():
                return self._result(epoch, stopped=True)
        return self._result(epochs)

    # ------------------------------------------------------------------------------ helpers
    def backward_step(self, loss: torch.Tensor, *, clip_grad: float | None = None) -> None:
        """backward + (unscale, clip) + optimizer step with the AMP scaler when present."""
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip_grad)
            self.optimizer.step()
        self.updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.updates)

    def autocast(self) -> Any:
        import torch

        if self.amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def make_scaler(self) -> Any:
        """A GradScaler for fp16 autocast; None on CPU and with bf16 (no scaling needed)."""
        import torch

        return torch.amp.GradScaler("cuda") if self.amp and self.amp_dtype == torch.float16 else None


def classification_metrics(logits: Any, targets: Any, val_loss: float) -> dict[str, float]:
    """val/loss, val/accuracy_top1, val/accuracy_top5 of one validation pass."""
    from trainer_runtime.metrics import topk_accuracy

    acc = topk_accuracy(logits, targets, ks=(1, 5))
    return {
        "val/loss": val_loss,
        "val/accuracy_top1": acc[1],
        "val/accuracy_top5": acc[5],
    }
