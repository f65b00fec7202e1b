"""Datasets: the operations the REST API and the agent share.

Rules (seed "데이터셋 인증/권한 구현", "데이터셋 관리 UI 통합 및 설계 논의"):

* Every operation needs a signed-in user (`ctx.user`). A public dataset is visible to every
  signed-in user, a private one only to its owner: to anyone else it does not exist (404, never 403).
  Only the owner uploads, edits, deletes, snapshots; others who can see it get 403.
* Create, then upload. ``labeled`` means annotations.json exists. A labeled upload is never merged
  into a labeled dataset (409). An unlabeled upload adds images; a labeled upload into an
  unlabeled dataset may reference the images already there.
* An upload is staged (`tools.uploads`), fully validated, written to the external store under new
  keys, then committed in one DB transaction; any failure deletes what was written. Writers of one
  dataset are serialised (a row lock on PostgreSQL plus a per-dataset lock in this process).
* A snapshot freezes annotations.json (images are shared). Deleting an image rewrites the live
  annotations.json without it and marks every snapshot that references the file ``broken``.

Functions take `ctx: ToolContext` first and return JSON-ready dicts (ids are strings of 32 hex
characters for datasets and snapshots, integers for images), except `resolve_dataset` and
`get_dataset_row`, which return the ORM row for other tools.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import logging
import mimetypes
import re
import tempfile
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tools.context import ToolContext, UploadLimits, iso_utc, require_user
from tools.db.models import Dataset, DatasetImage, DatasetSnapshot, User, new_id, utcnow
from tools.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
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
from trainer_runtime.errors import DatasetFormatError, ObjectNotFoundError, StorageError
from trainer_runtime.formats.capabilities import check_compatibility, summarize
from trainer_runtime.formats.images import probe_image
from trainer_runtime.formats.limits import describe_char, unsafe_char
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.schema import TASK_TYPES, DiceDataset
from trainer_runtime.formats.validate import load_annotations, validate_dataset
from trainer_runtime.storage import (
    DualStorageClient,
    dataset_annotations_key,
    dataset_image_key,
    dataset_prefix,
    snapshot_annotations_key,
)

log = logging.getLogger(__name__)

VISIBILITIES = ("private", "public")
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 10_000
THUMBNAIL_SIZES = (32, 64, 128, 256, 512)
"""Thumbnail edge lengths kept in the cache; a requested size is rounded up to one of them."""
SORT_FIELDS = ("name", "created_at", "updated_at", "num_images", "num_annotations")
LABELED_CONFLICT = (
    "a labeled folder is never merged into a labeled dataset; create a new dataset or delete the annotations first"
)
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
LIST_CLASS_NAMES = 50
"""Class names a dataset lists in `list_datasets` (the rest is counted in ``class_count``)."""
SHOWN_NAME_CHARS = 200
"""A stored class name longer than this (only datasets from before names were limited) is shortened."""


# ------------------------------------------------------------------------------------ helpers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _clean_name(name: Any, *, what: str = "name") -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} must be a string", detail={"field": what})
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise InvalidInputError(f"{what} must be 1 to {MAX_NAME_CHARS} characters long", detail={"field": what})
    ch = unsafe_char(name)
    if ch is not None:
        raise InvalidInputError(
            f"{what} must not contain control or bidirectional-override characters ({describe_char(ch)})",
            detail={"field": what},
        )
    return name


def _clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise InvalidInputError("description must be a string", detail={"field": "description"})
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInputError(
            f"description is longer than {MAX_DESCRIPTION_CHARS} characters", detail={"field": "description"}
        )
    ch = unsafe_char(description, allow_newlines=True)
    if ch is not None:
        raise InvalidInputError(
            f"description must not contain control or bidirectional-override characters ({describe_char(ch)})",
            detail={"field": "description"},
        )
    return description


def _clean_visibility(visibility: Any) -> str:
    if visibility not in VISIBILITIES:
        raise InvalidInputError(
            f"visibility must be one of {', '.join(VISIBILITIES)} (got {visibility!r})",
            detail={"field": "visibility"},
        )
    return str(visibility)


def _is_owner(ctx: ToolContext, ds: Dataset) -> bool:
    return ctx.user is not None and ds.owner_id == ctx.user.id


def _readable(ctx: ToolContext, ds: Dataset) -> bool:
    return ds.visibility == "public" or _is_owner(ctx, ds)


def _not_found(dataset_id: Any) -> NotFoundError:
    return NotFoundError(f"dataset {dataset_id} not found", detail={"dataset_id": str(dataset_id)})


def get_dataset_row(ctx: ToolContext, dataset_id: str) -> Dataset:
    """The dataset row if the caller may see it (own or public), else NotFoundError."""
    require_user(ctx, "datasets")
    if not isinstance(dataset_id, str) or not _ID_RE.match(dataset_id):
        raise _not_found(dataset_id)
    ds = ctx.db.get(Dataset, dataset_id)
    if ds is None or not _readable(ctx, ds):
        raise _not_found(dataset_id)
    return ds


def _owned_row(ctx: ToolContext, dataset_id: str, action: str) -> Dataset:
    ds = get_dataset_row(ctx, dataset_id)
    if not _is_owner(ctx, ds):
        raise PermissionDeniedError(
            f"only the owner of dataset {ds.name!r} can {action} it", detail={"dataset_id": ds.id}
        )
    return ds


# ------------------------------------------------------------------ per-dataset write lock

_locks_guard = threading.Lock()
_locks: dict[str, threading.RLock] = {}


def _lock_for(dataset_id: str) -> threading.RLock:
    with _locks_guard:
        lock = _locks.get(dataset_id)
        if lock is None:
            lock = _locks[dataset_id] = threading.RLock()
        return lock


@contextmanager
def dataset_write_lock(ctx: ToolContext, dataset_id: str) -> Iterator[Dataset]:
    """Serialise writers of one dataset: a lock in this process, and ``SELECT ... FOR UPDATE`` on
    databases that have row locks. Yields the freshly read row; rolls back on error. The caller
    commits inside the block (which releases the row lock)."""
    with _lock_for(dataset_id):
        stmt = select(Dataset).where(Dataset.id == dataset_id).execution_options(populate_existing=True)
        if ctx.db.get_bind().dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        try:
            ds = ctx.db.execute(stmt).scalar_one_or_none()
            if ds is None:
                raise _not_found(dataset_id)
            yield ds
        except BaseException:
            ctx.db.rollback()
            raise


def _delete_objects(storage: DualStorageClient, keys: list[str]) -> None:
    """Compensation: remove objects written by a failed operation (best effort, logged)."""
    for key in reversed(keys):
        try:
            storage.external.delete(key)
        except Exception as exc:  # pragma: no cover - storage down while compensating
            log.error("could not remove %s after a failed commit: %s", key, exc)


def _snapshot_counts(db: Session, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = db.execute(
        select(DatasetSnapshot.dataset_id, func.count())
        .where(DatasetSnapshot.dataset_id.in_(ids))
        .group_by(DatasetSnapshot.dataset_id)
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def _capabilities(ds: Dataset) -> dict[str, Any]:
    if ds.labeled and ds.capabilities:
        return dict(ds.capabilities)
    return {t: check_compatibility(None, t, dataset_name=ds.name) for t in TASK_TYPES}


def class_names_preview(names: Any, limit: int | None = None) -> list[str]:
    """Class names for display: at most `limit` of them (all when None), each at most
    `SHOWN_NAME_CHARS` characters (names are limited at upload; older rows may hold longer ones)."""
    shown = list(names or [])[:limit] if limit is not None else list(names or [])
    return [
        n if isinstance(n, str) and len(n) <= SHOWN_NAME_CHARS else str(n)[:SHOWN_NAME_CHARS] + "\u2026" for n in shown
    ]


def dataset_dict(
    ctx: ToolContext, ds: Dataset, snapshots_count: int | None = None, *, class_limit: int | None = None
) -> dict[str, Any]:
    """The dataset as JSON (the REST shape). `class_limit` keeps that many class names (lists);
    ``class_count`` always says how many there are."""
    if snapshots_count is None:
        snapshots_count = _snapshot_counts(ctx.db, [ds.id]).get(ds.id, 0)
    return {
        "id": ds.id,
        "name": ds.name,
        "description": ds.description,
        "visibility": ds.visibility,
        "owner_id": ds.owner_id,
        "is_owner": _is_owner(ctx, ds),
        "labeled": ds.labeled,
        "format_version": ds.format_version,
        "num_images": ds.num_images,
        "num_annotations": ds.num_annotations,
        "total_bytes": ds.total_bytes,
        "class_names": class_names_preview(ds.class_names, class_limit),
        "class_count": len(ds.class_names or []),
        "capabilities": _capabilities(ds),
        "annotations_sha256": ds.annotations_sha256,
        "created_at": iso_utc(ds.created_at),
        "updated_at": iso_utc(ds.updated_at),
        "is_demo": ds.is_demo,
        "snapshots_count": snapshots_count,
    }


# ------------------------------------------------------------------------------- CRUD


def create_dataset(ctx: ToolContext, name: str, description: str = "", visibility: str = "private") -> dict[str, Any]:
    """Create an empty dataset owned by the caller; upload images (and annotations) afterwards.

    name: 1..200 characters, unique among the caller's datasets (409 otherwise).
    description: free text shown to people.
    visibility: "private" (only the owner sees it) or "public" (every signed-in user sees it).
    """
    user = require_user(ctx, "datasets")
    name = _clean_name(name)
    description = _clean_description(description)
    visibility = _clean_visibility(visibility)
    clash = ctx.db.scalar(select(Dataset.id).where(Dataset.owner_id == user.id, Dataset.name == name))
    if clash is not None:
        raise ConflictError(f"you already have a dataset named {name!r}", detail={"dataset_id": clash})
    ds = Dataset(owner_id=user.id, name=name, description=description, visibility=visibility)
    ctx.db.add(ds)
    try:
        ctx.db.commit()
    except IntegrityError:
        ctx.db.rollback()
        raise ConflictError(f"you already have a dataset named {name!r}") from None
    return dataset_dict(ctx, ds, 0)


def list_datasets(
    ctx: ToolContext,
    q: str | None = None,
    sort: str = "-updated_at",
    offset: int = 0,
    limit: int = 50,
    mine: bool = False,
    visibility: str | None = None,
) -> dict[str, Any]:
    """Datasets the caller can see: their own plus every public one.

    q: case-insensitive text to find in the name or description.
    sort: one of name, created_at, updated_at, num_images, num_annotations; prefix "-" for descending.
    offset, limit: pagination (limit 1..500).
    mine: only the caller's own datasets. visibility: "private" or "public" to filter.
    Returns {"items": [dataset...], "total", "offset", "limit"}; each dataset lists its first
    `LIST_CLASS_NAMES` class names (``class_count`` has the number of all).
    """
    user = require_user(ctx, "datasets")
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInputError("limit must be 1..500 and offset >= 0", detail={"field": "limit"})
    desc = sort.startswith("-")
    key = sort.lstrip("-+")
    if key not in SORT_FIELDS:
        raise InvalidInputError(
            f"sort must be one of {', '.join(SORT_FIELDS)} (prefix - for descending)",
            detail={"field": "sort"},
        )
    cond = Dataset.owner_id == user.id
    if not mine:
        cond = cond | (Dataset.visibility == "public")
    stmt = select(Dataset).where(cond)
    if visibility is not None:
        stmt = stmt.where(Dataset.visibility == _clean_visibility(visibility))
    if q:
        stmt = stmt.where(
            Dataset.name.icontains(q, autoescape=True) | Dataset.description.icontains(q, autoescape=True)
        )
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    col = getattr(Dataset, key)
    stmt = stmt.order_by(col.desc() if desc else col.asc(), Dataset.id.asc()).offset(offset).limit(limit)
    rows = list(ctx.db.scalars(stmt))
    counts = _snapshot_counts(ctx.db, [r.id for r in rows])
    return {
        "items": [dataset_dict(ctx, r, counts.get(r.id, 0), class_limit=LIST_CLASS_NAMES) for r in rows],
        "total": int(total),
        "offset": offset,
        "limit": limit,
    }


def get_dataset(ctx: ToolContext, dataset_id: str) -> dict[str, Any]:
    """One dataset the caller can see, by id (404 for unknown ids and other users' private ones)."""
    return dataset_dict(ctx, get_dataset_row(ctx, dataset_id))


def update_dataset(
    ctx: ToolContext,
    dataset_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    visibility: str | None = None,
) -> dict[str, Any]:
    """Rename, re-describe or change the visibility of one of the caller's datasets (owner only).

    Arguments left as None keep their value.
    """
    ds = _owned_row(ctx, dataset_id, "edit")
    if name is not None:
        name = _clean_name(name)
        if name != ds.name:
            clash = ctx.db.scalar(
                select(Dataset.id).where(Dataset.owner_id == ds.owner_id, Dataset.name == name, Dataset.id != ds.id)
            )
            if clash is not None:
                raise ConflictError(f"you already have a dataset named {name!r}", detail={"dataset_id": clash})
            ds.name = name
    if description is not None:
        ds.description = _clean_description(description)
    if visibility is not None:
        ds.visibility = _clean_visibility(visibility)
    ds.updated_at = utcnow()
    try:
        ctx.db.commit()
    except IntegrityError:
        ctx.db.rollback()
        raise ConflictError(f"you already have a dataset named {name!r}") from None
    return dataset_dict(ctx, ds)


def delete_dataset(ctx: ToolContext, dataset_id: str) -> dict[str, Any]:
    """Delete one of the caller's datasets with its images, annotations, snapshots and thumbnails
    (owner only). Returns {"deleted": id, "objects_deleted": n}."""
    _owned_row(ctx, dataset_id, "delete")
    with dataset_write_lock(ctx, dataset_id) as ds:
        ctx.db.delete(ds)
        ctx.db.commit()
    try:
        removed = ctx.storage.delete_dataset(dataset_id)
    except StorageError as exc:  # the rows are gone; leftovers are invisible and logged
        log.error("dataset %s deleted, but its objects could not all be removed: %s", dataset_id, exc)
        removed = 0
    _forget_annotations(dataset_id)
    return {"deleted": dataset_id, "objects_deleted": removed}


def resolve_dataset(ctx: ToolContext, name_or_id: str) -> Dataset:
    """Find a dataset the caller can use from what a person wrote: an id, or a name.

    A name is looked up among the caller's own datasets first, then among public ones (exact,
    then case-insensitive). Several public datasets with that name -> ConflictError listing them;
    nothing -> NotFoundError suggesting close names.
    """
    user = require_user(ctx, "datasets")
    if not isinstance(name_or_id, str) or not name_or_id.strip():
        raise InvalidInputError("name a dataset (its name or id)", detail={"field": "dataset"})
    text = name_or_id.strip()
    if _ID_RE.match(text):
        row = ctx.db.get(Dataset, text)
        if row is not None and _readable(ctx, row):
            return row
    for exact in (True, False):
        name_cond = Dataset.name == text if exact else func.lower(Dataset.name) == text.lower()
        own = list(ctx.db.scalars(select(Dataset).where(Dataset.owner_id == user.id, name_cond)))
        if len(own) == 1:
            return own[0]
        public = list(
            ctx.db.scalars(
                select(Dataset)
                .where(Dataset.visibility == "public", Dataset.owner_id != user.id, name_cond)
                .order_by(Dataset.created_at)
            )
        )
        if len(own) + len(public) == 1:
            return (own + public)[0]
        if len(own) + len(public) > 1:
            cands = own + public
            listing = ", ".join(f"{d.id} (owner {d.owner_id})" for d in cands)
            raise ConflictError(
                f"{len(cands)} datasets are named {text!r}: {listing}; use the dataset id",
                detail={"candidates": [{"id": d.id, "name": d.name, "owner_id": d.owner_id} for d in cands]},
            )
    visible = list(
        ctx.db.scalars(
            select(Dataset.name).where((Dataset.owner_id == user.id) | (Dataset.visibility == "public")).limit(5000)
        )
    )
    lowered = {n.lower(): n for n in visible}
    close = [lowered[c] for c in difflib.get_close_matches(text.lower(), list(lowered), n=5, cutoff=0.5)]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise NotFoundError(f"no dataset named {text!r}{hint}", detail={"suggestions": close})


# ------------------------------------------------------------------------------- uploads


@dataclass
class _Prepared:
    fmt: str
    layout: DiceLayout
    infos: dict[str, Any]
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
    infos: dict[str, Any] = {}
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


def storage_used(db: Session, owner_id: int) -> int:
    """Bytes of images the user's datasets hold (the sum of their ``total_bytes``) and of the
    weights files they uploaded (`tools.user_weights`)."""
    from tools.user_weights import storage_bytes

    used = db.scalar(select(func.coalesce(func.sum(Dataset.total_bytes), 0)).where(Dataset.owner_id == owner_id))
    return int(used or 0) + storage_bytes(db, owner_id)


def _check_quota(ctx: ToolContext, owner_id: int, adding: int) -> None:
    """PayloadTooLargeError (413) when `adding` bytes would take the user over their storage quota
    (``limits.user_storage_quota_bytes``; 0 = none). `adding` 0 asks whether the user is already full."""
    quota = ctx.limits.user_storage_quota_bytes
    if not quota:
        return
    used = storage_used(ctx.db, owner_id)
    if adding and used + adding > quota:
        message = f"this upload adds {adding} bytes to the {used} bytes your datasets hold"
    elif not adding and used >= quota:
        message = f"your datasets hold {used} bytes"
    else:
        return
    raise PayloadTooLargeError(
        f"storage quota exceeded: {message}; your quota is {quota} bytes (delete images or datasets first)",
        detail={"quota_bytes": quota, "used_bytes": used, "upload_bytes": adding},
    )


def _commit_upload(ctx: ToolContext, dataset_id: str, prep: _Prepared) -> dict[str, Any]:
    """Commit under the per-dataset lock and, with a storage quota, one lock per user (in this
    process; on PostgreSQL also the user's row) so that two uploads cannot both fit the last bytes."""
    if not ctx.limits.user_storage_quota_bytes:
        return _commit_upload_locked(ctx, dataset_id, prep)
    user = require_user(ctx, "datasets")
    with _lock_for(f"user:{user.id}"):
        return _commit_upload_locked(ctx, dataset_id, prep)


def _commit_upload_locked(ctx: ToolContext, dataset_id: str, prep: _Prepared) -> dict[str, Any]:
    ann = prep.annotations
    with dataset_write_lock(ctx, dataset_id) as ds:
        if ann is not None and ds.labeled:
            raise ConflictError(
                f"dataset {ds.name!r} is already labeled: {LABELED_CONFLICT}", detail={"dataset_id": ds.id}
            )
        existing = {
            r.file_name: r for r in ctx.db.scalars(select(DatasetImage).where(DatasetImage.dataset_id == ds.id))
        }
        new: dict[str, Any] = {}
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
        index: dict[str, tuple[int, int]] = {}
        if ann is not None:
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
            index = _annotation_index(ann)
        result_base = {
            "format": prep.fmt,
            "labeled_upload": ann is not None,
            "added": len(new),
            "skipped": sorted(skipped),
            "ignored": prep.layout.ignored,
            "stripped_prefix": prep.stripped_prefix,
        }
        if not new and ann is None:
            ctx.db.rollback()
            return {**result_base, "dataset": dataset_dict(ctx, ds)}
        if ctx.limits.user_storage_quota_bytes and new:
            if ctx.db.get_bind().dialect.name != "sqlite":
                ctx.db.execute(select(User.id).where(User.id == ds.owner_id).with_for_update())
            _check_quota(ctx, ds.owner_id, sum(info.size_bytes for info in new.values()))
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
        return {**result_base, "dataset": dataset_dict(ctx, ds)}


def check_can_upload(ctx: ToolContext, dataset_id: str) -> None:
    """Raise unless the caller may upload to the dataset (404 hidden / 403 not the owner; 413 when
    the owner's datasets already fill their storage quota), before any body is read."""
    ds = _owned_row(ctx, dataset_id, "upload to")
    _check_quota(ctx, ds.owner_id, 0)


def upload_staged(ctx: ToolContext, dataset_id: str, staging: Staging, format: str = "auto") -> dict[str, Any]:
    """Validate and commit what `staging` received (files and/or a zip) into the dataset.

    format: auto | dice | yolo | coco | imagefolder | images (plain images, unlabeled).
    Returns {"dataset", "format", "labeled_upload", "added", "skipped", "ignored", "stripped_prefix"}.
    Nothing is visible unless everything validated and was stored.
    """
    ds = _owned_row(ctx, dataset_id, "upload to")
    tree = staging.collect()
    prep = _prepare(ctx, ds.name, tree, format, staging)
    return _commit_upload(ctx, dataset_id, prep)


def upload_path(ctx: ToolContext, dataset_id: str, path: str | Path, format: str = "auto") -> dict[str, Any]:
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


# -------------------------------------------------------------------------------- images

_ann_cache_lock = threading.Lock()
_ann_cache: OrderedDict[tuple[str, str], dict[int, list[dict[str, Any]]]] = OrderedDict()
_ANN_CACHE_SIZE = 4


def _forget_annotations(dataset_id: str) -> None:
    with _ann_cache_lock:
        for key in [k for k in _ann_cache if k[0] == dataset_id]:
            del _ann_cache[key]


def _annotations_by_image(ctx: ToolContext, ds: Dataset) -> dict[int, list[dict[str, Any]]]:
    if not ds.labeled or not ds.annotations_sha256:
        return {}
    key = (ds.id, ds.annotations_sha256)
    with _ann_cache_lock:
        hit = _ann_cache.get(key)
        if hit is not None:
            _ann_cache.move_to_end(key)
            return hit
    data = json.loads(ctx.storage.external.get_bytes(dataset_annotations_key(ds.id)))
    out: dict[int, list[dict[str, Any]]] = {}
    for a in data.get("annotations", []):
        out.setdefault(a.get("image_id"), []).append(a)
    with _ann_cache_lock:
        _ann_cache[key] = out
        while len(_ann_cache) > _ANN_CACHE_SIZE:
            _ann_cache.popitem(last=False)
    return out


def _image_dict(row: DatasetImage) -> dict[str, Any]:
    return {
        "id": row.id,
        "file_name": row.file_name,
        "width": row.width,
        "height": row.height,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "annotation_image_id": row.annotation_image_id,
        "num_annotations": row.num_annotations,
        "created_at": iso_utc(row.created_at),
    }


def list_images(
    ctx: ToolContext,
    dataset_id: str,
    offset: int = 0,
    limit: int = 50,
    prefix: str | None = None,
    include_annotations: bool = False,
) -> dict[str, Any]:
    """A page of the dataset's images, sorted by file name (the gallery).

    prefix: only files whose relative path starts with it (e.g. "train/").
    include_annotations: add each image's annotations from the live annotations.json.
    Returns {"items": [{"id", "file_name", "width", "height", "size_bytes", "num_annotations", ...}],
    "total", "offset", "limit"}.
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
    items = [_image_dict(r) for r in rows]
    if include_annotations:
        by_image = _annotations_by_image(ctx, ds)
        for item in items:
            aid = item["annotation_image_id"]
            item["annotations"] = by_image.get(aid, []) if aid is not None else []
    return {"items": items, "total": int(total), "offset": offset, "limit": limit}


def _image_row(ctx: ToolContext, ds: Dataset, image_id: int) -> DatasetImage:
    row = ctx.db.get(DatasetImage, image_id) if isinstance(image_id, int) else None
    if row is None or row.dataset_id != ds.id:
        raise NotFoundError(f"image {image_id} not found in dataset {ds.name!r}", detail={"image_id": image_id})
    return row


def get_image(ctx: ToolContext, dataset_id: str, image_id: int) -> dict[str, Any]:
    """One image's facts and its annotations."""
    ds = get_dataset_row(ctx, dataset_id)
    row = _image_row(ctx, ds, image_id)
    item = _image_dict(row)
    aid = row.annotation_image_id
    item["annotations"] = _annotations_by_image(ctx, ds).get(aid, []) if aid is not None else []
    return item


@dataclass(frozen=True)
class StoredFile:
    """Where to stream a stored file from: external-store `key`, `content_type`, `size`, `filename`."""

    key: str
    content_type: str
    size: int | None
    filename: str
    etag: str | None = None


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


def delete_image(ctx: ToolContext, dataset_id: str, image_id: int) -> dict[str, Any]:
    """Delete one image (owner only): its file, its entry and annotations in the live
    annotations.json, its thumbnails. Snapshots that reference the file become ``broken``.

    Returns {"deleted": image, "removed_annotations": n, "broken_snapshots": [snapshot...], "dataset"}.
    """
    _owned_row(ctx, dataset_id, "delete images of")
    ext = ctx.storage.external
    with dataset_write_lock(ctx, dataset_id) as ds:
        row = _image_row(ctx, ds, image_id)
        rel = row.file_name
        deleted = _image_dict(row)
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
        result = {
            "deleted": deleted,
            "removed_annotations": removed_anns,
            "broken_snapshots": [snapshot_dict(s) for s in broken],
            "dataset": dataset_dict(ctx, ds),
        }
    keys = [dataset_image_key(dataset_id, rel)] + [thumbnail_key(dataset_id, s, int(image_id)) for s in THUMBNAIL_SIZES]
    for key in keys:
        try:
            ext.delete(key)
        except StorageError as exc:
            log.warning("image %s deleted, but %s could not be removed: %s", image_id, key, exc)
    return result


def _norm(name: Any) -> str | None:
    try:
        return safe_relpath(name) if isinstance(name, str) else None
    except DatasetFormatError:
        return None


# --------------------------------------------------------------------- annotations, compat


def annotations_file(ctx: ToolContext, dataset_id: str, snapshot_id: str | None = None) -> StoredFile:
    """Where the live annotations.json (or a snapshot's) is, for downloading it.
    An unlabeled dataset has none (404)."""
    ds = get_dataset_row(ctx, dataset_id)
    if snapshot_id is not None:
        snap = _snapshot_row(ctx, ds, snapshot_id)
        key = snapshot_annotations_key(ds.id, snap.id)
        filename = f"{ds.name}-v{snap.version}-annotations.json"
        etag = snap.annotations_sha256
    else:
        if not ds.labeled:
            raise NotFoundError(
                f"dataset {ds.name!r} is unlabeled: it has no annotations.json", detail={"dataset_id": ds.id}
            )
        key = dataset_annotations_key(ds.id)
        filename = f"{ds.name}-annotations.json"
        etag = ds.annotations_sha256
    info = ctx.storage.external.stat(key)
    safe_filename = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)
    return StoredFile(key, "application/json", info.size, safe_filename, f'"{etag}"' if etag else None)


