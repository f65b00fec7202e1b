#!/usr/bin/env python3
"""Time of the two whole-dataset passes every upload and every job goes through, on COCO-sized data.

Run from the repository root:  .venv/bin/python bench/dataset_checks.py [--images N] [--repeat K]

- `validate_dataset` (the DICE v1 checks) on N images with 8 boxes and polygons each, beside the
  peer: `pycocotools.coco.COCO.createIndex` on the same annotations, the index every COCO tool
  builds before it can use a file (when pycocotools is installed).
- `stratified_split` (train/val, every class in both where it can be) on N images with a long-tail
  of 80 classes, beside the peer: scikit-learn's `train_test_split` with no stratification (it
  cannot stratify multi-label images), when scikit-learn is installed.

Prints the best of K runs, CPU seconds of this process and wall seconds. The unit tests only guard
against a quadratic blow-up; the figures live here and in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer_runtime.formats.schema import DiceDataset  # noqa: E402
from trainer_runtime.formats.split import stratified_split  # noqa: E402
from trainer_runtime.formats.validate import validate_dataset  # noqa: E402


def _dice(images: list[dict[str, Any]], annotations: list[dict[str, Any]], n_classes: int) -> dict[str, Any]:
    return {
        "format_version": "1.0",
        "dataset": {"name": "bench", "description": ""},
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)],
        "images": images,
        "annotations": annotations,
    }


def validation_data(n_img: int, per: int = 8) -> dict[str, Any]:
    images = [{"id": i, "file_name": f"train/{i:06d}.jpg", "width": 640, "height": 480} for i in range(n_img)]
    anns = []
    for i in range(n_img):
        for j in range(per):
            x = 10 + j * 30
            anns.append(
                {
                    "id": i * per + j,
                    "image_id": i,
                    "category_id": 1 + j % 2,
                    "bbox": [x, 20, 25, 40],
                    "segmentation": [[x, 20, x + 25, 20, x + 25, 60, x, 60]],
                    "area": 1000.0,
                    "iscrowd": 0,
                }
            )
    return _dice(images, anns, 2)


def split_data(n_img: int) -> dict[str, Any]:
    rng = random.Random(0)
    image_classes = [sorted({min(80, int(rng.paretovariate(1.0))) for _ in range(3)}) for _ in range(n_img)]
    images = [{"id": i + 1, "file_name": f"{i:06d}.jpg", "width": 64, "height": 64} for i in range(n_img)]
    anns: list[dict[str, Any]] = []
    for i, cs in enumerate(image_classes):
        for c in cs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c, "bbox": [1, 1, 10, 10]})
    return _dice(images, anns, 80)


def best_of(k: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the fastest of k runs."""
    runs = []
    for _ in range(k):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.process_time() - c0, time.perf_counter() - w0))
    return min(runs)


def _row(name: str, figures: tuple[float, float] | None, note: str = "") -> None:
    if figures is None:
        print(f"  {name:<44} {'-':>8} {'-':>8}  {note}")
    else:
        print(f"  {name:<44} {figures[0]:8.3f} {figures[1]:8.3f}  {note}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=118_000, help="images (default 118000, COCO train2017)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (default 3)")
    a = ap.parse_args()

    raw = validation_data(a.images)
    ds = DiceDataset.model_validate(raw)
    files = {str(im["file_name"]) for im in raw["images"]}
    print(f"validation: {a.images} images, {len(raw['annotations'])} annotations (boxes + polygons)")
    print(f"  {'':<44} {'cpu s':>8} {'wall s':>8}")
    _row("ours  validate_dataset", best_of(a.repeat, lambda: validate_dataset(ds, available_files=files)))
    try:
        from pycocotools.coco import COCO
    except ImportError:
        _row("peer  pycocotools COCO.createIndex", None, "(pycocotools not installed)")
    else:

        def coco_index() -> None:
            coco = COCO()
            coco.dataset = raw
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "creating index..."
                coco.createIndex()

        _row("peer  pycocotools COCO.createIndex", best_of(a.repeat, coco_index), "(indexes only, checks nothing)")

    raw = split_data(a.images)
    ds = DiceDataset.model_validate(raw)
    print(f"split: {a.images} images, 80 long-tail classes, {len(raw['annotations'])} annotations, 20% val")
    print(f"  {'':<44} {'cpu s':>8} {'wall s':>8}")
    _row("ours  stratified_split", best_of(a.repeat, lambda: stratified_split(ds, 0.2, seed=0)))
    try:
        from sklearn.model_selection import train_test_split
    except ImportError:
        _row("peer  sklearn train_test_split", None, "(scikit-learn not installed)")
    else:
        ids = [im["id"] for im in raw["images"]]
        figures = best_of(a.repeat, lambda: train_test_split(ids, test_size=0.2, random_state=0))
        _row("peer  sklearn train_test_split", figures, "(random, not stratified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
