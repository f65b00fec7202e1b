"""Session-scoped builders of the demo datasets (`tools.demo_datasets`) for trainer tests.

Import the fixtures into a test module (``from tests.trainer_runtime._demo_fixtures import
demo_shapes_dir  # noqa: F401``). Each is built once per test session into a temporary folder:

    demo_digits_dir   digits (image classification, 1797 images)
    demo_shapes_dir   shapes-demo (boxes, polygons, rotated boxes, 120 images)
    demo_poses_dir    poses-demo (keypoints, 100 images)

`dice_subset(src, dest, n)` makes a small DICE folder holding the first `n` images of `src` (their
annotations only; ``images/`` is a link to the source images), for tests that train for real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_datasets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-datasets")


def _build(name: str, root: Path) -> Path:
    from tools.demo_datasets import build_demo_dataset

    return build_demo_dataset(name, root)


@pytest.fixture(scope="session")
def demo_digits_dir(demo_datasets_root: Path) -> Path:
    return _build("digits", demo_datasets_root)


@pytest.fixture(scope="session")
def demo_shapes_dir(demo_datasets_root: Path) -> Path:
    return _build("shapes-demo", demo_datasets_root)


@pytest.fixture(scope="session")
def demo_poses_dir(demo_datasets_root: Path) -> Path:
    return _build("poses-demo", demo_datasets_root)


def dice_subset(src: Path, dest: Path, n: int, *, per_class: bool = False) -> Path:
    """A DICE folder at `dest` with `n` images of `src` and their annotations.

    The first `n` images, or with `per_class` (image-level labels) images taken round-robin over
    the categories so that every class is present. ``dest/images`` links to ``src/images``.
    """
    doc = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    images = doc["images"]
    if per_class:
        by_cat: dict[int, list[int]] = {}
        for ann in doc["annotations"]:
            by_cat.setdefault(ann["category_id"], []).append(ann["image_id"])
        order: list[int] = []
        queues = [list(v) for _, v in sorted(by_cat.items())]
        while len(order) < n and any(queues):
            for q in queues:
                if q and len(order) < n:
                    order.append(q.pop(0))
        wanted = set(order)
        keep = [img for img in images if img["id"] in wanted]
    else:
        keep = images[:n]
    ids = {img["id"] for img in keep}
    doc["images"] = keep
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    link = dest / "images"
    if not link.exists():
        os.symlink(os.path.abspath(src / "images"), link, target_is_directory=True)
    return dest
