"""The chat end to end with a REAL training job: the real server under uvicorn with the built-in
demo datasets, the real trainer (`python -m trainer_runtime`, timm resnet18 on `digits` at 32 px),
over HTTP and WebSocket.

    English   "train resnet18 on digits for 1 epoch, image size 32" -> confirmation -> "yes" -> the job
              runs -> "how is it going?" answered from its stored events -> completed
    Korean    "digits 데이터셋으로 resnet18 1에폭 학습해줘, 이미지 크기 32" -> "네" -> progress pushed over
              WS /ws/chat (epoch event with metrics, terminal status) -> "진행 상황 알려줘" -> 완료
    CLI       `vision-agent chat -m ... -m yes` follows the job to the end over WS (exit 0)

SQLite only (each test trains for real); the dialogue and API paths also run on PostgreSQL in
tests/agent/test_dialogue.py and tests/web/test_chat_api.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.live_server import API, LiveServer, events, free_port, get_job, register, wait_status
from web.main import create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'app.db'}",
        tmp_path,
        create_demo_datasets=True,
        callback_base_url=f"http://127.0.0.1:{port}",
        max_concurrent_jobs=1,
    )
    with LiveServer(create_app(settings), port) as srv:
        yield srv
        srv.app.state.supervisor.kill_all()


def post(client: Any, headers: dict[str, str], message: str, session_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id:
        body["session_id"] = session_id
    r = client.post(f"{API}/chat", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_english_chat_launches_a_real_job_and_reports_progress_from_its_events(server: LiveServer) -> None:
    client = server.client()
    headers = register(client, "alice@example.com")
    t = post(client, headers, "train resnet18 on digits for 1 epoch, image size 32")
    assert t["state"] == "confirming", t["reply"]
    assert t["summary"]["dataset"]["name"] == "digits" and t["summary"]["epochs"] == 1
    assert t["summary"]["image_size"] == 32 and "a snapshot will be taken at launch" in t["reply"]
    t = post(client, headers, "yes", t["session_id"])
    assert t["launched"] and t["state"] == "launched"
    job_id = int(t["job_id"])
    sid = t["session_id"]

    # while it runs (or as soon as it has any event), the answer comes from the stored events
    t = post(client, headers, "how is it going?", sid)
    assert f"Job {job_id} (resnet18 on digits)" in t["reply"] and t["summary"]["progress"]["job_id"] == job_id

    job = wait_status(client, headers, job_id, ("completed", "failed", "stopped"), timeout=300)
    assert job["status"] == "completed", job
    evs = events(client, headers, job_id)
    epoch_events = [e for e in evs if e["type"] == "epoch" and e["data"].get("metrics")]
    assert epoch_events, evs
    last_metrics = epoch_events[-1]["data"]["metrics"]

    t = post(client, headers, "how is it going?", sid)
    progress = t["summary"]["progress"]
    assert progress["status"] == "completed" and progress["epoch"] == 1 and progress["epochs"] == 1
    assert progress["metrics"] == last_metrics  # the latest epoch event's metrics
    assert "completed" in t["reply"] and "epoch 1/1" in t["reply"]
    name = next(iter(last_metrics))
    assert name in t["reply"]
    t = post(client, headers, "show metrics", sid)
    assert "- epoch 1:" in t["reply"]
    client.close()


def test_korean_chat_with_progress_pushed_over_the_websocket(server: LiveServer) -> None:
    from websockets.sync.client import connect

    client = server.client()
    headers = register(client, "minji@example.com")
    token = headers["Authorization"].split(" ", 1)[1]
    t = post(client, headers, "digits 데이터셋으로 resnet18 1에폭 학습해줘, 이미지 크기 32")
    assert t["state"] == "confirming" and t["language"] == "ko"
    assert "시작할 때 스냅샷을 만듭니다" in t["reply"] and "에폭: 1" in t["reply"]
    with connect(f"ws://127.0.0.1:{server.port}/ws/chat?token={token}", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "message", "session_id": t["session_id"], "message": "네"}))
        progress: list[dict[str, Any]] = []
        reply: dict[str, Any] | None = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=300))
            if msg["type"] == "reply":
                reply = msg
                continue
            assert msg["type"] == "progress"
            progress.append(msg)
            if msg["event_type"] == "status" and msg["data"].get("status") in ("completed", "failed", "stopped"):
                break
        assert reply is not None and reply["launched"] and "작업을 시작했습니다" in reply["reply"]
        job_id = reply["job_id"]
        assert {p["job_id"] for p in progress} == {job_id}
        assert [p["seq"] for p in progress] == list(range(1, len(progress) + 1))  # from seq 1, gapless
        statuses = [p["data"]["status"] for p in progress if p["event_type"] == "status"]
        assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "completed"
        assert any(p["event_type"] == "epoch" and p["data"].get("metrics") for p in progress)

    t = post(client, headers, "진행 상황 알려줘", t["session_id"])
    assert f"{job_id}번 작업" in t["reply"] and "완료" in t["reply"] and "에폭 1/1" in t["reply"]
    assert get_job(client, headers, job_id)["status"] == "completed"
    client.close()


def test_terminal_client_follows_the_job_to_the_end(server: LiveServer) -> None:
    client = server.client()
    register(client, "cli@example.com")
    client.close()
    cmd = [
        sys.executable,
        "-m",
        "web.cli",
        "chat",
        "--url",
        server.url,
        "--email",
        "cli@example.com",
        "--password",
        "correct horse battery staple",
        "-m",
        "train resnet18 on digits for 1 epoch, image size 32",
        "-m",
        "yes",
        "--timeout",
        "300",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Ready to train" in out.stdout and "Started job" in out.stdout
    assert "epoch 1/1" in out.stdout and "completed" in out.stdout
