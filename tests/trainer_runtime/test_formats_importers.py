"""import_dataset: YOLO (detect/segment/pose/obb), COCO, ImageFolder and DICE into DICE folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.trainer_runtime._dice_factory import dice, make_image, write_dice_folder, write_yolo
from trainer_runtime.errors import DatasetFormatError, UnsafePathError
from trainer_runtime.formats.capabilities import check_compatibility
from trainer_runtime.formats.importers import detect_format, import_dataset
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.formats.validate import load_annotations, validate_dataset

W, H = 100, 50  # image size used by write_yolo


def _reload(dest: Path) -> DiceDataset:
    ds = load_annotations(dest / "annotations.json")
    files = {p.relative_to(dest / "images").as_posix() for p in (dest / "images").rglob("*") if p.is_file()}
    assert validate_dataset(ds, available_files=files).ok
    return ds


# ---------------------------------------------------------------------------------------- YOLO

DETECT_YAML = "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n"


def test_yolo_detect_round_trip(tmp_path: Path) -> None:
    src = write_yolo(
        tmp_path / "src",
        DETECT_YAML,
        {"train/a": "0 0.5 0.5 0.2 0.4\n2 0.25 0.5 0.1 0.2\n", "train/b": "", "val/c": "1 0.5 0.5 1.0 1.0\n"},
    )
    assert detect_format(src) == "yolo"
    ds = import_dataset(src, tmp_path / "out", name="pets")
    assert ds.dataset.name == "pets"
    assert [(c.id, c.name) for c in ds.categories] == [(0, "cat"), (1, "dog"), (2, "bird")]
    assert sorted(i.file_name for i in ds.images) == ["train/a.jpg", "train/b.jpg", "val/c.jpg"]
    img = {i.file_name: i for i in ds.images}
    assert (img["train/a.jpg"].width, img["train/a.jpg"].height) == (W, H)
    a = [x for x in ds.annotations if x.image_id == img["train/a.jpg"].id]
    assert a[0].category_id == 0
    assert a[0].bbox == pytest.approx([40.0, 15.0, 20.0, 20.0])
    assert a[1].bbox == pytest.approx([20.0, 20.0, 10.0, 10.0])
    c = next(x for x in ds.annotations if x.image_id == img["val/c.jpg"].id)
    assert c.bbox == pytest.approx([0.0, 0.0, 100.0, 50.0])
    assert not any(x.image_id == img["train/b.jpg"].id for x in ds.annotations)  # background image
    reloaded = _reload(tmp_path / "out")
    assert reloaded.to_json_dict() == ds.to_json_dict()
    assert check_compatibility(ds, "object_detection")["status"] == "native"


def test_yolo_hard_links_or_copies(tmp_path: Path) -> None:
    src = write_yolo(tmp_path / "src", DETECT_YAML, {"train/a": "0 0.5 0.5 0.2 0.4\n"})
    import_dataset(src, tmp_path / "linked")
    import_dataset(src, tmp_path / "copied", link=False)
    orig = src / "images/train/a.jpg"
    assert os.path.samefile(orig, tmp_path / "linked/images/train/a.jpg")
    copied = tmp_path / "copied/images/train/a.jpg"
    assert not os.path.samefile(orig, copied)
    assert copied.read_bytes() == orig.read_bytes()


def test_yolo_segment(tmp_path: Path) -> None:
    src = write_yolo(
        tmp_path / "src",
        "train: images/train\nnames: {0: square, 1: tri}\n",
        {"train/a": "1 0.1 0.2 0.5 0.2 0.3 0.8\n0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"},
    )
    ds = import_dataset(src, tmp_path / "out")
    tri, sq = ds.annotations
    assert tri.category_id == 1
    assert tri.segmentation == [pytest.approx([10.0, 10.0, 50.0, 10.0, 30.0, 40.0])]
    assert tri.bbox == pytest.approx([10.0, 10.0, 40.0, 30.0])
    assert tri.area == pytest.approx(0.5 * 40 * 30)
    assert sq.area == pytest.approx(80 * 40)
    _reload(tmp_path / "out")
    res = check_compatibility(ds, "object_detection")
    assert (res["status"], res["conversion"]) == ("convertible", "polygon_to_box")
    assert check_compatibility(ds, "instance_segmentation")["status"] == "native"


def test_yolo_pose(tmp_path: Path) -> None:
    yaml_text = "train: images/train\nnames: [person]\nkpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\n"
    src = write_yolo(tmp_path / "src", yaml_text, {"train/a": "0 0.5 0.5 0.4 0.8 0.5 0.2 2 0.4 0.6 1 0 0 0\n"})
    ds = import_dataset(src, tmp_path / "out")
    assert ds.categories[0].keypoints == ["kp0", "kp1", "kp2"]
    (a,) = ds.annotations
    assert a.bbox == pytest.approx([30.0, 5.0, 40.0, 40.0])
    assert a.keypoints == pytest.approx([50.0, 10.0, 2, 40.0, 30.0, 1, 0, 0, 0])
    assert a.num_keypoints == 2
    _reload(tmp_path / "out")
    assert check_compatibility(ds, "pose_estimation")["status"] == "native"
    assert check_compatibility(ds, "object_detection")["status"] == "native"


def test_yolo_pose_2d_with_kpt_names(tmp_path: Path) -> None:
    yaml_text = "train: images/train\nnames: [hand]\nkpt_shape: [2, 2]\nkpt_names: {0: [thumb, index]}\n"
    src = write_yolo(tmp_path / "src", yaml_text, {"train/a": "0 0.5 0.5 0.4 0.8 0.5 0.2 0 0\n"})
    ds = import_dataset(src, tmp_path / "out")
    assert ds.categories[0].keypoints == ["thumb", "index"]
    assert ds.annotations[0].keypoints == pytest.approx([50.0, 10.0, 2, 0, 0, 0])


def test_yolo_obb(tmp_path: Path) -> None:
    # a 40x20 px rectangle centred at (50, 25), axis-aligned: corners normalised by (100, 50)
    line = "0 0.3 0.3 0.7 0.3 0.7 0.7 0.3 0.7\n"
    src = write_yolo(tmp_path / "src", "train: images/train\nnames: [ship]\n", {"train/a": line})
    ds = import_dataset(src, tmp_path / "out")
    (a,) = ds.annotations
    assert a.rotated_bbox == pytest.approx([50.0, 25.0, 40.0, 20.0, 0.0], abs=1e-6)
    assert a.segmentation == [pytest.approx([30.0, 15.0, 70.0, 15.0, 70.0, 35.0, 30.0, 35.0])]
    assert a.bbox is None
    _reload(tmp_path / "out")
    assert check_compatibility(ds, "oriented_object_detection")["status"] == "native"
    assert check_compatibility(ds, "object_detection")["conversion"] == "rotated_to_box"


def test_yolo_obb_rotated(tmp_path: Path) -> None:
    # square image so that a 45-degree diamond stays a square in pixels
    src = tmp_path / "src"
    (src / "images/train").mkdir(parents=True)
    make_image(src / "images/train/a.png", (100, 100))
    (src / "labels/train").mkdir(parents=True)
    (src / "labels/train/a.txt").write_text("0 0.5 0.3 0.7 0.5 0.5 0.7 0.3 0.5\n")
    (src / "dota-obb.yaml").write_text("train: images/train\nnames: [tank]\n")
    ds = import_dataset(src, tmp_path / "out", fmt="yolo")
    cx, cy, w, h, ang = ds.annotations[0].rotated_bbox or []
    assert (cx, cy) == pytest.approx((50.0, 50.0))
    assert w == pytest.approx(20 * 2**0.5) and h == pytest.approx(20 * 2**0.5)
    assert ang == pytest.approx(45.0)


def test_yolo_txt_lists_and_roboflow_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for split in ("train", "valid"):
        make_image(src / split / "images" / f"{split}1.jpg", (W, H))
        (src / split / "labels").mkdir(parents=True)
        (src / split / "labels" / f"{split}1.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (src / "train.txt").write_text("./train/images/train1.jpg\n")
    (src / "data.yaml").write_text("train: train.txt\nval: ../valid/images\nnames: [a]\n")
    ds = import_dataset(src, tmp_path / "out")
    assert sorted(i.file_name for i in ds.images) == ["train/images/train1.jpg", "valid/images/valid1.jpg"]
    assert len(ds.annotations) == 2


def test_yolo_class_beyond_names_names_file_and_line(tmp_path: Path) -> None:
    src = write_yolo(tmp_path / "src", DETECT_YAML, {"train/a": "0 0.5 0.5 0.2 0.4\n\n7 0.5 0.5 0.2 0.4\n"})
    with pytest.raises(DatasetFormatError) as ei:
        import_dataset(src, tmp_path / "out")
    err = ei.value
    assert err.file == "labels/train/a.txt"
    assert err.line == 3
    assert err.field == "class"
    assert err.message == "class 7 is not in names (0..2)"
    assert not (tmp_path / "out/annotations.json").exists()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("0 0.5 0.5 0.2\n", "expected 5 values"),
        ("0 0.5 0.5 0.2 0.4 0.1\n", "got 6"),
        ("0 0.5 abc 0.2 0.4\n", "'abc' is not a number"),
        ("0 0.5 0.5 1.7 0.4\n", "coordinate 1.7 is outside [0, 1]"),
        ("0 0.5 0.5 -0.2 0.4\n", "outside [0, 1]"),
        ("0 0.5 0.5 0 0.4\n", "must be > 0"),
        ("1.5 0.5 0.5 0.2 0.4\n", "not a whole number"),
        ("0 0.5 0.5 nan 0.4\n", "not a finite number"),
    ],
)
def test_yolo_malformed_lines(tmp_path: Path, line: str, needle: str) -> None:
    src = write_yolo(tmp_path / "src", DETECT_YAML, {"val/x": "1 0.5 0.5 0.1 0.1\n" + line})
    with pytest.raises(DatasetFormatError) as ei:
        import_dataset(src, tmp_path / "out")
    assert ei.value.file == "labels/val/x.txt"
    assert ei.value.line == 2
    assert needle in ei.value.message


def test_yolo_pose_wrong_count(tmp_path: Path) -> None:
    yaml_text = "train: images/train\nnames: [person]\nkpt_shape: [3, 3]\n"
    src = write_yolo(tmp_path / "src", yaml_text, {"train/a": "0 0.5 0.5 0.4 0.8 0.5 0.2 2\n"})
    with pytest.raises(DatasetFormatError, match=r"expected 14 values") as ei:
        import_dataset(src, tmp_path / "out")
    assert ei.value.line == 1


def test_yolo_refuses_paths_outside_the_dataset(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_image(outside / "secret.jpg")
    src = write_yolo(tmp_path / "src", DETECT_YAML, {"train/a": ""})
    (src / "list.txt").write_text(str(outside / "secret.jpg") + "\n")
    (src / "data.yaml").write_text("train: list.txt\nnames: [a]\n")
    with pytest.raises(UnsafePathError, match="outside the dataset folder"):
        import_dataset(src, tmp_path / "out")
    # a symlinked image that points outside
    src2 = write_yolo(tmp_path / "src2", DETECT_YAML, {"train/a": ""})
    os.symlink(outside / "secret.jpg", src2 / "images/train/link.jpg")
    with pytest.raises(UnsafePathError):
        import_dataset(src2, tmp_path / "out2")


def test_dest_inside_src_is_refused(tmp_path: Path) -> None:
    src = write_yolo(tmp_path / "src", DETECT_YAML, {"train/a": ""})
    with pytest.raises(ValueError, match="inside"):
        import_dataset(src, src / "out")


# ---------------------------------------------------------------------------------------- COCO


def _coco(src: Path, *, annotations: list[dict] | None = None, file_name: str = "000001.jpg") -> Path:
    make_image(src / "train2017" / "000001.jpg", (80, 60))
    make_image(src / "train2017" / "000002.jpg", (40, 30))
    data = {
        "info": {"description": "tiny coco"},
        "images": [
            {"id": 11, "file_name": file_name, "width": 80, "height": 60},
            {"id": 12, "file_name": "000002.jpg", "width": 40, "height": 30},
        ],
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": ["nose", "tail"],
                "skeleton": [[1, 2]],
            },
            {"id": 18, "name": "dog", "supercategory": "animal"},
        ],
        "annotations": annotations
        if annotations is not None
        else [
            {
                "id": 5,
                "image_id": 11,
                "category_id": 18,
                "bbox": [10, 10, 20, 20],
                "area": 300.0,
                "iscrowd": 0,
                "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
            },
            {
                "id": 6,
                "image_id": 12,
                "category_id": 1,
                "bbox": [5, 5, 10, 20],
                "area": 200.0,
                "iscrowd": 0,
                "segmentation": [],
                "keypoints": [8, 8, 2, 0, 0, 0],
                "num_keypoints": 1,
            },
        ],
    }
    (src / "annotations").mkdir(parents=True, exist_ok=True)
    (src / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    return src


def test_coco_round_trip(tmp_path: Path) -> None:
    src = _coco(tmp_path / "src")
    assert detect_format(src) == "coco"
    ds = import_dataset(src, tmp_path / "out")
    assert ds.format_version == "1.0"
    assert ds.dataset.name == "tiny coco"
    assert [(c.id, c.name) for c in ds.categories] == [(1, "person"), (18, "dog")]
    assert ds.categories[0].keypoints == ["nose", "tail"] and ds.categories[0].skeleton == [[1, 2]]
    assert sorted((i.id, i.file_name) for i in ds.images) == [
        (11, "train2017/000001.jpg"),
        (12, "train2017/000002.jpg"),
    ]
    dog, person = ds.annotations
    assert dog.category_id == 18 and dog.segmentation == [[10, 10, 30, 10, 30, 30, 10, 30]]
    assert person.keypoints == [8, 8, 2, 0, 0, 0] and person.segmentation is None
    assert (tmp_path / "out/images/train2017/000001.jpg").is_file()
    _reload(tmp_path / "out")


def test_coco_rle_is_rejected_with_a_clear_error(tmp_path: Path) -> None:
    rle = {
        "id": 5,
        "image_id": 11,
        "category_id": 18,
        "bbox": [1, 1, 5, 5],
        "iscrowd": 0,
        "segmentation": {"counts": [0, 5, 10], "size": [60, 80]},
    }
    src = _coco(tmp_path / "src", annotations=[rle])
    with pytest.raises(DatasetFormatError) as ei:
        import_dataset(src, tmp_path / "out")
    assert "RLE masks are not supported; annotation 5" in ei.value.message
    assert ei.value.field == "annotations[0].segmentation"
    assert ei.value.file == "annotations/instances_train2017.json"


def test_coco_crowd_rle_is_skipped(tmp_path: Path) -> None:
    crowd = {
        "id": 5,
        "image_id": 11,
        "category_id": 18,
        "bbox": [1, 1, 5, 5],
        "iscrowd": 1,
        "segmentation": {"counts": "abc", "size": [60, 80]},
    }
    ok = {"id": 6, "image_id": 11, "category_id": 18, "bbox": [1, 1, 5, 5], "iscrowd": 0}
    src = _coco(tmp_path / "src", annotations=[crowd, ok])
    ds = import_dataset(src, tmp_path / "out")
    assert [a.id for a in ds.annotations] == [6]


def test_coco_unsafe_and_missing_file_names(tmp_path: Path) -> None:
    src = _coco(tmp_path / "src", file_name="../../etc/passwd")
    with pytest.raises(UnsafePathError) as ei:
        import_dataset(src, tmp_path / "out")
    assert ei.value.field == "images[0].file_name"
    src = _coco(tmp_path / "src2", file_name="nope.jpg")
    with pytest.raises(DatasetFormatError, match=r"image 11 'nope\.jpg' has no file"):
        import_dataset(src, tmp_path / "out2")


def test_coco_declared_size_must_match_the_file(tmp_path: Path) -> None:
    src = _coco(tmp_path / "src")
    p = src / "annotations" / "instances_train2017.json"
    data = json.loads(p.read_text())
    data["images"][1]["width"] = 400
    p.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match="declares 400x30 but the file is 40x30"):
        import_dataset(src, tmp_path / "out")


def test_coco_json_file_as_source(tmp_path: Path) -> None:
    src = _coco(tmp_path / "src")
    ds = import_dataset(src / "annotations" / "instances_train2017.json", tmp_path / "out")
    assert len(ds.images) == 2


# --------------------------------------------------------------------------------- ImageFolder


def test_imagefolder_flat(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for cls, n in (("cat", 2), ("dog", 3)):
        for i in range(n):
            make_image(src / cls / f"{i}.png", (20, 10))
    (src / "cat" / "notes.txt").write_text("ignored")
    assert detect_format(src) == "imagefolder"
    ds = import_dataset(src, tmp_path / "out")
    assert [(c.id, c.name) for c in ds.categories] == [(0, "cat"), (1, "dog")]
    assert len(ds.images) == 5
    assert all(a.bbox is None and a.segmentation is None for a in ds.annotations)
    by_img = {a.image_id: a.category_id for a in ds.annotations}
    for img in ds.images:
        assert ds.categories[by_img[img.id]].name == img.file_name.split("/")[0]
    _reload(tmp_path / "out")
    assert check_compatibility(ds, "image_classification")["status"] == "native"
    assert check_compatibility(ds, "object_detection")["status"] == "incompatible"


def test_imagefolder_with_splits(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_image(src / "train" / "cat" / "a.jpg")
    make_image(src / "train" / "dog" / "b.jpg")
    make_image(src / "val" / "cat" / "c.jpg")
    ds = import_dataset(src, tmp_path / "out", fmt="imagefolder")
    assert [c.name for c in ds.categories] == ["cat", "dog"]
    assert sorted(i.file_name for i in ds.images) == ["train/cat/a.jpg", "train/dog/b.jpg", "val/cat/c.jpg"]


def test_imagefolder_corrupt_image_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_image(src / "cat" / "a.jpg")
    (src / "dog").mkdir()
    (src / "dog" / "b.jpg").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="0 bytes") as ei:
        import_dataset(src, tmp_path / "out")
    assert ei.value.file == "dog/b.jpg"


# ---------------------------------------------------------------------------------------- DICE


def test_dice_round_trip_and_missing_file(tmp_path: Path) -> None:
    src = write_dice_folder(tmp_path / "src")
    assert detect_format(src) == "dice"
    ds = import_dataset(src, tmp_path / "out")
    assert ds.annotations == dice().annotations and ds.categories == dice().categories
    assert _reload(tmp_path / "out").dataset.name == "unit"
    (src / "images/val/c.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"image 3 'val/c\.jpg' has no file in images/"):
        import_dataset(src, tmp_path / "out2")


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.md").write_text("hi")
    with pytest.raises(DatasetFormatError, match="cannot tell the dataset format"):
        import_dataset(tmp_path / "src", tmp_path / "out")
    with pytest.raises(ValueError):
        import_dataset(tmp_path / "src", tmp_path / "out", fmt="voc")
