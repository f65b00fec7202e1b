"""Batch test runs as records: create one (queued; `InferenceService.submit_test_run` starts it),
read it, its events and its report/predictions files, and stage an uploaded zip to test on.
`tools.inference.runner` runs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tools.context import ToolContext, iso_utc, require_user
from tools.datasets import get_dataset_row
from tools.db.models import DatasetSnapshot, TestRun
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.inference.access import ResultFile, job_checkpoint
from tools.inference.config import ensure_dir
from tools.uploads import collect_tree, dice_layout, extract_zip, invalid_from

if TYPE_CHECKING:
    from tools.inference.service import InferenceService


def test_run_dict(row: TestRun, *, with_events: bool = False) -> dict[str, Any]:
    """A test run as the API returns it: source, options, status, progress, metrics and result URLs (and its
    stored events with `with_events`)."""
    total = row.total or 0
    out = {
        "id": row.id,
        "job_id": row.job_id,
        "source": row.source,
        "dataset_id": row.dataset_id,
        "snapshot_id": row.snapshot_id,
        "checkpoint": row.checkpoint,
        "options": dict(row.options or {}),
        "status": row.status,
        "progress": {
            "processed": row.processed,
            "total": total,
            "failed_images": row.failed_images,
            "fraction": (row.processed / total) if total else 0.0,
        },
        "labeled": row.labeled,
        "metrics": dict(row.metrics or {}),
        "error": row.error,
        "created_at": iso_utc(row.created_at),
        "started_at": iso_utc(row.started_at),
        "finished_at": iso_utc(row.finished_at),
        "channel": -row.id,
        "report_url": f"/api/v1/test-runs/{row.id}/report" if row.report_key else None,
        "predictions_url": f"/api/v1/test-runs/{row.id}/predictions" if row.predictions_key else None,
    }
    if with_events:
        out["events"] = list(row.events or [])
    return out


@dataclass
class TestSource:
    """Where a test run's images come from."""

    __test__ = False

    kind: str  # dataset | snapshot | upload
    dataset_id: str | None = None
    snapshot_id: str | None = None
    upload_dir: Path | None = None


