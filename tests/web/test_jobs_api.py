"""`/api/v1/jobs` over HTTP (TestClient, lifespan with the real supervisor), on SQLite and
PostgreSQL. The framework interpreters are a fake (`write_fake_python`: runs until SIGINT, then
exits 130), so queueing and stopping are exact without training; the real trainer runs in
test_jobs_reliability.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser, make_settings
from tests.live_server import (
    API,
    classification_files,
    detection_files,
    upload_dataset,
    wait_for,
    write_fake_python,
)
from web.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    fake = write_fake_python(tmp_path / "fake-python", mode="sleep", seconds=120)
    return make_settings(
        db_url,
        tmp_path,
        trainer_python_timm=fake,
        trainer_python_ultralytics=fake,
        trainer_python_transformers=fake,
        max_concurrent_jobs=1,
        stop_grace_period_s=5,
    )


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> dict[str, str]:
    headers = make_user()[1]
    upload_dataset(client, headers, "tiny", classification_files(12))
    return headers


def create(client: TestClient, headers: dict[str, str], **intent: Any) -> Any:
    intent.setdefault("dataset", "tiny")
    project_id = intent.pop("project_id", None)
    body: dict[str, Any] = {"intent": intent}
    if project_id is not None:
        body["project_id"] = project_id
    return client.post(f"{API}/jobs", json=body, headers=headers)


def job(client: TestClient, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    r = client.get(f"{API}/jobs/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_job(client: TestClient, headers: dict[str, str], job_id: int, *statuses: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        j = job(client, headers, job_id)
        return j if j["status"] in statuses else None

    out: dict[str, Any] = wait_for(check, 30, what=f"job {job_id} in {statuses}")
    return out


def stop_all(client: TestClient, headers: dict[str, str]) -> None:
    for item in client.get(f"{API}/jobs", headers=headers).json()["items"]:
        if item["status"] not in ("completed", "failed", "stopped"):
            client.post(f"{API}/jobs/{item['id']}/stop", headers=headers)


def test_create_returns_the_job_with_resolved_hyperparameters(client: TestClient, alice: dict[str, str]) -> None:
    r = create(client, alice, model_name="resnet18", preset="easy", epochs=2, image_size=32)
    assert r.status_code == 201, r.text
    body = r.json()
    keys = {
        "id", "status", "framework", "model_name", "task_type", "dataset_id", "dataset_name", "snapshot_id",
        "project_id", "hyperparameters", "config", "epochs", "epochs_completed", "best_epoch", "best_metric_name",
        "best_metric", "metrics", "queue_position", "attempts", "error", "created_at", "started_at", "finished_at",
        "checkpoints", "mlflow_run_id",
    }  # fmt: skip
    assert keys <= set(body)
    # the free slot may already have claimed it by the time the response is built
    assert body["status"] in ("queued", "preparing") and body["dataset_name"] == "tiny" and body["snapshot_id"]
    assert body["hyperparameters"]["epochs"] == 2 and body["hyperparameters"]["preset"] == "easy"
    assert body["config"]["opt"] == "adam" and body["created_at"].endswith("Z")
    snaps = client.get(f"{API}/datasets/{body['dataset_id']}/snapshots", headers=alice).json()
    assert [s["id"] for s in snaps] == [body["snapshot_id"]]
    events = client.get(f"{API}/jobs/{body['id']}/events", headers=alice).json()
    assert events[0]["seq"] == 1 and events[0]["data"]["status"] == "queued"
    # the supervisor picks it up
    started = wait_job(client, alice, body["id"], "preparing")
    assert started["attempts"] == 1 and started["queue_position"] == 0
    m = client.get(f"{API}/jobs/{body['id']}/metrics", headers=alice)
    assert m.status_code == 200 and m.json()["epochs"] == [] and m.json()["series"] == {}
    stop_all(client, alice)
    wait_job(client, alice, body["id"], "stopped")


def test_create_errors(client: TestClient, alice: dict[str, str], make_user: MakeUser) -> None:
    r = create(client, alice, dataset="nope")
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"
    r = create(client, alice, task_type="object_detection")
    assert r.status_code == 422 and "image-level label" in r.json()["detail"] and r.json()["reason"]
    r = create(client, alice, model_name="resnet-18x")
    assert r.status_code == 422 and "resnet18" in r.json()["suggestions"]
    r = create(client, alice, project_id=999999)
    assert r.status_code == 404
    r = client.post(f"{API}/jobs", json={"intent": {"model_name": "resnet18"}}, headers=alice)
    assert r.status_code == 422 and r.json()["location"]["field"] == "dataset"
    r = client.post(f"{API}/jobs", json={"intent": {"dataset": "tiny", "bogus": 1}}, headers=alice)
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    assert client.post(f"{API}/jobs", json={"intent": {"dataset": "tiny"}}).status_code == 401
    bob = make_user()[1]
    upload_dataset(client, bob, "bob-boxes", detection_files(4))
    assert create(client, alice, dataset="bob-boxes").status_code == 404  # private to bob
    bob_project = client.post(f"{API}/projects", json={"name": "p"}, headers=bob).json()["id"]
    assert create(client, alice, project_id=bob_project).status_code == 404
    assert client.get(f"{API}/jobs", headers=alice).json()["total"] == 0


def test_one_slot_queue_positions_and_stop(client: TestClient, alice: dict[str, str]) -> None:
    first = create(client, alice, epochs=1).json()
    wait_job(client, alice, first["id"], "preparing")
    second = create(client, alice, epochs=1).json()
    assert second["queue_position"] == 1
    third = create(client, alice, epochs=1).json()
    assert third["queue_position"] == 2
    assert job(client, alice, second["id"])["queue_position"] == 1
    listed = {j["id"]: j["queue_position"] for j in client.get(f"{API}/jobs", headers=alice).json()["items"]}
    assert listed == {first["id"]: 0, second["id"]: 1, third["id"]: 2}
    # stop a queued job: at once
    r = client.post(f"{API}/jobs/{third['id']}/stop", headers=alice)
    assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["queue_position"] == 0
    # stop the running one: SIGINT, the (fake) trainer exits 130 -> stopped; the next one starts
    r = client.post(f"{API}/jobs/{first['id']}/stop", headers=alice)
    assert r.status_code == 200 and r.json()["stop_requested"] is True
    assert wait_job(client, alice, first["id"], "stopped")["finished_at"]
    assert wait_job(client, alice, second["id"], "preparing")["queue_position"] == 0
    assert client.post(f"{API}/jobs/{first['id']}/stop", headers=alice).status_code == 409
    # a stopped job can be deleted (a running one too: tests/security/test_streams.py)
    assert client.delete(f"{API}/jobs/{first['id']}", headers=alice).status_code == 204
    assert client.get(f"{API}/jobs/{first['id']}", headers=alice).status_code == 404
    # resume needs a last.pt
    assert client.post(f"{API}/jobs/{third['id']}/resume", headers=alice).status_code == 409
    filtered = client.get(f"{API}/jobs", params={"status": "stopped"}, headers=alice).json()
    assert [j["id"] for j in filtered["items"]] == [third["id"]]
    assert client.get(f"{API}/jobs", params={"status": "nope"}, headers=alice).status_code == 422
    stop_all(client, alice)
    wait_job(client, alice, second["id"], "stopped")


def test_another_users_job_is_invisible(client: TestClient, alice: dict[str, str], make_user: MakeUser) -> None:
    jid = create(client, alice, epochs=1).json()["id"]
    bob = make_user()[1]
    assert client.get(f"{API}/jobs/{jid}", headers=bob).status_code == 404
    assert client.post(f"{API}/jobs/{jid}/stop", headers=bob).status_code == 404
    assert client.post(f"{API}/jobs/{jid}/resume", headers=bob).status_code == 404
    assert client.delete(f"{API}/jobs/{jid}", headers=bob).status_code == 404
    assert client.get(f"{API}/jobs/{jid}/metrics", headers=bob).status_code == 404
    assert client.get(f"{API}/jobs/{jid}/events", headers=bob).status_code == 404
    assert client.get(f"{API}/jobs", headers=bob).json() == {"items": [], "total": 0, "offset": 0, "limit": 50}
    assert client.get(f"{API}/jobs/{jid}", headers=alice).status_code == 200
    stop_all(client, alice)
    wait_job(client, alice, jid, "stopped")


def test_projects_filter(client: TestClient, alice: dict[str, str]) -> None:
    pid = client.post(f"{API}/projects", json={"name": "proj"}, headers=alice).json()["id"]
    in_project = create(client, alice, epochs=1, project_id=pid).json()
    create(client, alice, epochs=1)
    listed = client.get(f"{API}/jobs", params={"project_id": pid}, headers=alice).json()
    assert [j["id"] for j in listed["items"]] == [in_project["id"]] and listed["total"] == 1
    assert in_project["project_id"] == pid
    stop_all(client, alice)


def test_job_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import uvicorn

    from web.cli import callback_base_url, main

    monkeypatch.setenv("TRAINER_PYTHON_TIMM", "/opt/venv-timm/bin/python")
    monkeypatch.setenv("JOB_MAX_RETRIES", "5")
    monkeypatch.setenv("VTA_CALLBACK_BASE_URL", "http://10.0.0.5:9000")
    s = Settings(_env_file=None)
    assert s.trainer_python_timm == "/opt/venv-timm/bin/python" and s.trainer_python_ultralytics is None
    assert s.job_max_retries == 5 and s.callback_base_url == "http://10.0.0.5:9000"
    assert s.job_retry_base_delay_s == 5 and s.stop_grace_period_s == 30 and s.mlflow_tracking_uri is None
    assert s.resolved_max_concurrent_jobs >= 1
    assert Settings(_env_file=None, max_concurrent_jobs=3).resolved_max_concurrent_jobs == 3
    assert callback_base_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert callback_base_url("::", 8080) == "http://[::1]:8080"
    assert callback_base_url("192.168.1.4", 80) == "http://192.168.1.4:80"
    # `vision-agent serve` tells trainers where it listens, through the app's settings (the
    # environment is left as it was)
    monkeypatch.setenv("VTA_CALLBACK_BASE_URL", "")
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    assert main(["serve", "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert served[0].state.settings.callback_base_url == "http://127.0.0.1:8123"
    assert os.environ["VTA_CALLBACK_BASE_URL"] == ""
