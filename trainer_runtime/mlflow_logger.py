"""MLflow logging for one job: one run per job, off the training hot path.

* Tracking URI: ``spec.mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite store
  ``sqlite:///<work_dir>/mlflow/mlflow.db`` with artifacts under ``<work_dir>/mlflow/artifacts``.
* Experiment ``spec.mlflow.experiment_name``; tags ``job_id``, ``project_id``, ``framework``,
  ``model``, ``task``, ``dataset_id``, ``snapshot_id``; params: the resolved adapter config and
  the hyper-parameters (flattened, names made valid for MLflow, values cut to 500 characters).
* Everything runs on one background thread fed by a queue: importing mlflow (over a second),
  creating the store, per-epoch metrics, artifacts. `log_epoch` only enqueues.
* Artifacts: ``config.json`` (resolved config + hyper-parameters), ``final_metrics.json`` and
  ``checkpoints.json`` (where best/last were stored). Checkpoints themselves live in the internal
  store, not in MLflow.
* The run ends FINISHED (completed), KILLED (stopped) or FAILED. Its id is written to
  ``<output_dir>/mlflow_run_id``; a resumed job reuses it (falling back to a search by the
  ``job_id`` tag when the file is gone). A run left RUNNING by a killed attempt is first marked
  KILLED, then re-opened (``update_run(status="RUNNING")``, what ``mlflow.start_run(run_id=...)``
  does) and continued; the tag ``attempts`` counts the attempts.
* `mark_run_terminated(tracking_uri, run_id, status)` is for a supervisor whose trainer was
  killed with SIGKILL (the run would stay RUNNING forever otherwise).
* MLflow is optional: disabled in the spec or not importable -> one log line, nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec

logger = logging.getLogger("trainer_runtime.mlflow")

RUN_ID_FILE = "mlflow_run_id"
TERMINAL = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_INVALID = re.compile(r"[^\w\-. /:]")
_MAX_PARAM = 500


def mlflow_name(name: str) -> str:
    """A metric/param/tag key MLflow accepts: letters, digits, ``_ - . / : space``; no leading
    slash, no ``..`` part (``val/mAP50-95`` stays as it is)."""
    out = _INVALID.sub("_", str(name)).strip().lstrip("/")
    out = "/".join("_" if part == ".." else part for part in out.split("/"))
    return out[:250] or "_"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[mlflow_name(name)] = text[:_MAX_PARAM]
    return out


def default_tracking_uri(work_dir: Path) -> str:
    db = (Path(work_dir) / "mlflow" / "mlflow.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def mark_run_terminated(tracking_uri: str, run_id: str, status: str = "KILLED") -> bool:
    """Mark `run_id` terminated (FINISHED, FAILED or KILLED; job statuses completed/failed/stopped
    are mapped) when it is still RUNNING. Returns True when it changed the run. For a supervisor
    whose trainer process died without ending its run."""
    from mlflow.tracking import MlflowClient

    status = TERMINAL.get(status, status)
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    if run.info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status)
    return True


class MlflowLogger:
    """See the module doc. All public methods return at once; work happens on the thread."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        work_dir: Path,
        output_dir: Path,
        params: Mapping[str, Any],
        resume: bool = False,
    ) -> None:
        self.spec = spec
        self.work_dir = Path(work_dir)
        self.output_dir = Path(output_dir)
        self.params = dict(params)
        self.resume = resume
        self.enabled = bool(spec.mlflow.enabled)
        self.tracking_uri: str | None = None
        self.run_id: str | None = None
        self.error: str | None = None
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # public -----------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.enabled:
            logger.info("MLflow logging is off for this job (spec.mlflow.enabled is false)")
            return
        self._thread = threading.Thread(target=self._run, name="mlflow-logger", daemon=True)
        self._thread.start()

    def log_epoch(self, epoch: int, metrics: Mapping[str, float | None]) -> None:
        if self._thread is not None:
            self._queue.put(("metrics", (epoch, dict(metrics))))

    def log_dict(self, name: str, data: Any) -> None:
        if self._thread is not None:
            self._queue.put(("dict", (name, data)))

    def finish(self, job_status: str, timeout: float = 60.0) -> bool:
        """End the run with the MLflow status of `job_status`; wait up to `timeout` seconds."""
        if self._thread is None:
            return True
        self._queue.put(("end", TERMINAL.get(job_status, "FAILED")))
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("MLflow logging did not finish within %.0fs; the run may stay RUNNING", timeout)
            return False
        return self.error is None

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    # thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        client = None
        try:
            client = self._open()
        except ImportError:
            self.error = "mlflow is not installed"
            logger.info("mlflow is not importable; MLflow logging skipped")
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("MLflow logging disabled for this job: %s", self.error)
        finally:
            self._ready.set()
        while True:
            kind, payload = self._queue.get()
            if client is None:
                if kind == "end":
                    return
                continue
            try:
                if kind == "metrics":
                    self._log_metrics(client, *payload)
                elif kind == "dict":
                    self._log_dict(client, *payload)
                elif kind == "end":
                    client.set_terminated(self.run_id, payload)
                    logger.info("MLflow run %s ended %s", self.run_id, payload)
                    return
            except Exception as exc:  # never break training over tracking
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("MLflow %s failed: %s", kind, self.error)
                if kind == "end":
                    return

    def _open(self) -> Any:
        from mlflow.tracking import MlflowClient

        spec = self.spec
        uri = spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        artifact_location = None
        if uri is None:
            uri = default_tracking_uri(self.work_dir)
            art = (self.work_dir / "mlflow" / "artifacts").resolve()
            art.mkdir(parents=True, exist_ok=True)
            artifact_location = art.as_uri()
        elif uri.startswith("sqlite:///"):
            # a local store without an artifact root would put artifacts in ./mlruns of the CWD
            art = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve()
            art.mkdir(parents=True, exist_ok=True)
            artifact_location = art.as_uri()
        self.tracking_uri = uri
        client = MlflowClient(tracking_uri=uri)
        name = spec.mlflow.experiment_name
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = client.create_experiment(name, artifact_location=artifact_location)
            except Exception:  # created by a concurrent job meanwhile
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id

        tags = {
            "job_id": str(spec.job_id),
            "project_id": "" if spec.project_id is None else str(spec.project_id),
            "framework": spec.framework,
            "model": spec.model_name,
            "task": spec.task_type,
            "dataset_id": spec.dataset_id,
            "snapshot_id": spec.snapshot_id or "",
        }
        run = self._previous_run(client, exp_id) if self.resume else None
        if run is not None:
            run_id = run.info.run_id
            if run.info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED")
                logger.info("MLflow run %s of the previous attempt was left RUNNING; marked KILLED", run_id)
            client.update_run(run_id, status="RUNNING")
            attempts = int(run.data.tags.get("attempts", "1") or 1) + 1
            client.set_tag(run_id, "attempts", str(attempts))
            old_params = dict(run.data.params)
            logger.info("MLflow run %s re-opened (attempt %d)", run_id, attempts)
        else:
            created = client.create_run(exp_id, tags={**tags, "attempts": "1"}, run_name=f"job-{spec.job_id}")
            run_id = created.info.run_id
            old_params = {}
            logger.info("MLflow run %s started in experiment %r (%s)", run_id, name, uri)
        self.run_id = run_id
        self._write_run_id(run_id)

        from mlflow.entities import Param

        params = flatten(self.params)
        fresh = [Param(k, v) for k, v in params.items() if k not in old_params]
        changed = [k for k, v in params.items() if k in old_params and old_params[k] != v]
        if changed:
            logger.warning("MLflow params changed since the previous attempt, not re-logged: %s", changed)
        for i in range(0, len(fresh), 100):
            client.log_batch(run_id, params=fresh[i : i + 100])
        return client

    def _previous_run(self, client: Any, exp_id: str) -> Any:
        path = self.output_dir / RUN_ID_FILE
        if path.is_file():
            run_id = path.read_text(encoding="utf-8").strip()
            try:
                return client.get_run(run_id)
            except Exception as exc:
                logger.info("MLflow run %s from %s not found (%s)", run_id, path, exc)
        runs = client.search_runs(
            [exp_id], filter_string=f"tags.job_id = '{self.spec.job_id}'", order_by=["start_time DESC"], max_results=1
        )
        return runs[0] if runs else None

    def _write_run_id(self, run_id: str) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.output_dir / f".{RUN_ID_FILE}.tmp"
        tmp.write_text(run_id, encoding="utf-8")
        os.replace(tmp, self.output_dir / RUN_ID_FILE)

    def _log_metrics(self, client: Any, epoch: int, metrics: dict[str, float | None]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(mlflow_name(k), float(v), now, int(epoch))
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if batch:
            client.log_batch(self.run_id, metrics=batch)

    def _log_dict(self, client: Any, name: str, data: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="vta-mlflow-") as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
            client.log_artifact(self.run_id, str(path))


__all__ = ["MlflowLogger", "default_tracking_uri", "flatten", "mark_run_terminated", "mlflow_name"]
