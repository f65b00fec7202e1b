"""tools.demo_datasets: deterministic DICE v1 demo datasets (digits, shapes-demo, poses-demo)."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tools.demo_datasets import (
    DEMO_DATASETS,
    POSE_FLIP_IDX,
    POSE_KEYPOINTS,
    SHAPE_CATEGORIES,
    VERSION_FILE,
    build_all,
    build_demo_dataset,
    main,
    rotated_box_corners,
)

TOL = 1e-6


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("demo-a"))


def _load(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "annotations.json").read_text())
    return data


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _polygon_area(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def test_names_and_layout(built: dict[str, Path]) -> None:
    assert set(built) == set(DEMO_DATASETS) == {"digits", "shapes-demo", "poses-demo"}
    for name, folder in built.items():
        assert folder.name == name
        assert (folder / "annotations.json").is_file() and (folder / "images").is_dir()
        assert (folder / VERSION_FILE).is_file()
        doc = _load(folder)
        assert doc["format_version"] == "1.0"
        assert doc["dataset"]["name"] == name
        assert DEMO_DATASETS[name] and "\n" not in DEMO_DATASETS[name]
        # nothing but the dataset in the parent (no leftover build folders)
    assert sorted(p.name for p in next(iter(built.values())).parent.iterdir()) == sorted(DEMO_DATASETS)


@pytest.mark.slow
def test_deterministic_bytes(built: dict[str, Path], tmp_path: Path) -> None:
    again = build_all(tmp_path / "demo-b")
    for name in DEMO_DATASETS:
        a, b = _tree(built[name]), _tree(again[name])
        assert a.keys() == b.keys()
        assert a == b, f"{name} differs between two builds"


def test_files_match_declared_size_and_hash(built: dict[str, Path]) -> None:
    for folder in built.values():
        doc = _load(folder)
        on_disk = {p.relative_to(folder / "images").as_posix() for p in (folder / "images").rglob("*") if p.is_file()}
        assert on_disk == {img["file_name"] for img in doc["images"]}
        ids = [img["id"] for img in doc["images"]]
        assert len(set(ids)) == len(ids)
        for img in doc["images"]:
            path = folder / "images" / img["file_name"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == img["sha256"]
            with Image.open(path) as im:
                assert im.format == "PNG"
                assert im.size == (img["width"], img["height"])


def test_validates_with_dice_validator(built: dict[str, Path]) -> None:
    validate = pytest.importorskip("trainer_runtime.formats.validate")
    for folder in built.values():
        ds = validate.load_annotations(folder / "annotations.json")
        files = {p.relative_to(folder / "images").as_posix() for p in (folder / "images").rglob("*") if p.is_file()}
        sizes = {img.file_name: (img.width, img.height) for img in ds.images}
        report = validate.validate_dataset(ds, available_files=files, image_sizes=sizes)
        assert report.ok, [str(e) for e in report.errors]
        assert not report.warnings, report.warnings


def test_digits(built: dict[str, Path]) -> None:
    doc = _load(built["digits"])
    assert [c["name"] for c in doc["categories"]] == [str(d) for d in range(10)]
    cat_name = {c["id"]: c["name"] for c in doc["categories"]}
    assert len(doc["images"]) == 1797 and len(doc["annotations"]) == 1797
    by_image = {img["id"]: img for img in doc["images"]}
    for ann in doc["annotations"]:
        assert set(ann) == {"id", "image_id", "category_id"}  # image-level label only
        img = by_image[ann["image_id"]]
        assert img["file_name"].split("/")[0] == cat_name[ann["category_id"]]
        assert (img["width"], img["height"]) == (32, 32)
    counts = Counter(a["category_id"] for a in doc["annotations"])
    assert len(counts) == 10 and min(counts.values()) >= 170
    # dark digits on a light background, really using the sklearn data
    from sklearn.datasets import load_digits

    first = np.asarray(Image.open(built["digits"] / "images" / doc["images"][0]["file_name"]).convert("L"))
    expected = 255 - np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)
    assert np.array_equal(first[::4, ::4], expected)
    assert first.mean() > 127


def _inside(x: float, y: float, w: int, h: int) -> bool:
    return -TOL <= x <= w + TOL and -TOL <= y <= h + TOL


def test_shapes(built: dict[str, Path]) -> None:
    doc = _load(built["shapes-demo"])
    assert [c["name"] for c in doc["categories"]] == list(SHAPE_CATEGORIES)
    assert 100 <= len(doc["images"]) <= 150
    sizes = {img["id"]: (img["width"], img["height"]) for img in doc["images"]}
    per_image = Counter(a["image_id"] for a in doc["annotations"])
    assert set(per_image) == set(sizes)
    assert min(per_image.values()) >= 1 and max(per_image.values()) <= 4
    images_with = {c["id"]: set() for c in doc["categories"]}  # type: dict[int, set[int]]
    for ann in doc["annotations"]:
        images_with[ann["category_id"]].add(ann["image_id"])
        W, H = sizes[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and _inside(x, y, W, H) and _inside(x + w, y + h, W, H)
        (poly,) = ann["segmentation"]
        xs, ys = poly[0::2], poly[1::2]
        assert all(_inside(px, py, W, H) for px, py in zip(xs, ys, strict=True))
        assert math.isclose(min(xs), x, abs_tol=0.02) and math.isclose(max(xs), x + w, abs_tol=0.02)
        assert math.isclose(min(ys), y, abs_tol=0.02) and math.isclose(max(ys), y + h, abs_tol=0.02)
        assert math.isclose(ann["area"], _polygon_area(xs, ys), rel_tol=1e-3, abs_tol=0.05)
        cx, cy, rw, rh, angle = ann["rotated_bbox"]
        assert rw > 0 and rh > 0 and -90 <= angle < 90
        corners = rotated_box_corners(cx, cy, rw, rh, angle)
        assert all(_inside(px, py, W, H) for px, py in corners.tolist())
        # the rotated box encloses the polygon: polygon points in the box's frame lie within ±w/2, ±h/2
        t = math.radians(angle)
        for px, py in zip(xs, ys, strict=True):
            u = (px - cx) * math.cos(t) + (py - cy) * math.sin(t)
            v = -(px - cx) * math.sin(t) + (py - cy) * math.cos(t)
            assert abs(u) <= rw / 2 + 0.05 and abs(v) <= rh / 2 + 0.05
        name = SHAPE_CATEGORIES[ann["category_id"] - 1]
        if name == "circle":
            assert len(xs) == 24
        elif name == "triangle":
            assert len(xs) == 3
        else:
            assert len(xs) == 4
        if name == "rectangle":
            assert np.allclose(np.array(poly).reshape(-1, 2), corners, atol=0.02)
            assert max(rw, rh) / min(rw, rh) > 1.5
    for cid, imgs in images_with.items():
        assert len(imgs) >= 30, f"category {cid} appears in only {len(imgs)} images"


def test_poses(built: dict[str, Path]) -> None:
    doc = _load(built["poses-demo"])
    (cat,) = doc["categories"]
    assert cat["name"] == "person" and cat["keypoints"] == list(POSE_KEYPOINTS)
    k = len(cat["keypoints"])
    assert all(len(e) == 2 and 1 <= e[0] <= k and 1 <= e[1] <= k for e in cat["skeleton"])
    assert sorted(POSE_FLIP_IDX) == list(range(k))
    assert 80 <= len(doc["images"]) <= 120
    sizes = {img["id"]: (img["width"], img["height"]) for img in doc["images"]}
    per_image = Counter(a["image_id"] for a in doc["annotations"])
    assert set(per_image) == set(sizes) and set(per_image.values()) == {1, 2}
    vis = Counter()  # type: Counter[int]
    for ann in doc["annotations"]:
        W, H = sizes[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and _inside(x, y, W, H) and _inside(x + w, y + h, W, H)
        kps = ann["keypoints"]
        assert len(kps) == 3 * k
        for i in range(k):
            px, py, v = kps[3 * i : 3 * i + 3]
            assert v in (0, 1, 2)
            vis[v] += 1
            if v:
                assert _inside(px, py, W, H)
                assert x - 0.05 <= px <= x + w + 0.05 and y - 0.05 <= py <= y + h + 0.05
            else:
                assert (px, py) == (0, 0)
        assert ann["num_keypoints"] == sum(1 for v in kps[2::3] if v > 0)
    assert vis[2] > 0.9 * sum(vis.values())
    assert vis[1] >= 5 and vis[0] >= 5


@pytest.mark.slow
def test_skip_when_current_and_rebuild_when_not(tmp_path: Path) -> None:
    folder = build_demo_dataset("shapes-demo", tmp_path)
    ann = folder / "annotations.json"
    stamp = ann.stat().st_mtime_ns, ann.stat().st_ino
    assert build_demo_dataset("shapes-demo", tmp_path) == folder
    assert (ann.stat().st_mtime_ns, ann.stat().st_ino) == stamp  # reused, not rebuilt
    original = _tree(folder)

    victim = folder / "images" / _load(folder)["images"][3]["file_name"]
    victim.write_bytes(b"corrupt")
    build_demo_dataset("shapes-demo", tmp_path)
    assert _tree(folder) == original

    (folder / VERSION_FILE).write_text(json.dumps({"recipe": "shapes-demo:recipe-0"}))
    build_demo_dataset("shapes-demo", tmp_path)
    assert _tree(folder) == original
    (folder / "images" / "stray.png").write_bytes(b"x")  # extra junk doesn't matter for reuse
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes-demo"]


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown demo dataset"):
        build_demo_dataset("imagenet", tmp_path)
    with pytest.raises(SystemExit):
        main([str(tmp_path), "imagenet"])
    assert not any(tmp_path.iterdir())
