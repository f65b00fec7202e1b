"""DICE -> YOLO / ImageFolder / COCO converters, the fast YOLO path and its '%g' formatter."""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trainer_runtime.errors import IncompatibleDatasetError, UnsafePathError
from trainer_runtime.formats import converters as conv
from trainer_runtime.formats import yolo_rows
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.formats.split import SplitResult

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
HAS_MSGSPEC = importlib.util.find_spec("msgspec") is not None


def _ds(
    images: list[dict[str, Any]], anns: list[dict[str, Any]], cats: list[dict[str, Any]] | None = None
) -> DiceDataset:
    return DiceDataset.model_validate(
        {
            "format_version": "1.0",
            "dataset": {"name": "t"},
            "categories": cats or [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "images": images,
            "annotations": anns,
        }
    )


def _img(i: int, name: str | None = None, w: int = 200, h: int = 100) -> dict[str, Any]:
    return {"id": i, "file_name": name or f"sub/{i:04d}.jpg", "width": w, "height": h}


def _rows(path: Path) -> list[list[float]]:
    return [[float(t) for t in line.split()] for line in path.read_text().splitlines()]


def _split(train: list[int], val: list[int]) -> SplitResult:
    return SplitResult(train=train, val=val, report={"message": "fixed"})


def _dataset_dir(tmp_path: Path, ds: DiceDataset) -> Path:
    d = tmp_path / "ds"
    for img in ds.images:
        p = d / "images" / img.file_name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"img")
    return d


# ------------------------------------------------------------------------------------ YOLO rows


def test_detection_rows_and_layout(tmp_path: Path) -> None:
    ds = _ds(
        [_img(1), _img(2)],
        [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 40, 30]}],
    )
    root = _dataset_dir(tmp_path, ds)
    out = tmp_path / "out"
    exp = conv.to_yolo(ds, root, out, "object_detection", split=_split([1], [2]))
    # cx = (10 + 20) / 200, cy = (20 + 15) / 100, w = 40 / 200, h = 30 / 100; class = index of dog
    assert (out / "labels/sub/0001.txt").read_text() == "1 0.15 0.35 0.2 0.3\n"
    assert (out / "labels/sub/0002.txt").read_text() == ""  # background image: empty label file
    assert (out / "images").is_symlink() and os.readlink(out / "images") == str(root.absolute() / "images")
    assert exp.train_txt.read_text() == f"{out.absolute()}/images/sub/0001.jpg\n"
    assert exp.val_txt.read_text() == f"{out.absolute()}/images/sub/0002.jpg\n"
    data = yaml.safe_load(exp.data_yaml.read_text())
    assert data == {
        "path": str(out.absolute()),
        "train": "train.txt",
        "val": "val.txt",
        "nc": 2,
        "names": {0: "cat", 1: "dog"},
    }
    assert exp.num_labels == 1
    assert exp.report["conversion"] is None


def test_segmentation_single_and_box_fallback(tmp_path: Path) -> None:
    ds = _ds(
        [_img(1)],
        [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 20, 40, 30],
                "segmentation": [[10, 20, 50, 20, 50, 50]],
            },
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 10], "segmentation": [[1, 2, 3, 4]]},
            {
                "id": 3,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 5, 5],
                "segmentation": [[1, 1, 2, 2, 3, 1]],
                "iscrowd": 1,
            },
            {
                "id": 4,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 20, 40, 30],
                "segmentation": [[10, 20, 50, 20, 50, 50]],
            },  # duplicate row: dropped
        ],
    )
    out = tmp_path / "out"
    conv.to_yolo(ds, _dataset_dir(tmp_path, ds), out, "instance_segmentation", split=_split([1], []))
    lines = (out / "labels/sub/0001.txt").read_text().splitlines()
    assert lines[0] == "0 0.05 0.2 0.25 0.2 0.25 0.5"
    # a 2-point "polygon" is dropped, so the box becomes a 4-corner polygon: (0,0)-(20,10) on 200x100
    assert lines[1] == "1 0 0 0.1 0 0.1 0.1 0 0.1"
    assert len(lines) == 2


def test_multi_polygon_merge_hand_checked() -> None:
    a = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    b = np.array([[10, 0], [14, 0], [14, 4], [10, 4]], float)
    merged = yolo_rows.merge_polygons([a, b])
    # closest points: a[1]=(4,0) and b[0]=(10,0); a rolled to start at (4,0) and closed, then b
    expected = [[4, 0], [4, 4], [0, 4], [0, 0], [4, 0], [10, 0], [14, 0], [14, 4], [10, 4], [10, 0]]
    assert merged.tolist() == expected


