"""UltralyticsAdapter: catalog, config resolution, spec checks, and real (tiny) CPU training of every
task on the demo datasets, stop, resume and checkpoints."""

from __future__ import annotations

import csv
import math
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime._demo_fixtures import (  # noqa: F401  (pytest fixtures)
    demo_datasets_root,
    demo_digits_dir,
    demo_poses_dir,
    demo_shapes_dir,
    dice_subset,
)
from trainer_runtime.adapters._ultralytics_config import CATALOG, PRIMARY_METRIC, model_for_task
from trainer_runtime.adapters.base import ConfigError, TrainContext, TrainResult
from trainer_runtime.adapters.ultralytics_adapter import UltralyticsAdapter, ultralytics_device
from trainer_runtime.errors import IncompatibleDatasetError
from trainer_runtime.formats.capabilities import summarize
from trainer_runtime.formats.validate import load_annotations
from trainer_runtime.spec import JobSpec

pytest.importorskip("ultralytics")

# ------------------------------------------------------------------------------- helpers


def make_spec(model: str, task: str, **hp: Any) -> JobSpec:
    hyper = {"epochs": 2, "batch_size": 8, "image_size": 64, **hp}
    return JobSpec(
        job_id=1, framework="ultralytics", model_name=model, task_type=task, dataset_id="demo", hyperparameters=hyper
    )


@dataclass
class Recorder:
    """Collects our callbacks; can set the stop event at a given (epoch, batch)."""

    stop_at: tuple[int, int] | None = None
    stop_event: threading.Event | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def hook(self, name: str) -> Any:
        def fn(**kw: Any) -> None:
            self.events.append((name, kw))
            if (
                name == "on_batch_end"
                and self.stop_at is not None
                and self.stop_event is not None
                and (kw["epoch"], kw["batch"]) >= self.stop_at
            ):
                self.stop_event.set()

        return fn

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.events if n == name]


def make_ctx(
    tmp: Path,
    src: Path,
    model: str,
    task: str,
    *,
    n_images: int = 24,
    advanced: dict[str, Any] | None = None,
    preset: str | None = None,
    resume_from: Path | None = None,
    stop_at: tuple[int, int] | None = None,
    **hp: Any,
) -> tuple[TrainContext, Recorder]:
    ds_dir = dice_subset(src, tmp / "dataset", n_images, per_class=task == "image_classification")
    spec = make_spec(model, task, **hp)
    hyper = spec.hyperparameters.model_dump(exclude={"preset", "advanced_config", "device", "val_fraction"})
    cfg = UltralyticsAdapter.resolve_config(preset, advanced or {}, hyper)
    ctx = TrainContext(
        spec=spec,
        dataset_dir=ds_dir,
        dataset=load_annotations(ds_dir / "annotations.json"),
        conversion=None,
        work_dir=tmp / "work",
        output_dir=tmp / "out",
        config=cfg,
        device="cpu",
        resume_from=resume_from,
    )
    rec = Recorder(stop_at=stop_at, stop_event=ctx.stop_event)
    for ev in ("on_train_start", "on_batch_end", "on_fit_epoch_end", "on_model_save", "on_log", "on_train_end"):
        ctx.callbacks.add_callback(ev, rec.hook(ev))
    return ctx, rec


