"""Reading jobs: the job JSON (`job_dict`; `full_job` as the REST model `JobOut`), the queue
(`queue_order`, `queue_positions`), one job (`get_job`), the caller's jobs (`list_jobs`) and their
per-epoch metrics (`job_metrics`).
Part of `tools.jobs` (its module doc has the rules); see docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tools import weights as weights_tools
from tools.context import ToolContext, is_db_id, iso_utc, require_user
from tools.db.models import Job, JobCheckpoint, JobEvent
from tools.errors import InvalidInputError, NotFoundError
from tools.jobs.models import JobList, JobMetrics, JobOut
from tools.projects import get_project
from tools.services import JobNotifier
from trainer_runtime.events import JOB_STATUSES

ACTIVE_STATUSES = ("preparing", "running", "resuming")
"""A trainer process is (or should be) alive."""
MAX_LIST_LIMIT = 500


def _not_found(job_id: Any) -> NotFoundError:
    return NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})


def job_row(ctx: ToolContext, job_id: int) -> Job:
    """The caller's job `job_id`, fresh from the database; NotFoundError for anyone else's or none."""
    user = require_user(ctx, "training jobs")
    try:
        jid = int(job_id)
    except (TypeError, ValueError):
        raise _not_found(job_id) from None
    if not is_db_id(jid):  # e.g. "stop job 10**30" in a chat: no such row
        raise _not_found(job_id)
    job = ctx.db.get(Job, jid, populate_existing=True)
    if job is None or job.owner_id != user.id:
        raise _not_found(job_id)
    return job


def queue_order(db: Session, limit: int | None = None) -> list[int]:
    """Ids of the jobs waiting in the queue, next to start first (at most `limit`).

    The database is the queue, so every server replica reads the same order: the ``queued`` jobs
    pinned to a dataset snapshot (those `create_job` and `resume_job` queue; rows made otherwise
    are not the supervisor's business), oldest job first (creation order: a resumed job takes its
    old place)."""
    stmt = (
        select(Job.id)
        .where(Job.status == "queued", Job.snapshot_id.is_not(None), Job.dataset_id.is_not(None))
        .order_by(Job.id)
    )
    if limit is not None:
        stmt = stmt.limit(max(0, int(limit)))
    return list(db.scalars(stmt))


def queue_positions(db: Session, notifier: JobNotifier | None = None) -> dict[int, int]:
    """job id -> 1-based place in the queue, for every job waiting in it (`queue_order`; a
    supervisor may answer for itself, `Supervisor.queue_positions` gives the same)."""
    if notifier is not None:
        return notifier.queue_positions(db)
    return {jid: i + 1 for i, jid in enumerate(queue_order(db))}


def _checkpoints(db: Any, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {j: [] for j in job_ids}
    if not job_ids:
        return out
    rows = db.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id.in_(job_ids)).order_by(JobCheckpoint.name))
    for r in rows:
        out[r.job_id].append({"name": r.name, "key": r.key, "size": r.size, "epoch": r.epoch, "sha256": r.sha256})
    return out


def job_dict(job: Job, *, queue_position: int = 0, checkpoints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The job as JSON (the REST shape; see the module doc)."""
    return {
        "id": job.id,
        "status": job.status,
        "status_message": job.status_message or "",
        "framework": job.framework,
        "model_name": job.model_name,
        "task_type": job.task_type,
        "dataset_id": job.dataset_id,
        "dataset_name": job.dataset_name,
        "snapshot_id": job.snapshot_id,
        "project_id": job.project_id,
        "owner_id": job.owner_id,
        "preset": job.preset,
        "conversion": job.conversion,
        "hyperparameters": dict(job.hyperparameters or {}),
        "config": dict(job.config or {}),
        "epochs": job.epochs,
        "epochs_completed": job.epochs_completed,
        "best_epoch": job.best_epoch,
        "best_metric_name": job.best_metric_name,
        "best_metric": job.best_metric,
        "metrics": dict(job.metrics or {}),
        "queue_position": queue_position,
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "stop_requested": bool(job.stop_requested),
        "error": job.error,
        "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at),
        "finished_at": iso_utc(job.finished_at),
        "checkpoints": checkpoints or [],
        "mlflow_run_id": job.mlflow_run_id,
        "init_from": _init_public(job.init_from),
        "pretrained": weights_tools.pretrained_field(job),
    }


