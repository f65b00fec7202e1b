"""Shared pieces of the dataset operations: limits and field checks, visibility and ownership
(`get_dataset_row`), a dataset in its REST shape (`dataset_out`), compensation of written objects.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tools.context import ToolContext, iso_utc, require_user
from tools.datasets.models import Compatibility, DatasetOut
from tools.db.models import Dataset, DatasetSnapshot
from tools.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from trainer_runtime.errors import DatasetFormatError
from trainer_runtime.formats.capabilities import check_compatibility
from trainer_runtime.formats.limits import describe_char, unsafe_char
from trainer_runtime.formats.paths import safe_relpath
from trainer_runtime.formats.schema import TASK_TYPES
from trainer_runtime.storage import DualStorageClient

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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _clean_name(name: Any, *, what: str = "name") -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} must be a string", detail={"field": what})
    text = name.strip()
    if not 1 <= len(text) <= MAX_NAME_CHARS:
        raise InvalidInputError(f"{what} must be 1 to {MAX_NAME_CHARS} characters long", detail={"field": what})
    ch = unsafe_char(text)
    if ch is not None:
        raise InvalidInputError(
            f"{what} must not contain control or bidirectional-override characters ({describe_char(ch)})",
            detail={"field": what},
        )
    return text


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


def _capabilities(ds: Dataset) -> dict[str, dict[str, Any]]:
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


def dataset_out(
    ctx: ToolContext, ds: Dataset, snapshots_count: int | None = None, *, class_limit: int | None = None
) -> DatasetOut:
    """The dataset in its REST shape. `class_limit` keeps that many class names (lists);
    ``class_count`` always says how many there are."""
    if snapshots_count is None:
        snapshots_count = _snapshot_counts(ctx.db, [ds.id]).get(ds.id, 0)
    return DatasetOut(
        id=ds.id,
        name=ds.name,
        description=ds.description,
        visibility=ds.visibility,
        owner_id=ds.owner_id,
        is_owner=_is_owner(ctx, ds),
        labeled=ds.labeled,
        format_version=ds.format_version,
        num_images=ds.num_images,
        num_annotations=ds.num_annotations,
        total_bytes=ds.total_bytes,
        class_names=class_names_preview(ds.class_names, class_limit),
        class_count=len(ds.class_names or []),
        capabilities={t: Compatibility.model_validate(c) for t, c in _capabilities(ds).items()},
        annotations_sha256=ds.annotations_sha256,
        created_at=iso_utc(ds.created_at),
        updated_at=iso_utc(ds.updated_at),
        is_demo=ds.is_demo,
        snapshots_count=snapshots_count,
    )


def _norm(name: Any) -> str | None:
    try:
        return safe_relpath(name) if isinstance(name, str) else None
    except DatasetFormatError:
        return None


@dataclass(frozen=True)
class StoredFile:
    """Where to stream a stored file from: external-store `key`, `content_type`, `size`, `filename`."""

    key: str
    content_type: str
    size: int | None
    filename: str
    etag: str | None = None
