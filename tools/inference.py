"""Inference for the server: worker pool, checkpoint cache, single images, test runs, exports.

The server never imports torch: predictions run in worker processes
(`python -m trainer_runtime.inference.worker`, one pool per framework, each worker started with
that framework's interpreter, ``TRAINER_PYTHON_*``, else the server's own) spoken to with the
length-prefixed protocol of `trainer_runtime.inference.protocol`.

    InferenceService(config, storage, session_factory, publish)   one per app (app.state.inference)
      .predict(framework, model_key, path, images, ...)           -> (results, reply)
      .export(framework, path, dest, sample)                      -> report
      .checkpoint_path(job, ckpt)                                 local copy of a stored checkpoint
      .submit_test_run(run_id)                                    background thread pool
      .close()

Reliability: every request has a timeout (``request_timeout_s``); a worker that dies (or hangs
past the timeout and is killed) fails its in-flight requests at once with
`InferenceUnavailableError` (HTTP 503) and is started again by the next request. A request is
never left waiting on a dead process.

Checkpoints are fetched from the internal store (the key of the `JobCheckpoint` row) into
``<cache_dir>/jobs/<job>/<sha256|size>-<name>`` once; workers keep the loaded models in their LRU
cache keyed by ``job:<id>:<name>:<sha256>``.

Tool functions (`ctx` first, JSON-ready dicts, errors from `tools.errors`): `run_inference`,
`create_export` / `get_export` / `list_exports` / `export_file`, `create_test_run` /
`get_test_run` / `list_test_runs` / `test_run_events` / `test_run_file`.

Test-run events have the training event shape plus ``test_run_id``: ``{"job_id": <training job>,
"test_run_id", "seq", "ts", "type": "status"|"batch"|"done"|"error", "data"}``, ``seq`` gapless
per test run. They are kept on the TestRun row and published on the app's event bus on channel
``-test_run_id`` (negative ids never clash with job ids, which are positive).
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tools.context import ToolContext, is_db_id, iso_utc, require_user
from tools.db.models import (
    Dataset,
    DatasetImage,
    DatasetSnapshot,
    Job,
    JobCheckpoint,
    ModelExport,
    TestRun,
    utcnow,
)
from tools.errors import (
    ConflictError,
    InferenceFailedError,
    InferenceUnavailableError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    ToolError,
)
from tools.jobs import add_job_listener, remove_job_listener
from trainer_runtime.errors import ObjectNotFoundError, StorageError
from trainer_runtime.inference.export import (
    EXPORT_FORMATS,
    FORMAT_CONTENT_TYPE,
    FORMAT_SUFFIX,
    unsupported_reason,
)
from trainer_runtime.inference.protocol import ProtocolError, WorkerError, read_frame, write_frame
from trainer_runtime.storage import (
    DualStorageClient,
    dataset_annotations_key,
    dataset_image_key,
    snapshot_annotations_key,
)

log = logging.getLogger(__name__)

FRAMEWORKS = ("ultralytics", "timm", "transformers")
CHECKPOINTS = ("best", "last")
# a stopped or failed job keeps the checkpoints it uploaded (best.pt / last.pt are uploaded on stop
# and on error too): they can be tested and exported like a completed job's
USABLE_STATUSES = ("completed", "stopped", "failed")
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "MPO"})
MAX_STORED_BATCH_EVENTS = 200


# ------------------------------------------------------------------------------------ config


def _env(name: str, default: Any, cast: Callable[[str], Any]) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        return default


@dataclass
class InferenceConfig:
    """Inference settings. `from_settings` reads ``inference_*`` fields of the app settings when
    they exist, else the environment (``VTA_INFERENCE_*``), else these defaults."""

    cache_dir: Path = Path("./data/inference")
    python: dict[str, str | None] = field(default_factory=dict)
    workers_per_framework: int = 1
    device: str = "auto"
    max_models: int = 4
    max_memory_mb: float = 2048.0
    batch_window_ms: float = 2.0
    batch_wait: str = "adaptive"
    max_batch: int = 32
    max_pixels: int = 40_000_000
    max_image_bytes: int = 50 * 1024**2
    request_timeout_s: float = 120.0
    export_timeout_s: float = 600.0
    threads: int = 0
    test_run_batch: int = 16
    test_run_workers: int = 2
    route_cache_ttl_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Any, data_dir: Path | None = None) -> InferenceConfig:
        d = cls()

        def pick(name: str, cast: Callable[[str], Any]) -> Any:
            value = getattr(settings, f"inference_{name}", None)
            if value is not None:
                return value
            return _env(f"VTA_INFERENCE_{name.upper()}", getattr(d, name), cast)

        base = Path(str(data_dir or getattr(settings, "data_dir", None) or "./data"))
        cache = getattr(settings, "inference_cache_dir", None) or os.environ.get("VTA_INFERENCE_CACHE_DIR")
        return cls(
            cache_dir=Path(str(cache)) if cache else base / "inference",
            python={
                fw: getattr(settings, f"trainer_python_{fw}", None) or os.environ.get(f"TRAINER_PYTHON_{fw.upper()}")
                for fw in FRAMEWORKS
            },
            workers_per_framework=int(pick("workers_per_framework", int)),
            device=str(pick("device", str)),
            max_models=int(pick("max_models", int)),
            max_memory_mb=float(pick("max_memory_mb", float)),
            batch_window_ms=float(pick("batch_window_ms", float)),
            batch_wait=str(pick("batch_wait", str)),
            max_batch=int(pick("max_batch", int)),
            max_pixels=int(pick("max_pixels", int)),
            max_image_bytes=int(pick("max_image_bytes", int)),
            request_timeout_s=float(pick("request_timeout_s", float)),
            export_timeout_s=float(pick("export_timeout_s", float)),
            threads=int(pick("threads", int)),
            test_run_batch=int(pick("test_run_batch", int)),
            test_run_workers=int(pick("test_run_workers", int)),
            route_cache_ttl_s=float(pick("route_cache_ttl_s", float)),
        )


# ------------------------------------------------------------------------------- worker client


# `WorkerClient.request_async` writes a request of at most this many bytes from the event loop
ASYNC_INLINE_WRITE_BYTES = 256 * 1024


class WorkerClient:
    """One worker process and the requests in flight on it (thread-safe)."""

    def __init__(self, framework: str, config: InferenceConfig, index: int = 0) -> None:
        self.framework = framework
        self.config = config
        self.index = index
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        # request id -> (the process it was sent to, its future)
        self._pending: dict[int, tuple[subprocess.Popen[bytes], Future[tuple[dict[str, Any], list[bytes]]]]] = {}
        self._ids = itertools.count(1)
        self.restarts = 0
        self.starts = 0
        self.closed = False

    # ------------------------------------------------------------------------- lifecycle
    def command(self) -> list[str]:
        c = self.config
        python = c.python.get(self.framework) or sys.executable
        return [
            python,
            "-m",
            "trainer_runtime.inference.worker",
            "--framework",
            self.framework,
            "--device",
            c.device,
            "--max-models",
            str(c.max_models),
            "--max-memory-mb",
            str(c.max_memory_mb),
            "--batch-window-ms",
            str(c.batch_window_ms),
            "--batch-wait",
            c.batch_wait,
            "--max-batch",
            str(c.max_batch),
            "--max-pixels",
            str(c.max_pixels),
            "--threads",
            str(c.threads),
        ]

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _ensure(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self.closed:
                raise InferenceUnavailableError("the inference service is shut down")
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return proc
            if proc is not None:
                self.restarts += 1
                log.warning(
                    "inference worker %s/%d exited (%s); starting a new one",
                    self.framework,
                    self.index,
                    proc.returncode,
                )
            env = dict(os.environ)
            root = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            env.setdefault("YOLO_OFFLINE", "1")
            env.setdefault("YOLO_AUTOINSTALL", "false")
            env.setdefault("HF_HUB_OFFLINE", "1")
            try:
                proc = subprocess.Popen(
                    self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root
                )
            except OSError as exc:
                raise InferenceUnavailableError(f"cannot start the {self.framework} inference worker: {exc}") from exc
            self._proc = proc
            self.starts += 1
            threading.Thread(
                target=self._read_loop, args=(proc,), name=f"inference-{self.framework}-{self.index}", daemon=True
            ).start()
            return proc

    def _read_loop(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        reason = "closed its output"
        try:
            while True:
                frame = read_frame(proc.stdout)  # type: ignore[arg-type]
                if frame is None:
                    break
                msg, blobs = frame
                with self._lock:
                    entry = self._pending.pop(int(msg.get("id") or 0), None)
                if entry is not None and not entry[1].done():
                    entry[1].set_result((msg, blobs))
        except (ProtocolError, OSError, ValueError) as exc:
            reason = f"broke the protocol ({exc})"
        with contextlib.suppress(Exception):
            proc.kill()
        rc = proc.wait()
        self._fail_pending(proc, f"the {self.framework} inference worker {reason} and exited with code {rc}")

    def _fail_pending(self, proc: subprocess.Popen[bytes], message: str) -> None:
        with self._lock:
            ids = [i for i, (p, _) in self._pending.items() if p is proc]
            futures = [self._pending.pop(i)[1] for i in ids]
        err = InferenceUnavailableError(
            message + "; it is restarted for the next request", detail={"framework": self.framework}
        )
        for fut in futures:
            if not fut.done():
                fut.set_exception(err)

    def kill(self) -> None:
        """Kill the current process and wait for it, so the next request starts a new one."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self.closed = True
            proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # --------------------------------------------------------------------------- requests
    def request(
        self, msg: dict[str, Any], blobs: Sequence[bytes] = (), *, timeout: float | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request and wait for its answer; raises WorkerError for an error answer,
        InferenceUnavailableError when the worker dies or the timeout passes (then it is killed)."""
        fut = self.submit(msg, blobs)
        limit = timeout if timeout is not None else self.config.request_timeout_s
        try:
            answer = fut.result(timeout=limit)
        except FutureTimeout:
            self._timed_out(fut, msg, limit)
        return self._answer(answer)

    async def request_async(
        self, msg: dict[str, Any], blobs: Sequence[bytes] = (), *, timeout: float | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """`request` for an event loop: the answer is awaited, no thread waits for it. A small
        request is written from the loop (a pipe write of a few kB); a large one from a thread, so
        the loop never blocks while the worker reads it."""
        import asyncio

        if sum(len(b) for b in blobs) > ASYNC_INLINE_WRITE_BYTES:
            fut = await asyncio.to_thread(self.submit, msg, blobs)
        else:
            fut = self.submit(msg, blobs)
        limit = timeout if timeout is not None else self.config.request_timeout_s
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(fut), limit)
        except TimeoutError:
            self._timed_out(fut, msg, limit)
        return self._answer(answer)

    def submit(self, msg: dict[str, Any], blobs: Sequence[bytes] = ()) -> Future[tuple[dict[str, Any], list[bytes]]]:
        """Write one request to the worker; its future gets the raw answer (or the worker's death)."""
        proc = self._ensure()
        req_id = next(self._ids)
        fut: Future[tuple[dict[str, Any], list[bytes]]] = Future()
        fut.req_id = req_id  # type: ignore[attr-defined]
        with self._lock:
            self._pending[req_id] = (proc, fut)
        try:
            with self._write_lock:
                assert proc.stdin is not None
                write_frame(proc.stdin, {**msg, "id": req_id}, blobs)  # type: ignore[arg-type]
        except (BrokenPipeError, OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(req_id, None)
            self.kill()
            raise InferenceUnavailableError(
                f"the {self.framework} inference worker is not accepting requests ({exc}); it is restarted"
                " for the next request",
                detail={"framework": self.framework},
            ) from exc
        return fut

    def _timed_out(self, fut: Future[Any], msg: dict[str, Any], limit: float) -> NoReturn:
        with self._lock:
            self._pending.pop(getattr(fut, "req_id", 0), None)
        log.error(
            "inference worker %s/%d: request %s timed out after %.0fs; killing it",
            self.framework,
            self.index,
            msg.get("op"),
            limit,
        )
        self.kill()
        raise InferenceUnavailableError(
            f"the {self.framework} inference worker did not answer within {limit:g}s; it was restarted",
            detail={"framework": self.framework, "timeout_s": limit},
        ) from None

    @staticmethod
    def _answer(answer: tuple[dict[str, Any], list[bytes]]) -> tuple[dict[str, Any], list[bytes]]:
        reply, out_blobs = answer
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise WorkerError(
                str(err.get("code") or "internal"), str(err.get("message") or "unknown error"), reply=reply
            )
        return reply, out_blobs


# ------------------------------------------------------------------------------------ service


class InferenceService:
    """Worker pools, checkpoint cache and background test runs of one app."""

    def __init__(
        self,
        config: InferenceConfig,
        storage: DualStorageClient,
        session_factory: sessionmaker[Session] | None = None,
        publish: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.session_factory = session_factory
        self.publish = publish
        self.pools: dict[str, list[WorkerClient]] = {
            fw: [WorkerClient(fw, config, i) for i in range(max(1, config.workers_per_framework))] for fw in FRAMEWORKS
        }
        self._dl_locks: dict[str, threading.Lock] = {}
        self._dl_guard = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._exec_lock = threading.Lock()
        self._meta_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.routes = RouteCache(config.route_cache_ttl_s)
        # a job resumed or deleted by any caller (REST, agent, Slack) leaves the route cache at once
        self._engine = session_factory.kw.get("bind") if session_factory is not None else None
        if self._engine is not None:
            add_job_listener(self._engine, self.routes.invalidate_job)
        self.closed = False

    # ---------------------------------------------------------------------------- workers
    def client(self, framework: str, model_key: str = "") -> WorkerClient:
        pool = self.pools.get(framework)
        if pool is None:
            raise InvalidInputError(f"no inference for framework {framework!r}")
        return pool[hash(model_key) % len(pool)] if len(pool) > 1 else pool[0]

    def predict(
        self,
        framework: str,
        model_key: str,
        path: Path,
        images: Sequence[bytes],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        msg = {
            "op": "predict",
            "framework": framework,
            "model_key": model_key,
            "path": str(path),
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "max_pixels": self.config.max_pixels,
        }
        reply, _ = self.client(framework, model_key).request(msg, images, timeout=timeout)
        return list(reply.get("results") or []), reply

    async def predict_async(
        self, framework: str, model_key: str, path: Path, images: Sequence[bytes], **options: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`predict` awaited on an event loop (`WorkerClient.request_async`)."""
        timeout = options.pop("timeout", None)
        msg = {
            "op": "predict",
            "framework": framework,
            "model_key": model_key,
            "path": str(path),
            "conf": options.get("conf"),
            "iou": options.get("iou"),
            "max_det": options.get("max_det"),
            "max_pixels": self.config.max_pixels,
        }
        reply, _ = await self.client(framework, model_key).request_async(msg, images, timeout=timeout)
        return list(reply.get("results") or []), reply

    def export(
        self,
        framework: str,
        model_key: str,
        path: Path,
        dest: Path,
        sample: bytes | None = None,
        fmt: str = "onnx",
    ) -> dict[str, Any]:
        msg = {"op": "export", "format": fmt, "framework": framework, "path": str(path), "dest": str(dest)}
        reply, _ = self.client(framework, model_key).request(
            msg, [sample] if sample else [], timeout=self.config.export_timeout_s
        )
        return dict(reply.get("report") or {})

    def stats(self, framework: str) -> dict[str, Any]:
        reply, _ = self.client(framework).request({"op": "stats"}, timeout=30)
        return reply

    def close(self) -> None:
        self.closed = True
        if self._engine is not None:
            remove_job_listener(self._engine, self.routes.invalidate_job)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools.values():
            for c in pool:
                c.close()

    # ------------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, job: Job, ckpt: JobCheckpoint) -> Path:
        """A local copy of a stored checkpoint (downloaded once; 409 naming the key when the
        store does not have it)."""
        tag = ckpt.sha256[:16] if ckpt.sha256 else f"{ckpt.size}"
        dest = job_cache_dir(self.config.cache_dir, job.id) / f"{tag}-{Path(ckpt.name).name}"
        if dest.is_file() and dest.stat().st_size == ckpt.size:
            return dest
        with self._dl_guard:
            lock = self._dl_locks.setdefault(str(dest), threading.Lock())
        with lock:
            if dest.is_file() and dest.stat().st_size == ckpt.size:
                return dest
            try:
                info = self.storage.internal.get_file(ckpt.key, dest)
            except ObjectNotFoundError:
                raise ConflictError(
                    f"checkpoint {ckpt.name} of job {job.id} is missing from storage (key {ckpt.key})",
                    detail={"key": ckpt.key, "job_id": job.id, "checkpoint": ckpt.name},
                ) from None
            if ckpt.size and info.size != ckpt.size:
                with contextlib.suppress(OSError):
                    dest.unlink()
                raise ConflictError(
                    f"checkpoint {ckpt.key} in storage has {info.size} bytes, the job recorded {ckpt.size}",
                    detail={"key": ckpt.key},
                )
        return dest

    # ------------------------------------------------------------------------- test runs
    def submit_test_run(self, run_id: int) -> Future[None]:
        with self._exec_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=max(1, self.config.test_run_workers), thread_name_prefix="test-run"
                )
            return self._executor.submit(execute_test_run, self, run_id)


# ------------------------------------------------------------------------------- tool helpers


def _visible_job(ctx: ToolContext, job_id: Any) -> Job:
    user = require_user(ctx)
    try:
        jid = int(job_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id}) from None
    if not is_db_id(jid):
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
    job = ctx.db.get(Job, jid)
    if job is None or job.owner_id != user.id:
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
    return job


def job_checkpoint(ctx: ToolContext, job_id: Any, checkpoint: str | None = None) -> tuple[Job, JobCheckpoint, str]:
    """The caller's usable job and the checkpoint to run: `checkpoint` best|last, or None for
    best (last when the job has no best). 404 for others' jobs, 409 when not usable."""
    job = _visible_job(ctx, job_id)
    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise InvalidInputError(
            f"checkpoint must be 'best' or 'last', not {checkpoint!r}", detail={"field": "checkpoint"}
        )
    if job.status not in USABLE_STATUSES:
        raise ConflictError(
            f"job {job.id} is {job.status}: inference needs a finished job (completed, stopped or failed) "
            "with a checkpoint",
            detail={"job_id": job.id, "status": job.status},
        )
    rows = {r.name: r for r in ctx.db.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id))}
    if not rows:
        raise ConflictError(f"job {job.id} has no checkpoints", detail={"job_id": job.id})
    wanted = [checkpoint] if checkpoint else ["best", "last"]
    for name in wanted:
        row = rows.get(f"{name}.pt")
        if row is not None:
            return job, row, name
    raise ConflictError(
        f"job {job.id} has no {checkpoint} checkpoint (it has {', '.join(sorted(rows))})",
        detail={"job_id": job.id, "checkpoint": checkpoint},
    )


def model_key(job: Job, ckpt: JobCheckpoint) -> str:
    return f"job:{job.id}:{ckpt.name}:{(ckpt.sha256 or str(ckpt.size))[:16]}"


def check_image_bytes(data: bytes, max_pixels: int, max_bytes: int) -> tuple[int, int]:
    """Cheap header check in the server: size, identifiable image of an allowed format, pixel
    limit (413). The full decode (corrupt/truncated files, 422) happens in the worker."""
    if not data:
        raise InvalidInputError("the uploaded file is empty", detail={"field": "file"})
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"the image is {len(data)} bytes, over the limit of {max_bytes}",
            detail={"field": "file", "limit_bytes": max_bytes},
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            patched = sys.modules.get("ultralytics.utils.patches")  # see predictors._pil_open
            opener = getattr(patched, "_image_open", None) or Image.open
            with opener(io.BytesIO(data)) as im:
                fmt = im.format or ""
                w, h = im.size
    except Image.DecompressionBombError:
        raise PayloadTooLargeError(
            f"the image is over the limit of {max_pixels} pixels", detail={"field": "file", "limit_pixels": max_pixels}
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError):
        raise InvalidInputError(
            "the file is not an image (Pillow cannot identify it)", detail={"field": "file"}
        ) from None
    if fmt not in ALLOWED_FORMATS:
        raise InvalidInputError(f"image format {fmt or 'unknown'} is not supported", detail={"field": "file"})
    if w * h > max_pixels:
        raise PayloadTooLargeError(
            f"the image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}",
            detail={"field": "file", "limit_pixels": max_pixels, "width": w, "height": h},
        )
    return w, h


def _raise_worker_error(exc: WorkerError) -> None:
    if exc.code == "invalid_image":
        raise InvalidInputError(f"the image cannot be used: {exc.message}", detail={"field": "file"}) from None
    if exc.code == "checkpoint":
        raise ConflictError(f"the checkpoint cannot be loaded: {exc.message}") from None
    if exc.code == "export":
        raise InferenceFailedError(f"export failed: {exc.message}") from None
    raise InferenceFailedError(f"inference failed: {exc.message}", detail={"code": exc.code}) from None


def _dataset_categories(
    service: InferenceService, dataset_id: str | None, snapshot_id: str | None
) -> list[dict[str, Any]]:
    """The categories of the dataset (snapshot) a job trained on, [] when unavailable."""
    if not dataset_id:
        return []
    key_t = (dataset_id, snapshot_id)
    cached = service._meta_cache.get(key_t)
    if cached is not None:
        return list(cached["categories"])
    try:
        key = snapshot_annotations_key(dataset_id, snapshot_id) if snapshot_id else dataset_annotations_key(dataset_id)
        doc = json.loads(service.storage.external.get_bytes(key))
        cats = [c for c in doc.get("categories") or [] if isinstance(c, dict)]
    except (StorageError, ValueError):
        cats = []
    service._meta_cache[key_t] = {"categories": cats}
    return cats


def _pose_meta(service: InferenceService, route: InferenceRoute, num_keypoints: int) -> dict[str, Any]:
    for c in _dataset_categories(service, route.dataset_id, route.snapshot_id):
        names = c.get("keypoints") or []
        if names and (not num_keypoints or len(names) == num_keypoints):
            skeleton = [[int(a) - 1, int(b) - 1] for a, b in (c.get("skeleton") or []) if a and b]
            return {"keypoint_names": list(names), "skeleton": skeleton}
    return {"keypoint_names": [f"kp{i}" for i in range(num_keypoints)], "skeleton": []}


@dataclass(frozen=True)
class InferenceRoute:
    """What an authorised single-image request runs: resolved from the database by
    `resolve_inference` (visibility, job status, checkpoint row, local copy of the file)."""

    job_id: int
    framework: str
    model_key: str
    path: Path
    checkpoint: str  # best | last
    dataset_id: str | None = None
    snapshot_id: str | None = None
    model_name: str = ""  # the job's model (yolo11n, resnet18, ...)


class RouteCache:
    """Recently authorised ``(token, job, checkpoint)`` -> `InferenceRoute`, for `ttl_s` seconds.

    The single-image hot path: a repeated request skips the database (user row, job row,
    checkpoint rows, about 1-2 ms on SQLite) and goes straight to the worker. The token's signature
    and expiry are still checked on every request (`tools.auth.decode_access_token`); what may be
    up to `ttl_s` old is the rest: a user deactivated, a job deleted or a checkpoint replaced in that
    window is still served its previous route (a deletion through this process drops the job's
    entries at once: `invalidate_job`). ``ttl_s`` <= 0 turns the cache off. Thread-safe; bounded
    (oldest entries dropped first)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 4096) -> None:
        self.ttl_s = float(ttl_s)
        self.max_entries = max(1, int(max_entries))
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[str, int, str], tuple[float, InferenceRoute]] = (
            collections.OrderedDict()
        )
        self.hits = 0

    def get(self, token: str, job_id: int, checkpoint: str | None) -> InferenceRoute | None:
        if self.ttl_s <= 0:
            return None
        key = (token, int(job_id), checkpoint or "")
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < time.monotonic():
                if hit is not None:
                    del self._entries[key]
                return None
            self.hits += 1
            return hit[1]

    def put(self, token: str, job_id: int, checkpoint: str | None, route: InferenceRoute) -> None:
        if self.ttl_s <= 0:
            return
        key = (token, int(job_id), checkpoint or "")
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl_s, route)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate_job(self, job_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, r) in self._entries.items() if r.job_id == int(job_id)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class InferenceOutcome:
    result: dict[str, Any]
    image: bytes


def _check_options(conf: float | None, iou: float | None) -> None:
    for name, value in (("conf", conf), ("iou", iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be between 0 and 1", detail={"field": name})


def resolve_inference(
    ctx: ToolContext, service: InferenceService, job_id: Any, checkpoint: str | None = None
) -> InferenceRoute:
    """The route of the caller's job and checkpoint (404 others' jobs, 409 unusable, the
    checkpoint file fetched into the local cache once)."""
    job, ckpt, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    path = service.checkpoint_path(job, ckpt)
    return InferenceRoute(
        job_id=int(job.id),
        framework=job.framework,
        model_key=model_key(job, ckpt),
        path=path,
        checkpoint=ckpt_name,
        dataset_id=job.dataset_id,
        snapshot_id=job.snapshot_id,
        model_name=job.model_name,
    )


def predict_route(
    service: InferenceService,
    route: InferenceRoute,
    image: bytes,
    *,
    conf: float | None = None,
    iou: float | None = None,
) -> InferenceOutcome:
    """Run one image on a resolved route (no database): the InferenceResult of the seed."""
    _check_route_input(service, image, conf, iou)
    with _worker_errors():
        results, reply = service.predict(route.framework, route.model_key, route.path, [image], conf=conf, iou=iou)
    return _route_outcome(service, route, image, results, reply)


async def predict_route_async(
    service: InferenceService,
    route: InferenceRoute,
    image: bytes,
    *,
    conf: float | None = None,
    iou: float | None = None,
) -> InferenceOutcome:
    """`predict_route` awaited on the event loop (the single-image hot path of the web route)."""
    _check_route_input(service, image, conf, iou)
    with _worker_errors():
        results, reply = await service.predict_async(
            route.framework, route.model_key, route.path, [image], conf=conf, iou=iou
        )
    return _route_outcome(service, route, image, results, reply)


@contextlib.contextmanager
def _worker_errors() -> Iterator[None]:
    """A worker's error answer as the tool error of its kind (`_raise_worker_error`)."""
    try:
        yield
    except WorkerError as exc:
        _raise_worker_error(exc)


def _check_route_input(service: InferenceService, image: bytes, conf: float | None, iou: float | None) -> None:
    _check_options(conf, iou)
    check_image_bytes(image, service.config.max_pixels, service.config.max_image_bytes)


def _route_outcome(
    service: InferenceService, route: InferenceRoute, image: bytes, results: list[dict[str, Any]], reply: dict[str, Any]
) -> InferenceOutcome:
    result = dict(results[0])
    result["model"] = dict(reply.get("model") or {})
    if route.model_name:  # the job's model, not what the file calls itself (a resumed YOLO run says "last")
        result["model"]["model_name"] = route.model_name
    result["checkpoint"] = f"{route.checkpoint}.pt"
    result["job_id"] = route.job_id
    if result.get("task_type") == "pose_estimation":
        result.update(_pose_meta(service, route, int(reply.get("num_keypoints") or 0)))
    return InferenceOutcome(result=result, image=image)


def run_inference(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    *,
    image: bytes | None = None,
    dataset_image_id: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    checkpoint: str | None = None,
) -> InferenceOutcome:
    """Predict one image (uploaded bytes, or an image of a dataset the caller can see)."""
    return run_inference_route(
        ctx, service, job_id, image=image, dataset_image_id=dataset_image_id, conf=conf, iou=iou, checkpoint=checkpoint
    )[0]


def run_inference_route(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    *,
    image: bytes | None = None,
    dataset_image_id: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    checkpoint: str | None = None,
) -> tuple[InferenceOutcome, InferenceRoute]:
    """`run_inference` that also answers the route it resolved (for `RouteCache`)."""
    _check_options(conf, iou)
    route = resolve_inference(ctx, service, job_id, checkpoint)
    if (image is None) == (dataset_image_id is None):
        raise InvalidInputError("send an image file or a dataset_image_id (one of them)", detail={"field": "file"})
    if dataset_image_id is not None:
        image = _dataset_image_bytes(ctx, dataset_image_id)
    assert image is not None
    return predict_route(service, route, image, conf=conf, iou=iou), route


def _dataset_image_bytes(ctx: ToolContext, image_id: int) -> bytes:
    from tools.datasets import get_dataset_row

    row = ctx.db.get(DatasetImage, int(image_id))
    if row is None:
        raise NotFoundError(f"image {image_id} not found", detail={"dataset_image_id": image_id})
    ds = get_dataset_row(ctx, row.dataset_id)  # 404 when the caller cannot see the dataset
    try:
        return ctx.storage.external.get_bytes(dataset_image_key(ds.id, row.file_name))
    except ObjectNotFoundError:
        raise ConflictError(
            f"image {image_id} ({row.file_name}) is missing from storage", detail={"dataset_image_id": image_id}
        ) from None


# ---------------------------------------------------------------------------------- exports


def export_key(job_id: int, export_id: int, fmt: str = "onnx") -> str:
    """``results/exports/<job>/<export>.onnx`` (``.torchscript``, ``_openvino_model.zip``)."""
    return f"results/exports/{job_id}/{export_id}{FORMAT_SUFFIX.get(fmt, '.' + fmt)}"


def export_dict(row: ModelExport) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_id": row.job_id,
        "format": row.format,
        "checkpoint": row.checkpoint,
        "status": row.status,
        "size": row.size,
        "sha256": row.sha256,
        "key": row.key,
        "report": dict(row.report or {}),
        "parity": (row.report or {}).get("parity"),
        "error": row.error,
        "created_at": iso_utc(row.created_at),
        "finished_at": iso_utc(row.finished_at),
        "download_url": f"/api/v1/jobs/{row.job_id}/exports/{row.id}/download" if row.status == "completed" else None,
    }


def create_export(
    ctx: ToolContext,
    service: InferenceService,
    job_id: Any,
    fmt: str = "onnx",
    checkpoint: str | None = None,
    sample: bytes | None = None,
) -> dict[str, Any]:
    """Export the job's checkpoint (runs now, in the worker) and store it; an identical completed
    export of the same checkpoint file is returned instead of being made again."""
    fmt = (fmt or "onnx").strip().lower()
    supported = list(EXPORT_FORMATS)
    reason = unsupported_reason(fmt)
    if reason:
        raise InvalidInputError(reason, detail={"field": "format", "supported": supported})
    user = require_user(ctx)
    job, ckpt, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    reason = unsupported_reason(fmt, job.framework)
    if reason:
        raise InvalidInputError(reason, detail={"field": "format", "supported": supported})
    tag = ckpt.sha256 or str(ckpt.size)
    if sample is None:
        existing = ctx.db.scalars(
            select(ModelExport)
            .where(
                ModelExport.job_id == job.id,
                ModelExport.format == fmt,
                ModelExport.checkpoint == ckpt_name,
                ModelExport.checkpoint_sha256 == tag,
                ModelExport.status == "completed",
            )
            .order_by(ModelExport.id.desc())
        ).first()
        if existing is not None and existing.key and ctx.storage.internal.exists(existing.key):
            return export_dict(existing)
    path = service.checkpoint_path(job, ckpt)
    row = ModelExport(
        owner_id=user.id, job_id=job.id, format=fmt, checkpoint=ckpt_name, checkpoint_sha256=tag, status="running"
    )
    ctx.db.add(row)
    ctx.db.commit()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"export-{row.id}-", dir=_mkdir(service.config.cache_dir / "tmp")))
    try:
        dest = tmp_dir / f"model{FORMAT_SUFFIX[fmt]}"
        try:
            report = service.export(job.framework, model_key(job, ckpt), path, dest, sample, fmt)
        except WorkerError as exc:
            row.status = "failed"
            row.error = exc.message
            row.report = dict(exc.reply.get("report") or {})
            row.finished_at = utcnow()
            ctx.db.commit()
            return export_dict(row)
        key = export_key(job.id, row.id, fmt)
        info = ctx.storage.internal.put_file(key, dest, content_type=FORMAT_CONTENT_TYPE[fmt])
        report.pop("path", None)
        row.key, row.size, row.sha256 = key, info.size, info.sha256 or report.get("sha256")
        row.report = report
        row.status = "completed"
        row.finished_at = utcnow()
        ctx.db.commit()
    except BaseException:
        if row.status == "running":
            row.status = "failed"
            row.error = row.error or "export interrupted"
            row.finished_at = utcnow()
            with contextlib.suppress(Exception):
                ctx.db.commit()
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return export_dict(row)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _export_row(ctx: ToolContext, job_id: Any, export_id: Any) -> ModelExport:
    job = _visible_job(ctx, job_id)
    try:
        eid = int(export_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"export {export_id} not found") from None
    row = ctx.db.get(ModelExport, eid)
    if row is None or row.job_id != job.id:
        raise NotFoundError(f"export {export_id} of job {job.id} not found", detail={"export_id": export_id})
    return row


