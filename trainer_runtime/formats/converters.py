"""Converters from DICE to YOLO (Ultralytics), ImageFolder and COCO.

YOLO export layout (no image copies; the labels sit beside a link to the original images)::

    out_dir/images      -> symlink to dataset_dir/images
    out_dir/labels/<relative path of the image, extension replaced by .txt>
    out_dir/train.txt   absolute image paths under out_dir/images/... (one per line)
    out_dir/val.txt
    out_dir/data.yaml   path, train, val, nc, names {index: name}; kpt_shape/flip_idx for pose

Ultralytics finds a label by replacing the last ``/images/`` of an image path with ``/labels/`` and
the extension with ``.txt``; it does not resolve symlinks when reading ``train.txt`` (checked with
`ultralytics.data.utils.check_det_dataset` and `YOLODataset`), so the labels under ``out_dir/labels``
are found through the ``out_dir/images`` link.

**Class index** = the position of the category in ``categories`` (not its id). For COCO-style files
whose category ids are 1..N in order, that is ``category_id - 1``, i.e. Ultralytics'
``convert_coco(cls91to80=False)``.

Rows per task: see `trainer_runtime.formats.yolo_rows` (the reference semantics; `fastconvert`
reproduces them byte for byte).

Intended differences from ``convert_coco``: every image gets a label file, an empty one when it has
no rows (background images; ``convert_coco`` writes none for images without annotations); file
names are checked (``..`` or absolute names raise `UnsafePathError`; ``convert_coco`` would write
outside its folder); ``segmentation`` must be polygons (DICE has no RLE).

Every export is written to a temporary sibling folder and renamed into place, so a failure leaves no
partial export. An existing `out_dir` is replaced only when it is empty or an earlier export
(it holds ``.dice-export.json``); anything else raises `FileExistsError`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer_runtime.errors import DatasetFormatError, IncompatibleDatasetError
from trainer_runtime.formats.capabilities import (
    INCOMPATIBLE,
    annotation_area,
    check_compatibility,
    dominant_class,
)
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.schema import TASK_TYPES, Annotation, DiceDataset
from trainer_runtime.formats.split import SplitResult, stratified_split
from trainer_runtime.formats.yolo_rows import annotation_box, format_rows, label_relpath, yolo_rows

MARKER = ".dice-export.json"
YOLO_TASKS = tuple(t for t in TASK_TYPES if t != "image_classification")


@dataclass
class YoloExport:
    """What `to_yolo` wrote. For image_classification, `data_yaml` is the ImageFolder root (what
    Ultralytics takes as ``data=``) and `train_txt` / `val_txt` are its ``train/`` and ``val/``."""

    data_yaml: Path
    train_txt: Path
    val_txt: Path
    num_labels: int
    report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- staging, publishing


def _check_target(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise FileExistsError(f"{out_dir} is not empty and is not an earlier export; choose another --out")


@contextmanager
def _staging(out_dir: Path, kind: str) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `out_dir`; on success it replaces `out_dir`."""
    out_dir = Path(os.path.abspath(out_dir))
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; an export is an ordinary folder
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "version": 1}) + "\n", encoding="utf-8")
        old = None
        if out_dir.exists():
            _check_target(out_dir)
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _safe_rels(ds: DiceDataset | Any, file: str = "annotations.json") -> list[str]:
    rels = [safe_relpath(img.file_name, file=file, field=f"images[{i}].file_name") for i, img in enumerate(ds.images)]
    seen: dict[str, int] = {}
    for i, r in enumerate(rels):
        if r in seen:
            raise DatasetFormatError(
                f"images[{seen[r]}] and images[{i}] have the same file name {r!r}", file=file, field="images"
            )
        seen[r] = i
    return rels


def _write_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------- keypoints meta

_SIDE = re.compile(r"(?i)(?<![a-z])(left|right|l|r)(?![a-z])")


