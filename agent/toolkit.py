"""The agent's toolkit: the `tools` operations as plain functions and as LangChain `StructuredTool`s.

(Named `toolkit`, not `tools`, so that it is not confused with the top-level `tools` package whose
functions it wraps.)

Every operation takes the chat's `ToolContext` and calls the same `tools` function the REST API
calls, so it sees and does exactly what the user may (a private dataset of someone else is "not
found" here as in REST; jobs are the user's own). Nothing here widens permissions: the context is
bound when the tools are built (`build_tools(ctx)`), never taken from the model's arguments.

The deterministic dialogue (`agent.dialogue`) calls the functions directly; the LLM planner
(`agent.llm`) gets them as `StructuredTool`s whose pydantic argument schemas and docstrings tell
the model what each argument means. A `ToolError` becomes ``{"error": message, "error_type":
class name}`` for the model instead of an exception.

Launching is deliberately not a tool: a job starts only after the person says yes to the
confirmation summary (`agent.dialogue`). `preview_training_job` shows what would be launched.

Inference (`tools.inference`, run by the app's `InferenceService` worker processes; this process
never imports torch): `predict_image` (the image attached to the current chat turn),
`start_test_run` / `test_run_status` and `export_onnx` (ONNX, TorchScript or OpenVINO). The service
and the attached image travel explicitly as an `InferenceScope` made per turn
(`agent.chat.handle_message` makes it and passes it to the dialogue and to `build_tools(ctx, scope)`);
without one (an empty scope) these tools answer that inference is not available.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from tools import catalog, jobs
from tools.context import ToolContext
from tools.datasets import (
    LIST_CLASS_NAMES,
    DatasetOut,
    check_dataset_compatibility,
    class_names_preview,
    list_datasets,
    resolve_dataset,
)
from tools.db.models import JobEvent
from tools.errors import InvalidInputError, NotFoundError, ToolError
from tools.intent import TaskType, TrainingIntent
from tools.jobs.compare import best_jobs, compare_jobs, latest_job_ids
from tools.jobs.diagnose import diagnose_job
from tools.jobs.rerun import rerun_intent
from tools.upload_guide import upload_guide
from trainer_runtime.formats.schema import TASK_TYPES

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

    from tools.inference import InferenceService

__all__ = [
    "InferenceScope",
    "build_tools",
    "compact_dataset",
    "dataset_info",
    "datasets_for",
    "download_link",
    "export_onnx",
    "job_progress",
    "latest_completed_job",
    "list_visible_datasets",
    "predict_image",
    "start_test_run",
    "test_run_status",
    "tool_names",
]

CLASS_ALIASES: dict[str, str] = {
    "고양이": "cat",
    "개": "dog",
    "강아지": "dog",
    "사람": "person",
    "자동차": "car",
    "차": "car",
    "새": "bird",
    "말": "horse",
    "소": "cow",
    "양": "sheep",
    "자전거": "bicycle",
    "원": "circle",
    "사각형": "square",
    "네모": "square",
    "삼각형": "triangle",
    "세모": "triangle",
    "사과": "apple",
    "바나나": "banana",
    "오렌지": "orange",
}
"""Korean class words -> the English names datasets usually use (for matching named classes)."""


# ------------------------------------------------------------------------------ operations


def compact_dataset(item: DatasetOut) -> dict[str, Any]:
    """The fields of a dataset a conversation needs (JSON-ready)."""
    caps = item.capabilities
    return {
        "id": item.id,
        "name": item.name,
        "visibility": item.visibility,
        "is_owner": item.is_owner,
        "num_images": item.num_images,
        "class_names": class_names_preview(item.class_names, LIST_CLASS_NAMES),
        "class_count": item.class_count,
        "tasks": {t: caps[t].status for t in TASK_TYPES if t in caps and caps[t].status},
    }


def list_visible_datasets(ctx: ToolContext, query: str | None = None, mine: bool = False) -> list[dict[str, Any]]:
    """The user's own datasets first, then public ones (compact)."""
    page = list_datasets(ctx, q=query or None, sort="name", limit=500, mine=mine)
    items = [compact_dataset(d) for d in page.items]
    items.sort(key=lambda d: (not d["is_owner"], d["name"].lower()))
    return items


