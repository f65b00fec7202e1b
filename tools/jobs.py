"""Training jobs: the operations the REST API and the agent share.

A job is created from a `TrainingIntent` (what a person asked for) and a dataset they can see:

1. the model decides framework and task (`tools.catalog`); without a model, the documented
   default model of the task (yolo11n, yolo11n-seg, yolo11n-pose, yolo11n-obb, resnet18); without
   a task either, the most specific task the dataset's annotations serve natively;
2. the dataset must serve the task (contract 3): incompatible -> InvalidInputError (422) with the
   reason a person understands;
3. the preset is resolved into concrete hyper-parameters (epochs, batch_size, image_size,
   learning_rate, preset, advanced_config, seed, val_fraction, device, workers: `Job.hyperparameters`)
   and the framework config (`Job.config`) by the adapter's `resolve_config`; the adapter's
   `validate_spec` checks model, task and batch size against the dataset (ConfigError -> 422);
4. the dataset is snapshotted (seed: "학습 시작 시 자동 스냅샷") and the job pinned to it;
5. the job is stored `queued` with a `status` event, and the supervisor (`tools.supervisor`; the
   leader among the server replicas) starts it when a slot frees (FIFO, oldest job first: the
   database is the queue, `queue_order`).

Jobs are private to their owner: anyone else gets NotFoundError (404), as for private datasets.

Every function takes `ctx: ToolContext` first and returns JSON-ready dicts. The job JSON::

    {"id", "status", "framework", "model_name", "task_type", "dataset_id", "dataset_name",
     "snapshot_id", "project_id", "hyperparameters", "config", "epochs", "epochs_completed",
     "best_epoch", "best_metric_name", "best_metric", "metrics", "queue_position", "attempts",
     "error", "created_at", "started_at", "finished_at", "checkpoints": [{"name", "key", "size",
     "epoch"}], "mlflow_run_id", "stop_requested", "status_message", "conversion", "preset",
     "init_from": {"job_id", "checkpoint", "model_name", "framework", "dataset_name", "epoch"} | null}

Fine-tuning (`intent.init_from_job`): the job starts from the weights of an earlier job the caller
may read (best.pt, or last.pt with `init_checkpoint="last"`): same framework and model (the model
may be left out: it is the source job's), other classes allowed (the trainer rebuilds the head).
Unknown or hidden source -> NotFoundError; other architecture -> InvalidInputError naming both;
no such checkpoint -> ConflictError. The spec carries the checkpoint's store key (`init_from`).

`queue_position`: for a queued job its 1-based place in the queue (1 = starts when the next slot
frees); 0 for a job that is not waiting in the queue.

The functions that change a job accept an optional `supervisor` (`JobNotifier`, normally
`tools.supervisor.Supervisor`); without one they use the app's (`ctx.services.notifier`, see
`tools.services`), so REST, agent and Slack callers all wake the app's supervisor. A resumed or
deleted job is reported to `ctx.services.job_listeners` (the inference caches). The queue itself
is the database: a job queued by a bare script (no supervisor) or by another replica is started
by whichever supervisor leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, object_session

from tools import catalog, defaults, estimates, user_weights
from tools import weights as weights_tools
from tools.context import ToolContext, is_db_id, iso_utc, require_user
from tools.datasets import TaskCompatibility, check_dataset_compatibility, create_snapshot, resolve_dataset
from tools.db.models import (
    Dataset,
    DatasetImage,
    Job,
    JobCheckpoint,
    JobEvent,
    ModelExport,
    TestRun,
)
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.events import append_event
from tools.intent import TrainingIntent
from tools.projects import get_project
from tools.services import JobNotifier, WeightsPolicy
from trainer_runtime.adapters import get_adapter
from trainer_runtime.errors import TrainerRuntimeError
from trainer_runtime.events import JOB_STATUSES, TERMINAL_STATUSES
from trainer_runtime.spec import Hyperparameters, InitFromSpec, JobSpec, MlflowSpec
from trainer_runtime.storage import StorageConfig, checkpoint_key
from trainer_runtime.weights import WeightsPlan

ACTIVE_STATUSES = ("preparing", "running", "resuming")
"""A trainer process is (or should be) alive."""
RESUMABLE_STATUSES = ("stopped", "failed")
MAX_LIST_LIMIT = 500
SPEC_FILE = "spec.json"
DELETED_EVENT_TYPE = "deleted"
"""A bus notice (no seq, never stored) that a job or test run was deleted: its streams end."""
RESULTS_PREFIX = "results/"
STATS_SAMPLE = 2000  # images read for a dataset's typical image size (tools.defaults)
GPU_MEMORY_MB_GUESS = 16 * 1024.0  # a GPU's memory when nothing measured it (batch-size defaults)
"""Internal-store prefix of what inference makes from a job (`tools.inference`: exports, test runs)."""


@dataclass(frozen=True)
class JobRuntimeConfig:
    """What a trainer needs from the server's settings (`build_spec`).

    trainer_dir: the trainers' work folder (``data_dir/trainer``: dataset cache, per-job folders
    ``jobs/job_<id>/`` with spec.json, trainer.log, output/, events/ spool; the default MLflow
    store). storage: the dual storage settings. callback_base_url: how a trainer reaches this
    server. mlflow_tracking_uri: None for the trainer's SQLite store under trainer_dir/mlflow.
    weights: the pretrained-weights download policy the spec's plan follows (`tools.weights`).
    """

    trainer_dir: Path
    storage: StorageConfig
    callback_base_url: str = "http://127.0.0.1:8000"
    mlflow_tracking_uri: str | None = None
    weights: WeightsPolicy = field(default_factory=WeightsPolicy)

    def job_dir(self, job_id: int) -> Path:
        return Path(self.trainer_dir).resolve() / "jobs" / f"job_{int(job_id)}"

    def spec_path(self, job_id: int) -> Path:
        return self.job_dir(job_id) / SPEC_FILE

    def callback_url(self, job_id: int) -> str:
        return f"{self.callback_base_url.rstrip('/')}/internal/jobs/{int(job_id)}/events"


# ------------------------------------------------------------------------------------- helpers


def hash_token(token: str) -> str:
    """The sha256 hex digest stored in `Job.token_hash` (the token itself is only in the spec)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _not_found(job_id: Any) -> NotFoundError:
    return NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})