def flip_index(names: Sequence[str]) -> list[int] | None:
    """Horizontal-flip permutation of keypoints from their names (left_eye <-> right_eye, l_knee <->
    r_knee); `None` when a sided name has no partner."""
    pos = {n: i for i, n in enumerate(names)}
    swap = {"left": "right", "right": "left", "l": "r", "r": "l"}
    out: list[int] = []
    for n in names:
        tokens = re.split(r"([^A-Za-z]+)", n)
        parts = []
        for t in tokens:
            low = t.lower()
            if low in swap:
                s = swap[low]
                parts.append(s.upper() if t.isupper() else s.capitalize() if t[:1].isupper() else s)
            else:
                parts.append(t)
        partner = "".join(parts)
        if partner == n:
            out.append(pos[n])
        elif partner in pos:
            out.append(pos[partner])
        else:
            return None
    return out


def _pose_meta(ds: DiceDataset) -> tuple[int, list[int] | None]:
    kp_cats = [c for c in ds.categories if c.keypoints]
    ks = {len(c.keypoints or []) for c in kp_cats}
    if len(ks) != 1:
        raise IncompatibleDatasetError(
            "pose estimation needs every keypoint category to have the same number of keypoints"
            f" (found {sorted(ks) or 'none'})",
            task_type="pose_estimation",
        )
    k = ks.pop()
    names = list(kp_cats[0].keypoints or [])
    flips = [flip_index(list(c.keypoints or [])) for c in kp_cats]
    flip = flips[0] if all(f == flips[0] for f in flips) else None
    for i, ann in enumerate(ds.annotations):
        if ann.keypoints is not None and len(ann.keypoints) != 3 * k:
            raise DatasetFormatError(
                f"expected {3 * k} keypoint values ({k} keypoints x (x, y, v)), got {len(ann.keypoints)}",
                file="annotations.json",
                field=f"annotations[{i}].keypoints",
            )
    del names
    return k, flip


# ------------------------------------------------------------------------------------ to_yolo


def _check_task(ds: DiceDataset | dict[str, Any], task_type: str) -> dict[str, Any]:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; valid: {', '.join(TASK_TYPES)}")
    compat = check_compatibility(ds, task_type)
    if compat["status"] == INCOMPATIBLE:
        raise IncompatibleDatasetError(compat["reason"], task_type=task_type)
    return compat


def _split_lists(
    images: Sequence[Any], split: SplitResult, rels: Sequence[str], root: Path
) -> tuple[str, str, dict[str, Any]]:
    idx = {img.id: i for i, img in enumerate(images)}
    prefix = str(root / "images") + "/"
    train = [prefix + rels[idx[i]] for i in split.train if i in idx]
    val = [prefix + rels[idx[i]] for i in split.val if i in idx]
    notes: dict[str, Any] = {}
    if not val:
        val = train
        notes["val_is_train"] = "no validation images: val.txt lists the training images"
    return "".join(p + "\n" for p in train), "".join(p + "\n" for p in val), notes


