"""Chat with the agent: `POST /api/v1/chat`, sessions, `POST /api/v1/agent/parse`, `WS /ws/chat`.

    POST /api/v1/chat                {"session_id"?, "message", "image_base64"?, "image_name"?} -> ChatTurn
                                     (an attached image: "test it on this image" runs the named or
                                     latest job on it; the predictions come in `summary.inference`)
                                     {"session_id", "reply", "intent", "state", "job_id"?, "suggestions",
                                      "summary"?, "pending", "language", "launched", "mode"}
                                     headers: X-Process-Time-Ms (server-side time of the turn: sign-in
                                     check + thinking + commit), X-Queue-Time-Ms (waiting for one of
                                     `TURN_SLOTS` turn slots), Server-Timing (queue;dur=..., app;dur=...)
    GET  /api/v1/chat/sessions       the caller's sessions, most recent first
    GET  /api/v1/chat/sessions/{id}  one session with its messages (another user's -> 404)
    POST /api/v1/agent/parse         {"text"} -> TrainingIntent (pure parser; no sign-in needed)

`WS /ws/chat?ticket=T` — JSON text frames. `ticket`: a single-use stream ticket of kind "chat"
(`POST /api/v1/stream-tickets`); the deprecated `?token=` (bearer token) works for one release and
is redacted from every log line (`web.logredact`).
    client -> server  {"type": "message", "session_id"?, "message", "image_base64"?, "image_name"?}
                                                                      a chat turn
                      {"type": "ping"}                                -> {"type": "pong"}
    server -> client  {"type": "reply", ...ChatTurn}                   the answer of a turn
                      {"type": "progress", "job_id", "seq", "ts", "event_type", "data"}
                          progress events (contract 4) of every job the chat started: after a turn
                          launches (or resumes) a job, its events from seq 1, then live, until it ends;
                          a job of the session still running when a later turn names the session is
                          followed from its current events on; a job deleted meanwhile (or an id that
                          no longer names the job the chat followed) ends with one frame of
                          ``"event_type": "deleted"`` (``"seq": null``), and is followed no more
                      {"type": "error", "detail", "error"}             a turn that failed (socket stays open)
    Close codes: 1008 missing/bad token; 1011 server error.

Inference, test runs and ONNX exports asked for in the chat use the app's InferenceService
(`web.routes.inference.get_inference_service`, made on first use; workers hold torch, this process
does not).

The LLM planner (agent.llm) is made once per app from the settings (`LLM_BASE_URL`...) and kept on
`app.state.chat_llm`; tests may put their own there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from agent.chat import (
    MAX_IMAGE_BASE64_CHARS,
    MAX_MESSAGE_CHARS,
    ChatTurn,
    decode_image,
    get_session,
    handle_message,
    list_sessions,
    session_job_ids,
)
from agent.llm import LLMPlanner, planner_from_config
from agent.parser import parse_intent
from tools.context import ToolContext
from tools.db.models import Job, User
from tools.errors import AuthenticationError, InvalidInputError, ToolError
from tools.inference import InferenceService
from tools.intent import TrainingIntent
from trainer_runtime.events import TERMINAL_STATUSES
from web.deps import ToolContextDep, app_services, link_signer, upload_limits
from web.errors import error_body, ws_close_code
from web.params import Offset
from web.stream_auth import StreamCredentials, authenticate_stream

log = logging.getLogger(__name__)

router = APIRouter(tags=["chat"])
ws_router = APIRouter(tags=["chat"])

_UNSET = object()
TURN_SLOTS = max(2, min(8, os.cpu_count() or 2))
"""Chat turns processed at once per server process (`turn_gate`)."""


def get_planner(state: Any) -> LLMPlanner | None:
    """The app's LLM planner (None in rules mode), made on first use."""
    planner = getattr(state, "chat_llm", _UNSET)
    if planner is _UNSET:
        planner = planner_from_config(state.settings.llm)
        state.chat_llm = planner
    telemetry = getattr(state, "telemetry", None)
    if isinstance(planner, LLMPlanner) and planner.on_guard is None and telemetry is not None:
        planner.on_guard = telemetry.record_llm_guard  # the guard's discards in /metrics
    return planner  # type: ignore[return-value]


class ChatIn(BaseModel):
    """One chat message from the signed-in user, optionally with an image to run a model on."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(default=None, max_length=64, description="continue this session; omit to start one")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, description="what the user says")
    image_base64: str | None = Field(
        default=None,
        max_length=MAX_IMAGE_BASE64_CHARS,
        description='an attached image (base64 or a data: URL) for "test it on this image"',
    )
    image_name: str | None = Field(default=None, max_length=255, description="the attached image's file name")


class ParseIn(BaseModel):
    """A training request in plain words, for the parser alone."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_MESSAGE_CHARS)


class ChatMessageOut(BaseModel):
    """One stored message of a chat session (`role` is "user" or "assistant")."""

    role: str
    content: str
    data: dict[str, Any]
    created_at: str | None


