"""Stream tickets: a short-lived, single-use credential that opens ONE live stream, so that the
bearer token never travels in a URL (where access logs, proxies and browser history keep it).

    issue_ticket(ctx, kind, target_id, ttl_s) -> {"ticket", "kind", "id", "expires_at", "expires_in_s"}
    consume_ticket(db, ticket, kind, target_id) -> User      (AuthenticationError when not usable)

`kind` is ``job`` (`WS /ws/jobs/{id}`, `GET /jobs/{id}/stream`), ``test_run``
(`WS /ws/test-runs/{id}`, `GET /test-runs/{id}/stream` when there is one) or ``chat``
(`WS /ws/chat`, no id). A ticket is issued only for a stream the caller may open (a job or test
run of someone else answers 404, like REST). Only its sha256 is stored (`StreamTicket`), in the
database, so any server replica can consume it; consuming is one conditional UPDATE (unused, not
expired, same kind and id), so two replicas racing on one ticket cannot both win. A ticket for
another stream is refused and stays usable for its own.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from tools.context import ToolContext, iso_utc, require_user
from tools.db.models import StreamTicket, User
from tools.errors import AuthenticationError, InvalidInputError, NotFoundError

KINDS = ("job", "test_run", "chat")
TICKET_BYTES = 32
DEFAULT_TTL_S = 60.0

__all__ = ["DEFAULT_TTL_S", "KINDS", "consume_ticket", "hash_ticket", "issue_ticket"]


def hash_ticket(ticket: str) -> str:
    """The SHA-256 hex of a ticket: what is stored, so a database read does not reveal usable tickets."""
    return hashlib.sha256(ticket.encode("utf-8", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _target(kind: str, target_id: Any) -> str:
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", detail={"field": "kind"})
    if kind == "chat":
        if target_id is not None:
            raise InvalidInputError("a chat ticket takes no id", detail={"field": "id"})
        return ""
    if isinstance(target_id, bool) or not isinstance(target_id, int) or not 1 <= target_id <= 2**63 - 1:
        raise InvalidInputError(f"a {kind} ticket needs the {kind} id (a positive integer)", detail={"field": "id"})
    return str(target_id)


def _max_row_id(db: Session) -> int:
    """The largest id the INTEGER id columns hold: 32-bit on PostgreSQL, 64-bit on SQLite."""
    return 2**31 - 1 if db.get_bind().dialect.name == "postgresql" else 2**63 - 1


def issue_ticket(ctx: ToolContext, kind: str, target_id: int | None, ttl_s: float = DEFAULT_TTL_S) -> dict[str, Any]:
    """A new ticket for the signed-in user's stream `kind`/`target_id` (NotFoundError when the
    job or test run is not theirs, InvalidInputError for a bad kind or id). Expired tickets are
    swept here."""
    user = require_user(ctx, "live streams")
    target = _target(kind, target_id)
    if target and int(target) > _max_row_id(ctx.db):  # no such row can exist (and the query would fail)
        raise NotFoundError(f"{kind.replace('_', ' ')} {target} not found", detail={"id": int(target)})
    if kind == "job":
        from tools.events import get_visible_job

        get_visible_job(ctx.db, user, int(target))
    elif kind == "test_run":
        from tools.inference import owned_test_run

        owned_test_run(ctx.db, user.id, int(target))
    now = _now()
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    expires = now + timedelta(seconds=float(ttl_s))
    ctx.db.execute(delete(StreamTicket).where(StreamTicket.expires_at < now))
    ctx.db.add(
        StreamTicket(
            ticket_hash=hash_ticket(ticket),
            user_id=user.id,
            kind=kind,
            target=target,
            expires_at=expires,
            created_at=now,
        )
    )
    ctx.db.commit()
    return {
        "ticket": ticket,
        "kind": kind,
        "id": target_id if kind != "chat" else None,
        "expires_at": iso_utc(expires),
        "expires_in_s": float(ttl_s),
    }


def consume_ticket(db: Session, ticket: str, kind: str, target_id: int | None) -> User:
    """The active user the ticket was issued to, when it is unused, unexpired and for this very
    stream; the ticket is used up (one UPDATE: of concurrent consumers, one wins). Anything else:
    AuthenticationError (the caller closes the stream as unauthenticated)."""
    if not ticket or len(ticket) > 256:
        raise AuthenticationError("Not authenticated: bad stream ticket")
    try:
        target = _target(kind, target_id)
    except InvalidInputError:
        raise AuthenticationError("Not authenticated: the stream ticket is for another stream") from None
    digest = hash_ticket(ticket)
    now = _now()
    claimed = db.execute(
        update(StreamTicket)
        .where(
            StreamTicket.ticket_hash == digest,
            StreamTicket.used_at.is_(None),
            StreamTicket.expires_at > now,
            StreamTicket.kind == kind,
            StreamTicket.target == target,
        )
        .values(used_at=now)
    )
    db.commit()
    if int(getattr(claimed, "rowcount", 0) or 0) != 1:
        raise AuthenticationError(
            "Not authenticated: the stream ticket is unknown, expired, already used, or for another stream"
        )
    row = db.get(StreamTicket, digest)
    user = db.get(User, row.user_id) if row is not None else None
    if user is None or not user.is_active or user.is_system:
        raise AuthenticationError("Not authenticated")
    return user
