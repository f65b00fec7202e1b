"""`InferenceService`: the app's worker pools (one per framework), the local checkpoint cache and
the thread pool of background test runs; one per app (``app.state.inference``).

Checkpoints are fetched from the internal store (the `JobCheckpoint` row's key) into
``<cache_dir>/checkpoints/job-<id>/<sha256|size>-<name>`` once; workers keep loaded models in their
LRU cache keyed by `model_key`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tools.datasets.locks import KeyedLocks
from tools.db.models import Job, JobCheckpoint
from tools.errors import ConflictError, InvalidInputError
from tools.inference.client import WorkerClient
from tools.inference.config import InferenceConfig, job_cache_dir
from tools.inference.routecache import RouteCache
from tools.inference.runner import execute_test_run
from tools.services import JobListeners
from trainer_runtime.errors import ObjectNotFoundError
from trainer_runtime.spec import FRAMEWORKS
from trainer_runtime.storage import DualStorageClient

log = logging.getLogger(__name__)


class InferenceService:
    """Worker pools, checkpoint cache and background test runs of one app."""

    def __init__(
        self,
        config: InferenceConfig,
        storage: DualStorageClient,
        session_factory: sessionmaker[Session] | None = None,
        publish: Callable[[int, dict[str, Any]], None] | None = None,
        listeners: JobListeners | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.session_factory = session_factory
        self.publish = publish
        self.pools: dict[str, list[WorkerClient]] = {
            fw: [WorkerClient(fw, config, i) for i in range(max(1, config.workers_per_framework))] for fw in FRAMEWORKS
        }
        self._dl_locks = KeyedLocks()  # one download per destination; a key goes when its last holder leaves
        self._executor: ThreadPoolExecutor | None = None
        self._exec_lock = threading.Lock()
        self._meta_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.routes = RouteCache(config.route_cache_ttl_s)
        # a job resumed or deleted by any caller (REST, agent, Slack) leaves the route cache at once
        self._listeners = listeners
        if listeners is not None:
            listeners.add(self.routes.invalidate_job)
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
        if self._listeners is not None:
            self._listeners.remove(self.routes.invalidate_job)
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
        with self._dl_locks.hold(str(dest)):
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


def register_deleted_job_cleanup(
    listeners: JobListeners, session_factory: sessionmaker[Session], cache_dir: Path
) -> None:
    """Remove the inference cache's copies of a job's checkpoints once the job is deleted (by any
    caller: REST, agent, Slack; the app's `tools.services.JobListeners`, which also hear of resumed jobs:
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

    listeners.add(cleanup)
