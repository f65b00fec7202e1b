"""GET /api/v1/jobs/{id}/stream (Server-Sent Events): the same replay/live semantics as the WebSocket,
Last-Event-ID, heartbeat comments, 204 for a finished job, owner only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.event_helpers import LiveServer, event, make_job, register


@pytest.fixture
def live(settings: Any) -> Any:
    from web.main import create_app

    app = create_app(settings)
    with LiveServer(app) as server:
        yield server


async def _post(http: httpx.AsyncClient, job_id: int, token: str, events: list[dict[str, Any]]) -> None:
    resp = await http.post(
        f"/internal/jobs/{job_id}/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text


async def read_sse(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout: float = 30
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """(status, messages {"id", "event", "data"}, comments) until the server ends the stream."""
    messages: list[dict[str, Any]] = []
    comments: list[str] = []
    async with asyncio.timeout(timeout), http.stream("GET", url, headers=headers) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return resp.status_code, [], []
        assert resp.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in resp.aiter_lines():
            if line == "":
                if current:
                    messages.append(current)
                current = {}
            elif line.startswith(":"):
                comments.append(line[1:].strip())
            else:
                field, _, value = line.partition(":")
                current[field] = value.removeprefix(" ")
    return 200, messages, comments


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [int(m["id"]) for m in messages if "id" in m]


@pytest.mark.slow
def test_sse_replays_then_streams_live_without_gaps_and_ends(live: LiveServer) -> None:
    user_id, access = register(live.url)
    job_id, job_token = make_job(live.app.state.session_factory, user_id)
    auth = {"Authorization": f"Bearer {access}"}

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            await _post(http, job_id, job_token, [event("log", {"i": i}) for i in range(10)])

            async def poster() -> None:
                for i in range(60):
                    await _post(http, job_id, job_token, [event("log", {"i": 10 + i})])
                    await asyncio.sleep(0.003)
                await _post(http, job_id, job_token, [event("status", {"status": "completed"})])

            async def watcher(delay: float, after: int) -> tuple[int, list[dict[str, Any]], list[str]]:
                await asyncio.sleep(delay)
                return await read_sse(http, f"/api/v1/jobs/{job_id}/stream?after={after}", auth)

            results = await asyncio.gather(poster(), watcher(0, 0), watcher(0.05, 4), watcher(0.15, 10))
        for after, (status, messages, _comments) in zip([0, 4, 10], results[1:], strict=True):
            assert status == 200
            data_messages = [m for m in messages if "id" in m]
            assert seqs(messages) == list(range(after + 1, 72)), after
            last = json.loads(data_messages[-1]["data"])
            assert data_messages[-1]["event"] == "status" and last["data"]["status"] == "completed"
            assert last["seq"] == int(data_messages[-1]["id"])
            assert messages[-1]["event"] == "end"
            assert messages[0].get("retry") == "2000"

    asyncio.run(main())


def test_sse_last_event_id_heartbeat_token_param_and_204(live: LiveServer) -> None:
    live.app.state.stream_heartbeat_s = 0.1
    user_id, access = register(live.url)
    job_id, job_token = make_job(live.app.state.session_factory, user_id)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            await _post(http, job_id, job_token, [event("log") for _ in range(5)])

            async def finish_later() -> None:
                await asyncio.sleep(0.5)
                await _post(http, job_id, job_token, [event("status", {"status": "stopped"})])

            # Last-Event-ID wins over ?after=, and ?token= works for EventSource
            status, messages, comments = (
                await asyncio.gather(
                    read_sse(http, f"/api/v1/jobs/{job_id}/stream?after=1&token={access}", {"Last-Event-ID": "3"}),
                    finish_later(),
                )
            )[0]
            assert status == 200
            assert seqs(messages) == [4, 5, 6]
            assert "ping" in comments  # heartbeats while waiting
            # finished and nothing after: 204 (EventSource stops reconnecting)
            resp = await http.get(
                f"/api/v1/jobs/{job_id}/stream", headers={"Authorization": f"Bearer {access}", "Last-Event-ID": "6"}
            )
            assert resp.status_code == 204
            # finished, but the client missed the end: replay, then end
            status, messages, _ = await read_sse(
                http, f"/api/v1/jobs/{job_id}/stream?after=4", {"Authorization": f"Bearer {access}"}
            )
            assert seqs(messages) == [5, 6] and messages[-1]["event"] == "end"

    asyncio.run(main())


def test_sse_is_owner_only(live: LiveServer) -> None:
    user_id, access = register(live.url)
    _, stranger = register(live.url)
    job_id, _ = make_job(live.app.state.session_factory, user_id)
    with httpx.Client(base_url=live.url, timeout=30) as http:
        url = f"/api/v1/jobs/{job_id}/stream"
        assert http.get(url).status_code == 401
        assert http.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.get(url, headers={"Authorization": f"Bearer {stranger}"}).status_code == 404
        assert http.get(f"{url}?token={stranger}").status_code == 404
        assert http.get("/api/v1/jobs/999999/stream", headers={"Authorization": f"Bearer {access}"}).status_code == 404