def check_dataset_compatibility(ctx: ToolContext, dataset_id: str, task_type: str | None = None) -> dict[str, Any]:
    """Can this dataset train a task? (DESIGN contract 3.)

    task_type: image_classification, object_detection, instance_segmentation, pose_estimation or
    oriented_object_detection; None for every task.
    One task -> {"task_type", "status": native|convertible|incompatible, "conversion", "reason"};
    all -> {"dataset_id", "dataset_name", "labeled", "tasks": {task_type: result}}.
    """
    ds = get_dataset_row(ctx, dataset_id)
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidInputError(
            f"unknown task_type {task_type!r}; valid: {', '.join(TASK_TYPES)}", detail={"field": "task_type"}
        )
    caps = _capabilities(ds)
    if task_type is not None:
        res = caps.get(task_type) or check_compatibility(None, task_type, dataset_name=ds.name)
        return {"task_type": task_type, "dataset_id": ds.id, **res}
    return {"dataset_id": ds.id, "dataset_name": ds.name, "labeled": ds.labeled, "tasks": caps}


# ------------------------------------------------------------------------------ snapshots


def snapshot_dict(s: DatasetSnapshot) -> dict[str, Any]:
    return {
        "id": s.id,
        "dataset_id": s.dataset_id,
        "version": s.version,
        "name": s.name,
        "status": s.status,
        "missing_files": list(s.missing_files or []),
        "num_images": s.num_images,
        "num_annotations": s.num_annotations,
        "annotations_sha256": s.annotations_sha256,
        "created_by": s.created_by,
        "created_at": iso_utc(s.created_at),
    }


