"""Staging, zip safety and layout detection (`tools.uploads`), without database or storage."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.dataset_builders import (
    labeled_files,
    png,
    raw_info,
    symlink_info,
    zip_bytes,
    zip_marked_encrypted,
    zip_raw_entries,
    zip_with_lying_size,
)
from tools.context import UploadLimits
from tools.errors import InvalidInputError, PayloadTooLargeError
from tools.uploads import Staging, collect_tree, detect_format, dice_layout, is_junk


def stage_zip(tmp_path: Path, data: bytes, limits: UploadLimits | None = None) -> Staging:
    st = Staging(tmp_path, limits or UploadLimits())
    st.add_archive("up.zip", data)
    return st


def test_staging_is_removed_and_under_work_dir(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("a/b.png", png())
        assert st.root.parent == tmp_path / "staging"
        assert (st.raw / "a/b.png").is_file()
    assert not st.root.exists()


def test_folder_upload_strips_common_top_and_keeps_tree(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        for name, data in labeled_files(2, sub="x/y").items():
            st.add_file(name, data)
        st.add_file("mydata/.DS_Store", b"junk")
        tree = st.collect()
        assert tree.stripped_prefix == "mydata"
        assert sorted(tree.files) == ["annotations.json", "images/x/y/1.png", "images/x/y/2.png"]
        assert tree.ignored == [".DS_Store"]
        assert detect_format(tree) == "dice"
        layout = dice_layout(tree)
        assert sorted(layout.images) == ["x/y/1.png", "x/y/2.png"]
        assert layout.annotations is not None


def test_images_top_folder_is_not_stripped(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("images/a/1.png", png())
        st.add_file("images/b.png", png())
        tree = st.collect()
        assert tree.stripped_prefix is None
        assert detect_format(tree) == "images"
        assert sorted(dice_layout(tree).images) == ["a/1.png", "b.png"]


def test_bare_image_paths_are_image_names(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("1.png", png())
        st.add_file("sub/2.png", png())
        tree = st.collect()
        assert sorted(dice_layout(tree).images) == ["1.png", "sub/2.png"]


@pytest.mark.parametrize("name", ["a/.DS_Store", "Thumbs.db", "x/desktop.ini", "__MACOSX/a/._1.png", "._x.png"])
def test_junk_names(name: str) -> None:
    assert is_junk(name)


def test_non_image_in_images_is_rejected_by_name(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("images/a.png", png())
        st.add_file("images/notes.txt", b"hello")
        with pytest.raises(InvalidInputError, match=r"images/notes\.txt is not an image") as ei:
            dice_layout(st.collect())
        assert ei.value.detail["file"] == "images/notes.txt"


def test_readme_next_to_images_is_ignored(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("images/a.png", png())
        st.add_file("README.md", b"# hi")
        layout = dice_layout(st.collect())
        assert layout.ignored == ["README.md"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("../evil.png", "'..'"), ("/etc/passwd", "absolute"), ("images/a\x07.png", "control character")],
)
def test_unsafe_part_names_are_rejected(tmp_path: Path, name: str, fragment: str) -> None:
    with Staging(tmp_path, UploadLimits()) as st, pytest.raises(InvalidInputError, match=fragment):
        st.open_file(name)
    assert not list((tmp_path / "staging").iterdir())


def test_duplicate_part_names_are_rejected(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st:
        st.add_file("images/a.png", png())
        with pytest.raises(InvalidInputError, match="appears twice"):
            st.add_file("images/./a.png", png())


def test_file_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits(max_file_bytes=1000)) as st:
        w = st.open_file("images/big.png")
        w.write(b"x" * 600)
        with pytest.raises(PayloadTooLargeError, match=r"images/big\.png"):
            w.write(b"x" * 600)
        assert not (st.raw / "images/big.png").exists()


def test_total_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits(max_upload_bytes=1500)) as st:
        st.add_file("a.png", b"x" * 1000)
        with pytest.raises(PayloadTooLargeError, match="upload is larger"):
            st.add_file("b.png", b"x" * 1000)


# ------------------------------------------------------------------------------------ zips


def test_zip_is_extracted_and_top_folder_stripped(tmp_path: Path) -> None:
    st = stage_zip(tmp_path, zip_bytes(labeled_files(2, top="export")))
    with st:
        tree = st.collect()
        assert tree.stripped_prefix == "export"
        assert "annotations.json" in tree.files


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../../evil.png", "'..'"),
        ("images/../../evil.png", "'..'"),
        ("/abs/evil.png", "absolute"),
        ("C:\\evil.png", "absolute"),
        ("images/bell\x07.png", "control character"),
    ],
)
def test_zip_unsafe_names(tmp_path: Path, name: str, fragment: str) -> None:
    data = zip_raw_entries([(raw_info(name), png())])
    with stage_zip(tmp_path, data) as st, pytest.raises(InvalidInputError, match=fragment):
        st.collect()
    assert not (tmp_path / "evil.png").exists()
    assert not Path("/abs/evil.png").exists()


def test_zip_symlink_entry_is_rejected(tmp_path: Path) -> None:
    data = zip_raw_entries([(symlink_info("images/link.png"), b"/etc/passwd")])
    with stage_zip(tmp_path, data) as st, pytest.raises(InvalidInputError, match="symbolic link") as ei:
        st.collect()
    assert ei.value.detail["file"] == "images/link.png"


def test_zip_encrypted_entry_is_rejected(tmp_path: Path) -> None:
    data = zip_marked_encrypted("images/a.png", png())
    with stage_zip(tmp_path, data) as st, pytest.raises(InvalidInputError, match="encrypted"):
        st.collect()


def test_zip_entry_count_limit(tmp_path: Path) -> None:
    data = zip_bytes({f"images/{i}.png": b"x" for i in range(11)})
    with stage_zip(tmp_path, data, UploadLimits(max_zip_entries=10)) as st:
        with pytest.raises(PayloadTooLargeError, match="11 entries"):
            st.collect()
        assert not any(st.raw.rglob("*.png"))


def test_zip_total_uncompressed_limit(tmp_path: Path) -> None:
    data = zip_bytes({f"images/{i}.png": bytes(range(256)) * 20 for i in range(5)})
    with stage_zip(tmp_path, data, UploadLimits(max_zip_uncompressed_bytes=20_000)) as st:
        with pytest.raises(PayloadTooLargeError, match="expands to more than"):
            st.collect()
        assert not any(st.raw.rglob("*.png"))


def test_zip_bomb_ratio_is_rejected_from_headers(tmp_path: Path) -> None:
    data = zip_bytes({"images/bomb.png": b"\0" * (4 << 20)})
    assert len(data) < 50_000
    with stage_zip(tmp_path, data) as st:
        with pytest.raises(PayloadTooLargeError, match="zip bomb") as ei:
            st.collect()
        assert ei.value.detail["file"] == "images/bomb.png"
        assert not any(st.raw.rglob("*.png"))


def test_zip_bomb_of_many_small_entries_is_rejected_from_the_central_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each entry is under the per-entry ratio threshold (1 MiB); together they expand ~1000x."""
    data = zip_bytes({f"images/{i}.png": bytes(512 << 10) for i in range(40)})  # 20 MiB from ~20 kB
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with stage_zip(tmp_path, data) as st:
        with pytest.raises(PayloadTooLargeError, match="zip bomb") as ei:
            st.collect()
        assert ei.value.detail["file"] == "up.zip" and ei.value.detail["ratio"] > 200
        assert opened == [] and not any(st.raw.rglob("*"))
    # the same archive under a looser limit extracts
    with stage_zip(tmp_path, data, UploadLimits(max_zip_ratio=5000)) as st:
        assert len(st.collect().files) == 40


