"""Snapshots: a frozen copy of a dataset's annotations.json (images are shared), numbered 1, 2, 3...
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

import json
from typing import cast

from sqlalchemy import func, select

from tools.context import ToolContext, iso_utc, require_user
from tools.datasets.common import _ID_RE, _clean_name, _delete_objects, _norm, _owned_row, get_dataset_row
from tools.datasets.locks import dataset_write_lock
from tools.datasets.models import SnapshotOut, SnapshotStatus
from tools.db.models import Dataset, DatasetImage, DatasetSnapshot, new_id
from tools.errors import ConflictError, NotFoundError
from trainer_runtime.storage import dataset_annotations_key, snapshot_annotations_key


def snapshot_out(s: DatasetSnapshot) -> SnapshotOut:
    """The snapshot in its REST shape."""
    return SnapshotOut(
        id=s.id,
        dataset_id=s.dataset_id,
        version=s.version,
        name=s.name,
        status=cast(SnapshotStatus, s.status),  # validated: a stored status other than ok/broken raises
        missing_files=list(s.missing_files or []),
        num_images=s.num_images,
        num_annotations=s.num_annotations,
        annotations_sha256=s.annotations_sha256,
        created_by=s.created_by,
        created_at=iso_utc(s.created_at),
    )


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
) -> SnapshotOut:
    """Freeze the dataset's current annotations.json as version 1, 2, 3... (images are shared).

    name: an optional label such as "before relabeling". Only labeled datasets can be
    snapshotted (409 otherwise). require_owner=False lets a reader of a public dataset snapshot it
    (used when a training job starts); the REST API always requires the owner.
    Returns the snapshot (id, version, name, status, missing_files, ...).
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
        return snapshot_out(snap)


def list_snapshots(ctx: ToolContext, dataset_id: str) -> list[SnapshotOut]:
    """The dataset's snapshots, newest version first."""
    ds = get_dataset_row(ctx, dataset_id)
    rows = ctx.db.scalars(
        select(DatasetSnapshot).where(DatasetSnapshot.dataset_id == ds.id).order_by(DatasetSnapshot.version.desc())
    )
    return [snapshot_out(s) for s in rows]


def get_snapshot(ctx: ToolContext, dataset_id: str, snapshot_id: str) -> SnapshotOut:
    """One snapshot: status ok or broken, and the image files it misses."""
    ds = get_dataset_row(ctx, dataset_id)
    return snapshot_out(_snapshot_row(ctx, ds, snapshot_id))