def _init_public(init_from: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the job API shows of a fine-tuning source (the store key stays internal)."""
    if not init_from:
        return None
    return {k: init_from.get(k) for k in ("job_id", "checkpoint", "model_name", "framework", "dataset_name", "epoch")}


def full_job_dict(ctx: ToolContext, job: Job) -> dict[str, Any]:
    """`job_dict` with the job's queue position and checkpoints."""
    position = queue_positions(ctx.db, ctx.services.notifier).get(job.id, 0) if job.status == "queued" else 0
    return job_dict(job, queue_position=position, checkpoints=_checkpoints(ctx.db, [job.id])[job.id])


def full_job(ctx: ToolContext, job: Job) -> JobOut:
    """`full_job_dict` as the REST model (its keys outside the schema, such as `stop_requested`,
    `status_message` and `pretrained`, are in `model_extra`)."""
    return JobOut.model_validate(full_job_dict(ctx, job))


def get_job(ctx: ToolContext, job_id: int) -> JobOut:
    """One of the caller's jobs (others' jobs answer NotFoundError, as if they did not exist)."""
    return full_job(ctx, job_row(ctx, job_id))


def list_jobs(
    ctx: ToolContext,
    status: str | None = None,
    project_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> JobList:
    """The caller's jobs, newest first.

    status: only jobs in this status (queued, preparing, running, completed, failed, stopped,
        interrupted, resuming). project_id: only jobs of this project of the caller's.
    Returns `JobList`: items (`JobOut`), total, offset, limit.
    """
    user = require_user(ctx, "training jobs")
    if not 1 <= limit <= MAX_LIST_LIMIT or offset < 0:
        raise InvalidInputError(f"limit must be 1..{MAX_LIST_LIMIT} and offset >= 0", detail={"field": "limit"})
    stmt = select(Job).where(Job.owner_id == user.id)
    if status is not None:
        if status not in JOB_STATUSES:
            raise InvalidInputError(
                f"unknown status {status!r}; expected one of {', '.join(JOB_STATUSES)}", detail={"field": "status"}
            )
        stmt = stmt.where(Job.status == status)
    if project_id is not None:
        get_project(ctx.db, user, int(project_id))
        stmt = stmt.where(Job.project_id == int(project_id))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(ctx.db.scalars(stmt.order_by(Job.id.desc()).offset(offset).limit(limit)))
    positions = queue_positions(ctx.db, ctx.services.notifier) if any(r.status == "queued" for r in rows) else {}
    ckpts = _checkpoints(ctx.db, [r.id for r in rows])
    return JobList(
        items=[
            JobOut.model_validate(job_dict(r, queue_position=positions.get(r.id, 0), checkpoints=ckpts[r.id]))
            for r in rows
        ],
        total=int(total),
        offset=offset,
        limit=limit,
    )


def job_metrics(ctx: ToolContext, job_id: int) -> JobMetrics:
    """Per-epoch series for charts, from the job's stored `epoch` events.

    Returns `JobMetrics`: job_id, epochs [1, 2, ...], series {"train/loss": [...], "val/mAP50": [...]},
    checkpoints {epoch: [names]}, best_epoch, best_metric_name, best_metric; each series
    has one value per entry of `epochs` (None where an epoch lacks that metric, e.g. an epoch
    recovered after a crash).
    """
    job = job_row(ctx, job_id)
    rows = ctx.db.scalars(
        select(JobEvent.data).where(JobEvent.job_id == job.id, JobEvent.type == "epoch").order_by(JobEvent.seq)
    )
    per_epoch: dict[int, dict[str, Any]] = {}
    for data in rows:
        if not isinstance(data, dict):
            continue
        try:
            epoch = int(data.get("epoch"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
        if epoch in per_epoch and not metrics:
            continue  # keep the measured values over a later "recovered" report
        per_epoch[epoch] = dict(metrics or {})
    epochs = sorted(per_epoch)
    names: list[str] = []
    for e in epochs:
        for k in per_epoch[e]:
            if k not in names:
                names.append(k)
    series = {k: [per_epoch[e].get(k) for e in epochs] for k in names}
    checkpoints: dict[int, list[str]] = {}
    for c in ctx.db.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id).order_by(JobCheckpoint.name)):
        if c.epoch is not None:
            checkpoints.setdefault(int(c.epoch), []).append(c.name)
    return JobMetrics(
        job_id=job.id,
        epochs=epochs,
        series=series,
        checkpoints=checkpoints,
        best_epoch=job.best_epoch,
        best_metric_name=job.best_metric_name,
        best_metric=job.best_metric,
    )