def _snapshot_row(ctx: ToolContext, ds: Dataset, snapshot_id: str) -> DatasetSnapshot:
    snap = (
        ctx.db.get(DatasetSnapshot, snapshot_id) if isinstance(snapshot_id, str) and _ID_RE.match(snapshot_id) else None
    )
    if snap is None or snap.dataset_id != ds.id:
        raise NotFoundError(
            f"snapshot {snapshot_id} not found in dataset {ds.name!r}", detail={"snapshot_id": snapshot_id}
        )
    return snap


def create_snapshot(
    ctx: ToolContext, dataset_id: str, name: str | None = None, *, require_owner: bool = True
) -> dict[str, Any]:
    """Freeze the dataset's current annotations.json as version 1, 2, 3... (images are shared).

    name: an optional label such as "before relabeling". Only labeled datasets can be
    snapshotted (409 otherwise). require_owner=False lets a reader of a public dataset snapshot it
    (used when a training job starts); the REST API always requires the owner.
    Returns the snapshot {"id", "version", "name", "status", "missing_files", ...}.
    """
    user = require_user(ctx, "datasets")
    if require_owner:
        _owned_row(ctx, dataset_id, "snapshot")
    else:
        get_dataset_row(ctx, dataset_id)
    label = "" if name is None or not str(name).strip() else _clean_name(name, what="snapshot name")
    ext = ctx.storage.external
    with dataset_write_lock(ctx, dataset_id) as ds:
        if not ds.labeled:
            raise ConflictError(
                f"dataset {ds.name!r} is unlabeled: nothing to snapshot (upload annotations.json first)",
                detail={"dataset_id": ds.id},
            )
        data = json.loads(ext.get_bytes(dataset_annotations_key(ds.id)))
        file_names = [n for n in (_norm(img.get("file_name")) for img in data.get("images", [])) if n]
        present = set(ctx.db.scalars(select(DatasetImage.file_name).where(DatasetImage.dataset_id == ds.id)))
        missing = sorted(set(file_names) - present)
        version = (
            ctx.db.scalar(select(func.max(DatasetSnapshot.version)).where(DatasetSnapshot.dataset_id == ds.id)) or 0
        ) + 1
        sid = new_id()
        key = snapshot_annotations_key(ds.id, sid)
        snap = DatasetSnapshot(
            id=sid,
            dataset_id=ds.id,
            version=version,
            name=label,
            created_by=user.id,
            annotations_sha256=ds.annotations_sha256,
            num_images=len(file_names),
            num_annotations=len(data.get("annotations", [])),
            file_names=file_names,
            status="broken" if missing else "ok",
            missing_files=missing,
        )
        written: list[str] = []
        try:
            ext.copy(dataset_annotations_key(ds.id), key)
            written.append(key)
            ctx.db.add(snap)
            ctx.db.commit()
        except BaseException:
            ctx.db.rollback()
            _delete_objects(ctx.storage, written)
            raise
        return snapshot_dict(snap)