class ChatSessionOut(BaseModel):
    """A chat session: where the conversation stands, the training intent so far, the jobs it
    started, and (for one session) its messages."""

    id: str
    state: str
    pending: str | None
    language: str
    intent: dict[str, Any]
    job_ids: list[int]
    turns: int
    created_at: str | None
    updated_at: str | None
    last_message: str | None = None
    messages: list[ChatMessageOut] | None = None


class ChatSessionList(BaseModel):
    """One page of the caller's chat sessions, most recent first."""

    items: list[ChatSessionOut]
    total: int
    offset: int
    limit: int


def inference_getter(app: Any) -> Callable[[], InferenceService]:
    """A getter of the app's InferenceService (made on first use, only when a turn needs it)."""
    from web.routes.inference import get_inference_service

    holder = SimpleNamespace(app=app)  # what get_inference_service reads of a request
    return lambda: get_inference_service(holder)  # type: ignore[arg-type]


def turn_gate(state: Any) -> asyncio.Semaphore:
    """At most `TURN_SLOTS` chat turns think at once in this process (the rest wait their turn, on
    the event loop, holding neither a worker thread nor a database connection): a turn is a few
    milliseconds of CPU, and hundreds of them interleaved on a few cores would make every one slow
    instead of most of them fast. One semaphore per event loop."""
    loop = asyncio.get_running_loop()
    current: tuple[Any, asyncio.Semaphore] | None = getattr(state, "chat_turn_gate", None)
    if current is None or current[0] is not loop:
        current = (loop, asyncio.Semaphore(TURN_SLOTS))
        state.chat_turn_gate = current
    return current[1]


async def _turn_slot(request: Request) -> AsyncIterator[tuple[float, float]]:
    """Wait for a chat-turn slot (`turn_gate`) before the request's other dependencies run (so
    before it opens a database session); yields (arrived, admitted) perf_counter times. The first
    dependency of the route."""
    arrived = time.perf_counter()
    async with turn_gate(request.app.state):
        yield arrived, time.perf_counter()


TurnSlot = Annotated[tuple[float, float], Depends(_turn_slot)]


@router.post("/chat", response_model=ChatTurn, summary="Send one chat message to the agent")
def chat(slot: TurnSlot, body: ChatIn, ctx: ToolContextDep, request: Request, response: Response) -> ChatTurn:
    """Run one turn of the conversation for the signed-in user and return the agent's reply; it may
    launch or control a training job. 401 without sign-in, 404 for a session that is not yours,
    422 for an empty or too long message or a bad image."""
    arrived, admitted = slot
    turn = handle_message(
        ctx,
        body.session_id,
        body.message,
        llm=get_planner(request.app.state),
        image=decode_image(body.image_base64),
        image_name=body.image_name,
        inference=inference_getter(request.app),
    )
    app_ms = (time.perf_counter() - admitted) * 1000.0
    queue_ms = (admitted - arrived) * 1000.0
    response.headers["X-Process-Time-Ms"] = f"{app_ms:.3f}"
    response.headers["X-Queue-Time-Ms"] = f"{queue_ms:.3f}"
    response.headers["Server-Timing"] = f"queue;dur={queue_ms:.3f}, app;dur={app_ms:.3f}"
    return turn


