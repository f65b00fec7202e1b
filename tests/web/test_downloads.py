"""Taking models away: checkpoint downloads, model cards and signed download links."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.agent.chat_helpers import named_classification
from tests.conftest import MakeUser
from tests.event_helpers import make_job
from tests.live_server import API, upload_dataset

BEST = b"best-weights-" + bytes(range(256)) * 40
LAST = b"last-weights-" + bytes(range(255, -1, -1)) * 30


def _uid(client: TestClient, headers: dict[str, str]) -> int:
    return int(client.get(f"{API}/auth/me", headers=headers).json()["id"])


def stored_job(
    app: FastAPI,
    owner_id: int,
    *,
    status: str = "completed",
    checkpoints: tuple[str, ...] = ("best", "last"),
    **fields: Any,
) -> int:
    """A finished job row with checkpoints really in the internal store."""
    from tools.db.models import JobCheckpoint
    from trainer_runtime.storage import checkpoint_key

    job_id, _ = make_job(app.state.session_factory, owner_id, status=status, **fields)
    with app.state.session_factory() as db:
        for name in checkpoints:
            data = BEST if name == "best" else LAST
            key = checkpoint_key(job_id, None, f"{name}.pt")
            app.state.storage.internal.put_bytes(key, data)
            db.add(
                JobCheckpoint(
                    job_id=job_id,
                    name=f"{name}.pt",
                    key=key,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    epoch=3 if name == "best" else 5,
                )
            )
        db.commit()
    return job_id


def link(client: TestClient, headers: dict[str, str], job_id: int, obj: str, **extra: Any) -> Any:
    return client.post(f"{API}/downloads", json={"job_id": job_id, "object": obj, **extra}, headers=headers)


def test_checkpoint_download_streams_the_stored_bytes_to_the_owner_only(
    client: TestClient, app: FastAPI, make_user: MakeUser
) -> None:
    user, headers = make_user()
    _, other = make_user()
    job = stored_job(app, int(user["id"]), model_name="google/vit-base-patch16-224")
    r = client.get(f"{API}/jobs/{job}/checkpoints/best", headers=headers)
    assert r.status_code == 200 and r.content == BEST
    assert r.headers["content-disposition"] == f'attachment; filename="job-{job}-google-vit-base-patch16-224-best.pt"'
    assert client.get(f"{API}/jobs/{job}/checkpoints/last", headers=headers).content == LAST
    assert client.get(f"{API}/jobs/{job}/checkpoints/best", headers=other).status_code == 404
    assert client.get(f"{API}/jobs/{job}/checkpoints/best").status_code == 401
    assert client.get(f"{API}/jobs/{job}/checkpoints/middle", headers=headers).status_code == 422

    # stopped and failed jobs keep what they uploaded
    for status in ("stopped", "failed"):
        ended = stored_job(app, int(user["id"]), status=status, checkpoints=("last",))
        assert client.get(f"{API}/jobs/{ended}/checkpoints/last", headers=headers).content == LAST
        r = client.get(f"{API}/jobs/{ended}/checkpoints/best", headers=headers)
        assert r.status_code == 409 and "has no best checkpoint (it has: last.pt)" in r.json()["detail"]
    running = stored_job(app, int(user["id"]), status="running")
    r = client.get(f"{API}/jobs/{running}/checkpoints/best", headers=headers)
    assert r.status_code == 409 and "is running" in r.json()["detail"]


def test_signed_link_downloads_without_a_token_and_is_bound_to_user_object_and_time(
    client: TestClient, app: FastAPI, make_user: MakeUser
) -> None:
    user, headers = make_user()
    _, other = make_user()
    uid = int(user["id"])
    job = stored_job(app, uid)
    second = stored_job(app, uid)
    now = [1_900_000_000.0]
    app.state.download_link_clock = lambda: now[0]

    r = link(client, headers, job, "best")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"].startswith("/api/v1/dl/") and body["filename"] == f"job-{job}-resnet18-best.pt"
    assert body["expires_in_s"] == 300
    got = client.get(body["url"])  # no Authorization header
    assert got.status_code == 200 and got.content == BEST
    assert got.headers["content-disposition"] == f'attachment; filename="job-{job}-resnet18-best.pt"'

    # another object with the same signature: the payload names job `second`, the signature is job's
    _, payload, sig = body["url"].removeprefix("/api/v1/dl/").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"j": second}, {"o": "last"}, {"u": uid + 1}, {"x": claims["x"] + 3600}):
        forged = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode()).rstrip(b"=").decode()
        r = client.get(f"/api/v1/dl/v1.{forged}.{sig}")
        assert r.status_code == 401 and "signature is not valid" in r.json()["detail"], change
    tampered = client.get(body["url"][:-2] + ("AA" if not body["url"].endswith("AA") else "BB"))
    assert tampered.status_code == 401
    assert client.get("/api/v1/dl/not-a-link").status_code == 401

    # expiry: 300 s by default (DOWNLOAD_LINK_TTL_S)
    now[0] += 299
    assert client.get(body["url"]).status_code == 200
    now[0] += 2
    r = client.get(body["url"])
    assert r.status_code == 401 and "expired" in r.json()["detail"]

    # other users cannot make links to the owner's things
    assert link(client, other, job, "best").status_code == 404
    assert link(client, headers, job, "export", export_id=1).status_code == 404
    assert link(client, {}, job, "best").status_code == 401


def test_signed_link_is_checked_again_when_used(client: TestClient, app: FastAPI, make_user: MakeUser) -> None:
    from tools.db.models import Job, User

    user, headers = make_user()
    other_user, _ = make_user()
    job = stored_job(app, int(user["id"]))
    url = link(client, headers, job, "last").json()["url"]
    with app.state.session_factory() as db:  # the job is given to someone else: the old link is dead
        row = db.get(Job, job)
        assert row is not None
        row.owner_id = int(other_user["id"])
        db.commit()
    r = client.get(url)
    assert r.status_code == 404 and f"job {job} not found" in r.json()["detail"]

    mine = stored_job(app, int(user["id"]))
    url = link(client, headers, mine, "best").json()["url"]
    with app.state.session_factory() as db:
        u = db.get(User, int(user["id"]))
        assert u is not None
        u.is_active = False
        db.commit()
    r = client.get(url)
    assert r.status_code == 401 and "no longer exists or is disabled" in r.json()["detail"]


def test_model_card_says_what_the_model_needs(client: TestClient, app: FastAPI, make_user: MakeUser) -> None:
    user, headers = make_user()
    _, other = make_user()
    did = upload_dataset(client, headers, "pets-card", named_classification(12, "pets-card", ("cat", "dog")))
    snap = client.post(f"{API}/datasets/{did}/snapshots", json={"name": "v1"}, headers=headers).json()["id"]
    intent = {"model_name": "resnet18", "dataset": "pets-card", "epochs": 5, "image_size": 64}
    job = stored_job(
        app,
        int(user["id"]),
        dataset_id=did,
        dataset_name="pets-card",
        snapshot_id=snap,
        intent=intent,
        hyperparameters={"epochs": 5, "image_size": 64, "batch_size": 8, "learning_rate": 0.001},
        config={"opt": "adamw", "lr": 0.001},
        metrics={"val/accuracy_top1": 0.91, "train/loss": 0.2},
        best_metric_name="val/accuracy_top1",
        best_metric=0.93,
        best_epoch=3,
        epochs=5,
        epochs_completed=5,
    )
    r = client.get(f"{API}/jobs/{job}/model-card", headers=headers)
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["format"] == "vta-model-card/1" and card["framework"] == "timm" and card["model_name"] == "resnet18"
    assert card["intent"] == intent and card["hyperparameters"]["image_size"] == 64
    assert card["config"] == {"opt": "adamw", "lr": 0.001}
    assert card["dataset"] == {"id": did, "name": "pets-card", "snapshot_id": snap}
    assert card["class_names"] == ["cat", "dog"] and "id order" in card["class_names_source"]
    assert card["metrics"]["final"]["val/accuracy_top1"] == 0.91
    assert (card["metrics"]["best_metric"], card["metrics"]["best_epoch"]) == (0.93, 3)
    pre = card["preprocessing"]
    assert pre["input_size"] == 64 and pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert pre["onnx_input_name"] == "pixel_values" and "centre-crop 64x64" in pre["resize"]
    # the job recorded no pretrained source: the card says so instead of guessing
    assert card["pretrained"]["recorded"] is False and card["pretrained"]["pretrained"] is None
    assert "unknown" in card["pretrained"]["source"]
    ckpts = {c["name"]: c for c in card["checkpoints"]}
    assert ckpts["best.pt"]["size"] == len(BEST) and ckpts["best.pt"]["sha256"] == hashlib.sha256(BEST).hexdigest()
    assert ckpts["last.pt"]["filename"] == f"job-{job}-resnet18-last.pt" and ckpts["last.pt"]["epoch"] == 5
    assert client.get(f"{API}/jobs/{job}/model-card", headers=other).status_code == 404

    # the same card through a signed link, as model-card.json
    body = link(client, headers, job, "model-card").json()
    got = client.get(body["url"])
    assert got.status_code == 200 and got.json() == card
    assert got.headers["content-disposition"] == f'attachment; filename="job-{job}-resnet18-model-card.json"'


@pytest.mark.parametrize(
    ("framework", "model", "task", "mean", "input_name"),
    [
        ("ultralytics", "yolo11n", "object_detection", None, "images"),
        ("transformers", "google/vit-base-patch16-224", "image_classification", [0.5, 0.5, 0.5], "pixel_values"),
        ("transformers", "microsoft/resnet-50", "image_classification", [0.485, 0.456, 0.406], "pixel_values"),
    ],
)
def test_model_card_preprocessing_per_framework(
    framework: str, model: str, task: str, mean: list[float] | None, input_name: str
) -> None:
    from tools.downloads import preprocessing_for

    pre = preprocessing_for(framework, model, task, 320)
    assert pre.mean == mean and pre.onnx_input_name == input_name and pre.input_size == 320
    if framework == "ultralytics":
        assert "letterbox to 320x320" in pre.resize


def test_signed_link_token_never_reaches_a_log_line(
    client: TestClient, app: FastAPI, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    from web.logredact import redact

    user, headers = make_user()
    job = stored_job(app, int(user["id"]))
    url = link(client, headers, job, "best").json()["url"]
    token = url.removeprefix("/api/v1/dl/")
    line = f'127.0.0.1:5000 - "GET {url} HTTP/1.1" 200'
    assert token not in redact(line) and "/api/v1/dl/[REDACTED] HTTP/1.1" in redact(line)
    # uvicorn's own log config (a live-server test earlier in the run) stops "uvicorn.access" from
    # propagating to the root logger, so the capture handler is attached to that logger itself
    access = logging.getLogger("uvicorn.access")
    access.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            access.info('%s - "GET %s HTTP/1.1" %d', "127.0.0.1", url, 200)
    finally:
        access.removeHandler(caplog.handler)
    assert token not in caplog.text and "/api/v1/dl/[REDACTED]" in caplog.text


def _link_in(text: str) -> str:
    import re

    m = re.search(r"/api/v1/dl/[A-Za-z0-9._-]+", text)
    assert m, text
    return m.group(0)


def test_chat_gives_links_that_download_in_both_languages(
    client: TestClient, app: FastAPI, make_user: MakeUser
) -> None:
    user, headers = make_user()
    job = stored_job(app, int(user["id"]))

    def say(message: str) -> dict[str, Any]:
        r = client.post(f"{API}/chat", json={"message": message}, headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    en = say(f"download the best model of job {job}")
    got = client.get(_link_in(en["reply"]))  # the link alone, no token
    assert got.status_code == 200 and got.content == BEST, en["reply"]
    assert "best.pt" in en["reply"] and "5 min" in en["reply"] and "Model card" in en["reply"]
    last = say(f"download the last checkpoint of job {job}")
    assert client.get(_link_in(last["reply"])).content == LAST
    ko = say(f"{job}번 작업 최고 모델 다운로드")
    assert "다운로드" in ko["reply"] and client.get(_link_in(ko["reply"])).content == BEST
    card = say(f"{job}번 작업 모델 카드 받을래")
    got = client.get(_link_in(card["reply"]))
    assert got.status_code == 200 and got.json()["job_id"] == job and got.json()["format"] == "vta-model-card/1"

    # a stopped job with only last.pt: "the best model" falls back to what it has
    stopped = stored_job(app, int(user["id"]), status="stopped", checkpoints=("last",))
    fallback = say(f"download the best model of job {stopped}")
    assert "last.pt" in fallback["reply"] and client.get(_link_in(fallback["reply"])).content == LAST