def _job_row(ctx: ToolContext, job_id: int) -> Job:
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


def _compare_and_set(ctx: ToolContext, job_id: int, expected: str, new: str) -> bool:
    """Move the job from status `expected` to `new` only if it is still there (commits)."""
    result = ctx.db.execute(update(Job).where(Job.id == job_id, Job.status == expected).values(status=new))
    ctx.db.commit()
    return isinstance(result, CursorResult) and result.rowcount == 1


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


def _full_dict(ctx: ToolContext, job: Job) -> dict[str, Any]:
    position = queue_positions(ctx.db, ctx.services.notifier).get(job.id, 0) if job.status == "queued" else 0
    return job_dict(job, queue_position=position, checkpoints=_checkpoints(ctx.db, [job.id])[job.id])


def emit_status(
    db: Any, job_id: int, status: str, notifier: JobNotifier | None = None, **data: Any
) -> dict[str, Any] | None:
    """Store a server-side `status` event (tools.events.append_event commits) and publish it."""
    event = append_event(db, job_id, "status", {"status": status, **data}, source="server")
    if event is not None and notifier is not None:
        notifier.publish(job_id, event)
    return event


def _dataset_summary(ctx: ToolContext, ds: Dataset) -> dict[str, Any]:
    """What the adapters' `validate_spec` reads: task compatibility and image counts."""
    labeled = ctx.db.scalar(
        select(func.count())
        .select_from(DatasetImage)
        .where(DatasetImage.dataset_id == ds.id, DatasetImage.num_annotations > 0)
    )
    counts = {"images": int(ds.num_images or 0), "labeled_images": int(labeled or 0)}
    counts["annotations"] = int(ds.num_annotations or 0)
    return {"name": ds.name, "counts": counts, **counts, "tasks": dict(ds.capabilities or {})}


