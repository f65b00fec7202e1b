"""A dataset's images: the gallery pages, one image with its annotations, the stored file,
JPEG thumbnails (cached in the external store), deleting an image. Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tools.context import ToolContext, iso_utc
from tools.datasets.annotations import _annotations_by_image
from tools.datasets.common import THUMBNAIL_SIZES, StoredFile, _norm, _owned_row, dataset_out, get_dataset_row
from tools.datasets.locks import dataset_write_lock
from tools.datasets.models import ImageDeleteOut, ImageOut, ImagePage
from tools.datasets.snapshots import snapshot_out
from tools.db.models import Dataset, DatasetImage, DatasetSnapshot, utcnow
from tools.errors import InvalidInputError, NotFoundError
from trainer_runtime.errors import ObjectNotFoundError, StorageError
from trainer_runtime.formats.capabilities import summarize
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.storage import dataset_annotations_key, dataset_image_key, dataset_prefix

log = logging.getLogger(__name__)


def _image_out(row: DatasetImage, annotations: list[dict[str, Any]] | None = None) -> ImageOut:
    return ImageOut(
        id=row.id,
        file_name=row.file_name,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        annotation_image_id=row.annotation_image_id,
        num_annotations=row.num_annotations,
        created_at=iso_utc(row.created_at),
        annotations=annotations,
    )


def list_images(
    ctx: ToolContext,
    dataset_id: str,
    offset: int = 0,
    limit: int = 50,
    prefix: str | None = None,
    include_annotations: bool = False,
) -> ImagePage:
    """A page of the dataset's images, sorted by file name (the gallery).

    prefix: only files whose relative path starts with it (e.g. "train/").
    include_annotations: add each image's annotations from the live annotations.json.
    Returns a page of images (id, file_name, width, height, size_bytes, num_annotations, ...).
    """
    ds = get_dataset_row(ctx, dataset_id)
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInputError("limit must be 1..1000 and offset >= 0", detail={"field": "limit"})
    stmt = select(DatasetImage).where(DatasetImage.dataset_id == ds.id)
    if prefix:
        if any(unicodedata.category(c) == "Cc" for c in prefix):
            raise InvalidInputError("prefix must not contain control characters", detail={"field": "prefix"})
        stmt = stmt.where(DatasetImage.file_name.startswith(prefix, autoescape=True))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(ctx.db.scalars(stmt.order_by(DatasetImage.file_name, DatasetImage.id).offset(offset).limit(limit)))
    if include_annotations:
        by_image = _annotations_by_image(ctx, ds)
        items = [_image_out(r, _annotations_of(by_image, r)) for r in rows]
    else:
        items = [_image_out(r) for r in rows]
    return ImagePage(items=items, total=int(total), offset=offset, limit=limit)


def _annotations_of(by_image: dict[int, list[dict[str, Any]]], row: DatasetImage) -> list[dict[str, Any]]:
    aid = row.annotation_image_id
    return by_image.get(aid, []) if aid is not None else []


def _image_row(ctx: ToolContext, ds: Dataset, image_id: int) -> DatasetImage:
    row = ctx.db.get(DatasetImage, image_id) if isinstance(image_id, int) else None
    if row is None or row.dataset_id != ds.id:
        raise NotFoundError(f"image {image_id} not found in dataset {ds.name!r}", detail={"image_id": image_id})
    return row


def get_image(ctx: ToolContext, dataset_id: str, image_id: int) -> ImageOut:
    """One image's facts and its annotations."""
    ds = get_dataset_row(ctx, dataset_id)
    row = _image_row(ctx, ds, image_id)
    return _image_out(row, _annotations_of(_annotations_by_image(ctx, ds), row))


def image_file(ctx: ToolContext, dataset_id: str, image_id: int) -> StoredFile:
    """The stored object of one image, for streaming it back."""
    ds = get_dataset_row(ctx, dataset_id)
    row = _image_row(ctx, ds, image_id)
    ctype = mimetypes.guess_type(row.file_name)[0] or "application/octet-stream"
    return StoredFile(
        key=dataset_image_key(ds.id, row.file_name),
        content_type=ctype,
        size=row.size_bytes,
        filename=row.file_name.rsplit("/", 1)[-1],
        etag=f'"{row.sha256}"',
    )


def _thumb_size(size: int) -> int:
    for s in THUMBNAIL_SIZES:
        if size <= s:
            return s
    return THUMBNAIL_SIZES[-1]


def thumbnail_key(dataset_id: str, size: int, image_id: int) -> str:
    """The storage key of image `image_id`'s JPEG thumbnail of `size` px in dataset `dataset_id`."""
    return f"{dataset_prefix(dataset_id)}thumbnails/{size}/{image_id}.jpg"


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG thumbnail; `data` is None when the caller's ETag already matches (304)."""

    data: bytes | None
    etag: str
    size: int
    content_type: str = "image/jpeg"