@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")
def test_merge_matches_ultralytics() -> None:
    from ultralytics.data.converter import merge_multi_segment

    rng = random.Random(3)
    for _ in range(200):
        polys = [
            [round(rng.uniform(0, 50), rng.choice([0, 2])) for _ in range(2 * rng.randint(3, 9))]
            for _ in range(rng.randint(2, 5))
        ]
        ref = np.concatenate(merge_multi_segment(polys), axis=0)
        ours = yolo_rows.merge_polygons([np.array(p, float).reshape(-1, 2) for p in polys])
        assert ours.tolist() == ref.tolist()


def test_conversions_polygon_and_rotated_to_box(tmp_path: Path) -> None:
    ds = _ds(
        [_img(1)],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20, 10, 60, 10, 60, 50, 20, 50]]},
            {"id": 2, "image_id": 1, "category_id": 2, "rotated_bbox": [100, 50, 40, 20, 90]},
        ],
    )
    out = tmp_path / "out"
    exp = conv.to_yolo(ds, _dataset_dir(tmp_path, ds), out, "object_detection", split=_split([1], []))
    rows = _rows(out / "labels/sub/0001.txt")
    # polygon extent x 20..60, y 10..50 -> cx 0.2, cy 0.3, w 0.2, h 0.4
    assert rows[0] == pytest.approx([0, 0.2, 0.3, 0.2, 0.4])
    # rotated 90 degrees: the 40-long side is vertical -> x 90..110, y 30..70
    assert rows[1] == pytest.approx([1, 0.5, 0.5, 0.1, 0.4], abs=1e-6)
    assert exp.report["conversion"] in ("polygon_to_box", "rotated_to_box")


def test_oriented_from_rotated_and_polygon(tmp_path: Path) -> None:
    ds = _ds(
        [_img(1)],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "rotated_bbox": [100, 50, 40, 20, 0]},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "rotated_bbox": [50, 50, 10, 10, 0],
                "segmentation": [[50, 40, 60, 50, 50, 60, 40, 50]],
            },
        ],
    )
    out = tmp_path / "out"
    conv.to_yolo(ds, _dataset_dir(tmp_path, ds), out, "oriented_object_detection", split=_split([1], []))
    rows = _rows(out / "labels/sub/0001.txt")
    corners = sorted((round(x, 6), round(y, 6)) for x, y in zip(rows[0][1::2], rows[0][2::2], strict=True))
    assert corners == [(0.4, 0.4), (0.4, 0.6), (0.6, 0.4), (0.6, 0.6)]
    assert rows[1][0] == 1

    # polygon only (a diamond) -> its min-area rectangle: the diamond itself
    ds2 = _ds(
        [_img(1)], [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[100, 40, 110, 50, 100, 60, 90, 50]]}]
    )
    out2 = tmp_path / "out2"
    exp = conv.to_yolo(ds2, _dataset_dir(tmp_path, ds2), out2, "oriented_object_detection", split=_split([1], []))
    assert exp.report["conversion"] == "polygon_to_rotated_box"
    r = _rows(out2 / "labels/sub/0001.txt")[0]
    got = sorted((round(x * 200, 3), round(y * 100, 3)) for x, y in zip(r[1::2], r[2::2], strict=True))
    assert got == sorted([(100, 40), (110, 50), (100, 60), (90, 50)])


def test_pose_rows_kpt_shape_flip_idx_and_keypoints_to_box(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[2, 3]]}]
    ds = _ds(
        [_img(1)],
        [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 20, 40, 30],
                "keypoints": [20, 30, 2, 10, 10, 1, 0, 0, 0],
            },
            {"id": 2, "image_id": 1, "category_id": 1, "keypoints": [40, 10, 2, 80, 50, 2, 0, 0, 0]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "keypoints": [0, 0, 0] * 3},
        ],
        cats,
    )
    out = tmp_path / "out"
    exp = conv.to_yolo(ds, _dataset_dir(tmp_path, ds), out, "pose_estimation", split=_split([1], []))
    data = yaml.safe_load(exp.data_yaml.read_text())
    assert data["kpt_shape"] == [3, 3]
    assert data["flip_idx"] == [0, 2, 1]
    rows = _rows(out / "labels/sub/0001.txt")
    assert rows[0] == pytest.approx([0, 0.15, 0.35, 0.2, 0.3, 0.1, 0.3, 2, 0.05, 0.1, 1, 0, 0, 0])
    # no bbox: the visible keypoints' extent x 40..80, y 10..50
    assert rows[1][:5] == pytest.approx([0, 0.3, 0.3, 0.2, 0.4])
    assert len(rows) == 2  # no labelled keypoint: skipped


