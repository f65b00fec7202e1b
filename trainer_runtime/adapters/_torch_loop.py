"""The epoch loop the torch-based adapters (timm, transformers) run: `EpochLoop`.

Callbacks, stop_event after every batch, per-epoch validation, best/last checkpoints
(`_torch_checkpoints`), patience, resume; `prepare_offline_env` (HF_HUB_OFFLINE /
TRANSFORMERS_OFFLINE before any hub import), `resolve_device`, `seed_everything`.

Determinism and resume: everything is seeded from the job's seed; the shuffle order of an epoch
depends on (seed, epoch) only and the RNG states are saved at the end of each epoch, so a run
resumed from an end-of-epoch last.pt reproduces the uninterrupted run on CPU. A stop in the middle
of an epoch saves the weights as they are and the epoch is run again on resume.

AMP: on CUDA only (config ``amp``), bf16 autocast where the card supports it (no loss scaling,
no skipped steps), else fp16 autocast with a GradScaler.

torch is imported inside the functions that use it. Contracts: docs/architecture.md.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer_runtime.adapters._torch_checkpoints import (
    CHECKPOINT_FORMAT,
    atomic_save,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from trainer_runtime.adapters.base import (
    ConfigError,
    TrainContext,
    TrainResult,
)

if TYPE_CHECKING:
    import torch


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
