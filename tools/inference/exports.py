"""Model exports (ONNX, TorchScript, OpenVINO) of a job's checkpoint: made by a worker, stored in
the internal store under `export_key`, recorded as `ModelExport` rows (`create_export`,
`get_export`, `list_exports`, `export_file`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tools.context import ToolContext, iso_utc, require_user
from tools.db.models import ModelExport, utcnow
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.inference.access import ResultFile, job_checkpoint, model_key, visible_job
from tools.inference.config import ensure_dir
from trainer_runtime.inference.export import EXPORT_FORMATS, FORMAT_CONTENT_TYPE, FORMAT_SUFFIX, unsupported_reason
from trainer_runtime.inference.protocol import WorkerError

if TYPE_CHECKING:
    from tools.inference.service import InferenceService


def export_key(job_id: int, export_id: int, fmt: str = "onnx") -> str:
    """``results/exports/<job>/<export>.onnx`` (``.torchscript``, ``_openvino_model.zip``)."""
    return f"results/exports/{job_id}/{export_id}{FORMAT_SUFFIX.get(fmt, '.' + fmt)}"


def export_dict(row: ModelExport) -> dict[str, Any]:
    """An export row as the API returns it (status, file, parity report and times)."""
    return {
        "id": row.id,
        "job_id": row.job_id,
        "format": row.format,
        "checkpoint": row.checkpoint,
        "status": row.status,
        "size": row.size,
        "sha256": row.sha256,
        "key": row.key,
        "report": dict(row.report or {}),
        "parity": (row.report or {}).get("parity"),
        "error": row.error,
        "created_at": iso_utc(row.created_at),
        "finished_at": iso_utc(row.finished_at),
        "download_url": f"/api/v1/jobs/{row.job_id}/exports/{row.id}/download" if row.status == "completed" else None,
    }


def create_export(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    fmt: str = "onnx",
    checkpoint: str | None = None,
    sample: bytes | None = None,
) -> dict[str, Any]:
    """Export the job's checkpoint (runs now, in the worker) and store it; an identical completed
    export of the same checkpoint file is returned instead of being made again."""
    fmt = (fmt or "onnx").strip().lower()
    supported = list(EXPORT_FORMATS)
    reason = unsupported_reason(fmt)
    if reason:
        raise InvalidInputError(reason, detail={"field": "format", "supported": supported})
    user = require_user(ctx)
    job, ckpt, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    reason = unsupported_reason(fmt, job.framework)
    if reason:
        raise InvalidInputError(reason, detail={"field": "format", "supported": supported})
    tag = ckpt.sha256 or str(ckpt.size)
    if sample is None:
        existing = ctx.db.scalars(
            select(ModelExport)
            .where(
                ModelExport.job_id == job.id,
                ModelExport.format == fmt,
                ModelExport.checkpoint == ckpt_name,
                ModelExport.checkpoint_sha256 == tag,
                ModelExport.status == "completed",
            )
            .order_by(ModelExport.id.desc())
        ).first()
        if existing is not None and existing.key and ctx.storage.internal.exists(existing.key):
            return export_dict(existing)
    path = service.checkpoint_path(job, ckpt)
    row = ModelExport(
        owner_id=user.id, job_id=job.id, format=fmt, checkpoint=ckpt_name, checkpoint_sha256=tag, status="running"
    )
    ctx.db.add(row)
    ctx.db.commit()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"export-{row.id}-", dir=ensure_dir(service.config.cache_dir / "tmp")))
    try:
        dest = tmp_dir / f"model{FORMAT_SUFFIX[fmt]}"
        try:
            report = service.export(job.framework, model_key(job, ckpt), path, dest, sample, fmt)
        except WorkerError as exc:
            row.status = "failed"
            row.error = exc.message
            row.report = dict(exc.reply.get("report") or {})
            row.finished_at = utcnow()
            ctx.db.commit()
            return export_dict(row)
        key = export_key(job.id, row.id, fmt)
        info = ctx.storage.internal.put_file(key, dest, content_type=FORMAT_CONTENT_TYPE[fmt])
        report.pop("path", None)
        row.key, row.size, row.sha256 = key, info.size, info.sha256 or report.get("sha256")
        row.report = report
        row.status = "completed"
        row.finished_at = utcnow()
        ctx.db.commit()
    except BaseException:
        if row.status == "running":
            row.status = "failed"
            row.error = row.error or "export interrupted"
            row.finished_at = utcnow()
            with contextlib.suppress(Exception):
                ctx.db.commit()
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return export_dict(row)


def _export_row(ctx: ToolContext, job_id: Any, export_id: Any) -> ModelExport:
    job = visible_job(ctx, job_id)
    try:
        eid = int(export_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"export {export_id} not found") from None
    row = ctx.db.get(ModelExport, eid)
    if row is None or row.job_id != job.id:
        raise NotFoundError(f"export {export_id} of job {job.id} not found", detail={"export_id": export_id})
    return row


def get_export(ctx: ToolContext, job_id: Any, export_id: Any) -> dict[str, Any]:
    """The caller's export `export_id` of job `job_id`; NotFoundError when either is not theirs or unknown."""
    return export_dict(_export_row(ctx, job_id, export_id))


def list_exports(ctx: ToolContext, job_id: Any) -> list[dict[str, Any]]:
    """The exports of the caller's job `job_id`, oldest first; NotFoundError for another user's job."""
    job = visible_job(ctx, job_id)
    rows = ctx.db.scalars(select(ModelExport).where(ModelExport.job_id == job.id).order_by(ModelExport.id))
    return [export_dict(r) for r in rows]


def export_file(ctx: ToolContext, job_id: Any, export_id: Any) -> ResultFile:
    """The stored file of a completed export to download; ConflictError while it is not completed or when
    its file is missing from storage, NotFoundError as `get_export`."""
    row = _export_row(ctx, job_id, export_id)
    if row.status != "completed" or not row.key:
        raise ConflictError(f"export {row.id} is {row.status}: nothing to download", detail={"status": row.status})
    if not ctx.storage.internal.exists(row.key):
        raise ConflictError(f"export file {row.key} is missing from storage", detail={"key": row.key})
    content_type = FORMAT_CONTENT_TYPE.get(row.format, "application/octet-stream")
    filename = f"job-{row.job_id}-{row.checkpoint}{FORMAT_SUFFIX.get(row.format, '.' + row.format)}"
    return ResultFile(row.key, content_type, row.size, filename)
