"""Progress events of a job for its owner: `GET /api/v1/jobs/{id}/events?after=SEQ&limit=N` (a page
from the store) and `GET /api/v1/jobs/{id}/stream?after=SEQ` (Server-Sent Events, live).

Both answer 404 for a job the caller may not see (unknown and other users' jobs alike).

`event_stream(...)` is the replay-then-live generator shared with `WS /ws/jobs/{id}` (web.routes.ws):
the caller subscribes to the bus FIRST, then the generator replays the store from `after`, then
yields live events, skipping every seq already sent and filling any gap from the store (a live
seq ahead of last_sent + 1, or a bus RESYNC), so the watcher sees each seq once, in order. It
yields `PING` after `heartbeat_s` without events (None: never; the WebSocket sends its pings from
a timer of its own, which costs nothing per event), and ends once the job is in a terminal status
and everything up to the job's last seq was yielded (a terminal status event delivered live, or
a finished job whose replay is complete). A subscriber that falls behind raises `SlowConsumer`.

SSE specifics: auth by `Authorization: Bearer`, or for EventSource (which cannot set headers)
`?ticket=` (a single-use stream ticket from `POST /api/v1/stream-tickets`, `tools.stream_tickets`;
the way to go) or `?token=` (deprecated, kept for one release; access logs redact it,
`web.logredact`); `Last-Event-ID` overrides `after`; each event is ``id: <seq>``, ``event: <type>``,
``data: <event JSON>``; heartbeats are ``: ping`` comments; a finished stream ends with
``event: end``. A job that is finished with nothing after `after` answers 204 (EventSource then
stops reconnecting). A slow client's stream is ended; it reconnects with Last-Event-ID.

Deleted jobs: a stream knows the job it opened by its owner and creation time
(`JobIdentity`); a page read that finds the job gone, or a job of that id that is not the same
job, reads as status "deleted" and drops what it read. `tools.jobs.delete_job` publishes
``{"type": "deleted"}`` on the job's channel (and on each of its test runs'), which makes every
watcher re-read the store at once; each heartbeat re-reads it too. A stream of a deleted job ends
with a final ``{"type": "deleted", "job_id"}`` event (SSE ``event: deleted``; the WebSocket then
closes with 4410, the chat sends it as a ``progress`` frame and stops following the job).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tools import events as event_store
from tools.db.models import Job, User
from tools.errors import AuthenticationError
from tools.eventbus import RESYNC as RESYNC_MARKER
from tools.eventbus import RESYNC_TYPE, EventBus, InProcessBus, SlowConsumer, Subscription
from tools.jobs import DELETED_EVENT_TYPE
from trainer_runtime.events import TERMINAL_STATUSES
from web.deps import SessionDep, get_current_user, oauth2_scheme
from web.params import MAX_ID, AfterSeq, IdPath
from web.stream_auth import StreamCredentials, authenticate_stream

router = APIRouter(prefix="/jobs", tags=["job events"])

PING: dict[str, Any] = {"type": "ping"}
PAGE = 500
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_STREAM_QUEUE = 1000


# --------------------------------------------------------------------------------------------------
# shared by WS and SSE


def stream_settings(state: Any) -> tuple[float, int]:
    """(heartbeat seconds, per-watcher queue size); tests may set them on app.state."""
    heartbeat = float(getattr(state, "stream_heartbeat_s", DEFAULT_HEARTBEAT_S))
    queue = int(getattr(state, "stream_queue_size", DEFAULT_STREAM_QUEUE))
    return heartbeat, queue


def get_bus(state: Any) -> EventBus:
    """The app's event bus; a private in-process bus when the lifespan has not made one."""
    bus: EventBus | None = getattr(state, "event_bus", None)
    if bus is None:  # lifespan not run (a bare app in a unit test): a private in-process bus
        bus = state.event_bus = InProcessBus()
    return bus


def visible_job_sync(state: Any, user_id: int, job_id: int) -> Job:
    """The job if `user_id` may see it (NotFoundError otherwise), read in its own session."""
    with state.session_factory() as db:
        return event_store.get_visible_job(db, user_id, job_id)


