"""Why a job's results may be weak, from the job's own facts: the answer to "why is my accuracy
low?". `diagnose_job` reads the job row, its per-epoch metrics, the weights it started from, and
the dataset snapshot it trained on (image count, instances per class, the images' typical size),
and returns `Finding`s, each a code with the numbers behind it (the agent words them in the
user's language; the LLM tool gets the same JSON):

- ``not_finished``: the job did not complete (status, epochs done of planned, error);
- ``no_metrics``: no epoch reported a validation metric yet;
- ``scratch``: it started from random weights (no pretrained weights, upload or earlier job);
- ``still_improving``: the headline metric was still rising at the last epoch (more epochs help);
- ``few_epochs``: fewer than `FEW_EPOCHS` epochs ran (too short to judge a curve);
- ``peaked_early``: the headline metric peaked well before the end and fell after;
- ``overfitting``: the validation loss rose from its minimum while the training loss kept falling,
  or ended far above the training loss;
- ``small_dataset``: few images in all or per class;
- ``imbalance``: the largest class has many times the examples of the smallest (or a class has none);
- ``image_smaller`` / ``image_larger``: the training image size is far below the source images'
  typical longer side (detail lost) or far above it (upscaled, slower, no new detail);
- ``no_clear_cause``: none of the above.

Thresholds are module constants. Part of `tools.jobs`; see docs/architecture.md.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from tools.context import ToolContext
from tools.datasets import annotations_file, get_dataset_row
from tools.db.models import DatasetImage, Job
from tools.errors import NotFoundError
from tools.jobs.compare import JobFacts, job_facts
from tools.jobs.view import job_metrics, job_row

FEW_EPOCHS = 5
RISING_WINDOW = 3  # epochs over which a still-rising metric is measured
RISING_MIN_GAIN = 0.01  # absolute gain of the headline metric over the window that counts as rising
PEAK_DROP = 0.02  # a fall from the best value this large counts as peaking early
VAL_LOSS_RISE = 1.1  # last val loss over its minimum
LOSS_GAP = 3.0  # val loss over train loss at the end
SMALL_TOTAL = 200  # images
SMALL_PER_CLASS = 50  # examples per class
IMBALANCE_RATIO = 3.0
IMAGE_SMALLER = 3.0  # typical source side over training size
IMAGE_LARGER = 2.0  # training size over typical source side
SIZE_SAMPLE = 2000  # images read for the typical size
MAX_ANNOTATIONS_BYTES = 64 * 1024**2  # larger annotation files are not read for class counts

Code = Literal[
    "not_finished",
    "no_metrics",
    "scratch",
    "still_improving",
    "few_epochs",
    "peaked_early",
    "overfitting",
    "small_dataset",
    "imbalance",
    "image_smaller",
    "image_larger",
    "no_clear_cause",
]


class Finding(BaseModel):
    """One likely cause of weak results, with the numbers it rests on."""

    code: Code
    facts: dict[str, Any] = Field(default_factory=dict)


class JobDiagnosis(BaseModel):
    """What `diagnose_job` found for one job: the job's facts, what it knows of the data, and the
    findings (most useful first)."""

    job: JobFacts
    images: int | None = Field(description="images in the snapshot the job trained on (None when unreadable)")
    class_counts: dict[str, int] = Field(default_factory=dict, description="examples per class in that snapshot")
    typical_side: int | None = Field(description="median longer side of the dataset's images, pixels")
    findings: list[Finding]


def _series(ctx: ToolContext, job_id: int) -> tuple[list[int], dict[str, list[float | None]]]:
    m = job_metrics(ctx, job_id)
    return list(m.epochs), dict(m.series)


def _values(series: dict[str, list[float | None]], key: str) -> list[float]:
    return [float(v) for v in series.get(key) or [] if v is not None]


def _curve_findings(facts: JobFacts, series: dict[str, list[float | None]]) -> list[Finding]:
    out: list[Finding] = []
    values = _values(series, facts.metric_name or "")
    if len(values) >= 2:
        best = max(values)
        last = values[-1]
        window = values[-(RISING_WINDOW + 1) :]
        if last >= best and last - window[0] >= RISING_MIN_GAIN:
            out.append(
                Finding(
                    code="still_improving",
                    facts={
                        "metric": facts.metric_name,
                        "last": last,
                        "gain": last - window[0],
                        "over_epochs": len(window) - 1,
                        "epochs": len(values),
                    },
                )
            )
        elif best - last >= PEAK_DROP:
            out.append(
                Finding(
                    code="peaked_early",
                    facts={"metric": facts.metric_name, "best": best, "best_epoch": facts.metric_epoch, "last": last},
                )
            )
    train, val = series.get("train/loss") or [], series.get("val/loss") or []
    pairs = [(float(t), float(v)) for t, v in zip(train, val, strict=False) if t is not None and v is not None]
    if len(pairs) >= 2:
        i_min = min(range(len(pairs)), key=lambda i: pairs[i][1])
        t_last, v_last = pairs[-1]
        rose = i_min < len(pairs) - 1 and v_last > pairs[i_min][1] * VAL_LOSS_RISE and t_last < pairs[i_min][0]
        gap = t_last > 0 and v_last / t_last >= LOSS_GAP
        if rose or gap:
            out.append(
                Finding(
                    code="overfitting",
                    facts={
                        "train_loss": t_last,
                        "val_loss": v_last,
                        "val_loss_min": pairs[i_min][1],
                        "val_loss_min_epoch": i_min + 1,
                    },
                )
            )
    return out


def _class_counts(ctx: ToolContext, job: Job) -> tuple[int | None, dict[str, int]]:
    """Images and examples per class of the snapshot the job trained on (the live annotations
    when it has none); (None, {}) when they cannot be read."""
    if not job.dataset_id:
        return None, {}
    try:
        stored = annotations_file(ctx, job.dataset_id, job.snapshot_id)
    except NotFoundError:
        return None, {}
    if stored.size is not None and stored.size > MAX_ANNOTATIONS_BYTES:
        return None, {}
    try:
        doc = json.loads(ctx.storage.external.get_bytes(stored.key))
    except Exception:  # a store that is down: the other findings still stand
        return None, {}
    names = {c.get("id"): str(c.get("name")) for c in doc.get("categories") or [] if isinstance(c, dict)}
    counts = dict.fromkeys(names.values(), 0)
    for a in doc.get("annotations") or []:
        if isinstance(a, dict) and a.get("category_id") in names:
            counts[names[a["category_id"]]] += 1
    return len(doc.get("images") or []), counts


def _typical_side(ctx: ToolContext, dataset_id: str | None) -> int | None:
    if not dataset_id:
        return None
    try:
        get_dataset_row(ctx, dataset_id)
    except NotFoundError:
        return None
    rows = ctx.db.execute(
        select(DatasetImage.width, DatasetImage.height).where(DatasetImage.dataset_id == dataset_id).limit(SIZE_SAMPLE)
    ).all()
    sides = sorted(max(int(w or 0), int(h or 0)) for w, h in rows if (w or 0) > 0 and (h or 0) > 0)
    return sides[len(sides) // 2] if sides else None


def _data_findings(images: int | None, counts: dict[str, int], task_type: str) -> list[Finding]:
    out: list[Finding] = []
    if images is not None and counts:
        per_class = images / max(1, len(counts)) if task_type == "image_classification" else None
        few_per_class = per_class is not None and per_class < SMALL_PER_CLASS
        if images < SMALL_TOTAL or few_per_class:
            out.append(
                Finding(
                    code="small_dataset",
                    facts={"images": images, "classes": len(counts), "per_class": per_class},
                )
            )
    if len(counts) >= 2:
        most = max(counts.items(), key=lambda kv: kv[1])
        least = min(counts.items(), key=lambda kv: kv[1])
        if least[1] == 0 or most[1] / least[1] >= IMBALANCE_RATIO:
            out.append(
                Finding(
                    code="imbalance",
                    facts={
                        "most": most[0],
                        "most_count": most[1],
                        "least": least[0],
                        "least_count": least[1],
                        "ratio": (most[1] / least[1]) if least[1] else None,
                    },
                )
            )
    return out


def _size_findings(image_size: Any, typical: int | None) -> list[Finding]:
    if not isinstance(image_size, int) or image_size <= 0 or not typical:
        return []
    if typical / image_size >= IMAGE_SMALLER:
        return [Finding(code="image_smaller", facts={"image_size": image_size, "typical_side": typical})]
    if image_size / typical >= IMAGE_LARGER:
        return [Finding(code="image_larger", facts={"image_size": image_size, "typical_side": typical})]
    return []


def diagnose_job(ctx: ToolContext, job_id: int) -> JobDiagnosis:
    """Likely causes of one of the caller's jobs' weak results (see the module doc); another
    user's job -> NotFoundError."""
    job = job_row(ctx, job_id)
    facts = job_facts(ctx, job.id)
    findings: list[Finding] = []
    if job.status != "completed":
        findings.append(
            Finding(
                code="not_finished",
                facts={
                    "status": job.status,
                    "epochs_completed": facts.epochs_completed,
                    "epochs": facts.epochs,
                    "error": (job.error or "")[:300] or None,
                },
            )
        )
    epochs, series = _series(ctx, job.id)
    if facts.metric is None:
        findings.append(Finding(code="no_metrics", facts={"metric": facts.metric_name}))
    if facts.settings.get("weights") == "scratch":
        findings.append(Finding(code="scratch", facts={"model": job.model_name}))
    findings += _curve_findings(facts, series)
    ran = max(len(epochs), facts.epochs_completed)
    if 0 < ran < FEW_EPOCHS and not any(f.code == "still_improving" for f in findings):
        findings.append(Finding(code="few_epochs", facts={"epochs": ran}))
    images, counts = _class_counts(ctx, job)
    findings += _data_findings(images, counts, job.task_type)
    typical = _typical_side(ctx, job.dataset_id)
    findings += _size_findings(facts.settings.get("image_size"), typical)
    if not findings:
        findings.append(Finding(code="no_clear_cause", facts={"metric": facts.metric_name, "value": facts.metric}))
    return JobDiagnosis(job=facts, images=images, class_counts=counts, typical_side=typical, findings=findings)
