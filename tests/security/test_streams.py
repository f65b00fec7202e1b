"""Live streams between users.

Item 1: ids are never reused (SQLite AUTOINCREMENT, PostgreSQL sequences), and a deleted job's
streams (WS, SSE, test-run WS) end with a final ``deleted`` event (WS close 4410) instead of going
on to serve the next job that gets the id; a stream re-checks that its job is still the job it
opened. Item 6: single-use stream tickets, and no bearer token in any log line of the real server.
Item 11: deleting a job deletes what was made from it (exports, test-run files, cached
checkpoints, the trainer folder) and says what is kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET, MakeUser
from tests.event_helpers import LiveServer, event, make_job, make_owner
from tests.live_server import free_port, wait_for

API = "/api/v1"


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def ticket(client: Any, headers: dict[str, str], kind: str, ident: int | None = None) -> str:
    body: dict[str, Any] = {"kind": kind}
    if ident is not None:
        body["id"] = ident
    r = client.post(f"{API}/stream-tickets", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["ticket"])


def ingest(client: Any, job_id: int, job_token: str, events: list[dict[str, Any]]) -> None:
    r = client.post(
        f"/internal/jobs/{job_id}/events", json={"events": events}, headers={"Authorization": f"Bearer {job_token}"}
    )
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------------------------------
# item 1: ids never reused


def test_ids_of_deleted_rows_are_never_given_again(engine: Any, session_factory: Any) -> None:
    """Every table whose integer id is in a URL or a token: delete the newest row, insert one
    more: the new row gets a new id (on SQLite a plain rowid gives the deleted id again)."""
    from tools.db.models import (
        Dataset,
        DatasetImage,
        Job,
        ModelExport,
        Project,
        SlackLink,
        TestRun,
        User,
        UserWeights,
        new_id,
    )

    owner = make_owner(session_factory)
    with session_factory() as db:
        ds = Dataset(id=new_id(), owner_id=owner, name="ds")
        db.add(ds)
        db.commit()
        ds_id = ds.id
    job_id, _ = make_job(session_factory, owner, status="completed")

    makers: dict[type, Any] = {
        User: lambda i: User(email=f"reuse-{i}-{time.monotonic_ns()}@example.com", hashed_password="x"),
        Project: lambda i: Project(owner_id=owner, name=f"p{i}-{time.monotonic_ns()}"),
        DatasetImage: lambda i: DatasetImage(
            dataset_id=ds_id, file_name=f"{i}-{time.monotonic_ns()}.png", width=1, height=1, size_bytes=1, sha256="0"
        ),
        Job: lambda i: Job(owner_id=owner, framework="timm", model_name="resnet18", task_type="image_classification"),
        TestRun: lambda i: TestRun(owner_id=owner, job_id=job_id),
        ModelExport: lambda i: ModelExport(owner_id=owner, job_id=job_id),
        SlackLink: lambda i: SlackLink(slack_user_id=f"U{i}{time.monotonic_ns()}", user_id=owner),
        UserWeights: lambda i: UserWeights(
            owner_id=owner, framework="timm", model_name="resnet18", name=f"w{i}", key="k", sha256="0", size=1
        ),
    }
    for model, make in makers.items():
        with session_factory() as db:
            row = make(1)
            db.add(row)
            db.commit()
            gone = row.id
            db.delete(row)
            db.commit()
            again = make(2)
            db.add(again)
            db.commit()
            assert again.id > gone, f"{model.__name__}: id {gone} was given again after its row was deleted"


def test_migration_keeps_rows_and_children_on_sqlite(tmp_path: Path) -> None:
    """The 0007 rebuild copies every row and leaves the children (events of a job) in place: with
    foreign keys on, dropping the old jobs table would have deleted them (ON DELETE CASCADE)."""
    from sqlalchemy import text

    from tools.db import create_engine_for_url, migrate

    engine = create_engine_for_url(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate(engine, "0006")
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO users (email, hashed_password, is_system, is_active, created_at) "
                    "VALUES ('a@x', 'x', 0, 1, '2026-01-01'), ('b@x', 'x', 0, 1, '2026-01-01')"
                )
            )
            c.execute(
                text(
                    "INSERT INTO jobs (owner_id, dataset_name, framework, model_name, task_type, intent, "
                    "hyperparameters, config, status, status_message, attempts, max_retries, stop_requested, "
                    "token_hash, executor, epochs, epochs_completed, metrics, last_seq, created_at, updated_at) "
                    "VALUES (2, '', 'timm', 'resnet18', 'image_classification', '{}', '{}', '{}', 'completed', '', "
                    "0, 3, 0, '', 'local', 0, 0, '{}', 1, '2026-01-01', '2026-01-01')"
                )
            )
            c.execute(
                text(
                    "INSERT INTO job_events (job_id, seq, event_id, ts, type, data) "
                    "VALUES (1, 1, 'e1', 't', 'status', '{}')"
                )
            )
        migrate(engine)
        with engine.begin() as c:
            assert c.execute(text("SELECT count(*) FROM users")).scalar() == 2
            assert c.execute(text("SELECT count(*) FROM job_events")).scalar() == 1
            sql = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'jobs'")).scalar()
            assert "AUTOINCREMENT" in str(sql)
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
            # the next job continues after the copied ids, and cascades still work
            c.execute(text("DELETE FROM users WHERE id = 2"))
            assert c.execute(text("SELECT count(*) FROM job_events")).scalar() == 0
    finally:
        engine.dispose()


@pytest.fixture
def live(settings: Any) -> Any:
    from web.main import create_app

    app = create_app(settings)
    with LiveServer(app) as server:
        yield server


def _register(http: Any) -> tuple[int, dict[str, str]]:
    email = f"s-{time.monotonic_ns()}@example.com"
    r = http.post(f"{API}/auth/register", json={"email": email, "password": "correct horse battery staple"})
    assert r.status_code == 201, r.text
    tok = http.post(f"{API}/auth/token", data={"username": email, "password": "correct horse battery staple"})
    return int(r.json()["id"]), {"Authorization": f"Bearer {tok.json()['access_token']}"}


async def _ws_until_closed(ws: Any, timeout: float = 20.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes the socket, and the close code (fails on timeout:
    a stream that neither ends nor speaks is the bug)."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                got.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return got, exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        pytest.fail(f"the stream did not end within {timeout}s; it sent {got}")


def test_deleted_job_ends_its_streams_and_the_next_owner_stays_private(live: Any) -> None:
    """A follows their job on WS and SSE, deletes it; B creates the next job (on old main: the same
    id) and reports events. A's streams end with a final `deleted` event (WS close 4410) and carry
    none of B's events; B's job has a new id; A's old id answers 4404/404."""
    app: FastAPI = live.app
    factory = app.state.session_factory

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            with httpx.Client(base_url=live.url, timeout=30) as sync_http:
                a_id, a_headers = _register(sync_http)
                b_id, b_headers = _register(sync_http)
            a_job, a_job_token = make_job(factory, a_id, status="queued")  # no snapshot: never started
            await http.post(
                f"/internal/jobs/{a_job}/events",
                json={"events": [event("log", {"who": "A"})]},
                headers={"Authorization": f"Bearer {a_job_token}"},
            )
            t = (await http.post(f"{API}/stream-tickets", json={"kind": "job", "id": a_job}, headers=a_headers)).json()
            ws = await connect(f"ws://127.0.0.1:{live.port}/ws/jobs/{a_job}?ticket={t['ticket']}")
            first = json.loads(await ws.recv())
            assert first["data"] == {"who": "A"}
            t2 = (await http.post(f"{API}/stream-tickets", json={"kind": "job", "id": a_job}, headers=a_headers)).json()
            sse_lines: list[str] = []

            async def read_sse() -> None:
                async with http.stream("GET", f"{API}/jobs/{a_job}/stream?ticket={t2['ticket']}") as resp:
                    assert resp.status_code == 200
                    async for line in resp.aiter_lines():
                        sse_lines.append(line)

            sse_task = asyncio.create_task(read_sse())
            await asyncio.sleep(0)
            async with asyncio.timeout(20):
                while not any(line.startswith("data:") for line in sse_lines):
                    await asyncio.sleep(0.05)

            r = await http.delete(f"{API}/jobs/{a_job}", headers=a_headers)
            assert r.status_code == 204, r.text
            b_job, b_job_token = make_job(factory, b_id, status="queued")
            await http.post(
                f"/internal/jobs/{b_job}/events",
                json={"events": [event("log", {"who": "B", "mlflow_run_id": "secret-run-of-b"})]},
                headers={"Authorization": f"Bearer {b_job_token}"},
            )

            rest, code = await _ws_until_closed(ws)
            assert code == 4410, (code, rest)
            assert rest and rest[-1]["type"] == "deleted" and rest[-1]["job_id"] == a_job
            assert all("B" not in json.dumps(m) and "secret-run-of-b" not in json.dumps(m) for m in rest), rest

            async with asyncio.timeout(20):
                await sse_task
            text = "\n".join(sse_lines)
            assert "event: deleted" in text, text
            assert "secret-run-of-b" not in text and '"who":"B"' not in text, text
            assert b_job != a_job, "the deleted job's id was given to the next job"

            async with connect(f"ws://127.0.0.1:{live.port}/ws/jobs/{a_job}?token={token_of(a_headers)}") as again:
                _, code = await _ws_until_closed(again)
                assert code == 4404
            assert (await http.get(f"{API}/jobs/{b_job}", headers=b_headers)).status_code == 200

    asyncio.run(scenario())


