"""`POST /api/v1/chat`, the session routes, `POST /api/v1/agent/parse` and `WS /ws/chat` over the
real app (TestClient, lifespan with the supervisor; the trainers are a fake interpreter). SQLite
and, with TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets
from tests.conftest import MakeUser
from web.config import Settings

API = "/api/v1"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> dict[str, str]:
    headers = make_user()[1]
    seed_datasets(client, headers)
    return headers


def chat(client: TestClient, headers: dict[str, str], message: str, session_id: str | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if session_id is not None:
        body["session_id"] = session_id
    return client.post(f"{API}/chat", json=body, headers=headers)


def test_chat_turn_shape_and_timing_headers(client: TestClient, alice: dict[str, str]) -> None:
    r = chat(client, alice, "train resnet18 on pets for 2 epochs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"session_id", "reply", "intent", "state", "job_id", "suggestions", "summary"} <= set(body)
    assert body["state"] == "confirming" and body["job_id"] is None and body["suggestions"] == ["yes", "no"]
    assert set(body["intent"]) == {
        "task_type",
        "framework",
        "model_name",
        "dataset",
        "epochs",
        "batch_size",
        "image_size",
        "learning_rate",
        "preset",
        "advanced_config",
        "class_names",
        "init_from_job",
        "init_checkpoint",
        "init_weights",
    }
    ms = float(r.headers["X-Process-Time-Ms"])
    assert 0 < ms < 10_000 and float(r.headers["X-Queue-Time-Ms"]) >= 0
    assert r.headers["Server-Timing"].startswith("queue;dur=") and ", app;dur=" in r.headers["Server-Timing"]

    r = chat(client, alice, "yes", body["session_id"])
    assert r.status_code == 200
    launched = r.json()
    assert launched["state"] == "launched" and isinstance(launched["job_id"], int)
    job = client.get(f"{API}/jobs/{launched['job_id']}", headers=alice)
    assert job.status_code == 200 and job.json()["model_name"] == "resnet18"


def test_sessions_list_and_detail_are_private(client: TestClient, alice: dict[str, str], make_user: MakeUser) -> None:
    sid = chat(client, alice, "train a cat/dog classifier").json()["session_id"]
    chat(client, alice, "pets", sid)
    listed = client.get(f"{API}/chat/sessions", headers=alice).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sid and listed["items"][0]["state"] == "collecting"
    detail = client.get(f"{API}/chat/sessions/{sid}", headers=alice).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["intent"]["dataset"] == "pets"

    bob = make_user()[1]
    assert client.get(f"{API}/chat/sessions/{sid}", headers=bob).status_code == 404
    assert client.get(f"{API}/chat/sessions", headers=bob).json()["total"] == 0
    r = chat(client, bob, "yes", sid)
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"
    assert chat(client, alice, "hi", "0" * 32).status_code == 404


def test_auth_and_validation(client: TestClient, alice: dict[str, str]) -> None:
    assert client.post(f"{API}/chat", json={"message": "hi"}).status_code == 401
    assert client.get(f"{API}/chat/sessions").status_code == 401
    assert chat(client, alice, "").status_code == 422
    assert chat(client, alice, "x" * 4001).status_code == 422
    r = client.post(f"{API}/chat", json={"message": "hi", "extra": 1}, headers=alice)
    assert r.status_code == 422


def test_parse_endpoint(client: TestClient) -> None:
    r = client.post(f"{API}/agent/parse", json={"text": "seg-coco32 데이터셋으로 yolo11n-seg 모델 학습시작"})
    assert r.status_code == 200
    body = r.json()
    assert body["model_name"] == "yolo11n-seg" and body["task_type"] == "instance_segmentation"
    assert body["framework"] == "ultralytics" and body["dataset"] == "seg-coco32" and body["epochs"] is None
    assert client.post(f"{API}/agent/parse", json={}).status_code == 422


# ------------------------------------------------------------------------------- WebSocket


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


@pytest.mark.timeout(120)
def test_ws_chat_turns_and_progress_of_the_launched_job(client: TestClient, alice: dict[str, str]) -> None:
    with client.websocket_connect(f"/ws/chat?token={token_of(alice)}") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json({"type": "message", "message": "pets 데이터셋으로 resnet18 2에폭 학습해줘"})
        reply = ws.receive_json()
        assert reply["type"] == "reply" and reply["state"] == "confirming" and reply["language"] == "ko"
        ws.send_json({"type": "message", "session_id": reply["session_id"], "message": "네"})
        reply = ws.receive_json()
        assert reply["type"] == "reply" and reply["launched"] and reply["job_id"]
        job_id = reply["job_id"]
        # progress events of that job follow, from its first event (contract 4, as stored)
        progress = ws.receive_json()
        assert progress["type"] == "progress" and progress["job_id"] == job_id
        assert progress["seq"] == 1 and progress["event_type"] == "status"
        assert progress["data"]["status"] == "queued"
        # a turn in the middle of the stream gets its reply; the stop shows up as progress too
        ws.send_json({"type": "message", "session_id": reply["session_id"], "message": "멈춰"})
        seen = [progress]
        got_reply = False
        while not (got_reply and any(p["data"].get("status") == "stopped" for p in seen)):
            msg = ws.receive_json()
            if msg["type"] == "reply":
                assert f"{job_id}번 작업을 중지합니다" in msg["reply"]
                got_reply = True
            else:
                assert msg["type"] == "progress" and msg["job_id"] == job_id
                seen.append(msg)
        assert [p["seq"] for p in seen] == list(range(1, len(seen) + 1))  # gapless, each once
        ws.send_json({"type": "message", "message": ""})
        err = ws.receive_json()
        while err["type"] == "progress":
            err = ws.receive_json()
        assert err["type"] == "error"
        ws.send_json({"type": "message", "session_id": "f" * 32, "message": "hi"})
        err = ws.receive_json()
        while err["type"] == "progress":
            err = ws.receive_json()
        assert err["type"] == "error" and err["error"] == "NotFoundError"


def test_ws_chat_rejects_a_bad_token(client: TestClient) -> None:
    with client.websocket_connect("/ws/chat?token=nope") as ws, pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == 1008
