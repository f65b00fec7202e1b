"""Planning a job from a `TrainingIntent` (`plan_job`): model, framework and task, the dataset's
compatibility, fine-tuning and own-weights sources, and the hyper-parameters chosen from the data
and the machine (`tools.defaults`), checked by the framework's adapter. Part of `tools.jobs` (its
module doc has the rules); see docs/architecture.md ("A request, from chat to checkpoint").
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from tools import catalog, defaults, estimates, user_weights
from tools import weights as weights_tools
from tools.context import ToolContext, require_user
from tools.datasets import TaskCompatibility, check_dataset_compatibility, resolve_dataset
from tools.db.models import Dataset, DatasetImage, Job, JobCheckpoint
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.intent import TrainingIntent
from tools.jobs.view import job_row
from tools.projects import get_project
from trainer_runtime.adapters import get_adapter
from trainer_runtime.errors import TrainerRuntimeError
from trainer_runtime.spec import Hyperparameters, JobSpec
from trainer_runtime.weights import WeightsPlan

STATS_SAMPLE = 2000  # images read for a dataset's typical image size (tools.defaults)
GPU_MEMORY_MB_GUESS = 16 * 1024.0  # a GPU's memory when nothing measured it (batch-size defaults)


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


def plan_job(
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
        return job_row(ctx, int(intent.init_from_job or 0))
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
