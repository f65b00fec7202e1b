"""The MLflow logger process: ``python -m trainer_runtime.mlflow_logger.child [--priority MODE]``,
started by `MlflowLogger`. It lowers its priority, imports mlflow and writes one run per job from
the trainer's JSON-line records.

See the package docstring for the protocol and docs/architecture.md (A request, step 6).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from trainer_runtime.mlflow_logger.common import (
    LOCK_FILE,
    RUN_ID_FILE,
    default_tracking_uri,
    mlflow_name,
    read_lines,
    read_run_id,
    write_run_id,
)

logger = logging.getLogger("trainer_runtime.mlflow")


PRIORITIES = ("idle", "low", "normal")
LOCK_WAIT_S = 120.0  # how long a child waits for the previous attempt's child of the same job


def _lower_priority(mode: str = "idle") -> None:
    """Only use the CPU the trainer leaves idle; silently keep what is not permitted.
    `mode` (``spec.mlflow.logger_priority``, passed as ``--priority``): ``idle`` (nice 19 +
    SCHED_IDLE, the default), ``low`` (nice 19 only) or ``normal``."""
    mode = (mode or "idle").strip().lower()
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
            write_run_id(output_dir, run_id)
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
        for candidate in dict.fromkeys([run_id, read_run_id(output_dir)]):
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


def _read_stdin(records: queue.Queue[dict[str, Any] | type[_EOF]]) -> None:
    """Everything the trainer writes, into memory at once (the trainer's pipe never fills)."""
    try:
        for raw in read_lines(0):
            with contextlib.suppress(ValueError):
                rec = json.loads(raw)
                if isinstance(rec, dict):
                    records.put(rec)
    finally:
        records.put(_EOF)


def serve(argv: Sequence[str] | None = None) -> int:
    """The logger process: ``python -m trainer_runtime.mlflow_logger.child [--priority MODE]``
    (started by `MlflowLogger`)."""
    parser = argparse.ArgumentParser(prog="python -m trainer_runtime.mlflow_logger.child")
    parser.add_argument("--priority", choices=PRIORITIES, default="idle", help="see `_lower_priority`")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    _lower_priority(args.priority)
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


if __name__ == "__main__":
    sys.exit(serve())
