"""MLflow logging for one job: one run per job, in a separate low-priority process.

* The trainer never imports mlflow. `MlflowLogger.launch()` (the very beginning of a run) starts
  ``python -m trainer_runtime.mlflow_logger.child`` in its own session (a SIGINT to the trainer's
  process group does not reach it). The child lowers its priority first (``--priority``, from
  ``spec.mlflow.logger_priority``: ``idle``, the default, is ``nice 19`` and, on Linux,
  ``SCHED_IDLE`` when permitted; ``low`` is nice only; ``normal`` changes nothing) so that it only
  uses CPU the training leaves idle, then imports mlflow (over a second of CPU) and opens the store
  while the trainer fetches the dataset.
* Protocol: JSON lines on the child's stdin: ``open`` (store, experiment, tags), ``start``
  (params; resume with the previous run id), ``metrics`` (per epoch), ``dict`` (a JSON artifact),
  ``end`` (FINISHED/KILLED/FAILED). The trainer writes them from a thread with a bounded but large
  queue (`log_epoch` / `log_dict` only enqueue). The child reads stdin on a thread into memory, so
  a slow child never blocks the trainer. EOF without ``end`` (the trainer died, e.g. SIGKILL) ->
  the run is marked KILLED, so a killed run is never left RUNNING. The child answers on its stdout
  with JSON lines: ``run`` ``{"run_id"}``, ``unavailable`` (mlflow not importable) or ``error``.
* `finish` hands the final records over and returns: the child finishes writing after the
  trainer exits. If the child dies, the trainer logs one warning and drops MLflow; training never
  breaks over tracking.
* Tracking URI: ``spec.mlflow.tracking_uri`` (the server fills it from its ``MLFLOW_TRACKING_URI``
  setting; the trainer reads no environment for it), else a SQLite store
  ``sqlite:///<work_dir>/mlflow/mlflow.db`` with artifacts under ``<work_dir>/mlflow/artifacts``.
* Experiment ``spec.mlflow.experiment_name``; tags ``job_id``, ``project_id``, ``framework``,
  ``model``, ``task``, ``dataset_id``, ``snapshot_id``; params: the resolved adapter config and
  the hyper-parameters (flattened, names made valid for MLflow, values cut to 500 characters).
* Artifacts: ``config.json`` (resolved config + hyper-parameters), ``final_metrics.json`` and
  ``checkpoints.json`` (where best/last were stored). Checkpoints themselves live in the internal
  store, not in MLflow.
* The run ends FINISHED (completed), KILLED (stopped) or FAILED. Its id is handed to `on_run`
  as soon as the child reports it (the runner sends it to the server in a ``log`` event with a
  ``mlflow_run_id`` field: a server on another machine, e.g. with Kubernetes pods, learns it that
  way) and written to ``<output_dir>/mlflow_run_id`` (by the trainer when the child reports it,
  and by the child, in case the trainer is gone by then); a resumed job reuses it (falling back to a search by the
  ``job_id`` tag when the file is gone). A run left RUNNING by a killed attempt is first marked
  KILLED, then re-opened (``update_run(status="RUNNING")``, what ``mlflow.start_run(run_id=...)``
  does) and continued; the tag ``attempts`` counts the attempts. The children of one job take
  turns (an flock on ``<job_dir>/.mlflow_logger.lock``), so a resumed attempt waits for the
  previous attempt's child to finish its run first.
* `mark_run_terminated(tracking_uri, run_id, status)` is for a supervisor whose trainer and
  logger were both killed (the run would stay RUNNING forever otherwise).
* MLflow is optional: disabled in the spec or not importable -> one log line, nothing else.

Modules: `common` (what both ends share: run-id file, names, `mark_run_terminated`), `client`
(`MlflowLogger`, the trainer's end) and `child` (the logger process). See docs/architecture.md.
"""

from __future__ import annotations

from trainer_runtime.mlflow_logger.client import MlflowLogger
from trainer_runtime.mlflow_logger.common import (
    RUN_ID_FILE,
    default_tracking_uri,
    flatten,
    mark_run_terminated,
    mlflow_name,
)

__all__ = [
    "RUN_ID_FILE",
    "MlflowLogger",
    "default_tracking_uri",
    "flatten",
    "mark_run_terminated",
    "mlflow_name",
]
