"""A resume right after a stop must not race the supervisor.

A trainer reports ``stopped`` (and its last.pt) before it has exited: it still closes its reporter
and its MLflow run. A resume in that window used to clear `stop_requested` and reset `attempts`, so
the supervisor then read the old trainer's exit 130 as an eviction: a spurious ``interrupted`` and a
retry, or with retries off a resumed job marked ``failed``.

Real local trainer processes (a fake interpreter that, on SIGINT, lingers before exiting 130 as the
real runner does while it uploads), the real `Supervisor` and `tools.jobs`, SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.live_server import classification_files, wait_for
from tests.tools.test_jobs import Harness, make_dataset
from tools import jobs
from tools.context import ToolContext
from tools.db.models import User
from tools.events import append_event
from tools.intent import TrainingIntent
from trainer_runtime.storage import DualStorageClient, LocalObjectStore

LINGER_S = 1.5

# `<this> -m trainer_runtime --spec S [--resume]`: a fresh attempt writes `<S>.ready` once it handles
# SIGINT and runs until SIGINT, then writes
# `<S>.stopping` and takes LINGER_S to exit 130 (the runner's checkpoint upload and shutdown); a
# resumed attempt finishes after 0.3 s.
_LINGERING_TRAINER = """#!{python}
import os, signal, sys, time
args = sys.argv[1:]
spec = args[args.index("--spec") + 1]
resume = "--resume" in args
print("trainer", os.getpid(), "resume" if resume else "fresh", flush=True)
def on_sigint(signum, frame):
    open(spec + ".stopping", "w").close()
    time.sleep({linger})
    print("exiting 130", flush=True)
    os._exit(130)
signal.signal(signal.SIGINT, on_sigint)
open(spec + (".resumed" if resume else ".ready"), "w").close()
deadline = time.time() + (0.3 if resume else 300)
while time.time() < deadline:
    time.sleep(0.05)