def get_thumbnail(
    ctx: ToolContext, dataset_id: str, image_id: int, size: int = 128, if_none_match: str | None = None
) -> Thumbnail:
    """A JPEG thumbnail that fits in size x size (size rounded up to 32/64/128/256/512), made with
    Pillow on first use and cached in the external store."""
    from PIL import Image, ImageOps

    ds = get_dataset_row(ctx, dataset_id)
    row = _image_row(ctx, ds, image_id)
    size = _thumb_size(int(size))
    etag = f'"{row.sha256[:40]}-{size}"'
    if if_none_match and etag in {t.strip() for t in if_none_match.split(",")}:
        return Thumbnail(None, etag, size)
    key = thumbnail_key(ds.id, size, row.id)
    ext = ctx.storage.external
    try:
        return Thumbnail(ext.get_bytes(key), etag, size)
    except ObjectNotFoundError:
        pass
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir, prefix="thumb-") as tmp:
        src = Path(tmp) / "src"
        ext.get_file(dataset_image_key(ds.id, row.file_name), src)
        with Image.open(src) as im:
            im.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(im) or im
            img.thumbnail((size, size))
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                bg = Image.new("RGB", rgba.size, (255, 255, 255))
                bg.paste(rgba, mask=rgba.getchannel("A"))
                img = bg
            elif img.mode != "RGB":
                img = img.convert("RGB")
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
    data = buf.getvalue()
    try:
        ext.put_bytes(key, data, content_type="image/jpeg")
    except StorageError as exc:  # a cache miss next time, not an error now
        log.warning("could not cache thumbnail %s: %s", key, exc)
    return Thumbnail(data, etag, size)


def delete_image(ctx: ToolContext, dataset_id: str, image_id: int) -> ImageDeleteOut:
    """Delete one image (owner only): its file, its entry and annotations in the live
    annotations.json, its thumbnails. Snapshots that reference the file become ``broken``.

    Returns the deleted image, the number of annotations removed, the snapshots now broken, the dataset.
    """
    _owned_row(ctx, dataset_id, "delete images of")
    ext = ctx.storage.external
    with dataset_write_lock(ctx, dataset_id) as ds:
        row = _image_row(ctx, ds, image_id)
        rel = row.file_name
        deleted = _image_out(row)
        ann_key = dataset_annotations_key(ds.id)
        old_bytes: bytes | None = None
        new_bytes: bytes | None = None
        new_ann: DiceDataset | None = None
        removed_anns = 0
        if ds.labeled:
            old_bytes = ext.get_bytes(ann_key)
            data = json.loads(old_bytes)
            gone = {img.get("id") for img in data.get("images", []) if _norm(img.get("file_name")) == rel}
            if gone:
                data["images"] = [img for img in data["images"] if img.get("id") not in gone]
                kept = [a for a in data.get("annotations", []) if a.get("image_id") not in gone]
                removed_anns = len(data.get("annotations", [])) - len(kept)
                data["annotations"] = kept
                new_bytes = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                new_ann = DiceDataset.model_validate(data)
        broken: list[DatasetSnapshot] = []
        for snap in ctx.db.scalars(select(DatasetSnapshot).where(DatasetSnapshot.dataset_id == ds.id)):
            if rel in set(snap.file_names or []):
                snap.status = "broken"
                snap.missing_files = sorted(set(snap.missing_files or []) | {rel})
                broken.append(snap)
        wrote = False
        try:
            if new_bytes is not None:
                ext.put_bytes(ann_key, new_bytes, content_type="application/json")
                wrote = True
            ctx.db.delete(row)
            ds.num_images = max(0, (ds.num_images or 0) - 1)
            ds.total_bytes = max(0, (ds.total_bytes or 0) - (row.size_bytes or 0))
            if new_ann is not None and new_bytes is not None:
                ds.num_annotations = len(new_ann.annotations)
                ds.capabilities = summarize(new_ann)["tasks"]
                ds.annotations_sha256 = hashlib.sha256(new_bytes).hexdigest()
            ds.updated_at = utcnow()
            ctx.db.commit()
        except BaseException:
            ctx.db.rollback()
            if wrote and old_bytes is not None:
                try:
                    ext.put_bytes(ann_key, old_bytes, content_type="application/json")
                except Exception as exc:  # pragma: no cover
                    log.error("could not restore %s: %s", ann_key, exc)
            raise
        result = ImageDeleteOut(
            deleted=deleted,
            removed_annotations=removed_anns,
            broken_snapshots=[snapshot_out(s) for s in broken],
            dataset=dataset_out(ctx, ds),
        )
    keys = [dataset_image_key(dataset_id, rel)] + [thumbnail_key(dataset_id, s, int(image_id)) for s in THUMBNAIL_SIZES]
    for key in keys:
        try:
            ext.delete(key)
        except StorageError as exc:
            log.warning("image %s deleted, but %s could not be removed: %s", image_id, key, exc)
    return result