def get_export(ctx: ToolContext, job_id: Any, export_id: Any) -> dict[str, Any]:
    return export_dict(_export_row(ctx, job_id, export_id))


def list_exports(ctx: ToolContext, job_id: Any) -> list[dict[str, Any]]:
    job = _visible_job(ctx, job_id)
    rows = ctx.db.scalars(select(ModelExport).where(ModelExport.job_id == job.id).order_by(ModelExport.id))
    return [export_dict(r) for r in rows]


@dataclass(frozen=True)
class ResultFile:
    """A file in the internal store to stream back."""

    key: str
    content_type: str
    size: int | None
    filename: str


def export_file(ctx: ToolContext, job_id: Any, export_id: Any) -> ResultFile:
    row = _export_row(ctx, job_id, export_id)
    if row.status != "completed" or not row.key:
        raise ConflictError(f"export {row.id} is {row.status}: nothing to download", detail={"status": row.status})
    if not ctx.storage.internal.exists(row.key):
        raise ConflictError(f"export file {row.key} is missing from storage", detail={"key": row.key})
    content_type = FORMAT_CONTENT_TYPE.get(row.format, "application/octet-stream")
    filename = f"job-{row.job_id}-{row.checkpoint}{FORMAT_SUFFIX.get(row.format, '.' + row.format)}"
    return ResultFile(row.key, content_type, row.size, filename)


