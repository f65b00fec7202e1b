"""`WS /ws/jobs/{job_id}?after=SEQ&ticket=T`: a job's progress events, replayed then live
(`WS /ws/test-runs/{run_id}`: a batch test run's, the same way).

Authentication: `?ticket=`, a single-use stream ticket for this very job or test run
(`POST /api/v1/stream-tickets`, valid `stream_ticket_ttl_s`), or the deprecated `?token=` (the
bearer token; kept for one release, redacted from every log line by `web.logredact`).

Protocol (server -> client, JSON text frames)
    * every event of the job with seq > `after`, each once, in seq order, as stored
      (``{"job_id", "seq", "ts", "type", "data", "event_id"}``), first from the store, then live
      (see `web.routes.job_events.event_stream` for the replay/live seam);
    * ``{"type": "ping", "ts": ...}`` after `heartbeat` seconds without events (default 15 s);
    * the server closes with 1000 once the job is in a terminal status (completed, failed, stopped)
      and its terminal status event was delivered, or at once for a finished job with nothing after
      `after`. A job resumed later is followed by reconnecting with ``after=<last seq>``;
    * ``{"job_id", "seq": null, "type": "deleted", "data": {"message"}}`` when the job (or test
      run) was deleted, or the id no longer names the job the socket opened (owner and creation
      time are re-checked with every heartbeat and on the deletion notice); then close 4410.
Messages from the client are read and ignored (the read notices the disconnect).

Close codes (the socket is accepted first, so the client always sees the code and a reason)
    1008  missing, bad or expired token (`web.errors.ws_close_code(AuthenticationError)`)
    4404  the job does not exist or the user may not see it (one answer for both, like REST's 404)
    4410  the job (test run) was deleted while the socket followed it ("gone"; do not reconnect)
    1013  the client does not keep up: more than `queue` events wait for it (default 1000);
          reconnect with ``after=<last seq>``
    1000  the job finished (above)
    1011  server error
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from tools.errors import NotFoundError
from tools.eventbus import RESYNC as RESYNC_MARKER
from tools.eventbus import SlowConsumer, Subscription
from trainer_runtime.events import utc_ts
from web.errors import ws_close_code
from web.params import AfterSeq, IdPath
from web.routes.job_events import (
    RESYNC,
    SEND,
    SKIP,
    JobIdentity,
    PageReader,
    StreamCursor,
    authorize_sync,
    authorize_test_run_sync,
    deleted_event,
    encode_event,
    get_bus,
    job_identity,
    read_test_run_page,
    stream_settings,
)
from web.stream_auth import StreamCredentials

log = logging.getLogger(__name__)

router = APIRouter(tags=["job events"])

WS_NORMAL = 1000
WS_TRY_AGAIN_LATER = 1013
WS_NOT_FOUND = 4404
WS_GONE = 4410
CLOSE_TIMEOUT_S = 5.0


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason[:120]), CLOSE_TIMEOUT_S)


async def _send_events(
    websocket: WebSocket,
    state: Any,
    job_id: int,
    after: int,
    sub: Subscription,
    reader: PageReader | None = None,
    identity: JobIdentity | None = None,
) -> str:
    """Replay, then live (`StreamCursor` holds the seam logic; this is `event_stream` inlined,
    since it runs once per watcher per event). Returns "finished", or "deleted" after sending
    the final `deleted_event`."""
    send = websocket.send
    cursor = StreamCursor(state, job_id, after, reader, identity)
    outcome = await _replay(cursor, send, None)
    if outcome:
        return outcome
    next_event = sub.__anext__
    while True:
        try:
            event = await next_event()
        except StopAsyncIteration:
            return "finished"
        kind = cursor.classify(event)
        if kind is SEND:
            await send({"type": "websocket.send", "text": encode_event(event)})
            if cursor.sent(event):
                return "finished"
            continue
        if kind is SKIP:
            continue
        outcome = await _replay(cursor, send, None if kind is RESYNC else event["seq"] - 1)
        if outcome:
            return outcome
        if kind is RESYNC:
            continue
        await send({"type": "websocket.send", "text": encode_event(event)})
        if cursor.sent(event):
            return "finished"


async def _replay(cursor: StreamCursor, send: Any, until: int | None) -> str:
    """Send what the store holds after the cursor (up to `until`); "" while the stream goes on,
    "finished", or "deleted" once the final `deleted_event` is sent."""
    async for missed in cursor.catch_up(until=until):
        await send({"type": "websocket.send", "text": encode_event(missed)})
    if cursor.deleted:
        await send({"type": "websocket.send", "text": json.dumps(deleted_event(abs(cursor.job_id)))})
        return "deleted"
    return "finished" if cursor.finished and until is None else ""


async def _heartbeat(websocket: WebSocket, interval: float, sub: Subscription) -> None:
    """A ping every `interval` seconds (each send writes one whole frame, so it may interleave
    with the event sender between frames); each also makes the sender re-read the store (a
    RESYNC marker), which notices a deleted job or one that is no longer the job it opened."""
    while True:
        await anyio.sleep(interval)
        await websocket.send_text(json.dumps({"type": "ping", "ts": utc_ts()}))
        sub.deliver(RESYNC_MARKER)


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends; return when it disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/ws/jobs/{job_id}")
async def job_progress_ws(
    websocket: WebSocket, job_id: IdPath, after: AfterSeq = 0, token: str | None = None, ticket: str | None = None
) -> None:
    """A job's progress events over a WebSocket (the protocol and close codes above): the stored
    ones after `after`, then live until the job ends; authenticates with a stream ticket."""
    state = websocket.app.state
    await websocket.accept()
    creds = StreamCredentials(token=token, ticket=ticket)
    authorized = await _authorized(websocket, authorize_sync, state, creds, job_id, "job")
    if authorized is not None:
        _user, job = authorized
        await _watch(websocket, state, job_id, after, None, "job", job_identity(job))


@router.websocket("/ws/test-runs/{run_id}")
async def test_run_progress_ws(
    websocket: WebSocket, run_id: IdPath, after: AfterSeq = 0, token: str | None = None, ticket: str | None = None
) -> None:
    """A batch test run's events (`tools.inference`), with the protocol and close codes of
    `/ws/jobs/{id}`; 1000 "test run finished" once it completed or failed."""
    state = websocket.app.state
    await websocket.accept()
    creds = StreamCredentials(token=token, ticket=ticket)
    if await _authorized(websocket, authorize_test_run_sync, state, creds, run_id, "test run") is not None:
        await _watch(websocket, state, -run_id, after, read_test_run_page, "test run")


async def _authorized(
    websocket: WebSocket, check: Any, state: Any, creds: StreamCredentials, ident: int, what: str
) -> Any:
    """`check(state, creds, ident)`'s answer; on failure close with the mapped code and answer None."""
    try:
        return await run_in_threadpool(check, state, creds, ident)
    except NotFoundError:
        await _close(websocket, WS_NOT_FOUND, f"{what} not found")
        return None
    except Exception as exc:
        code = ws_close_code(exc)
        if code == 1011:
            log.exception("WS %s %s: authorization failed", what, ident)
        await _close(websocket, code, "not authenticated" if code == 1008 else "error")
        return None


