"""Settings that fit the data: image size, batch size and epochs when a request leaves them out.

    choose(model, stats, device, *, start, preset, given) -> Choices

`tools.jobs` calls this while it plans a job; the confirmation shows each chosen value with its
reason (`Choice.why` / `why_ko`), and the preview job carries them as ``defaults``. A value the
person gave (or the preset's epochs, when they named a preset) is never replaced.

Inputs:

* `stats` (`DatasetStats`): how many images the job trains on and their typical size (the median
  of each image's longer side, from the dataset's image table);
* `device` (`DeviceInfo`): where the trainer runs (cpu / cuda) and the memory it can use;
* `start`: "pretrained" (weights that are here for sure: the registry, the user's own file, an
  earlier job), "download" (weights the trainer will try to fetch; chosen like scratch, because
  offline the fetch fails and the job trains from scratch), or "scratch".

Rules (each reason names the figures it used):

* **image size**: a model with a fixed input (ViT-style) keeps its size ("needs 224 px"); else the
  typical image side rounded up to a multiple of 32, at least 32 (64 for detection-style tasks:
  the detector's coarsest grid is 1/32 of the input), at most the model's default (bigger images
  are shrunk: "photos of 3000 px are trained at 640"). Weights pretrained at a bigger size get at
  least 64 px (their last feature map would be 1x1 below that).
* **batch size**: the framework's default at the model's default size, scaled by the pixel ratio
  for smaller images (power of two), then capped by memory (an activation-memory estimate per image
  against a fraction of the device's memory), by the device (64 on a CPU: bigger batches are not
  faster there and give fewer optimiser steps), and by the data (at least 8 steps per epoch, but
  not below 8 images a batch unless the dataset is smaller).
* **epochs**: enough epochs for a number of optimiser steps (more from scratch, more for
  detection-style tasks), within bounds (from scratch 10-100, pretrained 5-50).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

Start = Literal["pretrained", "download", "scratch"]

# steps the optimiser should take, (scratch or download, pretrained), per kind of task
TARGET_STEPS: dict[str, tuple[int, int]] = {"classification": (280, 120), "detection": (900, 300)}
EPOCH_BOUNDS: dict[str, tuple[int, int]] = {"scratch": (10, 100), "pretrained": (5, 50)}
CPU_BATCH_CAP = 64
GPU_BATCH_CAP = 256
MIN_STEPS_PER_EPOCH = 8
NOMINAL_BATCH = 64  # Ultralytics' `nbs` default: gradients add up to this many images a step
AUTO_SHORT_RUN = 10_000  # Ultralytics' optimizer='auto' picks AdamW up to this many iterations
MIN_BATCH = 8  # smaller batches make batch-norm statistics noisy; only a smaller dataset goes below
MEMORY_FRACTION = 0.4  # of the device's memory, for a batch's activations
# training memory of one image at 224 px for a ~12 M-parameter model (activations and their
# gradients, fp32); scaled by the pixel ratio and the square root of the parameter ratio
MB_PER_IMAGE_224 = 40.0
FIXED_INPUT = re.compile(r"(^|[^a-z])(vit|deit|swin|beit|eva|cait|xcit|levit|pvt|mvit)", re.I)


class Choice(BaseModel):
    """One chosen value and why, in English and Korean."""

    value: int | str
    why: str
    why_ko: str

    def text(self, lang: str | None) -> str:
        return self.why_ko if lang == "ko" else self.why


class Choices(BaseModel):
    """The values chosen for the settings the request left out (None: the person gave it)."""

    image_size: Choice | None = None
    batch_size: Choice | None = None
    epochs: Choice | None = None
    extra: dict[str, Choice] = {}  # framework settings (Ultralytics: nbs, optimizer)

    def public(self) -> dict[str, Any]:
        fixed = (("image_size", self.image_size), ("batch_size", self.batch_size), ("epochs", self.epochs))
        out = {k: v.model_dump() for k, v in fixed if v is not None}
        return out | {k: v.model_dump() for k, v in self.extra.items()}


@dataclass(frozen=True)
class DatasetStats:
    """What the rules read of a dataset: images the job trains on, typical image side (px)."""

    train_images: int | None
    typical_side: int | None
    images: int = 0


@dataclass(frozen=True)
class DeviceInfo:
    """Where the trainer runs: kind (cpu | cuda | mps) and the memory it may use, in MiB."""

    kind: str
    memory_mb: float


def task_kind(task_type: str) -> str:
    """The kind of task the rule tables are keyed by: "classification" for image classification,
    "detection" for every other task type."""
    return "classification" if task_type == "image_classification" else "detection"


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _pow2_floor(value: float) -> int:
    return 1 if value < 2 else 2 ** math.floor(math.log2(value))


def fixed_input(framework: str, model_name: str) -> bool:
    """True for models whose input size is part of the architecture (position embeddings)."""
    return framework in ("timm", "transformers") and bool(FIXED_INPUT.search(model_name))


def choose_image_size(
    framework: str, model_name: str, task_type: str, default_size: int, stats: DatasetStats, start: Start
) -> Choice:
    """The training image size: the model's fixed input, else the dataset's typical side rounded up to 32 px,
    never above the model's default (at least 64 px for pretrained weights), with the reason in both languages."""
    if fixed_input(framework, model_name):
        return Choice(
            value=default_size,
            why=f"{model_name} needs {default_size} px input",
            why_ko=f"{model_name} 모델은 {default_size} px 입력이 필요합니다",
        )
    side = stats.typical_side
    if not side:
        return Choice(
            value=default_size,
            why=f"the model's default ({default_size} px): the dataset's image sizes are not known",
            why_ko=f"모델 기본값 ({default_size} px): 데이터셋 이미지 크기를 알 수 없습니다",
        )
    floor = 32 if task_kind(task_type) == "classification" else 64
    size = min(max(_round_up(side, 32), floor), default_size)
    if start == "pretrained" and size < 64 <= default_size:
        return Choice(
            value=64,
            why=f"images are about {side} px; pretrained weights need at least 64 px, so they are upscaled",
            why_ko=f"이미지가 약 {side} px이지만 사전학습 가중치는 64 px 이상이 필요해 키웁니다",
        )
    if size < _round_up(side, 32):
        return Choice(
            value=size,
            why=f"images are about {side} px; shrunk to the model's {default_size} px",
            why_ko=f"이미지가 약 {side} px이라 모델 기본 크기 {default_size} px로 줄입니다",
        )
    return Choice(
        value=size,
        why=f"images are about {side} px (not upscaled to the model's {default_size} px)",
        why_ko=f"이미지가 약 {side} px입니다 (모델 기본 {default_size} px로 키우지 않음)",
    )


