"""The job supervisor: a FIFO queue, N slots, and the watch over every trainer process.

One background thread per server process (`start()` / `shutdown()`), woken by `wake()` and every
`tick_s` seconds. Several server replicas may share one database (behind a load balancer, with
Redis fanning progress out): each runs a supervisor, but only one of them, the *leader*, acts on
jobs. Leadership is a lock in the database (`tools.leader`: a PostgreSQL advisory lock on a
dedicated connection, or a file lock beside a SQLite file). Every tick a follower tries to take it;
the leader checks that it still holds it (a cheap query) before anything else. A replica that
becomes leader (at start, or later when the leader died or lost its database connection) first
runs `reconcile()`: it adopts the trainers the previous leader watched (the Kubernetes executor by
Job name; the local executor by pid, on the same host) or treats them as crashed (resume path).
A leader that finds its lock gone demotes itself: it forgets its handles and timers *without*
touching the trainers (the new leader adopts them) and stops acting. Followers serve HTTP and
WebSocket only; what they are asked to do reaches the leader through the database (a queued job
row, `Job.stop_requested`), within a tick.

On each tick the leader

1. polls the running trainers (`Executor.poll`, which also escalates a stop: SIGINT, then SIGTERM
   and SIGKILL after the grace period) and turns each exit into a job status:
   * exit 0 -> ``completed`` (when the trainer's own events did not already say so);
   * a stop was requested (exit 130, or killed by the escalation) -> ``stopped``;
   * exit 2 (unreadable spec), or exit 1 after the trainer reported an error that another
     attempt cannot fix (`NON_RETRYABLE_ERRORS`: bad config, incompatible or broken dataset,
     missing framework) -> ``failed`` with that error;
   * anything else (killed by a signal, exit 1 from an exception while training, 130 without a
     stop request = evicted, an adopted trainer that vanished without a final status) is a crash:
     ``interrupted``, then after ``retry_base_delay_s * 2**n`` seconds (n = retries so far, capped
     at `retry_max_delay_s`) ``resuming`` and a new attempt with ``--resume`` (it continues from
     last.pt), like a Kubernetes Job's ``backoffLimit``; after `job.max_retries` retries ->
     ``failed`` with the last error (the trainer's, else the end of its log) and its MLflow run
     marked ended.
2. acts on stop requests (`Job.stop_requested`, set by whichever replica got the request):
   running -> `Executor.stop`; waiting for a retry -> ``stopped`` at once (queued jobs are
   stopped by `tools.jobs.stop_job` itself);
3. starts due retries, then queued jobs while slots are free. The database is the queue: the
   ``queued`` jobs pinned to a dataset snapshot, oldest first (`tools.jobs.queue_order`), whichever
   replica created them; `submit()` only wakes the loop. A queued job is claimed with a
   compare-and-set on its status, so a concurrent stop or delete wins or loses cleanly.

Every state change is committed to the database (and so survives a restart). Server-side status
events go through `tools.events.append_event` (one gapless stream with the trainer's events) and
are handed to `publish` (the event bus's `publish_threadsafe`).

`reconcile()` (what a new leader does first): jobs left ``preparing``/``running``/``resuming`` are
adopted when their `Job.external_id` is still our trainer (a pid whose ``/proc/<pid>/cmdline``
holds ``trainer_runtime`` and the job's spec path; a Kubernetes Job labelled with the job id) —
it keeps reporting, its callbacks retry until a server answers — else treated as a crash (resume
path). A job claimed but never started goes back to the queue; jobs left ``interrupted`` get their
retry scheduled again; queued jobs simply stay in the queue.

The MLflow run id of a job comes with the trainer's events (`tools.events` stores a
``mlflow_run_id`` field); for local trainers the run id file in the job's output folder is read as
a fallback.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from tools.db.models import Job, JobEvent
from tools.events import append_event
from tools.executors.base import ExecHandle, Executor, ExitInfo
from tools.executors.local import read_tail
from tools.jobs import ACTIVE_STATUSES, JobRuntimeConfig, queue_order, write_spec
from tools.leader import LeaderLock, leader_lock_for

log = logging.getLogger(__name__)

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_SPEC = 2
EXIT_STOPPED = 130
NON_RETRYABLE_ERRORS = frozenset(
    {"spec", "config", "incompatible_dataset", "dataset", "framework_unavailable", "not_found"}
)
"""`error_type`s of the trainer's `error` event that a new attempt would only repeat."""
MAX_ERROR_CHARS = 4000
QUEUE_SCAN_EXTRA = 16
"""Queued jobs read per tick beyond the free slots (claims lost to a concurrent stop or delete)."""

