"""Reading several of the caller's jobs side by side: the facts of one job a person compares
(`job_facts`: model, data, epochs, time, the task's headline metric, the settings), two to five
jobs in a table with the settings that differ (`compare_jobs`), the caller's newest jobs
(`latest_job_ids`) and the caller's jobs on one dataset ranked by the headline metric of their
task (`best_jobs`).

The headline metric of a task is the one the adapters keep best.pt by (`Adapter.primary_metric`:
top-1 accuracy for classification, mAP50-95 of boxes, masks, keypoints or rotated boxes for the
other tasks); higher is better for all of them. Jobs of other users are "not found" as everywhere
in `tools.jobs`. The agent's dialogue, its LLM tools and any REST route call these same functions.
See docs/architecture.md.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from tools import weights as weights_tools
from tools.context import ToolContext, iso_utc, require_user
from tools.datasets import resolve_dataset
from tools.db.models import Job
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.jobs.view import job_metrics, job_row
from trainer_runtime.adapters import get_adapter
from trainer_runtime.spec import FRAMEWORKS

MAX_COMPARED = 5
BEST_SCAN_LIMIT = 500
"""Most of the caller's jobs `best_jobs` reads (newest first)."""
SETTING_KEYS = ("epochs", "batch_size", "image_size", "learning_rate", "preset", "seed", "val_fraction")
"""The hyper-parameters a comparison lists (plus every advanced_config key, the weights and the
fine-tuning source)."""


@cache
def _headlines() -> dict[str, str]:
    out: dict[str, str] = {}
    for fw in FRAMEWORKS:
        for task, metric in get_adapter(fw).primary_metric.items():
            out.setdefault(task, metric)
    return out


def headline_metric(task_type: str | None) -> str | None:
    """The metric a task's jobs are ranked by (the adapters' best.pt metric), None for an unknown task."""
    return _headlines().get(task_type or "")


class JobFacts(BaseModel):
    """One job as a person compares it: what it trained on what, how long, its best headline
    metric, and its settings (hyper-parameters, advanced config keys, weights, fine-tuning source)."""

    id: int
    status: str
    model_name: str
    framework: str
    task_type: str
    dataset_id: str | None
    dataset_name: str
    epochs: int
    epochs_completed: int
    duration_s: float | None = Field(description="finished minus started, seconds (None until both are known)")
    metric_name: str | None = Field(description="the task's headline metric")
    metric: float | None = Field(description="the best value of the headline metric the job reached")
    metric_epoch: int | None = None
    final_metrics: dict[str, float] = Field(default_factory=dict, description="the last epoch's numeric metrics")
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None


class JobComparison(BaseModel):
    """Two to five jobs side by side: their facts (in the order asked), the settings whose values
    differ (setting -> one value per job, None where a job lacks it), and the leader by the
    headline metric when all of them train the same task and have a value."""

    jobs: list[JobFacts]
    differing: dict[str, list[Any]]
    same_task: bool
    metric_name: str | None
    leader: int | None


class BestGroup(BaseModel):
    """The caller's jobs of one task on a dataset: ranked by the headline metric (best first), and
    those without a value yet (queued, failed before a validation, ...)."""

    task_type: str
    metric_name: str | None
    ranked: list[JobFacts]
    unranked: list[JobFacts]


class BestJobs(BaseModel):
    """The answer to "which of my jobs was best on X?": one group per task trained on the dataset."""

    dataset: str
    dataset_id: str | None
    groups: list[BestGroup]


def _settings(job: Job) -> dict[str, Any]:
    hp = dict(job.hyperparameters or {})
    out: dict[str, Any] = {k: hp[k] for k in SETTING_KEYS if k in hp}
    advanced = hp.get("advanced_config") or dict(job.intent or {}).get("advanced_config") or {}
    if isinstance(advanced, dict):
        out.update({str(k): v for k, v in sorted(advanced.items())})
    out["weights"] = weights_tools.pretrained_field(job).get("source")
    init = job.init_from or {}
    if init:
        out["init_from"] = f"job {init.get('job_id')} {init.get('checkpoint')}"
    return out


def _headline_value(ctx: ToolContext, job: Job, metric: str | None) -> tuple[float | None, int | None]:
    """The best value of `metric` the job reached and its epoch (the job's own best when it is kept
    by that metric, else the best epoch event, else its latest metrics)."""
    if metric is None:
        return None, None
    if job.best_metric_name == metric and job.best_metric is not None:
        return float(job.best_metric), job.best_epoch
    series = job_metrics(ctx, job.id)
    values = [(v, e) for v, e in zip(series.series.get(metric) or [], series.epochs, strict=False) if v is not None]
    if values:
        v, e = max(values, key=lambda x: (x[0], -x[1]))
        return float(v), e
    latest = (job.metrics or {}).get(metric)
    return (float(latest), None) if isinstance(latest, int | float) else (None, None)


