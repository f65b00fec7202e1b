"""WS /ws/jobs/{id}?after=SEQ&token=T: replay then live without gaps or duplicates, auth, heartbeat,
terminal close, slow clients, and fan-out across two app instances sharing one Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import MakeUser, make_settings
from tests.event_helpers import LiveServer, event, make_job, redis_url, register, unique_prefix


def bearer_token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def ingest(client: Any, job_id: int, token: str, events: list[dict[str, Any]]) -> Any:
    resp = client.post(
        f"/internal/jobs/{job_id}/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    return resp


# -------------------------------------------------------------------------------------------------
# TestClient


@pytest.fixture
def setup(app: FastAPI, client: TestClient, make_user: MakeUser) -> tuple[int, str, str]:
    """(job id, job callback token, owner's access token)."""
    user, headers = make_user()
    job_id, job_token = make_job(app.state.session_factory, int(user["id"]))
    return job_id, job_token, bearer_token(headers)


def test_replay_then_live_then_close_on_terminal_status(client: TestClient, setup: tuple[int, str, str]) -> None:
    job_id, job_token, access = setup
    ingest(client, job_id, job_token, [event("log", {"i": i}) for i in range(3)])
    with client.websocket_connect(f"/ws/jobs/{job_id}?after=1&token={access}") as ws:
        replayed = [ws.receive_json() for _ in range(2)]
        assert [e["seq"] for e in replayed] == [2, 3]
        assert set(replayed[0]) == {"job_id", "seq", "ts", "type", "data", "event_id"}
        ingest(client, job_id, job_token, [event("log", {"i": 3}), event("status", {"status": "completed"})])
        live = [ws.receive_json() for _ in range(2)]
        assert [e["seq"] for e in live] == [4, 5]
        assert live[1]["data"]["status"] == "completed"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000


def test_gaps_in_the_live_stream_are_filled_from_the_store(
    app: FastAPI, client: TestClient, setup: tuple[int, str, str]
) -> None:
    """A live event whose seq jumps ahead (an earlier publish was lost or is late) and a bus RESYNC
    (Redis reconnected) are both repaired from the store: the client still sees every seq once."""
    from tools.eventbus import RESYNC
    from tools.events import append_event

    job_id, _job_token, access = setup
    factory, bus = app.state.session_factory, app.state.event_bus

    def store(n: int) -> list[dict[str, Any]]:  # stored but NOT published
        with factory() as db:
            return [e for e in (append_event(db, job_id, "log", {"n": i}) for i in range(n)) if e]

    store(2)
    with client.websocket_connect(f"/ws/jobs/{job_id}?after=0&token={access}") as ws:
        assert [ws.receive_json()["seq"] for _ in range(2)] == [1, 2]
        stored = store(3)  # seqs 3, 4, 5; only 5 is published
        bus.publish_threadsafe(job_id, stored[-1])
        assert [ws.receive_json()["seq"] for _ in range(3)] == [3, 4, 5]
        bus.publish_threadsafe(job_id, stored[0])  # a late duplicate: skipped
        store(1)  # seq 6, never published; the bus says it may have lost events
        bus._loop.call_soon_threadsafe(bus._dispatch_all, RESYNC)
        assert ws.receive_json()["seq"] == 6
        with factory() as db:
            final = append_event(db, job_id, "status", {"status": "completed"}, source="trainer")
        bus.publish_threadsafe(job_id, final)
        assert ws.receive_json()["seq"] == 7
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000


def test_finished_job_with_nothing_new_closes_at_once(client: TestClient, setup: tuple[int, str, str]) -> None:
    job_id, job_token, access = setup
    ingest(client, job_id, job_token, [event("log"), event("status", {"status": "failed"})])
    with client.websocket_connect(f"/ws/jobs/{job_id}?after=2&token={access}") as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000
    # from the start, the whole history is replayed first
    with client.websocket_connect(f"/ws/jobs/{job_id}?token={access}") as ws:
        assert [ws.receive_json()["seq"] for _ in range(2)] == [1, 2]
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1000


def test_refused_connections(client: TestClient, setup: tuple[int, str, str], make_user: MakeUser) -> None:
    job_id, _job_token, _access = setup
    _, stranger = make_user()
    cases = [
        (f"/ws/jobs/{job_id}", 1008),  # no token
        (f"/ws/jobs/{job_id}?token=garbage", 1008),  # bad token
        (f"/ws/jobs/{job_id}?token={bearer_token(stranger)}", 4404),  # another user's job
        (f"/ws/jobs/999999?token={bearer_token(stranger)}", 4404),  # no such job: same answer
    ]
    for url, code in cases:
        with client.websocket_connect(url) as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
            assert info.value.code == code, url


def test_heartbeat_pings_when_idle(app: FastAPI, client: TestClient, setup: tuple[int, str, str]) -> None:
    job_id, job_token, access = setup
    app.state.stream_heartbeat_s = 0.1
    with client.websocket_connect(f"/ws/jobs/{job_id}?token={access}") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "ping" and "ts" in msg
        ingest(client, job_id, job_token, [event("log")])
        while (msg := ws.receive_json())["type"] == "ping":
            pass
        assert msg["seq"] == 1  # events still flow between pings


def test_connection_gauge_follows_open_sockets(client: TestClient, setup: tuple[int, str, str]) -> None:
    job_id, job_token, access = setup

    def gauge() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("vta_ws_connections "):
                return float(line.split()[1])
        raise AssertionError("vta_ws_connections missing")

    assert gauge() == 0
    with client.websocket_connect(f"/ws/jobs/{job_id}?token={access}") as ws:
        ingest(client, job_id, job_token, [event("log")])
        assert ws.receive_json()["seq"] == 1
        assert gauge() == 1
    for _ in range(100):
        if gauge() == 0:
            break
        import time

        time.sleep(0.02)
    assert gauge() == 0


# -------------------------------------------------------------------------------------------------
# real server: true concurrency


@pytest.fixture
def live(settings: Any) -> Any:
    from web.main import create_app

    app = create_app(settings)
    with LiveServer(app) as server:
        yield server


async def watch(ws_url: str, max_events: int | None = None, timeout: float = 30) -> tuple[list[int], int | None]:
    """Seqs received (pings skipped) until the server closes, or `max_events`; and the close code."""
    seqs: list[int] = []
    code: int | None = None
    async with asyncio.timeout(timeout), connect(ws_url, max_size=None) as ws:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "ping":
                    continue
                seqs.append(int(msg["seq"]))
                if max_events is not None and len(seqs) >= max_events:
                    return seqs, None
        except ConnectionClosed:
            pass
        code = ws.close_code
    return seqs, code


async def post_events(http: httpx.AsyncClient, job_id: int, token: str, n: int, *, final: bool, pause: float) -> None:
    for i in range(n):
        await _post(http, job_id, token, [event("log", {"i": i})])
        if pause:
            await asyncio.sleep(pause)
    if final:
        await _post(http, job_id, token, [event("status", {"status": "completed"})])


async def _post(http: httpx.AsyncClient, job_id: int, token: str, events: list[dict[str, Any]]) -> None:
    resp = await http.post(
        f"/internal/jobs/{job_id}/events", json={"events": events}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.slow
def test_seam_has_no_gap_and_no_duplicate_while_events_keep_coming(live: LiveServer) -> None:
    """Clients connect with after=k while events are published concurrently: each receives exactly
    k+1..N, once, in order (N = the final, terminal status event)."""
    user_id, access = register(live.url)
    job_id, job_token = make_job(live.app.state.session_factory, user_id)
    total_live = 150

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            await _post(http, job_id, job_token, [event("log", {"pre": i}) for i in range(20)])

            async def late_watcher(delay: float, after: int | None) -> tuple[int, list[int], int | None]:
                await asyncio.sleep(delay)
                if after is None:  # connect exactly at the current end of the store
                    resp = await http.get(
                        f"/api/v1/jobs/{job_id}/events",
                        params={"after": 0},
                        headers={"Authorization": f"Bearer {access}"},
                    )
                    after = resp.json()[-1]["seq"]
                seqs, code = await watch(f"{live.ws_url}/ws/jobs/{job_id}?after={after}&token={access}")
                return after, seqs, code

            watchers = [
                late_watcher(d, a)
                for d, a in [(0, 0), (0, 20), (0.05, 5), (0.1, None), (0.2, None), (0.3, 10), (0.4, None)]
            ]
            results = await asyncio.gather(
                post_events(http, job_id, job_token, total_live, final=True, pause=0.003), *watchers
            )
        last = 20 + total_live + 1
        watched = cast(list[tuple[int, list[int], int | None]], results[1:])
        for after, seqs, code in watched:
            assert seqs == list(range(after + 1, last + 1)), (after, seqs[:5], len(seqs))
            assert code == 1000

    asyncio.run(main())


@pytest.mark.slow
def test_reconnect_with_after_sees_each_event_once(live: LiveServer) -> None:
    user_id, access = register(live.url)
    job_id, job_token = make_job(live.app.state.session_factory, user_id)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            poster = asyncio.create_task(post_events(http, job_id, job_token, 80, final=True, pause=0.005))
            seen: list[int] = []
            code = None
            while code != 1000:  # drop the connection every 7 events, resume from the last seq
                seqs, code = await watch(
                    f"{live.ws_url}/ws/jobs/{job_id}?after={seen[-1] if seen else 0}&token={access}", max_events=7
                )
                seen.extend(seqs)
            await poster
        assert seen == list(range(1, 82))

    asyncio.run(main())


class RawWebSocket:
    """A WebSocket client on a plain socket with a tiny receive buffer, which can stop reading
    (the kernel would otherwise buffer tens of MB on loopback)."""

    def __init__(self, port: int, path: str) -> None:
        import base64
        import os
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(1)
        assert self.buf.startswith(b"HTTP/1.1 101"), self.buf
        self.buf = b""

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until_close(self) -> tuple[int, int | None]:
        """(data frames read, close code or None when the connection ended without one)."""
        import struct

        frames = 0
        try:
            while True:
                b0, b1 = self._read(2)
                length = b1 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", self._read(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", self._read(8))
                payload = self._read(length)
                if b0 & 0x0F == 8:
                    return frames, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                frames += 1
        except (EOFError, OSError):
            return frames, None

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_a_client_that_does_not_read_is_closed_with_1013(live: LiveServer) -> None:
    """The watcher's queue is bounded (here 4 events): a client that stops reading is dropped
    with 1013 instead of the server buffering for it."""
    live.app.state.stream_queue_size = 4
    user_id, access = register(live.url)
    job_id, job_token = make_job(live.app.state.session_factory, user_id)
    blob = "x" * 100_000
    ws = RawWebSocket(live.port, f"/ws/jobs/{job_id}?token={access}")
    try:
        posted = 0
        with httpx.Client(base_url=live.url, timeout=30) as http:
            for i in range(300):  # ~30 MB at most: far more than the socket buffers hold
                resp = http.post(
                    f"/internal/jobs/{job_id}/events",
                    json={"events": [event("log", {"i": i, "blob": blob})]},
                    headers={"Authorization": f"Bearer {job_token}"},
                )
                assert resp.status_code == 200
                posted += 1
                if i % 5 == 0 and 'vta_stream_slow_disconnects_total{transport="ws"} 1.0' in http.get("/metrics").text:
                    break
        ws.sock.settimeout(30)
        frames, code = ws.read_until_close()
        assert code == 1013
        assert frames < posted
    finally:
        ws.close()


# -------------------------------------------------------------------------------------------------
# two app instances, one Redis


@pytest.fixture
def two_servers(db_url: str, tmp_path: Any) -> Iterator[Any]:
    from web.main import create_app

    url, prefix = redis_url(), unique_prefix()
    apps = [
        create_app(make_settings(db_url, tmp_path / name, redis_url=url, redis_channel_prefix=prefix))
        for name in ("a", "b")
    ]
    with LiveServer(apps[0]) as a, LiveServer(apps[1]) as b:
        yield a, b


def test_event_ingested_on_one_app_reaches_a_watcher_on_another(two_servers: Any) -> None:
    a, b = two_servers
    user_id, access = register(a.url)
    job_id, job_token = make_job(a.app.state.session_factory, user_id)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
            await _post(http, job_id, job_token, [event("log", {"i": -1})])
            watcher = asyncio.create_task(watch(f"{b.ws_url}/ws/jobs/{job_id}?after=0&token={access}"))
            await asyncio.sleep(0.3)  # the watcher on B is live (replayed seq 1)
            await post_events(http, job_id, job_token, 10, final=True, pause=0.01)
            seqs, code = await watcher
        assert seqs == list(range(1, 13)) and code == 1000

    asyncio.run(main())
