"""Changing jobs: create (and preview), stop, resume and delete, each telling the app's supervisor
(`ctx.services.notifier`, or the one passed) and, for resume and delete, the app's job listeners.
Part of `tools.jobs` (its module doc has the rules); see docs/architecture.md.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult

from tools.context import ToolContext, require_user
from tools.datasets import create_snapshot
from tools.db.models import Job, JobCheckpoint, JobEvent, ModelExport, TestRun
from tools.errors import ConflictError
from tools.events import append_event
from tools.intent import TrainingIntent
from tools.jobs.models import JobOut
from tools.jobs.plan import plan_job
from tools.jobs.spec import hash_token, new_token
from tools.jobs.view import full_job, full_job_dict, job_dict, job_row
from tools.services import JobNotifier
from trainer_runtime.events import TERMINAL_STATUSES
from trainer_runtime.storage import checkpoint_key

RESUMABLE_STATUSES = ("stopped", "failed")
DELETED_EVENT_TYPE = "deleted"
"""A bus notice (no seq, never stored) that a job or test run was deleted: its streams end."""
RESULTS_PREFIX = "results/"
"""Internal-store prefix of what inference makes from a job (`tools.inference`: exports, test runs)."""


def _compare_and_set(ctx: ToolContext, job_id: int, expected: str, new: str) -> bool:
    """Move the job from status `expected` to `new` only if it is still there (commits)."""
    result = ctx.db.execute(update(Job).where(Job.id == job_id, Job.status == expected).values(status=new))
    ctx.db.commit()
    return isinstance(result, CursorResult) and result.rowcount == 1


def emit_status(
    db: Any, job_id: int, status: str, notifier: JobNotifier | None = None, **data: Any
) -> dict[str, Any] | None:
    """Store a server-side `status` event (tools.events.append_event commits) and publish it."""
    event = append_event(db, job_id, "status", {"status": status, **data}, source="server")
    if event is not None and notifier is not None:
        notifier.publish(job_id, event)
    return event


def create_job(
    ctx: ToolContext,
    intent: TrainingIntent,
    project_id: int | None = None,
    *,
    launch: bool = True,
    supervisor: JobNotifier | None = None,
) -> dict[str, Any]:
    """Create a training job from a TrainingIntent and queue it (see the module doc for the rules).

    intent: what to train; `intent.dataset` (a dataset name or id the caller can see) is required.
        Missing slots get documented defaults: the model from the task (yolo11n, yolo11n-seg,
        yolo11n-pose, yolo11n-obb, resnet18), the task from the dataset, epochs from the preset
        (easy 10, medium 30, advanced 50, none 10), image size from the model, batch size from the
        framework (capped at the training images), learning rate from the preset.
    project_id: one of the caller's projects (checkpoints are stored under it), or None.
    launch: False only checks the request and returns the job it would create (id None, status
        "preview", nothing stored, no snapshot) — for confirming with a person first.
    Errors: dataset/project unknown or hidden -> NotFoundError; incompatible dataset, unknown model
        (with suggestions), bad hyper-parameters or config keys -> InvalidInputError.
    Returns the job JSON (status "queued", queue_position, the resolved hyperparameters and config).
    """
    user = require_user(ctx, "training jobs")
    supervisor = supervisor or ctx.services.notifier
    ds, _compat, fields = plan_job(ctx, intent, project_id)
    chosen = fields.pop("defaults")
    if not launch:
        preview = Job(
            owner_id=user.id,
            project_id=project_id,
            dataset_id=ds.id,
            dataset_name=ds.name,
            status="preview",
            intent=intent.model_dump(),
            attempts=0,
            max_retries=0,
            epochs_completed=0,
            stop_requested=False,
            metrics={},
            **fields,
        )
        return job_dict(preview) | {"defaults": chosen}

    snap = create_snapshot(ctx, ds.id, name="auto: training launch", require_owner=False)
    if snap.status == "broken":
        raise ConflictError(
            f"dataset {ds.name!r} references {len(snap.missing_files)} image(s) that were deleted; "
            "fix its annotations before training",
            detail={"dataset_id": ds.id, "snapshot_id": snap.id},
        )
    job = Job(
        owner_id=user.id,
        project_id=project_id,
        dataset_id=ds.id,
        dataset_name=ds.name,
        snapshot_id=snap.id,
        intent=intent.model_dump(),
        status="queued",
        token_hash=hash_token(new_token()),  # replaced by a fresh one at every launch (write_spec)
        **fields,
    )
    ctx.db.add(job)
    ctx.db.commit()
    emit_status(ctx.db, job.id, "queued", supervisor, message="waiting for a free training slot")
    if supervisor is not None:
        supervisor.submit(job.id)
    ctx.db.refresh(job)
    return full_job_dict(ctx, job) | {"defaults": chosen}


def stop_job(ctx: ToolContext, job_id: int, *, supervisor: JobNotifier | None = None) -> JobOut:
    """Stop a job. Queued: stopped at once. Running: the trainer gets SIGINT, finishes the batch,
    uploads best.pt and last.pt and ends `stopped` (SIGTERM, then SIGKILL, after the grace
    period). Waiting for a retry: stopped by the supervisor. Finished jobs: ConflictError (409).
    Returns the job (`JobOut`; `model_extra["stop_requested"]` true until the trainer has stopped)."""
    job = job_row(ctx, job_id)
    supervisor = supervisor or ctx.services.notifier
    if job.status in TERMINAL_STATUSES:
        raise ConflictError(f"job {job.id} already ended ({job.status})", detail={"job_id": job.id})
    job.stop_requested = True
    ctx.db.commit()
    claimed = _compare_and_set(ctx, job.id, "queued", "stopped")
    if claimed:
        emit_status(ctx.db, job.id, "stopped", supervisor, message="stopped before it started")
    elif supervisor is not None:
        supervisor.wake()
    ctx.db.refresh(job)
    return full_job(ctx, job)


def resume_job(ctx: ToolContext, job_id: int, *, supervisor: JobNotifier | None = None) -> JobOut:
    """Queue a stopped or failed job again; it continues from its last.pt (weights, optimizer,
    scheduler, epoch, best metric) with a fresh retry budget. ConflictError (409) when the job is
    not stopped/failed or has no last.pt. A trainer reports ``stopped`` before it has exited: a
    resume in that window is accepted, and the supervisor starts the new attempt only once the old
    trainer has exited (attempts are told apart by number, so its late exit changes nothing)."""
    job = job_row(ctx, job_id)
    supervisor = supervisor or ctx.services.notifier
    if job.status not in RESUMABLE_STATUSES:
        raise ConflictError(
            f"job {job.id} is {job.status}; only stopped or failed jobs can be resumed", detail={"job_id": job.id}
        )
    last = ctx.db.scalar(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id, JobCheckpoint.name == "last.pt"))
    if last is None:
        raise ConflictError(
            f"job {job.id} has no last.pt to resume from; start a new job instead", detail={"job_id": job.id}
        )
    job.stop_requested = False
    job.attempts = 0
    job.error = None
    ctx.db.commit()
    emit_status(ctx.db, job.id, "queued", supervisor, message=f"resume from last.pt (epoch {last.epoch})")
    if supervisor is not None:
        supervisor.submit(job.id)
    ctx.services.job_listeners.notify(job.id)
    ctx.db.refresh(job)
    return full_job(ctx, job)


def delete_job(ctx: ToolContext, job_id: int, *, supervisor: JobNotifier | None = None) -> dict[str, Any]:
    """Delete a job, whatever its status, with everything made from it: its events; its
    checkpoints, ONNX exports (``results/exports/<job>/``) and test runs' reports and predictions
    (``results/test-runs/<run>/``) in the internal store; its rows of test runs and exports; its
    local trainer folder (`JobNotifier.forget`) and the inference cache's copies of its
    checkpoints (a job listener of the app, `tools.inference`). A queued job leaves the queue
    first; a job with a live trainer (preparing, running, resuming, or waiting for a retry) gets
    `stop_requested` first, and the leading supervisor kills the trainer of a job whose row is
    gone within a tick (`Supervisor._handle_stops`; no checkpoint upload) and removes its folder.

    Live streams of the job and of its test runs are told with a ``{"type": "deleted"}`` notice on
    their bus channels (`JobNotifier.publish`); they end with a final ``deleted`` event.

    Returns {"deleted": id, "checkpoints_deleted": n, "exports_deleted": n, "test_runs_deleted": n,
    "kept": [what stays, and why]}: the MLflow run of the job is kept (experiment history), and
    any object the store could not delete is listed with the error."""
    job = job_row(ctx, job_id)
    supervisor = supervisor or ctx.services.notifier
    # A queued job is taken out of the queue first, so the supervisor cannot start it meanwhile
    # (one it has just claimed is deleted like a running one).
    if job.status == "queued":
        _compare_and_set(ctx, job.id, "queued", "stopped")
    if job.status not in TERMINAL_STATUSES:
        # A trainer may be alive: its stop is asked for (and committed) before anything is deleted,
        # so it does not train on whatever happens below.
        job.stop_requested = True
        ctx.db.commit()
    keys = list(ctx.db.scalars(select(JobCheckpoint.key).where(JobCheckpoint.job_id == job.id)))
    removed = 0
    for key in keys:
        try:
            ctx.storage.internal.delete(key)
            removed += 1
        except Exception:  # best effort; the prefix sweep below retries
            pass
    prefix = checkpoint_key(job.id, job.project_id, "x").rsplit("/", 1)[0] + "/"
    with contextlib.suppress(Exception):  # storage down: the rows go anyway, the objects stay
        ctx.storage.internal.delete_prefix(prefix)
    jid = job.id
    kept: list[str] = []
    exports = list(ctx.db.scalars(select(ModelExport).where(ModelExport.job_id == jid)))
    runs = list(ctx.db.scalars(select(TestRun).where(TestRun.job_id == jid)))
    derived = [f"{RESULTS_PREFIX}exports/{jid}/", *(f"{RESULTS_PREFIX}test-runs/{r.id}/" for r in runs)]
    derived_keys = [e.key for e in exports if e.key]
    derived_keys += [k for r in runs for k in (r.report_key, r.predictions_key) if k]
    for key in derived_keys:
        try:
            ctx.storage.internal.delete(key)
        except Exception as exc:
            kept.append(f"{key}: could not be deleted ({exc})")
    for derived_prefix in derived:
        try:
            ctx.storage.internal.delete_prefix(derived_prefix)
        except Exception as exc:
            kept.append(f"{derived_prefix}*: could not be deleted ({exc})")
    if job.mlflow_run_id:
        kept.append(f"MLflow run {job.mlflow_run_id} (experiment history stays in MLflow)")
    ctx.db.execute(delete(JobEvent).where(JobEvent.job_id == jid))
    ctx.db.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == jid))
    ctx.db.execute(delete(ModelExport).where(ModelExport.job_id == jid))
    ctx.db.execute(delete(TestRun).where(TestRun.job_id == jid))
    ctx.db.delete(job)
    ctx.db.commit()
    if supervisor is not None:
        # end the live streams of the job and of its test runs (bus channels: id and -run id)
        supervisor.publish(jid, {"job_id": jid, "type": DELETED_EVENT_TYPE})
        for run in runs:
            supervisor.publish(-run.id, {"job_id": -run.id, "type": DELETED_EVENT_TYPE})
        supervisor.forget(jid)
    ctx.services.job_listeners.notify(jid)
    return {
        "deleted": jid,
        "checkpoints_deleted": removed,
        "exports_deleted": len(exports),
        "test_runs_deleted": len(runs),
        "kept": kept,
    }
