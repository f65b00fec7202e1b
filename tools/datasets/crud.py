"""Create, list, read, edit, delete and resolve datasets (the owner/visibility rules are in
`tools.datasets.common`). Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import difflib
import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tools.context import ToolContext, require_user
from tools.datasets.annotations import _forget_annotations
from tools.datasets.common import (
    _ID_RE,
    LIST_CLASS_NAMES,
    SORT_FIELDS,
    _clean_description,
    _clean_name,
    _clean_visibility,
    _owned_row,
    _readable,
    _snapshot_counts,
    dataset_out,
    get_dataset_row,
)
from tools.datasets.locks import dataset_write_lock
from tools.datasets.models import DatasetDeleted, DatasetOut, DatasetPage
from tools.db.models import Dataset, utcnow
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from trainer_runtime.errors import StorageError

log = logging.getLogger(__name__)


def create_dataset(ctx: ToolContext, name: str, description: str = "", visibility: str = "private") -> DatasetOut:
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
    return dataset_out(ctx, ds, 0)


def list_datasets(
    ctx: ToolContext,
    q: str | None = None,
    sort: str = "-updated_at",
    offset: int = 0,
    limit: int = 50,
    mine: bool = False,
    visibility: str | None = None,
) -> DatasetPage:
    """Datasets the caller can see: their own plus every public one.

    q: case-insensitive text to find in the name or description.
    sort: one of name, created_at, updated_at, num_images, num_annotations; prefix "-" for descending.
    offset, limit: pagination (limit 1..500).
    mine: only the caller's own datasets. visibility: "private" or "public" to filter.
    Returns a page of datasets (items, total, offset, limit); each dataset lists its first
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
    return DatasetPage(
        items=[dataset_out(ctx, r, counts.get(r.id, 0), class_limit=LIST_CLASS_NAMES) for r in rows],
        total=int(total),
        offset=offset,
        limit=limit,
    )


def get_dataset(ctx: ToolContext, dataset_id: str) -> DatasetOut:
    """One dataset the caller can see, by id (404 for unknown ids and other users' private ones)."""
    return dataset_out(ctx, get_dataset_row(ctx, dataset_id))


def update_dataset(
    ctx: ToolContext,
    dataset_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    visibility: str | None = None,
) -> DatasetOut:
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
    return dataset_out(ctx, ds)


def delete_dataset(ctx: ToolContext, dataset_id: str) -> DatasetDeleted:
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
    return DatasetDeleted(deleted=dataset_id, objects_deleted=removed)


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
