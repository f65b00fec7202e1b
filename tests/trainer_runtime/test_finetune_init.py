"""Initialising a model from an earlier job's checkpoint (`trainer_runtime.adapters.init_weights`):
every matching tensor is copied bit-equal; the classifier head is rebuilt when the classes differ
(by count, or by name for the same count) and kept when they are the same; another architecture
is refused; a resume ignores it. timm and transformers without training; Ultralytics with a real
tiny run (slow)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer_runtime._demo_fixtures import demo_datasets_root, demo_shapes_dir  # noqa: F401
from trainer_runtime.adapters import init_weights
from trainer_runtime.adapters._torch_checkpoints import CHECKPOINT_FORMAT
from trainer_runtime.adapters.base import ConfigError, TrainContext
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.spec import InitFromSpec, JobSpec


def _ctx(tmp: Path, framework: str, model: str, weights: Path | None, resume: Path | None = None) -> TrainContext:
    spec = JobSpec(
        job_id=2,
        framework=framework,
        model_name=model,
        task_type="image_classification",
        dataset_id="d",
        hyperparameters={"epochs": 1},
        init_from=InitFromSpec(job_id=1, checkpoint="best.pt", key="k/best.pt", framework=framework, model_name=model)
        if weights is not None
        else None,
    )
    empty = DiceDataset.model_validate({"format_version": "1.0", "categories": [], "images": [], "annotations": []})
    return TrainContext(
        spec=spec,
        dataset_dir=tmp,
        dataset=empty,
        conversion=None,
        work_dir=tmp,
        output_dir=tmp,
        config={},
        device="cpu",
        resume_from=resume,
        init_weights=weights,
    )


def _save(path: Path, model: Any, framework: str, name: str, classes: list[str]) -> Path:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "framework": framework,
        "model_name": name,
        "class_names": classes,
        "model": model.state_dict(),
    }
    torch.save(ckpt, path)
    return path


def _timm(num_classes: int, seed: int) -> Any:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=num_classes)


def _equal(a: Any, b: Any, skip: set[str]) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


@pytest.mark.parametrize(
    ("source_classes", "target_classes", "head_loaded"),
    [
        (["0", "1", "2", "3", "4"], ["5", "6", "7"], False),  # other count: shapes differ
        (["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"], False),  # same count, other classes
        (["0", "1", "2", "3", "4"], ["0", "1", "2", "3", "4"], True),  # same classes: the head is kept
    ],
)
def test_timm_backbone_is_copied_and_the_head_rebuilt_for_other_classes(
    tmp_path: Path, source_classes: list[str], target_classes: list[str], head_loaded: bool
) -> None:
    source = _timm(len(source_classes), seed=1)
    path = _save(tmp_path / "best.pt", source, "timm", "resnet18", source_classes)
    target = _timm(len(target_classes), seed=2)
    fresh_fc = target.fc.weight.detach().clone()
    logs: list[str] = []
    assert init_weights.init_torch_model(_ctx(tmp_path, "timm", "resnet18", path), target, logs.append, target_classes)
    assert _equal(source, target, skip={"fc.weight", "fc.bias"})
    if head_loaded:
        assert torch.equal(target.fc.weight, source.fc.weight)
        assert logs == [
            "initialised from job 1's best.pt: 122 of 122 tensors loaded, 0 skipped; "
            "fresh optimizer, starting at epoch 1"
        ]
    else:
        assert torch.equal(target.fc.weight, fresh_fc)  # its own fresh initialisation
        assert logs[0].startswith("initialised from job 1's best.pt: 120 of 122 tensors loaded, 2 skipped")
        assert "rebuilt: fc.bias, fc.weight" in logs[0]


def test_transformers_classifier_is_rebuilt(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    tiny: dict[str, Any] = {
        "num_hidden_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
        "num_labels": 4,
    }
    torch.manual_seed(1)
    source: Any = ViTForImageClassification(ViTConfig(**tiny))
    path = _save(tmp_path / "best.pt", source, "transformers", "google/vit-base-patch16-224", ["a", "b", "c", "d"])
    torch.manual_seed(2)
    target: Any = ViTForImageClassification(ViTConfig(**tiny))
    fresh = target.classifier.weight.detach().clone()
    logs: list[str] = []
    ctx = _ctx(tmp_path, "transformers", "google/vit-base-patch16-224", path)
    init_weights.init_torch_model(ctx, target, logs.append, ["w", "x", "y", "z"])
    assert _equal(source, target, skip={"classifier.weight", "classifier.bias"})
    assert torch.equal(target.classifier.weight, fresh)
    assert "2 skipped (rebuilt: classifier.bias, classifier.weight)" in logs[0]


def test_other_architecture_and_resume(tmp_path: Path) -> None:
    path = _save(tmp_path / "best.pt", _timm(3, seed=1), "timm", "resnet34", ["a", "b", "c"])
    with pytest.raises(ConfigError, match="holds timm resnet34, not timm resnet18"):
        init_weights.init_torch_model(_ctx(tmp_path, "timm", "resnet18", path), _timm(3, 2), print, ["a", "b", "c"])
    # a resume continues from its own last.pt: the fine-tuning source is not loaded again
    target = _timm(3, seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ctx = _ctx(tmp_path, "timm", "resnet18", path, resume=tmp_path / "last.pt")
    assert not init_weights.init_torch_model(ctx, target, print, ["a", "b", "c"])
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    # no fine-tuning: nothing to do
    assert not init_weights.init_torch_model(_ctx(tmp_path, "timm", "resnet18", None), target, print, ["a"])


@pytest.mark.slow
def test_ultralytics_fine_tune_loads_the_source_checkpoint(tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    from tests.trainer_runtime.test_ultralytics_adapter import make_ctx
    from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter

    ctx, _ = make_ctx(tmp_path / "a", demo_shapes_dir, "yolo11n", "object_detection", n_images=12, epochs=1)
    source = UltralyticsAdapter(ctx).train()
    assert source.best_path is not None
    ctx2, rec = make_ctx(tmp_path / "b", demo_shapes_dir, "yolo11n", "object_detection", n_images=12, epochs=1)
    init = InitFromSpec(job_id=1, checkpoint="best.pt", key="k", framework="ultralytics", model_name="yolo11n")
    ctx2 = dataclasses.replace(
        ctx2, spec=ctx2.spec.model_copy(update={"init_from": init}), init_weights=source.best_path
    )
    result = UltralyticsAdapter(ctx2).train()
    assert result.epochs_completed == 1
    logs = [e["message"] for e in rec.of("on_log")]
    lines = [m for m in logs if m.startswith("initialised from job 1's best.pt")]
    assert lines, logs
    loaded, total = (int(x) for x in lines[0].split(": ", 1)[1].split(" tensors")[0].split(" of "))
    # same classes (the same shapes data): everything is transferred
    assert loaded == total and total > 100, lines[0]