def _norm_class(name: str) -> str:
    text = name.strip().lower()
    text = CLASS_ALIASES.get(text, text)
    return text[:-1] if text.endswith("s") and len(text) > 3 else text


def datasets_for(
    ctx: ToolContext, task_type: str | None = None, class_names: list[str] | None = None, limit: int = 5
) -> tuple[list[dict[str, Any]], bool]:
    """Datasets to suggest: those whose classes match `class_names` (most matches first), else
    the user's own and public ones that can train `task_type`. Returns (items, matched_classes)."""
    items = list_visible_datasets(ctx)
    if task_type:
        items = [d for d in items if d["tasks"].get(task_type) in ("native", "convertible")]
    if class_names:
        wanted = {_norm_class(c) for c in class_names}
        scored = []
        for d in items:
            have = {_norm_class(c) for c in d["class_names"]}
            score = len(wanted & have)
            if score:
                scored.append((-score, not d["is_owner"], d["name"].lower(), d))
        if scored:
            scored.sort(key=lambda x: x[:3])
            return [x[3] for x in scored[:limit]], True
    return items[:limit], False


def dataset_info(ctx: ToolContext, dataset: str) -> dict[str, Any]:
    """One dataset by name or id (NotFoundError when missing or hidden; ConflictError when ambiguous)."""
    row = resolve_dataset(ctx, dataset)
    caps = dict(row.capabilities or {})
    return {
        "id": row.id,
        "name": row.name,
        "visibility": row.visibility,
        "labeled": row.labeled,
        "num_images": row.num_images,
        "class_names": class_names_preview(row.class_names, LIST_CLASS_NAMES),
        "class_count": len(row.class_names or []),
        "capabilities": caps,
        "tasks": {t: (caps.get(t) or {}).get("status") for t in TASK_TYPES if (caps.get(t) or {}).get("status")},
    }


def job_progress(ctx: ToolContext, job_id: int) -> dict[str, Any]:
    """Where a job stands, from the job row and its latest stored events (contract 4): status,
    epoch x/N, latest metrics, ETA (from the newest epoch or batch event), best metric, queue
    position, error. Another user's job -> NotFoundError."""
    job = jobs.get_job(ctx, job_id)
    epoch_ev = ctx.db.scalar(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.type == "epoch")
        .order_by(JobEvent.seq.desc())
        .limit(1)
    )
    batch_ev = ctx.db.scalar(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.type == "batch")
        .order_by(JobEvent.seq.desc())
        .limit(1)
    )
    out: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "model_name": job.model_name,
        "dataset_name": job.dataset_name,
        "epoch": job.epochs_completed or 0,
        "epochs": job.epochs or 0,
        "metrics": dict(job.metrics or {}),
        "eta_s": None,
        "batch": None,
        "batches": None,
        "best_metric_name": job.best_metric_name,
        "best_metric": job.best_metric,
        "best_epoch": job.best_epoch,
        "queue_position": job.queue_position or 0,
        "error": job.error,
        "status_message": (job.model_extra or {}).get("status_message"),
        "last_seq": 0,
    }
    if epoch_ev is not None:
        data = epoch_ev.data or {}
        if isinstance(data.get("epoch"), int):
            out["epoch"] = max(out["epoch"], data["epoch"])
        if isinstance(data.get("epochs"), int):
            out["epochs"] = data["epochs"]
        if data.get("metrics"):
            out["metrics"] = dict(data["metrics"])
        out["eta_s"] = data.get("eta_s")
        out["last_seq"] = epoch_ev.seq
    if batch_ev is not None and (epoch_ev is None or batch_ev.seq > epoch_ev.seq):
        data = batch_ev.data or {}
        out["batch"] = data.get("batch")
        out["batches"] = data.get("batches")
        if data.get("eta_s") is not None:
            out["eta_s"] = data.get("eta_s")
        out["last_seq"] = max(out["last_seq"], batch_ev.seq)
    if job.status in ("completed", "failed", "stopped"):
        out["eta_s"] = None
    return out


