"""What the job operations return: the pydantic models that are also the REST response shapes of
`/api/v1/jobs` (`web.routes.jobs` uses them as its response models, so the agent and the API read
one definition). Their docstrings are the schemas' descriptions in the OpenAPI document.
Contracts: `docs/architecture.md`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CheckpointOut(BaseModel):
    """One stored checkpoint of a job (best.pt, last.pt) with its size and checksum."""

    name: str
    key: str
    size: int
    epoch: int | None = None
    sha256: str | None = None


class JobOut(BaseModel):
    """A training job: its status, what it trains on which data with which settings, progress,
    metrics, checkpoints and timestamps."""

    model_config = ConfigDict(extra="allow")

    id: int
    status: str
    framework: str
    model_name: str
    task_type: str
    dataset_id: str | None
    dataset_name: str
    snapshot_id: str | None
    project_id: int | None
    hyperparameters: dict[str, Any]
    config: dict[str, Any]
    epochs: int
    epochs_completed: int
    best_epoch: int | None
    best_metric_name: str | None
    best_metric: float | None
    metrics: dict[str, Any]
    queue_position: int = Field(description="1-based place in the queue while queued (1 = next); 0 otherwise")
    attempts: int
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    checkpoints: list[CheckpointOut]
    mlflow_run_id: str | None
    init_from: dict[str, Any] | None = Field(
        default=None,
        description='fine-tuned from an earlier job: {"job_id", "checkpoint": "best.pt"|"last.pt", "model_name", ...}',
    )
    defaults: dict[str, Any] | None = Field(
        default=None,
        description="in the answer to POST only: the settings the request left out and the server chose from the "
        'data and the machine, each {"value", "why", "why_ko"} (image_size, batch_size, epochs; Ultralytics: nbs, '
        "optimizer)",
    )


class JobList(BaseModel):
    """One page of your jobs, newest first, with the total count."""

    items: list[JobOut]
    total: int
    offset: int
    limit: int


class JobMetrics(BaseModel):
    """Per-epoch metric series of a job for charts: one value per epoch in `epochs` (null where an
    epoch lacks that metric), the epochs with checkpoints, and the best epoch."""

    job_id: int
    epochs: list[int]
    series: dict[str, list[float | None]]
    checkpoints: dict[int, list[str]]
    best_epoch: int | None = None
    best_metric_name: str | None = None
    best_metric: float | None = None
