"""The request that repeats one of the caller's jobs: "train the same as job 3 but with 30 epochs",
"more epochs than last time". `rerun_intent` turns the job's recorded settings into a
`TrainingIntent` (the model, framework and task it trained, its dataset, the resolved
hyper-parameters, preset and advanced config, and its starting point: the earlier job it was
fine-tuned from or the user's weights file it started from); the caller applies the change and
previews or creates the job as usual (`tools.jobs.create_job`), so nothing starts without the
usual checks and, in the chat, the person's yes. Part of `tools.jobs`; see docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

from tools.context import ToolContext
from tools.datasets import resolve_dataset
from tools.errors import ConflictError, NotFoundError
from tools.intent import TrainingIntent
from tools.jobs.view import job_row

REPEATED = ("epochs", "batch_size", "image_size", "learning_rate", "preset")


def rerun_intent(ctx: ToolContext, job_id: int) -> TrainingIntent:
    """The TrainingIntent that trains one of the caller's jobs again with the same settings
    (another user's job -> NotFoundError). The dataset is named as the job recorded it when that
    name still finds the same dataset, else by its id (a renamed one), so the preview checks it."""
    job = job_row(ctx, job_id)
    hp = dict(job.hyperparameters or {})
    asked = dict(job.intent or {})
    fields: dict[str, Any] = {
        "model_name": job.model_name,
        "framework": job.framework,
        "task_type": job.task_type,
        **{k: hp[k] for k in REPEATED if hp.get(k) is not None},
    }
    advanced = hp.get("advanced_config") or asked.get("advanced_config")
    if isinstance(advanced, dict) and advanced:
        fields["advanced_config"] = dict(advanced)
    dataset = job.dataset_id or job.dataset_name
    if job.dataset_name:
        try:
            if resolve_dataset(ctx, job.dataset_name).id == job.dataset_id:
                dataset = job.dataset_name
        except (NotFoundError, ConflictError):
            pass
    fields["dataset"] = dataset
    init = job.init_from or {}
    if init.get("job_id"):
        fields["init_from_job"] = int(init["job_id"])
        fields["init_checkpoint"] = "last" if str(init.get("checkpoint") or "").startswith("last") else "best"
    elif isinstance(asked.get("init_weights"), int):
        fields["init_weights"] = asked["init_weights"]
    return TrainingIntent.model_validate(fields)
