"""tools.defaults: image size, batch size and epochs chosen from the data and the machine."""

from __future__ import annotations

from typing import Any

import pytest

from tools import defaults as d

CPU = d.DeviceInfo(kind="cpu", memory_mb=24 * 1024)
GPU = d.DeviceInfo(kind="cuda", memory_mb=80 * 1024)
DIGITS = d.DatasetStats(train_images=1438, typical_side=32, images=1797)
SHAPES = d.DatasetStats(train_images=96, typical_side=128, images=120)


def pick(**kw: Any) -> tuple[dict[str, int], d.Choices]:
    args: dict[str, Any] = {
        "framework": "timm",
        "model_name": "resnet18",
        "task_type": "image_classification",
        "default_size": 224,
        "params_m": 11.7,
        "framework_batch": 32,
        "stats": DIGITS,
        "device": CPU,
        "start": "scratch",
        "given": {},
        "preset_epochs": None,
    }
    args.update(kw)
    return d.choose(**args)


def test_small_images_train_at_their_own_size_with_reasons() -> None:
    values, why = pick()
    assert values == {"image_size": 32, "batch_size": 64, "epochs": 13}
    assert why.image_size and "about 32 px" in why.image_size.why and "224" in why.image_size.why
    assert why.batch_size and "CPU" in why.batch_size.why and "CPU" in why.batch_size.why_ko
    assert why.epochs and "1438 training images" in why.epochs.why and "23 steps" in why.epochs.why
    assert "처음부터" in why.epochs.why_ko


def test_pretrained_weights_get_at_least_64_px_and_fewer_epochs() -> None:
    values, why = pick(start="pretrained")
    assert values["image_size"] == 64 and why.image_size and "pretrained" in why.image_size.why
    assert values["epochs"] < pick()[0]["epochs"] and values["epochs"] >= d.EPOCH_BOUNDS["pretrained"][0]
    assert why.epochs and "pretrained" in why.epochs.why


def test_a_planned_download_is_counted_as_scratch_and_says_so() -> None:
    values, why = pick(start="download")
    assert values == pick()[0]
    assert why.epochs and "unless the download works" in why.epochs.why


def test_large_photos_are_shrunk_to_the_model_default() -> None:
    stats = d.DatasetStats(train_images=400, typical_side=3000)
    values, why = pick(
        framework="ultralytics",
        model_name="yolo11n",
        task_type="object_detection",
        default_size=640,
        params_m=2.6,
        framework_batch=16,
        stats=stats,
    )
    assert values["image_size"] == 640 and why.image_size and "shrunk" in why.image_size.why
    # 640 px on a CPU: 16 at the model's size is the framework's default
    assert values["batch_size"] == 16


def test_detection_sizes_are_multiples_of_32_and_at_least_64() -> None:
    values, _ = pick(
        framework="ultralytics", model_name="yolo11n", task_type="object_detection", default_size=640, stats=SHAPES
    )
    assert values["image_size"] == 128
    tiny = d.DatasetStats(train_images=50, typical_side=20)
    values, _ = pick(framework="ultralytics", model_name="yolo11n", task_type="object_detection", stats=tiny)
    assert values["image_size"] == 64
    odd = d.DatasetStats(train_images=50, typical_side=100)
    assert pick(stats=odd)[0]["image_size"] == 128


@pytest.mark.parametrize("model", ["vit_tiny_patch16_224", "google/vit-base-patch16-224", "deit_small_patch16_224"])
def test_fixed_input_models_keep_their_size_and_say_so(model: str) -> None:
    fw = "transformers" if "/" in model else "timm"
    values, why = pick(framework=fw, model_name=model)
    assert values["image_size"] == 224 and why.image_size and "needs 224 px" in why.image_size.why


def test_unknown_image_sizes_fall_back_to_the_model_default() -> None:
    values, why = pick(stats=d.DatasetStats(train_images=None, typical_side=None))
    assert values["image_size"] == 224 and why.image_size and "not known" in why.image_size.why
    assert values["epochs"] == d.EPOCH_BOUNDS["scratch"][0]


