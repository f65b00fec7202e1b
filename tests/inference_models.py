"""Tiny real models for the inference tests, trained once and cached.

`trained_model(kind, root)` trains (or finds) one model and returns a `TrainedModel` with its
best.pt / last.pt, the framework, task, the dataset folder it learned from and the last validation
metrics. Kinds: ``yolo-detect``, ``yolo-segment``, ``yolo-pose``, ``yolo-obb``, ``yolo-classify``,
``timm-digits``, ``hf-vit-digits``.

The models live under pytest's cache folder (``.pytest_cache/d/inference-models-v<N>``) so that
reruns skip training; `RECIPE` is part of the path: change it when a recipe changes. CI starts
without the cache and trains them (about 1 minute on 2 CPU cores).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE = 1

ULTRA = {
    "yolo-detect": ("yolo11n", "object_detection", "shapes"),
    "yolo-segment": ("yolo11n-seg", "instance_segmentation", "shapes"),
    "yolo-pose": ("yolo11n-pose", "pose_estimation", "poses"),
    "yolo-obb": ("yolo11n-obb", "oriented_object_detection", "shapes"),
    "yolo-classify": ("yolo11n-cls", "image_classification", "digits"),
}
KINDS = (*ULTRA, "timm-digits", "hf-vit-digits")


@dataclass
class TrainedModel:
    kind: str
    framework: str
    task_type: str
    model_name: str
    best: Path
    last: Path
    dataset_dir: Path
    metrics: dict[str, float]
    class_names: list[str]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _subset(src: Path, dest: Path, n: int, per_class: bool) -> Path:
    from tests.trainer_runtime._demo_fixtures import dice_subset

    return dice_subset(src, dest, n, per_class=per_class)


def _source(name: str, demo_root: Path) -> Path:
    from tools.demo_datasets import build_demo_dataset

    return build_demo_dataset({"shapes": "shapes-demo", "poses": "poses-demo", "digits": "digits"}[name], demo_root)


def _train(kind: str, out: Path, demo_root: Path) -> dict[str, Any]:
    from trainer_runtime.adapters.base import TrainContext
    from trainer_runtime.formats.validate import load_annotations
    from trainer_runtime.spec import load_spec

    if kind in ULTRA:
        from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter as Adapter

        model, task, src = ULTRA[kind]
        framework = "ultralytics"
        n = 60 if src == "digits" else 16
        hp: dict[str, Any] = {"epochs": 1, "batch_size": 8, "image_size": 32 if src == "digits" else 64, "workers": 0}
        advanced: dict[str, Any] = {}
    elif kind == "timm-digits":
        from trainer_runtime.adapters.timm_adapter import TimmAdapter as Adapter  # type: ignore[assignment]

        model, task, src, framework, n = "resnet18", "image_classification", "digits", "timm", 200
        hp = {"epochs": 2, "batch_size": 16, "image_size": 32, "workers": 0}
        advanced = {"hflip": 0.0, "scale_min": 1.0}
    else:
        from trainer_runtime.adapters.transformers_adapter import (  # type: ignore[assignment]
            TransformersAdapter as Adapter,
        )

        model, task, src, framework, n = (
            "google/vit-base-patch16-224",
            "image_classification",
            "digits",
            "transformers",
            60,
        )
        hp = {"epochs": 1, "batch_size": 16, "image_size": 32, "workers": 0}
        advanced = {
            "model_config": {
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "patch_size": 8,
            }
        }
    ds_dir = _subset(_source(src, demo_root), out / "dataset", n, per_class=src == "digits")
    spec = load_spec(
        {
            "job_id": 1,
            "framework": framework,
            "model_name": model,
            "task_type": task,
            "dataset_id": "demo",
            "hyperparameters": hp,
        }
    )
    hyper = spec.hyperparameters.model_dump(exclude={"preset", "advanced_config", "device", "val_fraction"})
    if framework == "ultralytics":
        cfg = Adapter.resolve_config(None, advanced, hyper)
    else:
        cfg = Adapter.resolve_config("easy", advanced, {})
    ctx = TrainContext(
        spec=spec,
        dataset_dir=ds_dir,
        dataset=load_annotations(ds_dir / "annotations.json"),
        conversion=None,
        work_dir=out / "work",
        output_dir=out / "out",
        config=cfg,
        device="cpu",
    )
    result = Adapter(ctx).train()
    shutil.rmtree(out / "work", ignore_errors=True)
    doc = json.loads((ds_dir / "annotations.json").read_text(encoding="utf-8"))
    return {
        "framework": framework,
        "task_type": task,
        "model_name": model,
        "metrics": dict(result.final_metrics or {}),
        "class_names": [c["name"] for c in sorted(doc["categories"], key=lambda c: c["id"])],
    }


def trained_model(kind: str, root: Path, demo_root: Path) -> TrainedModel:
    """Train `kind` into ``root/<kind>`` unless a finished copy is there."""
    if kind not in KINDS:
        raise ValueError(kind)
    out = root / kind
    meta_file = out / "meta.json"
    with _locked(root / f".{kind}.lock"):
        if not meta_file.is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            meta = _train(kind, out, demo_root)
            meta_file.write_text(json.dumps(meta), encoding="utf-8")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    best = out / "out" / "best.pt"
    last = out / "out" / "last.pt"
    if not best.is_file():
        best = last
    return TrainedModel(
        kind=kind,
        framework=meta["framework"],
        task_type=meta["task_type"],
        model_name=meta["model_name"],
        best=best,
        last=last,
        dataset_dir=out / "dataset",
        metrics=meta["metrics"],
        class_names=meta["class_names"],
    )


def models_root(config: Any) -> Path:
    """The cache folder for a pytest `config` (``request.config``)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(f"inference-models-v{RECIPE}"))
    import tempfile

    return Path(tempfile.gettempdir()) / f"vta-inference-models-v{RECIPE}-{os.getuid()}"
