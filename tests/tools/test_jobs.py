"""`tools.jobs`, `tools.catalog` and `tools.supervisor` called directly (as the agent does), on
SQLite and PostgreSQL (`db_url`).

Validation, defaults, snapshots and the preset resolution need no process. The supervisor tests
run real subprocesses through `LocalExecutor` with a fake framework interpreter
(`tests.live_server.write_fake_python`): exit codes, signals, retries, restarts. The real trainer
is exercised in tests/web/test_jobs_reliability.py.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.live_server import classification_files, detection_files, wait_for, write_fake_python
from tools import catalog, jobs
from tools import datasets as ds_svc
from tools.context import ToolContext
from tools.db.models import DatasetImage, DatasetSnapshot, Job, JobCheckpoint, JobEvent, Project, User
from tools.errors import ConflictError, InvalidInputError, NotFoundError
from tools.events import append_event
from tools.executors import LocalExecutor
from tools.intent import TrainingIntent
from tools.supervisor import Supervisor, SupervisorConfig
from tools.uploads import Staging
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import DualStorageClient, LocalObjectStore, StorageConfig, StoreConfig


@pytest.fixture
def storage(tmp_path: Path) -> DualStorageClient:
    root = tmp_path / "storage"
    return DualStorageClient(
        LocalObjectStore(root / "external", "training-datasets", "external"),
        LocalObjectStore(root / "internal", "training-checkpoints", "internal"),
    )


@pytest.fixture
def users(session_factory: sessionmaker[Session]) -> dict[str, int]:
    out = {}
    with session_factory() as db:
        for name in ("alice", "bob"):
            u = User(email=f"{name}@example.com", hashed_password="x")
            db.add(u)
            db.commit()
            out[name] = u.id
    return out


class Ctx:
    def __init__(self, factory: sessionmaker[Session], storage: DualStorageClient, work: Path) -> None:
        self.factory, self.storage, self.work = factory, storage, work
        self.sessions: list[Session] = []

    def __call__(self, user_id: int) -> ToolContext:
        db = self.factory()
        self.sessions.append(db)
        return ToolContext(db=db, user=db.get(User, user_id), storage=self.storage, work_dir=self.work)


@pytest.fixture
def ctx_for(session_factory: sessionmaker[Session], storage: DualStorageClient, tmp_path: Path) -> Iterator[Ctx]:
    c = Ctx(session_factory, storage, tmp_path / "work")
    yield c
    for s in c.sessions:
        s.close()


def make_dataset(ctx: ToolContext, name: str, files: dict[str, bytes], visibility: str = "private") -> str:
    did = ds_svc.create_dataset(ctx, name, visibility=visibility).id
    st = Staging(ctx.work_dir, ctx.limits)
    for rel, data in files.items():
        st.add_file(rel, data)
    with st:
        ds_svc.upload_staged(ctx, did, st, "auto")
    return did


@pytest.fixture
def alice(ctx_for: Ctx, users: dict[str, int]) -> ToolContext:
    ctx = ctx_for(users["alice"])
    make_dataset(ctx, "tiny", classification_files(20))
    make_dataset(ctx, "boxes", detection_files(6))
    return ctx


def intent(**kw: Any) -> TrainingIntent:
    kw.setdefault("dataset", "tiny")
    return TrainingIntent(**kw)


# ------------------------------------------------------------------------------------ catalog


def test_catalog_comes_from_the_adapters_and_names_defaults() -> None:
    names = {m["name"]: m for m in catalog.list_models()}
    assert names["resnet18"]["framework"] == "timm"
    assert names["yolo11n-seg"]["task_type"] == "instance_segmentation"
    assert names["facebook/detr-resnet-50"]["framework"] == "transformers"
    assert {m["framework"] for m in catalog.list_models(task_type="pose_estimation")} == {"ultralytics"}
    assert catalog.default_model("object_detection") == "yolo11n"
    assert catalog.default_model("image_classification") == "resnet18"
    assert catalog.default_model("image_classification", "ultralytics") == "yolo11n-cls"
    assert catalog.default_model("object_detection", "transformers") == "facebook/detr-resnet-50"
    with pytest.raises(InvalidInputError, match="timm cannot train object_detection"):
        catalog.default_model("object_detection", "timm")
    assert catalog.resolve_model("YOLO11n.pt").name == "yolo11n"
    with pytest.raises(InvalidInputError) as err:
        catalog.resolve_model("resnet-18x")
    assert "resnet18" in err.value.detail["suggestions"]
    caps = {"object_detection": {"status": "native"}, "instance_segmentation": {"status": "native"}}
    assert catalog.pick_task(caps) == "instance_segmentation"
    assert catalog.pick_task({"image_classification": {"status": "convertible"}}) == "image_classification"


def test_the_server_process_stays_torch_free() -> None:
    # A fresh interpreter: other tests of this session may have imported torch in-process.
    import subprocess
    import sys

    code = "import sys; from tools import catalog; catalog.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------------------------ create


def test_create_pins_an_automatic_snapshot_and_stores_the_resolved_preset(alice: ToolContext) -> None:
    job = jobs.create_job(alice, intent(model_name="resnet18", preset="medium", epochs=2, image_size=32))
    assert job["status"] == "queued" and job["framework"] == "timm" and job["task_type"] == "image_classification"
    snap = alice.db.get(DatasetSnapshot, job["snapshot_id"])
    assert snap is not None and snap.dataset_id == job["dataset_id"] and snap.name.startswith("auto")
    hp = job["hyperparameters"]
    assert hp["epochs"] == 2 and hp["image_size"] == 32 and hp["preset"] == "medium"
    # chosen (tools.defaults): 16 training images of 20 are too few for 8 steps an epoch, and a
    # batch stays at 8 or more for batch-norm's sake
    assert hp["batch_size"] == 8 and job["defaults"]["batch_size"]["value"] == 8
    assert "16 training images" in job["defaults"]["batch_size"]["why"]
    assert set(job["defaults"]) == {"batch_size"}  # epochs and image size were given
    assert hp["learning_rate"] == pytest.approx(0.001)  # the medium preset's rate, made explicit
    assert job["config"]["opt"] == "adamw" and job["config"]["mixup_alpha"] == pytest.approx(0.2)
    assert job["config"]["smoothing"] == pytest.approx(0.1)
    assert job["queue_position"] == 1 and job["attempts"] == 0 and job["checkpoints"] == []
    events = alice.db.scalars(select(JobEvent).where(JobEvent.job_id == job["id"])).all()
    assert [(e.seq, e.type, e.data["status"]) for e in events] == [(1, "status", "queued")]
    row = alice.db.get(Job, job["id"])
    assert row is not None and len(row.token_hash) == 64 and row.intent["model_name"] == "resnet18"


def _typical_side(ctx: ToolContext, dataset_id: str) -> int:
    sides = sorted(
        max(w, h)
        for w, h in ctx.db.execute(
            select(DatasetImage.width, DatasetImage.height).where(DatasetImage.dataset_id == dataset_id)
        )
    )
    return int(sides[len(sides) // 2])


def test_defaults_fill_what_the_request_leaves_out(alice: ToolContext) -> None:
    cls = jobs.create_job(alice, intent(), launch=False)
    assert (cls["model_name"], cls["task_type"]) == ("resnet18", "image_classification")
    assert cls["status"] == "preview" and cls["id"] is None
    # image size, batch and epochs come from the data (tools.defaults), each with its reason
    side = _typical_side(alice, cls["dataset_id"])
    chosen = cls["defaults"]
    assert set(chosen) == {"image_size", "batch_size", "epochs"}
    assert cls["hyperparameters"]["image_size"] == chosen["image_size"]["value"] == max(32, -(-side // 32) * 32)
    assert f"about {side} px" in chosen["image_size"]["why"] and "px" in chosen["image_size"]["why_ko"]
    assert cls["hyperparameters"]["epochs"] == chosen["epochs"]["value"]
    assert 10 <= chosen["epochs"]["value"] <= 100 and "training images" in chosen["epochs"]["why"]
    adv = jobs.create_job(alice, intent(preset="advanced"), launch=False)
    assert adv["hyperparameters"]["epochs"] == 50 and adv["config"]["model_ema"] is True
    assert "epochs" not in adv["defaults"]  # a named preset keeps its epochs
    yolo = jobs.create_job(alice, intent(framework="ultralytics"), launch=False)
    assert yolo["model_name"] == "yolo11n-cls"
    assert yolo["hyperparameters"]["image_size"] == cls["hyperparameters"]["image_size"]
    given = jobs.create_job(alice, intent(epochs=3, batch_size=4, image_size=64), launch=False)
    assert given["defaults"] == {} and given["hyperparameters"]["image_size"] == 64
    det = jobs.create_job(alice, intent(dataset="boxes"), launch=False)
    assert (det["model_name"], det["task_type"]) == ("yolo11n", "object_detection")
    assert det["config"]["lr0"] == det["hyperparameters"]["learning_rate"]
    # launch=False stores nothing
    assert alice.db.scalar(select(func.count()).select_from(Job)) == 0
    assert alice.db.scalar(select(func.count()).select_from(DatasetSnapshot)) == 0


def test_request_errors(alice: ToolContext, ctx_for: Ctx, users: dict[str, int]) -> None:
    with pytest.raises(InvalidInputError, match="name the dataset"):
        jobs.create_job(alice, TrainingIntent(model_name="resnet18"))
    with pytest.raises(NotFoundError, match=r"no dataset named 'tiny-x'.*'tiny'"):
        jobs.create_job(alice, intent(dataset="tiny-x"))
    with pytest.raises(InvalidInputError) as err:
        jobs.create_job(alice, intent(task_type="object_detection"))
    assert "image-level label" in err.value.message and err.value.detail["task_type"] == "object_detection"
    with pytest.raises(InvalidInputError) as err:
        jobs.create_job(alice, intent(model_name="resnet-18x"))
    assert "did you mean" in err.value.message and "resnet18" in err.value.detail["suggestions"]
    with pytest.raises(InvalidInputError, match=r"yolo11n trains object_detection.*yolo11n-cls"):
        jobs.create_job(alice, intent(model_name="yolo11n", task_type="image_classification"))
    with pytest.raises(InvalidInputError, match="batch_size 500 is larger"):
        jobs.create_job(alice, intent(model_name="resnet18", batch_size=500))
    with pytest.raises(InvalidInputError, match="optimizer"):
        jobs.create_job(alice, intent(model_name="resnet18", advanced_config={"optimizer": "bogus"}))
    with pytest.raises(InvalidInputError, match="epochs"):
        jobs.create_job(alice, intent(epochs=100_000))
    with pytest.raises(NotFoundError):
        jobs.create_job(alice, intent(), project_id=12345)
    bob = ctx_for(users["bob"])
    bob_project = Project(owner_id=users["bob"], name="bobs")
    bob.db.add(bob_project)
    bob.db.commit()
    with pytest.raises(NotFoundError):
        jobs.create_job(alice, intent(), project_id=bob_project.id)
    # alice's private dataset does not exist for bob, by name or by id
    tiny_id = jobs.create_job(alice, intent(), launch=False)["dataset_id"]
    for ref in ("tiny", tiny_id):
        with pytest.raises(NotFoundError):
            jobs.create_job(bob, intent(dataset=ref))
    assert alice.db.scalar(select(func.count()).select_from(Job)) == 0


def test_a_public_dataset_of_someone_else_can_be_trained(ctx_for: Ctx, users: dict[str, int]) -> None:
    owner = ctx_for(users["alice"])
    make_dataset(owner, "shared", classification_files(12), visibility="public")
    bob = ctx_for(users["bob"])
    project = Project(owner_id=users["bob"], name="p")
    bob.db.add(project)
    bob.db.commit()
    job = jobs.create_job(bob, intent(dataset="shared", epochs=1), project_id=project.id)
    assert job["project_id"] == project.id and job["snapshot_id"]
    assert jobs.list_jobs(bob, project_id=project.id).total == 1
    assert jobs.list_jobs(owner).total == 0


# ------------------------------------------------------------------------ read, stop, delete


def test_jobs_are_private_to_their_owner(alice: ToolContext, ctx_for: Ctx, users: dict[str, int]) -> None:
    job = jobs.create_job(alice, intent(epochs=1))
    bob = ctx_for(users["bob"])
    for call in (jobs.get_job, jobs.stop_job, jobs.resume_job, jobs.delete_job, jobs.job_metrics):
        with pytest.raises(NotFoundError):
            call(bob, job["id"])
    assert jobs.list_jobs(bob).items == []
    assert jobs.get_job(alice, job["id"]).id == job["id"]


def test_stop_queued_resume_and_delete(alice: ToolContext, storage: DualStorageClient) -> None:
    first = jobs.create_job(alice, intent(epochs=1))
    second = jobs.create_job(alice, intent(epochs=1))
    assert jobs.get_job(alice, second["id"]).queue_position == 2
    stopped = jobs.stop_job(alice, first["id"])
    assert stopped.status == "stopped" and stopped.model_dump()["stop_requested"] and stopped.finished_at
    assert jobs.get_job(alice, second["id"]).queue_position == 1
    with pytest.raises(ConflictError, match="already ended"):
        jobs.stop_job(alice, first["id"])
    with pytest.raises(ConflictError, match=r"no last\.pt"):
        jobs.resume_job(alice, first["id"])
    # a last.pt makes it resumable
    key = f"checkpoints/test-jobs/job_{first['id']}/last.pt"
    storage.internal.put_bytes(key, b"weights")
    append_event(alice.db, first["id"], "checkpoint", {"name": "last.pt", "key": key, "size": 7, "epoch": 1})
    resumed = jobs.resume_job(alice, first["id"])
    assert resumed.status == "queued" and not resumed.model_dump()["stop_requested"] and resumed.finished_at is None
    assert resumed.queue_position == 1  # without a supervisor: creation order, the older job first
    with pytest.raises(ConflictError, match="only stopped or failed"):
        jobs.resume_job(alice, first["id"])
    # finished jobs are deleted with their checkpoints (running ones too: tests/security/test_streams.py)
    alice.db.get(Job, second["id"]).status = "running"  # type: ignore[union-attr]
    alice.db.commit()
    out = jobs.delete_job(alice, first["id"])
    assert out == {
        "deleted": first["id"],
        "checkpoints_deleted": 1,
        "exports_deleted": 0,
        "test_runs_deleted": 0,
        "kept": [],
    }
    assert not storage.internal.exists(key)
    with pytest.raises(NotFoundError):
        jobs.get_job(alice, first["id"])
    assert alice.db.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == first["id"])) == 0
    assert alice.db.scalar(select(func.count()).select_from(JobCheckpoint)) == 0
    statuses = [j.status for j in jobs.list_jobs(alice).items]
    assert statuses == ["running"]
    assert jobs.list_jobs(alice, status="queued").total == 0
    with pytest.raises(InvalidInputError):
        jobs.list_jobs(alice, status="bogus")


def test_metrics_series_from_epoch_events(alice: ToolContext) -> None:
    job = jobs.create_job(alice, intent(epochs=3))
    jid = job["id"]
    append_event(alice.db, jid, "epoch", {"epoch": 1, "epochs": 3, "metrics": {"train/loss": 1.0, "val/acc": 0.5}})
    append_event(alice.db, jid, "epoch", {"epoch": 2, "epochs": 3, "metrics": {}, "recovered": True})
    append_event(alice.db, jid, "epoch", {"epoch": 3, "epochs": 3, "metrics": {"train/loss": 0.5, "val/acc": 0.9}})
    append_event(alice.db, jid, "checkpoint", {"name": "best.pt", "key": "k/best.pt", "size": 1, "epoch": 3})
    append_event(alice.db, jid, "checkpoint", {"name": "last.pt", "key": "k/last.pt", "size": 1, "epoch": 3})
    m = jobs.job_metrics(alice, jid)
    assert m.epochs == [1, 2, 3]
    assert m.series == {"train/loss": [1.0, None, 0.5], "val/acc": [0.5, None, 0.9]}
    assert m.checkpoints == {3: ["best.pt", "last.pt"]}
    assert m.best_epoch == 3 and m.best_metric_name == "val/acc"
    full = jobs.get_job(alice, jid)
    assert {c.name for c in full.checkpoints} == {"best.pt", "last.pt"}
    assert full.epochs_completed == 3


def test_build_spec_and_write_spec(alice: ToolContext, tmp_path: Path) -> None:
    job = jobs.create_job(alice, intent(epochs=2, image_size=32))
    runtime = jobs.JobRuntimeConfig(
        trainer_dir=tmp_path / "data" / "trainer",
        storage=StorageConfig(
            external=StoreConfig(bucket="training-datasets"),
            internal=StoreConfig(bucket="training-checkpoints"),
            local_root=Path("relative/storage"),
        ),
        callback_base_url="http://127.0.0.1:9999/",
        mlflow_tracking_uri="sqlite:///x.db",
        reporter_close_timeout_s=7.5,
    )
    row = alice.db.get(Job, job["id"])
    assert row is not None
    path = jobs.write_spec(row, runtime)
    assert path == runtime.job_dir(row.id) / "spec.json" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    spec = load_spec(path)
    assert spec.callback_url == f"http://127.0.0.1:9999/internal/jobs/{row.id}/events"
    assert spec.callback_token and jobs.hash_token(spec.callback_token) == row.token_hash
    assert spec.snapshot_id == job["snapshot_id"] and spec.dataset_id == job["dataset_id"]
    assert spec.hyperparameters.epochs == 2 and spec.hyperparameters.image_size == 32
    assert Path(spec.work_dir) == (tmp_path / "data" / "trainer").resolve()
    assert Path(spec.storage.local_root).is_absolute() and spec.mlflow.tracking_uri == "sqlite:///x.db"
    assert spec.reporter_close_timeout_s == 7.5  # the trainer reads it from its spec, not its environment
    assert json.loads(path.read_text())["framework"] == "timm"


# --------------------------------------------------------------------------------- supervisor


class Harness:
    """A supervisor over LocalExecutor with a fake interpreter for timm, ticked by the test."""

    def __init__(self, factory: sessionmaker[Session], tmp: Path, **fake: Any) -> None:
        self.factory = factory
        self.tmp = tmp
        self.published: list[dict[str, Any]] = []
        self.set_fake(**fake)
        self.sup = self.make()

    def set_fake(self, **fake: Any) -> None:
        write_fake_python(self.tmp / "fake-python", **fake)

    def make(self, **over: Any) -> Supervisor:
        cfg = dict(
            runtime=jobs.JobRuntimeConfig(
                trainer_dir=self.tmp / "trainer",
                storage=StorageConfig(
                    external=StoreConfig(bucket="training-datasets"),
                    internal=StoreConfig(bucket="training-checkpoints"),
                    local_root=self.tmp / "storage",
                ),
            ),
            slots=1,
            max_retries=2,
            retry_base_delay_s=0.2,
            stop_grace_s=1.0,
            tick_s=0.05,
        )
        cfg.update(over)
        executor = LocalExecutor({"timm": str(self.tmp / "fake-python")})
        return Supervisor(
            self.factory,
            executor,
            SupervisorConfig(**cfg),  # type: ignore[arg-type]
            publish=lambda jid, ev: self.published.append(ev),
        )

    def job(self, job_id: int) -> Job:
        with self.factory() as db:
            job = db.get(Job, job_id)
            assert job is not None
            db.expunge(job)
            return job

    def statuses(self, job_id: int) -> list[str]:
        with self.factory() as db:
            rows = db.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "status").order_by(JobEvent.seq)
            )
            return [d["status"] for d in rows if not d.get("ignored")]

    def wait_status(self, job_id: int, *wanted: str, timeout: float = 30.0) -> Job:
        def check() -> Job | None:
            self.sup.tick()
            job = self.job(job_id)
            return job if job.status in wanted else None

        result: Job = wait_for(check, timeout, interval=0.05, what=f"job {job_id} in {wanted}")
        return result


@pytest.fixture
def harness(session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[Harness]:
    h = Harness(session_factory, tmp_path, mode="sleep", seconds=0.3, code=0)
    yield h
    for handle in list(h.sup._running.values()):
        h.sup.executor.kill(handle)
    h.sup.shutdown(timeout=5)


def test_fifo_queue_one_slot_positions_and_completion(alice: ToolContext, harness: Harness) -> None:
    a = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    b = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    assert jobs.get_job(alice, b["id"]).queue_position == 2  # explicit supervisor, nothing started yet
    harness.sup.tick()
    assert harness.sup.running_jobs() == [a["id"]]
    assert harness.job(a["id"]).status == "preparing" and harness.job(a["id"]).attempts == 1
    assert harness.sup.queue_positions(alice.db) == {b["id"]: 1}
    harness.wait_status(a["id"], "completed")
    harness.wait_status(b["id"], "preparing", "completed")
    assert harness.sup.queue_positions(alice.db) == {}
    harness.wait_status(b["id"], "completed")
    assert harness.statuses(a["id"]) == ["queued", "completed"]
    assert harness.job(a["id"]).external_id and harness.job(a["id"]).finished_at is not None
    assert [e["data"]["status"] for e in harness.published if e["job_id"] == a["id"]] == ["queued", "completed"]


def test_crash_is_retried_with_resume_and_growing_delays_then_fails(alice: ToolContext, harness: Harness) -> None:
    harness.set_fake(mode="exit", code=1)
    job = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    t0 = time.monotonic()
    failed = harness.wait_status(job["id"], "failed")
    assert time.monotonic() - t0 >= 0.2 + 0.4  # base * 2^0, then base * 2^1
    assert failed.attempts == 3  # first run + max_retries 2
    assert failed.error is not None and "gave up after 3 attempt(s) (exit status 1)" in failed.error
    assert "failing on purpose" in failed.error  # the log tail
    assert harness.statuses(job["id"]) == [
        "queued",
        "interrupted",
        "resuming",
        "interrupted",
        "resuming",
        "failed",
    ]
    log = (harness.sup.runtime.job_dir(job["id"]) / "trainer.log").read_text()
    assert log.count("--resume") == 2  # retries resume; the first attempt does not
    with harness.factory() as db:
        interrupted = [
            d
            for d in db.scalars(select(JobEvent.data).where(JobEvent.job_id == job["id"]))
            if d["status"] == "interrupted"
        ]
    assert [d["retry_in_s"] for d in interrupted] == [pytest.approx(0.2), pytest.approx(0.4)]


def test_exit_2_and_config_errors_are_not_retried(alice: ToolContext, harness: Harness) -> None:
    harness.set_fake(mode="exit", code=2)
    job = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    failed = harness.wait_status(job["id"], "failed")
    assert failed.attempts == 1 and "failing on purpose" in (failed.error or "")
    harness.set_fake(mode="exit", code=1)
    job2 = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job2["id"], "preparing")
    append_event(
        alice.db, job2["id"], "error", {"message": "unknown config key", "error_type": "config"}, source="trainer"
    )
    failed2 = harness.wait_status(job2["id"], "failed")
    assert failed2.attempts == 1 and failed2.error == "unknown config key"


def test_stop_running_and_stop_while_waiting_for_a_retry(alice: ToolContext, harness: Harness) -> None:
    harness.set_fake(mode="sleep", seconds=60)
    job = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job["id"], "preparing")
    time.sleep(0.3)
    jobs.stop_job(alice, job["id"], supervisor=harness.sup)
    stopped = harness.wait_status(job["id"], "stopped")
    assert stopped.attempts == 1 and harness.statuses(job["id"])[-1] == "stopped"
    # a crash leaves the job waiting for its retry; a stop then ends it at once
    harness.sup.shutdown()  # (gives the leader lock up for the next supervisor)
    harness.sup = harness.make(retry_base_delay_s=30)
    harness.set_fake(mode="exit", code=1)
    job2 = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job2["id"], "interrupted")
    jobs.stop_job(alice, job2["id"], supervisor=harness.sup)
    harness.wait_status(job2["id"], "stopped", timeout=5)
    assert harness.sup.pending_retries() == {}


def test_reconcile_adopts_a_live_trainer_and_resumes_a_dead_one(
    alice: ToolContext, harness: Harness, session_factory: sessionmaker[Session]
) -> None:
    harness.sup = harness.make(slots=2)
    harness.set_fake(mode="sleep", seconds=1.5, code=0)
    live = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    dead = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.sup.tick()
    assert harness.sup.running_jobs() == [live["id"], dead["id"]]
    waiting = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    # the server dies: its supervisor is gone (with its leader lock), one trainer is killed with it
    old = harness.sup
    old.executor.kill(old._running[dead["id"]])
    old.step_down()  # forgets its trainers without stopping them, like a dead process
    assert old._running == {} and not old.is_leader
    # a made-up row (as other tools' tests insert) is not the supervisor's business
    with session_factory() as db:
        stray = Job(owner_id=alice.user.id, framework="timm", model_name="resnet18", task_type="image_classification")  # type: ignore[union-attr]
        db.add(stray)
        db.commit()
        stray_id = stray.id
    time.sleep(0.3)
    harness.sup = harness.make(slots=2)
    report = harness.sup.reconcile()
    assert report["adopted"] == [live["id"]]
    assert report["crashed"] == [dead["id"]]
    assert report["queued"] == [waiting["id"]]
    assert harness.job(dead["id"]).status == "interrupted"
    harness.wait_status(live["id"], "completed")
    harness.wait_status(dead["id"], "completed")
    harness.wait_status(waiting["id"], "completed")
    assert harness.statuses(dead["id"]) == ["queued", "interrupted", "resuming", "completed"]
    # the adopted trainer's exit status is unknown and it reported nothing: treated as a crash
    assert harness.statuses(live["id"])[:2] == ["queued", "interrupted"]
    assert harness.job(stray_id).status == "queued" and harness.job(stray_id).attempts == 0


def test_a_trainer_reported_training_failure_is_retried(alice: ToolContext, harness: Harness) -> None:
    harness.sup = harness.make(max_retries=1)
    harness.set_fake(mode="sleep", seconds=1.0, code=1)
    job = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job["id"], "preparing")
    error = {"message": "RuntimeError: CUDA out of memory", "error_type": "training"}
    append_event(alice.db, job["id"], "error", error, source="trainer")
    append_event(alice.db, job["id"], "status", {"status": "failed"}, source="trainer")
    harness.wait_status(job["id"], "interrupted", "resuming")  # reopened although the trainer said failed
    failed = harness.wait_status(job["id"], "failed", timeout=30)
    assert failed.attempts == 2
    assert failed.error is not None and failed.error.startswith("gave up after 2 attempt(s) (exit status 1)")
    assert harness.statuses(job["id"]) == ["queued", "failed", "interrupted", "resuming", "failed"]


def test_the_mlflow_run_id_from_the_trainers_events_needs_no_shared_disk(
    alice: ToolContext, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a Kubernetes pod: its output/mlflow_run_id file is not on the server's disk)
    ended: list[tuple[str | None, str]] = []
    monkeypatch.setattr(
        Supervisor, "_end_mlflow_run", lambda self, job, status: ended.append((job.mlflow_run_id, status))
    )
    harness.sup = harness.make(max_retries=0)
    harness.set_fake(mode="sleep", seconds=1.0, code=1)
    job = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job["id"], "preparing")
    log = {"level": "info", "message": "MLflow run abc123", "mlflow_run_id": "abc123"}
    append_event(alice.db, job["id"], "log", log, source="trainer")  # as the runner reports it
    assert harness.job(job["id"]).mlflow_run_id == "abc123"
    failed = harness.wait_status(job["id"], "failed")
    assert not (harness.sup.runtime.job_dir(job["id"]) / "output" / "mlflow_run_id").exists()
    assert failed.mlflow_run_id == "abc123" and ended == [("abc123", "failed")]  # marked ended, not left RUNNING
    # a local trainer's run id file is still read (the fallback) and agrees
    harness.set_fake(mode="sleep", seconds=0.5, code=0)
    job2 = jobs.create_job(alice, intent(epochs=1), supervisor=harness.sup)
    harness.wait_status(job2["id"], "preparing")
    out = harness.sup.runtime.job_dir(job2["id"]) / "output"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mlflow_run_id").write_text("def456\n")
    assert harness.wait_status(job2["id"], "completed").mlflow_run_id == "def456"


def test_small_detection_jobs_get_one_step_per_batch_and_the_auto_optimizer(alice: ToolContext) -> None:
    det = jobs.create_job(alice, intent(dataset="boxes"), launch=False)
    hp, chosen = det["hyperparameters"], det["defaults"]
    assert set(chosen) >= {"image_size", "batch_size", "epochs", "nbs", "optimizer"}
    # what the trainer gets (it resolves the config again from the hyper-parameters)
    assert hp["advanced_config"]["nbs"] == hp["batch_size"] and hp["advanced_config"]["optimizer"] == "AdamW"
    assert det["config"]["optimizer"] == "AdamW" and det["config"]["nbs"] == hp["batch_size"]
    assert (
        det["config"]["lr0"] == hp["learning_rate"]
        and f"AdamW at {hp['learning_rate']:g}" in chosen["optimizer"]["why"]
    )
    assert det["config"]["warmup_bias_lr"] == 0.0
    # the person's own optimizer and learning rate are kept
    own = jobs.create_job(
        alice, intent(dataset="boxes", learning_rate=0.02, advanced_config={"optimizer": "sgd"}), launch=False
    )
    assert "optimizer" not in own["defaults"] and own["config"]["optimizer"] == "SGD" and own["config"]["lr0"] == 0.02
    assert own["config"]["nbs"] == own["hyperparameters"]["batch_size"]