def test_batch_is_capped_by_memory_device_and_data() -> None:
    small_memory = d.DeviceInfo(kind="cuda", memory_mb=1024)
    values, why = pick(
        default_size=224, stats=d.DatasetStats(train_images=100_000, typical_side=512), device=small_memory
    )
    assert values["image_size"] == 224
    assert why.batch_size and "memory" in why.batch_size.why
    assert values["batch_size"] == 8  # 1 GiB * 0.4 / 40 MB per 224 px image = 10
    big, why = pick(stats=d.DatasetStats(train_images=100_000, typical_side=32), device=GPU)
    assert big["batch_size"] == d.GPU_BATCH_CAP and why.batch_size and "256" in why.batch_size.why
    few, why = pick(stats=d.DatasetStats(train_images=200, typical_side=32))
    assert few["batch_size"] == 16 and why.batch_size and "8 steps" in why.batch_size.why
    tiny, why = pick(stats=d.DatasetStats(train_images=10, typical_side=32))
    assert tiny["batch_size"] == 8 and why.batch_size and "batch-norm" in why.batch_size.why
    five, _ = pick(stats=d.DatasetStats(train_images=5, typical_side=32))
    assert five["batch_size"] == 5


def test_epochs_follow_the_steps_within_bounds() -> None:
    huge = pick(stats=d.DatasetStats(train_images=1_000_000, typical_side=32))[0]
    assert huge["epochs"] == d.EPOCH_BOUNDS["scratch"][0]
    tiny = pick(stats=d.DatasetStats(train_images=3, typical_side=32))[0]
    assert tiny["epochs"] == d.EPOCH_BOUNDS["scratch"][1]
    det = pick(task_type="object_detection", framework="ultralytics", model_name="yolo11n", stats=SHAPES)[0]
    assert det["epochs"] > pick(stats=SHAPES)[0]["epochs"]  # detection takes more steps than classification


def test_given_values_and_preset_epochs_are_never_replaced() -> None:
    values, why = pick(given={"image_size": 96, "batch_size": 3, "epochs": 7})
    assert values == {"image_size": 96, "batch_size": 3, "epochs": 7} and why.public() == {}
    values, why = pick(preset_epochs=30)
    assert values["epochs"] == 30 and why.epochs is None and why.image_size is not None
    # a given size feeds the batch rule
    values, _ = pick(given={"image_size": 224})
    assert values["batch_size"] == 32 and set(why.public()) == {"image_size", "batch_size"}


def ultra(config: dict[str, Any] | None = None, **kw: Any) -> tuple[dict[str, Any], dict[str, d.Choice]]:
    args: dict[str, Any] = {
        "train_images": 96,
        "batch": 8,
        "epochs": 75,
        "num_classes": 4,
        "user_keys": set(),
        "lr_given": False,
    }
    args.update(kw)
    return d.ultralytics_settings(config if config is not None else {"optimizer": "auto", "nbs": 64}, **args)


def test_small_ultralytics_runs_step_every_batch_with_the_optimizer_auto_would_pick() -> None:
    values, why = ultra()
    # Ultralytics' auto rule: AdamW, lr0 = 0.002 * 5 / (4 + nc) for <= 10,000 iterations
    assert values == {"nbs": 8, "optimizer": "AdamW", "warmup_bias_lr": 0.0, "learning_rate": 0.00125}
    assert "1.5 times an epoch" in why["nbs"].why and "96 training images" in why["nbs"].why
    assert (
        why["optimizer"].value == "AdamW"
        and "900 steps" in why["optimizer"].why
        and "4 classes" in why["optimizer"].why
    )


def test_ultralytics_settings_leave_what_the_person_chose_and_long_runs_alone() -> None:
    values, why = ultra(user_keys={"nbs", "optimizer"})
    assert values == {} and why == {}
    values, why = ultra(lr_given=True)
    assert set(values) == {"nbs"} and set(why) == {"nbs"}
    values, _ = ultra({"optimizer": "SGD", "nbs": 64})  # a preset that names its optimizer
    assert "optimizer" not in values
    big, why = ultra(train_images=20_000, batch=16, epochs=100)  # 313 * 100 > 10,000 iterations
    assert big == {} and why == {}
    enough, _ = ultra(train_images=600)  # 600 / 64 = 9.4 steps an epoch already
    assert "nbs" not in enough and enough["optimizer"] == "AdamW"
