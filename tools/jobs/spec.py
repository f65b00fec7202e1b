"""Job specs (contract 4 in docs/architecture.md): what a trainer needs from the server's settings
(`JobRuntimeConfig`), the spec of a job (`build_spec`, with its weights plan resolved again at
launch) and the spec file with a fresh callback token (`write_spec`). Part of `tools.jobs`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import object_session

from tools import user_weights
from tools import weights as weights_tools
from tools.db.models import Job
from tools.services import WeightsPolicy
from trainer_runtime.spec import Hyperparameters, InitFromSpec, JobSpec, MlflowSpec
from trainer_runtime.storage import StorageConfig
from trainer_runtime.weights import WeightsPlan

SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class JobRuntimeConfig:
    """What a trainer needs from the server's settings (`build_spec`).

    trainer_dir: the trainers' work folder (``data_dir/trainer``: dataset cache, per-job folders
    ``jobs/job_<id>/`` with spec.json, trainer.log, output/, events/ spool; the default MLflow
    store). storage: the dual storage settings. callback_base_url: how a trainer reaches this
    server. mlflow_tracking_uri: None for the trainer's SQLite store under trainer_dir/mlflow.
    reporter_close_timeout_s: how long a finished trainer keeps delivering its last events.
    weights: the pretrained-weights download policy the spec's plan follows (`tools.weights`).
    """

    trainer_dir: Path
    storage: StorageConfig
    callback_base_url: str = "http://127.0.0.1:8000"
    mlflow_tracking_uri: str | None = None
    reporter_close_timeout_s: float = 120.0
    weights: WeightsPolicy = field(default_factory=WeightsPolicy)

    def job_dir(self, job_id: int) -> Path:
        return Path(self.trainer_dir).resolve() / "jobs" / f"job_{int(job_id)}"

    def spec_path(self, job_id: int) -> Path:
        return self.job_dir(job_id) / SPEC_FILE

    def callback_url(self, job_id: int) -> str:
        return f"{self.callback_base_url.rstrip('/')}/internal/jobs/{int(job_id)}/events"


def hash_token(token: str) -> str:
    """The sha256 hex digest stored in `Job.token_hash` (the token itself is only in the spec)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random callback token for a trainer (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


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
        reporter_close_timeout_s=runtime.reporter_close_timeout_s,
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


def read_spec_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in a spec file, or None when it cannot be read or is not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
