"""TransformersAdapter: catalog, config, spec checks; real CPU training of ViT, ResNet and DETR.

The ViT tests shrink the model with ``model_config`` overrides (the architecture and the model name
stay ViT); ResNet-50 and DETR keep their real backbones (DETR with fewer queries and layers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime._demo_fixtures import (  # noqa: F401
    demo_datasets_root,
    demo_digits_dir,
    demo_shapes_dir,
    dice_subset,
)
from trainer_runtime.adapters.base import ConfigError, TrainContext
from trainer_runtime.adapters.transformers_adapter import TransformersAdapter
from trainer_runtime.callbacks import Callbacks
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.spec import JobSpec, load_spec

VIT = "google/vit-base-patch16-224"
RESNET = "microsoft/resnet-50"
DETR = "facebook/detr-resnet-50"
TINY_VIT = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}
TINY_DETR = {"num_queries": 10, "encoder_layers": 1, "decoder_layers": 1}


def make_spec(model: str = VIT, task: str = "image_classification", **hp: Any) -> JobSpec:
    hyper = {"epochs": 1, "batch_size": 8, "image_size": 32, **hp}
    return load_spec(
        {
            "job_id": 2,
            "framework": "transformers",
            "model_name": model,
            "task_type": task,
            "dataset_id": "demo",
            "hyperparameters": hyper,
        }
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.callbacks = Callbacks()
        for ev in ("on_train_start", "on_batch_end", "on_fit_epoch_end", "on_model_save", "on_log", "on_train_end"):
            self.callbacks.add_callback(ev, self._make(ev))

    def _make(self, ev: str) -> Any:
        def fn(**kw: Any) -> None:
            self.events.append((ev, kw))

        return fn

    def of(self, ev: str) -> list[dict[str, Any]]:
        return [kw for e, kw in self.events if e == ev]


def make_ctx(
    dataset_dir: Path, out: Path, spec: JobSpec, config: dict[str, Any], rec: Recorder, resume: Path | None = None
) -> TrainContext:
    ds = DiceDataset.model_validate_json((dataset_dir / "annotations.json").read_text(encoding="utf-8"))
    return TrainContext(
        spec=spec,
        dataset_dir=dataset_dir,
        dataset=ds,
        conversion=None,
        work_dir=out / "work",
        output_dir=out,
        config=config,
        device="cpu",
        callbacks=rec.callbacks,
        resume_from=resume,
    )


@pytest.fixture(scope="module")
def digits40(demo_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return dice_subset(demo_digits_dir, tmp_path_factory.mktemp("hf-digits40"), 40, per_class=True)


@pytest.fixture(scope="module")
def shapes10(demo_shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return dice_subset(demo_shapes_dir, tmp_path_factory.mktemp("hf-shapes10"), 10)


# ------------------------------------------------------------------------- catalog and config


def test_catalog_schema_presets() -> None:
    models = {m.name: m for m in TransformersAdapter.models()}
    assert models[VIT].task_type == "image_classification"
    assert models[RESNET].task_type == "image_classification"
    assert models[DETR].task_type == "object_detection"
    assert TransformersAdapter.primary_metric == {
        "image_classification": "val/accuracy_top1",
        "object_detection": "val/mAP50-95",
    }
    fields = {f.name for f in TransformersAdapter.config_schema()}
    presets = TransformersAdapter.presets()
    assert presets["easy"]["optimizer"] == "adam" and presets["easy"]["mixup_alpha"] == 0.0
    assert presets["medium"]["optimizer"] == "adamw" and presets["medium"]["mixup_alpha"] > 0
    assert presets["advanced"]["cutmix_alpha"] > 0
    for values in presets.values():
        assert set(values) <= fields


def test_resolve_config_mapping_and_errors() -> None:
    cfg = TransformersAdapter.resolve_config(
        "medium",
        {
            "optimizer": "sgd",
            "scheduler": "step",
            "label_smoothing": 0.2,
            "cutmix": True,
            "model_config": {"num_queries": 5},
        },
        {"learning_rate": 0.01, "epochs": 2, "image_size": 64},
    )
    assert cfg["optimizer"] == "sgd" and cfg["lr_scheduler_type"] == "step"
    assert cfg["label_smoothing_factor"] == 0.2 and cfg["cutmix_alpha"] == 1.0 and cfg["mixup_alpha"] == 0.2
    assert cfg["learning_rate"] == 0.01 and cfg["model_config"] == {"num_queries": 5}
    with pytest.raises(ConfigError, match="did you mean 'scheduler'"):
        TransformersAdapter.resolve_config(None, {"schedular": "cosine"}, {})
    with pytest.raises(ConfigError, match="mosaic is an Ultralytics detection augmentation; transformers does not"):
        TransformersAdapter.resolve_config(None, {"mosaic": True}, {})
    with pytest.raises(ConfigError, match="rmsprop"):
        TransformersAdapter.resolve_config(None, {"optimizer": "rmsprop"}, {})
    with pytest.raises(ConfigError, match="model_config must be an object"):
        TransformersAdapter.resolve_config(None, {"model_config": 3}, {})


def test_validate_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = {"images": 50, "labeled_images": 50}
    TransformersAdapter.validate_spec(make_spec(), summary)
    TransformersAdapter.validate_spec(make_spec(DETR, "object_detection", batch_size=4), summary)
    with pytest.raises(ConfigError, match="did you mean 'facebook/detr-resnet-50'"):
        TransformersAdapter.validate_spec(make_spec("facebook/detr-resnet-5", "object_detection"), summary)
    with pytest.raises(ConfigError, match="trains object_detection, not image_classification"):
        TransformersAdapter.validate_spec(make_spec(DETR), summary)
    with pytest.raises(ConfigError, match="not instance_segmentation"):
        TransformersAdapter.validate_spec(make_spec(task="instance_segmentation"), summary)
    with pytest.raises(ConfigError, match="larger than the training set"):
        TransformersAdapter.validate_spec(make_spec(batch_size=41), summary)
    # a hub id the catalog does not know: only with a local folder
    other = "acme/vit-tiny"
    with pytest.raises(ConfigError, match="unknown transformers model"):
        TransformersAdapter.validate_spec(make_spec(other), summary)
    folder = tmp_path / "acme__vit-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    monkeypatch.setenv("VTA_WEIGHTS_DIR", str(tmp_path))
    TransformersAdapter.validate_spec(make_spec(other), summary)


# ----------------------------------------------------------------------------------- training


def _check_classification_run(rec: Recorder, result: Any, out: Path, epochs: int = 1) -> None:
    eps = rec.of("on_fit_epoch_end")
    assert [e["epoch"] for e in eps] == list(range(1, epochs + 1))
    for e in eps:
        assert set(e["metrics"]) == {"train/loss", "val/loss", "val/accuracy_top1", "val/accuracy_top5", "lr"}
    assert result.epochs_completed == epochs and result.best_path == out / "best.pt"
    assert (out / "last.pt").exists()


@pytest.mark.slow
def test_vit_classification_one_epoch_and_inference_model(digits40: Path, tmp_path: Path) -> None:
    import torch

    rec = Recorder()
    cfg = TransformersAdapter.resolve_config("medium", {}, {"model_config": TINY_VIT, "learning_rate": 1e-3})
    result = TransformersAdapter(make_ctx(digits40, tmp_path, make_spec(), cfg, rec)).train()
    _check_classification_run(rec, result, tmp_path)
    assert any("built from ViTConfig" in e["message"] for e in rec.of("on_log"))
    model, meta = TransformersAdapter.build_model_from_checkpoint(tmp_path / "best.pt")
    assert type(model).__name__ == "ViTForImageClassification"
    assert meta["model_name"] == VIT and meta["hf_config"]["num_hidden_layers"] == 2
    assert model.config.id2label[3] == "3"
    with torch.no_grad():
        assert model(pixel_values=torch.zeros(1, 3, 32, 32)).logits.shape == (1, 10)


@pytest.mark.slow
def test_resnet50_classification_one_epoch(digits40: Path, tmp_path: Path) -> None:
    rec = Recorder()
    cfg = TransformersAdapter.resolve_config("easy", {"scheduler": "linear"}, {})
    result = TransformersAdapter(make_ctx(digits40, tmp_path, make_spec(RESNET), cfg, rec)).train()
    _check_classification_run(rec, result, tmp_path)
    assert any("built from ResNetConfig" in e["message"] for e in rec.of("on_log"))


@pytest.mark.slow
def test_detr_one_epoch_reports_map(shapes10: Path, tmp_path: Path) -> None:
    rec = Recorder()
    spec = make_spec(DETR, "object_detection", batch_size=4, image_size=64)
    cfg = TransformersAdapter.resolve_config("easy", {}, {"model_config": TINY_DETR, "max_grad_norm": 0.1})
    result = TransformersAdapter(make_ctx(shapes10, tmp_path, spec, cfg, rec)).train()
    (epoch,) = rec.of("on_fit_epoch_end")
    m = epoch["metrics"]
    assert {"train/loss", "val/loss", "val/mAP50", "val/mAP50-95", "lr"} <= set(m)
    assert 0.0 <= m["val/mAP50-95"] <= m["val/mAP50"] <= 1.0
    assert m["train/loss"] > 0
    assert result.best_metric_name == "val/mAP50-95" and result.epochs_completed == 1
    assert any("DetrConfig (timm ResNet-50 backbone" in e["message"] for e in rec.of("on_log"))
    model, meta = TransformersAdapter.build_model_from_checkpoint(tmp_path / "best.pt")
    assert type(model).__name__ == "DetrForObjectDetection"
    assert meta["class_names"] == ["circle", "square", "triangle", "rectangle"]
    assert model.config.num_queries == 10


@pytest.mark.slow
def test_stop_resume_and_early_stop(digits40: Path, tmp_path: Path) -> None:
    from trainer_runtime.adapters._torch_checkpoints import load_checkpoint

    spec = make_spec(epochs=3)
    cfg = TransformersAdapter.resolve_config("medium", {}, {"model_config": TINY_VIT, "learning_rate": 1e-3})
    rec = Recorder()
    ctx = make_ctx(digits40, tmp_path, spec, cfg, rec)

    def stop(epoch: int, batch: int, **_: Any) -> None:
        if epoch == 2 and batch == 1:
            ctx.stop_event.set()

    rec.callbacks.add_callback("on_batch_end", stop)
    first = TransformersAdapter(ctx).train()
    assert first.stopped and first.epochs_completed == 1
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 1 and saved["scheduler"] is not None and saved["hf_config"]["hidden_size"] == 64

    rec2 = Recorder()
    second = TransformersAdapter(make_ctx(digits40, tmp_path, spec, cfg, rec2, resume=tmp_path / "last.pt")).train()
    assert [e["epoch"] for e in rec2.of("on_fit_epoch_end")] == [2, 3]
    assert second.epochs_completed == 3 and not second.stopped

    # a learning rate of 0 never improves val/accuracy_top1 (no BatchNorm in ViT): patience 1 stops
    # after epoch 2 of 3
    frozen = TransformersAdapter.resolve_config(
        "easy", {"patience": 1}, {"model_config": TINY_VIT, "learning_rate": 0.0, "hflip": 0.0}
    )
    rec3 = Recorder()
    third = TransformersAdapter(make_ctx(digits40, tmp_path / "early", spec, frozen, rec3)).train()
    assert third.early_stopped and not third.stopped and third.epochs_completed == 2
    assert third.best_epoch == 1


@pytest.mark.slow
def test_detr_with_the_transformers_resnet_backbone() -> None:
    import torch

    from trainer_runtime.adapters.transformers_adapter import build_model

    cfg = TransformersAdapter.resolve_config(None, {}, {"detr_backbone": "transformers", "model_config": TINY_DETR})
    model, how = build_model(DETR, "object_detection", ["a", "b"], 64, cfg)
    assert "transformers ResNet-50 backbone" in how
    assert model.config.backbone_config.model_type == "resnet"
    with torch.no_grad():
        out = model(pixel_values=torch.zeros(1, 3, 64, 64))
    assert out.logits.shape == (1, 10, 3) and out.pred_boxes.shape == (1, 10, 4)
