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

Every function takes `ctx: ToolContext` first. `get_job`, `stop_job` and `resume_job` return the
REST model `JobOut`, `list_jobs` a `JobList`, `job_metrics` a `JobMetrics` (`tools.jobs.models`);
`create_job` (whose preview has no id) and `delete_job` return JSON-ready dicts. The job JSON
(`JobOut`; the keys outside its schema are in `model_extra`)::

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

The package's modules: `tools.jobs.plan` (a request -> the job's fields), `tools.jobs.lifecycle`
(create, stop, resume, delete), `tools.jobs.view` (the job JSON, the queue, get, list, metrics),
`tools.jobs.spec` (what a trainer runs from), `tools.jobs.models` (the REST response models
`JobOut`, `CheckpointOut`, `JobList`, `JobMetrics`). Import the names below from `tools.jobs`.
"""

from __future__ import annotations

from tools.jobs.lifecycle import (
    DELETED_EVENT_TYPE,
    RESULTS_PREFIX,
    RESUMABLE_STATUSES,
    create_job,
    delete_job,
    emit_status,
    resume_job,
    stop_job,
)
from tools.jobs.models import CheckpointOut, JobList, JobMetrics, JobOut
from tools.jobs.spec import SPEC_FILE, JobRuntimeConfig, build_spec, hash_token, read_spec_file, write_spec
from tools.jobs.view import (
    ACTIVE_STATUSES,
    MAX_LIST_LIMIT,
    get_job,
    job_dict,
    job_metrics,
    list_jobs,
    queue_order,
    queue_positions,
)
from tools.services import JobNotifier

__all__ = [
    "ACTIVE_STATUSES",
    "DELETED_EVENT_TYPE",
    "MAX_LIST_LIMIT",
    "RESULTS_PREFIX",
    "RESUMABLE_STATUSES",
    "SPEC_FILE",
    "CheckpointOut",
    "JobList",
    "JobMetrics",
    "JobNotifier",
    "JobOut",
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
    "read_spec_file",
    "resume_job",
    "stop_job",
    "write_spec",
]