print("done", flush=True)
sys.exit(0)
"""


class RaceHarness(Harness):
    def set_fake(self, **fake: Any) -> None:
        path = self.tmp / "fake-python"
        path.write_text(_LINGERING_TRAINER.format(python=sys.executable, linger=LINGER_S))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


@pytest.fixture
def alice(session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[ToolContext]:
    root = tmp_path / "storage"
    storage = DualStorageClient(
        LocalObjectStore(root / "external", "training-datasets", "external"),
        LocalObjectStore(root / "internal", "training-checkpoints", "internal"),
    )
    db = session_factory()
    user = User(email="alice@example.com", hashed_password="x")
    db.add(user)
    db.commit()
    ctx = ToolContext(db=db, user=user, storage=storage, work_dir=tmp_path / "work")
    make_dataset(ctx, "tiny", classification_files(20))
    yield ctx
    db.close()


@pytest.fixture
def make_harness(session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[Any]:
    made: list[RaceHarness] = []

    def make(**config: Any) -> RaceHarness:
        h = RaceHarness(session_factory, tmp_path)
        h.sup.shutdown()
        h.sup = h.make(**{"stop_grace_s": 30.0, **config})
        made.append(h)
        return h

    yield make
    for h in made:
        for handle in list(h.sup._running.values()):
            h.sup.executor.kill(handle)
        h.sup.shutdown(timeout=5)


def ticked(h: Harness) -> bool:
    h.sup.tick()
    return True


def stop_until_reported(alice: ToolContext, h: Harness) -> int:
    """Start a job, stop it, and report ``stopped`` + last.pt as the trainer does before it exits;
    returns the job id with its trainer still alive (lingering)."""
    job = jobs.create_job(alice, TrainingIntent(dataset="tiny", epochs=1), supervisor=h.sup)
    jid = int(job["id"])
    h.wait_status(jid, "preparing")
    spec = h.sup.runtime.spec_path(jid)
    wait_for(lambda: Path(f"{spec}.ready").exists(), 30, interval=0.05, what="the trainer's SIGINT handler")
    jobs.stop_job(alice, jid, supervisor=h.sup)
    wait_for(lambda: ticked(h) and Path(f"{spec}.stopping").exists(), 10, interval=0.05, what="SIGINT")
    key = f"checkpoints/test/job_{jid}/last.pt"
    alice.storage.internal.put_bytes(key, b"weights")
    append_event(alice.db, jid, "checkpoint", {"name": "last.pt", "key": key, "size": 7, "epoch": 1}, source="trainer")
    append_event(alice.db, jid, "status", {"status": "stopped"}, source="trainer")
    assert h.job(jid).status == "stopped"
    assert h.sup.executor.is_alive(str(h.job(jid).external_id), spec)  # the trainer has not exited yet
    return jid


def after_resume(h: Harness, jid: int) -> list[str]:
    statuses = h.statuses(jid)
    return statuses[len(statuses) - 1 - statuses[::-1].index("stopped") :]


@pytest.mark.parametrize("max_retries", [2, 0])
def test_resume_while_the_stopped_trainer_still_exits_waits_for_its_exit(
    alice: ToolContext, make_harness: Any, max_retries: int
) -> None:
    # The page's Resume button is pressed the moment the card shows "stopped": the resume is
    # accepted, and the new attempt starts only once the old trainer has exited.
    h = make_harness(slots=1, max_retries=max_retries)
    jid = stop_until_reported(alice, h)
    jobs.resume_job(alice, jid, supervisor=h.sup)
    assert h.job(jid).status == "queued" and not h.job(jid).stop_requested
    done = h.wait_status(jid, "completed", "failed", timeout=30)
    assert done.status == "completed", (done.error, h.statuses(jid))
    assert after_resume(h, jid) == ["stopped", "queued", "resuming", "completed"]
    assert "interrupted" not in h.statuses(jid) and done.attempts == 1
    log = (h.sup.runtime.job_dir(jid) / "trainer.log").read_text()
    assert log.index("exiting 130") < log.index("--resume")


@pytest.mark.parametrize("slots", [1, 2])
def test_a_resume_the_supervisor_did_not_see_coming_is_told_apart_by_attempt(
    alice: ToolContext, make_harness: Any, slots: int
) -> None:
    # A replica that has no supervisor at hand resumes the job while its stopped trainer still
    # exits: the late exit 130 belongs to the old attempt.
    h = make_harness(slots=slots, max_retries=0)
    jid = stop_until_reported(alice, h)
    jobs.resume_job(alice, jid)  # (no supervisor is registered for this engine)
    assert h.job(jid).status == "queued" and not h.job(jid).stop_requested and h.job(jid).attempts == 0
    done = h.wait_status(jid, "completed", "failed", timeout=30)
    assert done.status == "completed", (done.error, h.statuses(jid))
    assert after_resume(h, jid) == ["stopped", "queued", "resuming", "completed"]
    assert "interrupted" not in h.statuses(jid) and done.attempts == 1
    # one trainer at a time: the resumed attempt started only after the old one had exited
    log = (h.sup.runtime.job_dir(jid) / "trainer.log").read_text()
    assert log.index("exiting 130") < log.index("--resume")


@pytest.mark.slow
def test_the_real_trainer_resumed_the_moment_it_reports_stopped(tmp_path: Path) -> None:
    """The real trainer (timm resnet18 on 32x32 images) under the real server, with retries off:
    resume is asked for as soon as the job shows ``stopped`` (the trainer still exits); it is
    accepted at once, and the job then completes with no ``interrupted`` on the way."""
    from tests.live_server import API, statuses
    from tests.web.test_jobs_reliability import Env

    env = Env(tmp_path, job_max_retries=0)
    try:
        job = env.create(epochs=3)
        env.wait_epoch(job["id"], 1)
        assert env.client.post(f"{API}/jobs/{job['id']}/stop", headers=env.headers).status_code == 200
        env.wait(job["id"], "stopped", timeout=120)
        r = env.client.post(f"{API}/jobs/{job['id']}/resume", headers=env.headers)
        assert r.status_code == 200, r.text
        final = env.wait(job["id"], "completed", "failed", timeout=180)
        assert final["status"] == "completed", final["error"]
        assert "interrupted" not in statuses(env.events(job["id"]))
    finally:
        env.close()