# -------------------------------------------------------------------------------- test runs


def test_run_prefix(run_id: int) -> str:
    return f"results/test-runs/{run_id}/"


def job_cache_dir(cache_dir: Path, job_id: int) -> Path:
    """Where `InferenceService.checkpoint_path` keeps local copies of a job's checkpoints."""
    return Path(cache_dir) / "checkpoints" / f"job-{int(job_id)}"


def register_deleted_job_cleanup(engine: Any, session_factory: sessionmaker[Session], cache_dir: Path) -> None:
    """Remove the inference cache's copies of a job's checkpoints once the job is deleted (by any
    caller: REST, agent, Slack; `tools.jobs.add_job_listener`, which also reports resumed jobs:
    those still exist and keep their cache). Done by the app at start, whether or not an
    InferenceService was made, since the cache outlives a restart."""

    def cleanup(job_id: int) -> None:
        with session_factory() as db:
            if db.get(Job, int(job_id)) is not None:
                return
        folder = job_cache_dir(cache_dir, job_id)
        if not folder.exists():
            return
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            log.warning("could not remove the inference cache %s of deleted job %s: %s", folder, job_id, exc)

    add_job_listener(engine, cleanup)


def test_run_dict(row: TestRun, *, with_events: bool = False) -> dict[str, Any]:
    total = row.total or 0
    out = {
        "id": row.id,
        "job_id": row.job_id,
        "source": row.source,
        "dataset_id": row.dataset_id,
        "snapshot_id": row.snapshot_id,
        "checkpoint": row.checkpoint,
        "options": dict(row.options or {}),
        "status": row.status,
        "progress": {
            "processed": row.processed,
            "total": total,
            "failed_images": row.failed_images,
            "fraction": (row.processed / total) if total else 0.0,
        },
        "labeled": row.labeled,
        "metrics": dict(row.metrics or {}),
        "error": row.error,
        "created_at": iso_utc(row.created_at),
        "started_at": iso_utc(row.started_at),
        "finished_at": iso_utc(row.finished_at),
        "channel": -row.id,
        "report_url": f"/api/v1/test-runs/{row.id}/report" if row.report_key else None,
        "predictions_url": f"/api/v1/test-runs/{row.id}/predictions" if row.predictions_key else None,
    }
    if with_events:
        out["events"] = list(row.events or [])
    return out


