"""Fine-tuning from an earlier job over the API and the chat: `POST /api/v1/jobs` with
`intent.init_from_job` (another user's job 404, another architecture 422 naming both, a missing
checkpoint 409, the model taken from the source job, `init_from` in the job JSON), the trainer spec
carrying the checkpoint's store key, and the chat's confirmation in English and Korean. The trainers
are a fake interpreter (nothing trains here; the real transfer is
tests/trainer_runtime/test_finetune_transfer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets
from tests.conftest import MakeUser
from tools.db.models import Job, JobCheckpoint
from tools.jobs import build_spec
from web.config import Settings

API = "/api/v1"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


def finished_job(
    client: TestClient, owner_id: int, *, model: str = "resnet18", framework: str = "timm", names: tuple[str, ...]
) -> int:
    """A finished job of `owner_id` on pets with the named checkpoints stored (rows only)."""
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        task = "image_classification" if framework != "ultralytics" else "object_detection"
        job = Job(
            owner_id=owner_id,
            framework=framework,
            model_name=model,
            task_type=task,
            status="completed",
            dataset_name="pets",
        )
        db.add(job)
        db.commit()
        for name in names:
            key = f"checkpoints/test-jobs/job_{job.id}/{name}"
            db.add(JobCheckpoint(job_id=job.id, name=name, key=key, size=7, epoch=3))
        db.commit()
        return int(job.id)


def user_id(client: TestClient, headers: dict[str, str]) -> int:
    return int(client.get(f"{API}/auth/me", headers=headers).json()["id"])


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> tuple[int, dict[str, str]]:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"]), headers


def post_job(client: TestClient, headers: dict[str, str], **intent: Any) -> Any:
    return client.post(f"{API}/jobs", json={"intent": {"dataset": "fruit", "epochs": 1, **intent}}, headers=headers)


def test_job_starts_from_an_earlier_jobs_best_checkpoint(
    client: TestClient, alice: tuple[int, dict[str, str]], settings: Settings
) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("best.pt", "last.pt"))
    r = post_job(client, headers, init_from_job=source)  # no model: the source job's
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["model_name"] == "resnet18" and job["framework"] == "timm"
    assert job["init_from"] == {
        "job_id": source,
        "checkpoint": "best.pt",
        "model_name": "resnet18",
        "framework": "timm",
        "dataset_name": "pets",
        "epoch": 3,
    }
    assert client.get(f"{API}/jobs/{job['id']}", headers=headers).json()["init_from"]["job_id"] == source

    r = post_job(client, headers, model_name="resnet18", init_from_job=source, init_checkpoint="last")
    assert r.status_code == 201, r.text
    last_job = r.json()
    assert last_job["init_from"]["checkpoint"] == "last.pt"

    # the trainer spec carries the checkpoint's key in the internal store
    runtime = client.app.state.supervisor.runtime  # type: ignore[attr-defined]
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(Job, last_job["id"])
        assert row is not None
        spec = build_spec(row, runtime, "token")
    assert spec.init_from is not None
    assert spec.init_from.model_dump() == {
        "job_id": source,
        "checkpoint": "last.pt",
        "key": f"checkpoints/test-jobs/job_{source}/last.pt",
        "framework": "timm",
        "model_name": "resnet18",
    }


def test_plain_job_has_no_init_from(client: TestClient, alice: tuple[int, dict[str, str]], settings: Settings) -> None:
    _, headers = alice
    r = post_job(client, headers, model_name="resnet18")
    assert r.status_code == 201, r.text
    assert r.json()["init_from"] is None
    runtime = client.app.state.supervisor.runtime  # type: ignore[attr-defined]
    with client.app.state.session_factory() as db:  # type: ignore[attr-defined]
        row = db.get(Job, r.json()["id"])
        assert row is not None
        assert build_spec(row, runtime, "token").init_from is None


def test_another_users_job_is_not_found(
    client: TestClient, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("best.pt",))
    _, bob = make_user()
    seed_datasets(client, bob)
    r = post_job(client, bob, init_from_job=source)
    assert r.status_code == 404, r.text
    assert f"job {source}" in r.text
    r = post_job(client, headers, init_from_job=2**31 - 1)
    assert r.status_code == 404, r.text


def test_another_architecture_is_refused_naming_both(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("best.pt",))
    r = post_job(client, headers, model_name="resnet50", init_from_job=source)
    assert r.status_code == 422, r.text
    assert "resnet18" in r.text and "resnet50" in r.text
    vit = finished_job(client, uid, model="google/vit-base-patch16-224", framework="transformers", names=("best.pt",))
    r = post_job(client, headers, model_name="resnet18", init_from_job=vit)
    assert r.status_code == 422, r.text
    assert "transformers" in r.text and "timm" in r.text


def test_missing_checkpoint_is_a_conflict(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("last.pt",))
    r = post_job(client, headers, init_from_job=source)
    assert r.status_code == 409, r.text
    assert "best.pt" in r.text and "last.pt" in r.text
    empty = finished_job(client, uid, names=())
    r = post_job(client, headers, init_from_job=empty, init_checkpoint="last")
    assert r.status_code == 409, r.text
    assert post_job(client, headers, init_from_job=source, init_checkpoint="last").status_code == 201


def test_bad_init_fields_are_422(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    _, headers = alice
    assert post_job(client, headers, init_from_job=0).status_code == 422
    assert post_job(client, headers, init_from_job=2**31).status_code == 422
    assert post_job(client, headers, init_from_job=1, init_checkpoint="middle").status_code == 422


def chat(client: TestClient, headers: dict[str, str], message: str, session_id: str | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if session_id is not None:
        body["session_id"] = session_id
    r = client.post(f"{API}/chat", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("message", "checkpoint", "expect"),
    [
        (
            "train on fruit starting from job {id} for 2 epochs",
            "best.pt",
            "starting from job {id}'s best.pt (resnet18 on pets)",
        ),
        ("fine-tune job {id}'s last checkpoint on fruit, 2 epochs", "last.pt", "starting from job {id}'s last.pt"),
        (
            "{id}번 작업 모델로 이어서 fruit 데이터셋 학습 2 에폭",
            "best.pt",
            "{id}번 작업의 best.pt에서 시작 (resnet18, pets)",
        ),
    ],
)
def test_chat_confirms_the_source_and_launches_from_it(
    client: TestClient, alice: tuple[int, dict[str, str]], message: str, checkpoint: str, expect: str
) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("best.pt", "last.pt"))
    turn = chat(client, headers, message.format(id=source))
    assert turn["state"] == "confirming", turn["reply"]
    assert expect.format(id=source) in turn["reply"]
    assert turn["intent"]["init_from_job"] == source
    assert turn["summary"]["init_from"]["checkpoint"] == checkpoint
    assert turn["summary"]["model_name"] == "resnet18"
    launched = chat(client, headers, "네" if "번" in message else "yes", turn["session_id"])
    assert launched["state"] == "launched", launched["reply"]
    job = client.get(f"{API}/jobs/{launched['job_id']}", headers=headers).json()
    assert job["init_from"]["job_id"] == source and job["init_from"]["checkpoint"] == checkpoint


def test_chat_with_someone_elses_job_says_so(
    client: TestClient, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    uid, _ = alice
    source = finished_job(client, uid, names=("best.pt",))
    _, bob = make_user()
    seed_datasets(client, bob)
    turn = chat(client, bob, f"train on fruit starting from job {source}")
    assert f"Job {source} to start from was not found" in turn["reply"]
    assert turn["intent"]["init_from_job"] is None
    assert turn["state"] != "launched"


def test_chat_other_architecture_is_explained(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    uid, headers = alice
    source = finished_job(client, uid, names=("best.pt",))
    turn = chat(client, headers, f"train resnet50 on fruit for 2 epochs starting from job {source}")
    assert f"job {source} trained timm resnet18, not timm resnet50" in turn["reply"]
    assert turn["state"] != "confirming"