async def _watch(
    websocket: WebSocket,
    state: Any,
    channel: int,
    after: int,
    reader: PageReader | None,
    what: str,
    identity: JobIdentity | None = None,
) -> None:
    """Subscribe to `channel`, serve the stream, close with the outcome's code."""
    heartbeat_s, queue_size = stream_settings(state)
    bus = get_bus(state)
    telemetry = getattr(state, "telemetry", None)
    if telemetry is not None:
        telemetry.ws_connections.inc()
    try:
        async with bus.subscribe(channel, queue_size=queue_size) as sub:
            outcome = await _serve(websocket, state, channel, max(0, after), sub, heartbeat_s, reader, identity)
        if outcome == "client":
            return
        if outcome == "finished":
            code, reason = WS_NORMAL, f"{what} finished"
        elif outcome == "deleted":
            code, reason = WS_GONE, f"{what} deleted"
        elif outcome == "slow":
            code, reason = WS_TRY_AGAIN_LATER, "too slow: reconnect with after=<last seq>"
            if telemetry is not None:
                telemetry.slow_disconnects.labels(transport="ws").inc()
        else:
            code, reason = 1011, "server error"
        await _close(websocket, code, reason)
    finally:
        if telemetry is not None:
            telemetry.ws_connections.dec()


async def _serve(
    websocket: WebSocket,
    state: Any,
    job_id: int,
    after: int,
    sub: Subscription,
    hb: float,
    page_reader: PageReader | None = None,
    identity: JobIdentity | None = None,
) -> str:
    """Send events while reading the client; the first of these ends it: the stream finished
    ("finished"), the job was deleted ("deleted"), the client left ("client"), the watcher
    overflowed ("slow", also while a send is blocked on a client that does not read), or an error
    ("error")."""
    outcome: list[str] = []

    async with anyio.create_task_group() as tg:

        def done(what: str) -> None:
            outcome.append(what)
            tg.cancel_scope.cancel()

        async def sender() -> None:
            try:
                result = await _send_events(websocket, state, job_id, after, sub, page_reader, identity)
            except SlowConsumer:
                done("slow")
            except Exception as exc:
                if not _is_disconnect(exc):
                    log.error("WS stream %s failed: %r", job_id, exc)
                done("client" if _is_disconnect(exc) else "error")
            else:
                done(result)

        async def reader() -> None:
            with contextlib.suppress(Exception):
                await _drain_client(websocket)
            done("client")

        async def watchdog() -> None:
            await sub.wait_slow()
            done("slow")

        async def pinger() -> None:
            try:
                await _heartbeat(websocket, hb, sub)
            except Exception:
                done("client")

        tg.start_soon(sender)
        tg.start_soon(reader)
        tg.start_soon(watchdog)
        tg.start_soon(pinger)
    return outcome[0] if outcome else "client"


def _is_disconnect(exc: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect

    return isinstance(exc, WebSocketDisconnect | OSError | RuntimeError)