# ------------------------------------------------------------------------------ inference


class NoInferenceServiceError(ToolError):
    """No inference service is bound to this turn (e.g. the dialogue runs outside the web app)."""


@dataclass(frozen=True)
class InferenceScope:
    """What a chat turn may use for inference: the app's service (made on first use by `get`) and
    the image attached to the message (None when none was)."""

    get: Callable[[], InferenceService] | None = None
    image: bytes | None = None
    image_name: str | None = None

    def service(self) -> InferenceService:
        if self.get is None:
            raise NoInferenceServiceError("inference is not available here (no inference service)")
        return self.get()


def latest_completed_job(ctx: ToolContext) -> int | None:
    """The user's newest completed job (the model to use when the chat names none)."""
    items = jobs.list_jobs(ctx, status="completed", limit=1).items
    return int(items[0].id) if items else None


def predict_image(
    ctx: ToolContext, service: InferenceService, job_id: int, image: bytes, checkpoint: str | None = None
) -> dict[str, Any]:
    """Predictions of one of the user's finished jobs on `image` (the InferenceResult JSON)."""
    from tools.inference import run_inference

    return run_inference(ctx, service, job_id, image=image, checkpoint=checkpoint).result


def start_test_run(
    ctx: ToolContext,
    service: InferenceService,
    job_id: int,
    dataset: str | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Start a batch test run of the user's job over `dataset` (name or id the user can see; None:
    the dataset the job trained on). Returns the test run record (id, status, progress)."""
    from tools.inference import create_test_run, job_checkpoint

    job, _, _ = job_checkpoint(ctx, job_id, checkpoint)  # 404 / 409 before anything else
    if dataset:
        dataset_id = resolve_dataset(ctx, dataset).id
    elif job.dataset_id:
        dataset_id = str(job.dataset_id)
    else:
        raise InvalidInputError(
            f"job {job.id} has no dataset of its own: name a dataset to test on", detail={"field": "dataset"}
        )
    run = create_test_run(ctx, job.id, dataset_id=dataset_id, checkpoint=checkpoint)
    service.submit_test_run(int(run["id"]))
    return run


def test_run_status(ctx: ToolContext, run_id: int) -> dict[str, Any]:
    """One of the user's test runs: status, progress, metrics (others' -> NotFoundError)."""
    from tools.inference import get_test_run

    return get_test_run(ctx, run_id)


def export_onnx(
    ctx: ToolContext, service: InferenceService, job_id: int, checkpoint: str | None = None, fmt: str = "onnx"
) -> dict[str, Any]:
    """Export the user's job to `fmt` (onnx, torchscript, openvino; checked against PyTorch:
    `parity.max_abs_diff`) and return the export record with its `download_url`."""
    from tools.inference import create_export

    return create_export(ctx, service, job_id, fmt, checkpoint)


def download_link(ctx: ToolContext, job_id: int, what: str = "best", export_id: int | None = None) -> dict[str, Any]:
    """A short-lived signed link to one of the user's downloads (`tools.downloads.create_link`):
    `what` best | last (checkpoints), model-card, or export (with `export_id`). It opens in a
    browser without a token, for this user only, until it expires."""
    from tools.downloads import create_link

    if ctx.links is None:
        raise NoInferenceServiceError("download links cannot be made here (no link signer)")
    return create_link(ctx, ctx.links, job_id, what, export_id).as_dict()


# ------------------------------------------------------------------------ tool argument schemas


class ListDatasetsArgs(BaseModel):
    query: str | None = Field(default=None, description="text to find in dataset names or descriptions; omit for all")
    mine: bool = Field(default=False, description="true: only the user's own datasets; false: own and public ones")
    task_type: TaskType | None = Field(default=None, description="only datasets that can train this task")
    class_names: list[str] = Field(
        default_factory=list, description="class names the user mentioned; datasets with these classes come first"
    )


class DatasetArgs(BaseModel):
    dataset: str = Field(description="dataset name or 32-hex id exactly as the user wrote it")


class CompatibilityArgs(BaseModel):
    dataset: str = Field(description="dataset name or id")
    task_type: TaskType | None = Field(default=None, description="the task to check; omit to list every task")


class ListModelsArgs(BaseModel):
    framework: str | None = Field(default=None, description="ultralytics, timm or transformers; omit for all")
    task_type: TaskType | None = Field(default=None, description="only models for this task; omit for all")


class JobArgs(BaseModel):
    job_id: int = Field(description="the job number (id)")


class CheckpointJobArgs(BaseModel):
    job_id: int | None = Field(
        default=None, description="the job number (id); omit for the chat's latest completed job"
    )
    checkpoint: Literal["best", "last"] | None = Field(
        default=None, description="which checkpoint: best (default) or last"
    )


class ExportArgs(CheckpointJobArgs):
    format: Literal["onnx", "torchscript", "openvino"] = Field(
        default="onnx", description="onnx (default), torchscript, or openvino (a zipped folder)"
    )


class TestRunArgs(CheckpointJobArgs):
    __test__ = False

    dataset: str | None = Field(
        default=None, description="dataset name or id to test on; omit for the dataset the job trained on"
    )


class TestRunIdArgs(BaseModel):
    __test__ = False

    test_run_id: int = Field(description="the test run number (id)")


class CompareJobsArgs(BaseModel):
    job_ids: list[int] = Field(
        default_factory=list,
        description="two to five job numbers to compare; empty for the user's newest jobs (see last)",
    )
    last: int = Field(default=2, ge=2, le=5, description="with no job_ids: how many of the newest jobs to compare")


class BestJobsArgs(BaseModel):
    dataset: str = Field(description="dataset name or id the jobs trained on")
    task_type: TaskType | None = Field(default=None, description="only jobs of this task; omit for every task")


class NoArgs(BaseModel):
    pass


class ListJobsArgs(BaseModel):
    status: str | None = Field(
        default=None, description="queued, preparing, running, completed, failed, stopped, interrupted or resuming"
    )


# ---------------------------------------------------------------------------- StructuredTools


def _safe(fn: Callable[..., Any]) -> Callable[..., str]:
    def run(**kwargs: Any) -> str:
        try:
            result = fn(**kwargs)
        except ToolError as exc:
            result = {"error": exc.message, "error_type": type(exc).__name__}
        return json.dumps(result, default=str, ensure_ascii=False)

    return run


def _pick(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The named keys of a JSON object (the fields a tool's answer keeps)."""
    return {k: obj.get(k) for k in keys}


