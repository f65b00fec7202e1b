"""POST /internal/jobs/{id}/events (per-job token) and GET /api/v1/jobs/{id}/events (owner only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.event_helpers import LiveServer, event, make_job, register
from web.routes import internal


@pytest.fixture
def owner(make_user: MakeUser) -> tuple[int, dict[str, str]]:
    user, headers = make_user()
    return int(user["id"]), headers


@pytest.fixture
def job(app: FastAPI, client: TestClient, owner: tuple[int, dict[str, str]]) -> tuple[int, str]:
    return make_job(app.state.session_factory, owner[0])


def post(client: TestClient, job_id: int, body: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(f"/internal/jobs/{job_id}/events", json=body, headers=headers)


def test_batch_is_stored_with_gapless_seq_and_duplicates_skipped(client: TestClient, job: tuple[int, str]) -> None:
    job_id, token = job
    batch = [event("status", {"status": "running"}, job_id=job_id), event("log", {"message": "a"}), event("log")]
    resp = post(client, job_id, {"events": batch}, token)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 3, "duplicates": 0, "last_seq": 3}
    # the trainer retries the same batch plus one new event: only the new one is stored
    resp = post(client, job_id, {"events": [*batch, event("log", {"message": "new"})]}, token)
    assert resp.json() == {"accepted": 1, "duplicates": 3, "last_seq": 4}
    # a single event object is accepted too
    resp = post(client, job_id, event("epoch", {"epoch": 1, "metrics": {"val/acc": 0.5}}), token)
    assert resp.json() == {"accepted": 1, "duplicates": 0, "last_seq": 5}


def test_wrong_missing_or_foreign_tokens_and_unknown_jobs_all_answer_401(
    app: FastAPI, client: TestClient, job: tuple[int, str], owner: tuple[int, dict[str, str]]
) -> None:
    job_id, token = job
    other_id, other_token = make_job(app.state.session_factory, owner[0])
    tokenless_id = make_job(app.state.session_factory, owner[0], token_hash="")[0]
    body = {"events": [event("log")]}
    cases = [
        (job_id, None),
        (job_id, "wrong"),
        (job_id, other_token),  # another job's token
        (other_id, token),
        (tokenless_id, ""),
        (tokenless_id, "anything"),
        (999_999, token),  # unknown job: same answer as a bad token
    ]
    answers = []
    for jid, tok in cases:
        resp = post(client, jid, body, tok)
        assert resp.status_code == 401, (jid, tok, resp.text)
        answers.append(resp.json())
    assert all(a == answers[0] for a in answers)
    resp = client.post(f"/internal/jobs/{job_id}/events", json=body, headers={"Authorization": f"Basic {token}"})
    assert resp.status_code == 401
    # authentication comes before validation: a bad body without the token is still 401
    assert post(client, job_id, {"events": [{"type": "bogus"}]}, "wrong").status_code == 401
    resp = client.post(f"/internal/jobs/{job_id}/events", content=b"{oops", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401
    assert post(client, job_id, body, token).json()["last_seq"] == 1  # nothing was stored before


def test_token_is_compared_in_constant_time(
    client: TestClient, job: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = internal.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(internal.hmac, "compare_digest", spy)
    job_id, token = job
    assert post(client, job_id, {"events": [event("log")]}, token).status_code == 200
    assert post(client, job_id, {"events": [event("log")]}, "nope").status_code == 401
    assert post(client, 424242, {"events": [event("log")]}, "nope").status_code == 401  # compared all the same
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)  # hex digests, never the raw token


def test_invalid_batches_answer_422_naming_the_place_and_store_nothing(
    client: TestClient, job: tuple[int, str]
) -> None:
    job_id, token = job
    resp = post(client, job_id, {"events": [event("log"), event("log"), {"type": "bogus", "data": {}}]}, token)
    assert resp.status_code == 422
    locs = [d["loc"] for d in resp.json()["detail"]]
    assert ["body", "events", 2, "type"] in locs

    resp = post(client, job_id, {"events": [event("log"), event("log", job_id=job_id + 1)]}, token)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "events", 1, "job_id"]

    resp = post(client, job_id, {"events": [{"type": "log", "data": "not an object"}]}, token)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "events", 0, "data"]

    resp = post(client, job_id, {"events": [event("log", event_id="x" * 65)]}, token)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "events", 0, "event_id"]

    resp = post(client, job_id, {"events": {"type": "log"}}, token)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "events"]

    resp = post(client, job_id, [1, 2], token)
    assert resp.status_code == 422

    resp = client.post(
        f"/internal/jobs/{job_id}/events",
        content=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 422 and resp.json()["detail"][0]["type"] == "json_invalid"

    resp = post(client, job_id, {"events": [event("log")] * (internal.MAX_BATCH + 1)}, token)
    assert resp.status_code == 413

    assert post(client, job_id, {"events": []}, token).json() == {"accepted": 0, "duplicates": 0, "last_seq": 0}


def test_events_list_is_owner_only_and_pages_with_after(
    client: TestClient, job: tuple[int, str], owner: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    job_id, token = job
    post(client, job_id, {"events": [event("log", {"i": i}) for i in range(5)]}, token)
    headers = owner[1]
    resp = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers)
    assert resp.status_code == 200
    body = resp.json()
    assert [e["seq"] for e in body] == [1, 2, 3, 4, 5]
    assert set(body[0]) == {"job_id", "seq", "ts", "type", "data", "event_id"}
    assert body[0]["job_id"] == job_id and body[0]["data"] == {"i": 0}
    resp = client.get(f"/api/v1/jobs/{job_id}/events", params={"after": 3}, headers=headers)
    assert [e["seq"] for e in resp.json()] == [4, 5]
    resp = client.get(f"/api/v1/jobs/{job_id}/events", params={"after": 1, "limit": 2}, headers=headers)
    assert [e["seq"] for e in resp.json()] == [2, 3]

    _, stranger = make_user()
    assert client.get(f"/api/v1/jobs/{job_id}/events", headers=stranger).status_code == 404
    assert client.get("/api/v1/jobs/999999/events", headers=headers).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/events").status_code == 401


def test_side_effects_reach_the_job_row(app: FastAPI, client: TestClient, job: tuple[int, str]) -> None:
    from tools.db.models import Job

    job_id, token = job
    post(
        client,
        job_id,
        {
            "events": [
                event("status", {"status": "running"}),
                event("epoch", {"epoch": 1, "epochs": 2, "metrics": {"val/acc": 0.4}}),
                event("epoch", {"epoch": 2, "epochs": 2, "metrics": {"val/acc": 0.6}}),
                event("status", {"status": "completed"}),
            ]
        },
        token,
    )
    with app.state.session_factory() as db:
        row = db.get(Job, job_id)
        assert row.status == "completed" and row.epochs_completed == 2 and row.best_epoch == 2


def test_the_trainers_http_reporter_delivers_everything_once(settings: Any, tmp_path: Path) -> None:
    """The real HttpReporter (trainer side) against a real server: every event stored once, in order."""
    from trainer_runtime.reporting import HttpReporter
    from web.main import create_app

    app = create_app(settings)
    with LiveServer(app) as server:
        user_id, access = register(server.url)
        job_id, token = make_job(app.state.session_factory, user_id)
        url = f"{server.url}/internal/jobs/{job_id}/events"
        reporter = HttpReporter(job_id, url, token, tmp_path / "spool", batch_max=7)
        for i in range(40):
            reporter.emit("log", {"i": i})
        reporter.emit("status", {"status": "completed"})
        assert reporter.close(30)
        # a second reporter on the same spool re-sends nothing that was acknowledged
        again = HttpReporter(job_id, url, token, tmp_path / "spool")
        assert again.close(10)
        import httpx

        resp = httpx.get(
            f"{server.url}/api/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {access}"}, timeout=30
        )
        got = resp.json()
        assert [e["seq"] for e in got] == list(range(1, 42))
        assert [e["data"].get("i") for e in got[:40]] == list(range(40))