def _data_yaml(root: Path, names: Sequence[str], extra: dict[str, Any]) -> str:
    data: dict[str, Any] = {
        "path": str(root),
        "train": "train.txt",
        "val": "val.txt",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    data.update(extra)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def to_yolo(
    ds: DiceDataset,
    dataset_dir: Path,
    out_dir: Path,
    task_type: str,
    *,
    split: SplitResult | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> YoloExport:
    """Write an Ultralytics dataset for `task_type` (layout in the module doc).

    Applies the conversion `check_compatibility` names; raises `IncompatibleDatasetError` when there
    is none, `UnsafePathError` for a bad ``file_name`` (before anything is written). `split`
    defaults to `stratified_split(ds, val_fraction, seed)`.
    """
    if task_type == "image_classification":
        root = to_imagefolder(ds, dataset_dir, out_dir, split=split, val_fraction=val_fraction, seed=seed)
        n = sum(1 for p in root.rglob("*") if p.is_symlink() or p.is_file()) - 1
        return YoloExport(root, root / "train", root / "val", n, {"layout": "imagefolder"})
    compat = _check_task(ds, task_type)
    rels = _safe_rels(ds)
    label_rels = [label_relpath(r) for r in rels]
    if len(set(label_rels)) != len(label_rels):
        dup = next(r for r in label_rels if label_rels.count(r) > 1)
        raise DatasetFormatError(f"two images would share the label file {dup!r}", field="images")
    extra: dict[str, Any] = {}
    if task_type == "pose_estimation":
        k, flip = _pose_meta(ds)
        extra["kpt_shape"] = [k, 3]
        if flip is not None:
            extra["flip_idx"] = flip
    split = split or stratified_split(ds, val_fraction=val_fraction, seed=seed)
    cls_index = {c.id: i for i, c in enumerate(ds.categories)}
    by_image: dict[int, list[Annotation]] = {}
    for ann in ds.annotations:
        by_image.setdefault(ann.image_id, []).append(ann)
    final = Path(os.path.abspath(out_dir))
    images_src = Path(os.path.abspath(dataset_dir)) / "images"
    n_rows = 0
    with _staging(final, "yolo") as tmp:
        os.symlink(images_src, tmp / "images", target_is_directory=True)
        labels = tmp / "labels"
        labels.mkdir()
        made: set[Path] = set()
        for img, lrel in zip(ds.images, label_rels, strict=True):
            rows = yolo_rows(by_image.get(img.id, []), img.width, img.height, task_type, cls_index)
            n_rows += len(rows)
            path = labels / lrel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            _write_bytes(path, format_rows(rows).encode())
        train_txt, val_txt, notes = _split_lists(ds.images, split, rels, final)
        (tmp / "train.txt").write_text(train_txt, encoding="utf-8")
        (tmp / "val.txt").write_text(val_txt, encoding="utf-8")
        names = [c.name for c in ds.categories]
        (tmp / "data.yaml").write_text(_data_yaml(final, names, extra), encoding="utf-8")
    report = {
        "task_type": task_type,
        "conversion": compat["conversion"],
        "compatibility": compat["reason"],
        "images": len(ds.images),
        "labels": n_rows,
        "split": split.report,
        **notes,
    }
    return YoloExport(final / "data.yaml", final / "train.txt", final / "val.txt", n_rows, report)


def fast_to_yolo(
    annotations_json: Path,
    dataset_dir: Path,
    out_dir: Path,
    task_type: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 1,
) -> YoloExport:
    """`to_yolo` for big object_detection / instance_segmentation files, straight from the JSON
    (see `fastconvert`); byte-identical output. Raises `fastconvert.FastPathUnsupported` when the
    file needs the reference path."""
    from trainer_runtime.formats import fastconvert as fc

    if task_type not in fc.FAST_TASKS:
        raise fc.FastPathUnsupported(f"the fast path does not handle {task_type}")
    writer = fc.LabelWriter(workers)  # before loading: a small worker process
    try:
        fds = fc.load_fast(annotations_json)
        compat = _check_task(fc.summary_for_compat(fds), task_type)
        label_rels = [label_relpath(r) for r in fds.rel_names]
        if len(set(label_rels)) != len(label_rels):
            raise fc.FastPathUnsupported("two images would share a label file")
        split = stratified_split(fc.split_view(fds), val_fraction=val_fraction, seed=seed)
        final = Path(os.path.abspath(out_dir))
        images_src = Path(os.path.abspath(dataset_dir)) / "images"
        with _staging(final, "yolo") as tmp:
            os.symlink(images_src, tmp / "images", target_is_directory=True)
            (tmp / "labels").mkdir()
            n_rows = fc.write_yolo_labels(fds, task_type, tmp / "labels", writer=writer)
            train_txt, val_txt, notes = _split_lists(fds.images, split, fds.rel_names, final)
            (tmp / "train.txt").write_text(train_txt, encoding="utf-8")
            (tmp / "val.txt").write_text(val_txt, encoding="utf-8")
            names = [c.name for c in fds.categories]
            (tmp / "data.yaml").write_text(_data_yaml(final, names, {}), encoding="utf-8")
    finally:
        writer.close()
    report = {
        "task_type": task_type,
        "conversion": compat["conversion"],
        "compatibility": compat["reason"],
        "images": len(fds.images),
        "labels": n_rows,
        "split": split.report,
        "fast_path": True,
        **notes,
    }
    return YoloExport(final / "data.yaml", final / "train.txt", final / "val.txt", n_rows, report)


# ------------------------------------------------------------------------------- ImageFolder

_BAD_DIR_CHARS = re.compile(r'[/\\:*?"<>|]')


def safe_class_dir(name: str, cid: int) -> str:
    """A folder name for a class: separators and reserved characters become ``_``, control
    characters are dropped, leading/trailing dots and spaces stripped; ``class_<id>`` if nothing
    is left."""
    s = "".join(ch for ch in name if unicodedata.category(ch) != "Cc")
    s = _BAD_DIR_CHARS.sub("_", s).strip(" .")
    return s[:200] if s else f"class_{cid}"


def to_imagefolder(
    ds: DiceDataset,
    dataset_dir: Path,
    out_dir: Path,
    *,
    split: SplitResult | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """``out_dir/{train,val}/<class>/<relative path>`` as symlinks to the originals.

    One class per image: its image-level label, or for detection/segmentation data the dominant
    class (`capabilities.dominant_class`). Images without annotations are left out. Every class
    folder exists in both splits (Ultralytics indexes classes by sorted folder name). Returns
    `out_dir`.
    """
    _check_task(ds, "image_classification")
    rels = _safe_rels(ds)
    split = split or stratified_split(ds, val_fraction=val_fraction, seed=seed)
    by_image: dict[int, list[Annotation]] = {}
    for ann in ds.annotations:
        by_image.setdefault(ann.image_id, []).append(ann)
    dirs: dict[int, str] = {}
    used: set[str] = set()
    for c in ds.categories:
        d = safe_class_dir(c.name, c.id)
        if d.lower() in used:
            d = f"{d}_{c.id}"
        used.add(d.lower())
        dirs[c.id] = d
    idx = {img.id: i for i, img in enumerate(ds.images)}
    src_root = Path(os.path.abspath(dataset_dir)) / "images"
    final = Path(os.path.abspath(out_dir))
    with _staging(final, "imagefolder") as tmp:
        for part, ids in (("train", split.train), ("val", split.val)):
            for d in dirs.values():
                (tmp / part / d).mkdir(parents=True, exist_ok=True)
            for iid in ids:
                anns = by_image.get(iid)
                if not anns or iid not in idx:
                    continue
                rel = rels[idx[iid]]
                dest = tmp / part / dirs[dominant_class(anns)] / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(src_root / rel, dest)
    return final


# ------------------------------------------------------------------------------------- COCO


def to_coco(ds: DiceDataset, out_path: Path) -> Path:
    """Plain COCO instances JSON: images, categories (with keypoints/skeleton), annotations with
    bbox (derived when missing), segmentation, area, iscrowd, keypoints and num_keypoints.
    Image-level labels (no geometry) have no COCO form and are left out. Written atomically."""
    out_path = Path(os.path.abspath(out_path))
    rels = _safe_rels(ds)
    images = [
        {"id": img.id, "file_name": rel, "width": img.width, "height": img.height}
        for img, rel in zip(ds.images, rels, strict=True)
    ]
    cats = []
    for c in ds.categories:
        cat: dict[str, Any] = {"id": c.id, "name": c.name, "supercategory": c.supercategory or ""}
        if c.keypoints:
            cat["keypoints"] = list(c.keypoints)
            cat["skeleton"] = [list(e) for e in (c.skeleton or [])]
        cats.append(cat)
    anns = []
    for ann in ds.annotations:
        box = annotation_box(ann)
        if box is None:
            continue
        rec: dict[str, Any] = {
            "id": ann.id,
            "image_id": ann.image_id,
            "category_id": ann.category_id,
            "bbox": [float(v) for v in box],
            "segmentation": [list(p) for p in (ann.segmentation or [])],
            "area": float(ann.area) if ann.area is not None else annotation_area(ann),
            "iscrowd": int(ann.iscrowd),
        }
        if ann.keypoints:
            rec["keypoints"] = list(ann.keypoints)
            rec["num_keypoints"] = sum(1 for v in ann.keypoints[2::3] if v)
        anns.append(rec)
    doc = {
        "info": {"description": ds.dataset.name or "", "version": ds.format_version},
        "images": images,
        "annotations": anns,
        "categories": cats,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out_path
