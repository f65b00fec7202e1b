"""Jobs with the real trainer (`python -m trainer_runtime`, timm resnet18 on a 32x32 two-class
dataset) against the real server under uvicorn (`tests.live_server.LiveServer`), so the trainer's
callbacks, the supervisor and the event store work together as in production.

SQLite only (each test trains for real for 20-60 s; the database paths are the same code that
tests/web/test_jobs_api.py and tests/tools/test_jobs.py run on PostgreSQL too).

    two jobs, one slot       -> the second starts when the first ends; queue_position 1, then 0
    stop during an epoch     -> stopped with best.pt and last.pt stored; resume -> completed
    kill -9 mid-epoch        -> interrupted -> resuming -> completed, every epoch reported once
    kill -9 every attempt    -> failed after the retries, with the error
    server restart mid-job   -> the new server adopts the running trainer; all events arrive once
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.live_server import (
    API,
    LiveServer,
    classification_files,
    epoch_events,
    events,
    free_port,
    get_job,
    register,
    statuses,
    upload_dataset,
    wait_for,
    wait_status,
)
from tools.db.models import Job, JobCheckpoint
from web.config import Settings
from web.main import create_app

pytestmark = pytest.mark.slow

TERMINAL = ("completed", "failed", "stopped")


class Env:
    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.port = free_port()
        values: dict[str, Any] = {
            "callback_base_url": f"http://127.0.0.1:{self.port}",
            "max_concurrent_jobs": 1,
            "job_retry_base_delay_s": 0.5,
            "stop_grace_period_s": 60,
        }
        values.update(overrides)
        self.settings: Settings = make_settings(f"sqlite:///{tmp_path / 'app.db'}", tmp_path, **values)
        self.server: LiveServer | None = None
        self.client = self.start().client()
        self.headers = register(self.client, "alice@example.com")
        upload_dataset(self.client, self.headers, "tiny", classification_files(40))

    @property
    def app(self) -> Any:
        assert self.server is not None
        return self.server.app

    def start(self) -> LiveServer:
        self.server = LiveServer(create_app(self.settings), self.port).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def create(self, epochs: int = 3, **intent: Any) -> dict[str, Any]:
        body = {"dataset": "tiny", "model_name": "resnet18", "epochs": epochs, "image_size": 32, "batch_size": 8}
        body.update(intent)
        r = self.client.post(f"{API}/jobs", json={"intent": body}, headers=self.headers)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    def job(self, job_id: int) -> dict[str, Any]:
        return get_job(self.client, self.headers, job_id)

    def wait(self, job_id: int, *wanted: str, timeout: float = 180.0) -> dict[str, Any]:
        return wait_status(self.client, self.headers, job_id, wanted, timeout)

    def wait_epoch(self, job_id: int, epoch: int, timeout: float = 120.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.job(job_id)
            assert job["status"] not in TERMINAL, job
            return job if job["epochs_completed"] >= epoch else None

        out: dict[str, Any] = wait_for(check, timeout, what=f"job {job_id} epoch {epoch}")
        return out

    def pid(self, job_id: int) -> int | None:
        with self.app.state.session_factory() as db:
            job = db.get(Job, job_id)
            return int(job.external_id) if job is not None and job.external_id else None

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return events(self.client, self.headers, job_id)

    def checkpoint_rows(self, job_id: int) -> dict[str, JobCheckpoint]:
        with self.app.state.session_factory() as db:
            rows = db.query(JobCheckpoint).filter(JobCheckpoint.job_id == job_id).all()
            for r in rows:
                db.expunge(r)
            return {r.name: r for r in rows}

    def close(self) -> None:
        if self.server is not None:
            self.app.state.supervisor.kill_all()
        self.client.close()
        self.stop()


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Any]:
    made: list[Env] = []

    def factory(**overrides: Any) -> Env:
        env = Env(tmp_path, **overrides)
        made.append(env)
        return env

    yield factory
    for env in made:
        env.close()


def assert_gapless(evs: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert len({e["event_id"] for e in evs}) == len(evs)


def assert_checkpoints_stored(env: Env, job: dict[str, Any]) -> None:
    names = {c["name"] for c in job["checkpoints"]}
    assert names == {"best.pt", "last.pt"}, job["checkpoints"]
    rows = env.checkpoint_rows(job["id"])
    assert set(rows) == {"best.pt", "last.pt"}
    storage = env.app.state.storage
    for row in rows.values():
        assert storage.internal.exists(row.key) and storage.internal.stat(row.key).size == row.size


def test_two_jobs_one_slot_the_second_starts_when_the_first_ends(make_env: Any) -> None:
    env: Env = make_env()
    first = env.create(epochs=2)
    second = env.create(epochs=2)
    assert second["queue_position"] == 1
    env.wait(first["id"], "running")
    waiting = env.job(second["id"])
    assert waiting["status"] == "queued" and waiting["queue_position"] == 1
    done = env.wait(first["id"], "completed")
    started = env.wait(second["id"], "preparing", "running", "completed")
    assert started["queue_position"] == 0
    final = env.wait(second["id"], "completed")
    assert final["started_at"] >= done["finished_at"]
    for job in (done, final):
        assert epoch_events(env.events(job["id"])) == [1, 2]
        assert_checkpoints_stored(env, job)


def test_stop_during_an_epoch_stores_best_and_last_then_resume_completes(make_env: Any) -> None:
    env: Env = make_env()
    job = env.create(epochs=4)
    env.wait_epoch(job["id"], 1)
    time.sleep(0.5)  # inside epoch 2
    r = env.client.post(f"{API}/jobs/{job['id']}/stop", headers=env.headers)
    assert r.status_code == 200 and r.json()["stop_requested"]
    stopped = env.wait(job["id"], "stopped", timeout=120)
    assert stopped["epochs_completed"] < 4
    assert_checkpoints_stored(env, stopped)
    evs = env.events(job["id"])
    done = [e for e in evs if e["type"] == "done"]
    assert done and done[-1]["data"]["status"] == "stopped"
    assert statuses(evs)[-1] == "stopped" and "failed" not in statuses(evs)
    wait_for(lambda: job["id"] not in env.app.state.supervisor.running_jobs(), 60, what="trainer exit")

    r = env.client.post(f"{API}/jobs/{job['id']}/resume", headers=env.headers)
    assert r.status_code == 200, r.text
    final = env.wait(job["id"], "completed")
    evs = env.events(job["id"])
    assert_gapless(evs)
    assert sorted(epoch_events(evs)) == [1, 2, 3, 4] and len(epoch_events(evs)) == 4
    assert_checkpoints_stored(env, final)
    assert final["epochs_completed"] == 4


def test_kill_9_mid_epoch_resumes_and_completes_every_epoch_once(make_env: Any) -> None:
    env: Env = make_env()
    job = env.create(epochs=4)
    env.wait_epoch(job["id"], 1)
    time.sleep(0.5)
    pid = env.pid(job["id"])
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    final = env.wait(job["id"], "completed", "failed")
    assert final["status"] == "completed", final
    assert final["attempts"] == 2
    evs = env.events(job["id"])
    assert_gapless(evs)
    seen = statuses(evs)
    assert seen.index("interrupted") < seen.index("resuming") < len(seen) - 1 and seen[-1] == "completed"
    interrupted = next(e for e in evs if e["type"] == "status" and e["data"]["status"] == "interrupted")
    assert interrupted["data"]["exit_code"] == -9
    epochs = epoch_events(evs)
    assert Counter(epochs) == Counter({1: 1, 2: 1, 3: 1, 4: 1}), epochs
    assert_checkpoints_stored(env, final)


def test_retries_exhausted_fail_with_the_error(make_env: Any) -> None:
    env: Env = make_env(job_max_retries=1)
    job = env.create(epochs=3)
    pids: list[int] = []
    for _ in range(2):
        pid = wait_for(lambda: (p := env.pid(job["id"])) not in (None, *pids) and p, 60, what="a new trainer")
        pids.append(pid)
        time.sleep(1.0)  # let it start reporting
        os.kill(pid, signal.SIGKILL)
    failed = env.wait(job["id"], "failed", "completed", timeout=60)
    assert failed["status"] == "failed"
    assert failed["attempts"] == 2
    assert "gave up after 2 attempt(s) (killed by signal 9)" in (failed["error"] or "")
    seen = statuses(env.events(job["id"]))
    assert seen[0] == "queued" and seen[-1] == "failed"
    assert seen.count("interrupted") == 1


def test_server_restart_mid_job_adopts_the_running_trainer(make_env: Any) -> None:
    env: Env = make_env()
    job = env.create(epochs=4)
    env.wait_epoch(job["id"], 1)
    pid = env.pid(job["id"])
    env.stop()  # the server goes away; the trainer keeps training and retries its callbacks
    time.sleep(2.0)
    assert pid is not None and Path(f"/proc/{pid}").exists()
    env.start()  # a new app on the same data dir and port
    supervisor = env.app.state.supervisor
    handle = supervisor.handle(job["id"])
    assert handle is not None and handle.adopted and handle.external_id == str(pid)
    final = env.wait(job["id"], "completed", "failed")
    assert final["status"] == "completed", final
    assert final["attempts"] == 1
    evs = env.events(job["id"])
    assert_gapless(evs)
    assert Counter(epoch_events(evs)) == Counter({1: 1, 2: 1, 3: 1, 4: 1})
    assert "interrupted" not in statuses(evs)
    assert_checkpoints_stored(env, final)
    wait_for(lambda: job["id"] not in supervisor.running_jobs(), 150, what="the adopted trainer to exit")
    assert env.job(job["id"])["status"] == "completed"


def test_callback_endpoint_unreachable_for_30_s_loses_nothing(make_env: Any) -> None:
    """The server is gone for 30 s while the trainer trains and finishes: the trainer keeps its
    events in its spool, retries with backoff and delivers them all once the server is back."""
    env: Env = make_env()
    job = env.create(epochs=4)
    env.wait_epoch(job["id"], 1)
    pid = env.pid(job["id"])
    seen_before = {e["seq"] for e in env.events(job["id"])}
    env.stop()
    time.sleep(30.0)
    env.start()
    final = env.wait(job["id"], "completed", "failed")
    assert final["status"] == "completed", final
    evs = env.events(job["id"])
    assert_gapless(evs)
    assert seen_before <= {e["seq"] for e in evs}
    assert Counter(epoch_events(evs)) == Counter({1: 1, 2: 1, 3: 1, 4: 1})
    assert [e for e in evs if e["type"] == "done"], "the done event was delivered after the outage"
    assert pid is not None
    assert_checkpoints_stored(env, final)
