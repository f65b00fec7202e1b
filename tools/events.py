"""Progress events of jobs (contract 4 in docs/architecture.md): storage with a gapless per-job `seq`, side effects
on the job row, and reading them back.

    append_event(db, job_id, type, data, *, event_id=None, ts=None, source="server") -> dict | None
    ingest_batch(db, job, events) -> IngestResult       (the trainer's batches, one transaction)
    list_events(db, job_id, after=0, limit=1000) -> list[dict]
    get_visible_job(db, user, job_id) -> Job            (owner only, else NotFoundError)
    publish_events(bus, events)                         (after the commit)

Every stored event is ``{"job_id", "seq", "ts", "type", "data", "event_id"}``.

Gapless seq: a new event gets ``job.last_seq + 1`` while the job row is locked, and the lock is
held until the commit. On PostgreSQL the lock is ``SELECT ... FOR UPDATE``; on SQLite the
transaction starts with a write to the job row (SQLite has one writer at a time, and a write
taken first means the read that follows sees the newest data, also across processes), and in any
case an in-process lock per job serialises the threads of this process. So seq k+1 is committed
only after seq k: a reader that sees seq k+1 can always read seq k.

Idempotency: ``(job_id, event_id)`` is unique; an event whose id is already stored is skipped
(`append_event` returns None, `ingest_batch` counts it as a duplicate). The stored copy wins.

Side effects (applied in the same transaction):
    status      job.status (+ started_at on the first ``running``, finished_at on a terminal
                status, cleared when the job leaves it; status_message from data.message). A job in
                a terminal status leaves it only through ``queued``/``interrupted``/``resuming``
                written by the server (a retry of a trainer that reported ``failed`` and exited)
                (`source="server"`); a trainer cannot move it to another status, and a status that is
                not applied is still stored, with ``data.ignored = true``.
    epoch       epochs_completed (the highest seen), epochs, metrics (latest non-empty), best_* when
                the primary metric improves (``data.primary_metric`` names it, else the job's
                best_metric_name, else the first ``val/`` metric; lower is better when the name
                contains "loss" or ``data.primary_mode == "min"``)
    checkpoint  upsert JobCheckpoint by name (key, size, sha256, epoch)
    done        best_epoch, best_metric(_name), metrics, epochs_completed, checkpoints, and the status
                in data.status (same rules as ``status``)
    error       job.error = data.message
    log         with ``data.weights`` (the trainer's pretrained weights report): job.pretrained, and a
                download it cached in the registry becomes a registry row (`tools.weights`)
    completed   (a status or done event that completes the job) its measured speed is recorded
                (`tools.estimates.record_job_throughput`) for the duration estimates of later jobs
    any type    job.mlflow_run_id = data.mlflow_run_id when it is a run id (1-64 of ``[A-Za-z0-9_.-]``;
                the trainer reports it in a ``log`` event as soon as its MLflow run exists, so the
                server knows it without sharing the trainer's disk)

Both functions commit the session they are given (and so anything pending in it).
Publishing to the event bus is the caller's job, after the commit (`publish_events`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tools.db.models import Job, JobCheckpoint, JobEvent, User
from tools.errors import InvalidInputError, NotFoundError
from tools.estimates import record_job_throughput
from tools.weights import record_trainer_report
from trainer_runtime.events import EVENT_TYPES, JOB_STATUSES, MLFLOW_RUN_ID_FIELD, TERMINAL_STATUSES, utc_ts
from trainer_runtime.weights import WEIGHTS_FIELD

if TYPE_CHECKING:
    from tools.eventbus import EventBus

Source = Literal["server", "trainer"]

MAX_EVENT_ID_LEN = 64
MAX_TS_LEN = 40
MAX_LIST_LIMIT = 1000
SERVER_REOPEN_STATUSES = ("queued", "interrupted", "resuming")
_RUN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

__all__ = [
    "MAX_LIST_LIMIT",
    "IngestResult",
    "append_event",
    "event_dict",
    "get_visible_job",
    "ingest_batch",
    "is_terminal_event",
    "list_events",
    "publish_events",
]


# --------------------------------------------------------------------------------------------------
# per-job in-process locks (refcounted so the map does not grow with every job ever seen)


class _JobLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, list[Any]] = {}  # job_id -> [lock, users]

    @contextlib.contextmanager
    def hold(self, job_id: int) -> Iterator[None]:
        with self._guard:
            entry = self._locks.get(job_id)
            if entry is None:
                entry = self._locks[job_id] = [threading.Lock(), 0]
            entry[1] += 1
        lock: threading.Lock = entry[0]
        try:
            with lock:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(job_id, None)


_job_locks = _JobLocks()


@contextlib.contextmanager
def _locked_job(db: Session, job_id: int) -> Iterator[Job]:
    """The job row, locked until the block ends; the block must commit or roll back."""
    with _job_locks.hold(job_id):
        try:
            if db.get_bind().dialect.name == "sqlite":
                # Take SQLite's write lock first, so the read below sees the newest committed data.
                db.execute(update(Job).where(Job.id == job_id).values(last_seq=Job.last_seq))
            job = db.get(Job, job_id, with_for_update=True, populate_existing=True)
            if job is None:
                raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
            yield job
        except BaseException:
            db.rollback()
            raise


# --------------------------------------------------------------------------------------------------
# public API


def event_dict(row: JobEvent) -> dict[str, Any]:
    """A stored job event as the API and the streams send it (`data` {} when none was stored)."""
    return {
        "job_id": row.job_id,
        "seq": row.seq,
        "ts": row.ts,
        "type": row.type,
        "data": row.data if row.data is not None else {},
        "event_id": row.event_id,
    }


def is_terminal_event(event: dict[str, Any]) -> bool:
    """A `status` event that put the job in a terminal status."""
    data = event.get("data") or {}
    return bool(event.get("type") == "status" and data.get("status") in TERMINAL_STATUSES and not data.get("ignored"))


def append_event(
    db: Session,
    job_id: int,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    ts: str | None = None,
    source: Source = "server",
) -> dict[str, Any] | None:
    """Store one event with the next seq and apply its side effects; commit. None for a duplicate
    `event_id`. Raises NotFoundError (no such job) or InvalidInputError (bad type or fields)."""
    with _locked_job(db, job_id) as job:
        stored = _append_locked(db, job, type, data, event_id=event_id, ts=ts, source=source, seen=None)
        db.commit()
    return stored


@dataclass
class IngestResult:
    """What `ingest_batch` did: the events it stored (as dicts), how many it skipped as duplicates, and the
    job's last seq after the batch."""

    stored: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    last_seq: int = 0


