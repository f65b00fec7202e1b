"""`/api/v1/jobs`: create, list, read, stop, resume and delete training jobs; per-epoch metrics.

Jobs are private to their owner: every other user gets 404 (as for unknown jobs). The logic lives
in `tools.jobs`; the supervisor on `app.state.supervisor` starts queued jobs (FIFO over
`max_concurrent_jobs` slots) and watches the trainers. The event list, the streams and the
trainers' callback endpoint are in `web.routes.job_events` and the internal routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tools import jobs
from tools.intent import TrainingIntent
from tools.jobs.models import JobList, JobMetrics, JobOut
from trainer_runtime.events import JOB_STATUSES
from web.deps import ToolContextDep
from web.params import MAX_ID, IdPath, IdQuery, Offset

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobIn(BaseModel):
    """A training job to create: the training intent and, optionally, the project to file it under."""

    model_config = ConfigDict(extra="forbid")

    intent: TrainingIntent = Field(description="what to train; `intent.dataset` (name or id) is required")
    project_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="one of your projects (checkpoints are stored per project)"
    )


def _supervisor(request: Request) -> Any:
    return getattr(request.app.state, "supervisor", None)


@router.post("", status_code=201, response_model=JobOut, summary="Create a training job and queue it")
def create_job(body: JobIn, request: Request, ctx: ToolContextDep) -> dict[str, Any]:
    """Checks the dataset against the task (422 with the reason when incompatible), snapshots it,
    resolves the preset into hyper-parameters, and queues the job. Unknown or hidden dataset or
    project: 404; unknown model: 422 with suggestions."""
    return jobs.create_job(ctx, body.intent, body.project_id, supervisor=_supervisor(request))


@router.get("", response_model=JobList, summary="My jobs, newest first")
def list_jobs(
    ctx: ToolContextDep,
    status: str | None = Query(default=None, description=f"one of {', '.join(JOB_STATUSES)}"),
    project_id: IdQuery = None,
    offset: Offset = 0,
    limit: int = Query(default=50, ge=1, le=jobs.MAX_LIST_LIMIT),
) -> JobList:
    """Your jobs, newest first, one page at a time, optionally only one status or one project;
    422 for an unknown status."""
    return jobs.list_jobs(ctx, status=status, project_id=project_id, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobOut, summary="One of my jobs")
def get_job(job_id: IdPath, ctx: ToolContextDep) -> JobOut:
    """One of your jobs with its status, settings, progress, metrics and checkpoints; 404 when it does
    not exist or is not yours."""
    return jobs.get_job(ctx, job_id)


@router.post("/{job_id}/stop", response_model=JobOut, summary="Stop a job (best/last are still uploaded)")
def stop_job(job_id: IdPath, request: Request, ctx: ToolContextDep) -> JobOut:
    """Queued: stopped at once. Running: SIGINT, the trainer finishes the batch and uploads
    best.pt/last.pt, then `stopped`. Already finished: 409."""
    return jobs.stop_job(ctx, job_id, supervisor=_supervisor(request))


@router.post("/{job_id}/resume", response_model=JobOut, summary="Resume a stopped or failed job from last.pt")
def resume_job(job_id: IdPath, request: Request, ctx: ToolContextDep) -> JobOut:
    """Queue a stopped or failed job again; it continues from its last.pt (weights, optimizer, epoch).
    409 when the job is neither stopped nor failed or has no last.pt, 404 when it is not yours."""
    return jobs.resume_job(ctx, job_id, supervisor=_supervisor(request))


@router.delete(
    "/{job_id}",
    status_code=204,
    summary="Delete a job (a running one's trainer is killed), with its checkpoints, exports, test runs and files",
)
def delete_job(job_id: IdPath, request: Request, ctx: ToolContextDep) -> Response:
    """Deletes the job's events, checkpoints, ONNX exports, test runs (reports, predictions), the
    inference cache's copies and the trainer folder; the job's live streams end with a `deleted`
    event (WebSocket close 4410). A running job's trainer is killed within a supervisor tick (no
    checkpoint upload: stop the job first to keep its last.pt). Kept: the job's MLflow run
    (experiment history)."""
    jobs.delete_job(ctx, job_id, supervisor=_supervisor(request))
    return Response(status_code=204)


@router.get("/{job_id}/metrics", response_model=JobMetrics, summary="Per-epoch metric series for charts")
def job_metrics(job_id: IdPath, ctx: ToolContextDep) -> JobMetrics:
    """The per-epoch metric series of your job, from its stored epoch events, for charts; 404 when
    it is not yours."""
    return jobs.job_metrics(ctx, job_id)