@dataclass
class TestSource:
    """Where a test run's images come from."""

    __test__ = False

    kind: str  # dataset | snapshot | upload
    dataset_id: str | None = None
    snapshot_id: str | None = None
    upload_dir: Path | None = None


def create_test_run(
    ctx: ToolContext,
    job_id: Any,
    *,
    dataset_id: str | None = None,
    snapshot_id: str | None = None,
    upload_dir: Path | None = None,
    checkpoint: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
) -> dict[str, Any]:
    """Record a test run (status queued); the caller starts it with `service.submit_test_run`."""
    from tools.datasets import get_dataset_row

    user = require_user(ctx)
    _, _, ckpt_name = job_checkpoint(ctx, job_id, checkpoint)
    given = [x is not None for x in (dataset_id, snapshot_id, upload_dir)]
    if upload_dir is None and not any(given):
        raise InvalidInputError("name a dataset_id or a snapshot_id to test on", detail={"field": "dataset_id"})
    for name, value in (("conf", conf), ("iou", iou)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{name} must be between 0 and 1", detail={"field": name})
    source = "upload"
    total = 0
    labeled = False
    if upload_dir is None:
        if snapshot_id is not None:
            snap = ctx.db.get(DatasetSnapshot, str(snapshot_id))
            if snap is None or (dataset_id is not None and snap.dataset_id != dataset_id):
                raise NotFoundError(f"snapshot {snapshot_id} not found", detail={"snapshot_id": snapshot_id})
            ds = get_dataset_row(ctx, snap.dataset_id)
            if snap.status != "ok":
                raise ConflictError(
                    f"snapshot {snap.id} is {snap.status}: images it references were deleted",
                    detail={"missing_files": list(snap.missing_files or [])[:20]},
                )
            source, dataset_id, total, labeled = "snapshot", ds.id, snap.num_images, True
        else:
            ds = get_dataset_row(ctx, str(dataset_id))
            source, dataset_id, labeled = "dataset", ds.id, bool(ds.labeled)
            total = ds.num_images
        if total == 0:
            raise ConflictError(f"dataset {ds.name!r} has no images to test on", detail={"dataset_id": ds.id})
    row = TestRun(
        owner_id=user.id,
        job_id=int(job_id),
        source=source,
        dataset_id=dataset_id,
        snapshot_id=snapshot_id,
        checkpoint=ckpt_name,
        options={
            "conf": conf,
            "iou": iou,
            **({"upload_dir": str(upload_dir)} if upload_dir else {}),
        },
        status="queued",
        total=total,
        labeled=labeled,
    )
    ctx.db.add(row)
    ctx.db.commit()
    return test_run_dict(row)


def owned_test_run(db: Session, user_id: int, run_id: Any) -> TestRun:
    """The test run if `user_id` owns it; NotFoundError for unknown and other users' runs alike."""
    try:
        rid = int(run_id)
    except (TypeError, ValueError):
        raise NotFoundError(f"test run {run_id} not found") from None
    row = db.get(TestRun, rid, populate_existing=True)
    if row is None or row.owner_id != user_id:
        raise NotFoundError(f"test run {run_id} not found", detail={"test_run_id": run_id})
    return row


def _run_row(ctx: ToolContext, run_id: Any) -> TestRun:
    return owned_test_run(ctx.db, require_user(ctx).id, run_id)


def test_run_event_page(db: Session, run_id: int, after: int, limit: int) -> tuple[list[dict[str, Any]], str, int]:
    """(stored events with seq > `after`, at most `limit`; the run's status; its last seq), read
    from one row so the three agree: the page reader of the live streams (`web.routes.job_events`).
    A deleted run reads as status "deleted"."""
    row = db.get(TestRun, int(run_id), populate_existing=True)
    if row is None:
        return [], "deleted", 0
    events = [e for e in (row.events or []) if int(e.get("seq") or 0) > after][: max(1, limit)]
    return events, row.status, int(row.last_seq or 0)


def get_test_run(ctx: ToolContext, run_id: Any) -> dict[str, Any]:
    return test_run_dict(_run_row(ctx, run_id))


def list_test_runs(ctx: ToolContext, job_id: int | None = None) -> list[dict[str, Any]]:
    user = require_user(ctx)
    q = select(TestRun).where(TestRun.owner_id == user.id)
    if job_id is not None:
        q = q.where(TestRun.job_id == int(job_id))
    return [test_run_dict(r) for r in ctx.db.scalars(q.order_by(TestRun.id.desc()).limit(200))]


def test_run_events(ctx: ToolContext, run_id: Any, after: int = 0) -> list[dict[str, Any]]:
    row = _run_row(ctx, run_id)
    return [e for e in (row.events or []) if int(e.get("seq") or 0) > after]


def test_run_file(ctx: ToolContext, run_id: Any, which: str = "report") -> ResultFile:
    row = _run_row(ctx, run_id)
    key = row.report_key if which == "report" else row.predictions_key
    if not key:
        raise ConflictError(
            f"test run {row.id} is {row.status}: its {which} is not ready", detail={"status": row.status}
        )
    info = ctx.storage.internal.stat(key)
    if which == "report":
        return ResultFile(key, "application/json", info.size, f"test-run-{row.id}-report.json")
    return ResultFile(key, "application/x-ndjson", info.size, f"test-run-{row.id}-predictions.jsonl")


# ----------------------------------------------------------------------- test run execution


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _emit(service: InferenceService, db: Session, row: TestRun, type_: str, data: dict[str, Any]) -> None:
    row.last_seq = (row.last_seq or 0) + 1
    event = {
        "job_id": row.job_id,
        "test_run_id": row.id,
        "seq": row.last_seq,
        "ts": _now_iso(),
        "type": type_,
        "data": data,
    }
    events = list(row.events or [])
    events.append(event)
    batch_idx = [i for i, e in enumerate(events) if e["type"] == "batch"]
    if len(batch_idx) > MAX_STORED_BATCH_EVENTS:
        drop = set(batch_idx[: len(batch_idx) - MAX_STORED_BATCH_EVENTS])
        events = [e for i, e in enumerate(events) if i not in drop]
    row.events = events
    db.commit()
    if service.publish is not None:
        try:
            service.publish(-row.id, event)
        except Exception:  # the store is the truth; a lost live event is read from there
            log.exception("publishing test-run event failed")


@dataclass
class _Item:
    name: str
    ann_image: dict[str, Any] | None
    fetch: Callable[[], bytes]


def _test_items(service: InferenceService, db: Session, row: TestRun) -> tuple[list[_Item], dict[str, Any] | None]:
    """(images to run, the DICE document or None when unlabeled)."""
    storage = service.storage
    doc: dict[str, Any] | None = None
    items: list[_Item] = []
    if row.source == "upload":
        root = Path(str((row.options or {}).get("upload_dir")))
        ann = root / "annotations.json"
        if ann.is_file():
            doc = json.loads(ann.read_text(encoding="utf-8"))
        names = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*") if p.is_file())

        def local(n: str) -> Callable[[], bytes]:
            return lambda: (root / "images" / n).read_bytes()

        fetchers = {n: local(n) for n in names}
    else:
        assert row.dataset_id is not None
        ds_id = row.dataset_id
        if row.source == "snapshot" and row.snapshot_id:
            doc = json.loads(storage.external.get_bytes(snapshot_annotations_key(ds_id, row.snapshot_id)))
            names = [str(img["file_name"]) for img in doc.get("images") or []]
        else:
            ds = db.get(Dataset, ds_id)
            if ds is not None and ds.labeled:
                doc = json.loads(storage.external.get_bytes(dataset_annotations_key(ds_id)))
            names = list(
                db.scalars(
                    select(DatasetImage.file_name).where(DatasetImage.dataset_id == ds_id).order_by(DatasetImage.id)
                )
            )

        def remote(n: str) -> Callable[[], bytes]:
            return lambda: storage.external.get_bytes(dataset_image_key(ds_id, n))

        fetchers = {n: remote(n) for n in names}
    by_name = {str(img["file_name"]): img for img in (doc or {}).get("images") or []}
    for n, fetch in fetchers.items():
        items.append(_Item(n, by_name.get(n), fetch))
    return items, doc


def _prefetch(
    items: Sequence[_Item], batch: int, *, local: bool = False
) -> Iterator[list[tuple[_Item, bytes | Exception]]]:
    """Batches of (item, bytes or the error); the next batch is fetched while one is predicted.

    From an object store each image is its own task (4 at a time: the wait is the network's); from
    local files a whole batch is one task, read in order: a thread-pool task per small file costs
    ~0.1 ms of CPU, seven times the read itself, and that CPU is taken from the forward."""

    def fetch(it: _Item) -> bytes | Exception:
        try:
            return it.fetch()
        except Exception as exc:
            return exc

    def fetch_all(chunk: list[_Item]) -> list[bytes | Exception]:
        return [fetch(it) for it in chunk]

    chunks = [list(items[i : i + batch]) for i in range(0, len(items), batch)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1 if local else 4, thread_name_prefix="test-run-fetch") as pool:

        def submit(chunk: list[_Item]) -> Callable[[], list[bytes | Exception]]:
            if local:
                whole = pool.submit(fetch_all, chunk)
                return whole.result
            futures = [pool.submit(fetch, it) for it in chunk]
            return lambda: [f.result() for f in futures]

        upcoming = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            current = upcoming
            if k + 1 < len(chunks):
                upcoming = submit(chunks[k + 1])
            yield list(zip(chunk, current(), strict=True))


def execute_test_run(service: InferenceService, run_id: int) -> None:
    """Run a queued test run to its end (a background thread; never raises)."""
    assert service.session_factory is not None
    with service.session_factory() as db:
        row = db.get(TestRun, run_id)
        if row is None or row.status != "queued":
            return
        try:
            _execute(service, db, row)
        except Exception as exc:
            db.rollback()
            row = db.get(TestRun, run_id)
            if row is None:
                return
            message = exc.message if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, WorkerError):
                message = f"inference failed: {exc.message}"
            log.exception("test run %s failed", run_id)
            row.status = "failed"
            row.error = message
            row.finished_at = utcnow()
            db.commit()
            _emit(service, db, row, "error", {"message": message})
            _emit(service, db, row, "status", {"status": "failed", "message": message})
        finally:
            if row is not None and row.source == "upload":
                up = (row.options or {}).get("upload_dir")
                if up:
                    shutil.rmtree(str(up), ignore_errors=True)