def _specs(ctx: ToolContext, scope: InferenceScope) -> list[tuple[str, str, type[BaseModel], Callable[..., Any]]]:
    def list_ds(
        query: str | None = None, mine: bool = False, task_type: str | None = None, class_names: list[str] | None = None
    ) -> Any:
        if class_names or task_type:
            return datasets_for(ctx, task_type, class_names, limit=20)[0]
        return list_visible_datasets(ctx, query, mine)

    def preview(**fields: Any) -> Any:
        intent = TrainingIntent.model_validate(fields)
        job = jobs.create_job(ctx, intent, launch=False)
        keep = ("framework", "model_name", "task_type", "dataset_name", "hyperparameters", "conversion", "epochs")
        return {k: job.get(k) for k in keep}

    def which_job(job_id: int | None) -> int:
        if job_id is not None:
            return int(job_id)
        found = latest_completed_job(ctx)
        if found is None:
            raise NotFoundError("no completed job: train one first or give a job number")
        return found

    def predict(job_id: int | None = None, checkpoint: str | None = None) -> Any:
        if scope.image is None:
            raise InvalidInputError("no image is attached to this message: ask the user to attach one")
        return predict_image(ctx, scope.service(), which_job(job_id), scope.image, checkpoint)

    def test_run(job_id: int | None = None, checkpoint: str | None = None, dataset: str | None = None) -> Any:
        return start_test_run(ctx, scope.service(), which_job(job_id), dataset, checkpoint)

    def export(job_id: int | None = None, checkpoint: str | None = None, format: str = "onnx") -> Any:
        rec = export_onnx(ctx, scope.service(), which_job(job_id), checkpoint, format)
        if ctx.links is not None and rec.get("status") == "completed":  # a link that opens in a browser
            rec["link"] = download_link(ctx, int(rec["job_id"]), "export", int(rec["id"]))
        return rec

    def compare(job_ids: list[int] | None = None, last: int = 2) -> Any:
        ids = list(job_ids or []) or latest_job_ids(ctx, last)
        return compare_jobs(ctx, ids).model_dump(mode="json")

    return [
        (
            "list_datasets",
            "List the datasets the user can train on (their own and public ones) with image counts, class names "
            "and the tasks each can train. Use it to suggest datasets or to check what the user has.",
            ListDatasetsArgs,
            list_ds,
        ),
        (
            "get_dataset",
            "Details of one dataset the user can see, by name or id: images, classes, trainable tasks. "
            "An unknown or hidden dataset returns an error 'not found'.",
            DatasetArgs,
            lambda dataset: dataset_info(ctx, dataset),
        ),
        (
            "check_compatibility",
            "Can this dataset train this task? Returns status native, convertible or incompatible and the reason.",
            CompatibilityArgs,
            lambda dataset, task_type=None: check_dataset_compatibility(
                ctx, resolve_dataset(ctx, dataset).id, task_type
            ),
        ),
        (
            "list_models",
            "The trainable models (canonical names for TrainingIntent.model_name) with framework and task.",
            ListModelsArgs,
            lambda framework=None, task_type=None: [
                {k: m[k] for k in ("name", "framework", "task_type", "params_m")}
                for m in catalog.list_models(framework, task_type)
            ],
        ),
        (
            "preview_training_job",
            "Check a TrainingIntent without starting anything: returns the resolved model, framework, task, "
            "dataset and hyper-parameters, or an error saying what is wrong (incompatible dataset, unknown model).",
            TrainingIntent,
            preview,
        ),
        (
            "job_progress",
            "Progress of one of the user's jobs: status, epoch x/N, latest metrics, ETA.",
            JobArgs,
            lambda job_id: job_progress(ctx, job_id),
        ),
        (
            "list_jobs",
            "The user's training jobs, newest first (id, status, model, dataset).",
            ListJobsArgs,
            lambda status=None: [
                {
                    "id": j.id,
                    "status": j.status,
                    "model_name": j.model_name,
                    "dataset_name": j.dataset_name,
                    "epochs": j.epochs,
                    "epochs_completed": j.epochs_completed,
                }
                for j in jobs.list_jobs(ctx, status=status, limit=20).items
            ],
        ),
        (
            "job_metrics",
            "Per-epoch metrics of one of the user's jobs.",
            JobArgs,
            lambda job_id: jobs.job_metrics(ctx, job_id).model_dump(mode="json"),
        ),
        (
            "stop_job",
            "Stop one of the user's running or queued jobs (only when the user asked to stop it).",
            JobArgs,
            lambda job_id: _pick(jobs.stop_job(ctx, job_id).model_dump(mode="json"), "id", "status", "stop_requested"),
        ),
        (
            "resume_job",
            "Resume one of the user's stopped or failed jobs from its last checkpoint (only when asked).",
            JobArgs,
            lambda job_id: _pick(jobs.resume_job(ctx, job_id).model_dump(mode="json"), "id", "status"),
        ),
        (
            "compare_jobs",
            "Compare two to five of the user's jobs side by side (model, dataset, epochs, duration, best value of "
            "the task's headline metric, and the settings that differ); with no job_ids, the newest jobs.",
            CompareJobsArgs,
            compare,
        ),
        (
            "best_jobs",
            "The user's jobs on one dataset ranked by the headline metric of their task (accuracy for "
            "classification, mAP50-95 otherwise), best first: 'which of my jobs was best on X?'.",
            BestJobsArgs,
            lambda dataset, task_type=None: best_jobs(ctx, dataset, task_type).model_dump(mode="json"),
        ),
        (
            "diagnose_job",
            "Why one of the user's jobs has weak results, from its own facts: findings such as scratch (no "
            "pretrained weights), still_improving (more epochs), overfitting, peaked_early, small_dataset, "
            "imbalance, image_smaller/image_larger, each with the numbers behind it.",
            JobArgs,
            lambda job_id: diagnose_job(ctx, job_id).model_dump(mode="json"),
        ),
        (
            "repeat_job_intent",
            "The TrainingIntent that trains one of the user's jobs again with the same settings (model, dataset, "
            "hyper-parameters, starting weights). Change what the user asked and show it for confirmation; this "
            "starts nothing.",
            JobArgs,
            lambda job_id: rerun_intent(ctx, job_id).model_dump(mode="json", exclude_none=True),
        ),
        (
            "upload_guide",
            "How the user uploads their own dataset: the page link, the steps, the formats (DICE, COCO, YOLO, "
            "ImageFolder, plain images) with their folder/zip layouts, which are detected by themselves, the size "
            "limits and the REST calls.",
            NoArgs,
            lambda: upload_guide(ctx).model_dump(mode="json"),
        ),
        (
            "predict_image",
            "Run one of the user's completed jobs on the image attached to this chat message and return the "
            "predictions (classification: top labels with confidences; detection, segmentation, pose, oriented "
            "boxes: labelled boxes with confidences) and timings. Errors when no image is attached, the job is "
            "not completed or has no checkpoint.",
            CheckpointJobArgs,
            predict,
        ),
        (
            "start_test_run",
            "Start a batch test run of one of the user's completed jobs over a dataset (the job's own dataset "
            "when none is named); it runs in the background. Returns the test run id and its progress; "
            "accuracy / mAP metrics appear in test_run_status when it is done.",
            TestRunArgs,
            test_run,
        ),
        (
            "test_run_status",
            "Status, progress (processed / total images) and metrics of one of the user's test runs.",
            TestRunIdArgs,
            lambda test_run_id: test_run_status(ctx, test_run_id),
        ),
        (
            "export_onnx",
            "Export one of the user's completed jobs to ONNX, TorchScript or OpenVINO (format; only when asked). "
            "The export is checked against the PyTorch model on a few images: parity.max_abs_diff; give the user "
            "link.url (a signed link that opens in a browser for a few minutes).",
            ExportArgs,
            export,
        ),
    ]


def tool_names() -> list[str]:
    """Names of the tools `build_tools` makes (without building them)."""
    return [
        "list_datasets",
        "get_dataset",
        "check_compatibility",
        "list_models",
        "preview_training_job",
        "job_progress",
        "list_jobs",
        "job_metrics",
        "stop_job",
        "resume_job",
        "compare_jobs",
        "best_jobs",
        "diagnose_job",
        "repeat_job_intent",
        "upload_guide",
        "predict_image",
        "start_test_run",
        "test_run_status",
        "export_onnx",
    ]


def build_tools(ctx: ToolContext, scope: InferenceScope | None = None) -> list[StructuredTool]:
    """The operations as LangChain StructuredTools bound to `ctx` (the chat's user) and to the turn's
    inference `scope` (service getter and attached image; None: no inference here)."""
    from langchain_core.tools import StructuredTool

    return [
        StructuredTool.from_function(func=_safe(fn), name=name, description=desc, args_schema=schema)
        for name, desc, schema, fn in _specs(ctx, scope or InferenceScope())
    ]