def ingest_batch(db: Session, job: Job | int, events: Sequence[Any]) -> IngestResult:
    """Store a trainer's batch in one transaction (duplicates skipped) and commit.

    `events` are `trainer_runtime.events.ProgressEvent`s or dicts of the same shape; a `job_id`
    other than the job's is refused (InvalidInputError naming the index), before anything is stored.
    """
    job_id = job if isinstance(job, int) else job.id
    items = [_as_mapping(e) for e in events]
    for i, item in enumerate(items):
        body_job = item.get("job_id")
        if body_job is not None and int(body_job) != job_id:
            raise InvalidInputError(
                f"events[{i}].job_id is {body_job}, not {job_id} (the job of the URL)",
                detail={"field": f"events[{i}].job_id", "index": i},
            )
        _validate(item.get("type"), item.get("event_id"), item.get("ts"), item.get("data"), index=i)
    result = IngestResult()
    with _locked_job(db, job_id) as locked:
        ids = [str(item["event_id"]) for item in items if item.get("event_id")]
        seen: set[str] = set()
        if ids:
            seen = set(
                db.scalars(select(JobEvent.event_id).where(JobEvent.job_id == job_id, JobEvent.event_id.in_(ids)))
            )
        for item in items:
            stored = _append_locked(
                db,
                locked,
                str(item["type"]),
                dict(item.get("data") or {}),
                event_id=item.get("event_id"),
                ts=item.get("ts"),
                source="trainer",
                seen=seen,
            )
            if stored is None:
                result.duplicates += 1
            else:
                result.stored.append(stored)
        result.last_seq = locked.last_seq
        db.commit()
    return result


