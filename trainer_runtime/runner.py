"""Run one training job end to end: ``python -m trainer_runtime --spec job.json [--resume]``.

Flow: load spec -> reporter -> status ``preparing`` (``resuming`` when resuming) -> MLflow logger
process (`mlflow_logger`: imports mlflow at idle priority; the trainer never does) -> dataset cache
-> annotations -> ``check_compatibility`` -> adapter ``validate_spec`` + ``resolve_config`` ->
device -> resume source -> MLflow run -> status ``running`` -> ``adapter.train()`` with callbacks
wired to events -> checkpoint uploads (best.pt, last.pt: on completion, early stop, SIGINT/SIGTERM
and exceptions) -> ``done`` / ``error`` -> final ``status``.

Exit codes
    0    completed (early stop included)
    130  stopped by SIGINT or SIGTERM, after the checkpoints were uploaded (non-zero on purpose:
         a Kubernetes Job with ``restartPolicy: OnFailure`` and ``--resume`` continues a pod that
         was evicted; a user's stop deletes the Job instead)
    1    failed: bad input (unknown model, task mismatch, dataset cannot serve the task, batch
         larger than the dataset, unreachable storage...), an exception while training, or a
         checkpoint that could not be stored and verified
    2    the spec cannot be read or is invalid (an ``error`` event is still sent when the spec's
         job id, and callback URL if any, could be read; else only a line on stderr)

Events (contract 4): ``status`` ``{"status", ...}`` (the first one also ``"process_s"``: seconds since
the process started, i.e. interpreter start-up and imports); ``epoch`` ``{"epoch", "epochs", "metrics",
"eta_s", "epoch_s", "train_s", "val_s", "batches"}`` (the epoch's measured wall times: all of it,
training to its last batch, the rest = validation and checkpoint saving; ``eta_s`` = the mean epoch
time after the first, which also pays for warm-up, times the epochs left); ``batch``
``{"epoch", "batch", "batches", "loss", "eta_s"}`` at most twice a second;
``log`` ``{"level", "message"}`` (one of them, as soon as the job's MLflow run exists, also carries
``"mlflow_run_id"``: the server stores it on the job); ``checkpoint`` ``{"name", "key", "size", "sha256", "epoch"}``
(epoch: the best epoch for best.pt, the last for last.pt); ``done`` ``{"status": completed|stopped,
"best_epoch", "last_epoch", "best_metric", "best_metric_name", "metrics", "checkpoints",
"early_stopped"}``; ``error`` ``{"message", "error_type"}``. Failed jobs get ``error`` and no
``done``.

Resume: every epoch is reported once across attempts. The runner keeps
``<output_dir>/runner_state.json`` (reported epochs, last and best saved epochs); an HTTP
reporter's spool says the same durably. A resumed attempt skips an epoch event already reported
(the adapter redid an epoch whose event went out before the kill), and reports an epoch whose
checkpoint was saved but whose event never went out with ``"recovered": true`` and no metrics.

Setup steps (the job's folders, the device, what the model starts from) are in `job_setup`; what
the events measure (process age, epoch times, finite metrics) in `progress`.

Local layout under ``spec.work_dir``: ``cache/datasets/`` (shared, `dataset_cache`),
``jobs/job_<id>/output/`` (best.pt, last.pt, mlflow_run_id, runner_state.json),
``jobs/job_<id>/work/`` (adapter scratch), ``jobs/job_<id>/events/`` (HTTP spool),
``jobs/job_<id>/staging/`` (periodic last.pt copies), ``mlflow/`` (default MLflow store).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import IO, Any

from trainer_runtime.adapters import get_adapter
from trainer_runtime.adapters.base import Adapter, ConfigError, TrainContext, TrainResult
from trainer_runtime.checkpoints import (
    CheckpointUploader,
    CheckpointUploadError,
    PeriodicLastUploader,
    UploadedCheckpoint,
)
from trainer_runtime.dataset_cache import DatasetCache
from trainer_runtime.errors import (
    DatasetFormatError,
    IncompatibleDatasetError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    TrainerRuntimeError,
)
from trainer_runtime.events import MLFLOW_RUN_ID_FIELD
from trainer_runtime.formats.capabilities import check_compatibility, summarize
from trainer_runtime.formats.validate import load_annotations
from trainer_runtime.job_setup import (
    JobFailure,
    JobPaths,
    fetch_init_weights,
    fetch_pretrained,
    locate_resume,
    resolve_device,
)
from trainer_runtime.mlflow_logger import MlflowLogger
from trainer_runtime.progress import clean_metrics, epoch_timing, finite, process_age_s
from trainer_runtime.reporting import EventReporter, HttpReporter, make_reporter
from trainer_runtime.spec import JobSpec, SpecError, load_spec
from trainer_runtime.storage import DualStorageClient

logger = logging.getLogger("trainer_runtime.runner")

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_SPEC = 2
EXIT_STOPPED = 130

BATCH_EVENT_INTERVAL_S = 0.5
STATE_FILE = "runner_state.json"
MLFLOW_RUN_ID_WAIT_S = 20.0
"""At the end of a run, how long to wait for the MLflow run id when it was not reported yet (the
logger process runs at idle priority and may only get CPU once training is over)."""

AdapterResolver = Callable[[str], type[Adapter]]


def classify_error(exc: BaseException, *, training: bool = False) -> tuple[str, str]:
    """(message, error_type) for an exception."""
    if isinstance(exc, JobFailure):
        return exc.message, exc.error_type
    mapping: list[tuple[type[BaseException], str]] = [
        (SpecError, "spec"),
        (ConfigError, "config"),
        (IncompatibleDatasetError, "incompatible_dataset"),
        (DatasetFormatError, "dataset"),
        (CheckpointUploadError, "checkpoint_upload"),
        (StorageUnavailableError, "storage_unavailable"),
        (ObjectNotFoundError, "not_found"),
        (StorageError, "storage"),
    ]
    for cls, kind in mapping:
        if isinstance(exc, cls):
            return str(exc), kind
    if isinstance(exc, TrainerRuntimeError):
        return str(exc), "runtime"
    return f"{type(exc).__name__}: {exc}", "training" if training else "internal"


class Runner:
    """One job. `run()` returns the exit code; it never raises for job errors."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        resume: bool = False,
        reporter: EventReporter | None = None,
        storage: DualStorageClient | None = None,
        adapter_resolver: AdapterResolver | None = None,
        install_signal_handlers: bool = True,
        stream: IO[str] | None = None,
        private_stdout: bool = False,
        reporter_close_timeout_s: float | None = None,
        upload_attempts: int = 4,
        upload_backoff_s: float = 1.0,
    ) -> None:
        self.spec = spec
        self.resume_requested = resume or spec.resume
        self.paths = JobPaths.for_job(spec.work_dir, spec.job_id)
        self.paths.job_dir.mkdir(parents=True, exist_ok=True)
        self.reporter = reporter or make_reporter(
            spec.job_id,
            spec.callback_url,
            spec.callback_token,
            self.paths.spool_dir,
            stream=stream,
            private_stdout=private_stdout,
        )
        self._storage = storage
        self._resolver = adapter_resolver or get_adapter
        self._install_signals = install_signal_handlers
        self._close_timeout = (
            reporter_close_timeout_s if reporter_close_timeout_s is not None else spec.reporter_close_timeout_s
        )
        self._upload_attempts = upload_attempts
        self._upload_backoff_s = upload_backoff_s
        self.stop_event = threading.Event()
        self._signals: list[str] = []
        self._stop_logged = False
        # progress state
        self._epochs = spec.hyperparameters.epochs
        self._epoch_started: float | None = None
        self._epoch_times: list[float] = []
        self._batch_started: float | None = None
        self._batch_epoch: int | None = None
        self._batch_times: list[float] = []
        self._last_batch_event = 0.0
        self._last_batch_end: float | None = None  # monotonic time the epoch's latest batch ended
        self._last_batches: int | None = None
        self._state: dict[str, Any] = {"reported_epochs": [], "last_epoch": None, "best_epoch": None}
        self._reported: set[int] = set()
        self._dedupe = False
        self._last_metrics: dict[str, float | None] = {}
        self.mlflow: MlflowLogger | None = None
        self.periodic: PeriodicLastUploader | None = None

    # events -------------------------------------------------------------------------------------
    def emit(self, type: str, data: dict[str, Any]) -> None:
        try:
            self.reporter.emit(type, data)
        except Exception as exc:  # reporting must never take the job down
            logger.error("could not emit %s event: %s", type, exc)

    def status(self, status: str, **extra: Any) -> None:
        logger.info("job %s: %s", self.spec.job_id, status)
        self.emit("status", {"status": status, **extra})

    def log_event(self, message: str, level: str = "info", **extra: Any) -> None:
        getattr(logger, level if level in ("debug", "info", "warning", "error") else "info")(message)
        self.emit("log", {"level": level, "message": message, **extra})

    def _report_mlflow_run(self, run_id: str) -> None:
        """The MLflow logger process created (or re-opened) the job's run: tell the server (the
        logger's reader thread calls this)."""
        self.log_event(f"MLflow run {run_id}", "info", **{MLFLOW_RUN_ID_FIELD: run_id})

    # signals ------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self._signals.append(name)
        self.stop_event.set()
        msg = (
            f"trainer: {name} received; stopping after the current batch and uploading checkpoints\n"
            if len(self._signals) == 1
            else f"trainer: {name} received again; already stopping (checkpoint upload continues)\n"
        )
        with contextlib.suppress(OSError):
            os.write(2, msg.encode())

    def _log_stop_request(self) -> None:
        if self._signals and not self._stop_logged:
            self._stop_logged = True
            self.log_event(f"stop requested ({self._signals[0]}): finishing the current batch", "warning")

    # state --------------------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.paths.output_dir / STATE_FILE

    def _load_state(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._state_path().read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._state.update(data)

    def _save_state(self) -> None:
        self._state["reported_epochs"] = sorted(self._reported)
        self.paths.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state), encoding="utf-8")
        os.replace(tmp, self._state_path())

    # callbacks ----------------------------------------------------------------------------------
    def _eta(self, epoch: int, batch: int | None = None, batches: int | None = None) -> float | None:
        remaining_epochs = max(0, self._epochs - epoch)
        if self._epoch_times:
            # the first epoch also pays for warm-up (lazy init, caches): later ones are the speed
            steady = self._epoch_times[1:] or self._epoch_times
            per_epoch = sum(steady) / len(steady)
        elif self._batch_times and batches:
            per_epoch = sum(self._batch_times) / len(self._batch_times) * batches
        else:
            return None
        eta = per_epoch * remaining_epochs
        if batch is not None and batches:
            per_batch = sum(self._batch_times) / len(self._batch_times) if self._batch_times else per_epoch / batches
            eta += per_batch * max(0, batches - batch)
        return round(eta, 1)

    def on_train_start(self, epochs: int, start_epoch: int = 1, **_: Any) -> None:
        self._epochs = int(epochs)
        self._epoch_started = time.monotonic()
        self._batch_started = self._epoch_started
        if self._dedupe:
            gap = [e for e in range(1, int(start_epoch)) if e not in self._reported]
            for e in gap:
                self._reported.add(e)
                self.emit(
                    "epoch", {"epoch": e, "epochs": self._epochs, "metrics": {}, "eta_s": None, "recovered": True}
                )
            if gap:
                self.log_event(
                    f"epochs {gap} were saved by the previous attempt but their events were lost; "
                    "reported without metrics",
                    "warning",
                )
                self._save_state()

    def on_batch_end(self, epoch: int, batch: int, batches: int, loss: float | None = None, **_: Any) -> None:
        now = time.monotonic()
        self._last_batch_end = now
        self._last_batches = int(batches)
        if self._batch_epoch != epoch:
            self._batch_epoch = epoch
            self._batch_times = []
        elif self._batch_started is not None:
            self._batch_times.append(now - self._batch_started)
        self._batch_started = now
        if self._signals and not self._stop_logged:
            self._log_stop_request()
        if now - self._last_batch_event >= BATCH_EVENT_INTERVAL_S:
            self._last_batch_event = now
            self.emit(
                "batch",
                {
                    "epoch": int(epoch),
                    "batch": int(batch),
                    "batches": int(batches),
                    "loss": finite(loss),
                    "eta_s": self._eta(epoch, batch, batches),
                },
            )

    def on_fit_epoch_end(self, epoch: int, epochs: int, metrics: dict[str, Any], **_: Any) -> None:
        now = time.monotonic()
        timing = epoch_timing(self._epoch_started, self._last_batch_end, now, self._last_batches)
        if self._epoch_started is not None:
            self._epoch_times.append(now - self._epoch_started)
        self._epoch_started = now
        self._last_batch_end = None
        self._batch_started = now
        self._epochs = int(epochs)
        clean = clean_metrics(metrics)
        self._last_metrics = clean
        epoch = int(epoch)
        if epoch in self._reported:
            logger.info("epoch %d was already reported by the previous attempt; not reported again", epoch)
            return
        self.emit(
            "epoch", {"epoch": epoch, "epochs": self._epochs, "metrics": clean, "eta_s": self._eta(epoch), **timing}
        )
        self._reported.add(epoch)
        self._save_state()
        if self.mlflow is not None:
            self.mlflow.log_epoch(epoch, clean)

    def on_model_save(
        self,
        epoch: int,
        last: Path | None = None,  # noqa: ARG002  the on_model_save callback's; adapters pass it by keyword
        best: Path | None = None,  # noqa: ARG002  (the checkpoints are uploaded from the output folder)
        is_best: bool = False,
        **_: Any,
    ) -> None:
        self._state["last_epoch"] = int(epoch)
        if is_best:
            self._state["best_epoch"] = int(epoch)
        self._save_state()
        if self.periodic is not None:
            self.periodic.notify_saved(int(epoch))

    def on_log(self, level: str = "info", message: str = "", **_: Any) -> None:
        self.log_event(str(message), str(level).lower())

    # steps --------------------------------------------------------------------------------------
    def _storage_client(self) -> DualStorageClient:
        if self._storage is None:
            self._storage = DualStorageClient.from_config(self.spec.storage)
        return self._storage

    def _prepare_output_dir(self) -> None:
        out = self.paths.output_dir
        if not self.resume_requested and out.exists() and any(out.iterdir()):
            aside = out.with_name(f"output.prev-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            os.replace(out, aside)
            logger.info("fresh start: previous outputs moved to %s", aside)
        out.mkdir(parents=True, exist_ok=True)

    def _check_dataset_size(self, summary: dict[str, Any]) -> None:
        batch = self.spec.hyperparameters.batch_size
        images = int(summary.get("labeled_images") or summary.get("images") or 0)
        if images == 0:
            raise JobFailure("the dataset has no labeled images", "incompatible_dataset")
        if batch is not None and batch > images:
            raise ConfigError(
                f"batch size {batch} is larger than the dataset ({images} labeled images); use {images} or less"
            )

    def _upload_final(
        self, uploader: CheckpointUploader, best_epoch: int | None, last_epoch: int | None
    ) -> tuple[list[UploadedCheckpoint], list[str]]:
        uploaded: list[UploadedCheckpoint] = []
        errors: list[str] = []
        out = self.paths.output_dir
        todo: list[tuple[str, int | None]] = []
        for name, epoch in (("best.pt", best_epoch), ("last.pt", last_epoch)):
            if (out / name).is_file():
                todo.append((name, epoch))
            else:
                logger.info("no %s to upload", name)
        # best and last upload side by side (hashing and I/O release the GIL); their events and
        # errors are reported in this order once both are done.
        with ThreadPoolExecutor(max_workers=max(1, len(todo)), thread_name_prefix="ckpt-upload") as pool:
            futures = [pool.submit(uploader.upload, out / name, name, epoch=epoch) for name, epoch in todo]
            for future in futures:
                try:
                    info = future.result()
                except StorageError as exc:
                    errors.append(str(exc))
                    self.log_event(str(exc), "error")
                    continue
                uploaded.append(info)
                self.emit("checkpoint", info.event_data())
        return uploaded, errors

    # main ---------------------------------------------------------------------------------------
    def run(self) -> int:
        previous: dict[signal.Signals, Any] = {}
        if self._install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(self) -> int:
        spec = self.spec
        hp = spec.hyperparameters
        job_status = "failed"
        error: tuple[str, str] | None = None
        result: TrainResult | None = None
        training_started = False
        uploader: CheckpointUploader | None = None
        resolved_config: dict[str, Any] = {}
        try:
            self.status("resuming" if self.resume_requested else "preparing", process_s=process_age_s())
            # the MLflow logger process (idle priority) imports mlflow and opens the store meanwhile
            self.mlflow = MlflowLogger(
                spec,
                work_dir=self.paths.work_dir,
                output_dir=self.paths.output_dir,
                job_dir=self.paths.job_dir,
                on_run=self._report_mlflow_run,
            )
            self.mlflow.launch()
            self._prepare_output_dir()
            storage = self._storage_client()
            cache = DatasetCache(self.paths.cache_dir, storage)
            cached = cache.fetch(spec.dataset_id, spec.snapshot_id)
            dataset = load_annotations(cached.path / "annotations.json")
            compat = check_compatibility(dataset, spec.task_type)
            if compat["status"] == "incompatible":
                raise IncompatibleDatasetError(compat["reason"], task_type=spec.task_type)
            summary = summarize(dataset)
            try:
                adapter_cls = self._resolver(spec.framework)
            except ImportError as exc:
                raise JobFailure(
                    f"the {spec.framework} adapter cannot be loaded here ({exc}); install trainer_runtime's "
                    f"{spec.framework} dependencies",
                    "framework_unavailable",
                ) from exc
            adapter_cls.validate_spec(spec, summary)
            self._check_dataset_size(summary)
            resolved_config = adapter_cls.resolve_config(
                hp.preset,
                dict(hp.advanced_config),
                hp.model_dump(exclude={"preset", "advanced_config"}, exclude_none=True),
            )
            device = resolve_device(hp.device)
            resume_from = (
                locate_resume(spec, storage, self.paths.output_dir, self.log_event) if self.resume_requested else None
            )
            init_weights = (
                fetch_init_weights(spec, storage, self.paths.job_dir, self.log_event) if resume_from is None else None
            )
            # pretrained weights: only for a fresh start (a resume or a fine-tune brings its own)
            pretrained = (
                fetch_pretrained(spec, storage, self.paths.job_dir, self.log_event)
                if resume_from is None and init_weights is None
                else None
            )
            if resume_from is not None:
                self._load_state()
                self._reported = {int(e) for e in self._state.get("reported_epochs") or []}
                self._reported |= self.reporter.reported_epochs()
                self._dedupe = True
            uploader = CheckpointUploader(
                storage,
                spec.job_id,
                spec.project_id,
                attempts=self._upload_attempts,
                backoff_s=self._upload_backoff_s,
            )
            if self.stop_event.is_set():
                raise _StopBeforeTraining()

            self.mlflow.start(
                {
                    "config": resolved_config,
                    "hyperparameters": hp.model_dump(),
                    "device": device,
                    **(pretrained.mlflow_params() if pretrained is not None else {}),
                    # fine-tuning source: init_from.job_id / checkpoint / model_name / framework
                    **({"init_from": spec.init_from.model_dump(exclude={"key"})} if spec.init_from is not None else {}),
                },
                resume=resume_from is not None,
            )
            ctx = TrainContext(
                spec=spec,
                dataset_dir=cached.path,
                dataset=dataset,
                conversion=compat.get("conversion"),
                work_dir=self.paths.scratch_dir,
                output_dir=self.paths.output_dir,
                config=resolved_config,
                device=device,
                stop_event=self.stop_event,
                resume_from=resume_from,
                init_weights=init_weights,
                pretrained=pretrained,
            )
            self.paths.scratch_dir.mkdir(parents=True, exist_ok=True)
            cb = ctx.callbacks
            cb.add_callback("on_train_start", self.on_train_start)
            cb.add_callback("on_batch_end", self.on_batch_end)
            cb.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)
            cb.add_callback("on_model_save", self.on_model_save)
            cb.add_callback("on_log", self.on_log)
            self.periodic = PeriodicLastUploader(
                uploader,
                self.paths.output_dir / "last.pt",
                self.paths.staging_dir,
                spec.checkpoint_upload_interval_s,
                on_uploaded=lambda info: self.log_event(
                    f"last.pt (epoch {info.epoch}) backed up to {info.key}", "info"
                ),
            )
            adapter = adapter_cls(ctx)
            self.status(
                "running",
                device=device,
                dataset_version=cached.version,
                conversion=compat.get("conversion"),
                resumed_from=str(resume_from) if resume_from else None,
            )
            self.periodic.start()
            training_started = True
            result = adapter.train()
            self._log_stop_request()
            job_status = "stopped" if result.stopped else "completed"
        except _StopBeforeTraining:
            job_status = "stopped"
            self._log_stop_request()
        except BaseException as exc:
            error = classify_error(exc, training=training_started)
            if not isinstance(exc, TrainerRuntimeError | JobFailure) or error[1] in ("training", "internal"):
                traceback.print_exc(file=sys.stderr)
            if isinstance(exc, KeyboardInterrupt):  # a handler was not installed (embedded use)
                error = ("interrupted", "interrupted")
            job_status = "failed"
        finally:
            if self.periodic is not None:
                self.periodic.stop()

        # checkpoints ----------------------------------------------------------------------------
        best_epoch = (result.best_epoch if result else None) or self._state.get("best_epoch")
        last_epoch = (result.epochs_completed if result else None) or self._state.get("last_epoch")
        uploaded: list[UploadedCheckpoint] = []
        if training_started and uploader is not None:
            uploaded, upload_errors = self._upload_final(uploader, best_epoch, last_epoch)
            if upload_errors and error is None:
                error = ("; ".join(upload_errors), "checkpoint_upload")
                job_status = "failed"

        final_metrics = clean_metrics(result.final_metrics) if result else self._last_metrics
        if self.mlflow is not None:
            self.mlflow.wait_run_id(MLFLOW_RUN_ID_WAIT_S)  # its log event before the final ones
            self.mlflow.log_dict("config.json", {"config": resolved_config, "hyperparameters": hp.model_dump()})
            self.mlflow.log_dict("final_metrics.json", final_metrics)
            self.mlflow.log_dict("checkpoints.json", [c.event_data() for c in uploaded])

        if error is None:
            self.emit(
                "done",
                {
                    "status": job_status,
                    "best_epoch": best_epoch,
                    "last_epoch": last_epoch,
                    "best_metric": finite(result.best_metric) if result else None,
                    "best_metric_name": result.best_metric_name if result else None,
                    "metrics": final_metrics,
                    "checkpoints": [c.event_data() for c in uploaded],
                    "early_stopped": bool(result.early_stopped) if result else False,
                },
            )
        else:
            message, error_type = error
            logger.error("job %s failed (%s): %s", spec.job_id, error_type, message)
            self.emit("error", {"message": message, "error_type": error_type})
        self.status(job_status)
        if self.mlflow is not None:
            self.mlflow.finish(job_status)
        self.reporter.close(self._close_timeout)
        return {"completed": EXIT_COMPLETED, "stopped": EXIT_STOPPED}.get(job_status, EXIT_FAILED)