def list_snapshots(ctx: ToolContext, dataset_id: str) -> list[dict[str, Any]]:
    """The dataset's snapshots, newest version first."""
    ds = get_dataset_row(ctx, dataset_id)
    rows = ctx.db.scalars(
        select(DatasetSnapshot).where(DatasetSnapshot.dataset_id == ds.id).order_by(DatasetSnapshot.version.desc())
    )
    return [snapshot_dict(s) for s in rows]


def get_snapshot(ctx: ToolContext, dataset_id: str, snapshot_id: str) -> dict[str, Any]:
    """One snapshot: status ok or broken, and the image files it misses."""
    ds = get_dataset_row(ctx, dataset_id)
    return snapshot_dict(_snapshot_row(ctx, ds, snapshot_id))


# ------------------------------------------------------------------------- demo datasets


def ensure_demo_datasets(session_factory: sessionmaker[Session], storage: DualStorageClient, work_dir: Path) -> None:
    """Make the built-in public demo datasets (digits, shapes-demo, poses-demo), owned by the system
    user, through the same ingest path as uploads. Idempotent: when all are present nothing is
    built; a present dataset whose annotations sha256 equals the freshly built one is skipped."""
    from tools.auth import ensure_system_user
    from tools.demo_datasets import DEMO_DATASETS, build_all

    work_dir = Path(work_dir)
    with session_factory() as db:
        system = ensure_system_user(db)
        ctx = ToolContext(db=db, user=system, storage=storage, work_dir=work_dir, limits=UploadLimits())
        names = list(DEMO_DATASETS)
        present = {
            d.name: d for d in db.scalars(select(Dataset).where(Dataset.owner_id == system.id, Dataset.name.in_(names)))
        }
        todo = [n for n in names if n not in present or not present[n].labeled or not present[n].annotations_sha256]
        if not todo:
            return
        built = build_all(work_dir / "demo", names=todo)
        for name in todo:
            folder = built.get(name)
            if folder is None:
                continue
            sha = _sha256_file(Path(folder) / "annotations.json")
            ds = present.get(name)
            if ds is not None and ds.labeled and ds.annotations_sha256 == sha:
                continue
            if ds is not None:
                _clear_contents(ctx, ds)
            else:
                ds = Dataset(
                    owner_id=system.id,
                    name=name,
                    description=DEMO_DATASETS[name],
                    visibility="public",
                    is_demo=True,
                )
                db.add(ds)
                try:
                    db.commit()
                except IntegrityError:  # another worker made it just now
                    db.rollback()
                    continue
            try:
                upload_path(ctx, ds.id, folder, format="dice")
            except ConflictError:  # another worker ingested it meanwhile
                db.rollback()
            log.info("demo dataset %s ready (%s)", name, ds.id)


def _clear_contents(ctx: ToolContext, ds: Dataset) -> None:
    """Remove a dataset's images and annotations (rows and objects), keeping the dataset row."""
    with dataset_write_lock(ctx, ds.id) as row:
        for img in list(ctx.db.scalars(select(DatasetImage).where(DatasetImage.dataset_id == row.id))):
            ctx.db.delete(img)
        for snap in ctx.db.scalars(select(DatasetSnapshot).where(DatasetSnapshot.dataset_id == row.id)):
            snap.status = "broken"
            snap.missing_files = list(snap.file_names or [])
        row.labeled = False
        row.num_images = row.num_annotations = row.total_bytes = 0
        row.class_names, row.capabilities = [], {}
        row.annotations_sha256 = None
        row.format_version = None
        ctx.db.commit()
    prefix = dataset_prefix(ds.id)
    for sub in ("images/", "thumbnails/"):
        ctx.storage.external.delete_prefix(prefix + sub)
    ctx.storage.external.delete(dataset_annotations_key(ds.id))
    _forget_annotations(ds.id)
