"""Ultralytics YOLO adapter: detect, segment, pose, obb and classify with ``yolov8*`` / ``yolo11*``.

Everything the class publishes (catalog, schema, presets, config resolution, spec checks: in
`_ultralytics_config`) works without Ultralytics installed; `train()` imports it after
`_ultralytics_env.prepare_ultralytics()` made it safe offline (no DNS probe, no font or weight
download, no auto-install, its own MLflow/W&B/... loggers off).

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
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trainer_runtime.adapters import _ultralytics_config as config
from trainer_runtime.adapters import init_weights, pretrained
from trainer_runtime.adapters.base import Adapter, ConfigError, ConfigField, ModelInfo, TrainContext, TrainResult
from trainer_runtime.formats.schema import IMAGE_CLASSIFICATION
from trainer_runtime.spec import ULTRALYTICS
from trainer_runtime.weights import USER_UPLOAD, local_weights_dir

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec

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
    """The Ultralytics YOLO tasks, trained by Ultralytics' own trainer, whose callbacks are relayed to ours."""

    framework: ClassVar[str] = ULTRALYTICS
    tasks: ClassVar[tuple[str, ...]] = tuple(config.TASK_SUFFIX)
    primary_metric: ClassVar[dict[str, str]] = config.PRIMARY_METRIC

    catalog: ClassVar[tuple[ModelInfo, ...]] = tuple(config.CATALOG.values())
    schema: ClassVar[tuple[ConfigField, ...]] = config.CONFIG_SCHEMA
    preset_values = config.PRESETS

    @classmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        """Ultralytics ``train()`` arguments (`_ultralytics_config.resolve_config`)."""
        return config.resolve_config(preset, advanced_config, hyperparameters)

    @classmethod
    def validate_spec(cls, spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
        cls.check_framework(spec)
        config.check_spec(spec, dataset_summary)

    # --------------------------------------------------------------------------- training

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.info = config.model_info(ctx.spec.model_name)
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
        return local_weights_dir() or Path(self.ctx.work_dir).parent / "weights"

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
        if self.task_type == IMAGE_CLASSIFICATION:
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

    def _on_train_epoch_start(self, _trainer: Any) -> None:
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
        task = config.ULTRA_TASK[self.task_type]
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
        metric_name = config.PRIMARY_METRIC[self.task_type]
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


__all__ = ["UltralyticsAdapter", "load_checkpoint_dict", "resume_state", "ultralytics_device"]