class _StopBeforeTraining(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# entry point


def _spec_error_exit(path: str, exc: SpecError, stream: IO[str] | None, private_stdout: bool) -> int:
    """Report an invalid spec: an error event when its job id (and callback) can be read."""
    print(f"trainer: {exc}", file=sys.stderr, flush=True)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        job_id = int(raw["job_id"])
        if job_id <= 0:
            return EXIT_SPEC
    except Exception:
        return EXIT_SPEC
    try:
        url = raw.get("callback_url") or None
        work = JobPaths.for_job(raw.get("work_dir") or "./data/trainer", job_id)
        reporter = make_reporter(
            job_id,
            url if isinstance(url, str) else None,
            raw.get("callback_token") if isinstance(raw.get("callback_token"), str) else None,
            work.spool_dir,
            stream=stream,
            private_stdout=private_stdout,
        )
        reporter.emit("error", {"message": str(exc), "error_type": "spec"})
        reporter.emit("status", {"status": "failed"})
        reporter.close(30.0 if isinstance(reporter, HttpReporter) else 0)
    except Exception as report_exc:  # pragma: no cover - best effort
        print(f"trainer: could not report the spec error: {report_exc}", file=sys.stderr, flush=True)
    return EXIT_SPEC


def build_parser(prog: str = "python -m trainer_runtime") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run one training job from a JSON job spec.")
    parser.add_argument("--spec", required=True, help="path to the job spec (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from last.pt (local, else the internal store)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    adapter_resolver: AdapterResolver | None = None,
    storage: DualStorageClient | None = None,
    stream: IO[str] | None = None,
    prog: str = "python -m trainer_runtime",
) -> int:
    """CLI entry. Events go to the real stdout (JSON lines) unless the spec has a callback URL;
    everything else the process prints goes to stderr. Returns the exit code (see module doc)."""
    args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    private_stdout = stream is None
    try:
        spec = load_spec(Path(args.spec))
    except SpecError as exc:
        return _spec_error_exit(args.spec, exc, stream, private_stdout)
    try:
        runner = Runner(
            spec,
            resume=args.resume,
            storage=storage,
            adapter_resolver=adapter_resolver,
            stream=stream,
            private_stdout=private_stdout,
        )
    except Exception as exc:  # e.g. an unwritable work_dir: no reporter can be built
        print(f"trainer: cannot start job {spec.job_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return runner.run()


__all__ = [
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_SPEC",
    "EXIT_STOPPED",
    "JobPaths",
    "Runner",
    "classify_error",
    "main",
    "resolve_device",
]
