"""Data of the torch-based adapters (timm, transformers): DICE -> image-level labels
(`build_classification_data`: the image-level label, or the dominant class of a detection /
segmentation image) with a stratified train/val split, `ImageListDataset` reading images straight
from the DICE folder, `seeded_loader` (shuffle order re-seeded per epoch), `simple_mixup`.

torch is imported inside the functions that use it. Contracts: docs/architecture.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer_runtime.adapters.base import (
    ConfigError,
)
from trainer_runtime.formats.capabilities import dominant_class
from trainer_runtime.formats.paths import safe_join
from trainer_runtime.formats.schema import Annotation, DiceDataset
from trainer_runtime.formats.split import SplitResult, stratified_split

if TYPE_CHECKING:
    import torch


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ClassificationData:
    class_names: list[str]
    category_ids: list[int]  # class index -> DICE category id
    train: list[tuple[str, int]]  # (file_name, class index)
    val: list[tuple[str, int]]
    split: SplitResult
    converted: int = 0  # images labeled by their dominant class
    val_is_train: bool = False  # no image could be held out: validation runs on the training set


def group_annotations(ds: DiceDataset) -> dict[int, list[Annotation]]:
    by_image: dict[int, list[Annotation]] = {}
    for ann in ds.annotations:
        by_image.setdefault(ann.image_id, []).append(ann)
    return by_image


def build_classification_data(ds: DiceDataset, val_fraction: float, seed: int) -> ClassificationData:
    """Image-level labels (or each image's dominant class) and a stratified split on them."""
    cats = sorted(ds.categories, key=lambda c: c.id)
    if not cats:
        raise ConfigError("the dataset has no categories to classify")
    index = {c.id: i for i, c in enumerate(cats)}
    by_image = group_annotations(ds)
    labels: dict[int, int] = {}
    converted = 0
    for img in ds.images:
        anns = by_image.get(img.id)
        if not anns:
            continue  # unlabeled: not used for supervised training
        cid = dominant_class(anns)
        if cid not in index:
            continue
        if any(a.bbox or a.segmentation or a.keypoints or a.rotated_bbox for a in anns):
            converted += 1
        labels[img.id] = cid
    if not labels:
        raise ConfigError("the dataset has no labeled images to train on")
    images = [img for img in ds.images if img.id in labels]
    derived = DiceDataset(
        format_version=ds.format_version,
        categories=list(cats),
        images=images,
        annotations=[Annotation(id=i + 1, image_id=img.id, category_id=labels[img.id]) for i, img in enumerate(images)],
    )
    split = stratified_split(derived, val_fraction=val_fraction, seed=seed)
    names = {img.id: img.file_name for img in images}
    train = [(names[i], index[labels[i]]) for i in split.train if i in labels]
    val = [(names[i], index[labels[i]]) for i in split.val if i in labels]
    val_is_train = False
    if not val:
        val, val_is_train = list(train), True
    return ClassificationData(
        class_names=[c.name for c in cats],
        category_ids=[c.id for c in cats],
        train=train,
        val=val,
        split=split,
        converted=converted,
        val_is_train=val_is_train,
    )


def open_rgb(root: Path, rel: str) -> Any:
    from PIL import Image

    path = safe_join(root / "images", rel)
    with Image.open(path) as im:
        return im.convert("RGB")


class ImageListDataset:
    """Map-style dataset over ``(file_name, label)`` pairs of a DICE folder (no copy, no conversion).

    A plain sequence object: `torch.utils.data.DataLoader` needs only ``__len__``/``__getitem__``.
    """

    def __init__(self, root: Path, items: Sequence[tuple[str, int]], transform: Callable[[Any], Any]) -> None:
        self.root = Path(root)
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        rel, label = self.items[i]
        return self.transform(open_rgb(self.root, rel)), label


def seeded_loader(
    dataset: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> Any:
    """A DataLoader whose shuffle order is re-seeded per epoch by `EpochLoop` (resume-proof)."""
    import torch
    from torch.utils.data import DataLoader

    gen = torch.Generator()
    gen.manual_seed(seed)

    def init_worker(_worker_id: int) -> None:  # pragma: no cover - runs in worker processes
        s = torch.initial_seed() % (2**32)
        np.random.seed(s)
        random.seed(s)

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=gen,
        worker_init_fn=init_worker if workers else None,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )


def simple_mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, mixup_alpha: float, cutmix_alpha: float, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mixup or cutmix (one picked at random when both are on) with soft targets."""
    import torch
    import torch.nn.functional as F

    off = smoothing / num_classes
    y1 = F.one_hot(y, num_classes).float() * (1.0 - smoothing) + off
    y2 = y1.flip(0)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or np.random.rand() < 0.5)
    if use_cutmix:
        lam = float(np.random.beta(cutmix_alpha, cutmix_alpha))
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(np.random.randint(h)), int(np.random.randint(w))
        y0, y1_, x0, x1 = (
            max(cy - ch // 2, 0),
            min(cy + ch // 2, h),
            max(cx - cw // 2, 0),
            min(cx + cw // 2, w),
        )
        x = x.clone()
        x[..., y0:y1_, x0:x1] = x.flip(0)[..., y0:y1_, x0:x1]
        lam = 1.0 - (y1_ - y0) * (x1 - x0) / float(h * w)
    else:
        lam = float(np.random.beta(mixup_alpha, mixup_alpha))
        x = x * lam + x.flip(0) * (1.0 - lam)
    return x, torch.as_tensor(y1 * lam + y2 * (1.0 - lam))
