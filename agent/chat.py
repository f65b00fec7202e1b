"""The chat entry point used by the routes: one message in, one `ChatTurn` out.

    handle_message(ctx, session_id | None, message, *, llm=None, image=None, image_name=None,
                   inference=None) -> ChatTurn
    list_sessions(ctx) -> list[dict]          the caller's sessions, newest first
    get_session(ctx, session_id) -> dict      one session with its messages (others' -> NotFoundError)

A turn loads (or creates) the caller's `ChatSession` — another user's session id answers
NotFoundError like every hidden thing — stores the user message, runs the brain, stores the reply
with its structured data, and commits. The state machine lives in `agent.dialogue`; with an
`LLMPlanner` (`agent.llm`) the model reads the message first (tools + a TrainingIntent), and any
failure of it falls back to the rules with a note in the reply. A plain yes/no while confirming
never goes to the model, nor does a message with an image attached (the rules run the prediction).

Inference: `inference` is a getter of the app's `tools.inference.InferenceService` (called only
when a turn needs it) and `image` the bytes attached to the message (`decode_image` reads the
routes' `image_base64`); both travel with the turn as an `agent.toolkit.InferenceScope` passed to
the dialogue and to the LLM's tools, which use them as the chat's user. The image itself is not stored: the
user message's data records its name and size.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from agent import replies as R
from agent.dialogue import Turn, intent_dict, is_no, is_yes, respond
from agent.llm import TRANSPORT_FAILURES, LLMFailure, LLMPlanner
from agent.llm_guard import RULES_ANSWERED, check_reply, known_for, merge_proposal, wants_intent
from agent.parser import detect_language, extract_slots, normalise
from agent.toolkit import InferenceScope
from tools.context import ToolContext, iso_utc
from tools.db.models import ChatMessage, ChatSession, User, new_id
from tools.errors import AuthenticationError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from tools.inference import InferenceService

MAX_MESSAGE_CHARS = 4000
MAX_IMAGE_BASE64_CHARS = 70 * 1024**2
"""Longest `image_base64` accepted (about 52 MB decoded; the service's own byte limit applies after)."""


def decode_image(image_base64: str | None) -> bytes | None:
    """The bytes of an attached image: plain base64 or a ``data:image/...;base64,`` URL (None when
    none was sent; InvalidInputError when it is not base64)."""
    if image_base64 is None:
        return None
    text = image_base64.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if len(text) > MAX_IMAGE_BASE64_CHARS:
        raise InvalidInputError("image_base64 is too long", detail={"field": "image_base64"})
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("image_base64 is not valid base64", detail={"field": "image_base64"}) from None
    if not data:
        raise InvalidInputError("image_base64 is empty", detail={"field": "image_base64"})
    return data


Mode = Literal["rules", "llm", "llm_fallback"]


class ChatTurn(BaseModel):
    """One answer of the agent (the `POST /api/v1/chat` body)."""

    session_id: str
    reply: str
    intent: dict[str, Any] = Field(description="the TrainingIntent gathered so far (null slots not known yet)")
    state: str = Field(description="idle, collecting, confirming or launched")
    job_id: int | None = Field(default=None, description="the job this turn launched or talked about")
    suggestions: list[str] = Field(default_factory=list, description="quick replies")
    summary: dict[str, Any] | None = Field(default=None, description="confirmation summary, progress, metrics ...")
    pending: str | None = Field(default=None, description="what the agent asked for (a slot name or confirm)")
    language: str = "en"
    launched: bool = False
    mode: Mode = "rules"


def _user(ctx: ToolContext) -> User:
    if ctx.user is None:
        raise AuthenticationError("Not authenticated: sign in to chat")
    return ctx.user


def _session_row(ctx: ToolContext, session_id: str, *, lock: bool = False) -> ChatSession:
    user = _user(ctx)
    stmt = select(ChatSession).where(ChatSession.id == str(session_id))
    if lock and ctx.db.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()  # one turn at a time per session on PostgreSQL
    row = ctx.db.scalar(stmt) if isinstance(session_id, str) and len(session_id) <= 64 else None
    if row is None or row.user_id != user.id:
        raise NotFoundError(f"chat session {session_id} not found", detail={"session_id": str(session_id)})
    return row


def _history(ctx: ToolContext, session_id: str, limit: int = 8) -> list[tuple[str, str]]:
    rows = list(
        ctx.db.scalars(
            select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id.desc()).limit(limit)
        )
    )
    return [(r.role, r.content) for r in reversed(rows)]