def test_flip_index() -> None:
    assert conv.flip_index(["nose", "l_knee", "r_knee"]) == [0, 2, 1]
    assert conv.flip_index(["Left Hand", "Right Hand"]) == [1, 0]
    assert conv.flip_index(["head", "tail"]) == [0, 1]
    assert conv.flip_index(["left_paw", "tail"]) is None


def test_incompatible_raises(tmp_path: Path) -> None:
    ds = _ds([_img(1)], [{"id": 1, "image_id": 1, "category_id": 1}])  # image-level label only
    with pytest.raises(IncompatibleDatasetError) as ei:
        conv.to_yolo(ds, _dataset_dir(tmp_path, ds), tmp_path / "out", "object_detection")
    assert ei.value.reason
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- ImageFolder / COCO


def test_imagefolder_dominant_class_and_safe_names(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "a/b"}, {"id": 2, "name": ".."}, {"id": 3, "name": "dog"}]
    ds = _ds(
        [_img(1), _img(2), _img(3)],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50]},  # larger: wins
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5]},
        ],
        cats,
    )
    root = _dataset_dir(tmp_path, ds)
    out = conv.to_imagefolder(ds, root, tmp_path / "if", split=_split([1, 3], [2]))
    link = out / "train/dog/sub/0001.jpg"
    assert link.is_symlink() and link.resolve() == (root / "images/sub/0001.jpg").resolve()
    assert (out / "val/class_2/sub/0002.jpg").is_symlink()
    assert sorted(p.name for p in (out / "train").iterdir()) == ["a_b", "class_2", "dog"]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["a_b", "class_2", "dog"]
    assert not list(out.rglob("0003.jpg"))  # no annotations: left out

    exp = conv.to_yolo(ds, root, tmp_path / "cls", "image_classification", split=_split([1, 3], [2]))
    assert exp.data_yaml == (tmp_path / "cls").absolute()
    assert (exp.train_txt / "dog/sub/0001.jpg").is_symlink()


def test_to_coco(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}]
    ds = _ds(
        [_img(1)],
        [
            {
                "id": 5,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[0, 0, 10, 0, 10, 10]],
                "keypoints": [1, 2, 2, 0, 0, 0],
            },
            {"id": 6, "image_id": 1, "category_id": 1},
        ],
        cats,
    )
    path = conv.to_coco(ds, tmp_path / "c" / "coco.json")
    doc = json.loads(path.read_text())
    assert doc["categories"] == [
        {"id": 1, "name": "person", "supercategory": "", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}
    ]
    (ann,) = doc["annotations"]
    assert ann["bbox"] == [0, 0, 10, 10]
    assert ann["area"] == pytest.approx(50.0)
    assert ann["num_keypoints"] == 1 and ann["iscrowd"] == 0
    assert doc["images"] == [{"id": 1, "file_name": "sub/0001.jpg", "width": 200, "height": 100}]
    assert [p.name for p in path.parent.iterdir()] == ["coco.json"]


# ------------------------------------------------------------------------- safety, atomicity