def _per_image_mb(image_size: int, params_m: float | None) -> float:
    scale = math.sqrt(max(1.0, (params_m or 12.0) / 12.0))
    return MB_PER_IMAGE_224 * scale * (image_size / 224) ** 2


def choose_batch_size(
    framework_default: int,
    default_size: int,
    image_size: int,
    params_m: float | None,
    stats: DatasetStats,
    device: DeviceInfo,
) -> Choice:
    """The batch size: the smallest of the framework default scaled to `image_size`, what fits in the device's
    memory, the CPU/GPU cap and a bound from the training set size, with the reason for the one chosen."""
    scaled = _pow2_floor(framework_default * max(1.0, (default_size / image_size) ** 2))
    limits: list[tuple[int, str, str]] = [
        (
            scaled,
            f"{framework_default} at {default_size} px, scaled for {image_size} px",
            f"{default_size} px 기준 {framework_default}를 {image_size} px에 맞춤",
        )
    ]
    mem = _pow2_floor(device.memory_mb * MEMORY_FRACTION / _per_image_mb(image_size, params_m))
    limits.append(
        (
            mem,
            f"what fits in {device.memory_mb / 1024:.0f} GiB of {device.kind} memory",
            f"{device.kind} 메모리 {device.memory_mb / 1024:.0f} GiB에 들어가는 만큼",
        )
    )
    if device.kind == "cpu":
        limits.append(
            (
                CPU_BATCH_CAP,
                f"at most {CPU_BATCH_CAP} on a CPU (bigger batches are not faster there)",
                f"CPU에서는 최대 {CPU_BATCH_CAP} (더 키워도 빨라지지 않음)",
            )
        )
    else:
        limits.append((GPU_BATCH_CAP, f"at most {GPU_BATCH_CAP}", f"최대 {GPU_BATCH_CAP}"))
    if stats.train_images:
        n = stats.train_images
        by_steps = _pow2_floor(max(1, n // MIN_STEPS_PER_EPOCH))
        if by_steps >= MIN_BATCH:
            limits.append(
                (
                    by_steps,
                    f"{n} training images give at least {MIN_STEPS_PER_EPOCH} steps an epoch",
                    f"학습 이미지 {n}장으로 에폭당 {MIN_STEPS_PER_EPOCH}스텝 이상",
                )
            )
        else:
            cap = min(MIN_BATCH, n)
            limits.append(
                (
                    cap,
                    f"only {n} training images: batches of {cap} keep batch-norm statistics usable",
                    f"학습 이미지가 {n}장뿐이라 배치 {cap} (배치 정규화가 안정적인 최소 크기)",
                )
            )
    value, why, why_ko = min(limits, key=lambda t: t[0])
    return Choice(value=max(1, value), why=why, why_ko=why_ko)


def choose_epochs(task_type: str, batch_size: int, stats: DatasetStats, start: Start) -> Choice:
    """The number of epochs that gives about the target number of steps for the task and start (pretrained or
    from scratch), clamped to that start's bounds, with the reason."""
    kind = task_kind(task_type)
    scratch_steps, pretrained_steps = TARGET_STEPS[kind]
    warm = start == "pretrained"
    steps = pretrained_steps if warm else scratch_steps
    lo, hi = EPOCH_BOUNDS["pretrained" if warm else "scratch"]
    how = (
        "pretrained" if warm else ("from scratch unless the download works" if start == "download" else "from scratch")
    )
    how_ko = "사전학습 가중치로" if warm else ("다운로드가 안 되면 처음부터" if start == "download" else "처음부터")
    if not stats.train_images:
        value = lo
        return Choice(
            value=value,
            why=f"{value} ({how}; the dataset size is not known)",
            why_ko=f"{value} ({how_ko}; 데이터셋 크기를 알 수 없음)",
        )
    per_epoch = max(1, math.ceil(stats.train_images / batch_size))
    value = min(hi, max(lo, math.ceil(steps / per_epoch)))
    return Choice(
        value=value,
        why=f"{stats.train_images} training images, {per_epoch} steps an epoch; about {steps} steps {how}",
        why_ko=f"학습 이미지 {stats.train_images}장, 에폭당 {per_epoch}스텝; {how_ko} 약 {steps}스텝",
    )


def choose(
    *,
    framework: str,
    model_name: str,
    task_type: str,
    default_size: int,
    params_m: float | None,
    framework_batch: int,
    stats: DatasetStats,
    device: DeviceInfo,
    start: Start,
    given: dict[str, Any],
    preset_epochs: int | None,
) -> tuple[dict[str, int], Choices]:
    """The values for image_size, batch_size and epochs (given ones kept) and the reasons for the
    ones chosen here. `preset_epochs`: the named preset's epochs (kept, like a given value)."""
    choices = Choices()
    size = given.get("image_size")
    if size is None:
        choices.image_size = choose_image_size(framework, model_name, task_type, default_size, stats, start)
        size = choices.image_size.value
    batch = given.get("batch_size")
    if batch is None:
        choices.batch_size = choose_batch_size(framework_batch, default_size, int(size), params_m, stats, device)
        batch = choices.batch_size.value
    epochs = given.get("epochs") or preset_epochs
    if epochs is None:
        choices.epochs = choose_epochs(task_type, int(batch), stats, start)
        epochs = choices.epochs.value
    return {"image_size": int(size), "batch_size": int(batch), "epochs": int(epochs)}, choices


def ultralytics_settings(
    config: dict[str, Any],
    *,
    train_images: int | None,
    batch: int,
    epochs: int,
    num_classes: int,
    user_keys: set[str],
    lr_given: bool,
) -> tuple[dict[str, Any], dict[str, Choice]]:
    """Ultralytics settings for small datasets, as advanced_config values (and ``learning_rate``)
    with their reasons; `config` is the preset + the person's advanced_config resolved.

    * ``nbs`` (nominal batch): Ultralytics adds up the gradients of batches until 64 images before
      it steps, so 96 training images make 1.5 optimiser steps an epoch; below 8 steps an epoch of
      64 images the nominal batch becomes the batch (one step per batch).
    * ``optimizer`` 'auto' (the easy preset and no preset) is resolved here as Ultralytics does
      (engine/trainer.py ``build_optimizer``): for a run of at most 10,000 iterations AdamW with
      lr0 = 0.002 * 5 / (4 + classes) and no bias warm-up, so the learning rate shown is the one used;
      a longer run keeps 'auto'.
    Settings the person gave (keys in `user_keys`, or a learning rate) are left alone."""
    values: dict[str, Any] = {}
    why: dict[str, Choice] = {}
    nbs = int(config.get("nbs") or NOMINAL_BATCH)
    if "nbs" not in user_keys and train_images and batch < nbs and train_images < nbs * MIN_STEPS_PER_EPOCH:
        steps = train_images / nbs
        values["nbs"] = nbs = batch
        why["nbs"] = Choice(
            value=batch,
            why=(
                f"one optimiser step per batch: with {train_images} training images the usual nominal "
                f"batch of {NOMINAL_BATCH} would step only {steps:.1f} times an epoch"
            ),
            why_ko=(
                f"배치마다 한 번씩 갱신: 학습 이미지 {train_images}장이면 기본 명목 배치 {NOMINAL_BATCH}로는 "
                f"에폭당 {steps:.1f}번만 갱신합니다"
            ),
        )
    auto = str(config.get("optimizer", "auto")).lower() == "auto"
    if auto and not lr_given and "optimizer" not in user_keys and train_images:
        iterations = math.ceil(train_images / max(batch, nbs)) * epochs
        if iterations <= AUTO_SHORT_RUN:
            nc = num_classes or 10
            lr = round(0.002 * 5 / (4 + nc), 6)
            values |= {"optimizer": "AdamW", "warmup_bias_lr": 0.0, "learning_rate": lr}
            why["optimizer"] = Choice(
                value="AdamW",
                why=f"AdamW at {lr:g}: Ultralytics' choice for a short run ({iterations} steps, {nc} classes)",
                why_ko=f"AdamW {lr:g}: 짧은 학습({iterations}스텝, 클래스 {nc}개)에 Ultralytics가 고르는 설정",
            )
    return values, why
