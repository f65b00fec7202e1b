"""Helpers for the progress-event tests (tools/events, eventbus, ingestion, WS, SSE, metrics).

make_job(session_factory, owner_id, token=None, **fields) -> (job_id, token)   (status running)
redis_url()            TEST_REDIS_URL; skips when unset, FAILS when set but unreachable
unique_prefix()        a Redis channel prefix unique to one test
LiveServer(app)        the app under a real uvicorn server in a thread (true concurrency);
                       `.url`, `.ws_url`, context manager
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
import uuid
from typing import Any

import pytest

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "").strip()


def make_job(session_factory: Any, owner_id: int, token: str | None = None, **fields: Any) -> tuple[int, str]:
    from tools.db.models import Job

    token = token or secrets.token_urlsafe(24)
    values: dict[str, Any] = {
        "owner_id": owner_id,
        "framework": "timm",
        "model_name": "resnet18",
        "task_type": "image_classification",
        # not "queued": the app's supervisor would try to launch it; it leaves a running job it did
        # not start alone
        "status": "running",
        "token_hash": hashlib.sha256(token.encode()).hexdigest(),
    }
    values.update(fields)
    with session_factory() as db:
        job = Job(**values)
        db.add(job)
        db.commit()
        return job.id, token


def make_owner(session_factory: Any, email: str | None = None) -> int:
    from tools.db.models import User

    with session_factory() as db:
        user = User(email=email or f"owner-{uuid.uuid4().hex[:8]}@example.com", hashed_password="x")
        db.add(user)
        db.commit()
        return user.id


def redis_url() -> str:
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL is not set")
    import redis

    try:
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        pytest.fail(f"TEST_REDIS_URL={TEST_REDIS_URL} is set but unreachable: {exc}", pytrace=False)
    return TEST_REDIS_URL


def unique_prefix() -> str:
    return f"vtatest-{uuid.uuid4().hex[:12]}"


class LiveServer:
    """`app` served by uvicorn on 127.0.0.1:<free port> in a daemon thread (lifespan included)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", ws="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def register(
    base_url: str, email: str | None = None, password: str = "correct horse battery staple"
) -> tuple[int, str]:
    """Register and sign in over HTTP: (user id, access token)."""
    import httpx

    email = email or f"u-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        resp = client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert resp.status_code == 201, resp.text
        tok = client.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert tok.status_code == 200, tok.text
        return int(resp.json()["id"]), tok.json()["access_token"]


def event(type: str = "log", data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A trainer-style event body (fresh event_id)."""
    body: dict[str, Any] = {"type": type, "data": data if data is not None else {}, "event_id": uuid.uuid4().hex}
    body.update(extra)
    return body
