"""A test double of a framework adapter: the real `Adapter` interface around a tiny numpy model.

`FakeAdapter` trains a softmax regression with SGD + momentum and a step LR schedule on features
derived from the dataset's images (deterministic for a seed), so runner tests run in milliseconds
and behave like a real adapter: callbacks in the real order (``on_train_start``, ``on_batch_end``
per batch, after each epoch ``on_model_save`` then ``on_fit_epoch_end`` — Ultralytics' order),
``stop_event`` honoured after every batch, best.pt/last.pt written atomically, last.pt resumable
(weights, optimizer velocity, scheduler, epoch, best metric).

Knobs (``advanced_config``; besides the canonical ``patience``, ``momentum``, ``optimizer``):
``fake_batches`` (batches per epoch, default 4), ``fake_batch_sleep_s`` (default 0),
``fake_fail_at_epoch`` / ``fake_fail_at_batch`` (raise RuntimeError there), ``fake_plateau``
(the metric stops improving after epoch 1, for early-stop tests).

Also: helpers to publish a dataset into local or S3 storage and to write a job spec, and a
``__main__`` that runs the real runner CLI with this adapter:
``python -m tests.trainer_runtime.fake_adapter --spec job.json [--resume]``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trainer_runtime.adapters.base import (
    CANONICAL_KEYS,
    Adapter,
    ConfigError,
    ConfigField,
    ModelInfo,
    TrainResult,
    closest,
    unknown_key_error,
)
from trainer_runtime.formats.capabilities import dominant_class
from trainer_runtime.storage import DualStorageClient

FAKE_KEYS = ("fake_batches", "fake_batch_sleep_s", "fake_fail_at_epoch", "fake_fail_at_batch", "fake_plateau")
MODELS = {"fake-net": ("image_classification", "object_detection"), "fake-net-seg": ("instance_segmentation",)}


class FakeAdapter(Adapter):
    framework = "timm"
    tasks = ("image_classification", "object_detection", "instance_segmentation")
    primary_metric: ClassVar[dict[str, str]] = {t: "val/accuracy" for t in tasks}

    @classmethod
    def models(cls) -> list[ModelInfo]:
        return [ModelInfo(name, cls.framework, tasks[0], "fake numpy model") for name, tasks in MODELS.items()]

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField("lr", "float", 0.5, "learning rate"),
            ConfigField("momentum", "float", 0.9, "SGD momentum"),
            ConfigField("patience", "int", 0, "early-stop patience (0: off)"),
        ]

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"easy": {"lr": 0.5}, "medium": {"lr": 0.3}, "advanced": {"lr": 0.1}}

    @classmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "lr": 0.5,
            "momentum": 0.9,
            "patience": 0,
            "fake_batches": 4,
            "fake_batch_sleep_s": 0.0,
            "fake_fail_at_epoch": None,
            "fake_fail_at_batch": 1,
            "fake_plateau": False,
        }
        if preset is not None:
            cfg.update(cls.presets()[preset])
        for key, value in advanced_config.items():
            if key not in (*CANONICAL_KEYS, *FAKE_KEYS):
                raise unknown_key_error(key, [*CANONICAL_KEYS, *FAKE_KEYS])
            if key in ("patience", "momentum", *FAKE_KEYS):
                cfg[key] = value
        if hyperparameters.get("learning_rate") is not None:
            cfg["lr"] = hyperparameters["learning_rate"]
        cfg["epochs"] = hyperparameters["epochs"]
        cfg["batch_size"] = hyperparameters.get("batch_size")
        cfg["seed"] = hyperparameters.get("seed", 0)
        return cfg

    @classmethod
    def validate_spec(cls, spec: Any, dataset_summary: dict[str, Any]) -> None:
        if spec.model_name not in MODELS:
            guess = closest(spec.model_name, list(MODELS))
            raise ConfigError(f"unknown model {spec.model_name!r}" + (f"; did you mean {guess!r}?" if guess else ""))
        if spec.task_type not in MODELS[spec.model_name]:
            raise ConfigError(
                f"model {spec.model_name!r} does not do {spec.task_type}; it does {', '.join(MODELS[spec.model_name])}"
            )

    # training -----------------------------------------------------------------------------------
    def _data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        ds = self.ctx.dataset
        by_image: dict[int, list[Any]] = {}
        for ann in ds.annotations:
            by_image.setdefault(ann.image_id, []).append(ann)
        cats = sorted(c.id for c in ds.categories)
        ids = [img.id for img in ds.images if img.id in by_image]
        y = np.array([cats.index(dominant_class(by_image[i])) for i in ids])
        rng = np.random.default_rng(int(self.ctx.config.get("seed") or 0))
        centers = rng.normal(0, 1.0, size=(len(cats), 8))
        x = centers[y] + rng.normal(0, 1.5, size=(len(ids), 8))
        order = rng.permutation(len(ids))
        n_val = max(1, len(ids) // 5)
        val, train = order[:n_val], order[n_val:]
        return x[train], y[train], x[val], y[val], len(cats)

    @staticmethod
    def _save(path: Path, state: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh)
        os.replace(tmp, path)

    def train(self) -> TrainResult:
        ctx, cfg = self.ctx, self.ctx.config
        epochs = int(cfg["epochs"])
        batches = int(cfg["fake_batches"])
        sleep_s = float(cfg["fake_batch_sleep_s"])
        xt, yt, xv, yv, k = self._data()
        w = np.zeros((xt.shape[1], k))
        vel = np.zeros_like(w)
        lr = float(cfg["lr"])
        start, best, best_epoch = 1, -1.0, None
        if ctx.resume_from is not None:
            with open(ctx.resume_from, "rb") as fh:
                st = pickle.load(fh)
            w, vel, lr = st["weights"], st["velocity"], st["lr"]
            start, best, best_epoch = st["epoch"] + 1, st["best_metric"], st["best_epoch"]
        out = ctx.output_dir
        out.mkdir(parents=True, exist_ok=True)
        last_p, best_p = out / "last.pt", out / "best.pt"
        cb = ctx.callbacks
        cb.run_callbacks("on_train_start", epochs=epochs, start_epoch=start)

        def state(epoch: int) -> dict[str, Any]:
            return {
                "weights": w,
                "velocity": vel,
                "lr": lr,
                "epoch": epoch,
                "best_metric": best,
                "best_epoch": best_epoch,
            }

        metrics: dict[str, float] = {}
        stale = 0
        patience = int(cfg.get("patience") or 0)
        completed = start - 1
        for epoch in range(start, epochs + 1):
            loss = 0.0
            for b, idx in enumerate(np.array_split(np.arange(len(xt)), batches), start=1):
                if cfg["fake_fail_at_epoch"] == epoch and b == int(cfg["fake_fail_at_batch"]):
                    raise RuntimeError(f"injected failure at epoch {epoch} batch {b}")
                xb, yb = xt[idx], yt[idx]
                logits = xb @ w
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                loss = float(-np.log(p[np.arange(len(yb)), yb] + 1e-9).mean()) if len(yb) else 0.0
                p[np.arange(len(yb)), yb] -= 1
                grad = xb.T @ p / max(1, len(yb))
                vel = float(cfg["momentum"]) * vel - lr * grad
                w = w + vel
                if sleep_s:
                    time.sleep(sleep_s)
                cb.run_callbacks("on_batch_end", epoch=epoch, batch=b, batches=batches, loss=loss)
                if ctx.stop_event.is_set():
                    self._save(last_p, state(completed))
                    return TrainResult(
                        epochs_completed=completed,
                        best_epoch=best_epoch,
                        best_metric_name="val/accuracy",
                        best_metric=best if best >= 0 else None,
                        final_metrics=metrics,
                        best_path=best_p if best_p.exists() else None,
                        last_path=last_p,
                        stopped=True,
                    )
            if epoch % 3 == 0:
                lr *= 0.5  # step scheduler
            acc = float(((xv @ w).argmax(axis=1) == yv).mean())
            if cfg["fake_plateau"]:
                acc = 0.5 if epoch == 1 else 0.4
            metrics = {"train/loss": loss, "val/accuracy": acc, "lr": lr}
            is_best = acc > best
            if is_best:
                best, best_epoch = acc, epoch
                stale = 0
            else:
                stale += 1
            completed = epoch
            self._save(last_p, state(epoch))
            if is_best:
                self._save(best_p, state(epoch))
            cb.run_callbacks("on_model_save", epoch=epoch, last=last_p, best=best_p, is_best=is_best)
            cb.run_callbacks("on_fit_epoch_end", epoch=epoch, epochs=epochs, metrics=metrics)
            if patience and stale >= patience:
                cb.run_callbacks("on_log", level="info", message=f"early stop: no improvement for {patience} epochs")
                return TrainResult(
                    epochs_completed=epoch,
                    best_epoch=best_epoch,
                    best_metric_name="val/accuracy",
                    best_metric=best,
                    final_metrics=metrics,
                    best_path=best_p,
                    last_path=last_p,
                    early_stopped=True,
                )
        result = TrainResult(
            epochs_completed=completed,
            best_epoch=best_epoch,
            best_metric_name="val/accuracy",
            best_metric=best if best >= 0 else None,
            final_metrics=metrics,
            best_path=best_p if best_p.exists() else None,
            last_path=last_p if last_p.exists() else None,
        )
        cb.run_callbacks("on_train_end", result=result)
        return result


# ------------------------------------------------------------------------------------------------
# helpers for tests


def dataset_dict(n_images: int = 20, classes: int = 2, kind: str = "label") -> dict[str, Any]:
    """A DICE dict: `kind` label (image-level labels) or box (detection boxes)."""
    cats = [{"id": i + 1, "name": f"class{i}"} for i in range(classes)]
    images, anns = [], []
    for i in range(n_images):
        images.append({"id": i + 1, "file_name": f"img/{i:03d}.png", "width": 32, "height": 32})
        ann: dict[str, Any] = {"id": i + 1, "image_id": i + 1, "category_id": (i % classes) + 1}
        if kind == "box":
            ann["bbox"] = [2, 2, 10, 10]
        anns.append(ann)
    return {
        "format_version": "1.0",
        "dataset": {"name": "fake", "description": ""},
        "categories": cats,
        "images": images,
        "annotations": anns,
    }


def publish_dataset(
    storage: DualStorageClient,
    dataset_id: str,
    data: dict[str, Any] | None = None,
    *,
    snapshot_id: str | None = None,
    tmp_dir: Path,
) -> dict[str, Any]:
    """Store a dataset's images (tiny byte blobs) and annotations in the external store."""
    data = data or dataset_dict()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for img in data["images"]:
        p = tmp_dir / "blob.png"
        p.write_bytes(b"\x89PNG fake " + img["file_name"].encode() * 8)
        storage.upload_dataset_file(dataset_id, img["file_name"], p)
    storage.upload_annotations(dataset_id, json.dumps(data).encode(), snapshot_id=snapshot_id)
    return data


def make_spec(
    work_dir: Path,
    storage_root: Path,
    *,
    job_id: int = 7,
    epochs: int = 3,
    advanced: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "job_id": job_id,
        "project_id": 3,
        "framework": "timm",
        "model_name": "fake-net",
        "task_type": "image_classification",
        "dataset_id": "ds1",
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": 4,
            "device": "cpu",
            "advanced_config": advanced or {},
        },
        "storage": {"local_root": str(storage_root)},
        "mlflow": {"enabled": False},
        "work_dir": str(work_dir),
        "checkpoint_upload_interval_s": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


if __name__ == "__main__":
    from trainer_runtime.runner import main

    sys.exit(main(sys.argv[1:], adapter_resolver=lambda framework: FakeAdapter))