def results_csv(ctx: TrainContext) -> list[dict[str, float]]:
    with open(Path(ctx.work_dir) / "run" / "results.csv", newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def assert_epochs(rec: Recorder, first: int, last: int, task: str) -> None:
    ends = rec.of("on_fit_epoch_end")
    assert [e["epoch"] for e in ends] == list(range(first, last + 1))
    for e in ends:
        m = e["metrics"]
        for key in (PRIMARY_METRIC[task], "train/loss"):
            assert key in m, (key, sorted(m))
        assert all(math.isfinite(v) for v in m.values()), m
    batches = rec.of("on_batch_end")
    assert {b["epoch"] for b in batches} == set(range(first, last + 1))
    assert all(b["batches"] >= b["batch"] >= 1 and b["loss"] is not None for b in batches)
    saves = rec.of("on_model_save")
    assert [s["epoch"] for s in saves] == list(range(first, last + 1))


def assert_checkpoints(result: TrainResult, ctx: TrainContext) -> None:
    from ultralytics import YOLO

    out = Path(ctx.output_dir)
    assert result.best_path == out / "best.pt" and result.best_path.is_file()
    assert result.last_path == out / "last.pt" and result.last_path.is_file()
    for p in (result.best_path, result.last_path):
        model = YOLO(str(p))
        assert (
            model.task
            == {
                "object_detection": "detect",
                "instance_segmentation": "segment",
                "pose_estimation": "pose",
                "oriented_object_detection": "obb",
                "image_classification": "classify",
            }[ctx.spec.task_type]
        )


def assert_metrics_match_csv(rec: Recorder, ctx: TrainContext) -> None:
    """Each epoch's reported metrics are that epoch's validation (Ultralytics' own results.csv row)."""
    rows = {int(r["epoch"]): r for r in results_csv(ctx)}
    ours_to_csv = {
        "val/mAP50-95": "metrics/mAP50-95(B)",
        "val/mask_mAP50-95": "metrics/mAP50-95(M)",
        "val/pose_mAP50-95": "metrics/mAP50-95(P)",
        "val/accuracy_top1": "metrics/accuracy_top1",
        "val/accuracy_top5": "metrics/accuracy_top5",
        "val/box_loss": "val/box_loss",
        "val/cls_loss": "val/cls_loss",
        "val/loss": "val/loss",
        "train/box_loss": "train/box_loss",
    }
    for e in rec.of("on_fit_epoch_end"):
        row = rows[e["epoch"]]
        for ours, theirs in ours_to_csv.items():
            if ours in e["metrics"] and theirs in row:
                assert e["metrics"][ours] == pytest.approx(row[theirs], rel=1e-3, abs=1e-5), (e["epoch"], ours)


# ----------------------------------------------------------------------- catalog / schema


def test_catalog_covers_both_families_and_all_tasks() -> None:
    names = {m.name for m in UltralyticsAdapter.models()}
    assert len(names) == 50
    for fam in ("yolov8", "yolo11"):
        for size in "nsmlx":
            for suffix in ("", "-seg", "-pose", "-obb", "-cls"):
                assert f"{fam}{size}{suffix}" in names
    assert CATALOG["yolo11n-seg"].task_type == "instance_segmentation"
    assert CATALOG["yolov8s"].task_type == "object_detection"
    assert CATALOG["yolo11m-cls"].default_image_size == 224
    assert all(m.framework == "ultralytics" and m.description and m.params_m for m in CATALOG.values())
    assert set(UltralyticsAdapter.tasks) == set(PRIMARY_METRIC)
    assert model_for_task("yolo11n-seg", "image_classification") == "yolo11n-cls"
    assert ultralytics_device("cuda:1") == "1" and ultralytics_device("cpu") == "cpu"


def test_schema_and_presets() -> None:
    schema = {f.name: f for f in UltralyticsAdapter.config_schema()}
    for key in ("optimizer", "lr0", "lrf", "cos_lr", "momentum", "weight_decay", "warmup_epochs", "patience"):
        assert key in schema and schema[key].help
    assert {"SGD", "Adam", "AdamW", "RMSProp", "auto"} <= set(schema["optimizer"].options or ())
    assert "label_smoothing" not in schema  # not an Ultralytics 8.4 setting
    presets = UltralyticsAdapter.presets()
    assert set(presets) == {"easy", "medium", "advanced"}
    assert presets["easy"]["mixup"] == 0.0 and presets["easy"]["mosaic"] == 1.0
    assert presets["medium"]["optimizer"] == "AdamW" and presets["medium"]["cos_lr"] is True
    assert presets["advanced"]["mixup"] == 0.2 and presets["advanced"]["copy_paste"] == 0.3
    for values in presets.values():
        assert set(values) <= set(schema)


# ------------------------------------------------------------------------- resolve_config


def test_resolve_config_maps_canonical_keys() -> None:
    cfg = UltralyticsAdapter.resolve_config(
        "easy",
        {
            "optimizer": "adamw",
            "scheduler": "cosine",
            "mixup": True,
            "mosaic": False,
            "copy_paste": 0.25,
            "weight_decay": 0.001,
            "momentum": 0.9,
            "warmup_epochs": 1,
            "patience": 5,
            "label_smoothing": 0.0,
            "hsv_h": 0.02,  # framework-native key
        },
        {"epochs": 3, "batch_size": 4, "image_size": 64, "learning_rate": 0.002, "seed": 7, "device": "cpu"},
    )
    assert cfg["optimizer"] == "AdamW" and cfg["cos_lr"] is True
    assert cfg["mixup"] == 0.1 and cfg["mosaic"] == 0.0 and cfg["copy_paste"] == 0.25
    assert cfg["weight_decay"] == 0.001 and cfg["momentum"] == 0.9 and cfg["warmup_epochs"] == 1.0
    assert cfg["patience"] == 5 and cfg["hsv_h"] == 0.02
    assert (cfg["epochs"], cfg["batch"], cfg["imgsz"], cfg["lr0"], cfg["seed"]) == (3, 4, 64, 0.002, 7)
    assert "label_smoothing" not in cfg and "device" not in cfg

    adv = UltralyticsAdapter.resolve_config("advanced", {"mixup": True, "scheduler": "linear"}, {})
    assert adv["mixup"] == 0.2 and adv["cos_lr"] is False
    for name, opt in (("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSProp"), ("AdamW", "AdamW")):
        assert UltralyticsAdapter.resolve_config(None, {"optimizer": name}, {})["optimizer"] == opt
    # an explicit learning rate must not be ignored by optimizer 'auto'
    assert UltralyticsAdapter.resolve_config(None, {}, {"learning_rate": 0.05})["optimizer"] == "SGD"
    assert (
        UltralyticsAdapter.resolve_config(None, {"optimizer": "auto"}, {"learning_rate": 0.05})["optimizer"] == "auto"
    )
    # the hyper-parameters win over advanced_config
    assert UltralyticsAdapter.resolve_config(None, {"lr0": 0.1}, {"learning_rate": 0.01})["lr0"] == 0.01


@pytest.mark.parametrize(
    ("advanced", "hyper", "preset", "needle"),
    [
        ({"mixpu": 0.1}, {}, None, "did you mean 'mixup'"),
        ({"scheduler": "step"}, {}, None, "cosine or linear"),
        ({"scheduler": "plateau"}, {}, None, "cosine or linear"),
        ({"optimizer": "adamx"}, {}, None, "optimizer"),
        ({"mosaic": 1.5}, {}, None, "between 0 and 1"),
        ({"patience": 2.5}, {}, None, "integer"),
        ({"label_smoothing": 0.1}, {}, None, "label_smoothing"),
        ({"cos_lr": "yes"}, {}, None, "true or false"),
        ({}, {"batchsize": 4}, None, "did you mean 'batch_size'"),
        ({}, {}, "hard", "preset"),
    ],
)
def test_resolve_config_errors(
    advanced: dict[str, Any], hyper: dict[str, Any], preset: str | None, needle: str
) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        UltralyticsAdapter.resolve_config(preset, advanced, hyper)
    assert needle in str(exc.value)


# --------------------------------------------------------------------------- validate_spec


def test_validate_spec_errors(demo_shapes_dir: Path, demo_digits_dir: Path) -> None:  # noqa: F811
    shapes = summarize(load_annotations(demo_shapes_dir / "annotations.json"))
    digits = summarize(load_annotations(demo_digits_dir / "annotations.json"))
    UltralyticsAdapter.validate_spec(make_spec("yolo11n-seg", "instance_segmentation"), shapes)
    UltralyticsAdapter.validate_spec(make_spec("YOLOv8n-OBB.pt", "oriented_object_detection"), shapes)
    with pytest.raises(ConfigError, match="did you mean 'yolo11n'"):
        UltralyticsAdapter.validate_spec(make_spec("yolov11n", "object_detection"), shapes)
    with pytest.raises(ConfigError, match="unknown Ultralytics model 'resnet50'"):
        UltralyticsAdapter.validate_spec(make_spec("resnet50", "image_classification"), digits)
    with pytest.raises(ConfigError) as exc:
        UltralyticsAdapter.validate_spec(make_spec("yolo11n-seg", "image_classification"), digits)
    assert "yolo11n-seg is an instance_segmentation model; it cannot train image_classification" in str(exc.value)
    assert "yolo11n-cls" in str(exc.value)
    with pytest.raises(ConfigError, match="larger than the 96 training images"):
        UltralyticsAdapter.validate_spec(make_spec("yolo11n", "object_detection", batch_size=97), shapes)
    UltralyticsAdapter.validate_spec(make_spec("yolo11n", "object_detection", batch_size=96), shapes)
    with pytest.raises(IncompatibleDatasetError):
        UltralyticsAdapter.validate_spec(make_spec("yolo11n", "object_detection"), digits)


# ------------------------------------------------------------------------ real training


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory, demo_shapes_dir: Path) -> Any:  # noqa: F811
    tmp = tmp_path_factory.mktemp("ul-detect")
    # no warm-up so the weights (and the validation metrics) really move between the two epochs
    ctx, rec = make_ctx(tmp, demo_shapes_dir, "yolo11n", "object_detection", advanced={"warmup_epochs": 0})
    result = UltralyticsAdapter(ctx).train()
    return ctx, rec, result


