"""DETR training data (the transformers adapter): DICE boxes -> `DetectionItem`s split into train/val,
and `DetrDataset` serving ``(pixel_values, {class_labels, boxes cxcywh normalised}, index)``.

Images are resized to ``image_size`` x ``image_size`` (boxes are normalised ``cxcywh``, so they
survive the resize), ImageNet normalisation; boxes come from DICE ``bbox`` or the box around a
polygon / rotated box / keypoints (contract 3 conversions in docs/architecture.md). torch is
imported inside the functions that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer_runtime.adapters._torch_data import IMAGENET_MEAN, IMAGENET_STD, group_annotations, open_rgb
from trainer_runtime.adapters.base import ConfigError, TrainContext


class DetectionItem:
    __slots__ = ("boxes", "file_name", "height", "labels", "width")

    def __init__(self, file_name: str, width: int, height: int, boxes: list[list[float]], labels: list[int]) -> None:
        self.file_name = file_name
        self.width = width
        self.height = height
        self.boxes = boxes  # xyxy, pixels of the original image
        self.labels = labels  # class indices


def build_detection_items(ctx: TrainContext) -> tuple[list[str], list[DetectionItem], list[DetectionItem], str]:
    from trainer_runtime.formats.split import stratified_split
    from trainer_runtime.formats.yolo_rows import annotation_box

    ds = ctx.dataset
    cats = sorted(ds.categories, key=lambda c: c.id)
    if not cats:
        raise ConfigError("the dataset has no categories to detect")
    index = {c.id: i for i, c in enumerate(cats)}
    by_image = group_annotations(ds)
    items: dict[int, DetectionItem] = {}
    n_boxes = 0
    for img in ds.images:
        boxes: list[list[float]] = []
        labels: list[int] = []
        for ann in by_image.get(img.id, []):
            if ann.category_id not in index:
                continue
            b = annotation_box(ann)
            if b is None:
                continue
            x0 = min(max(float(b[0]), 0.0), img.width)
            y0 = min(max(float(b[1]), 0.0), img.height)
            x1 = min(max(float(b[0]) + float(b[2]), 0.0), img.width)
            y1 = min(max(float(b[1]) + float(b[3]), 0.0), img.height)
            if x1 - x0 < 1e-3 or y1 - y0 < 1e-3:
                continue
            boxes.append([x0, y0, x1, y1])
            labels.append(index[ann.category_id])
        items[img.id] = DetectionItem(img.file_name, img.width, img.height, boxes, labels)
        n_boxes += len(boxes)
    if n_boxes == 0:
        raise ConfigError("the dataset has no boxes (or polygons / rotated boxes / keypoints) to detect")
    split = stratified_split(ds, val_fraction=ctx.spec.hyperparameters.val_fraction, seed=ctx.spec.hyperparameters.seed)
    train = [items[i] for i in split.train if i in items]
    val = [items[i] for i in split.val if i in items]
    msg = split.report.get("message", "split done")
    if not val:
        val = list(train)
        msg += "; no image could be held out: validating on the training images"
    return [c.name for c in cats], train, val, msg


class DetrDataset:
    """(pixel_values [3,S,S], target {class_labels, boxes cxcywh normalised}, index)."""

    def __init__(self, root: Path, items: list[DetectionItem], size: int, hflip: float, train: bool) -> None:
        self.root = Path(root)
        self.items = items
        self.size = size
        self.hflip = hflip if train else 0.0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any], int]:
        import torch
        from torchvision.transforms import functional as F

        it = self.items[i]
        im = open_rgb(self.root, it.file_name)
        w, h = im.size
        im = im.resize((self.size, self.size))
        x = F.normalize(F.to_tensor(im), IMAGENET_MEAN, IMAGENET_STD)
        b = torch.tensor(it.boxes, dtype=torch.float32).reshape(-1, 4)
        # boxes are in the annotation's pixel space (width/height of the record)
        sx, sy = float(it.width or w), float(it.height or h)
        cxcywh = torch.stack(
            [
                (b[:, 0] + b[:, 2]) / 2 / sx,
                (b[:, 1] + b[:, 3]) / 2 / sy,
                (b[:, 2] - b[:, 0]) / sx,
                (b[:, 3] - b[:, 1]) / sy,
            ],
            dim=1,
        ).clamp(0.0, 1.0)
        if self.hflip > 0 and float(torch.rand(())) < self.hflip:
            x = x.flip(-1)
            cxcywh[:, 0] = 1.0 - cxcywh[:, 0]
        target = {"class_labels": torch.tensor(it.labels, dtype=torch.long), "boxes": cxcywh}
        return x, target, i


def detr_collate(batch: list[tuple[Any, dict[str, Any], int]]) -> tuple[Any, list[dict[str, Any]], list[int]]:
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]