@pytest.mark.parametrize("bad", ["../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg", "C:\\evil.jpg"])
def test_unsafe_file_name_writes_nothing(tmp_path: Path, bad: str) -> None:
    ds = _ds([_img(1, "ok.jpg"), _img(2, bad)], [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafePathError):
        conv.to_yolo(ds, root, work / "out", "object_detection")
    with pytest.raises(UnsafePathError):
        conv.to_imagefolder(ds, root, work / "if")
    with pytest.raises(UnsafePathError):
        conv.to_coco(ds, work / "c.json")
    assert sorted(tmp_path.rglob("*")) == before


def test_failure_leaves_no_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _ds([_img(1), _img(2)], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    root = _dataset_dir(tmp_path, ds)
    real = conv._write_bytes
    calls = []

    def boom(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(conv, "_write_bytes", boom)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(OSError, match="disk full"):
        conv.to_yolo(ds, root, work / "out", "object_detection", split=_split([1], [2]))
    assert list(work.iterdir()) == []
    monkeypatch.setattr(conv, "_write_bytes", real)
    # an earlier export survives a failed re-export, and is replaced by a good one
    conv.to_yolo(ds, root, work / "out", "object_detection", split=_split([1], [2]))
    monkeypatch.setattr(conv, "_write_bytes", boom)
    calls.clear()
    with pytest.raises(OSError):
        conv.to_yolo(ds, root, work / "out", "object_detection", split=_split([1], [2]))
    assert (work / "out/data.yaml").is_file()
    assert [p.name for p in work.iterdir()] == ["out"]


def test_refuses_foreign_non_empty_out_dir(tmp_path: Path) -> None:
    ds = _ds([_img(1)], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    out = tmp_path / "home"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError):
        conv.to_yolo(ds, _dataset_dir(tmp_path, ds), out, "object_detection")
    assert (out / "precious.txt").read_text() == "x"


# --------------------------------------------------------------------------------- fast path


def _random_coco(rng: random.Random, n_images: int) -> dict[str, Any]:
    images, anns = [], []
    aid = 0
    for i in range(1, n_images + 1):
        w, h = rng.choice([(640, 480), (427, 640), (333, 500)])
        images.append({"id": i * 7, "file_name": f"d{i % 3}/{i:06d}.jpg", "width": w, "height": h})
        prev = None
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            aid += 1
            if prev is not None and rng.random() < 0.1:
                anns.append({**prev, "id": aid})
                continue
            polys = []
            for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
                k = rng.randint(3, 12)
                polys.append(
                    [round(rng.uniform(0, w if j % 2 == 0 else h), rng.choice([0, 1, 2])) for j in range(2 * k)]
                )
            if rng.random() < 0.05:
                polys = []
            if rng.random() < 0.05:
                polys.append([1.0, 2.0])  # too short: dropped
            x, y = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
            bw = 0.0 if rng.random() < 0.03 else round(rng.uniform(0.5, w - x), 2)
            ann = {
                "id": aid,
                "image_id": i * 7,
                "category_id": rng.randint(1, 5),
                "bbox": [round(x, 2), round(y, 2), bw, round(rng.uniform(0.5, h - y), 2)],
                "segmentation": polys,
                "area": 1.0,
                "iscrowd": int(rng.random() < 0.05),
            }
            prev = ann
            anns.append(ann)
    return {
        "format_version": "1.0",
        "dataset": {"name": "r"},
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 6)],
        "images": images,
        "annotations": anns,
    }


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and "images" not in p.relative_to(root).parts[:1]:
            out[str(p.relative_to(root))] = p.read_bytes().replace(str(root).encode(), b"ROOT")
    return out


@pytest.mark.skipif(not HAS_MSGSPEC, reason="msgspec not installed")
@pytest.mark.parametrize("task", ["instance_segmentation", "object_detection"])
def test_fast_path_equals_reference(tmp_path: Path, task: str) -> None:
    doc = _random_coco(random.Random(11), 60)
    src = tmp_path / "ds"
    src.mkdir()
    (src / "annotations.json").write_text(json.dumps(doc))
    ds = DiceDataset.model_validate(doc)
    ref = conv.to_yolo(ds, src, tmp_path / "ref", task, val_fraction=0.25, seed=3)
    fast = conv.fast_to_yolo(src / "annotations.json", src, tmp_path / "fast", task, val_fraction=0.25, seed=3)
    assert fast.num_labels == ref.num_labels
    assert _tree(tmp_path / "fast") == _tree(tmp_path / "ref")
    assert len(list((tmp_path / "fast/labels").rglob("*.txt"))) == 60


@pytest.mark.skipif(not HAS_MSGSPEC, reason="msgspec not installed")
def test_fast_path_two_workers(tmp_path: Path) -> None:
    from trainer_runtime.formats import fastconvert as fc

    doc = _random_coco(random.Random(5), 40)
    (tmp_path / "a.json").write_text(json.dumps(doc))
    fds = fc.load_fast(tmp_path / "a.json")
    outs = []
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        w = fc.LabelWriter(workers)
        try:
            fc.write_yolo_labels(fds, "instance_segmentation", d, writer=w, batch_images=7)
        finally:
            w.close()
        outs.append(_tree(d))
    assert outs[0] == outs[1] and len(outs[0]) == 40


@pytest.mark.skipif(not HAS_MSGSPEC, reason="msgspec not installed")
def test_fast_path_rejects_unsafe_names(tmp_path: Path) -> None:
    doc = _random_coco(random.Random(1), 3)
    doc["images"][1]["file_name"] = "../../etc/x.jpg"
    (tmp_path / "a.json").write_text(json.dumps(doc))
    work = tmp_path / "w"
    work.mkdir()
    with pytest.raises(UnsafePathError):
        conv.fast_to_yolo(tmp_path / "a.json", tmp_path, work / "out", "instance_segmentation")
    assert list(work.iterdir()) == []


@pytest.mark.skipif(not HAS_MSGSPEC, reason="msgspec not installed")
def test_format_g_matches_python() -> None:
    from trainer_runtime.formats.fastconvert import format_g

    rng = np.random.default_rng(0)
    n = 200_000
    v = rng.integers(0, 64000, n) / 100 / rng.choice([640.0, 480.0, 427.0, 375.0], n)
    v[:2000] = rng.random(2000) * 10.0 ** rng.integers(-8, 4, 2000)
    v[2000:2100] = 2.0 ** -rng.integers(1, 30, 100)  # exact decimal ties
    v[2100:2200] = 0.9999996 + rng.random(100) * 1e-6  # rounds up to 1
    v[2200:2300] = 0.0999999 + rng.random(100) * 1e-6
    v[2300:2310] = [-0.0, 0.0, 1.0, 4095.0, 4096.0, -1.5, np.inf, -np.inf, np.nan, 1e300]
    seps = np.where(rng.random(n) < 0.1, 10, 32).astype(np.uint8)
    text, lengths = format_g(v, seps)
    toks = [("%g" % x) + chr(s) for x, s in zip(v.tolist(), seps.tolist(), strict=True)]  # noqa: UP031
    assert text == "".join(toks).encode()
    assert lengths.tolist() == [len(t) for t in toks]


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_ULTRALYTICS and HAS_MSGSPEC), reason="ultralytics not installed")
def test_labels_equal_ultralytics_convert_coco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.data.converter import convert_coco

    doc = _random_coco(random.Random(2), 80)
    for img in doc["images"]:
        img["file_name"] = img["file_name"].replace("/", "_")  # convert_coco needs flat names here
    jdir = tmp_path / "json"
    jdir.mkdir()
    (jdir / "instances_train.json").write_text(json.dumps(doc))
    convert_coco(labels_dir=str(jdir), save_dir=str(tmp_path / "ul"), use_segments=True, cls91to80=False)
    exp = conv.fast_to_yolo(jdir / "instances_train.json", jdir, tmp_path / "ours", "instance_segmentation")
    ds = DiceDataset.model_validate(doc)
    ref = conv.to_yolo(ds, jdir, tmp_path / "ref", "instance_segmentation")
    assert exp.num_labels == ref.num_labels
    for img in doc["images"]:
        rel = conv.label_relpath(img["file_name"])
        theirs = tmp_path / "ul/labels/train" / rel
        expected = theirs.read_bytes() if theirs.exists() else b""
        assert (tmp_path / "ours/labels" / rel).read_bytes() == expected, rel
        assert (tmp_path / "ref/labels" / rel).read_bytes() == expected, rel


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")
def test_ultralytics_finds_labels_through_the_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from PIL import Image as PILImage
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    ds = _ds(
        [_img(1, "a/x.jpg"), _img(2, "y.jpg")],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 40, 30]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 2, 30, 30]},
        ],
    )
    root = tmp_path / "ds"
    for img in ds.images:
        p = root / "images" / img.file_name
        p.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (200, 100)).save(p)
    exp = conv.to_yolo(ds, root, tmp_path / "out", "object_detection", split=_split([1], [2]))
    data = check_det_dataset(str(exp.data_yaml))
    assert data["nc"] == 2 and data["names"] == {0: "cat", 1: "dog"}
    train_imgs: list[str | Path] = list(Path(data["train"]).read_text().split())
    labels = img2label_paths(train_imgs)
    assert labels == [str((tmp_path / "out").absolute() / "labels/a/x.txt")]
    assert Path(labels[0]).read_text() == "0 0.15 0.35 0.2 0.3\n"

    from ultralytics.data.dataset import YOLODataset

    dset = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False, imgsz=64)
    assert len(dset.labels) == 1 and dset.labels[0]["cls"].ravel().tolist() == [0.0]
    assert dset.label_files[0].startswith(str((tmp_path / "out").absolute()))
