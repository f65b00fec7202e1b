"""What the runner sets up before training: the job's folders, the device, and what the model starts
from (resume from last.pt, a fine-tuning checkpoint, or pretrained weights).

Each step reports through the runner's `LogEvent` (a log line and a ``log`` event) and raises
`JobFailure` (reported as an ``error`` event with its ``error_type``) when the job cannot start.
The flow and the events are in `trainer_runtime.runner`; contracts in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainer_runtime.adapters.base import ConfigError
from trainer_runtime.errors import ObjectNotFoundError
from trainer_runtime.spec import JobSpec
from trainer_runtime.storage import DualStorageClient
from trainer_runtime.weights import USER_UPLOAD, WEIGHTS_FIELD, ResolvedWeights, WeightsError
from trainer_runtime.weights import fetch as fetch_weights

logger = logging.getLogger("trainer_runtime.runner")  # its lines are the runner's


class LogEvent(Protocol):
    """`Runner.log_event`: a log line and a ``log`` event."""

    def __call__(self, message: str, level: str = "info", **extra: Any) -> None: ...


@dataclass(frozen=True)
class JobPaths:
    """A job's local folders under ``spec.work_dir`` (the layout is in `trainer_runtime.runner`)."""

    work_dir: Path
    job_dir: Path
    output_dir: Path
    scratch_dir: Path
    spool_dir: Path
    staging_dir: Path
    cache_dir: Path

    @classmethod
    def for_job(cls, work_dir: str | Path, job_id: int) -> JobPaths:
        work = Path(work_dir).expanduser().resolve()
        job = work / "jobs" / f"job_{job_id}"
        return cls(
            work_dir=work,
            job_dir=job,
            output_dir=job / "output",
            scratch_dir=job / "work",
            spool_dir=job / "events",
            staging_dir=job / "staging",
            cache_dir=work / "cache" / "datasets",
        )


class JobFailure(Exception):
    """An error to report as ``error`` {message, error_type}."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda:0`` when torch sees a GPU, else ``cpu``; ``cuda[:N]`` without a GPU is a
    ConfigError."""
    req = (requested or "auto").strip().lower()
    if req == "cpu":
        return "cpu"
    if req not in ("auto", "cuda", "gpu") and not req.startswith("cuda:"):
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    try:
        import torch

        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
    except ImportError:
        available, count = False, 0
    if req == "auto":
        return "cuda:0" if available else "cpu"
    index = int(req.split(":", 1)[1]) if ":" in req else 0
    if not available or index >= count:
        raise ConfigError(f"device {requested!r} requested but no such CUDA device is available; use auto or cpu")
    return f"cuda:{index}"


def locate_resume(spec: JobSpec, storage: DualStorageClient, output_dir: Path, log: LogEvent) -> Path | None:
    """Resume: last.pt (and best.pt when missing) of this job, local else from the internal store;
    None when neither has it (a fresh start)."""
    local = output_dir / "last.pt"
    if local.is_file():
        logger.info("resuming from local %s", local)
        return local
    try:
        storage.download_checkpoint(job_id=spec.job_id, project_id=spec.project_id, name="last.pt", dest=local)
    except ObjectNotFoundError:
        log("resume requested but no last.pt exists locally or in storage; starting from scratch")
        return None
    log("last.pt fetched from the internal store to resume")
    if not (output_dir / "best.pt").is_file():
        with contextlib.suppress(ObjectNotFoundError):
            storage.download_checkpoint(
                job_id=spec.job_id, project_id=spec.project_id, name="best.pt", dest=output_dir / "best.pt"
            )
    return local


def fetch_init_weights(spec: JobSpec, storage: DualStorageClient, job_dir: Path, log: LogEvent) -> Path | None:
    """Fine-tuning: download the earlier job's checkpoint (`spec.init_from.key`, internal store)."""
    init = spec.init_from
    if init is None:
        return None
    dest = job_dir / "init" / f"job_{init.job_id}_{init.checkpoint}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage.internal.get_file(init.key, dest)
    except ObjectNotFoundError as exc:
        raise JobFailure(
            f"job {init.job_id}'s {init.checkpoint} to start from is gone from the internal store ({init.key})",
            "init_checkpoint_missing",
        ) from exc
    log(f"fine-tuning: fetched job {init.job_id}'s {init.checkpoint} to initialise the model")
    return dest


def fetch_pretrained(spec: JobSpec, storage: DualStorageClient, job_dir: Path, log: LogEvent) -> ResolvedWeights:
    """Pretrained weights of the spec's plan (`trainer_runtime.weights`: registry, a download
    with timeouts, or scratch); one ``log`` event carries ``"weights"`` (the server records it
    on the job, and a download cached in the registry in its registry table)."""
    try:
        got = fetch_weights(
            spec.pretrained,
            storage,
            job_dir / "pretrained",
            log=lambda message, level: log(message, level),
        )
    except (WeightsError, ObjectNotFoundError) as exc:
        raise JobFailure(str(exc), "pretrained_weights") from exc
    if got.source == "scratch":
        message = f"{spec.model_name} starts from scratch (no pretrained weights)"
        if got.warning:
            message += f": {got.warning}"
        log(message, "warning" if got.warning else "info", **{WEIGHTS_FIELD: got.event_data()})
    elif got.source == USER_UPLOAD:
        log(
            f"starting from {got.detail} (user upload, sha256 {got.sha256 or '?'})",
            "info",
            **{WEIGHTS_FIELD: got.event_data()},
        )
    else:
        pre = f" on {got.pretraining}" if got.pretraining else ""
        log(f"pretrained{pre} ({got.detail}, from the {got.source})", "info", **{WEIGHTS_FIELD: got.event_data()})
    return got
