"""Progress events (contract 4 in docs/architecture.md), as the trainer produces them.

Every event: ``{"job_id", "seq", "ts", "type", "data", "event_id"}``. `seq` is assigned by the
server (gapless per job); a trainer printing JSON lines on stdout numbers them itself.
`event_id` is the trainer-side id that makes retried deliveries idempotent.

`MLFLOW_RUN_ID_FIELD`: the trainer reports its MLflow run id, as soon as the run exists, in a
``log`` event ``{"level": "info", "message": "MLflow run <id>", "mlflow_run_id": "<id>"}``; the
server stores it on the job (`Job.mlflow_run_id`), whatever machine the trainer runs on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EVENT_TYPES = ("status", "epoch", "batch", "log", "checkpoint", "done", "error")
JOB_STATUSES = (
    "queued",
    "preparing",
    "running",
    "completed",
    "failed",
    "stopped",
    "interrupted",
    "resuming",
)
TERMINAL_STATUSES = ("completed", "failed", "stopped")
MLFLOW_RUN_ID_FIELD = "mlflow_run_id"

EventType = Literal["status", "epoch", "batch", "log", "checkpoint", "done", "error"]


def utc_ts() -> str:
    """The current UTC time as an ISO-8601 string with microseconds and a "Z" suffix (event timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProgressEvent(BaseModel):
    """One progress event of a job as a trainer sends it; the server skips an `event_id` it already
    stored (a resend) and numbers `seq` itself when the event has none."""

    job_id: int
    seq: int | None = None
    ts: str = Field(default_factory=utc_ts)
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