@pytest.mark.slow
def test_detect_trains_with_per_epoch_metrics(detect_run: Any) -> None:
    ctx, rec, result = detect_run
    assert rec.of("on_train_start") == [{"epochs": 2, "start_epoch": 1}]
    assert_epochs(rec, 1, 2, "object_detection")
    ends = rec.of("on_fit_epoch_end")
    for key in ("val/mAP50", "val/mAP50-95", "val/precision", "val/recall", "train/box_loss", "val/box_loss"):
        assert key in ends[0]["metrics"]
    # epoch 1 reports its own validation, not the zeros Ultralytics holds before the first validation
    assert ends[0]["metrics"]["val/box_loss"] > 0 and ends[0]["metrics"]["val/cls_loss"] > 0
    val = [{k: v for k, v in e["metrics"].items() if k.startswith("val/")} for e in ends]
    assert val[0] != val[1], val  # the second epoch reports its own validation too
    assert_metrics_match_csv(rec, ctx)
    assert not result.stopped and not result.early_stopped
    assert result.epochs_completed == 2 and result.best_epoch in (1, 2)
    assert result.best_metric_name == "val/mAP50-95" and result.best_metric is not None
    assert result.final_metrics == ends[-1]["metrics"]
    assert_checkpoints(result, ctx)
    assert rec.of("on_train_end") == [{"result": result}]