def handle_message(
    ctx: ToolContext,
    session_id: str | None,
    message: str,
    *,
    llm: LLMPlanner | None = None,
    image: bytes | None = None,
    image_name: str | None = None,
    inference: Callable[[], InferenceService] | None = None,
) -> ChatTurn:
    """Answer one chat message as the context's user (see the module doc)."""
    scope = InferenceScope(inference, image, image_name)
    return _handle(ctx, session_id, message, llm=llm, scope=scope)


def _handle(
    ctx: ToolContext,
    session_id: str | None,
    message: str,
    *,
    llm: LLMPlanner | None,
    scope: InferenceScope,
) -> ChatTurn:
    image, image_name = scope.image, scope.image_name
    user = _user(ctx)
    if not isinstance(message, str) or not message.strip():
        raise InvalidInputError("message must not be empty", detail={"field": "message"})
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidInputError(f"message is longer than {MAX_MESSAGE_CHARS} characters", detail={"field": "message"})
    received = datetime.now(UTC)
    if session_id:
        session = _session_row(ctx, session_id, lock=True)
        is_new = False
    else:
        # not added to the DB session until the end: nothing is written (and on SQLite no write lock
        # is held) while the turn thinks; the only writes are at the commit below
        session = ChatSession(
            id=new_id(),
            user_id=user.id,
            state="idle",
            intent={},
            pending=None,
            job_ids=[],
            context={},
            turns=0,
            language="en",
            created_at=received,
            updated_at=received,
        )
        is_new = True
    history = _history(ctx, session.id) if llm is not None and not is_new else []

    mode: Mode = "rules"
    turn: Turn
    low = normalise(message).lower()
    bypass = image is not None or (session.state == "confirming" and (is_yes(low) or is_no(low)))
    with ctx.db.no_autoflush:  # reads do not flush the session's changes (see above)
        if llm is None or bypass:
            turn = respond(ctx, session, message, scope=scope)
        else:
            mode, turn = _llm_turn(ctx, session, message, llm, history, scope)

    session.turns = int(session.turns or 0) + 1
    session.updated_at = datetime.now(UTC)
    out = ChatTurn(
        session_id=session.id,
        reply=turn.reply,
        intent=intent_dict(dict(session.intent or {})),
        state=session.state,
        job_id=turn.job_id,
        suggestions=turn.suggestions,
        summary=turn.summary,
        pending=session.pending,
        language=session.language or "en",
        launched=turn.launched,
        mode=mode,
    )
    data = out.model_dump(exclude={"session_id", "reply"})
    data["action"] = turn.action
    if is_new:
        ctx.db.add(session)
        ctx.db.flush()  # the session row first (the messages reference it)
    attached = {"image": {"name": image_name, "bytes": len(image)}} if image is not None else {}
    ctx.db.add(ChatMessage(session_id=session.id, role="user", content=message, data=attached, created_at=received))
    ctx.db.add(ChatMessage(session_id=session.id, role="assistant", content=turn.reply, data=data))
    ctx.db.commit()
    return out


