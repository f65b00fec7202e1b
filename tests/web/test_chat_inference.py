"""Inference through the chat over HTTP and the WebSocket with a real tiny model (the cached timm
digits classifier of tests/inference_models.py): an attached digit image gets a classification
answer naming a label, a test run over a dataset gets a run id, an ONNX export gives its parity,
another user's job is refused, no image gets the instructions."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.inference_models import TrainedModel, models_root, trained_model
from tests.web.test_inference_api import _copy_subset, _dataset, make_job

pytest.importorskip("timm")
pytestmark = pytest.mark.slow

API = "/api/v1"


@pytest.fixture(autouse=True)
def _inference_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTA_INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("VTA_INFERENCE_THREADS", "1")
    monkeypatch.setenv("VTA_INFERENCE_REQUEST_TIMEOUT_S", "120")


@pytest.fixture(scope="module")
def timm_m(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("timm-digits", root, root / "demo")


def chat(client: TestClient, headers: dict[str, str], message: str, sid: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"message": message, **extra}
    if sid:
        body["session_id"] = sid
    return client.post(f"{API}/chat", json=body, headers=headers)


def test_chat_runs_inference_test_runs_and_export(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel, tmp_path: Path
) -> None:
    user, headers = make_user()
    _, other = make_user()
    uid = int(user["id"])
    images = sorted((timm_m.dataset_dir / "images").rglob("*.png"))
    names = [p.relative_to(timm_m.dataset_dir / "images").as_posix() for p in images[:20]]
    dataset_id = _dataset(app, uid, _copy_subset(timm_m.dataset_dir, tmp_path / "ds", names), "digits-chat")
    job = make_job(app, uid, timm_m, dataset_id=dataset_id)
    digit = images[0]
    b64 = base64.b64encode(digit.read_bytes()).decode()

    # no image: the instructions (today's text)
    r = chat(client, headers, f"test job {job} on this image")
    assert r.status_code == 200 and "attach an image" in r.json()["reply"]

    r = chat(client, headers, f"test job {job} on this image", image_base64=b64, image_name=digit.name)
    assert r.status_code == 200, r.text
    body = r.json()
    result = body["summary"]["inference"]
    assert result["task_type"] == "image_classification" and result["job_id"] == job
    label = result["predicted_label"]
    assert label in timm_m.class_names and f"most likely {label}" in body["reply"]
    sid = body["session_id"]
    ko = chat(client, headers, "이 이미지로 테스트해줘", sid, image_base64="data:image/png;base64," + b64).json()
    assert ko["language"] == "ko" and result["predicted_label"] in ko["reply"] and ko["job_id"] == job
    stored = client.get(f"{API}/chat/sessions/{sid}", headers=headers).json()["messages"]
    assert stored[-1]["data"]["summary"]["inference"]["predicted_label"] == result["predicted_label"]
    assert chat(client, headers, "test it", sid, image_base64="%%%").status_code == 422

    # another user's job: not found, like REST
    refused = chat(client, other, f"test job {job} on this image", image_base64=b64).json()
    assert refused["reply"] == f"Job {job} not found." and refused["summary"] is None
    assert chat(client, other, f"export job {job} to ONNX").json()["reply"] == f"Job {job} not found."

    t = chat(client, headers, f"run a test on digits-chat with job {job}", sid).json()
    run_id = t["summary"]["test_run"]["id"]
    assert f"test run {run_id}" in t["reply"] and t["summary"]["test_run"]["dataset_id"] == dataset_id
    assert client.get(f"{API}/test-runs/{run_id}", headers=headers).status_code == 200

    e = chat(client, headers, "ONNX로 내보내줘", sid).json()
    rec = e["summary"]["export"]
    assert rec["status"] == "completed", rec
    assert rec["parity"]["max_abs_diff"] <= rec["parity"]["tolerance"] and "최대 절대 오차" in e["reply"]
    # the reply's link is a signed one: it opens without a bearer token and gives the same file
    link = re.search(r"(/api/v1/dl/\S+)", e["reply"])
    assert link is not None, e["reply"]
    signed = client.get(link.group(1))
    assert signed.status_code == 200
    assert signed.content == client.get(rec["download_url"], headers=headers).content

    status = chat(client, headers, "how is the test going?", sid).json()
    assert f"Test run {run_id}" in status["reply"]

    # the WebSocket takes the same fields
    token = headers["Authorization"].split()[1]
    with client.websocket_connect(f"/ws/chat?token={token}") as ws:
        ws.send_json({"type": "message", "message": f"test job {job} on this image", "image_base64": b64})
        reply = ws.receive_json()
        assert reply["type"] == "reply" and reply["summary"]["inference"]["predicted_label"] in timm_m.class_names
        ws.send_json({"type": "message", "message": "test it on this image", "image_base64": 5})
        assert ws.receive_json()["type"] == "error"