Publish = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class SupervisorConfig:
    """How the supervisor runs jobs: the trainers' runtime, how many at once, retries and their
    backoff, how long a stopping trainer gets before it is killed, and the loop's tick."""

    runtime: JobRuntimeConfig
    slots: int = 1
    max_retries: int = 3
    retry_base_delay_s: float = 5.0
    retry_max_delay_s: float = 600.0
    stop_grace_s: float = 30.0
    tick_s: float = 0.5


class Supervisor:
    """See the module doc. Thread-safe entry points: `wake`, `submit`, `publish`, `forget`,
    `queue_positions`, `queue_length`, `shutdown`.

    leader: the lock that elects one acting supervisor among the replicas sharing the database
    (default: `tools.leader.leader_lock_for` the session factory's engine)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        executor: Executor,
        config: SupervisorConfig,
        *,
        publish: Publish | None = None,
        leader: LeaderLock | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.executor = executor
        self.config = config
        self._publish = publish
        self.leader = leader if leader is not None else leader_lock_for(self._engine())
        self._leading = False
        self._running: dict[int, ExecHandle] = {}
        self._retry_at: dict[int, float] = {}
        self._stopping: set[int] = set()
        self._attempt_seq: dict[int, int] = {}  # job id -> last seq before the current attempt
        self._wake = threading.Event()
        self._shutdown = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # one tick at a time (the thread, or a test calling tick())

    # ------------------------------------------------------------------------------ public API
    @property
    def runtime(self) -> JobRuntimeConfig:
        return self.config.runtime

    @property
    def is_leader(self) -> bool:
        """Whether this supervisor acts on jobs (as of its last tick)."""
        return self._leading

    def start(self) -> None:
        if self._thread is not None:
            return
        self._shutdown.clear()
        self._thread = threading.Thread(target=self._loop, name="job-supervisor", daemon=True)
        self._thread.start()

    def _engine(self) -> Any:
        return self.session_factory.kw.get("bind")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop watching and give leadership up. Trainers keep running: the next leader (another
        replica, or the next server process) adopts them."""
        self._shutdown.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.step_down()
        with contextlib.suppress(Exception):
            self.leader.close()
        self.executor.close()

    def step_down(self) -> None:
        """Stop acting as the leader and release the lock; the trainers are left running (another
        replica's supervisor adopts them). The next tick competes for the lock again."""
        with self._lock:
            if self._leading:
                self._demote("stepping down")
            else:
                with contextlib.suppress(Exception):
                    self.leader.release()

    def wake(self) -> None:
        self._wake.set()

    def kill_all(self) -> None:
        """SIGKILL every trainer this supervisor watches (no checkpoint upload): for tests and an
        operator's hard shutdown; `shutdown()` alone leaves them running."""
        with self._lock:
            for handle in list(self._running.values()):
                with contextlib.suppress(Exception):
                    self.executor.kill(handle)

    def submit(self, _job_id: int) -> None:
        """A job was queued (it is in the database already): wake the loop so that, on the leader,
        it starts without waiting for the next tick. On a follower this changes nothing: the
        leader finds the job in the database on its next tick."""
        self._wake.set()

    def queue_positions(self, db: Session) -> dict[int, int]:
        """job id -> 1-based place in the queue (1 = next), for the jobs still queued; the same on
        every replica (`tools.jobs.queue_order`)."""
        return {j: i + 1 for i, j in enumerate(queue_order(db))}

    def queue_length(self) -> int:
        """Jobs waiting in the queue (Prometheus `vta_job_queue_length`), from the database."""
        with self.session_factory() as db:
            return len(queue_order(db))

    def publish(self, job_id: int, event: dict[str, Any]) -> None:
        if self._publish is None:
            return
        try:
            self._publish(job_id, event)
        except Exception:
            log.exception("could not publish event %s of job %s", event.get("seq"), job_id)

    def forget(self, job_id: int) -> None:
        """A deleted job: drop its local folder (spec, log, outputs, event spool)."""
        with self._lock:
            self._retry_at.pop(job_id, None)
        shutil.rmtree(self.runtime.job_dir(job_id), ignore_errors=True)

    def running_jobs(self) -> list[int]:
        return sorted(self._running)

    def handle(self, job_id: int) -> ExecHandle | None:
        return self._running.get(job_id)

    def pending_retries(self) -> dict[int, float]:
        """job id -> seconds until its next attempt."""
        now = time.monotonic()
        return {j: max(0.0, t - now) for j, t in self._retry_at.items()}

    # ------------------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._shutdown.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("supervisor tick failed")
            self._wake.wait(self.config.tick_s)
            self._wake.clear()

    def tick(self) -> None:
        """One round: make sure this supervisor leads (else do nothing), then reap, stop, retry and
        start queued jobs."""
        with self._lock:
            if not self._lead():
                return
            self._reap()
            self._handle_stops()
            self._start_due_retries()
            self._start_queued()

    # ------------------------------------------------------------------------------ leadership
    def _lead(self) -> bool:
        """True when this supervisor is the leader: it checks that it still holds the lock, or
        tries to take it (and then reconciles first)."""
        if self._leading:
            if self.leader.check():
                return True
            self._demote("the leader lock was lost")
            return False
        return self._become_leader() is not None

    def _confirm_leader(self) -> bool:
        """Before an action another leader must not repeat (a launch): still the leader?"""
        if self._leading and self.leader.check():
            return True
        if self._leading:
            self._demote("the leader lock was lost")
        return False

    def _become_leader(self) -> dict[str, list[int]] | None:
        """Take the lock if it is free, then reconcile; None when another replica leads."""
        try:
            acquired = self.leader.acquire()
        except Exception:
            log.exception("could not try the leader lock")
            return None
        if not acquired:
            return None
        self._leading = True
        log.info("job supervisor: this replica is now the leader (%s)", self.leader.describe())
        try:
            return self._reconcile()
        except BaseException:
            self._demote("reconciling the jobs failed")
            raise

    def _demote(self, reason: str) -> None:
        """Stop acting: forget handles, retry timers and stops in progress, without touching the
        trainers (the next leader adopts them), and release the lock."""
        if self._running or self._retry_at:
            log.warning(
                "job supervisor: no longer the leader (%s); leaving %d trainer(s) and %d pending retry(ies) "
                "to the next leader",
                reason,
                len(self._running),
                len(self._retry_at),
            )
        else:
            log.info("job supervisor: no longer the leader (%s)", reason)
        self._leading = False
        self._running.clear()
        self._retry_at.clear()
        self._stopping.clear()
        self._attempt_seq.clear()
        with contextlib.suppress(Exception):
            self.leader.release()

    # ------------------------------------------------------------------------------ events
    def _emit(self, db: Session, job_id: int, status: str, **data: Any) -> dict[str, Any] | None:
        event = append_event(db, job_id, "status", {"status": status, **data}, source="server")
        if event is not None:
            self.publish(job_id, event)
        return event

    # ------------------------------------------------------------------------------ exits
    def _note_run_id(self, job_id: int, handle: ExecHandle) -> None:
        """Store the trainer's MLflow run id as soon as it has written it (output/mlflow_run_id)."""
        if handle.extra.get("run_id_stored"):
            return
        path = self.runtime.job_dir(job_id) / "output" / "mlflow_run_id"
        if not path.is_file():
            return
        with self.session_factory() as db:
            job = db.get(Job, job_id)
            if job is not None:
                self._harvest_run_id(job)
                db.commit()
        handle.extra["run_id_stored"] = True

    def _reap(self) -> None:
        for job_id, handle in list(self._running.items()):
            with contextlib.suppress(Exception):
                self._note_run_id(job_id, handle)
            try:
                info = self.executor.poll(handle)
            except Exception:
                log.exception("job %s: poll failed", job_id)
                continue
            if info is None:
                continue
            del self._running[job_id]
            self._stopping.discard(job_id)
            try:
                self._on_exit(job_id, info, handle=handle)
            except Exception:
                log.exception("job %s: handling its exit failed", job_id)

    def _last_error(self, db: Session, job_id: int, since_seq: int) -> tuple[str | None, str | None]:
        """(message, error_type) of the trainer's latest `error` event after `since_seq`."""
        row = db.scalar(
            select(JobEvent.data)
            .where(JobEvent.job_id == job_id, JobEvent.type == "error", JobEvent.seq > since_seq)
            .order_by(JobEvent.seq.desc())
            .limit(1)
        )
        if not isinstance(row, dict):
            return None, None
        message = row.get("message")
        kind = row.get("error_type")
        return (str(message) if message is not None else None), (str(kind) if kind is not None else None)

    def _harvest_run_id(self, job: Job) -> None:
        path = self.runtime.job_dir(job.id) / "output" / "mlflow_run_id"
        with contextlib.suppress(OSError):
            run_id = path.read_text(encoding="utf-8").strip()
            if run_id and len(run_id) <= 64:
                job.mlflow_run_id = run_id

    def _on_exit(self, job_id: int, info: ExitInfo, *, handle: ExecHandle | None = None) -> None:
        """Turn the exit of `handle`'s trainer (None: a trainer found dead by the reconcile) into a
        job status. The attempt is told by its number, not by flags a resume resets: a trainer of an
        attempt that is no longer the job's current one (the job was resumed meanwhile, which resets
        `attempts`) changes nothing; a stop this supervisor sent counts as requested even when a
        resume has cleared `stop_requested` since."""
        rc = info.returncode
        attempt = handle.extra.get("attempt") if handle is not None else None
        stop_sent = bool(handle is not None and handle.extra.get("stop_sent"))
        with self.session_factory() as db:
            job = db.get(Job, job_id, populate_existing=True)
            if job is None:  # deleted (while its trainer ran): what the trainer left goes too
                self._attempt_seq.pop(job_id, None)
                shutil.rmtree(self.runtime.job_dir(job_id), ignore_errors=True)
                return
            since = int(self._attempt_seq.pop(job_id, 0))
            if attempt is not None and int(job.attempts or 0) != int(attempt):
                log.info(
                    "job %s: the trainer of attempt %s exited (%s) after the job was resumed (now %s, attempt %s); "
                    "its exit does not concern the new attempt",
                    job_id,
                    attempt,
                    rc,
                    job.status,
                    job.attempts,
                )
                return
            self._harvest_run_id(job)
            db.commit()
            status = job.status
            message, error_type = self._last_error(db, job_id, since)
            tail = info.log_tail[-MAX_ERROR_CHARS:] if info.log_tail else ""
            log.info("job %s: trainer exited (%s), status %s", job_id, rc, status)

            if rc == EXIT_COMPLETED:
                if status != "completed":
                    self._emit(db, job_id, "completed", exit_code=rc)
                return
            if job.stop_requested or stop_sent:
                if status != "stopped":
                    self._emit(db, job_id, "stopped", exit_code=rc, message="stopped on request")
                if rc is None or rc < 0:
                    self._end_mlflow_run(job, "stopped")
                return
            # An adopted trainer (exit status unknown) that reported how it ended.
            if rc is None and (status == "completed" or (status == "failed" and error_type in NON_RETRYABLE_ERRORS)):
                return
            if rc == EXIT_SPEC or (rc == EXIT_FAILED and error_type in NON_RETRYABLE_ERRORS):
                self._fail(db, job, message or tail or f"trainer exited with status {rc}", rc)
                return
            self._crash(db, job, rc, message or tail)

    def _crash(self, db: Session, job: Job, rc: int | None, error: str) -> None:
        """Interrupted: schedule a retry with --resume, or fail when the retries are used up."""
        retries_used = max(0, int(job.attempts or 0) - 1)
        reason = (
            f"killed by signal {-rc}"
            if rc is not None and rc < 0
            else "the trainer process ended without a final status"
            if rc is None
            else f"exit status {rc}"
        )
        if retries_used >= int(job.max_retries or 0):
            detail = error.strip() or reason
            self._fail(
                db,
                job,
                f"gave up after {job.attempts} attempt(s) ({reason}): {detail}"[:MAX_ERROR_CHARS],
                rc,
            )
            self._end_mlflow_run(job, "failed")
            return
        delay = min(self.config.retry_base_delay_s * (2**retries_used), self.config.retry_max_delay_s)
        # Also reopens a job whose trainer reported `failed` before exiting (a server-written
        # `interrupted` may leave a terminal status: tools.events.SERVER_REOPEN_STATUSES).
        self._emit(
            db,
            job.id,
            "interrupted",
            message=f"trainer {reason}; retry {retries_used + 1} of {job.max_retries} in {delay:g}s",
            exit_code=rc,
            attempt=job.attempts,
            retry_in_s=delay,
            error=(error or "")[-1000:] or None,
        )
        self._retry_at[job.id] = time.monotonic() + delay

    def _fail(self, db: Session, job: Job, error: str, rc: int | None) -> None:
        job = db.get(Job, job.id, populate_existing=True) or job
        job.error = error[:MAX_ERROR_CHARS]
        db.commit()
        self._emit(db, job.id, "failed", message=error[:500], exit_code=rc)

    def _end_mlflow_run(self, job: Job, status: str) -> None:
        """A trainer killed without ending its MLflow run leaves it RUNNING: mark it ended, in a
        child process (the server never imports mlflow), in the background."""
        run_id = job.mlflow_run_id
        if not run_id:
            return
        uri = self.runtime.mlflow_tracking_uri
        if not uri:
            db_path = Path(self.runtime.trainer_dir).resolve() / "mlflow" / "mlflow.db"
            if not db_path.exists():
                return
            uri = f"sqlite:///{db_path}"
        interpreter = getattr(self.executor, "interpreter_for", lambda _fw: sys.executable)(job.framework)
        code = (
            "import sys; from trainer_runtime.mlflow_logger import mark_run_terminated; "
            "mark_run_terminated(sys.argv[1], sys.argv[2], sys.argv[3])"
        )

        def run() -> None:
            try:
                done = subprocess.run(
                    [interpreter, "-c", code, uri, run_id, status],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("could not mark MLflow run %s %s: %s", run_id, status, exc)
                return
            if done.returncode != 0:  # e.g. mlflow not installed for this interpreter
                detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                log.warning("could not mark MLflow run %s %s: %s", run_id, status, detail[0])

        threading.Thread(target=run, name=f"mlflow-end-{job.id}", daemon=True).start()

    # ------------------------------------------------------------------------------ stops
    def _handle_stops(self) -> None:
        watched = set(self._running) | set(self._retry_at)
        if not watched:
            return
        with self.session_factory() as db:
            present = set(db.scalars(select(Job.id).where(Job.id.in_(watched))))
            for job_id in sorted(watched - present):
                self._drop_deleted(job_id)
            ids = set(db.scalars(select(Job.id).where(Job.id.in_(watched), Job.stop_requested.is_(True))))
            for job_id in ids:
                if job_id in self._running and job_id not in self._stopping:
                    self._stopping.add(job_id)
                    log.info("job %s: stop requested", job_id)
                    self._running[job_id].extra["stop_sent"] = True
                    self.executor.stop(self._running[job_id], self.config.stop_grace_s)
                elif job_id in self._retry_at:
                    del self._retry_at[job_id]
                    self._emit(db, job_id, "stopped", message="stopped while waiting for a retry")

    def _drop_deleted(self, job_id: int) -> None:
        """A job deleted while its trainer runs or waits for a retry (`tools.jobs.delete_job`):
        its retry is dropped and its trainer killed (what it would still upload belongs to no
        job); `_reap` collects the exit and `_on_exit` removes the job's folder."""
        self._retry_at.pop(job_id, None)
        handle = self._running.get(job_id)
        if handle is not None and not handle.extra.get("deleted"):
            handle.extra["deleted"] = True
            log.info("job %s: deleted while its trainer runs; killing the trainer", job_id)
            self.executor.kill(handle)

    # ------------------------------------------------------------------------------ starts
    def _free_slots(self) -> int:
        return self.config.slots - len(self._running)

    def _start_due_retries(self) -> None:
        now = time.monotonic()
        due = sorted((t, j) for j, t in self._retry_at.items() if t <= now)
        for _, job_id in due:
            if self._free_slots() <= 0 or not self._confirm_leader():
                return
            del self._retry_at[job_id]
            with self.session_factory() as db:
                job = db.get(Job, job_id, populate_existing=True)
                if job is None or job.status in ("completed", "stopped"):
                    continue
                self._launch(db, job, resume=True)

    def _start_queued(self) -> None:
        free = self._free_slots() - sum(1 for t in self._retry_at.values() if t <= time.monotonic())
        if free <= 0:
            return
        with self.session_factory() as db:
            waiting = queue_order(db, limit=free + QUEUE_SCAN_EXTRA)
            for job_id in waiting:
                if free <= 0 or not self._confirm_leader():
                    break
                if job_id in self._running:
                    continue  # resumed while the trainer of its last attempt still exits: after its reap
                result = db.execute(
                    update(Job).where(Job.id == job_id, Job.status == "queued").values(status="preparing")
                )
                db.commit()
                if not isinstance(result, CursorResult) or result.rowcount != 1:
                    continue  # stopped or deleted meanwhile
                job = db.get(Job, job_id, populate_existing=True)
                if job is None:
                    continue
                self._launch(db, job, resume=job.external_id is not None)
                free -= 1

    def _launch(self, db: Session, job: Job, *, resume: bool) -> None:
        """Write a fresh spec (new callback token) and start a trainer for `job`."""
        if job.stop_requested:  # stopped between being claimed and started
            self._emit(db, job.id, "stopped", message="stopped before it started")
            return
        if not resume:
            # A fresh start: nothing of an earlier job with the same id (SQLite reuses ids) may be
            # re-sent from a stale event spool.
            shutil.rmtree(self.runtime.job_dir(job.id), ignore_errors=True)
        try:
            spec_path = write_spec(job, self.runtime)
        except Exception as exc:
            log.exception("job %s: could not write its spec", job.id)
            self._fail(db, job, f"could not write the job spec: {exc}", None)
            return
        job.attempts = int(job.attempts or 0) + 1
        if job.attempts == 1:
            job.max_retries = self.config.max_retries
        job.executor = self.executor.name
        job.error = None
        db.commit()
        self._attempt_seq[job.id] = int(job.last_seq or 0)
        if resume and job.status != "resuming":  # (already `resuming` when the reconcile found it so)
            self._emit(
                db,
                job.id,
                "resuming",
                message=f"attempt {job.attempts}: continuing from last.pt",
                attempt=job.attempts,
            )
        try:
            handle = self.executor.start(job.id, spec_path, resume=resume)
        except Exception as exc:
            log.exception("job %s: could not start the trainer", job.id)
            self._fail(db, job, f"could not start the trainer: {exc}", None)
            return
        handle.extra["attempt"] = int(job.attempts)
        job = db.get(Job, job.id, populate_existing=True) or job
        job.external_id = handle.external_id
        db.commit()
        self._running[job.id] = handle

    # ------------------------------------------------------------------------------ restart
    def reconcile(self) -> dict[str, list[int]]:
        """Become the leader if no other replica is, and take over what the previous leader left
        (see the module doc). Returns {"adopted", "crashed", "retrying", "queued"} -> job ids, all
        empty on a follower. Run by a new leader on its own; a server calls it once at start."""
        with self._lock:
            if self._leading:
                if self.leader.check():
                    return self._reconcile()
                self._demote("the leader lock was lost")
            report = self._become_leader()
            return report if report is not None else {"adopted": [], "crashed": [], "retrying": [], "queued": []}

    def _reconcile(self) -> dict[str, list[int]]:
        report: dict[str, list[int]] = {"adopted": [], "crashed": [], "retrying": [], "queued": []}
        with self.session_factory() as db:
            # Only jobs a supervisor launched (attempts > 0) or queued through tools.jobs (pinned to a
            # snapshot) are its business; rows made by hand (tests, imports) are left alone.
            rows = list(db.scalars(select(Job).where(Job.status.in_(ACTIVE_STATUSES)).order_by(Job.id)))
            for job in rows:
                if job.id in self._running:
                    continue
                pinned = job.snapshot_id is not None and job.dataset_id is not None
                if not job.attempts:
                    if job.status == "preparing" and job.external_id is None and pinned:
                        # claimed by a leader that died (or lost the lock) before it launched it
                        self._requeue(db, job.id)
                        report["crashed"].append(job.id)
                    continue
                spec_path = self.runtime.spec_path(job.id)
                handle = None
                if job.external_id:
                    handle = self.executor.adopt(job.id, job.external_id, spec_path)
                if handle is not None:
                    handle.extra["attempt"] = int(job.attempts)
                    self._running[job.id] = handle
                    report["adopted"].append(job.id)
                    continue
                report["crashed"].append(job.id)
                if job.external_id is None:  # claimed but never started: back to the queue
                    self._requeue(db, job.id)
                    continue
                tail = read_tail(spec_path.parent / "trainer.log")
                self._attempt_seq.setdefault(job.id, 0)
                self._on_exit(job.id, ExitInfo(returncode=None, log_tail=tail))
            for job in db.scalars(select(Job).where(Job.status == "interrupted").order_by(Job.id)):
                if job.id in self._retry_at or job.id in report["crashed"] or not job.attempts:
                    continue
                retries_used = max(0, int(job.attempts or 0) - 1)
                delay = min(self.config.retry_base_delay_s * (2**retries_used), self.config.retry_max_delay_s)
                self._retry_at[job.id] = time.monotonic() + delay
                report["retrying"].append(job.id)
            report["queued"] = queue_order(db)
        if any(report.values()):
            log.info("reconciled jobs: %s", report)
        return report

    def _requeue(self, db: Session, job_id: int) -> None:
        db.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES)).values(status="queued"))
        db.commit()
