"""Upload commit: a staged upload is prepared (format detection, import, probing, parsing), then
committed under the dataset's write lock in one transaction; a failure removes what was written.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from tools.context import ToolContext, require_user
from tools.datasets.common import LABELED_CONFLICT, _delete_objects, _owned_row, _sha256_file, dataset_out
from tools.datasets.locks import dataset_write_lock, user_quota_lock
from tools.datasets.models import UploadOut
from tools.datasets.quota import check_quota
from tools.db.models import Dataset, DatasetImage, User, utcnow
from tools.errors import ConflictError, InvalidInputError
from tools.uploads import (
    UPLOAD_FORMATS,
    DiceLayout,
    Staging,
    UploadTree,
    collect_tree,
    detect_format,
    dice_layout,
    invalid_from,
)
from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.capabilities import summarize
from trainer_runtime.formats.images import ImageInfo, probe_image
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.formats.validate import load_annotations, validate_dataset
from trainer_runtime.storage import dataset_annotations_key, dataset_image_key

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    fmt: str
    layout: DiceLayout
    infos: dict[str, ImageInfo]
    annotations: DiceDataset | None
    annotations_sha256: str | None
    stripped_prefix: str | None


def _prepare(ctx: ToolContext, ds_name: str, tree: UploadTree, fmt: str, staging: Staging) -> _Prepared:
    """Everything that does not depend on the dataset's current state: format detection, import,
    layout, image probing, annotation parsing."""
    if fmt not in UPLOAD_FORMATS:
        raise InvalidInputError(
            f"format must be one of {', '.join(UPLOAD_FORMATS)} (got {fmt!r})", detail={"field": "format"}
        )
    if not tree.files:
        extra = f" (ignored: {', '.join(tree.ignored[:10])})" if tree.ignored else ""
        raise InvalidInputError(f"the upload contains no files{extra}")
    if fmt == "auto":
        fmt = detect_format(tree)
    if fmt in ("yolo", "coco", "imagefolder"):
        from trainer_runtime.formats.importers import import_dataset

        dest = staging.root / "dice"
        try:
            import_dataset(tree.root, dest, fmt, name=ds_name, link=True, limits=ctx.limits.formats)
        except DatasetFormatError as exc:
            raise invalid_from(exc) from exc
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(f"the upload cannot be read as {fmt}: {exc}") from exc
        layout = dice_layout(collect_tree(dest, strip_top=False))
        layout.ignored = sorted(set(layout.ignored) | set(tree.ignored))
    else:
        layout = dice_layout(tree, allow_annotations=fmt != "images")
    infos: dict[str, ImageInfo] = {}
    for rel, path in layout.images.items():
        size = path.stat().st_size
        if size > ctx.limits.max_file_bytes:
            raise InvalidInputError(f"images/{rel} is larger than the per-file limit", detail={"file": f"images/{rel}"})
        try:
            infos[rel] = probe_image(path, rel=layout.sources.get(rel, rel), max_pixels=ctx.limits.max_image_pixels)
        except DatasetFormatError as exc:
            raise invalid_from(exc) from exc
    ann: DiceDataset | None = None
    ann_sha: str | None = None
    if layout.annotations is not None:
        try:
            ann = load_annotations(layout.annotations, file="annotations.json", limits=ctx.limits.formats)
        except DatasetFormatError as exc:
            raise invalid_from(exc) from exc
        ann_sha = _sha256_file(layout.annotations)
    if not infos and ann is None:
        raise InvalidInputError("the upload contains no images")
    return _Prepared(fmt, layout, infos, ann, ann_sha, tree.stripped_prefix)


def _annotation_index(ann: DiceDataset) -> dict[str, tuple[int, int]]:
    counts = Counter(a.image_id for a in ann.annotations)
    return {safe_relpath(img.file_name): (img.id, counts.get(img.id, 0)) for img in ann.images}


def _commit_upload(ctx: ToolContext, dataset_id: str, prep: _Prepared) -> UploadOut:
    """Commit under the per-dataset lock and, with a storage quota, one lock per user (in this
    process; on PostgreSQL also the user's row) so that two uploads cannot both fit the last bytes."""
    if not ctx.limits.user_storage_quota_bytes:
        return _commit_upload_locked(ctx, dataset_id, prep)
    user = require_user(ctx, "datasets")
    with user_quota_lock(user.id):
        return _commit_upload_locked(ctx, dataset_id, prep)


def _split_new_images(
    ds: Dataset, existing: dict[str, DatasetImage], prep: _Prepared
) -> tuple[dict[str, ImageInfo], list[str]]:
    """The upload's images not in the dataset yet, and those already there with the same bytes;
    an image already there with other bytes is a conflict."""
    new: dict[str, ImageInfo] = {}
    skipped: list[str] = []
    for rel, info in prep.infos.items():
        row = existing.get(rel)
        if row is None:
            new[rel] = info
        elif row.sha256 == info.sha256:
            skipped.append(rel)
        else:
            raise ConflictError(
                f"images/{rel} already exists in dataset {ds.name!r} with different content; "
                "delete that image first or upload under another path",
                detail={"file": f"images/{rel}"},
            )
    return new, skipped


def _checked_annotation_index(
    ann: DiceDataset, existing: dict[str, DatasetImage], prep: _Prepared
) -> dict[str, tuple[int, int]]:
    """Validate a labeled upload's annotations against the dataset's and the upload's images
    (sizes and declared sha256), then index them by image file."""
    sizes = {n: (r.width, r.height) for n, r in existing.items()}
    sizes.update({n: (i.width, i.height) for n, i in prep.infos.items()})
    shas = {n: r.sha256 for n, r in existing.items()}
    shas.update({n: i.sha256 for n, i in prep.infos.items()})
    report = validate_dataset(ann, available_files=set(sizes), image_sizes=sizes, file="annotations.json")
    try:
        report.raise_first()
    except DatasetFormatError as exc:
        raise invalid_from(exc) from exc
    for i, img in enumerate(ann.images):
        rel = safe_relpath(img.file_name)
        if img.sha256 and shas.get(rel) and img.sha256.lower() != shas[rel]:
            raise InvalidInputError(
                f"annotations.json: images[{i}].sha256: image {img.id} ({rel}) declares sha256 "
                f"{img.sha256} but the file's is {shas[rel]}",
                detail={"file": "annotations.json", "field": f"images[{i}].sha256"},
            )
    return _annotation_index(ann)


def _commit_upload_locked(ctx: ToolContext, dataset_id: str, prep: _Prepared) -> UploadOut:
    ann = prep.annotations
    with dataset_write_lock(ctx, dataset_id) as ds:
        if ann is not None and ds.labeled:
            raise ConflictError(
                f"dataset {ds.name!r} is already labeled: {LABELED_CONFLICT}", detail={"dataset_id": ds.id}
            )
        existing = {
            r.file_name: r for r in ctx.db.scalars(select(DatasetImage).where(DatasetImage.dataset_id == ds.id))
        }
        new, skipped = _split_new_images(ds, existing, prep)
        index: dict[str, tuple[int, int]] = {}
        if ann is not None:
            index = _checked_annotation_index(ann, existing, prep)
        if not new and ann is None:
            ctx.db.rollback()
            return _upload_out(ctx, ds, prep, new, skipped)
        if ctx.limits.user_storage_quota_bytes and new:
            if ctx.db.get_bind().dialect.name != "sqlite":
                ctx.db.execute(select(User.id).where(User.id == ds.owner_id).with_for_update())
            check_quota(ctx, ds.owner_id, sum(info.size_bytes for info in new.values()))
        written: list[str] = []
        try:
            for rel in sorted(new):
                key = dataset_image_key(ds.id, rel)
                ctx.storage.external.put_file(key, prep.layout.images[rel])
                written.append(key)
            if ann is not None and prep.layout.annotations is not None:
                key = dataset_annotations_key(ds.id)
                ctx.storage.external.put_file(key, prep.layout.annotations, content_type="application/json")
                written.append(key)
            added_bytes = 0
            for rel in sorted(new):
                info = new[rel]
                aid, count = index.get(rel, (None, 0))
                ctx.db.add(
                    DatasetImage(
                        dataset_id=ds.id,
                        file_name=rel,
                        width=info.width,
                        height=info.height,
                        size_bytes=info.size_bytes,
                        sha256=info.sha256,
                        annotation_image_id=aid,
                        num_annotations=count,
                    )
                )
                added_bytes += info.size_bytes
            if ann is not None:
                for rel, row in existing.items():
                    aid, count = index.get(rel, (None, 0))
                    row.annotation_image_id = aid
                    row.num_annotations = count
                summary = summarize(ann)
                ds.labeled = True
                ds.format_version = ann.format_version
                ds.num_annotations = len(ann.annotations)
                ds.class_names = [c.name for c in ann.categories]
                ds.capabilities = summary["tasks"]
                ds.annotations_sha256 = prep.annotations_sha256
            ds.num_images = (ds.num_images or 0) + len(new)
            ds.total_bytes = (ds.total_bytes or 0) + added_bytes
            ds.updated_at = utcnow()
            ctx.db.commit()
        except BaseException:
            ctx.db.rollback()
            _delete_objects(ctx.storage, written)
            raise
        log.info("dataset %s: %d images added (%s upload), %d skipped", ds.id, len(new), prep.fmt, len(skipped))
        return _upload_out(ctx, ds, prep, new, skipped)


def _upload_out(
    ctx: ToolContext, ds: Dataset, prep: _Prepared, new: dict[str, ImageInfo], skipped: list[str]
) -> UploadOut:
    return UploadOut(
        dataset=dataset_out(ctx, ds),
        format=prep.fmt,
        labeled_upload=prep.annotations is not None,
        added=len(new),
        skipped=sorted(skipped),
        ignored=prep.layout.ignored,
        stripped_prefix=prep.stripped_prefix,
    )


def check_can_upload(ctx: ToolContext, dataset_id: str) -> None:
    """Raise unless the caller may upload to the dataset (404 hidden / 403 not the owner; 413 when
    the owner's datasets already fill their storage quota), before any body is read."""
    ds = _owned_row(ctx, dataset_id, "upload to")
    check_quota(ctx, ds.owner_id, 0)


def upload_staged(ctx: ToolContext, dataset_id: str, staging: Staging, format: str = "auto") -> UploadOut:
    """Validate and commit what `staging` received (files and/or a zip) into the dataset.

    format: auto | dice | yolo | coco | imagefolder | images (plain images, unlabeled).
    Returns the dataset after it, the format read, what was added, skipped and ignored.
    Nothing is visible unless everything validated and was stored.
    """
    ds = _owned_row(ctx, dataset_id, "upload to")
    tree = staging.collect()
    prep = _prepare(ctx, ds.name, tree, format, staging)
    return _commit_upload(ctx, dataset_id, prep)


def upload_path(ctx: ToolContext, dataset_id: str, path: str | Path, format: str = "auto") -> UploadOut:
    """Upload a folder or a .zip that is on the server's disk into the dataset (owner only).

    path: a DICE folder (images/ + annotations.json), a YOLO/COCO/ImageFolder folder, a folder of
    images, or a .zip of any of them. format: as for `upload_staged`.
    """
    ds = _owned_row(ctx, dataset_id, "upload to")
    src = Path(path)
    with Staging(ctx.work_dir, ctx.limits) as staging:
        if src.is_file() and src.suffix.lower() == ".zip":
            staging.add_archive(src.name, src)
            tree = staging.collect()
        elif src.is_dir():
            tree = collect_tree(src, strip_top=False)
        else:
            raise InvalidInputError(f"{src} is neither a folder nor a .zip file", detail={"field": "path"})
        prep = _prepare(ctx, ds.name, tree, format, staging)
        return _commit_upload(ctx, dataset_id, prep)