def list_events(db: Session, job_id: int, after: int = 0, limit: int = MAX_LIST_LIMIT) -> list[dict[str, Any]]:
    """Events of a job with seq > after, in seq order, at most `limit` (capped at MAX_LIST_LIMIT)."""
    limit = max(1, min(int(limit), MAX_LIST_LIMIT))
    rows = db.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > max(0, int(after)))
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return [event_dict(r) for r in rows]


def get_visible_job(db: Session, user: User | int, job_id: int) -> Job:
    """The job when `user` may see it (its owner), else NotFoundError (unknown and others' jobs
    answer the same)."""
    user_id = user if isinstance(user, int) else user.id
    job = db.get(Job, job_id)
    if job is None or job.owner_id != user_id:
        raise NotFoundError(f"job {job_id} not found", detail={"job_id": job_id})
    return job


async def publish_events(bus: EventBus | None, events: Iterable[dict[str, Any]]) -> None:
    """Publish stored events (after their commit), in seq order. No bus: nothing to do."""
    if bus is None:
        return
    for event in events:
        await bus.publish(int(event["job_id"]), event)


# --------------------------------------------------------------------------------------------------
# internals


def _as_mapping(event: Any) -> dict[str, Any]:
    if isinstance(event, dict):
        return event
    dump = getattr(event, "model_dump", None)
    if dump is None:
        raise InvalidInputError(f"not an event: {event!r}")
    result: dict[str, Any] = dump()
    return result


def _validate(type: Any, event_id: Any, ts: Any, data: Any, *, index: int | None = None) -> None:
    where = "" if index is None else f"events[{index}]."
    if type not in EVENT_TYPES:
        raise InvalidInputError(
            f"{where}type {type!r} is not one of {', '.join(EVENT_TYPES)}", detail={"field": f"{where}type"}
        )
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LEN):
        raise InvalidInputError(
            f"{where}event_id must be a string of 1 to {MAX_EVENT_ID_LEN} characters",
            detail={"field": f"{where}event_id"},
        )
    if ts is not None and (not isinstance(ts, str) or len(ts) > MAX_TS_LEN):
        raise InvalidInputError(
            f"{where}ts must be a string of at most {MAX_TS_LEN} characters", detail={"field": f"{where}ts"}
        )
    if data is not None and not isinstance(data, dict):
        raise InvalidInputError(f"{where}data must be an object", detail={"field": f"{where}data"})


def _append_locked(
    db: Session,
    job: Job,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None,
    ts: str | None,
    source: Source,
    seen: set[str] | None,
) -> dict[str, Any] | None:
    _validate(type, event_id, ts, data)
    data = dict(data or {})
    if event_id:
        if seen is None:
            exists = db.scalar(select(JobEvent.id).where(JobEvent.job_id == job.id, JobEvent.event_id == event_id))
            if exists is not None:
                return None
        elif event_id in seen:
            return None
    else:
        event_id = uuid.uuid4().hex
    if seen is not None:
        seen.add(event_id)
    was = job.status
    _apply_side_effects(db, job, type, data, source)
    ts = ts or utc_ts()
    if job.status == "completed" and was != "completed":
        # the measured speed of the finished job, for the duration estimates of later ones
        record_job_throughput(db, job, ts)
    job.last_seq = (job.last_seq or 0) + 1
    row = JobEvent(job_id=job.id, seq=job.last_seq, event_id=event_id, ts=ts, type=type, data=data)
    db.add(row)
    db.flush()
    return event_dict(row)


def _now() -> datetime:
    return datetime.now(UTC)


def _set_status(job: Job, status: Any, data: dict[str, Any], source: Source) -> bool:
    """Apply a status change; False when it is refused (unknown, or leaving a terminal status)."""
    if status not in JOB_STATUSES:
        return False
    current = job.status
    if current in TERMINAL_STATUSES and current != status:
        allowed = source == "server" and (status in SERVER_REOPEN_STATUSES or status in TERMINAL_STATUSES)
        if not allowed:
            return False
    job.status = status
    message = data.get("message")
    job.status_message = str(message) if message is not None else ""
    if status == "running" and job.started_at is None:
        job.started_at = _now()
    if status in TERMINAL_STATUSES:
        if job.finished_at is None or current not in TERMINAL_STATUSES:
            job.finished_at = _now()
    elif job.finished_at is not None:
        job.finished_at = None
    return True


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    try:
        result = float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
    if result is None or result != result or result in (float("inf"), float("-inf")):
        return None
    return result


