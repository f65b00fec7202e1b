"""tools.estimates: the speed a finished job measured (from its own events), the duration estimate
made from it (range, basis text), the fallbacks for a first job of a kind, and the confirmation
summary in English and Korean (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.chat import handle_message
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.conftest import MakeUser
from tests.event_helpers import make_job, make_owner
from tools import estimates, events
from tools.context import ToolContext
from tools.db.models import Dataset, DatasetSnapshot, JobThroughput, User
from tools.estimates import estimate_duration, record_job_throughput
from web.config import Settings

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_snapshot(session_factory: Any, owner: int, num_images: int) -> str:
    with session_factory() as db:
        ds = Dataset(owner_id=owner, name=f"d-{uuid.uuid4().hex[:12]}", num_images=num_images, labeled=True)
        db.add(ds)
        db.flush()
        snap = DatasetSnapshot(dataset_id=ds.id, version=1, num_images=num_images)
        db.add(snap)
        db.commit()
        return snap.id


def finished_job(
    session_factory: Any,
    owner: int,
    *,
    model: str = "resnet18",
    framework: str = "timm",
    image_size: int = 32,
    num_images: int = 100,
    interrupted: bool = False,
) -> int:
    """A job whose events say: process started at -2 s (preparing at 0 s with process_s 2), running
    at 3 s on the CPU, epoch 1 trained 10 s + validated 2 s, epochs 2 and 3 trained 6 s +
    validated 2 s each, completed at 35 s. So: wall 37 s, steady epoch 8 s, fixed cost 37 - 3*8 = 13 s;
    train images 80 in 6 s, val images 20 in 2 s."""
    snap = make_snapshot(session_factory, owner, num_images)
    hp = {"epochs": 3, "image_size": image_size, "val_fraction": 0.2, "batch_size": 16, "device": "auto"}
    job_id = make_job(
        session_factory,
        owner,
        status="queued",
        framework=framework,
        model_name=model,
        snapshot_id=snap,
        hyperparameters=hp,
        epochs=3,
    )[0]
    with session_factory() as db:
        add = events.append_event
        add(db, job_id, "status", {"status": "preparing", "process_s": 2.0}, ts=ts(0), source="trainer")
        add(db, job_id, "status", {"status": "running", "device": "cpu"}, ts=ts(3), source="trainer")
        t = 3.0
        for epoch, (train_s, val_s) in enumerate([(10.0, 2.0), (6.0, 2.0), (6.0, 2.0)], start=1):
            t += train_s + val_s
            data = {"epoch": epoch, "epochs": 3, "metrics": {"val/acc": 0.5}, "eta_s": 1.0}
            data |= {"epoch_s": train_s + val_s, "train_s": train_s, "val_s": val_s, "batches": 5}
            add(db, job_id, "epoch", data, ts=ts(t), source="trainer")
            if interrupted and epoch == 2:
                add(db, job_id, "status", {"status": "interrupted"}, ts=ts(t + 0.1), source="server")
                add(db, job_id, "status", {"status": "resuming"}, ts=ts(t + 0.2), source="server")
        add(db, job_id, "done", {"status": "completed", "last_epoch": 3}, ts=ts(35), source="trainer")
        add(db, job_id, "status", {"status": "completed"}, ts=ts(35.5), source="trainer")
    return job_id


def rows(session_factory: Any) -> list[JobThroughput]:
    with session_factory() as db:
        return list(db.query(JobThroughput).order_by(JobThroughput.id))


def context(session_factory: Any, owner: int) -> Any:
    db = session_factory()
    return db, ToolContext(db=db, user=db.get(User, owner), storage=None, work_dir=Path("."))  # type: ignore[arg-type]


def plan(model: str = "resnet18", framework: str = "timm", epochs: int = 5, image_size: int = 32) -> dict[str, Any]:
    hp = {"epochs": epochs, "image_size": image_size, "val_fraction": 0.2, "device": "auto"}
    return {"framework": framework, "model_name": model, "hyperparameters": hp}


# ------------------------------------------------------------------------------------ recording


def test_a_completed_job_records_its_measured_speed_and_fixed_cost(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    job_id = finished_job(session_factory, owner)
    [row] = rows(session_factory)
    assert row.job_id == job_id
    assert (row.framework, row.model_name, row.image_size, row.size_bucket, row.device_kind) == (
        "timm",
        "resnet18",
        32,
        32,
        "cpu",
    )
    assert (row.epochs, row.train_images, row.val_images, row.batch_size) == (3, 80, 20, 16)
    assert row.train_ips == pytest.approx(80 / 6)  # epochs after the first: 6 s of training each
    assert row.val_ips == pytest.approx(20 / 2)
    assert row.wall_s == pytest.approx(37.0)  # process start (-2 s) to the done event (35 s)
    assert row.overhead_s == pytest.approx(37.0 - 3 * 8.0)


def test_an_interrupted_and_resumed_job_is_not_recorded(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    finished_job(session_factory, owner, interrupted=True)
    assert rows(session_factory) == []


def test_a_job_that_has_not_completed_is_not_recorded(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    job_id = make_job(session_factory, owner, status="queued")[0]
    with session_factory() as db:
        events.append_event(db, job_id, "status", {"status": "running", "device": "cpu"}, ts=ts(0))
        events.append_event(db, job_id, "epoch", {"epoch": 1, "epochs": 2, "train_s": 1.0, "val_s": 0.1}, ts=ts(2))
        events.append_event(db, job_id, "status", {"status": "stopped"}, ts=ts(3))
        job = db.get(events.Job, job_id)
        assert job is not None and record_job_throughput(db, job, ts(3)) is None  # no snapshot: no image count
    assert rows(session_factory) == []


# ------------------------------------------------------------------------------------ estimating


def test_the_estimate_of_a_later_job_of_the_same_kind_uses_the_recorded_speed(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    finished_job(session_factory, owner)
    db, ctx = context(session_factory, owner)
    with db:
        est = estimate_duration(ctx, {"num_images": 200}, plan=plan(epochs=5))
    # 200 images: 160 train at 80/6 img/s = 12 s, 40 val at 10 img/s = 4 s, per epoch; + 13 s fixed
    predicted = 13.0 + 5 * (160 / (80 / 6) + 40 / 10)
    assert est.expected_s == pytest.approx(predicted, abs=0.1)
    assert est.low_s < predicted < est.high_s
    assert est.high_s / est.low_s < 2.0 + 1e-6  # one earlier job: within 1.4x either way
    assert est.kind == "same" and est.jobs == 1 and est.device_kind == "cpu"
    assert est.basis == "based on 1 earlier resnet18 job at 32 px on this CPU"
    assert est.basis_ko == "이 CPU에서 32 px로 학습한 resnet18 작업 1개 기준"


def test_more_earlier_jobs_narrow_to_their_spread_and_say_how_many(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    for _ in range(3):
        finished_job(session_factory, owner)
    db, ctx = context(session_factory, owner)
    with db:
        est = estimate_duration(ctx, {"num_images": 100}, plan=plan(epochs=3))
    assert est.expected_s == pytest.approx(37.0, abs=0.1)  # the recorded jobs' own wall time
    assert est.low_s == pytest.approx(37.0 / 1.25, abs=0.1) and est.high_s == pytest.approx(37.0 * 1.25, abs=0.1)
    assert est.basis == "based on 3 earlier resnet18 jobs at 32 px on this CPU"


def test_first_job_of_a_kind_falls_back_and_says_on_what(session_factory: Any) -> None:
    owner = make_owner(session_factory)
    db, ctx = context(session_factory, owner)
    with db:
        nothing = estimate_duration(ctx, {"num_images": 100}, plan=plan())
    assert nothing.kind == "prior" and nothing.jobs == 0
    assert nothing.basis.startswith("no earlier job on this machine: rough prior for timm")
    assert "speed probe of this CPU" in nothing.basis and "CPU 속도 측정" in nothing.basis_ko
    assert nothing.high_s == pytest.approx(nothing.expected_s * 3, rel=0.01)

    finished_job(session_factory, owner)
    db, ctx = context(session_factory, owner)
    with db:
        other_size = estimate_duration(ctx, {"num_images": 100}, plan=plan(image_size=64, epochs=3))
        other_model = estimate_duration(ctx, {"num_images": 100}, plan=plan(model="resnet50", epochs=3))
        other_fw = estimate_duration(
            ctx, {"num_images": 100}, plan=plan(model="yolo11n", framework="ultralytics", epochs=3)
        )
    assert other_size.kind == "size"
    assert other_size.expected_s == pytest.approx(13.0 + 3 * 8.0 * 4, abs=0.1)  # 4x the pixels
    assert other_size.basis.startswith("no earlier resnet18 job at 64 px: scaled by image area from 1 resnet18")

    assert other_model.kind == "model"
    assert other_model.expected_s == pytest.approx(13.0 + 3 * 8.0 * 25.6 / 11.7, abs=0.1)  # by parameters
    assert other_model.basis.startswith("no earlier resnet50 job: rough estimate from resnet18 job(s) on this CPU")
    assert "resnet50 작업 기록이 없어" in other_model.basis_ko

    assert other_fw.kind == "calibrated" and other_fw.jobs == 1
    assert "calibrated with 1 timm resnet18 job(s) on this CPU" in other_fw.basis
    assert other_fw.low_s < other_fw.expected_s < other_fw.high_s


def test_size_buckets_and_device_kinds() -> None:
    assert [estimates.size_bucket(s) for s in (8, 32, 33, 224, 640, 5000)] == [32, 32, 64, 224, 640, 1280]
    assert [estimates.device_kind(d) for d in ("cuda:1", "cpu", "mps", "auto", None)] == ["cuda", "cpu", "mps", "", ""]
    assert estimates.split_sizes(100, 0.2) == (80, 20) and estimates.split_sizes(3, 0.1) == (2, 1)


# ------------------------------------------------------------------------------------ summary


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> int:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"])


def test_the_confirmation_summary_shows_the_range_and_its_basis_in_both_languages(
    client: TestClient, alice: int
) -> None:
    app: Any = client.app
    factory = app.state.session_factory
    finished_job(factory, alice, num_images=12)  # pets has 12 images, like this finished job's snapshot
    with tool_context(app, alice) as ctx:
        en = handle_message(ctx, None, "train resnet18 on pets for 3 epochs, image size 32")
    with tool_context(app, alice) as ctx:
        ko = handle_message(ctx, None, "pets로 resnet18 3 에폭 학습해줘, 이미지 크기 32")
    assert en.state == "confirming" and ko.state == "confirming"
    assert en.summary is not None and ko.summary is not None
    est = en.summary["estimate"]
    assert est["kind"] == "same" and est["low_s"] < est["expected_s"] < est["high_s"]
    assert en.summary["estimated_duration_s"] == est["expected_s"]
    assert "- estimated duration: " in en.reply and " to " in en.reply
    assert "(based on 1 earlier resnet18 job at 32 px on this CPU)" in en.reply
    assert "about 15 s" not in en.reply
    assert "- 예상 소요 시간: " in ko.reply
    assert "(이 CPU에서 32 px로 학습한 resnet18 작업 1개 기준)" in ko.reply


def test_the_trainer_reports_each_epochs_measured_times_and_its_process_age() -> None:
    from trainer_runtime.progress import epoch_timing, process_age_s

    # epoch started at 10 s, its last batch ended at 18 s, validation and saving ended at 20 s
    assert epoch_timing(10.0, 18.0, 20.0, 5) == {"epoch_s": 10.0, "train_s": 8.0, "val_s": 2.0, "batches": 5}
    assert epoch_timing(10.0, None, 20.0, None) == {"epoch_s": 10.0}  # no batch seen: no split
    assert epoch_timing(None, 18.0, 20.0, 5) == {}
    age = process_age_s()
    assert age is not None and 0.0 <= age < 24 * 3600


def test_cpu_probe_is_one_thread_times_cores_and_the_load_takes_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from tools import estimates

    monkeypatch.setattr(estimates, "_measure_one_thread", lambda: 50.0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert estimates._measure_gflops() == 100.0
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 1.0, 1.0))
    assert estimates.cpu_share() == 0.5
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    assert estimates.cpu_share() == 1.0
