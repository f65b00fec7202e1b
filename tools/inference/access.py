"""Which job and checkpoint a caller may run (`job_checkpoint`), the worker cache key of a
checkpoint (`model_key`), and `ResultFile`, the stored file a download route streams back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tools.context import ToolContext, is_db_id, require_user
from tools.db.models import Job, JobCheckpoint
from tools.errors import ConflictError, InvalidInputError, NotFoundError

CHECKPOINTS = ("best", "last")
# a stopped or failed job keeps the checkpoints it uploaded (best.pt / last.pt are uploaded on stop
# and on error too): they can be tested and exported like a completed job's
USABLE_STATUSES = ("completed", "stopped", "failed")


def visible_job(ctx: ToolContext, job_id: Any) -> Job:
    """The caller's job `job_id`; NotFoundError for a malformed or unknown id and for another user's job,
    so other users' jobs cannot be told apart from missing ones."""
    user = require_user(ctx)
    try:
        jid = int(job_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id}) from None
    if not is_db_id(jid):
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
    job = ctx.db.get(Job, jid)
    if job is None or job.owner_id != user.id:
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
    return job


def job_checkpoint(ctx: ToolContext, job_id: Any, checkpoint: str | None = None) -> tuple[Job, JobCheckpoint, str]:
    """The caller's usable job and the checkpoint to run: `checkpoint` best|last, or None for
    best (last when the job has no best). 404 for others' jobs, 409 when not usable."""
    job = visible_job(ctx, job_id)
    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise InvalidInputError(
            f"checkpoint must be 'best' or 'last', not {checkpoint!r}", detail={"field": "checkpoint"}
        )
    if job.status not in USABLE_STATUSES:
        raise ConflictError(
            f"job {job.id} is {job.status}: inference needs a finished job (completed, stopped or failed) "
            "with a checkpoint",
            detail={"job_id": job.id, "status": job.status},
        )
    rows = {r.name: r for r in ctx.db.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id))}
    if not rows:
        raise ConflictError(f"job {job.id} has no checkpoints", detail={"job_id": job.id})
    wanted = [checkpoint] if checkpoint else ["best", "last"]
    for name in wanted:
        row = rows.get(f"{name}.pt")
        if row is not None:
            return job, row, name
    raise ConflictError(
        f"job {job.id} has no {checkpoint} checkpoint (it has {', '.join(sorted(rows))})",
        detail={"job_id": job.id, "checkpoint": checkpoint},
    )


def model_key(job: Job, ckpt: JobCheckpoint) -> str:
    """The inference model cache key of a job checkpoint; it changes when the checkpoint file does."""
    return f"job:{job.id}:{ckpt.name}:{(ckpt.sha256 or str(ckpt.size))[:16]}"


@dataclass(frozen=True)
class ResultFile:
    """A file in the internal store to stream back."""

    key: str
    content_type: str
    size: int | None
    filename: str