def _lower_is_better(name: str, data: dict[str, Any]) -> bool:
    mode = data.get("primary_mode")
    if mode in ("min", "max"):
        return bool(mode == "min")
    return "loss" in name.lower()


def _apply_epoch(job: Job, data: dict[str, Any]) -> None:
    epoch = _as_int(data.get("epoch"))
    if epoch is not None:
        job.epochs_completed = max(job.epochs_completed or 0, epoch)
    epochs = _as_int(data.get("epochs"))
    if epochs:
        job.epochs = epochs
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return
    job.metrics = dict(metrics)  # a new object, so the JSON column is written
    name = data.get("primary_metric") or job.best_metric_name
    if not name:
        name = next((k for k in metrics if str(k).startswith("val/")), None)
    if not name:
        return
    value = _as_float(metrics.get(name))
    if value is None:
        return
    if job.best_metric_name != name:  # a new primary metric starts a new comparison
        job.best_metric_name = str(name)
        job.best_metric = None
    best = job.best_metric
    improved = best is None or (value < best if _lower_is_better(str(name), data) else value > best)
    if improved:
        job.best_metric = value
        job.best_epoch = epoch


def _apply_checkpoint(db: Session, job: Job, data: dict[str, Any]) -> None:
    name, key, size = data.get("name"), data.get("key"), _as_int(data.get("size"))
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key or size is None:
        return
    row = db.scalar(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id, JobCheckpoint.name == name))
    if row is None:
        row = JobCheckpoint(job_id=job.id, name=name[:32], key=key, size=size)
        db.add(row)
    row.key = key
    row.size = size
    sha = data.get("sha256")
    row.sha256 = sha if isinstance(sha, str) and len(sha) <= 64 else None
    row.epoch = _as_int(data.get("epoch"))


def _apply_run_id(job: Job, data: dict[str, Any]) -> None:
    run_id = data.get(MLFLOW_RUN_ID_FIELD)
    if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) and job.mlflow_run_id != run_id:
        job.mlflow_run_id = run_id


def _apply_done(db: Session, job: Job, data: dict[str, Any], source: Source) -> None:
    """A ``done`` event: the best epoch and metric, the epochs completed, the final metrics, the
    checkpoints and the status it carries."""
    best_epoch = _as_int(data.get("best_epoch"))
    if best_epoch is not None:
        job.best_epoch = best_epoch
    best_metric = _as_float(data.get("best_metric"))
    if best_metric is not None:
        job.best_metric = best_metric
    if isinstance(data.get("best_metric_name"), str) and data["best_metric_name"]:
        job.best_metric_name = data["best_metric_name"][:64]
    last_epoch = _as_int(data.get("last_epoch"))
    if last_epoch is not None:
        job.epochs_completed = max(job.epochs_completed or 0, last_epoch)
    metrics = data.get("metrics")
    if isinstance(metrics, dict) and metrics:
        job.metrics = dict(metrics)
    for ckpt in data.get("checkpoints") or []:
        if isinstance(ckpt, dict):
            _apply_checkpoint(db, job, ckpt)
    if data.get("status") is not None:
        _set_status(job, data.get("status"), {}, source)


def _apply_side_effects(db: Session, job: Job, type: str, data: dict[str, Any], source: Source) -> None:
    if MLFLOW_RUN_ID_FIELD in data:
        _apply_run_id(job, data)
    if type == "log" and isinstance(data.get(WEIGHTS_FIELD), dict):
        record_trainer_report(db, job, data[WEIGHTS_FIELD])
    if type == "status":
        if not _set_status(job, data.get("status"), data, source):
            data["ignored"] = True
    elif type == "epoch":
        _apply_epoch(job, data)
    elif type == "checkpoint":
        _apply_checkpoint(db, job, data)
    elif type == "done":
        _apply_done(db, job, data, source)
    elif type == "error":
        message = data.get("message")
        job.error = str(message) if message is not None else str(data)
