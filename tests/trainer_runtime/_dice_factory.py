"""Small builders of real dataset files for the formats tests (images made with Pillow)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from PIL import Image

from trainer_runtime.formats.schema import DiceDataset


def make_image(path: Path, size: tuple[int, int] = (64, 48), fmt: str | None = None, color: int = 90) -> Path:
    """Write a small real image (format from the suffix unless `fmt` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (color, 255 - color, (color * 7) % 256))
    # some structure so JPEG/PNG have a real payload to truncate
    for x in range(0, size[0], 4):
        for y in range(0, size[1], 3):
            im.putpixel((x, y), ((x * 5) % 256, (y * 9) % 256, 30))
    im.save(path, format=fmt)
    return path


BASE: dict[str, Any] = {
    "format_version": "1.0",
    "dataset": {"name": "unit", "description": ""},
    "categories": [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {
            "id": 3,
            "name": "person",
            "keypoints": ["nose", "left_eye", "right_eye"],
            "skeleton": [[1, 2], [1, 3]],
        },
    ],
    "images": [
        {"id": 1, "file_name": "train/a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "train/b.jpg", "width": 100, "height": 80},
        {"id": 3, "file_name": "val/c.jpg", "width": 50, "height": 40},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20]},
        {
            "id": 2,
            "image_id": 2,
            "category_id": 2,
            "bbox": [0, 0, 40, 40],
            "segmentation": [[0, 0, 40, 0, 40, 40, 0, 40]],
        },
        {
            "id": 3,
            "image_id": 3,
            "category_id": 3,
            "bbox": [5, 5, 20, 20],
            "keypoints": [10, 10, 2, 12, 8, 1, 0, 0, 0],
        },
        {"id": 4, "image_id": 1, "category_id": 2, "rotated_bbox": [50, 40, 20, 10, 30.0]},
        {"id": 5, "image_id": 2, "category_id": 1},
    ],
}


def dice_dict(**overrides: Any) -> dict[str, Any]:
    """A deep copy of a small valid DICE dict, with top-level keys replaced."""
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(overrides))
    return d


def dice(**overrides: Any) -> DiceDataset:
    return DiceDataset.model_validate(dice_dict(**overrides))


def write_dice_folder(root: Path, data: dict[str, Any] | None = None, *, images: bool = True) -> Path:
    """A DICE folder with annotations.json and (optionally) real image files of the declared sizes."""
    data = data if data is not None else dice_dict()
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(data), encoding="utf-8")
    if images:
        for img in data["images"]:
            make_image(root / "images" / img["file_name"], (img["width"], img["height"]))
    return root


def write_yolo(root: Path, yaml_text: str, labels: dict[str, str], size: tuple[int, int] = (100, 50)) -> Path:
    """A YOLO folder: data.yaml, and for each 'split/name' in `labels` an image under
    images/<split>/<name>.jpg and its label file labels/<split>/<name>.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml_text, encoding="utf-8")
    for key, text in labels.items():
        make_image(root / "images" / f"{key}.jpg", size)
        lp = root / "labels" / f"{key}.txt"
        lp.parent.mkdir(parents=True, exist_ok=True)
        lp.write_text(text, encoding="utf-8")
    return root
