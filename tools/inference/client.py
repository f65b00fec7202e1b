"""One inference worker process and the requests in flight on it (`WorkerClient`).

Predictions run in ``python -m trainer_runtime.inference.worker`` (started with the framework's
interpreter, ``TRAINER_PYTHON_*``, else the server's own; the server never imports torch), spoken to
with the length-prefixed protocol of `trainer_runtime.inference.protocol`. Every request has a
timeout (``request_timeout_s``); a worker that dies, or hangs past the timeout and is killed, fails
its in-flight requests at once with `InferenceUnavailableError` (503) and is started again by the
next request: no request is left waiting on a dead process.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, NoReturn

from tools.errors import InferenceUnavailableError
from tools.executors.sandbox import trainer_env
from tools.inference.config import InferenceConfig
from trainer_runtime.inference.protocol import ProtocolError, WorkerError, read_frame, write_frame

log = logging.getLogger(__name__)


# `WorkerClient.request_async` writes a request of at most this many bytes from the event loop
ASYNC_INLINE_WRITE_BYTES = 256 * 1024


def worker_env(source: Mapping[str, str], root: str) -> dict[str, str]:
    """The environment of an inference worker: the allow-listed part of `source` (the server's
    own), the same list a trainer gets (`tools.executors.sandbox`: paths, locale, the frameworks'
    and thread settings, never a secret), because a worker unpickles checkpoints that training
    jobs wrote; with the repository `root` first on PYTHONPATH and the frameworks kept offline
    unless `source` says otherwise (YOLO_OFFLINE, YOLO_AUTOINSTALL, HF_HUB_OFFLINE)."""
    env = trainer_env(source)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("YOLO_AUTOINSTALL", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


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
            root = str(Path(__file__).resolve().parents[2])
            try:
                proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=worker_env(os.environ, root),
                    cwd=root,
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
