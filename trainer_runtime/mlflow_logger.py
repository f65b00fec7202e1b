"""MLflow logging for one job: one run per job, in a separate low-priority process.

* The trainer never imports mlflow. `MlflowLogger.launch()` (the very beginning of a run) starts
  ``python -m trainer_runtime.mlflow_logger`` in its own session (a SIGINT to the trainer's
  process group does not reach it). The child lowers its priority first (``nice 19`` and, on
  Linux, ``SCHED_IDLE`` when permitted) so that it only uses CPU the training leaves idle, then
  imports mlflow (over a second of CPU) and opens the store while the trainer fetches the dataset.
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
* Tracking URI: ``spec.mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite store
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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer_runtime.spec import JobSpec

logger = logging.getLogger("trainer_runtime.mlflow")

RUN_ID_FILE = "mlflow_run_id"
LOCK_FILE = ".mlflow_logger.lock"
CHILD_LOG = "mlflow_logger.log"
TERMINAL = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
QUEUE_SIZE = 100_000  # records waiting for the pipe; one per epoch and a few at the end
PIPE_SIZE = 1 << 20  # asked for on Linux (F_SETPIPE_SZ); the default is 64 KiB
PRIORITY_ENV = "VTA_MLFLOW_LOGGER_PRIORITY"  # idle (default) | low | normal: see `_lower_priority`
LOCK_WAIT_S = 120.0  # how long a child waits for the previous attempt's child of the same job
_INVALID = re.compile(r"[^\w\-. /:]")
_MAX_PARAM = 500
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


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


def _write_run_id(output_dir: Path, run_id: str) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{RUN_ID_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(run_id, encoding="utf-8")
    os.replace(tmp, output_dir / RUN_ID_FILE)


def _read_run_id(output_dir: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (output_dir / RUN_ID_FILE).read_text(encoding="utf-8").strip() or None
    return None


# ================================================================================================
# trainer side


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
        self.tracking_uri = spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
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
                [sys.executable, "-m", "trainer_runtime.mlflow_logger"],
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
        previous = _read_run_id(self.output_dir) if resume else None
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
        for raw in _lines(proc.stdout.fileno()):
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
                        _write_run_id(self.output_dir, run_id)
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


# ================================================================================================
# logger process side


def _lower_priority(mode: str | None = None) -> None:
    """Only use the CPU the trainer leaves idle; silently keep what is not permitted.
    `mode` (default ``$VTA_MLFLOW_LOGGER_PRIORITY``): ``idle`` (nice 19 + SCHED_IDLE, the default),
    ``low`` (nice 19 only) or ``normal``."""
    mode = (mode or os.environ.get(PRIORITY_ENV) or "idle").strip().lower()
    if mode == "normal":
        return
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)
    if mode != "low" and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _report(record: dict[str, Any]) -> None:
    """A JSON line to the trainer; it may be gone already (then nobody needs it)."""
    with contextlib.suppress(OSError):
        os.write(1, json.dumps(record).encode() + b"\n")


class _EOF:
    pass


class _Worker:
    """Consumes the trainer's records: one MLflow run."""

    def __init__(self, records: queue.Queue[dict[str, Any] | type[_EOF]]) -> None:
        self.records = records
        self.client: Any = None
        self.tracking_uri = ""
        self.exp_id = ""
        self.run_id: str | None = None
        self.cfg: dict[str, Any] = {}
        self._lock_fh: IO[str] | None = None

    def next(self) -> dict[str, Any] | None:
        item = self.records.get()
        return None if item is _EOF else item  # type: ignore[return-value]

    def serve(self) -> int:
        first = self.next()
        if first is None or first.get("type") != "open":
            return 0
        self.cfg = first
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            _report({"type": "unavailable", "error": str(exc)})
            return 0
        try:
            self._open(MlflowClient)
        except Exception as exc:
            _report({"type": "error", "error": f"{type(exc).__name__}: {exc}"})
            logger.warning("MLflow: cannot open the store: %s: %s", type(exc).__name__, exc)
            return 1
        while True:
            rec = self.next()
            if rec is None:  # the trainer died without ending the run
                if self.run_id is not None:
                    self._end("KILLED", reason="the trainer exited without ending the run")
                return 0
            kind = rec.get("type")
            try:
                if kind == "start":
                    self._start(rec)
                elif self.run_id is None:
                    if kind == "end":
                        return 0
                elif kind == "metrics":
                    self._log_metrics(int(rec["epoch"]), rec.get("metrics") or {})
                elif kind == "dict":
                    self._log_dict(str(rec["name"]), rec.get("data"))
                elif kind == "end":
                    self._end(str(rec.get("status") or "FAILED"))
                    return 0
            except Exception as exc:  # keep going: the later records may still land
                logger.warning("MLflow %s failed: %s: %s", kind, type(exc).__name__, exc)
                if kind == "start":
                    _report({"type": "error", "error": f"{type(exc).__name__}: {exc}"})
                    return 1

    # steps ------------------------------------------------------------------------------------
    def _open(self, client_cls: Any) -> None:
        cfg = self.cfg
        work_dir = Path(cfg["work_dir"])
        uri = cfg.get("tracking_uri") or None
        artifact_location = None
        if uri is None:
            uri = default_tracking_uri(work_dir)
            art = (work_dir / "mlflow" / "artifacts").resolve()
            art.mkdir(parents=True, exist_ok=True)
            artifact_location = art.as_uri()
        elif uri.startswith("sqlite:///"):
            # a local store without an artifact root would put artifacts in ./mlruns of the CWD
            art = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve()
            art.mkdir(parents=True, exist_ok=True)
            artifact_location = art.as_uri()
        self.tracking_uri = uri
        lock = Path(uri.removeprefix("sqlite:///") + ".init.lock") if uri.startswith("sqlite:///") else None
        with _flock(lock, LOCK_WAIT_S):  # two jobs' first use of a new SQLite store would race
            for attempt in range(3):
                try:
                    self._open_experiment(client_cls, uri, artifact_location)
                    return
                except Exception as exc:  # e.g. "table ... already exists": another process created it
                    if attempt == 2:
                        raise
                    logger.info("MLflow: opening the store failed (%s: %s); retrying", type(exc).__name__, exc)
                    time.sleep(1.0 + attempt)

    def _open_experiment(self, client_cls: Any, uri: str, artifact_location: str | None) -> None:
        client = client_cls(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates/upgrades the store now, under the lock
        name = self.cfg["experiment_name"]
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
        self.client = client
        self.exp_id = exp_id

    def _take_turn(self) -> None:
        """Wait (up to LOCK_WAIT_S) for an earlier attempt's logger of the same job to finish; the
        lock is held until this process exits."""
        job_dir = Path(self.cfg.get("job_dir") or self.cfg["output_dir"])
        self._lock_fh = _acquire(job_dir / LOCK_FILE, LOCK_WAIT_S)

    def _start(self, rec: dict[str, Any]) -> None:
        client = self.client
        cfg = self.cfg
        output_dir = Path(cfg["output_dir"])
        self._take_turn()
        run = self._previous_run(rec.get("run_id")) if rec.get("resume") else None
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
            tags = {**(cfg.get("tags") or {}), "attempts": "1"}
            created = client.create_run(self.exp_id, tags=tags, run_name=f"job-{cfg['job_id']}")
            run_id = created.info.run_id
            old_params = {}
            logger.info(
                "MLflow run %s started in experiment %r (%s)", run_id, cfg["experiment_name"], self.tracking_uri
            )
        self.run_id = run_id
        with contextlib.suppress(OSError):
            _write_run_id(output_dir, run_id)
        _report({"type": "run", "run_id": run_id, "tracking_uri": self.tracking_uri})

        from mlflow.entities import Param

        params: dict[str, str] = {str(k): str(v) for k, v in (rec.get("params") or {}).items()}
        fresh = [Param(k, v) for k, v in params.items() if k not in old_params]
        changed = [k for k, v in params.items() if k in old_params and old_params[k] != v]
        if changed:
            logger.warning("MLflow params changed since the previous attempt, not re-logged: %s", changed)
        for i in range(0, len(fresh), 100):
            client.log_batch(run_id, params=fresh[i : i + 100])

    def _previous_run(self, run_id: str | None) -> Any:
        client = self.client
        output_dir = Path(self.cfg["output_dir"])
        # the file may have been written by the previous attempt's logger after the trainer read it
        for candidate in dict.fromkeys([run_id, _read_run_id(output_dir)]):
            if not candidate:
                continue
            try:
                return client.get_run(candidate)
            except Exception as exc:
                logger.info("MLflow run %s from %s not found (%s)", candidate, output_dir / RUN_ID_FILE, exc)
        runs = client.search_runs(
            [self.exp_id],
            filter_string=f"tags.job_id = '{self.cfg['job_id']}'",
            order_by=["start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _end(self, status: str, reason: str = "") -> None:
        run_id = self.run_id
        if status == "KILLED" and reason:
            if self.client.get_run(run_id).info.status != "RUNNING":
                return
            logger.warning("MLflow run %s marked KILLED: %s", run_id, reason)
        self.client.set_terminated(run_id, status)
        logger.info("MLflow run %s ended %s", run_id, status)

    def _log_metrics(self, epoch: int, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(mlflow_name(k), float(v), now, int(epoch))
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def _log_dict(self, name: str, data: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="vta-mlflow-") as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
            self.client.log_artifact(self.run_id, str(path))


def _acquire(path: Path, wait_s: float) -> IO[str] | None:
    """An exclusive flock on `path` (waits up to `wait_s`, then goes on without it); the open file
    holds it (None when it could not be taken)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")  # noqa: SIM115 - the caller holds it
    except OSError:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                logger.warning("MLflow: %s is still locked after %.0fs; going on", path, wait_s)
                fh.close()
                return None
            time.sleep(0.2)
        except OSError:
            fh.close()
            return None


@contextlib.contextmanager
def _flock(path: Path | None, wait_s: float) -> Iterator[None]:
    fh = _acquire(path, wait_s) if path is not None else None
    try:
        yield
    finally:
        if fh is not None:
            fh.close()


def _lines(fd: int) -> Iterator[bytes]:
    """The lines read from `fd` until EOF (or an error). Raw reads: a daemon thread blocked in a
    buffered file holds its lock, which can abort the interpreter's exit."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            return
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines


def _read_stdin(records: queue.Queue[dict[str, Any] | type[_EOF]]) -> None:
    """Everything the trainer writes, into memory at once (the trainer's pipe never fills)."""
    try:
        for raw in _lines(0):
            with contextlib.suppress(ValueError):
                rec = json.loads(raw)
                if isinstance(rec, dict):
                    records.put(rec)
    finally:
        records.put(_EOF)


def serve() -> int:
    """The logger process: ``python -m trainer_runtime.mlflow_logger`` (started by `MlflowLogger`)."""
    _lower_priority()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s[logger %(process)d]: %(message)s",
        )
    records: queue.Queue[dict[str, Any] | type[_EOF]] = queue.Queue()
    threading.Thread(target=_read_stdin, args=(records,), name="stdin", daemon=True).start()
    try:
        return _Worker(records).serve()
    except Exception:
        logger.exception("MLflow logger process failed")
        return 1


__all__ = [
    "MlflowLogger",
    "default_tracking_uri",
    "flatten",
    "mark_run_terminated",
    "mlflow_name",
    "serve",
]

if __name__ == "__main__":
    sys.exit(serve())
