"""The trainer's end of the MLflow logger: `MlflowLogger` starts the logger process and hands it
records through a pipe, never importing mlflow itself.

See the package docstring for the protocol and docs/architecture.md (A request, step 6).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from trainer_runtime.mlflow_logger.common import CHILD_LOG, TERMINAL, flatten, read_lines, read_run_id, write_run_id

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec

logger = logging.getLogger("trainer_runtime.mlflow")


QUEUE_SIZE = 100_000  # records waiting for the pipe; one per epoch and a few at the end
PIPE_SIZE = 1 << 20  # asked for on Linux (F_SETPIPE_SZ); the default is 64 KiB
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
CHILD_MODULE = "trainer_runtime.mlflow_logger.child"


class MlflowLogger:
    """The trainer's end of the logger process. See the module doc. Every public method returns at
    once (`finish` waits only for the records to be written into the pipe)."""

    def __init__(
        self,
        spec: JobSpec,
        *,
        work_dir: Path,
        output_dir: Path,
        job_dir: Path | None = None,
        on_run: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.on_run = on_run
        self.work_dir = Path(work_dir)
        self.output_dir = Path(output_dir)
        self.job_dir = Path(job_dir) if job_dir is not None else self.output_dir.parent
        self.enabled = bool(spec.mlflow.enabled)
        self.tracking_uri: str | None = None
        self.run_id: str | None = None
        self.error: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._writer: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._dropped = threading.Event()  # the child is gone or gave up: records are not sent
        self._started = False
        self._finished = False
        self._full_warned = False
        self.run_id_known = threading.Event()

    # public -----------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start the logger process (import mlflow, open the store) in the background."""
        if not self.enabled:
            logger.info("MLflow logging is off for this job (spec.mlflow.enabled is false)")
            return
        spec = self.spec
        self.tracking_uri = spec.mlflow.tracking_uri
        env = dict(os.environ)
        paths = [_PACKAGE_ROOT, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        stderr: IO[bytes] | None = None
        try:
            if _is_pipe(2):  # a caller reading our stderr to EOF would wait for the child too
                self.job_dir.mkdir(parents=True, exist_ok=True)
                stderr = open(self.job_dir / CHILD_LOG, "ab")  # noqa: SIM115 - handed to the child
            self.process = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, "--priority", spec.mlflow.logger_priority],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("MLflow logging disabled for this job: cannot start the logger process: %s", self.error)
            self._dropped.set()
            return
        finally:
            if stderr is not None:
                stderr.close()
        assert self.process.stdin is not None
        _grow_pipe(self.process.stdin.fileno())
        self._send(
            {
                "type": "open",
                "tracking_uri": self.tracking_uri,
                "work_dir": str(self.work_dir),
                "output_dir": str(self.output_dir),
                "job_dir": str(self.job_dir),
                "experiment_name": spec.mlflow.experiment_name,
                "job_id": spec.job_id,
                "tags": {
                    "job_id": str(spec.job_id),
                    "project_id": "" if spec.project_id is None else str(spec.project_id),
                    "framework": spec.framework,
                    "model": spec.model_name,
                    "task": spec.task_type,
                    "dataset_id": spec.dataset_id,
                    "snapshot_id": spec.snapshot_id or "",
                },
            }
        )
        self._writer = threading.Thread(target=self._write_loop, name="mlflow-writer", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="mlflow-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    def start(self, params: Mapping[str, Any], *, resume: bool = False) -> None:
        """Create the run (or, with `resume`, re-open the previous attempt's run)."""
        if self.process is None or self._started:
            return
        self._started = True
        previous = read_run_id(self.output_dir) if resume else None
        self._send({"type": "start", "params": flatten(params), "resume": resume, "run_id": previous})

    def log_epoch(self, epoch: int, metrics: Mapping[str, float | None]) -> None:
        if self._started:
            self._send({"type": "metrics", "epoch": int(epoch), "metrics": dict(metrics)})

    def log_dict(self, name: str, data: Any) -> None:
        if self._started:
            self._send({"type": "dict", "name": name, "data": data})

    def finish(self, job_status: str, timeout: float = 30.0) -> bool:
        """Hand the end record (the MLflow status of `job_status`) over to the logger process and
        return: the process ends the run on its own. Waits up to `timeout` seconds for the queued
        records to be written into the pipe. False when they could not all be handed over."""
        if self.process is None or self._finished:
            return self.error is None
        self._finished = True
        if self._started:
            self._send({"type": "end", "status": TERMINAL.get(job_status, "FAILED")}, block_s=timeout)
        self._put(None, block_s=timeout)  # closes the pipe
        assert self._writer is not None
        self._writer.join(timeout)
        if self._writer.is_alive():
            logger.warning(
                "MLflow: records not handed over to the logger process within %.0fs; the run may end KILLED", timeout
            )
            return False
        return self.error is None and not self._dropped.is_set()

    def wait_run_id(self, timeout: float) -> str | None:
        """Wait up to `timeout` seconds for the child to report the run id (`on_run` has been
        called when this returns it). Returns at once when no run was started or the child is gone."""
        deadline = time.monotonic() + max(0.0, timeout)
        while not self.run_id_known.is_set():
            if self.process is None or not self._started or self._dropped.is_set():
                break
            if self._reader is None or not self._reader.is_alive() or time.monotonic() >= deadline:
                break
            self.run_id_known.wait(0.05)
        return self.run_id

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the logger process to exit (tests, embedding); its exit code, None on timeout."""
        if self.process is None:
            return 0
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # internals ------------------------------------------------------------------------------------
    def _send(self, record: dict[str, Any], block_s: float = 0.0) -> None:
        if self._dropped.is_set():
            return
        try:
            line = json.dumps(record, default=str, allow_nan=True).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            logger.warning("MLflow %s record dropped: %s", record.get("type"), exc)
            return
        self._put(line, block_s)

    def _put(self, item: bytes | None, block_s: float = 0.0) -> None:
        try:
            self._queue.put(item, block=block_s > 0, timeout=block_s or None)
        except queue.Full:  # never block training over tracking
            if not self._full_warned:
                self._full_warned = True
                logger.warning("MLflow logger process is not keeping up; records are dropped")

    def _write_loop(self) -> None:
        proc = self.process
        assert proc is not None and proc.stdin is not None
        pipe = proc.stdin
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if self._dropped.is_set():
                    continue
                try:
                    pipe.write(item)
                    pipe.flush()
                except (BrokenPipeError, OSError, ValueError):
                    self._dropped.set()  # the reader says why (it sees the child's stdout close)
        finally:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()

    def _read_loop(self) -> None:
        proc = self.process
        assert proc is not None and proc.stdout is not None
        reported = False
        for raw in read_lines(proc.stdout.fileno()):
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "run":
                run_id = str(msg.get("run_id") or "")
                self.run_id = run_id or None
                self.tracking_uri = msg.get("tracking_uri") or self.tracking_uri
                if run_id:
                    with contextlib.suppress(OSError):
                        write_run_id(self.output_dir, run_id)
                    if self.on_run is not None:
                        try:
                            self.on_run(run_id)
                        except Exception as exc:  # reporting never breaks tracking
                            logger.warning("MLflow run %s: could not report its id: %s", run_id, exc)
                    self.run_id_known.set()
            elif kind == "unavailable":
                reported = True
                self.error = "mlflow is not installed"
                self._dropped.set()
                logger.info("mlflow is not importable; MLflow logging skipped (%s)", msg.get("error"))
            elif kind == "error":
                reported = True
                self.error = str(msg.get("error"))
                self._dropped.set()
                logger.warning("MLflow logging disabled for this job: %s", self.error)
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()
        if reported or self._finished:
            return
        code = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(5)
        self._dropped.set()
        self.error = f"the MLflow logger process exited (code {code})"
        logger.warning("MLflow logging dropped for this job: %s", self.error)


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe on Linux (default 64 KiB): more records wait in the kernel, not in our queue."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setsize, PIPE_SIZE)