def _execute(service: InferenceService, db: Session, row: TestRun) -> None:
    from trainer_runtime.inference.evaluate import (
        DETECTION_TASKS,
        DetectionEvaluator,
        classification_metrics,
        finite,
        image_label,
    )

    job = db.get(Job, row.job_id)
    ckpt = db.scalars(
        select(JobCheckpoint).where(JobCheckpoint.job_id == row.job_id, JobCheckpoint.name == f"{row.checkpoint}.pt")
    ).first()
    if job is None or ckpt is None:
        raise ConflictError(f"job {row.job_id} or its {row.checkpoint} checkpoint is gone")
    row.status = "running"
    row.started_at = utcnow()
    db.commit()
    _emit(service, db, row, "status", {"status": "running"})
    path = service.checkpoint_path(job, ckpt)
    items, doc = _test_items(service, db, row)
    row.total = len(items)
    row.labeled = doc is not None
    db.commit()
    opts = dict(row.options or {})
    task = job.task_type
    detection = task in DETECTION_TASKS
    conf = opts.get("conf")
    if conf is None:
        conf = 0.001 if detection else 0.25  # mAP wants the whole ranking (as Ultralytics' val)
    iou = opts.get("iou")
    cat_names: dict[int, str] = {}
    anns_by_image: dict[int, list[dict[str, Any]]] = {}
    if doc is not None:
        cat_names = {int(c["id"]): str(c["name"]) for c in doc.get("categories") or []}
        for a in doc.get("annotations") or []:
            anns_by_image.setdefault(int(a["image_id"]), []).append(a)
    key = model_key(job, ckpt)
    work = _mkdir(service.config.cache_dir / "tmp" / f"test-run-{row.id}")
    lines_path = work / "predictions.jsonl"
    cls_records: list[tuple[str | None, list[str]]] = []
    # detection metrics are computed image by image in this loop while the worker predicts the next
    # batches (the evaluator needs the model's class names, which come with the first reply)
    det_eval: DetectionEvaluator | None = None
    class_names: list[str] = []
    model_info: dict[str, Any] = {}
    processed = failed = 0
    times: list[float] = []
    started = time.monotonic()
    last_event = 0.0
    batch = max(1, service.config.test_run_batch)
    try:

        def run_chunk(
            chunk: list[tuple[_Item, bytes | Exception]],
        ) -> tuple[list[tuple[_Item, dict[str, Any] | None, str | None]], dict[str, Any] | None]:
            """(item, result or None, error or None) per image, and the model info of the reply."""
            out_rows: list[tuple[_Item, dict[str, Any] | None, str | None]] = [
                (it, None, f"cannot read the image: {b}") for it, b in chunk if not isinstance(b, bytes)
            ]
            good = [(it, b) for it, b in chunk if isinstance(b, bytes)]
            info: dict[str, Any] | None = None
            if not good:
                return out_rows, info
            try:
                res, reply = service.predict(job.framework, key, path, [b for _, b in good], conf=conf, iou=iou)
                return out_rows + [(it, r, None) for (it, _), r in zip(good, res, strict=True)], reply.get("model")
            except WorkerError as exc:
                if exc.code != "invalid_image":
                    raise
            for it, b in good:  # a bad image in the batch: run them one by one
                try:
                    r1, reply = service.predict(job.framework, key, path, [b], conf=conf, iou=iou)
                    out_rows.append((it, r1[0], None))
                    info = reply.get("model") or info
                except WorkerError as exc1:
                    if exc1.code != "invalid_image":
                        raise
                    out_rows.append((it, None, exc1.message))
            return out_rows, info

        # Two batches in flight: the worker computes one while this thread stores the other.
        with (
            open(lines_path, "w", encoding="utf-8") as out,
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-run-predict") as predict_pool,
        ):
            in_flight: collections.deque[Future[Any]] = collections.deque()
            local = row.source == "upload" or getattr(service.storage.external, "kind", "") == "local"
            chunk_iter = iter(_prefetch(items, batch, local=local))
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < 2:
                    nxt = next(chunk_iter, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        in_flight.append(predict_pool.submit(run_chunk, nxt))
                if not in_flight:
                    break
                rows_out, info = in_flight.popleft().result()
                if info:
                    model_info = dict(info)
                    class_names = list(model_info.get("class_names") or class_names)
                if det_eval is None and detection and doc is not None and class_names:
                    det_eval = DetectionEvaluator(class_names, cat_names, task)
                for it, res1, err in rows_out:
                    line: dict[str, Any] = {"file_name": it.name}
                    if res1 is None:
                        failed += 1
                        line["error"] = err
                        out.write(json.dumps(line, ensure_ascii=False) + "\n")
                        continue
                    processed += 1
                    times.append(float(res1.get("inference_time_ms") or 0.0))
                    anns = anns_by_image.get(int(it.ann_image["id"]), []) if it.ann_image else []
                    line["result"] = res1
                    if it.ann_image is not None:
                        line["image_id"] = it.ann_image.get("id")
                        if task == "image_classification":
                            truth = image_label(anns, cat_names)
                            line["ground_truth"] = truth
                            cls_records.append((truth, [p["label"] for p in res1.get("predictions") or []]))
                        else:
                            line["ground_truth"] = len(anns)
                            if det_eval is not None:
                                det_eval.add(res1, anns, res1.get("image") or {})
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                row.processed, row.failed_images = processed, failed
                now = time.monotonic()
                done = processed + failed
                if now - last_event >= 0.5 or done >= len(items):
                    last_event = now
                    elapsed = now - started
                    rate = done / elapsed if elapsed > 0 else 0.0
                    _emit(
                        service,
                        db,
                        row,
                        "batch",
                        {
                            "processed": processed,
                            "failed": failed,
                            "total": len(items),
                            "images_per_s": round(rate, 2),
                            "eta_s": round((len(items) - done) / rate, 1) if rate else None,
                        },
                    )

        metrics: dict[str, Any] = {
            "images": len(items),
            "processed": processed,
            "failed_images": failed,
            "elapsed_s": round(time.monotonic() - started, 3),
            "images_per_s": round(processed / max(time.monotonic() - started, 1e-9), 2),
            "mean_inference_time_ms": round(sum(times) / len(times), 3) if times else None,
        }
        if doc is not None and class_names:
            if task == "image_classification":
                metrics.update(classification_metrics(cls_records, class_names))
            elif det_eval is not None:
                metrics.update(det_eval.result())
        metrics = finite(metrics)
        prefix = test_run_prefix(row.id)
        pred_info = service.storage.internal.put_file(
            prefix + "predictions.jsonl", lines_path, content_type="application/x-ndjson"
        )
        report = {
            "test_run_id": row.id,
            "job_id": row.job_id,
            "framework": job.framework,
            "task_type": task,
            "model": model_info,
            "checkpoint": row.checkpoint,
            "source": {"kind": row.source, "dataset_id": row.dataset_id, "snapshot_id": row.snapshot_id},
            "options": {"conf": conf, "iou": iou},
            "labeled": doc is not None,
            "metrics": metrics,
            "predictions_key": pred_info.key,
            "finished_at": _now_iso(),
        }
        service.storage.internal.put_bytes(
            prefix + "report.json",
            json.dumps(report, ensure_ascii=False, indent=2).encode(),
            content_type="application/json",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row.metrics = metrics
    row.predictions_key = prefix + "predictions.jsonl"
    row.report_key = prefix + "report.json"
    row.status = "completed"
    row.finished_at = utcnow()
    db.commit()
    # "done" before the terminal status, as a training job's: live streams end at the status event
    _emit(service, db, row, "done", {"status": "completed", "metrics": _headline(metrics)})
    _emit(service, db, row, "status", {"status": "completed"})


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "accuracy_top1",
        "accuracy_top5",
        "box_mAP50",
        "box_mAP50-95",
        "mask_mAP50",
        "mask_mAP50-95",
        "processed",
        "failed_images",
        "images_per_s",
    )
    return {k: metrics[k] for k in keys if k in metrics}


def stage_test_upload(ctx: ToolContext, service: InferenceService, zip_path: Path, archive_name: str) -> Path:
    """Extract an uploaded zip (DICE: images/ + optional annotations.json, or plain images) into a
    private folder ``<dir>/images/<name>`` (+ ``annotations.json``), with the upload limits."""
    from tools.uploads import collect_tree, dice_layout, extract_zip
    from trainer_runtime.formats.validate import load_annotations

    root = Path(tempfile.mkdtemp(prefix="upload-", dir=_mkdir(service.config.cache_dir / "test-uploads")))
    try:
        raw = root / "raw"
        raw.mkdir()
        extract_zip(zip_path, raw, ctx.limits, archive_name=archive_name)
        layout = dice_layout(collect_tree(raw))
        if not layout.images:
            raise InvalidInputError(f"{archive_name} holds no images", detail={"file": archive_name})
        final = root / "data"
        (final / "images").mkdir(parents=True)
        for name, src in layout.images.items():
            dest = final / "images" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
        if layout.annotations is not None:
            from trainer_runtime.errors import DatasetFormatError

            try:
                load_annotations(layout.annotations, limits=ctx.limits.formats)
            except DatasetFormatError as exc:
                from tools.uploads import invalid_from

                raise invalid_from(exc) from exc
            os.replace(layout.annotations, final / "annotations.json")
        shutil.rmtree(raw, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


__all__ = [
    "InferenceConfig",
    "InferenceFailedError",
    "InferenceOutcome",
    "InferenceRoute",
    "InferenceService",
    "InferenceUnavailableError",
    "ResultFile",
    "RouteCache",
    "WorkerClient",
    "check_image_bytes",
    "create_export",
    "create_test_run",
    "execute_test_run",
    "export_file",
    "get_export",
    "get_test_run",
    "job_checkpoint",
    "list_exports",
    "list_test_runs",
    "model_key",
    "predict_route",
    "predict_route_async",
    "register_deleted_job_cleanup",
    "resolve_inference",
    "run_inference",
    "run_inference_route",
    "stage_test_upload",
    "test_run_events",
    "test_run_file",
]