@router.get("/chat/sessions", response_model=ChatSessionList, summary="Your chat sessions")
def chat_sessions(ctx: ToolContextDep, offset: Offset = 0, limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    """The signed-in user's chat sessions, most recent first, one page at a time. 401 without sign-in."""
    return list_sessions(ctx, offset=offset, limit=limit)


@router.get("/chat/sessions/{session_id}", response_model=ChatSessionOut, summary="One chat session with messages")
def chat_session(session_id: str, ctx: ToolContextDep) -> dict[str, Any]:
    """One of your chat sessions with all its messages; 404 when it does not exist or is not yours,
    401 without sign-in."""
    return get_session(ctx, session_id)


@router.post("/agent/parse", response_model=TrainingIntent, summary="Parse a training request (no LLM)")
def agent_parse(body: ParseIn) -> TrainingIntent:
    """What the rule-based parser reads from a training request (task, model, classes, settings),
    without the LLM and without starting anything. No sign-in needed."""
    return parse_intent(body.text)


# ----------------------------------------------------------------------------------- WebSocket


def _ws_turn(
    app: Any,
    user_id: int,
    session_id: str | None,
    message: str,
    image: bytes | None = None,
    image_name: str | None = None,
) -> tuple[ChatTurn, list[int]]:
    """One turn in its own DB session (the caller holds a turn slot); returns the turn and the
    session's non-finished jobs."""
    state = app.state
    with state.session_factory() as db:
        user = db.get(User, user_id)
        if user is None or not user.is_active:
            raise AuthenticationError("Not authenticated")
        ctx = ToolContext(
            db=db,
            user=user,
            storage=state.storage,
            work_dir=state.work_dir,
            limits=upload_limits(state.settings),
            links=link_signer(state),
            services=app_services(state),
        )
        turn = handle_message(
            ctx,
            session_id,
            message,
            llm=get_planner(state),
            image=image,
            image_name=image_name,
            inference=inference_getter(app),
        )
        ids = session_job_ids(ctx, turn.session_id)
        live = [j.id for j in (db.get(Job, i) for i in ids) if j is not None and j.status not in TERMINAL_STATUSES]
        return turn, live


def _last_seq(state: Any, job_id: int) -> int:
    with state.session_factory() as db:
        job = db.get(Job, job_id)
        return int(job.last_seq) if job is not None else 0


def _followed_job(state: Any, user_id: int, job_id: int) -> Any:
    """The identity (owner, creation time) of the user's job to follow; None when it is not theirs
    (or gone): the chat follows only its user's jobs, and only the job it started following."""
    from web.routes.job_events import job_identity

    with state.session_factory() as db:
        job = db.get(Job, job_id)
        if job is None or job.owner_id != user_id:
            return None
        return job_identity(job)


def _ws_incoming(raw: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A frame from the chat socket: ``(answer, None)`` when it gets an answer at once (pong, or an
    error for bad JSON, an unknown type or a bad message), else ``(None, message)`` to run a turn."""
    try:
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            raise ValueError("not an object")
    except ValueError:
        return {"type": "error", "detail": "send JSON objects", "error": "InvalidInputError"}, None
    kind = msg.get("type", "message")
    if kind == "ping":
        return {"type": "pong"}, None
    if kind != "message":
        return {"type": "error", "detail": f"unknown type {kind!r}", "error": "InvalidInputError"}, None
    text = msg.get("message")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE_CHARS:
        return {"type": "error", "detail": "message must be 1..4000 characters", "error": "InvalidInputError"}, None
    return None, msg


async def _follow_job(
    state: Any, user_id: int, job_id: int, after: int, send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """Send a job's progress events (seq > `after`) on the chat socket until it ends or `send` fails."""
    from web.routes.job_events import event_stream, get_bus, stream_settings

    _, queue_size = stream_settings(state)
    try:
        identity = await run_in_threadpool(_followed_job, state, user_id, job_id)
        if identity is None:
            return
        async with get_bus(state).subscribe(job_id, queue_size=queue_size) as sub:
            async for ev in event_stream(state, job_id, after, sub, heartbeat_s=None, identity=identity):
                if ev.get("type") == "ping":
                    continue
                await send(
                    {
                        "type": "progress",
                        "job_id": job_id,
                        "seq": ev.get("seq"),
                        "ts": ev.get("ts"),
                        "event_type": ev.get("type"),
                        "data": ev.get("data") or {},
                    }
                )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a slow or closed client: stop following this job
        log.debug("WS /ws/chat: following job %s ended: %r", job_id, exc)


@ws_router.websocket("/ws/chat")
async def chat_ws(websocket: WebSocket, token: str | None = None, ticket: str | None = None) -> None:
    """The chat over a WebSocket (see the module docstring for the frames): authenticates with a
    stream ticket (or the deprecated token), then runs turns and streams the progress of their jobs."""
    state = websocket.app.state
    await websocket.accept()
    try:
        user = await run_in_threadpool(
            authenticate_stream, state, StreamCredentials(token=token, ticket=ticket), "chat", None
        )
    except Exception as exc:
        code = ws_close_code(exc)
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason="not authenticated" if code == 1008 else "error")
        return
    user_id = int(user.id)
    send_lock = asyncio.Lock()
    followers: dict[int, asyncio.Task[None]] = {}

    async def send(obj: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(obj, default=str, ensure_ascii=False))

    try:
        while True:
            try:
                raw = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            answer, msg = _ws_incoming(raw)
            if msg is None:
                assert answer is not None
                await send(answer)
                continue
            text = msg["message"]
            sid = msg.get("session_id")
            raw_image = msg.get("image_base64")
            image_name = msg.get("image_name")
            try:
                if raw_image is not None and not isinstance(raw_image, str):
                    raise InvalidInputError("image_base64 must be a string", detail={"field": "image_base64"})
                image = decode_image(raw_image)
                async with turn_gate(state):
                    turn, live = await run_in_threadpool(
                        _ws_turn,
                        websocket.app,
                        user_id,
                        sid if isinstance(sid, str) else None,
                        text,
                        image,
                        image_name[:255] if isinstance(image_name, str) else None,
                    )
            except ToolError as exc:
                await send({"type": "error", **error_body(exc)})
                continue
            except Exception:
                log.exception("WS /ws/chat: turn failed")
                await send({"type": "error", "detail": "Internal server error", "error": "InternalServerError"})
                continue
            await send({"type": "reply", **turn.model_dump()})
            for job_id in live:
                task = followers.get(job_id)
                if task is not None and not task.done():
                    continue
                # a job launched by this turn: from its first event; others: from now on
                new = turn.launched and turn.job_id == job_id
                after = 0 if new else await run_in_threadpool(_last_seq, state, job_id)
                followers[job_id] = asyncio.create_task(_follow_job(state, user_id, job_id, after, send))
    finally:
        for task in followers.values():
            task.cancel()
        for task in followers.values():
            with contextlib.suppress(BaseException):
                await task
