"""`trainer_runtime.formats.limits`: the safe YAML/JSON readers and name checks ,
and the importers using them with explicit `FormatLimits`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers import import_dataset
from trainer_runtime.formats.limits import (
    FormatLimits,
    check_label,
    json_depth_exceeds,
    load_json,
    load_yaml,
    read_yaml_file,
    unsafe_char,
)
from trainer_runtime.formats.validate import load_annotations


def test_yaml_anchor_and_alias_are_refused_with_the_line() -> None:
    with pytest.raises(DatasetFormatError, match="anchors and aliases") as ei:
        load_yaml("x: 1\nlol: &a [1, 2]\nnames: [*a, *a]\n", file="data.yaml")
    assert (ei.value.file, ei.value.line) == ("data.yaml", 2)
    with pytest.raises(DatasetFormatError, match="aliases"):
        load_yaml("names: [*undefined]\n", file="data.yaml")


def test_yaml_without_aliases_loads_as_safe_load() -> None:
    text = "path: .\ntrain: images/train\nnames:\n  0: cat\n  1: dog\nkpt_shape: [17, 3]\n"
    assert load_yaml(text, file="d.yaml") == {
        "path": ".",
        "train": "images/train",
        "names": {0: "cat", 1: "dog"},
        "kpt_shape": [17, 3],
    }
    with pytest.raises(DatasetFormatError, match="constructor"):
        load_yaml("x: !!python/object/apply:os.system [echo]\n", file="d.yaml")


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, "a:\n" + "".join("  " * i + "- \n" for i in range(1, 80))]
)
def test_yaml_depth_is_bounded(text: str) -> None:
    with pytest.raises(DatasetFormatError, match="nested more than 64 levels"):
        load_yaml(text, file="data.yaml")
    assert load_yaml("[" * 10 + "]" * 10, file="d.yaml", limits=FormatLimits(max_depth=10)) == [[[[[[[[[[]]]]]]]]]]


def test_yaml_file_size_is_bounded(tmp_path: Path) -> None:
    p = tmp_path / "data.yaml"
    p.write_text("names: [a]\n# " + "x" * 5000 + "\n")
    assert read_yaml_file(p, file="data.yaml") == {"names": ["a"]}
    with pytest.raises(DatasetFormatError, match="limit is 2048"):
        read_yaml_file(p, file="data.yaml", limits=FormatLimits(max_yaml_bytes=2048))


@pytest.mark.parametrize(
    ("raw", "deeper"),
    [
        (b"[]", False),
        (b'{"a": "[[[[[[[[[[[[", "b": [1, {"c": "}}}\\"]]]"}]}', False),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b'{"a": [[{"b": [1, 2]}], []], "c": {}}', False),
    ],
)
def test_json_depth_check(raw: bytes, deeper: bool) -> None:
    json.loads(raw)
    assert json_depth_exceeds(raw, 64) is deeper


def test_load_json_depth_and_recursion_are_format_errors() -> None:
    with pytest.raises(DatasetFormatError, match="nested more than 64 levels") as ei:
        load_json(b"[" * 100_000 + b"]" * 100_000, file="x.json")
    assert ei.value.file == "x.json"
    with pytest.raises(DatasetFormatError, match="nested more than 5 levels"):
        load_json('{"a": [[[[[1]]]]]}', file="x.json", limits=FormatLimits(max_depth=5))
    assert load_json('{"a": [[[[1]]]]}', file="x.json", limits=FormatLimits(max_depth=5)) == {"a": [[[[1]]]]}
    with pytest.raises(DatasetFormatError, match="line 2"):
        load_json(b'{\n"a": }', file="x.json")


@pytest.mark.parametrize(
    "ch", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\x00", "\x1b", "\x85", "\u2028"]
)
def test_unsafe_characters(ch: str) -> None:
    assert unsafe_char(f"a{ch}b") == ch
    with pytest.raises(DatasetFormatError, match=f"U\\+{ord(ch):04X}"):
        check_label(f"a{ch}b", FormatLimits(), what="class name", file="f", field="names[0]")


def test_plain_names_pass() -> None:
    limits = FormatLimits(max_label_chars=20)
    for name in ("cat", "사과", "traffic light", "émoji 🙂", "שלום"):
        assert unsafe_char(name) is None
        assert check_label(name, limits, what="n", file=None, field=None) == name
    assert check_label(7, limits, what="n", file=None, field=None) == "7"
    assert unsafe_char("a\nb\tc", allow_newlines=True) is None and unsafe_char("a\nb") == "\n"
    for bad, msg in (("x" * 21, "21 characters"), ("  ", "empty"), (["a"], "plain string"), ({"a": 1}, "plain string")):
        with pytest.raises(DatasetFormatError, match=msg):
            check_label(bad, limits, what="n", file=None, field=None)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 10), (1, 2, 3)).save(path)


def _yolo(tmp_path: Path, data_yaml: str) -> Path:
    src = tmp_path / "src"
    _image(src / "images/train/a.jpg")
    (src / "labels/train").mkdir(parents=True)
    (src / "labels/train/a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (src / "data.yaml").write_text(data_yaml)
    return src


def test_yolo_alias_bomb_is_refused_by_the_importer(tmp_path: Path) -> None:
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdef", "bcdefg", strict=True)]
    src = _yolo(tmp_path, "\n".join(levels) + "\ntrain: images/train\nnames: *g\n")
    with pytest.raises(DatasetFormatError, match="aliases") as ei:
        import_dataset(src, tmp_path / "out")
    assert ei.value.file == "data.yaml" and ei.value.line == 1
    assert not (tmp_path / "out").exists()


def test_yolo_names_are_checked(tmp_path: Path) -> None:
    src = _yolo(tmp_path, "train: images/train\nnames: [cat, [nested, list]]\n")
    with pytest.raises(DatasetFormatError, match="plain string") as ei:
        import_dataset(src, tmp_path / "out", "yolo")
    assert ei.value.field == "names[1]"
    (src / "data.yaml").write_text("train: images/train\nnames: {0: cat, 1: dog, 2: cow}\n")
    with pytest.raises(DatasetFormatError, match="3 categories; the limit is 2"):
        import_dataset(src, tmp_path / "out", "yolo", limits=FormatLimits(max_categories=2))
    ds = import_dataset(src, tmp_path / "out", "yolo")
    assert [c.name for c in ds.categories] == ["cat", "dog", "cow"]


def test_yolo_keypoint_names_are_checked(tmp_path: Path) -> None:
    src = _yolo(tmp_path, "train: images/train\nnames: [p]\nkpt_shape: [2, 3]\nkpt_names: [nose, 'eye\u202e']\n")
    (src / "labels/train/a.txt").write_text("0 0.5 0.5 0.5 0.5 0.5 0.5 2 0.4 0.4 2\n")
    with pytest.raises(DatasetFormatError, match="U\\+202E") as ei:
        import_dataset(src, tmp_path / "out", "yolo")
    assert ei.value.field == "kpt_names[1]"
    (src / "data.yaml").write_text("train: images/train\nnames: [p]\nkpt_shape: [2000, 3]\n")
    with pytest.raises(DatasetFormatError, match="2000 keypoints"):
        import_dataset(src, tmp_path / "out", "yolo")


def test_coco_json_depth_and_category_count(tmp_path: Path) -> None:
    src = tmp_path / "coco"
    _image(src / "images/a.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
        "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 6)],
    }
    (src / "annotations").mkdir()
    path = src / "annotations/instances_train.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetFormatError, match="5 categories; the limit is 4") as ei:
        import_dataset(src, tmp_path / "out", "coco", limits=FormatLimits(max_categories=4))
    assert ei.value.file == "annotations/instances_train.json"
    path.write_text(json.dumps({**coco, "info": {"x": [[[[[[[[[[1]]]]]]]]]]}}))
    with pytest.raises(DatasetFormatError, match="nested more than 8 levels"):
        import_dataset(src, tmp_path / "out", "coco", limits=FormatLimits(max_depth=8))
    assert len(import_dataset(src, tmp_path / "out", "coco").categories) == 5


def test_dice_load_annotations_checks_names_and_counts() -> None:
    base = {"format_version": "1.0", "images": [], "annotations": []}
    limits = FormatLimits()
    ok = {**base, "categories": [{"id": 1, "name": "cat", "supercategory": "", "keypoints": ["a", "b"]}]}
    assert load_annotations(json.dumps(ok).encode(), limits=limits).categories[0].name == "cat"
    bad = {**base, "categories": [{"id": 1, "name": "cat", "supercategory": "x" * 300}]}
    with pytest.raises(DatasetFormatError, match="300 characters") as ei:
        load_annotations(json.dumps(bad).encode(), limits=limits)
    assert ei.value.field == "categories[0].supercategory"
    many = {**base, "categories": [{"id": 1, "name": "p", "keypoints": [f"k{i}" for i in range(11)]}]}
    with pytest.raises(DatasetFormatError, match="11 keypoints; the limit is 10"):
        load_annotations(json.dumps(many).encode(), limits=FormatLimits(max_keypoints=10))


def test_trusted_annotations_are_read_without_the_upload_limits() -> None:
    """A trainer reads what the server accepted (maybe under larger limits, or before they
    existed): limits=None checks no names or counts, and deep nesting is still a format error."""
    base = {"format_version": "1.0", "images": [], "annotations": []}
    legacy = {**base, "categories": [{"id": 1, "name": "x" * 300}], "extra": json.loads("[" * 100 + "]" * 100)}
    assert load_annotations(json.dumps(legacy).encode()).categories[0].name == "x" * 300
    with pytest.raises(DatasetFormatError, match="nested too deeply"):
        load_annotations(b'{"format_version": "1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