JobIdentity = tuple[int, str]
"""(owner id, creation time) of the job a stream opened: what `_read_page` compares the row it
reads with, so a stream never serves another job under the same id."""


def job_identity(job: Job) -> JobIdentity:
    """The `JobIdentity` of `job`: its owner id and its creation time as naive UTC ISO text."""
    created = job.created_at
    if created is not None and created.tzinfo is not None:
        created = created.replace(tzinfo=None) - (created.utcoffset() or datetime.timedelta(0))
    return int(job.owner_id), created.isoformat(timespec="microseconds") if created is not None else ""


def authorize_sync(state: Any, creds: StreamCredentials | str | None, job_id: int) -> tuple[User, Job]:
    """The user the credentials name (a stream ticket for this job, or a raw token) and the job,
    when they may see it (AuthenticationError, NotFoundError). Both are detached; their columns
    stay readable."""
    user = authenticate_stream(state, creds, "job", job_id)
    return user, visible_job_sync(state, user.id, job_id)


DELETED_STATUS = "deleted"


def deleted_event(job_id: int, what: str = "job") -> dict[str, Any]:
    """The last event of a stream whose job (or test run) was deleted."""
    return {"job_id": job_id, "seq": None, "type": DELETED_EVENT_TYPE, "data": {"message": f"the {what} was deleted"}}


# (app state, stream id, after, limit) -> (events after `after`, status, last seq); the stream id is
# the bus channel: a job id, or -test_run_id for a batch test run (`tools.inference`)
PageReader = Callable[[Any, int, int, int], tuple[list[dict[str, Any]], str, int]]


def _read_page(
    state: Any, job_id: int, after: int, limit: int, identity: JobIdentity | None = None
) -> tuple[list[dict[str, Any]], str, int]:
    """Events after `after`, THEN the job's status and last seq (this order matters: a terminal
    status read afterwards covers every event the page could have missed). A job that is gone,
    or is not the job `identity` names, reads as "deleted" with no events."""
    with state.session_factory() as db:
        events = event_store.list_events(db, job_id, after=after, limit=limit)
        db.expire_all()
        job = db.get(Job, job_id)
        if job is None or (identity is not None and job_identity(job) != identity):
            return [], DELETED_STATUS, 0
        return events, job.status, job.last_seq


def read_test_run_page(state: Any, channel: int, after: int, limit: int) -> tuple[list[dict[str, Any]], str, int]:
    """`_read_page` of a batch test run (its bus channel is -test_run_id)."""
    from tools.inference import test_run_event_page

    with state.session_factory() as db:
        return test_run_event_page(db, -channel, after, limit)


def authorize_test_run_sync(state: Any, creds: StreamCredentials | str | None, run_id: int) -> tuple[str, int]:
    """(status, last seq) of a test run the credentials' user owns (a stream ticket for this
    test run, or a raw token; AuthenticationError, NotFoundError otherwise)."""
    from tools.inference import owned_test_run

    user = authenticate_stream(state, creds, "test_run", run_id)
    with state.session_factory() as db:
        row = owned_test_run(db, user.id, run_id)
        return row.status, int(row.last_seq or 0)


@dataclass(frozen=True)
class StreamRequest:
    """What an SSE request asks: its credentials and where to resume."""

    token: StreamCredentials
    after: int


