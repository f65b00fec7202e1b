"""Read one or more COCO json files (and the images they name) into a `Builder`; several files are
merged with fresh image and annotation ids, crowd RLE masks are skipped. Contract 2 in
docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.importers.builder import Builder, is_inside, rel_to
from trainer_runtime.formats.limits import FormatLimits, check_category_count, check_label, load_json
from trainer_runtime.formats.paths import safe_relpath

log = logging.getLogger(__name__)


def _coco_split_name(json_path: Path) -> str:
    stem = json_path.stem
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def _coco_image_bases(root: Path, json_path: Path) -> list[Path]:
    split = _coco_split_name(json_path)
    bases = [
        root / "images" / split,
        root / split,
        root / "images",
        root,
        json_path.parent / "images",
        json_path.parent,
    ]
    out: list[Path] = []
    for p in bases:
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _req_int(rec: Mapping[str, Any], key: str, file: str, where: str) -> int:
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
        raise DatasetFormatError(f"{key} must be an integer, got {v!r}", file=file, field=f"{where}.{key}")
    return int(v)


def _check_coco_category(cat: Mapping[str, Any], limits: FormatLimits, file: str, where: str) -> None:
    """Names of one COCO category (name, supercategory, keypoints): short plain strings."""
    check_label(cat.get("name"), limits, what="category name", file=file, field=f"{where}.name")
    if cat.get("supercategory") not in (None, ""):
        check_label(cat["supercategory"], limits, what="supercategory", file=file, field=f"{where}.supercategory")
    kps = cat.get("keypoints")
    if kps is not None:
        if not isinstance(kps, list) or len(kps) > limits.max_keypoints:
            raise DatasetFormatError(
                f"keypoints must be a list of at most {limits.max_keypoints} names",
                file=file,
                field=f"{where}.keypoints",
            )
        for j, kp in enumerate(kps):
            check_label(kp, limits, what="keypoint name", file=file, field=f"{where}.keypoints[{j}]")


def _coco_categories(
    data: dict[str, Any], b: Builder, jrel: str, cats_by_id: dict[int, dict[str, Any]], cat_file: dict[int, str]
) -> None:
    """Add a COCO file's categories to `cats_by_id` (a category id seen in an earlier file must
    keep its name); `cat_file`: the file that declared each id."""
    for i, cat in enumerate(data["categories"]):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise DatasetFormatError("a category must be an object", file=jrel, field=where)
        cid = _req_int(cat, "id", jrel, where)
        _check_coco_category(cat, b.limits, jrel, where)
        rec = {k: cat[k] for k in ("id", "name", "supercategory", "keypoints", "skeleton") if cat.get(k) is not None}
        if cid in cats_by_id:
            if cats_by_id[cid].get("name") != rec.get("name"):
                raise DatasetFormatError(
                    f"category {cid} is {rec.get('name')!r} here but {cats_by_id[cid].get('name')!r} in"
                    f" {cat_file[cid]}",
                    file=jrel,
                    field=f"{where}.name",
                )
            continue
        cats_by_id[cid] = rec
        cat_file[cid] = jrel


def _coco_images(
    data: dict[str, Any], b: Builder, src: Path, root: Path, jp: Path, jrel: str, multi: bool, next_img: int
) -> tuple[dict[int, int], int]:
    """Add a COCO file's images to `b`: ``(file's image id -> dataset image id, next free id)``."""
    bases = _coco_image_bases(root, jp)
    id_map: dict[int, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            raise DatasetFormatError("an image must be an object", file=jrel, field=where)
        iid = _req_int(img, "id", jrel, where)
        fn = img.get("file_name")
        if not isinstance(fn, str):
            raise DatasetFormatError(f"image {iid}: file_name must be a string", file=jrel, field=f"{where}.file_name")
        rel = safe_relpath(fn, file=jrel, field=f"{where}.file_name")
        path = next((base / rel for base in bases if (base / rel).is_file()), None)
        if path is None:
            looked = ", ".join((rel_to(p, src) or ".") for p in bases)
            raise DatasetFormatError(
                f"image {iid} {fn!r} has no file (looked in {looked or 'no folder'})",
                file=jrel,
                field=f"{where}.file_name",
            )
        images_dir = root / "images"
        dice_rel = rel_to(path, images_dir) if is_inside(path, images_dir) else rel_to(path, root)
        if dice_rel in b.sources:
            raise DatasetFormatError(
                f"image {iid} {fn!r} is also described by another COCO file; import one file at a time",
                file=jrel,
                field=f"{where}.file_name",
            )
        declared = None
        if isinstance(img.get("width"), int) and isinstance(img.get("height"), int):
            declared = (img["width"], img["height"])
        new_id = next_img if multi else iid
        if iid in id_map:
            raise DatasetFormatError(f"duplicate image id {iid}", file=jrel, field=f"{where}.id")
        id_map[iid] = new_id
        next_img += 1
        b.add_image(path, dice_rel, image_id=new_id, declared=declared, file=jrel, field=f"{where}.file_name")
    return id_map, next_img


def _load_coco_file(jp: Path, root: Path, b: Builder) -> tuple[str, dict[str, Any]]:
    """A COCO file's name (for errors) and its JSON, which must hold lists images, annotations and
    categories."""
    jrel = rel_to(jp, root) if is_inside(jp, root) else jp.name
    try:
        raw = jp.read_bytes()
    except OSError as exc:
        raise DatasetFormatError(f"cannot read file: {exc.strerror or exc}", file=jrel) from None
    data = load_json(raw, file=jrel, limits=b.limits)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetFormatError("a COCO file needs lists images, annotations and categories", file=jrel)
    return jrel, data


def import_coco(src: Path, b: Builder, jsons: list[Path], root: Path) -> str:
    """Add the images, annotations and categories of the COCO files `jsons` (under `root`) to `b`, renumbering
    ids when there are several files; returns the dataset name from the first `info.description` ("" if none)."""
    multi = len(jsons) > 1
    cats_by_id: dict[int, dict[str, Any]] = {}
    cat_file: dict[int, str] = {}
    next_img = 1
    next_ann = 1
    name = ""
    skipped_crowd = 0
    for jp in jsons:
        jrel, data = _load_coco_file(jp, root, b)
        info = data.get("info")
        if isinstance(info, dict) and not name and isinstance(info.get("description"), str):
            name = info["description"][:200]
        check_category_count(len(data["categories"]), b.limits, file=jrel, field="categories")
        _coco_categories(data, b, jrel, cats_by_id, cat_file)
        id_map, next_img = _coco_images(data, b, src, root, jp, jrel, multi, next_img)

        for i, a in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(a, dict):
                raise DatasetFormatError("an annotation must be an object", file=jrel, field=where)
            aid = _req_int(a, "id", jrel, where)
            img_id = _req_int(a, "image_id", jrel, where)
            cat_id = _req_int(a, "category_id", jrel, where)
            if img_id not in id_map:
                raise DatasetFormatError(
                    f"annotation {aid}: image_id {img_id} is not an image id",
                    file=jrel,
                    field=f"{where}.image_id",
                )
            iscrowd = int(a.get("iscrowd") or 0)
            ann: dict[str, Any] = {
                "id": next_ann if multi else aid,
                "image_id": id_map[img_id],
                "category_id": cat_id,
                "iscrowd": iscrowd,
            }
            next_ann += 1
            seg = a.get("segmentation")
            if isinstance(seg, dict) or (isinstance(seg, list) and seg and not isinstance(seg[0], list)):
                if iscrowd:
                    skipped_crowd += 1
                    continue
                raise DatasetFormatError(
                    f"RLE masks are not supported; annotation {aid}", file=jrel, field=f"{where}.segmentation"
                )
            if seg:
                polys = [list(p) for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
                if len(polys) != len(seg):
                    log.warning("%s: annotation %s: dropped %d degenerate polygons", jrel, aid, len(seg) - len(polys))
                if polys:
                    ann["segmentation"] = polys
            for key in ("bbox", "keypoints", "num_keypoints", "area"):
                if a.get(key) is not None:
                    ann[key] = a[key]
            if "bbox" not in ann and "segmentation" in ann:
                xs = [x for p in ann["segmentation"] for x in p[0::2]]
                ys = [y for p in ann["segmentation"] for y in p[1::2]]
                ann["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            b.add_annotation(**ann)
    if skipped_crowd:
        log.warning("skipped %d crowd annotations with RLE masks", skipped_crowd)
    b.categories = [cats_by_id[c] for c in sorted(cats_by_id)]
    return name