def _facts(ctx: ToolContext, job: Job) -> JobFacts:
    metric = headline_metric(job.task_type)
    value, epoch = _headline_value(ctx, job, metric)
    duration = None
    if job.started_at is not None and job.finished_at is not None:
        duration = max(0.0, (job.finished_at - job.started_at).total_seconds())
    final = {
        k: float(v) for k, v in (job.metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return JobFacts(
        id=job.id,
        status=job.status,
        model_name=job.model_name,
        framework=job.framework,
        task_type=job.task_type,
        dataset_id=job.dataset_id,
        dataset_name=job.dataset_name,
        epochs=int(job.epochs or 0),
        epochs_completed=int(job.epochs_completed or 0),
        duration_s=duration,
        metric_name=metric,
        metric=value,
        metric_epoch=epoch,
        final_metrics=final,
        settings=_settings(job),
        created_at=iso_utc(job.created_at),
    )


def job_facts(ctx: ToolContext, job_id: int) -> JobFacts:
    """One of the caller's jobs as `JobFacts` (others' -> NotFoundError)."""
    return _facts(ctx, job_row(ctx, job_id))


def compare_jobs(ctx: ToolContext, job_ids: list[int]) -> JobComparison:
    """Two to five of the caller's jobs side by side (see `JobComparison`).

    Errors: fewer than two different ids, or more than five -> InvalidInputError; a job that is
    not the caller's or does not exist -> NotFoundError naming it."""
    ids = [int(j) for j in job_ids]
    if len(set(ids)) < 2:
        raise InvalidInputError("name two different jobs to compare", detail={"field": "job_ids", "job_ids": ids})
    if len(ids) > MAX_COMPARED:
        raise InvalidInputError(f"compare at most {MAX_COMPARED} jobs at once", detail={"field": "job_ids"})
    ids = list(dict.fromkeys(ids))
    facts = [_facts(ctx, job_row(ctx, j)) for j in ids]
    keys: list[str] = []
    for f in facts:
        keys += [k for k in f.settings if k not in keys]
    differing = {
        k: [f.settings.get(k) for f in facts] for k in keys if len({repr(f.settings.get(k)) for f in facts}) > 1
    }
    same_task = len({f.task_type for f in facts}) == 1
    metric = facts[0].metric_name if same_task else None
    leader = None
    if same_task and all(f.metric is not None for f in facts):
        best = max(facts, key=lambda f: float(f.metric or 0.0))
        if sum(1 for f in facts if f.metric == best.metric) == 1:
            leader = best.id
    return JobComparison(jobs=facts, differing=differing, same_task=same_task, metric_name=metric, leader=leader)


def latest_job_ids(ctx: ToolContext, n: int = 2, *, exclude: int | None = None) -> list[int]:
    """The ids of the caller's `n` newest jobs (fewer when they have fewer), newest first."""
    user = require_user(ctx, "training jobs")
    if not 1 <= n <= MAX_COMPARED:
        raise InvalidInputError(f"n must be 1..{MAX_COMPARED}", detail={"field": "n"})
    stmt = select(Job.id).where(Job.owner_id == user.id)
    if exclude is not None:
        stmt = stmt.where(Job.id != int(exclude))
    return [int(i) for i in ctx.db.scalars(stmt.order_by(Job.id.desc()).limit(n))]


def best_jobs(ctx: ToolContext, dataset: str, task_type: str | None = None) -> BestJobs:
    """The caller's jobs on `dataset` (a name or id they can see, or the name a job recorded for a
    dataset since deleted), grouped by task (only `task_type` when given) and ranked by the task's
    headline metric, best first. A dataset that neither resolves nor names any of the caller's
    jobs -> NotFoundError (with the resolver's suggestions)."""
    user = require_user(ctx, "training jobs")
    name = str(dataset).strip()
    if not name:
        raise InvalidInputError("name a dataset", detail={"field": "dataset"})
    ds_id: str | None = None
    shown = name
    resolve_error: NotFoundError | ConflictError | None = None
    try:
        row = resolve_dataset(ctx, name)
        ds_id, shown = row.id, row.name
    except (NotFoundError, ConflictError) as exc:
        resolve_error = exc
    rows = list(
        ctx.db.scalars(select(Job).where(Job.owner_id == user.id).order_by(Job.id.desc()).limit(BEST_SCAN_LIMIT))
    )
    wanted = shown.lower()
    mine = [
        j
        for j in rows
        if (ds_id is not None and j.dataset_id == ds_id) or (ds_id is None and (j.dataset_name or "").lower() == wanted)
    ]
    if not mine and resolve_error is not None:
        raise resolve_error
    if task_type is not None:
        mine = [j for j in mine if j.task_type == task_type]
    groups: dict[str, list[JobFacts]] = {}
    for j in mine:
        groups.setdefault(j.task_type, []).append(_facts(ctx, j))
    out = []
    for task, facts in groups.items():
        ranked = sorted((f for f in facts if f.metric is not None), key=lambda f: (-float(f.metric or 0.0), f.id))
        unranked = [f for f in facts if f.metric is None]
        out.append(BestGroup(task_type=task, metric_name=headline_metric(task), ranked=ranked, unranked=unranked))
    out.sort(key=lambda g: (-len(g.ranked), g.task_type))
    return BestJobs(dataset=shown, dataset_id=ds_id, groups=out)