@pytest.mark.slow
def test_finished_run_last_pt_cannot_resume(detect_run: Any, tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    _, _, result = detect_run
    again, _ = make_ctx(tmp_path, demo_shapes_dir, "yolo11n", "object_detection", resume_from=result.last_path)
    with pytest.raises(ConfigError, match="finished run"):
        UltralyticsAdapter(again).train()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "task", "fixture", "keys"),
    [
        ("yolo11n-seg", "instance_segmentation", "demo_shapes_dir", ("val/mask_mAP50", "val/mask_mAP50-95")),
        ("yolov8n-obb", "oriented_object_detection", "demo_shapes_dir", ("val/mAP50", "val/mAP50-95")),
        ("yolo11n-pose", "pose_estimation", "demo_poses_dir", ("val/pose_mAP50", "val/pose_mAP50-95")),
    ],
)
def test_other_yolo_tasks_train(
    model: str, task: str, fixture: str, keys: tuple[str, ...], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    src: Path = request.getfixturevalue(fixture)
    ctx, rec = make_ctx(tmp_path, src, model, task)
    result = UltralyticsAdapter(ctx).train()
    assert_epochs(rec, 1, 2, task)
    for e in rec.of("on_fit_epoch_end"):
        assert set(keys) <= set(e["metrics"])
    assert_metrics_match_csv(rec, ctx)
    assert result.epochs_completed == 2 and not result.stopped
    assert result.best_metric_name == PRIMARY_METRIC[task]
    assert_checkpoints(result, ctx)


@pytest.mark.slow
def test_classify_trains_and_stops_early(tmp_path: Path, demo_digits_dir: Path) -> None:  # noqa: F811
    # A learning rate so small that nothing improves: patience 1 must stop after epoch 2 of 4.
    ctx, rec = make_ctx(
        tmp_path,
        demo_digits_dir,
        "yolo11n-cls",
        "image_classification",
        n_images=60,
        epochs=4,
        image_size=32,
        learning_rate=1e-12,
        advanced={"patience": 1, "warmup_epochs": 0, "optimizer": "sgd"},
    )
    result = UltralyticsAdapter(ctx).train()
    ends = rec.of("on_fit_epoch_end")
    first = ends[0]["metrics"]
    assert {"val/accuracy_top1", "val/accuracy_top5", "train/loss"} <= set(first)
    assert first["val/accuracy_top5"] > 0  # that epoch's validation, not the zeros before it
    assert_metrics_match_csv(rec, ctx)
    assert_epochs(rec, 1, result.epochs_completed, "image_classification")
    assert result.early_stopped and not result.stopped
    assert result.epochs_completed == 2
    assert result.best_epoch in (1, 2)
    assert result.best_metric == ends[result.best_epoch - 1]["metrics"]["val/accuracy_top1"]
    assert_checkpoints(result, ctx)


@pytest.mark.slow
def test_stop_then_resume_runs_every_epoch_once(tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    first_dir = tmp_path / "first"
    ctx, rec = make_ctx(first_dir, demo_shapes_dir, "yolo11n", "object_detection", epochs=3, stop_at=(1, 2))
    result = UltralyticsAdapter(ctx).train()
    assert result.stopped and not result.early_stopped
    # Ultralytics finishes the batch, validates and saves that epoch, and counts it as done
    assert [b["batch"] for b in rec.of("on_batch_end")] == [1, 2]
    assert_epochs(rec, 1, 1, "object_detection")
    assert result.epochs_completed == 1
    assert result.last_path is not None and result.best_path is not None

    from trainer_runtime.adapters.ultralytics_adapter import load_checkpoint_dict, resume_state

    ckpt = load_checkpoint_dict(result.last_path)
    assert ckpt["optimizer"] is not None and ckpt["epoch"] == 0
    assert resume_state(result.last_path) == (1, 3)

    # resume elsewhere, as a fresh container would: the first run's work dir is gone
    saved = tmp_path / "saved-last.pt"
    shutil.copyfile(result.last_path, saved)
    shutil.copyfile(result.best_path, tmp_path / "best.pt")
    shutil.rmtree(first_dir)
    ctx2, rec2 = make_ctx(
        tmp_path / "second", demo_shapes_dir, "yolo11n", "object_detection", epochs=3, resume_from=saved
    )
    result2 = UltralyticsAdapter(ctx2).train()
    assert rec2.of("on_train_start") == [{"epochs": 3, "start_epoch": 2}]
    assert_epochs(rec2, 2, 3, "object_detection")
    assert not result2.stopped and result2.epochs_completed == 3
    assert_checkpoints(result2, ctx2)
    assert_metrics_match_csv(rec2, ctx2)


@pytest.mark.slow
def test_exception_inside_training_propagates_with_checkpoints(tmp_path: Path, demo_shapes_dir: Path) -> None:  # noqa: F811
    ctx, rec = make_ctx(tmp_path, demo_shapes_dir, "yolo11n", "object_detection", epochs=2)

    def boom(epoch: int, batch: int, **_: Any) -> None:
        if epoch == 2:
            raise RuntimeError("disk on fire")

    ctx.callbacks.add_callback("on_batch_end", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        UltralyticsAdapter(ctx).train()
    out = Path(ctx.output_dir)
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    from trainer_runtime.adapters.ultralytics_adapter import resume_state

    assert resume_state(out / "last.pt") == (1, 2)  # epoch 1's checkpoint, still resumable
    assert [e["epoch"] for e in rec.of("on_fit_epoch_end")] == [1]


@pytest.mark.slow
def test_local_weights_are_used_for_transfer(
    detect_run: Any,
    tmp_path: Path,
    demo_shapes_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, first = detect_run
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copyfile(first.best_path, weights / "yolo11n.pt")
    monkeypatch.setenv("VTA_WEIGHTS_DIR", str(weights))
    ctx, rec = make_ctx(tmp_path / "job", demo_shapes_dir, "yolo11n", "object_detection", epochs=1)
    result = UltralyticsAdapter(ctx).train()
    assert any("local weights" in e["message"] for e in rec.of("on_log"))
    assert result.epochs_completed == 1
    assert_checkpoints(result, ctx)
