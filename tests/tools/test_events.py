"""tools.events: gapless seq under concurrency, idempotency, side effects (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from tests.event_helpers import make_job, make_owner
from tools import events
from tools.db.models import Job, JobCheckpoint, JobEvent
from tools.errors import InvalidInputError, NotFoundError


@pytest.fixture
def job_id(session_factory: Any) -> int:
    owner = make_owner(session_factory)
    return make_job(session_factory, owner)[0]


def _seqs(session_factory: Any, job_id: int) -> list[int]:
    with session_factory() as db:
        return [e["seq"] for e in events.list_events(db, job_id)]


def test_append_assigns_seq_and_returns_the_stored_event(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        first = events.append_event(db, job_id, "log", {"message": "hi"}, event_id="e1", ts="2025-01-01T00:00:00Z")
        second = events.append_event(db, job_id, "log", {"message": "again"})
    assert first == {
        "job_id": job_id,
        "seq": 1,
        "ts": "2025-01-01T00:00:00Z",
        "type": "log",
        "data": {"message": "hi"},
        "event_id": "e1",
    }
    assert second is not None and second["seq"] == 2 and len(second["event_id"]) == 32 and second["ts"]
    with session_factory() as db:
        assert db.get(Job, job_id).last_seq == 2
        assert events.list_events(db, job_id) == [first, second]


def test_seq_is_gapless_under_concurrent_writers(session_factory: Any, job_id: int) -> None:
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            barrier.wait()
            with session_factory() as db:
                for i in range(per_thread):
                    events.append_event(db, job_id, "log", {"writer": n, "i": i}, event_id=f"w{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    total = threads * per_thread
    assert _seqs(session_factory, job_id) == list(range(1, total + 1))
    with session_factory() as db:
        assert db.get(Job, job_id).last_seq == total
        stored = events.list_events(db, job_id)
    # each writer's own events keep their order
    for n in range(threads):
        mine = [e["data"]["i"] for e in stored if e["data"]["writer"] == n]
        assert mine == list(range(per_thread))


def test_concurrent_batches_and_single_events_interleave_without_gaps(session_factory: Any, job_id: int) -> None:
    errors: list[BaseException] = []

    def batches() -> None:
        try:
            with session_factory() as db:
                for b in range(10):
                    batch = [{"type": "epoch", "data": {"epoch": b}, "event_id": f"b{b}-{i}"} for i in range(5)]
                    events.ingest_batch(db, job_id, batch)
        except BaseException as exc:
            errors.append(exc)

    def singles() -> None:
        try:
            with session_factory() as db:
                for i in range(30):
                    events.append_event(db, job_id, "log", {"i": i})
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=batches), threading.Thread(target=singles), threading.Thread(target=batches)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    # the two batch threads send the same event ids: each is stored once
    assert _seqs(session_factory, job_id) == list(range(1, 50 + 30 + 1))


def test_duplicates_are_ignored(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        assert events.append_event(db, job_id, "log", {"n": 1}, event_id="same") is not None
        assert events.append_event(db, job_id, "log", {"n": 2}, event_id="same") is None
        result = events.ingest_batch(
            db,
            job_id,
            [
                {"type": "log", "data": {"n": 3}, "event_id": "same"},
                {"type": "log", "data": {"n": 4}, "event_id": "new"},
                {"type": "log", "data": {"n": 5}, "event_id": "new"},  # twice in one batch
                {"job_id": job_id, "type": "log", "data": {"n": 6}, "event_id": "newer"},
            ],
        )
    assert [e["seq"] for e in result.stored] == [2, 3]
    assert result.duplicates == 2 and result.last_seq == 3
    with session_factory() as db:
        stored = events.list_events(db, job_id)
    assert [e["data"]["n"] for e in stored] == [1, 4, 6]


def test_batch_with_a_foreign_job_id_or_bad_event_stores_nothing(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        with pytest.raises(InvalidInputError) as info:
            events.ingest_batch(
                db, job_id, [{"type": "log", "data": {}}, {"job_id": job_id + 1, "type": "log", "data": {}}]
            )
        assert info.value.detail["field"] == "events[1].job_id"
        with pytest.raises(InvalidInputError) as info:
            events.ingest_batch(db, job_id, [{"type": "log"}, {"type": "nope"}])
        assert info.value.detail["field"] == "events[1].type"
        with pytest.raises(InvalidInputError):
            events.append_event(db, job_id, "log", {}, event_id="x" * 65)
        with pytest.raises(NotFoundError):
            events.append_event(db, 999_999, "log", {})
    assert _seqs(session_factory, job_id) == []


def test_list_events_after_and_limit(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        for i in range(10):
            events.append_event(db, job_id, "log", {"i": i})
        assert [e["seq"] for e in events.list_events(db, job_id, after=7)] == [8, 9, 10]
        assert [e["seq"] for e in events.list_events(db, job_id, after=2, limit=3)] == [3, 4, 5]
        assert events.list_events(db, job_id, after=10) == []


def test_status_side_effects_and_terminal_rules(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        events.append_event(db, job_id, "status", {"status": "preparing"}, source="trainer")
        events.append_event(db, job_id, "status", {"status": "running", "message": "epoch 1"}, source="trainer")
        job = db.get(Job, job_id)
        assert job.status == "running" and job.started_at is not None and job.status_message == "epoch 1"
        assert job.finished_at is None
        events.append_event(db, job_id, "status", {"status": "completed"}, source="trainer")
        db.expire_all()
        job = db.get(Job, job_id)
        assert job.status == "completed" and job.finished_at is not None
        # a late trainer event cannot leave the terminal status; it is stored, marked ignored
        late = events.append_event(db, job_id, "status", {"status": "running"}, source="trainer")
        assert late is not None and late["data"]["ignored"] is True
        assert not events.is_terminal_event(late)
        other_terminal = events.append_event(db, job_id, "status", {"status": "failed"}, source="trainer")
        assert other_terminal is not None and other_terminal["data"].get("ignored") is True
        assert not events.is_terminal_event(other_terminal)
        db.expire_all()
        assert db.get(Job, job_id).status == "completed"
        # a trainer cannot reopen it, not even as interrupted
        refused = events.append_event(db, job_id, "status", {"status": "interrupted"}, source="trainer")
        assert refused is not None and refused["data"]["ignored"] is True
        # the server may (a retry decision, then the resume), which clears finished_at
        events.append_event(db, job_id, "status", {"status": "interrupted"})
        db.expire_all()
        assert db.get(Job, job_id).status == "interrupted"
        events.append_event(db, job_id, "status", {"status": "resuming"})
        db.expire_all()
        job = db.get(Job, job_id)
        assert job.status == "resuming" and job.finished_at is None
        # but not straight back to running from a terminal status
        events.append_event(db, job_id, "status", {"status": "stopped"})
        refused = events.append_event(db, job_id, "status", {"status": "running"})
        assert refused is not None and refused["data"]["ignored"] is True
        db.expire_all()
        assert db.get(Job, job_id).status == "stopped"


def test_epoch_side_effects_track_the_best_metric(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        for epoch, m in [(1, 0.5), (2, 0.7), (3, 0.6)]:
            events.append_event(
                db,
                job_id,
                "epoch",
                {"epoch": epoch, "epochs": 3, "metrics": {"train/loss": 1.0 / epoch, "val/acc": m}},
                source="trainer",
            )
        job = db.get(Job, job_id)
        assert job.epochs == 3 and job.epochs_completed == 3
        assert job.metrics == {"train/loss": 1.0 / 3, "val/acc": 0.6}
        assert (job.best_metric_name, job.best_metric, job.best_epoch) == ("val/acc", 0.7, 2)
        # a recovered epoch without metrics changes no metric
        events.append_event(db, job_id, "epoch", {"epoch": 2, "epochs": 3, "metrics": {}, "recovered": True})
        db.expire_all()
        job = db.get(Job, job_id)
        assert job.epochs_completed == 3 and job.best_epoch == 2


def test_primary_metric_named_by_the_event_and_lower_is_better_for_losses(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    job_id = make_job(session_factory, owner)[0]
    with session_factory() as db:
        for epoch, loss in [(1, 0.9), (2, 0.4), (3, 0.5)]:
            events.append_event(
                db,
                job_id,
                "epoch",
                {"epoch": epoch, "metrics": {"val/acc": 0.1 * epoch, "val/loss": loss}, "primary_metric": "val/loss"},
            )
        job = db.get(Job, job_id)
        assert (job.best_metric_name, job.best_metric, job.best_epoch) == ("val/loss", 0.4, 2)


def test_checkpoint_done_and_error_side_effects(session_factory: Any, job_id: int) -> None:
    ckpt = {"name": "last.pt", "key": "checkpoints/test-jobs/job_1/last.pt", "size": 10, "sha256": "a" * 64}
    with session_factory() as db:
        events.append_event(db, job_id, "checkpoint", {**ckpt, "epoch": 1})
        events.append_event(db, job_id, "checkpoint", {**ckpt, "size": 20, "epoch": 2})  # upsert
        events.append_event(db, job_id, "checkpoint", {"name": "broken.pt"})  # incomplete: no row
        events.append_event(
            db,
            job_id,
            "done",
            {
                "status": "completed",
                "best_epoch": 2,
                "last_epoch": 3,
                "best_metric": 0.9,
                "best_metric_name": "val/acc",
                "metrics": {"val/acc": 0.88},
                "checkpoints": [{"name": "best.pt", "key": "k/best.pt", "size": 5, "sha256": "b" * 64, "epoch": 2}],
            },
            source="trainer",
        )
        events.append_event(db, job_id, "error", {"message": "boom", "error_type": "training"})
        job = db.get(Job, job_id)
        assert job.status == "completed" and job.finished_at is not None
        assert (job.best_epoch, job.best_metric, job.best_metric_name) == (2, 0.9, "val/acc")
        assert job.epochs_completed == 3 and job.metrics == {"val/acc": 0.88}
        assert job.error == "boom"
        rows = {c.name: c for c in db.query(JobCheckpoint).filter_by(job_id=job_id)}
        assert set(rows) == {"last.pt", "best.pt"}
        assert rows["last.pt"].size == 20 and rows["last.pt"].epoch == 2
        assert rows["best.pt"].key == "k/best.pt" and rows["best.pt"].epoch == 2
        assert db.query(JobEvent).filter_by(job_id=job_id).count() == 5


def test_the_mlflow_run_id_reported_in_an_event_is_stored_on_the_job(session_factory: Any, job_id: int) -> None:
    run_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with session_factory() as db:
        # what the runner sends as soon as the logger process has created the run
        log = {"level": "info", "message": f"MLflow run {run_id}", "mlflow_run_id": run_id}
        result = events.ingest_batch(db, job_id, [{"type": "log", "event_id": "r1", "data": log}])
        assert [e["data"] for e in result.stored] == [log]  # stored as sent
        assert db.get(Job, job_id, populate_existing=True).mlflow_run_id == run_id
        # not a run id: ignored (the event is still stored)
        for bad in ("x" * 65, "", "a b", "../x", 42, None, ["a"]):
            events.append_event(db, job_id, "log", {"level": "info", "message": "?", "mlflow_run_id": bad})
            assert db.get(Job, job_id, populate_existing=True).mlflow_run_id == run_id
        # another run (a resumed attempt whose old run was gone) replaces it, in any event type
        events.append_event(db, job_id, "status", {"status": "running", "mlflow_run_id": "run-2"}, source="trainer")
        job = db.get(Job, job_id, populate_existing=True)
        assert job.mlflow_run_id == "run-2" and job.status == "running"


def test_get_visible_job_is_owner_only(session_factory: Any, job_id: int) -> None:
    with session_factory() as db:
        owner = db.get(Job, job_id).owner_id
        assert events.get_visible_job(db, owner, job_id).id == job_id
        other = make_owner(session_factory, f"other-{uuid.uuid4().hex[:6]}@example.com")
        with pytest.raises(NotFoundError):
            events.get_visible_job(db, other, job_id)
        with pytest.raises(NotFoundError):
            events.get_visible_job(db, owner, job_id + 1000)
