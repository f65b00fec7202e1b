"""TimmAdapter: catalog, config resolution, spec checks, and real CPU training on `digits`."""

from __future__ import annotations

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
from trainer_runtime.adapters.timm_adapter import TimmAdapter
from trainer_runtime.callbacks import Callbacks
from trainer_runtime.formats.capabilities import summarize
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.spec import JobSpec, load_spec

# ------------------------------------------------------------------------------------ helpers


def make_spec(model: str = "resnet18", task: str = "image_classification", **hp: Any) -> JobSpec:
    hyper = {"epochs": 2, "batch_size": 16, "image_size": 32, **hp}
    return load_spec(
        {
            "job_id": 1,
            "framework": "timm",
            "model_name": model,
            "task_type": task,
            "dataset_id": "digits",
            "hyperparameters": hyper,
        }
    )


class Recorder:
    """Collects every callback event as (event, kwargs)."""

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


FAST = {"hflip": 0.0, "scale_min": 1.0}  # digits: no flips, plain resize


@pytest.fixture(scope="module")
def digits200(demo_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return dice_subset(demo_digits_dir, tmp_path_factory.mktemp("digits200"), 200, per_class=True)


@pytest.fixture(scope="module")
def digits60(demo_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return dice_subset(demo_digits_dir, tmp_path_factory.mktemp("digits60"), 60, per_class=True)


# ------------------------------------------------------------------------- catalog and config


def test_catalog_schema_presets() -> None:
    names = [m.name for m in TimmAdapter.models()]
    assert names[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    for n in (
        "efficientnet_b0",
        "efficientnet_b3",
        "mobilenetv3_large_100",
        "convnext_tiny",
        "vit_small_patch16_224",
        "vit_base_patch16_224",
        "deit_small_patch16_224",
    ):
        assert n in names
    assert all(
        m.framework == "timm" and m.task_type == "image_classification" and m.params_m for m in TimmAdapter.models()
    )
    fields = {f.name: f for f in TimmAdapter.config_schema()}
    assert fields["opt"].options is not None and "adamw" in fields["opt"].options
    assert fields["sched"].to_dict()["options"] == ["cosine", "step", "plateau", "linear", "constant", "none"]
    presets = TimmAdapter.presets()
    assert presets["easy"]["opt"] == "adam" and presets["easy"]["mixup_alpha"] == 0.0
    assert presets["medium"]["opt"] == "adamw" and presets["medium"]["mixup_alpha"] > 0
    assert presets["advanced"]["cutmix_alpha"] > 0 and presets["advanced"]["model_ema"] is True
    for values in presets.values():
        assert set(values) <= set(fields)


def test_resolve_config_layers_and_mapping() -> None:
    cfg = TimmAdapter.resolve_config(
        "easy",
        {
            "optimizer": "SGD",
            "scheduler": "linear",
            "mixup": True,
            "cutmix": 0.5,
            "label_smoothing": 0.1,
            "weight_decay": 0.01,
            "momentum": 0.8,
            "warmup_epochs": 1,
            "patience": 3,
        },
        {"learning_rate": 0.05, "epochs": 3, "batch_size": 8, "seed": 1, "weight_decay": 0.02},
    )
    assert cfg["opt"] == "sgd" and cfg["sched"] == "linear"
    assert cfg["mixup_alpha"] == 0.8 and cfg["cutmix_alpha"] == 0.5 and cfg["smoothing"] == 0.1
    assert cfg["momentum"] == 0.8 and cfg["warmup_epochs"] == 1 and cfg["patience"] == 3
    assert cfg["lr"] == 0.05  # hyper-parameters win over the preset
    assert cfg["weight_decay"] == 0.02  # ... and over advanced_config
    assert "epochs" not in cfg  # job keys are not framework settings
    # defaults without a preset; mixup False turns it off
    base = TimmAdapter.resolve_config(None, {"mixup": False}, {})
    assert base["opt"] == "adamw" and base["mixup_alpha"] == 0.0
    # advanced preset, then canonical keys on top
    adv = TimmAdapter.resolve_config("advanced", {"optimizer": "adam"}, {})
    assert adv["opt"] == "adam" and adv["cutmix_alpha"] == 1.0


def test_resolve_config_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'optimizer'"):
        TimmAdapter.resolve_config(None, {"optimzer": "adam"}, {})
    with pytest.raises(ConfigError, match="mosaic is an Ultralytics detection augmentation; timm does not use it"):
        TimmAdapter.resolve_config(None, {"mosaic": True}, {})
    with pytest.raises(ConfigError, match="copy_paste is an Ultralytics"):
        TimmAdapter.resolve_config(None, {"copy_paste": 0.3}, {})
    with pytest.raises(ConfigError, match="did you mean 'adamw'"):
        TimmAdapter.resolve_config(None, {"optimizer": "adamww"}, {})
    with pytest.raises(ConfigError, match="preset"):
        TimmAdapter.resolve_config("expert", {}, {})
    with pytest.raises(ConfigError, match=r"smoothing must be <= 0\.5"):
        TimmAdapter.resolve_config(None, {"label_smoothing": 0.9}, {})
    with pytest.raises(ConfigError, match="model_ema must be true or false"):
        TimmAdapter.resolve_config(None, {}, {"model_ema": "yes"})
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        TimmAdapter.resolve_config(None, {}, {"lrr": 0.1})


def test_validate_spec_errors() -> None:
    summary = {"images": 100, "labeled_images": 100}
    TimmAdapter.validate_spec(make_spec(), summary)  # fine
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        TimmAdapter.validate_spec(make_spec("resnet19"), summary)
    with pytest.raises(ConfigError, match="not object_detection"):
        TimmAdapter.validate_spec(make_spec(task="object_detection"), summary)
    with pytest.raises(ConfigError, match="batch_size 90 is larger than the training set"):
        TimmAdapter.validate_spec(make_spec(batch_size=90), summary)


def test_validate_spec_with_real_summary(digits60: Path) -> None:
    ds = DiceDataset.model_validate_json((digits60 / "annotations.json").read_text(encoding="utf-8"))
    summary = summarize(ds)
    TimmAdapter.validate_spec(make_spec(batch_size=48), summary)
    with pytest.raises(ConfigError, match="larger than the training set"):
        TimmAdapter.validate_spec(make_spec(batch_size=49), summary)


# ----------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_train_resnet18_two_epochs(digits200: Path, tmp_path: Path) -> None:
    import torch

    from trainer_runtime.adapters._torch_checkpoints import load_checkpoint

    rec = Recorder()
    spec = make_spec(epochs=2)
    cfg = TimmAdapter.resolve_config("easy", {}, FAST)
    result = TimmAdapter(make_ctx(digits200, tmp_path, spec, cfg, rec)).train()

    assert rec.of("on_train_start") == [{"epochs": 2, "start_epoch": 1}]
    epochs = rec.of("on_fit_epoch_end")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert e["epochs"] == 2
        assert set(e["metrics"]) == {"train/loss", "val/loss", "val/accuracy_top1", "val/accuracy_top5", "lr"}
        assert 0.0 <= e["metrics"]["val/accuracy_top1"] <= e["metrics"]["val/accuracy_top5"] <= 1.0
    assert epochs[1]["metrics"]["train/loss"] < epochs[0]["metrics"]["train/loss"]
    batches = rec.of("on_batch_end")
    assert batches[0]["batch"] == 1 and batches[0]["batches"] == 10 and len(batches) == 20  # 160 train / 16
    assert len(rec.of("on_model_save")) == 2 and len(rec.of("on_train_end")) == 1

    assert result.epochs_completed == 2 and not result.stopped and not result.early_stopped
    assert result.best_metric_name == "val/accuracy_top1"
    best_epoch_metric = epochs[(result.best_epoch or 1) - 1]["metrics"]["val/accuracy_top1"]
    assert result.best_metric == pytest.approx(max(e["metrics"]["val/accuracy_top1"] for e in epochs))
    assert result.best_metric == pytest.approx(best_epoch_metric)
    assert result.final_metrics == epochs[-1]["metrics"]

    assert result.last_path == tmp_path / "last.pt" and result.best_path == tmp_path / "best.pt"
    last = load_checkpoint(tmp_path / "last.pt")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "ema",
        "epoch",
        "best_metric",
        "best_epoch",
        "class_names",
        "model_name",
        "config",
        "image_size",
        "rng",
    ):
        assert key in last
    assert last["epoch"] == 2 and last["model_name"] == "resnet18" and last["image_size"] == 32
    assert last["class_names"] == [str(i) for i in range(10)]
    model, meta = TimmAdapter.build_model_from_checkpoint(tmp_path / "best.pt")
    assert meta["class_names"] == last["class_names"] and meta["config"]["opt"] == "adam"
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert not list(tmp_path.glob(".*.tmp-*"))  # atomic writes leave nothing behind


@pytest.mark.slow
def test_stop_then_resume_runs_remaining_epochs_once(digits60: Path, tmp_path: Path) -> None:
    from trainer_runtime.adapters._torch_checkpoints import load_checkpoint

    spec = make_spec(epochs=3, batch_size=8)
    cfg = TimmAdapter.resolve_config("easy", {"scheduler": "step"}, FAST)
    rec = Recorder()
    ctx = make_ctx(digits60, tmp_path, spec, cfg, rec)

    def stop_in_epoch_2(epoch: int, batch: int, **_: Any) -> None:
        if epoch == 2 and batch == 2:
            ctx.stop_event.set()

    rec.callbacks.add_callback("on_batch_end", stop_in_epoch_2)
    first = TimmAdapter(ctx).train()
    assert first.stopped and first.epochs_completed == 1
    assert [e["epoch"] for e in rec.of("on_fit_epoch_end")] == [1]
    assert [(b["epoch"], b["batch"]) for b in rec.of("on_batch_end")][-1] == (2, 2)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and last["partial_epoch"] == 2 and last["optimizer"]["state"]

    rec2 = Recorder()
    second = TimmAdapter(make_ctx(digits60, tmp_path, spec, cfg, rec2, resume=tmp_path / "last.pt")).train()
    assert rec2.of("on_train_start") == [{"epochs": 3, "start_epoch": 2}]
    assert [e["epoch"] for e in rec2.of("on_fit_epoch_end")] == [2, 3]
    assert {b["epoch"] for b in rec2.of("on_batch_end")} == {2, 3}
    assert second.epochs_completed == 3 and not second.stopped
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    # step schedule (decay every epoch for 3 epochs) continued from the checkpoint, not restarted
    lrs = [e["metrics"]["lr"] for e in rec2.of("on_fit_epoch_end")]
    assert lrs[0] < cfg["lr"] and lrs[1] < lrs[0]

    # resuming a finished run does nothing
    rec3 = Recorder()
    third = TimmAdapter(make_ctx(digits60, tmp_path, spec, cfg, rec3, resume=tmp_path / "last.pt")).train()
    assert third.epochs_completed == 3 and rec3.of("on_fit_epoch_end") == []


@pytest.mark.slow
def test_deterministic_with_seed(digits60: Path, tmp_path: Path) -> None:
    spec = make_spec(epochs=1, batch_size=16)
    cfg = TimmAdapter.resolve_config("easy", {}, {})  # random crops and flips on: still deterministic
    runs = []
    for i in range(2):
        rec = Recorder()
        TimmAdapter(make_ctx(digits60, tmp_path / str(i), spec, cfg, rec)).train()
        runs.append(rec.of("on_fit_epoch_end")[0]["metrics"])
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_mixup_cutmix_ema_plateau_path(digits60: Path, tmp_path: Path) -> None:
    spec = make_spec(epochs=1, batch_size=15)
    cfg = TimmAdapter.resolve_config(
        "advanced", {"mixup": True, "cutmix": True, "scheduler": "plateau", "label_smoothing": 0.1}, FAST
    )
    assert cfg["model_ema"] is True
    rec = Recorder()
    result = TimmAdapter(make_ctx(digits60, tmp_path, spec, cfg, rec)).train()
    assert result.epochs_completed == 1
    (epoch,) = rec.of("on_fit_epoch_end")
    assert epoch["metrics"]["train/loss"] > 0
    from trainer_runtime.adapters._torch_checkpoints import load_checkpoint

    assert load_checkpoint(tmp_path / "last.pt")["ema"] is not None


@pytest.mark.slow
def test_local_weights_are_loaded_without_classifier(
    digits60: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm
    import torch

    weights = tmp_path / "weights"
    weights.mkdir()
    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    torch.save(src.state_dict(), weights / "resnet18.pth")
    monkeypatch.setenv("VTA_WEIGHTS_DIR", str(weights))
    rec = Recorder()
    spec = make_spec(epochs=1, batch_size=16)
    cfg = TimmAdapter.resolve_config("easy", {}, {**FAST, "lr": 1e-9, "sched": "none"})
    TimmAdapter(make_ctx(digits60, tmp_path / "out", spec, cfg, rec)).train()
    logs = [e["message"] for e in rec.of("on_log")]
    assert any("local weights resnet18.pth" in m and "2 skipped" in m for m in logs), logs


@pytest.mark.slow
def test_detection_dataset_trains_on_dominant_class(demo_shapes_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from trainer_runtime.adapters._torch_data import build_classification_data, group_annotations
    from trainer_runtime.formats.capabilities import dominant_class

    shapes = dice_subset(demo_shapes_dir, tmp_path / "shapes", 24)
    ds = DiceDataset.model_validate_json((shapes / "annotations.json").read_text(encoding="utf-8"))
    data = build_classification_data(ds, 0.2, 0)
    assert data.class_names == ["circle", "square", "triangle", "rectangle"]
    assert data.converted == 24 and len(data.train) + len(data.val) == 24
    by_image = group_annotations(ds)
    names = {img.file_name: img.id for img in ds.images}
    for rel, label in data.train + data.val:
        assert data.category_ids[label] == dominant_class(by_image[names[rel]])

    rec = Recorder()
    spec = make_spec(epochs=1, batch_size=8)
    cfg = TimmAdapter.resolve_config("easy", {}, {})
    result = TimmAdapter(make_ctx(shapes, tmp_path / "out", spec, cfg, rec)).train()
    assert result.epochs_completed == 1
    assert any("dominant class" in e["message"] for e in rec.of("on_log"))


@pytest.mark.slow
def test_resume_from_epoch_end_reproduces_the_uninterrupted_run(digits60: Path, tmp_path: Path) -> None:
    # advanced: EMA, mixup + cutmix (numpy RNG), random crops + flips (torch/python RNG), warm-up
    spec = make_spec(epochs=2, batch_size=16)
    cfg = TimmAdapter.resolve_config("advanced", {}, {})
    straight = Recorder()
    TimmAdapter(make_ctx(digits60, tmp_path / "a", spec, cfg, straight)).train()

    rec = Recorder()
    ctx = make_ctx(digits60, tmp_path / "b", spec, cfg, rec)
    rec.callbacks.add_callback("on_fit_epoch_end", lambda epoch, **_: ctx.stop_event.set())
    first = TimmAdapter(ctx).train()
    assert first.stopped and first.epochs_completed == 1
    resumed = Recorder()
    TimmAdapter(make_ctx(digits60, tmp_path / "b", spec, cfg, resumed, resume=tmp_path / "b" / "last.pt")).train()
    assert [e["epoch"] for e in resumed.of("on_fit_epoch_end")] == [2]
    assert resumed.of("on_fit_epoch_end")[0]["metrics"] == straight.of("on_fit_epoch_end")[1]["metrics"]
