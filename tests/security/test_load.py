"""The database pool must not deadlock under concurrent requests, and overload
is answered 503 + Retry-After instead of queueing into timeouts.

Before the fix, the sign-in check ran on the request's session and kept its pooled connection while
the request waited for a worker thread for the route: with more requests than threads + pool, every
thread waited for a connection that a thread-less request held, until the pool's 30 s timeout, and
the requests were answered 500 (`QueuePool limit ... reached`). Here a real server (uvicorn, its
own event loop and 40 worker threads) with a pool of 2 connections and no overflow gets 60
concurrent authenticated GETs: every answer must be 200 or a deliberate 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc

from tests.conftest import make_settings
from tests.live_server import API, LiveServer, register
from web.overload import OverloadMiddleware

CONCURRENT = 60


def _busy_ok(r: httpx.Response) -> bool:
    """A deliberate 503: Retry-After and the documented error body."""
    body = r.json()
    return r.status_code == 503 and int(r.headers["Retry-After"]) >= 1 and body["error"] == "ServiceBusyError"


async def _burst(url: str, headers: dict[str, str], n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120.0, limits=limits) as client:
        return await asyncio.gather(*(client.get(f"{API}/datasets") for _ in range(n)))


@pytest.mark.slow
def test_concurrent_gets_on_a_tiny_pool_answer_200_or_503(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, db_pool_size=2, db_max_overflow=0)
    from web.main import create_app

    with LiveServer(create_app(settings)) as server, server.client() as client:
        headers = register(client, "load@example.com")
        for i in range(3):
            r = client.post(f"{API}/datasets", json={"name": f"ds-{i}"}, headers=headers)
            assert r.status_code == 201, r.text
        responses = asyncio.run(_burst(server.url, headers, CONCURRENT))
        statuses = [r.status_code for r in responses]
        unexpected = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200 and not _busy_ok(r)]
        assert not unexpected, unexpected
        assert statuses.count(200) >= 1, statuses
        for r in responses:
            if r.status_code == 200:
                assert len(r.json()) == 3
        # and the server is still serving
        assert client.get(f"{API}/datasets", headers=headers).status_code == 200


def _hold_upload(url: str, path: str, headers: dict[str, str]) -> socket.socket:
    """Start a POST whose body (10 MiB declared) is never finished: the request stays in flight."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: multipart/form-data; boundary=b0undary"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {10 * 1024 * 1024}")
    part = b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="d/a.png"\r\n\r\n'
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + part + b"x" * 1024)
    return sock


def _overload_middleware(app: Any) -> OverloadMiddleware:
    layer = app.middleware_stack  # built by the first request
    while not isinstance(layer, OverloadMiddleware):
        layer = layer.app
    return layer


def _wait(pred: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_requests_beyond_the_bound_get_503_with_retry_after(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_requests_in_flight=1, request_queue_timeout_s=0)
    from web.main import create_app

    with LiveServer(create_app(settings)) as server, server.client() as client:
        headers = register(client, "bound@example.com")
        r = client.post(f"{API}/datasets", json={"name": "held"}, headers=headers)
        assert r.status_code == 201, r.text
        bound = _overload_middleware(server.app)
        sock = _hold_upload(server.url, f"{API}/datasets/{r.json()['id']}/upload", headers)
        try:
            assert _wait(lambda: bound.in_flight == 1), "the held upload never started"
            # the held upload is being received: the one slot is taken
            answers = [client.get(f"{API}/datasets", headers=headers) for _ in range(3)]
            assert all(_busy_ok(a) for a in answers), [(a.status_code, a.text) for a in answers]
            busy = answers[0]
            assert "retry" in busy.json()["detail"]
            assert client.get("/health").status_code == 200  # probes are never bounded
            assert client.get("/metrics").status_code == 200
        finally:
            sock.close()
        # the slot comes back when the held request ends
        assert _wait(lambda: client.get(f"{API}/datasets", headers=headers).status_code == 200)


def test_a_pool_timeout_is_503_with_retry_after_not_500() -> None:
    from web.errors import error_body, error_response, status_for, ws_close_code

    exc = sqlalchemy.exc.TimeoutError("QueuePool limit of size 2 overflow 0 reached, connection timed out")
    response = error_response(exc)
    assert response.status_code == 503 == status_for(exc)
    assert int(response.headers["Retry-After"]) >= 1
    body = error_body(exc)
    assert body["error"] == "ServiceBusyError" and "DB_POOL_TIMEOUT_S" in body["detail"]
    assert ws_close_code(exc) == 1011


def _tiny_app(max_in_flight: int, queue_timeout_s: float) -> tuple[Any, dict[str, Any]]:
    """A Starlette app behind OverloadMiddleware: `/stream` streams until `release` is set,
    `/slow` answers when `release` is set, `/fast` at once."""
    import threading

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    gate = {"release": threading.Event(), "started": threading.Event()}

    async def wait_gate() -> None:
        gate["started"].set()
        while not gate["release"].is_set():
            await asyncio.sleep(0.01)

    async def stream(request: Any) -> StreamingResponse:
        async def body() -> Any:
            yield b"first\n"
            await wait_gate()
            yield b"last\n"

        return StreamingResponse(body(), media_type="text/plain")

    async def slow(request: Any) -> PlainTextResponse:
        await wait_gate()
        return PlainTextResponse("slow")

    async def fast(request: Any) -> PlainTextResponse:
        return PlainTextResponse("fast")

    app = Starlette(routes=[Route("/stream", stream), Route("/slow", slow), Route("/fast", fast)])
    return OverloadMiddleware(app, max_in_flight=max_in_flight, queue_timeout_s=queue_timeout_s), gate


def test_a_streamed_response_frees_its_slot_once_it_has_started() -> None:
    app, gate = _tiny_app(max_in_flight=1, queue_timeout_s=0)
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/stream") as streaming,
    ):
        assert streaming.status_code == 200
        lines = streaming.iter_lines()
        assert next(lines) == "first"
        assert client.get("/fast").status_code == 200  # the open stream holds no slot
        gate["release"].set()
        assert [line for line in lines if line] == ["last"]


def test_a_request_beyond_the_bound_waits_for_a_slot_within_the_queue_timeout() -> None:
    import threading

    app, gate = _tiny_app(max_in_flight=1, queue_timeout_s=60)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=90) as client:
        answers: dict[str, int] = {}
        slow = threading.Thread(target=lambda: answers.update(slow=client.get("/slow").status_code))
        slow.start()
        assert gate["started"].wait(30)
        assert app.in_flight == 1
        waiting = threading.Thread(target=lambda: answers.update(fast=client.get("/fast").status_code))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and "fast" not in answers  # queued, not refused
        gate["release"].set()
        slow.join(30)
        waiting.join(30)
        assert answers == {"slow": 200, "fast": 200}
        assert app.rejected == 0
