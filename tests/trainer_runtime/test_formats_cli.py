"""`vision-agent dataset ...` / `python -m trainer_runtime.formats ...` (trainer_runtime.formats.cli)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainer_runtime.formats.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _doc(n: int = 6) -> dict[str, Any]:
    images = [{"id": i, "file_name": f"img{i}.jpg", "width": 100, "height": 50} for i in range(1, n + 1)]
    anns = [
        {
            "id": i,
            "image_id": i,
            "category_id": 1 + i % 2,
            "bbox": [10, 10, 20, 10],
            "segmentation": [[10, 10, 30, 10, 30, 20]],
            "area": 100.0,
        }
        for i in range(1, n + 1)
    ]
    return {
        "format_version": "1.0",
        "dataset": {"name": "t"},
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "images": images,
        "annotations": anns,
    }


def _folder(tmp_path: Path, doc: dict[str, Any] | None = None, images: bool = True) -> Path:
    d = tmp_path / "ds"
    (d / "images").mkdir(parents=True)
    doc = doc or _doc()
    (d / "annotations.json").write_text(json.dumps(doc))
    if images:
        from PIL import Image

        for img in doc["images"]:
            Image.new("RGB", (img["width"], img["height"])).save(d / "images" / img["file_name"])
    return d


def test_validate_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path)
    assert main(["validate", str(d)]) == 0
    assert "ok: 6 images" in capsys.readouterr().out
    assert main(["dataset", "validate", str(d / "annotations.json")]) == 0  # leading 'dataset' accepted

    (d / "images" / "img1.jpg").unlink()
    assert main(["validate", str(d)]) == 1
    assert "img1.jpg" in capsys.readouterr().err

    (d / "annotations.json").write_text('{"format_version": "1.0",\n "images": [}')
    assert main(["validate", str(d)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: annotations.json:2")


def test_validate_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path)
    z = tmp_path / "ds.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in d.rglob("*"):
            if p.is_file():
                zf.write(p, f"top/{p.relative_to(d)}")
    assert main(["validate", str(z)]) == 0
    assert "ok: 6 images" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["convert", str(tmp_path), "--to", "yolo", "--out", str(tmp_path / "o"), "--bogus"]) == 2
    assert main([]) == 2
    d = _folder(tmp_path, images=False)
    assert main(["convert", str(d), "--to", "yolo", "--out", str(tmp_path / "o")]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["split", str(d), "--val-fraction", "1.5"]) == 2


def test_convert_yolo_fast_and_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, images=False)
    for extra, out in (([], "fast"), (["--no-fast"], "ref")):
        rc = main(
            [
                "convert",
                str(d / "annotations.json"),
                "--to",
                "yolo",
                "--task",
                "instance_segmentation",
                "--out",
                str(tmp_path / out),
                "--val-fraction",
                "0.34",
                "--seed",
                "1",
                *extra,
            ]
        )
        assert rc == 0
        assert "wrote 6 label rows for 6 images" in capsys.readouterr().out
    for name in ("img1.txt", "img2.txt"):
        assert (tmp_path / "fast/labels" / name).read_bytes() == (tmp_path / "ref/labels" / name).read_bytes()
    assert (tmp_path / "fast/labels/img1.txt").read_text() == "1 0.1 0.2 0.3 0.2 0.3 0.4\n"
    data = yaml.safe_load((tmp_path / "fast/data.yaml").read_text())
    assert data["names"] == {0: "a", 1: "b"} and data["nc"] == 2


def test_convert_pose_task_and_incompatible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, images=False)
    rc = main(["convert", str(d), "--to", "yolo", "--task", "pose_estimation", "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_convert_coco_and_imagefolder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path)
    assert main(["convert", str(d), "--to", "coco", "--out", str(tmp_path / "c.json")]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["annotations"]) == 6
    assert main(["convert", str(d), "--to", "imagefolder", "--out", str(tmp_path / "if")]) == 0
    links = [p for p in (tmp_path / "if").rglob("*.jpg")]
    assert len(links) == 6 and all(p.is_symlink() for p in links)


def test_convert_unsafe_name_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc()
    doc["images"][0]["file_name"] = "../escape.jpg"
    d = _folder(tmp_path, doc, images=False)
    out = tmp_path / "o"
    for extra in ([], ["--no-fast"]):
        rc = main(["convert", str(d), "--to", "yolo", "--task", "object_detection", "--out", str(out), *extra])
        assert rc == 1
        assert "'..'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "escape.txt").exists()


def test_split_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, images=False)
    assert main(["split", str(d), "--val-fraction", "0.5", "--seed", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sorted(res["train"] + res["val"]) == [1, 2, 3, 4, 5, 6]
    assert res["report"]["val_only_classes"] == []
    assert main(["split", str(d)]) == 0
    assert "train" in capsys.readouterr().out


def test_import_coco(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path)
    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    assert main(["convert", str(d), "--to", "coco", "--out", str(coco / "annotations.json")]) == 0
    for p in (d / "images").iterdir():
        (coco / "images" / p.name).write_bytes(p.read_bytes())
    rc = main(["import", str(coco / "annotations.json"), str(tmp_path / "dice"), "--format", "coco"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "dice/annotations.json").is_file()
    assert main(["import", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2


def test_python_dash_m(tmp_path: Path) -> None:
    d = _folder(tmp_path, images=False)
    r = subprocess.run(
        [sys.executable, "-m", "trainer_runtime.formats", "split", str(d), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "report" in json.loads(r.stdout)