def create_test_run(
    ctx: ToolContext,
    job_id: Any,
    *,
    dataset_id: str | None = None,
    snapshot_id: str | None = None,
    upload_dir: Path | None = None,
    checkpoint: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
) -> dict[str, Any]:
    """Record a test run (status queued); the caller starts it with `service.submit_test_run`."""
    user = require_user(ctx)
    _, _, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    given = [x is not None for x in (dataset_id, snapshot_id, upload_dir)]
    if upload_dir is None and not any(given):
        raise InvalidInputError("name a dataset_id or a snapshot_id to test on", detail={"field": "dataset_id"})
    for name, value in (("conf", conf), ("iou", iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be between 0 and 1", detail={"field": name})
    source = "upload"
    total = 0
    labeled = False
    if upload_dir is None:
        if snapshot_id is not None:
            snap = ctx.db.get(DatasetSnapshot, str(snapshot_id))
            if snap is None or (dataset_id is not None and snap.dataset_id != dataset_id):
                raise NotFoundError(f"snapshot {snapshot_id} not found", detail={"snapshot_id": snapshot_id})
            ds = get_dataset_row(ctx, snap.dataset_id)
            if snap.status != "ok":
                raise ConflictError(
                    f"snapshot {snap.id} is {snap.status}: images it references were deleted",
                    detail={"missing_files": list(snap.missing_files or [])[:20]},
                )
            source, dataset_id, total, labeled = "snapshot", ds.id, snap.num_images, True
        else:
            ds = get_dataset_row(ctx, str(dataset_id))
            source, dataset_id, labeled = "dataset", ds.id, bool(ds.labeled)
            total = ds.num_images
        if total == 0:
            raise ConflictError(f"dataset {ds.name!r} has no images to test on", detail={"dataset_id": ds.id})
    row = TestRun(
        owner_id=user.id,
        job_id=int(job_id),
        source=source,
        dataset_id=dataset_id,
        snapshot_id=snapshot_id,
        checkpoint=ckpt_name,
        options={
            "conf": conf,
            "iou": iou,
            **({"upload_dir": str(upload_dir)} if upload_dir else {}),
        },
        status="queued",
        total=total,
        labeled=labeled,
    )
    ctx.db.add(row)
    ctx.db.commit()
    return test_run_dict(row)


def owned_test_run(db: Session, user_id: int, run_id: Any) -> TestRun:
    """The test run if `user_id` owns it; NotFoundError for unknown and other users' runs alike."""
    try:
        rid = int(run_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"test run {run_id} not found") from None
    row = db.get(TestRun, rid, populate_existing=True)
    if row is None or row.owner_id != user_id:
        raise NotFoundError(f"test run {run_id} not found", detail={"test_run_id": run_id})
    return row


def _run_row(ctx: ToolContext, run_id: Any) -> TestRun:
    return owned_test_run(ctx.db, require_user(ctx).id, run_id)


def test_run_event_page(db: Session, run_id: int, after: int, limit: int) -> tuple[list[dict[str, Any]], str, int]:
    """(stored events with seq > `after`, at most `limit`; the run's status; its last seq), read
    from one row so the three agree: the page reader of the live streams (`web.routes.job_events`).
    A deleted run reads as status "deleted"."""
    row = db.get(TestRun, int(run_id), populate_existing=True)
    if row is None:
        return [], "deleted", 0
    events = [e for e in (row.events or []) if int(e.get("seq") or 0) > after][: max(1, limit)]
    return events, row.status, int(row.last_seq or 0)


def get_test_run(ctx: ToolContext, run_id: Any) -> dict[str, Any]:
    """The caller's test run `run_id`; NotFoundError when it is not theirs or unknown."""
    return test_run_dict(_run_row(ctx, run_id))


def list_test_runs(ctx: ToolContext, job_id: int | None = None) -> list[dict[str, Any]]:
    """The caller's latest 200 test runs, newest first (only those of `job_id` when given)."""
    user = require_user(ctx)
    q = select(TestRun).where(TestRun.owner_id == user.id)
    if job_id is not None:
        q = q.where(TestRun.job_id == int(job_id))
    return [test_run_dict(r) for r in ctx.db.scalars(q.order_by(TestRun.id.desc()).limit(200))]


def test_run_events(ctx: ToolContext, run_id: Any, after: int = 0) -> list[dict[str, Any]]:
    """The stored events of the caller's test run `run_id` with seq greater than `after`."""
    row = _run_row(ctx, run_id)
    return [e for e in (row.events or []) if int(e.get("seq") or 0) > after]


def test_run_file(ctx: ToolContext, run_id: Any, which: str = "report") -> ResultFile:
    """The report (`which="report"`) or the predictions file of the caller's test run, to download;
    ConflictError while it is not written yet."""
    row = _run_row(ctx, run_id)
    key = row.report_key if which == "report" else row.predictions_key
    if not key:
        raise ConflictError(
            f"test run {row.id} is {row.status}: its {which} is not ready", detail={"status": row.status}
        )
    info = ctx.storage.internal.stat(key)
    if which == "report":
        return ResultFile(key, "application/json", info.size, f"test-run-{row.id}-report.json")
    return ResultFile(key, "application/x-ndjson", info.size, f"test-run-{row.id}-predictions.jsonl")


def stage_test_upload(ctx: ToolContext, service: InferenceService, zip_path: Path, archive_name: str) -> Path:
    """Extract an uploaded zip (DICE: images/ + optional annotations.json, or plain images) into a
    private folder ``<dir>/images/<name>`` (+ ``annotations.json``), with the upload limits."""
    from trainer_runtime.formats.validate import load_annotations

    root = Path(tempfile.mkdtemp(prefix="upload-", dir=ensure_dir(service.config.cache_dir / "test-uploads")))
    try:
        raw = root / "raw"
        raw.mkdir()
        extract_zip(zip_path, raw, ctx.limits, archive_name=archive_name)
        layout = dice_layout(collect_tree(raw))
        if not layout.images:
            raise InvalidInputError(f"{archive_name} holds no images", detail={"file": archive_name})
        final = root / "data"
        (final / "images").mkdir(parents=True)
        for name, src in layout.images.items():
            dest = final / "images" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
        if layout.annotations is not None:
            from trainer_runtime.errors import DatasetFormatError

            try:
                load_annotations(layout.annotations, limits=ctx.limits.formats)
            except DatasetFormatError as exc:
                raise invalid_from(exc) from exc
            os.replace(layout.annotations, final / "annotations.json")
        shutil.rmtree(raw, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