def test_zip_lying_header_is_caught_while_extracting(tmp_path: Path) -> None:
    data = zip_with_lying_size("images/a.png", b"A" * 5000, declared=100)
    with stage_zip(tmp_path, data) as st, pytest.raises((InvalidInputError, PayloadTooLargeError), match=r"a\.png"):
        st.collect()


def test_not_a_zip(tmp_path: Path) -> None:
    with stage_zip(tmp_path, b"this is not a zip") as st, pytest.raises(InvalidInputError, match="not a valid zip"):
        st.collect()


def test_archive_must_be_zip(tmp_path: Path) -> None:
    with Staging(tmp_path, UploadLimits()) as st, pytest.raises(InvalidInputError, match=r"only \.zip"):
        st.open_archive("data.tar.gz")


def test_zip_duplicate_entries_are_rejected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("images/a.png", png())
        zf.writestr("images/a.png", png())
    with stage_zip(tmp_path, buf.getvalue()) as st, pytest.raises(InvalidInputError, match="appears twice"):
        st.collect()


# ------------------------------------------------------------------------------ detection


def test_detect_coco_and_yolo(tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    (coco / "images").mkdir(parents=True)
    (coco / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert detect_format(collect_tree(coco)) == "coco"
    yolo = tmp_path / "yolo"
    (yolo / "labels" / "train").mkdir(parents=True)
    (yolo / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (yolo / "images").mkdir()
    (yolo / "images" / "a.png").write_bytes(png())
    assert detect_format(collect_tree(yolo)) == "yolo"
    dice_dir = tmp_path / "dice"
    dice_dir.mkdir()
    (dice_dir / "annotations.json").write_text("{ not json")
    assert detect_format(collect_tree(dice_dir)) == "dice"  # so the DICE parser reports the line


def test_symlink_in_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").symlink_to("/etc/hostname")
    with pytest.raises(InvalidInputError, match="symbolic link"):
        collect_tree(root)
