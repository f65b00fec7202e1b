"""Several server replicas on one database: one supervisor leader (`tools.leader`,
`tools.supervisor`), on SQLite (a file lock) and PostgreSQL (an advisory lock; with
TEST_DATABASE_URL set, unreachable fails).

Two `Supervisor`s on the same database stand for two replicas (same host, so the local executor
can adopt by pid). The trainers are the fake interpreter of tests/tools/test_jobs.py (`Harness`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.live_server import wait_for
from tests.tools.test_jobs import Harness, alice, ctx_for, intent, storage, users  # noqa: F401
from tools import jobs
from tools.context import ToolContext
from tools.db.models import Job
from tools.leader import FileLeaderLock, PostgresLeaderLock, ProcessLeaderLock, leader_lock_for
from tools.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]


class Replicas:
    """Two supervisors over one database and one trainer folder (two replicas on one host)."""

    def __init__(self, factory: sessionmaker[Session], engine: Engine, tmp: Path, **fake: Any) -> None:
        self.engine = engine
        self.h = Harness(factory, tmp, **fake)
        self.a = self.h.sup
        self.b = self.h.make()
        self.all: list[Supervisor] = [self.a, self.b]

    def make(self, **over: Any) -> Supervisor:
        sup = self.h.make(**over)
        self.all.append(sup)
        return sup

    def attempts_started(self, job_id: int) -> int:
        """Trainer processes launched for the job (one header line per attempt in trainer.log)."""
        path = self.a.runtime.job_dir(job_id) / "trainer.log"
        return path.read_text().count("===== ") if path.is_file() else 0

    def wait_status(self, job_id: int, *wanted: str, tick: tuple[Supervisor, ...] = (), timeout: float = 30.0) -> Job:
        def check() -> Job | None:
            for sup in tick:
                sup.tick()
            job = self.h.job(job_id)
            return job if job.status in wanted else None

        result: Job = wait_for(check, timeout, interval=0.05, what=f"job {job_id} in {wanted}")
        return result

    def start_on_leader(self, ctx: ToolContext) -> dict[str, Any]:
        """A one-epoch job whose fake trainer sleeps, started by `a` (the leader) after both ticked."""
        self.h.set_fake(mode="sleep", seconds=60)
        job = jobs.create_job(ctx, intent(epochs=1), supervisor=self.a)
        self.a.tick()
        self.b.tick()
        assert self.a.running_jobs() == [job["id"]] and not self.b.is_leader
        return job

    def kill_lock(self, sup: Supervisor) -> None:
        """The replica's lock goes as if its process died or its database connection broke; the
        supervisor itself is not told."""
        lock = sup.leader
        if isinstance(lock, PostgresLeaderLock):
            assert lock.backend_pid is not None
            with self.engine.connect() as conn:
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock.backend_pid}).scalar()
        else:
            lock.release()

    def close(self) -> None:
        for sup in self.all:
            for handle in list(sup._running.values()):
                sup.executor.kill(handle)
            sup.shutdown(timeout=5)
        with self.h.factory() as db:  # trainers no supervisor watches any more
            for pid in db.scalars(select(Job.external_id).where(Job.external_id.is_not(None))):
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.killpg(int(pid), signal.SIGKILL)


@pytest.fixture
def replicas(session_factory: sessionmaker[Session], engine: Engine, tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(session_factory, engine, tmp_path, mode="sleep", seconds=0.3, code=0)
    yield r
    r.close()


def test_the_lock_follows_the_database(engine: Engine, tmp_path: Path) -> None:
    lock = leader_lock_for(engine)
    try:
        if engine.dialect.name == "postgresql":
            assert isinstance(lock, PostgresLeaderLock)
        else:
            assert isinstance(lock, FileLeaderLock)
            assert lock.path == Path(str(engine.url.database)).resolve().with_name("test.db.leader")
    finally:
        lock.close()
    from sqlalchemy import create_engine

    memory = create_engine("sqlite://")
    first, second = leader_lock_for(memory), leader_lock_for(memory)
    assert isinstance(first, ProcessLeaderLock) and first.acquire() and not second.acquire()
    first.release()
    assert second.acquire() and second.held and not first.held
    del second  # a holder that is gone holds nothing
    assert first.acquire()
    first.release()


# ------------------------------------------------------------------------------------------------
# one leader


def test_only_the_leader_launches_jobs_queued_through_either_replica(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    a.tick()
    b.tick()
    assert a.is_leader and not b.is_leader
    first = jobs.create_job(alice, intent(epochs=1), supervisor=b)  # through the follower
    second = jobs.create_job(alice, intent(epochs=1), supervisor=a)
    third = jobs.create_job(alice, intent(epochs=1), supervisor=b)
    # the queue is the database: the same order and length on every replica
    expected = {first["id"]: 1, second["id"]: 2, third["id"]: 3}
    assert a.queue_positions(alice.db) == b.queue_positions(alice.db) == expected
    assert a.queue_length() == b.queue_length() == 3
    assert jobs.get_job(alice, third["id"]).queue_position == 3
    for _ in range(3):
        b.tick()
    assert b.running_jobs() == [] and replicas.h.job(first["id"]).status == "queued"
    a.tick()  # one slot: the oldest job first
    assert a.running_jobs() == [first["id"]] and b.running_jobs() == []
    assert a.queue_positions(alice.db) == b.queue_positions(alice.db) == {second["id"]: 1, third["id"]: 2}
    for job in (first, second, third):
        replicas.wait_status(job["id"], "completed", tick=(b, a))
    assert b.running_jobs() == [] and not b.is_leader
    for job in (first, second, third):
        assert replicas.attempts_started(job["id"]) == 1
        assert replicas.h.statuses(job["id"]) == ["queued", "completed"]
    assert a.queue_length() == b.queue_length() == 0


def test_a_crash_is_retried_once_per_attempt_with_two_replicas_running(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    replicas.h.set_fake(mode="sleep", seconds=0.6, code=1)  # each attempt crashes after a while
    a, b = replicas.a, replicas.b
    a.reconcile()
    a.start()
    job = jobs.create_job(alice, intent(epochs=1), supervisor=b)
    replicas.wait_status(job["id"], "preparing")
    # a second replica starts (as the server's lifespan does) while the trainer runs: it must not
    # take the trainer over too, or both would retry its crash
    assert b.reconcile() == {"adopted": [], "crashed": [], "retrying": [], "queued": []}
    b.start()
    failed = replicas.wait_status(job["id"], "failed")
    assert failed.attempts == 3  # first run + max_retries 2
    assert replicas.attempts_started(job["id"]) == 3
    assert replicas.h.statuses(job["id"]) == ["queued", "interrupted", "resuming", "interrupted", "resuming", "failed"]
    assert a.is_leader and not b.is_leader
    time.sleep(0.5)  # nothing else happens later
    assert replicas.attempts_started(job["id"]) == 3 and replicas.h.job(job["id"]).status == "failed"


def test_a_stop_sent_to_the_follower_is_carried_out_by_the_leader(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    job = replicas.start_on_leader(alice)
    time.sleep(0.3)  # the fake trainer has installed its signal handler
    stopped = jobs.stop_job(alice, job["id"], supervisor=b)
    assert stopped.model_dump()["stop_requested"] and stopped.status == "preparing"
    b.tick()  # the follower does nothing
    assert b.running_jobs() == [] and job["id"] not in b._stopping
    a.tick()  # the leader's next tick signals the trainer
    assert job["id"] in a._stopping
    done = replicas.wait_status(job["id"], "stopped", tick=(a, b), timeout=10)
    assert done.attempts == 1 and replicas.attempts_started(job["id"]) == 1
    assert "got signal 2" in (a.runtime.job_dir(job["id"]) / "trainer.log").read_text()


def test_the_leader_dies_and_the_other_replica_adopts_its_trainer(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    running = replicas.start_on_leader(alice)
    waiting = jobs.create_job(alice, intent(epochs=1), supervisor=a)
    pid = int(replicas.h.job(running["id"]).external_id or 0)
    time.sleep(0.3)

    replicas.kill_lock(a)  # a's database connection breaks (PostgreSQL) / its process is gone (SQLite)
    a.tick()  # a notices: it forgets its trainer without touching it and stops acting
    assert not a.is_leader and a.running_jobs() == []
    os.kill(pid, 0)  # still running
    assert replicas.h.job(running["id"]).status == "preparing"
    report = wait_for(lambda: b.reconcile()["adopted"], 15, interval=0.1, what="b to take over")
    assert report == [running["id"]] and b.is_leader
    assert b.running_jobs() == [running["id"]] and b.handle(running["id"]).adopted  # type: ignore[union-attr]
    a.tick()
    assert not a.is_leader  # the lock is b's now
    assert replicas.h.job(waiting["id"]).status == "queued"  # one slot, taken by the adopted trainer

    # a stop through the replica that lost leadership reaches the trainer through the new leader
    jobs.stop_job(alice, running["id"], supervisor=a)
    replicas.wait_status(running["id"], "stopped", tick=(a, b), timeout=15)
    replicas.wait_status(waiting["id"], "preparing", tick=(a, b), timeout=15)
    assert b.running_jobs() == [waiting["id"]] and a.running_jobs() == []
    assert replicas.attempts_started(running["id"]) == 1  # adopted, never launched twice
    assert replicas.h.statuses(running["id"]) == ["queued", "stopped"]


def test_a_leader_that_shuts_down_hands_over_at_once(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    replicas.h.set_fake(mode="exit", code=1)
    a, b = replicas.a, replicas.b
    a.tick()
    job = jobs.create_job(alice, intent(epochs=1), supervisor=b)
    replicas.wait_status(job["id"], "interrupted", tick=(a,))
    assert a.pending_retries()
    a.shutdown()  # a replica scaled down: its pending retry is the next leader's
    replicas.h.set_fake(mode="exit", code=0)
    b.tick()
    assert b.is_leader and list(b.pending_retries()) == [job["id"]]
    done = replicas.wait_status(job["id"], "completed", tick=(b,))
    assert done.attempts == 2 and replicas.attempts_started(job["id"]) == 2


def test_a_job_claimed_by_a_leader_that_died_before_launching_it_goes_back_to_the_queue(
    alice: ToolContext,  # noqa: F811
    replicas: Replicas,
) -> None:
    job = jobs.create_job(alice, intent(epochs=1))  # no supervisor: a bare script
    with replicas.h.factory() as db:  # the old leader's compare-and-set, then it died
        row = db.get(Job, job["id"])
        assert row is not None
        row.status = "preparing"
        db.commit()
    report = replicas.b.reconcile()
    assert report["crashed"] == [job["id"]] and report["queued"] == [job["id"]]
    assert replicas.b.is_leader and replicas.h.job(job["id"]).status == "queued"
    done = replicas.wait_status(job["id"], "completed", tick=(replicas.a, replicas.b))
    assert done.attempts == 1 and replicas.attempts_started(job["id"]) == 1 and not replicas.a.is_leader


# ------------------------------------------------------------------------------------------------
# the locks themselves


HOLD_FILE_LOCK = """
import sys, time
from tools.leader import FileLeaderLock
lock = FileLeaderLock(sys.argv[1])
print("held" if lock.acquire() else "not held", flush=True)
time.sleep(60)
"""


def test_file_lock_elects_one_process(tmp_path: Path) -> None:
    path = tmp_path / "x.db.leader"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_FILE_LOCK, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        here = FileLeaderLock(path)
        assert not here.acquire() and not here.check()
        child.kill()  # the holder dies: the kernel releases its lock
        child.wait(10)
        assert here.acquire() and here.check() and here.held
        assert "pid" in path.read_text()
        other = FileLeaderLock(path)  # another open of the file, in the same process
        assert not other.acquire()
        here.release()
        assert not here.check() and other.acquire()
        other.release()
    finally:
        child.kill()
        child.wait(10)


@pytest.mark.postgres
def test_postgres_advisory_lock_per_schema_and_lost_with_its_session(pg_admin: Engine, pg_schema_url: str) -> None:
    from tests.conftest import TEST_DATABASE_URL, with_search_path

    first, second = PostgresLeaderLock(pg_schema_url), PostgresLeaderLock(pg_schema_url)
    from sqlalchemy.engine import make_url

    schema = str(make_url(pg_schema_url).query["options"]).split("=", 1)[1]
    other_schema = f"{schema}_other"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other_schema}"'))
    elsewhere = PostgresLeaderLock(with_search_path(TEST_DATABASE_URL, other_schema))
    try:
        assert first.acquire() and first.check() and first.acquire()  # re-entrant for its holder
        assert not second.acquire() and not second.check()
        assert elsewhere.acquire()  # another schema elects its own leader
        assert first.schema != elsewhere.schema and first.describe().startswith("PostgreSQL advisory lock")
        # the holder's session ends (server restart, network, pg_terminate_backend): the lock goes with it
        with pg_admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first.backend_pid}).scalar()
        wait_for(second.acquire, 10, interval=0.05, what="the lock to be free")
        assert not first.check() and not first.held
        assert not first.acquire()  # reconnects, but the lock is taken
        second.release()
        assert first.acquire()
        first.release()
        assert not first.held
    finally:
        for lock in (first, second, elsewhere):
            lock.close()
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE'))