def stream_request(
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    after: AfterSeq = 0,
    ticket: Annotated[
        str | None, Query(max_length=256, description="single-use stream ticket (POST /api/v1/stream-tickets)")
    ] = None,
    token: Annotated[
        str | None, Query(description="deprecated: use ?ticket= (kept for one release; never logged)")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamRequest:
    """The parameters of every SSE stream: `Authorization: Bearer`, `?ticket=` or `?token=`
    (EventSource cannot set headers; 401 without any), `?after=`, overridden by `Last-Event-ID`
    when an EventSource reconnects."""
    if not (bearer or ticket or token):
        raise AuthenticationError("Not authenticated")
    if last_event_id is not None:
        with contextlib.suppress(ValueError):
            resume_at = int(last_event_id.strip())
            if 0 <= resume_at <= MAX_ID:  # out of range: ignored like a non-number
                after = resume_at
    return StreamRequest(StreamCredentials(token=bearer or token, ticket=None if bearer else ticket), after)


StreamRequestDep = Annotated[StreamRequest, Depends(stream_request)]


SKIP, SEND, FILL, RESYNC = "skip", "send", "fill", "resync"


class StreamCursor:
    """Where one watcher stands in a job's event stream: the replay/live seam, shared by the
    WebSocket (which inlines its hot loop) and `event_stream` (SSE).

    `last` is the highest seq delivered. `catch_up(until)` yields store events after `last` (up to
    `until`), advancing `last`, and sets `finished` when the job is terminal and nothing is left.
    `classify(live_event)` says what to do with a live event: SKIP (seq <= last: already sent),
    SEND (seq == last + 1), FILL (seq ahead: catch up to seq - 1 first, then send it), RESYNC (the
    bus may have lost events: catch up, then stop if finished; also what a ``deleted`` notice
    from `tools.jobs.delete_job` gets). `sent(event)` records a live event as delivered and tells
    whether it was the terminal status (time to end). `deleted`: the store says the job (of
    `identity`, when given) is gone; the stream is finished and ends with `deleted_event`."""

    __slots__ = ("deleted", "finished", "job_id", "last", "reader", "state")

    def __init__(
        self, state: Any, job_id: int, after: int, reader: PageReader | None = None, identity: JobIdentity | None = None
    ) -> None:
        self.state = state
        self.job_id = job_id
        self.last = max(0, int(after))
        self.finished = False
        self.deleted = False
        self.reader: PageReader = reader or functools.partial(_read_page, identity=identity)

    async def catch_up(self, until: int | None = None) -> AsyncIterator[dict[str, Any]]:
        while True:
            limit = PAGE if until is None else max(1, min(PAGE, until - self.last))
            events, status, last_seq = await run_in_threadpool(self.reader, self.state, self.job_id, self.last, limit)
            for event in events:
                if until is not None and event["seq"] > until:
                    break
                yield event
                self.last = event["seq"]
            self.deleted = status == DELETED_STATUS
            self.finished = self.deleted or (status in TERMINAL_STATUSES and self.last >= last_seq)
            if len(events) < limit or (until is not None and self.last >= until):
                return

    def classify(self, event: dict[str, Any]) -> str:
        seq = event.get("seq")
        if seq is None:
            return RESYNC if event.get("type") in (RESYNC_TYPE, DELETED_EVENT_TYPE) else SKIP
        if seq <= self.last:
            return SKIP
        return SEND if seq == self.last + 1 else FILL

    def sent(self, event: dict[str, Any]) -> bool:
        self.last = event["seq"]
        return event["type"] == "status" and event_store.is_terminal_event(event)


async def _next_live(sub: Subscription, heartbeat_s: float | None) -> dict[str, Any] | None:
    """The subscription's next event; None when `heartbeat_s` passed without one. Raises
    StopAsyncIteration when the subscription ends."""
    if heartbeat_s is None:
        return await sub.__anext__()
    with anyio.move_on_after(heartbeat_s):
        return await sub.__anext__()
    return None


async def event_stream(
    state: Any,
    job_id: int,
    after: int,
    sub: Subscription,
    *,
    heartbeat_s: float | None,
    reader: PageReader | None = None,
    identity: JobIdentity | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Replay from the store, then live (see the module doc). `sub` must already be subscribed.
    A deleted job (or one that is no longer the job of `identity`) ends it with `deleted_event`;
    each heartbeat re-reads the store for that."""
    cursor = StreamCursor(state, job_id, after, reader, identity)
    async for replayed in cursor.catch_up():
        yield replayed
    if cursor.finished:
        if cursor.deleted:
            yield deleted_event(job_id)
        return
    while True:
        try:
            event = await _next_live(sub, heartbeat_s)
        except StopAsyncIteration:
            return
        if event is None:
            yield PING
            event = RESYNC_MARKER  # re-read the store: is it still the same job?
        kind = cursor.classify(event)
        if kind is SKIP:
            continue
        if kind is RESYNC:
            async for missed in cursor.catch_up():
                yield missed
            if cursor.finished:
                if cursor.deleted:
                    yield deleted_event(job_id)
                return
            continue
        if kind is FILL:
            async for missed in cursor.catch_up(until=event["seq"] - 1):
                yield missed
        yield event
        if cursor.sent(event):
            return


_ENCODED: OrderedDict[int, tuple[dict[str, Any], str]] = OrderedDict()
_ENCODED_MAX = 256


def encode_event(event: dict[str, Any]) -> str:
    """JSON text of an event, computed once for all the watchers that get the same dict object."""
    key = id(event)
    hit = _ENCODED.get(key)
    if hit is not None and hit[0] is event:
        return hit[1]
    text = json.dumps(event, separators=(",", ":"))
    _ENCODED[key] = (event, text)  # holding the dict keeps its id from being reused
    if len(_ENCODED) > _ENCODED_MAX:
        with contextlib.suppress(KeyError):  # (two apps' loops in one process, in tests)
            _ENCODED.popitem(last=False)
    return text


# --------------------------------------------------------------------------------------------------
# REST


@router.get("/{job_id}/events", summary="Progress events of a job (contract 4), seq > after")
def list_job_events(
    job_id: IdPath,
    db: SessionDep,
    user: Annotated[User, Depends(get_current_user)],
    after: AfterSeq = 0,
    limit: Annotated[int, Query(ge=1, le=event_store.MAX_LIST_LIMIT)] = event_store.MAX_LIST_LIMIT,
) -> list[dict[str, Any]]:
    """At most `limit` events in seq order; page on with `after` = the last seq received."""
    event_store.get_visible_job(db, user, job_id)
    return event_store.list_events(db, job_id, after=after, limit=limit)


def _sse(event: dict[str, Any]) -> bytes:
    if event.get("seq") is None:  # the final `deleted` event: no id, so no resume point
        return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {encode_event(event)}\n\n".encode()


@router.get(
    "/{job_id}/stream",
    summary="Live progress as Server-Sent Events (replay from `after` / Last-Event-ID, then live)",
    response_class=StreamingResponse,
)
async def stream_job_events(job_id: IdPath, request: Request, params: StreamRequestDep) -> Response:
    """Your job's progress events as Server-Sent Events: the stored ones after `after` (or
    Last-Event-ID), then live until the job ends. Sign in with a bearer header or, from EventSource, a
    stream ticket; 204 when the job is finished with nothing newer, 404 when it is not yours."""
    state = request.app.state
    _user, job = await run_in_threadpool(authorize_sync, state, params.token, job_id)
    if job.status in TERMINAL_STATUSES and job.last_seq <= params.after:
        return Response(status_code=204)  # finished and nothing new: EventSource stops reconnecting
    return sse_response(state, job_id, params.after, identity=job_identity(job))


def sse_response(
    state: Any, channel: int, after: int, reader: PageReader | None = None, identity: JobIdentity | None = None
) -> StreamingResponse:
    """The Server-Sent Events answer of one stream (a job's, or a test run's on channel -id): the
    bus is subscribed before anything is read from the store, then `event_stream`."""
    heartbeat_s, queue_size = stream_settings(state)
    bus = get_bus(state)
    telemetry = getattr(state, "telemetry", None)

    async def body() -> AsyncIterator[bytes]:
        if telemetry is not None:
            telemetry.sse_connections.inc()
        try:
            # Subscribe before anything is read from the store.
            async with bus.subscribe(channel, queue_size=queue_size) as sub:
                yield b"retry: 2000\n\n"
                stream = event_stream(
                    state, channel, after, sub, heartbeat_s=heartbeat_s, reader=reader, identity=identity
                )
                deleted = False
                try:
                    async for item in stream:
                        deleted = item.get("type") == DELETED_EVENT_TYPE
                        yield b": ping\n\n" if item is PING else _sse(item)
                finally:
                    await stream.aclose()
                if not deleted:
                    yield b"event: end\ndata: {}\n\n"
        except SlowConsumer:
            if telemetry is not None:
                telemetry.slow_disconnects.labels(transport="sse").inc()
        finally:
            if telemetry is not None:
                telemetry.sse_connections.dec()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