def _dataset_stats(ctx: ToolContext, ds: Dataset, summary: dict[str, Any]) -> defaults.DatasetStats:
    """Training images and the typical (median) longer side of the dataset's images (a sample of
    at most `STATS_SAMPLE` images, labelled ones first)."""
    rows = ctx.db.execute(
        select(DatasetImage.width, DatasetImage.height)
        .where(DatasetImage.dataset_id == ds.id)
        .order_by(DatasetImage.num_annotations == 0, DatasetImage.id)
        .limit(STATS_SAMPLE)
    ).all()
    sides = sorted(max(int(w or 0), int(h or 0)) for w, h in rows if (w or 0) > 0 and (h or 0) > 0)
    typical = sides[len(sides) // 2] if sides else None
    return defaults.DatasetStats(
        train_images=_train_images(summary, 0.2), typical_side=typical, images=int(summary.get("images") or 0)
    )


def _device_info(ctx: ToolContext) -> defaults.DeviceInfo:
    """Where the next job most likely trains: the device of the latest measured job (else this
    machine's CPU), with this machine's memory for a CPU and `GPU_MEMORY_MB_GUESS` for a GPU."""
    kind = estimates.latest_device_kind(ctx.db)
    if kind == "cpu":
        try:
            memory_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            memory_mb = 4096.0
    else:
        memory_mb = GPU_MEMORY_MB_GUESS
    return defaults.DeviceInfo(kind=kind, memory_mb=float(memory_mb))


def _start_kind(plan: WeightsPlan | None) -> defaults.Start:
    """pretrained: weights that are here (registry, the user's file, an earlier job: plan None);
    download: weights the trainer will try to fetch; scratch: none."""
    if plan is None or plan.source in ("registry", "user upload"):
        return "pretrained"
    return "scratch" if plan.source == "scratch" else "download"


def _train_images(summary: dict[str, Any], val_fraction: float) -> int | None:
    n = summary.get("labeled_images") or summary.get("images")
    if not isinstance(n, int) or n <= 0:
        return None
    return max(1, n - max(1, round(n * val_fraction)))


# --------------------------------------------------------------------------------- job specs


def build_spec(job: Job, runtime: JobRuntimeConfig, token: str, *, resume: bool = False) -> JobSpec:
    """The job spec (contract 4) a trainer runs from: ids, model, task, dataset snapshot, the stored
    hyper-parameters, storage settings, callback URL + token, MLflow, work folder."""
    storage = runtime.storage.model_copy(update={"local_root": Path(runtime.storage.local_root).resolve()})
    return JobSpec(
        job_id=job.id,
        project_id=job.project_id,
        framework=job.framework,
        model_name=job.model_name,
        task_type=job.task_type,
        dataset_id=job.dataset_id or "",
        snapshot_id=job.snapshot_id,
        hyperparameters=Hyperparameters.model_validate(job.hyperparameters),
        storage=storage,
        callback_url=runtime.callback_url(job.id),
        callback_token=token,
        mlflow=MlflowSpec(tracking_uri=runtime.mlflow_tracking_uri),
        work_dir=str(Path(runtime.trainer_dir).resolve()),
        resume=resume,
        init_from=_init_spec(job.init_from),
        pretrained=_weights_plan(job, runtime.weights),
    )


def _weights_plan(job: Job, policy: WeightsPolicy) -> WeightsPlan | None:
    """The pretrained weights plan, resolved again at launch (the registry may have gained the
    model since the job was queued); none for a fine-tuning job (it starts from its checkpoint);
    the user's own upload when the job names one (it wins over the registry)."""
    db = object_session(job)
    if job.init_from or db is None:
        return None
    own = user_weights.plan_for_job(db, job)
    if own is not None:
        return own
    return weights_tools.plan_for(db, job.framework, job.model_name, policy)


def _init_spec(init_from: dict[str, Any] | None) -> InitFromSpec | None:
    if not init_from:
        return None
    return InitFromSpec.model_validate(
        {k: init_from[k] for k in ("job_id", "checkpoint", "key", "framework", "model_name")}
    )


def write_spec(job: Job, runtime: JobRuntimeConfig) -> Path:
    """Issue a fresh callback token (its sha256 goes to `job.token_hash`; the caller commits) and
    write the spec to ``<trainer_dir>/jobs/job_<id>/spec.json`` (mode 0600, atomically)."""
    token = new_token()
    spec = build_spec(job, runtime, token)
    path = runtime.spec_path(job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(spec.model_dump_json(indent=2))
    os.replace(tmp, path)
    job.token_hash = hash_token(token)
    return path


# ------------------------------------------------------------------------------------ create


def _plan(
    ctx: ToolContext, intent: TrainingIntent, project_id: int | None
) -> tuple[Dataset, TaskCompatibility, dict[str, Any]]:
    """Validate a request; returns (dataset, compatibility, job fields)."""
    user = require_user(ctx, "training jobs")
    if not intent.dataset or not intent.dataset.strip():
        raise InvalidInputError(
            "name the dataset to train on (its name or id), e.g. dataset 'digits'", detail={"field": "dataset"}
        )
    ds = resolve_dataset(ctx, intent.dataset)
    if project_id is not None:
        get_project(ctx.db, user, int(project_id))

    if intent.init_from_job is not None and intent.init_weights is not None:
        raise InvalidInputError(
            "start from an earlier job (init_from_job) or from your uploaded weights (init_weights), not both",
            detail={"field": "init_weights"},
        )
    # fine-tuning: the source job's checkpoint (readable by the caller), same architecture
    source = _init_source(ctx, intent) if intent.init_from_job is not None else None
    if source is not None and not intent.model_name:
        intent = intent.model_copy(update={"model_name": source.model_name, "framework": source.framework})

    # the user's own uploaded weights ("use my weights"): they name the model when none is given
    own = _own_weights(ctx, intent) if intent.init_weights is not None else None
    if own is not None and not intent.model_name:
        intent = intent.model_copy(update={"model_name": own.model_name, "framework": own.framework})

    # model -> framework and task
    if intent.model_name:
        info = catalog.resolve_model(intent.model_name, intent.framework, intent.task_type)
        model_name, framework, task_type = info.name, info.framework, info.task_type
    else:
        task = intent.task_type or catalog.pick_task(dict(ds.capabilities or {}), intent.framework)
        if task is None:
            raise InvalidInputError(
                f"dataset {ds.name!r} has no annotations a training task can use; label it first",
                detail={"field": "dataset"},
            )
        model = catalog.default_model(task, intent.framework)
        assert model is not None
        info = catalog.resolve_model(model)
        model_name, framework, task_type = info.name, info.framework, task

    init_from = _init_from(ctx, intent, source, model_name, framework) if source is not None else None
    if own is not None:
        user_weights.check_model(own, framework, model_name)

    # compatibility (contract 3)
    compat = check_dataset_compatibility(ctx, ds.id, task_type)
    if compat.get("status") == "incompatible":
        reason = str(compat.get("reason") or f"dataset {ds.name!r} cannot train {task_type}")
        raise InvalidInputError(
            reason, detail={"field": "dataset", "reason": reason, "task_type": task_type, "dataset_id": ds.id}
        )

    # hyper-parameters: explicit values, else chosen from the data and the machine (tools.defaults)
    adapter = get_adapter(framework)
    summary = _dataset_summary(ctx, ds)
    preset = intent.preset
    policy = ctx.services.weights
    weights_plan = (
        None if (own is not None or init_from) else weights_tools.plan_for(ctx.db, framework, model_name, policy)
    )
    stats = _dataset_stats(ctx, ds, summary)
    chosen, choices = defaults.choose(
        framework=framework,
        model_name=model_name,
        task_type=task_type,
        default_size=info.default_image_size,
        params_m=info.params_m,
        framework_batch=catalog.DEFAULT_BATCH_SIZE.get(framework, 16),
        stats=stats,
        device=_device_info(ctx),
        start=_start_kind(weights_plan),
        given={"image_size": intent.image_size, "batch_size": intent.batch_size, "epochs": intent.epochs},
        preset_epochs=catalog.default_epochs(preset) if preset else None,
    )
    values: dict[str, Any] = {
        **chosen,
        "learning_rate": intent.learning_rate,
        "preset": preset,
        "advanced_config": dict(intent.advanced_config or {}),
    }
    try:
        hp = Hyperparameters.model_validate(values)
        if framework == "ultralytics":  # small datasets: nominal batch, the optimizer 'auto' picks
            extra, why = defaults.ultralytics_settings(
                adapter.resolve_config(preset, dict(hp.advanced_config), {}),
                train_images=stats.train_images,
                batch=int(hp.batch_size or 16),
                epochs=hp.epochs,
                num_classes=len(ds.class_names or []),
                user_keys=set(intent.advanced_config or {}),
                lr_given=hp.learning_rate is not None,
            )
            lr = extra.pop("learning_rate", None)
            hp = hp.model_copy(
                update={"advanced_config": {**hp.advanced_config, **extra}}
                | ({"learning_rate": lr} if lr is not None else {})
            )
            choices.extra.update(why)
        explicit = hp.model_dump(exclude={"preset", "advanced_config"}, exclude_none=True)
        config = adapter.resolve_config(preset, dict(hp.advanced_config), explicit)
        if hp.learning_rate is None:
            lr = catalog.learning_rate_of(config)
            if lr is not None and lr > 0:
                hp = hp.model_copy(update={"learning_rate": lr})
                explicit = hp.model_dump(exclude={"preset", "advanced_config"}, exclude_none=True)
                config = adapter.resolve_config(preset, dict(hp.advanced_config), explicit)
        probe = JobSpec(
            job_id=1,
            framework=framework,
            model_name=model_name,
            task_type=task_type,
            dataset_id=ds.id,
            hyperparameters=hp,
        )
        adapter.validate_spec(probe, summary)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"{loc}: {first['msg']}", detail={"field": loc}) from exc
    except TrainerRuntimeError as exc:
        raise InvalidInputError(str(exc), detail={"field": "intent"}) from exc

    fields = {
        "framework": framework,
        "model_name": model_name,
        "task_type": task_type,
        "preset": preset,
        "hyperparameters": hp.model_dump(),
        "config": config,
        "conversion": compat.get("conversion"),
        "epochs": hp.epochs,
        "init_from": init_from,
        "pretrained": user_weights.planned_field(own)
        if own is not None
        else None
        if init_from
        else weights_tools.planned_field(weights_plan or weights_tools.plan_for(ctx.db, framework, model_name, policy)),
        "defaults": choices.public(),
    }
    return ds, compat, fields


def _own_weights(ctx: ToolContext, intent: TrainingIntent) -> Any:
    """The user's upload a request names (`TrainingIntent.init_weights`; `tools.user_weights`)."""
    assert intent.init_weights is not None
    return user_weights.resolve_for_job(
        ctx,
        intent.init_weights,
        model_name=intent.model_name,
        framework=intent.framework,
        task_type=intent.task_type,
    )


def _init_source(ctx: ToolContext, intent: TrainingIntent) -> Job:
    """The job a fine-tuning request starts from: one the caller may read (else NotFoundError)."""
    try:
        return _job_row(ctx, int(intent.init_from_job or 0))
    except NotFoundError as exc:
        raise NotFoundError(
            f"job {intent.init_from_job} to start from not found",
            detail={"field": "init_from_job", "job_id": intent.init_from_job},
        ) from exc


def _init_from(
    ctx: ToolContext, intent: TrainingIntent, source: Job, model_name: str, framework: str
) -> dict[str, Any]:
    """Check a fine-tuning source against the requested model; returns `Job.init_from`.

    Same architecture (framework and model name) or InvalidInputError naming both; the checkpoint
    (best.pt unless `init_checkpoint` is "last") must exist, else ConflictError. Classes may differ:
    the trainer rebuilds the head."""
    if (source.framework, source.model_name) != (framework, model_name):
        raise InvalidInputError(
            f"job {source.id} trained {source.framework} {source.model_name}, not {framework} {model_name}: "
            "fine-tuning starts from the same architecture (leave the model out to use the job's)",
            detail={
                "field": "init_from_job",
                "job_id": source.id,
                "source_model": source.model_name,
                "source_framework": source.framework,
                "model_name": model_name,
                "framework": framework,
            },
        )
    name = f"{intent.init_checkpoint or 'best'}.pt"
    ckpt = ctx.db.scalar(select(JobCheckpoint).where(JobCheckpoint.job_id == source.id, JobCheckpoint.name == name))
    if ckpt is None:
        have = sorted(ctx.db.scalars(select(JobCheckpoint.name).where(JobCheckpoint.job_id == source.id)))
        raise ConflictError(
            f"job {source.id} ({source.status}) has no {name} to start from"
            + (f"; it has {', '.join(have)}" if have else ""),
            detail={"field": "init_checkpoint", "job_id": source.id, "checkpoint": name, "available": have},
        )
    return {
        "job_id": source.id,
        "checkpoint": name,
        "key": ckpt.key,
        "framework": source.framework,
        "model_name": source.model_name,
        "dataset_name": source.dataset_name,
        "epoch": ckpt.epoch,
    }


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
    ds, _compat, fields = _plan(ctx, intent, project_id)
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
    return _full_dict(ctx, job) | {"defaults": chosen}


# -------------------------------------------------------------------------------- read, list


def get_job(ctx: ToolContext, job_id: int) -> dict[str, Any]:
    """One of the caller's jobs (others' jobs answer NotFoundError, as if they did not exist)."""
    return _full_dict(ctx, _job_row(ctx, job_id))


def list_jobs(
    ctx: ToolContext,
    status: str | None = None,
    project_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """The caller's jobs, newest first.

    status: only jobs in this status (queued, preparing, running, completed, failed, stopped,
        interrupted, resuming). project_id: only jobs of this project of the caller's.
    Returns {"items": [job...], "total", "offset", "limit"}.
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
    return {
        "items": [job_dict(r, queue_position=positions.get(r.id, 0), checkpoints=ckpts[r.id]) for r in rows],
        "total": int(total),
        "offset": offset,
        "limit": limit,
    }


# ------------------------------------------------------------------------- stop, resume, delete


def stop_job(ctx: ToolContext, job_id: int, *, supervisor: JobNotifier | None = None) -> dict[str, Any]:
    """Stop a job. Queued: stopped at once. Running: the trainer gets SIGINT, finishes the batch,
    uploads best.pt and last.pt and ends `stopped` (SIGTERM, then SIGKILL, after the grace
    period). Waiting for a retry: stopped by the supervisor. Finished jobs: ConflictError (409).
    Returns the job JSON (`stop_requested` true until the trainer has stopped)."""
    job = _job_row(ctx, job_id)
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
    return _full_dict(ctx, job)


def resume_job(ctx: ToolContext, job_id: int, *, supervisor: JobNotifier | None = None) -> dict[str, Any]:
    """Queue a stopped or failed job again; it continues from its last.pt (weights, optimizer,
    scheduler, epoch, best metric) with a fresh retry budget. ConflictError (409) when the job is
    not stopped/failed or has no last.pt. A trainer reports ``stopped`` before it has exited: a
    resume in that window is accepted, and the supervisor starts the new attempt only once the old
    trainer has exited (attempts are told apart by number, so its late exit changes nothing)."""
    job = _job_row(ctx, job_id)
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
    return _full_dict(ctx, job)


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
    job = _job_row(ctx, job_id)
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


# ----------------------------------------------------------------------------------- metrics


def job_metrics(ctx: ToolContext, job_id: int) -> dict[str, Any]:
    """Per-epoch series for charts, from the job's stored `epoch` events.

    Returns {"job_id", "epochs": [1, 2, ...], "series": {"train/loss": [...], "val/mAP50": [...]},
    "checkpoints": {epoch: [names]}, "best_epoch", "best_metric_name", "best_metric"}; each series
    has one value per entry of `epochs` (None where an epoch lacks that metric, e.g. an epoch
    recovered after a crash).
    """
    job = _job_row(ctx, job_id)
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
    return {
        "job_id": job.id,
        "epochs": epochs,
        "series": series,
        "checkpoints": checkpoints,
        "best_epoch": job.best_epoch,
        "best_metric_name": job.best_metric_name,
        "best_metric": job.best_metric,
    }


def read_spec_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "ACTIVE_STATUSES",
    "JobNotifier",
    "JobRuntimeConfig",
    "build_spec",
    "create_job",
    "delete_job",
    "emit_status",
    "get_job",
    "hash_token",
    "job_dict",
    "job_metrics",
    "list_jobs",
    "queue_order",
    "queue_positions",
    "resume_job",
    "stop_job",
    "write_spec",
]