def _llm_turn(
    ctx: ToolContext,
    session: ChatSession,
    message: str,
    llm: LLMPlanner,
    history: list[tuple[str, str]],
    scope: InferenceScope,
) -> tuple[Mode, Turn]:
    """One turn in LLM mode under the policy of `agent.llm`: the model proposes, the guard keeps
    what validates, the deterministic dialogue answers."""
    intent = dict(session.intent or {})
    known = known_for(ctx)
    # read as the dialogue reads it (with the user's dataset names), so that without a valid
    # addition of the model the turn is exactly the rules' turn
    parser_slots = extract_slots(message, datasets=list(known.datasets.values()))
    try:
        plan = llm.plan(
            ctx,
            message,
            state=session.state,
            pending=session.pending,
            intent=intent,
            job_ids=list(session.job_ids or []),
            history=history,
            scope=scope,
            expect_intent=wants_intent(message, parser_slots, session.state),
        )
    except LLMFailure as exc:
        llm.count("call", exc.kind)
        turn = respond(ctx, session, message, slots=parser_slots, scope=scope)
        if exc.kind in TRANSPORT_FAILURES:  # the endpoint is down: say so; a bad answer is just dropped
            note = R.say(detect_language(message), "llm_fallback", why=exc.reason)
            turn.reply = f"{note}\n{turn.reply}"
        return "llm_fallback", turn

    # the parser's reading, already made above, unless the model adds a slot that validates
    slots = parser_slots
    if plan.slots:
        merged = merge_proposal(message, parser_slots, plan.slots, intent, known, plan.tool_outputs)
        for _slot, dropped_why in merged.dropped:
            llm.count("slot", dropped_why)
        if merged.extras:
            slots = {**parser_slots, **merged.extras}
    language = detect_language(message, session.language)
    turn = respond(ctx, session, message, slots=slots, scope=scope)
    if plan.text:
        why = check_reply(
            plan.text,
            message=message,
            language=language,
            system_prompt=plan.system,
            tool_outputs=plan.tool_outputs,
            known=known,
        )
        if why is None and turn.action != "not_understood":
            why = RULES_ANSWERED
        if why is None:
            turn.reply = f"{plan.text}\n\n{turn.reply}"
            turn.action = "llm_answer"
        else:
            llm.count("reply", why)
    return "llm", turn


def _session_dict(row: ChatSession, last: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "pending": row.pending,
        "language": row.language,
        "intent": intent_dict(dict(row.intent or {})),
        "job_ids": list(row.job_ids or []),
        "turns": row.turns,
        "created_at": iso_utc(row.created_at),
        "updated_at": iso_utc(row.updated_at),
        "last_message": last,
    }


def list_sessions(ctx: ToolContext, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """The caller's chat sessions, most recently used first."""
    user = _user(ctx)
    if not 1 <= limit <= 200 or offset < 0:
        raise InvalidInputError("limit must be 1..200 and offset >= 0", detail={"field": "limit"})
    base = select(ChatSession).where(ChatSession.user_id == user.id)
    total = ctx.db.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = list(
        ctx.db.scalars(base.order_by(ChatSession.updated_at.desc(), ChatSession.id).offset(offset).limit(limit))
    )
    items = []
    for r in rows:
        last = ctx.db.scalar(
            select(ChatMessage.content).where(ChatMessage.session_id == r.id).order_by(ChatMessage.id.desc()).limit(1)
        )
        items.append(_session_dict(r, last))
    return {"items": items, "total": int(total), "offset": offset, "limit": limit}


def get_session(ctx: ToolContext, session_id: str) -> dict[str, Any]:
    """One of the caller's sessions with every message (another user's -> NotFoundError)."""
    row = _session_row(ctx, session_id)
    msgs = list(ctx.db.scalars(select(ChatMessage).where(ChatMessage.session_id == row.id).order_by(ChatMessage.id)))
    out = _session_dict(row, msgs[-1].content if msgs else None)
    out["messages"] = [
        {"role": m.role, "content": m.content, "data": m.data or {}, "created_at": iso_utc(m.created_at)} for m in msgs
    ]
    return out


def session_job_ids(ctx: ToolContext, session_id: str) -> list[int]:
    """The jobs a session launched (for the WebSocket's progress push)."""
    return [int(j) for j in (_session_row(ctx, session_id).job_ids or [])]