def test_stream_rechecks_that_its_job_is_the_job_it_opened(live: Any) -> None:
    """Whatever makes the id name another job (here the row is handed to another owner behind the
    server's back), the stream notices at its next heartbeat and ends with `deleted` (4410)."""
    from sqlalchemy import update

    from tools.db.models import Job
    from tools.events import append_event

    app: FastAPI = live.app
    app.state.stream_heartbeat_s = 0.2
    factory = app.state.session_factory

    async def scenario() -> None:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            a_id, a_headers = _register(http)
            b_id, _ = _register(http)
        job_id, _ = make_job(factory, a_id)
        with factory() as db:
            append_event(db, job_id, "log", {"who": "A"})
        async with connect(f"ws://127.0.0.1:{live.port}/ws/jobs/{job_id}?token={token_of(a_headers)}") as ws:
            assert json.loads(await ws.recv())["data"] == {"who": "A"}  # the stream is open
            with factory() as db:
                db.execute(update(Job).where(Job.id == job_id).values(owner_id=b_id))
                db.commit()
            got, code = await _ws_until_closed(ws)
        assert code == 4410, (code, got)
        assert got[-1]["type"] == "deleted"

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------------
# item 6: stream tickets


def test_stream_ticket_opens_one_stream_once(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    user, headers = make_user()
    job_id, job_token = make_job(app.state.session_factory, int(user["id"]))
    ingest(client, job_id, job_token, [event("log"), event("status", {"status": "completed"})])
    r = client.post(f"{API}/stream-tickets", json={"kind": "job", "id": job_id}, headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"] == f"/ws/jobs/{job_id}?ticket={body['ticket']}" and 0 < body["expires_in_s"] <= 60
    assert token_of(headers) not in body["url"]
    with client.websocket_connect(body["url"]) as ws:
        assert [ws.receive_json()["seq"] for _ in range(2)] == [1, 2]
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000
    with client.websocket_connect(body["url"]) as ws, pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == 1008  # used up
    # SSE takes tickets too, once
    sse_ticket = ticket(client, headers, "job", job_id)
    first = client.get(f"{API}/jobs/{job_id}/stream?ticket={sse_ticket}")
    assert first.status_code == 200 and "event: end" in first.text
    assert client.get(f"{API}/jobs/{job_id}/stream?ticket={sse_ticket}").status_code == 401


def test_stream_ticket_expires(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    from sqlalchemy import update

    from tools.db.models import StreamTicket

    user, headers = make_user()
    job_id, _ = make_job(app.state.session_factory, int(user["id"]), status="completed")
    t = ticket(client, headers, "job", job_id)
    with app.state.session_factory() as db:  # 61 s later
        db.execute(update(StreamTicket).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.commit()
    with client.websocket_connect(f"/ws/jobs/{job_id}?ticket={t}") as ws, pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == 1008


def test_stream_ticket_only_for_its_own_stream(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    user, headers = make_user()
    factory = app.state.session_factory
    job_a, _ = make_job(factory, int(user["id"]), status="completed")
    job_b, _ = make_job(factory, int(user["id"]), status="completed")
    t = ticket(client, headers, "job", job_a)
    for url in (f"/ws/jobs/{job_b}?ticket={t}", f"/ws/chat?ticket={t}", f"/ws/test-runs/{job_a}?ticket={t}"):
        with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1008, url
    assert client.get(f"{API}/jobs/{job_b}/stream?ticket={t}").status_code == 401
    # refused elsewhere, the ticket still opens its own stream
    with client.websocket_connect(f"/ws/jobs/{job_a}?ticket={t}") as ws, pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == 1000
    # a chat ticket opens the chat socket
    chat_t = ticket(client, headers, "chat")
    with client.websocket_connect(f"/ws/chat?ticket={chat_t}") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    # bad requests
    for bad in (
        {"kind": "job"},
        {"kind": "chat", "id": job_a},
        {"kind": "dataset", "id": 1},
        {"kind": "job", "id": 0},
        {"kind": "job", "id": 10**30},
    ):
        assert client.post(f"{API}/stream-tickets", json=bad, headers=headers).status_code == 422, bad
    assert client.post(f"{API}/stream-tickets", json={"kind": "chat"}).status_code == 401


def test_stream_ticket_for_another_users_job_is_404(app: FastAPI, client: TestClient, make_user: MakeUser) -> None:
    owner, _ = make_user()
    _, stranger = make_user()
    job_id, _ = make_job(app.state.session_factory, int(owner["id"]))
    for kind, ident in (("job", job_id), ("job", 2**31 - 1), ("test_run", job_id)):
        r = client.post(f"{API}/stream-tickets", json={"kind": kind, "id": ident}, headers=stranger)
        assert r.status_code == 404, (kind, ident, r.text)


def _run_server(db_url: str, data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SECRET_KEY": TEST_SECRET,
        "CREATE_DEMO_DATASETS": "false",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("EXTERNAL_STORAGE_ENDPOINT", "INTERNAL_STORAGE_ENDPOINT", "S3_ENDPOINT", "REDIS_URL"):
        env.pop(name, None)
    code = "import sys; from web.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--log-level", "debug"]
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd()
        )


@pytest.mark.slow
def test_tokens_never_reach_the_server_log(db_url: str, tmp_path: Path) -> None:
    """`vision-agent serve` (uvicorn, access log on, debug level): WS and SSE opened with the
    deprecated ?token= and with tickets; neither the bearer token nor a ticket is in its output."""
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = _run_server(db_url, tmp_path / "data", port, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            wait_for(lambda: _up(http), timeout=90, what="the server")
            user_id, headers = _register(http)
            access = token_of(headers)

            async def streams() -> list[str]:
                secrets_used = [access]
                async with connect(f"ws://127.0.0.1:{port}/ws/jobs/424242?token={access}") as ws:
                    with pytest.raises(ConnectionClosed):
                        async with asyncio.timeout(10):
                            await ws.recv()
                async with connect(f"ws://127.0.0.1:{port}/ws/chat?token={access}&after=1") as ws:
                    await ws.send(json.dumps({"type": "ping"}))
                    assert json.loads(await ws.recv()) == {"type": "pong"}
                t = http.post(f"{API}/stream-tickets", json={"kind": "chat"}, headers=headers).json()["ticket"]
                secrets_used.append(t)
                async with connect(f"ws://127.0.0.1:{port}/ws/chat?ticket={t}") as ws:
                    await ws.send(json.dumps({"type": "ping"}))
                    assert json.loads(await ws.recv()) == {"type": "pong"}
                return secrets_used

            used = asyncio.run(streams())
            assert http.get(f"{API}/jobs/424242/stream?token={access}").status_code == 404
            assert http.get(f"{API}/jobs/424242/stream?after=0&access_token={access}").status_code == 401
            assert user_id > 0
        time.sleep(0.5)  # let the last access lines reach the file
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert "/ws/chat" in output and "/stream" in output, output[-3000:]  # the lines were logged...
    assert "[REDACTED]" in output
    for secret in used:  # ...without the credentials
        assert secret not in output, f"a credential is in the server log:\n{output[-3000:]}"
    assert access.split(".")[1] not in output


def test_redaction_of_log_records() -> None:
    """Credential query values, bearer tokens and JWTs go; everything else stays, and uvicorn's
    access records keep their five arguments (its formatter unpacks them)."""
    import logging

    from web.logredact import redact, redact_record

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    line = f"GET /ws/jobs/3?after=2&token={jwt}&ticket=abc_-1&keyboard=1&monkey=2&X-Amz-Signature=ff HTTP/1.1"
    assert redact(line) == (
        "GET /ws/jobs/3?after=2&token=[REDACTED]&ticket=[REDACTED]&keyboard=1&monkey=2"
        "&X-Amz-Signature=[REDACTED] HTTP/1.1"
    )
    assert redact(f"Authorization: Bearer {jwt}") == "Authorization: Bearer [REDACTED]"
    assert redact(f"got {jwt} from the page") == "got [REDACTED] from the page"
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/v1/jobs/1/stream?token={jwt}", "1.1", 200), None,
    )  # fmt: skip
    redact_record(record)
    assert record.args == ("127.0.0.1:5", "GET", "/api/v1/jobs/1/stream?token=[REDACTED]", "1.1", 200)
    assert jwt not in record.getMessage()


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------------
# item 11: deleting a job deletes what was made from it


@pytest.mark.timeout(120)  # on old main the socket waits forever for the final frame
def test_deleting_a_job_deletes_its_exports_test_runs_and_caches(
    app: FastAPI, client: TestClient, make_user: MakeUser, settings: Any
) -> None:
    from tools.context import ToolContext
    from tools.db.models import JobCheckpoint, ModelExport, TestRun, User
    from tools.inference import InferenceConfig, export_key, job_cache_dir, test_run_prefix
    from tools.jobs import delete_job

    user, headers = make_user()
    factory = app.state.session_factory
    storage = app.state.storage.internal
    job_id, _ = make_job(factory, int(user["id"]), status="completed", mlflow_run_id="run123")
    other_job, _ = make_job(factory, int(user["id"]), status="completed")
    with factory() as db:
        db.add(JobCheckpoint(job_id=job_id, name="best.pt", key=f"checkpoints/test-jobs/job_{job_id}/best.pt", size=3))
        export = ModelExport(owner_id=int(user["id"]), job_id=job_id, status="completed")
        first = {"job_id": 0, "seq": 1, "ts": "t", "type": "status", "data": {"status": "running"}}
        run = TestRun(owner_id=int(user["id"]), job_id=job_id, status="running", events=[first], last_seq=1)
        keep = TestRun(owner_id=int(user["id"]), job_id=other_job, status="completed")
        db.add_all([export, run, keep])
        db.commit()
        export.key = export_key(job_id, export.id)
        run.report_key = test_run_prefix(run.id) + "report.json"
        run.predictions_key = test_run_prefix(run.id) + "predictions.jsonl"
        keep.report_key = test_run_prefix(keep.id) + "report.json"
        db.commit()
        keys = [f"checkpoints/test-jobs/job_{job_id}/best.pt", export.key, run.report_key, run.predictions_key]
        kept_key = keep.report_key
        run_id = run.id
    for key in [*keys, kept_key]:
        storage.put_bytes(key, b"abc")
    cache = job_cache_dir(InferenceConfig.from_settings(settings).cache_dir, job_id)
    cache.mkdir(parents=True)
    (cache / "0123-best.pt").write_bytes(b"abc")
    trainer_dir = Path(settings.data_dir) / "trainer" / "jobs" / f"job_{job_id}"
    trainer_dir.mkdir(parents=True)
    (trainer_dir / "spec.json").write_text("{}")

    with client.websocket_connect(f"/ws/test-runs/{run_id}?token={token_of(headers)}") as ws:
        assert ws.receive_json()["seq"] == 1  # the stream is open
        with factory() as db:  # what the agent and Slack call (REST answers 204)
            ctx = ToolContext(
                db=db,
                user=db.get(User, int(user["id"])),
                storage=app.state.storage,
                work_dir=app.state.work_dir,
                services=app.state.services,  # the app's supervisor and job listeners
            )
            result = delete_job(ctx, job_id)
        assert ws.receive_json()["type"] == "deleted"  # the test run's stream ended with the job
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 4410

    assert result["exports_deleted"] == 1 and result["test_runs_deleted"] == 1
    assert result["kept"] == ["MLflow run run123 (experiment history stays in MLflow)"]
    for key in keys:
        assert not storage.exists(key), key
    assert storage.exists(kept_key)  # another job's test run stays
    assert not cache.exists() and not trainer_dir.exists()
    with factory() as db:
        assert db.get(TestRun, run_id) is None
        assert db.query(ModelExport).filter(ModelExport.job_id == job_id).count() == 0
    assert client.get(f"{API}/test-runs/{run_id}", headers=headers).status_code == 404


@pytest.mark.timeout(120)  # on old main the delete is refused and nothing ends
def test_deleting_a_running_job_kills_its_trainer_and_ends_its_streams(db_url: str, tmp_path: Path) -> None:
    """A job whose (fake) trainer runs is deleted: 204, its socket gets the final `deleted` event
    and 4410, the supervisor kills the trainer and removes its folder."""
    from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets
    from web.main import create_app

    app = create_app(fake_trainer_settings(db_url, tmp_path))
    with TestClient(app) as client:
        supervisor = app.state.supervisor
        try:
            _, headers = _register(client)
            seed_datasets(client, headers)
            intent = {"model_name": "resnet18", "dataset": "pets", "epochs": 1}
            r = client.post(f"{API}/jobs", json={"intent": intent}, headers=headers)
            assert r.status_code == 201, r.text
            job_id = int(r.json()["id"])
            wait_for(lambda: job_id in supervisor.running_jobs(), timeout=60, what="the trainer to start")
            pid = int(supervisor.handle(job_id).external_id)
            job_dir = supervisor.runtime.job_dir(job_id)
            assert Path(f"/proc/{pid}").exists() and job_dir.exists()
            with client.websocket_connect(f"/ws/jobs/{job_id}?ticket={ticket(client, headers, 'job', job_id)}") as ws:
                assert ws.receive_json()["seq"] == 1  # the stream is open
                assert client.delete(f"{API}/jobs/{job_id}", headers=headers).status_code == 204
                got: list[dict[str, Any]] = []
                with pytest.raises(WebSocketDisconnect) as info:
                    while True:
                        got.append(ws.receive_json())
            assert info.value.code == 4410 and got[-1]["type"] == "deleted", got
            wait_for(lambda: job_id not in supervisor.running_jobs(), timeout=60, what="the trainer to be killed")
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="the trainer process to go")
            assert not job_dir.exists()
            assert client.get(f"{API}/jobs/{job_id}", headers=headers).status_code == 404
        finally:
            supervisor.kill_all()


def test_terminal_chat_opens_its_socket_with_a_ticket(live: Any) -> None:
    """`vision-agent chat` asks for a chat ticket and opens `/ws/chat?ticket=` (its bearer token
    stays out of the socket URL): the ticket is found used, and the turn was answered."""
    from sqlalchemy import select

    from agent.cli import run
    from tools.db.models import StreamTicket

    with httpx.Client(base_url=live.url, timeout=30) as http:
        user_id, headers = _register(http)
    code = asyncio.run(run(live.url, token_of(headers), None, ["hello"], False, 60.0))
    assert code == 0
    with live.app.state.session_factory() as db:
        tickets = list(db.scalars(select(StreamTicket).where(StreamTicket.user_id == user_id)))
    assert [(t.kind, t.used_at is not None) for t in tickets] == [("chat", True)]


@pytest.mark.timeout(120)  # on old main the socket waits forever for the final frame
def test_chat_socket_following_a_deleted_job_gets_a_final_deleted_frame(db_url: str, tmp_path: Path) -> None:
    """The chat follows the jobs it launched; deleting one (queued behind another job) sends one
    ``progress`` frame of ``event_type`` "deleted" and stops following it; the socket stays open."""
    from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets
    from web.main import create_app

    app = create_app(fake_trainer_settings(db_url, tmp_path))
    with TestClient(app) as client:
        try:
            email = f"chat-{time.monotonic_ns()}@example.com"
            client.post(f"{API}/auth/register", json={"email": email, "password": "correct horse battery staple"})
            tok = client.post(f"{API}/auth/token", data={"username": email, "password": "correct horse battery staple"})
            headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
            seed_datasets(client, headers)
            first = client.post(f"{API}/chat", json={"message": "train resnet18 on pets for 2 epochs"}, headers=headers)
            launched = client.post(
                f"{API}/chat", json={"session_id": first.json()["session_id"], "message": "yes"}, headers=headers
            ).json()
            assert launched["launched"], launched  # takes the only slot
            with client.websocket_connect(f"/ws/chat?ticket={ticket(client, headers, 'chat')}") as ws:
                ws.send_json({"type": "message", "message": "train resnet18 on fruit for 2 epochs"})
                reply = ws.receive_json()
                ws.send_json({"type": "message", "session_id": reply["session_id"], "message": "yes"})
                reply = ws.receive_json()
                assert reply["type"] == "reply" and reply["launched"], reply
                job_id = reply["job_id"]
                progress = ws.receive_json()
                assert progress["job_id"] == job_id and progress["data"]["status"] == "queued"
                assert client.delete(f"{API}/jobs/{job_id}", headers=headers).status_code == 204
                final = ws.receive_json()
                assert final["type"] == "progress" and final["job_id"] == job_id, final
                assert final["event_type"] == "deleted" and final["seq"] is None
                ws.send_json({"type": "ping"})
                assert ws.receive_json() == {"type": "pong"}
        finally:
            app.state.supervisor.kill_all()


def test_two_replicas_ticket_from_one_stream_on_the_other_and_deletion_reaches_it(db_url: str, tmp_path: Path) -> None:
    """Two servers on one database and one Redis: a ticket issued by A opens a stream on B (once),
    and deleting the job through A ends B's stream with `deleted` / 4410 (the notice crosses Redis)."""
    from tests.conftest import make_settings
    from tests.event_helpers import redis_url, unique_prefix
    from web.main import create_app

    url, prefix = redis_url(), unique_prefix()
    apps = [
        create_app(make_settings(db_url, tmp_path / name, redis_url=url, redis_channel_prefix=prefix))
        for name in ("a", "b")
    ]
    with LiveServer(apps[0]) as a, LiveServer(apps[1]) as b:

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
                with httpx.Client(base_url=a.url, timeout=30) as sync_http:
                    user_id, headers = _register(sync_http)
                job_id, _ = make_job(a.app.state.session_factory, user_id, status="queued")
                with a.app.state.session_factory() as db:
                    from tools.events import append_event

                    append_event(db, job_id, "log", {"n": 1})
                r = await http.post(f"{API}/stream-tickets", json={"kind": "job", "id": job_id}, headers=headers)
                t = r.json()["ticket"]
                ws = await connect(f"ws://127.0.0.1:{b.port}/ws/jobs/{job_id}?ticket={t}")
                assert json.loads(await ws.recv())["seq"] == 1
                assert (await http.delete(f"{API}/jobs/{job_id}", headers=headers)).status_code == 204
                got, code = await _ws_until_closed(ws, timeout=10)  # well before B's 15 s heartbeat
                assert code == 4410 and got[-1]["type"] == "deleted", (code, got)
                async with connect(f"ws://127.0.0.1:{a.port}/ws/jobs/{job_id}?ticket={t}") as again:
                    _, code = await _ws_until_closed(again)
                    assert code == 1008  # used on B

        asyncio.run(scenario())
