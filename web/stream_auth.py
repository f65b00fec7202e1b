"""Who opens a live stream (WebSocket or Server-Sent Events): a single-use stream ticket
(`?ticket=`, from `POST /api/v1/stream-tickets`, `tools.stream_tickets`) or a bearer token
(`Authorization: Bearer`, or the deprecated `?token=`, kept for one release and redacted from every
log line by `web.logredact`).

    authenticate_stream(app_state, creds, kind, target_id) -> User
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.db.models import User
from tools.errors import AuthenticationError
from tools.stream_tickets import consume_ticket
from web.deps import authenticate_raw_token


@dataclass(frozen=True)
class StreamCredentials:
    """What a stream request carries: a bearer token and/or a stream ticket (the ticket wins)."""

    token: str | None = None
    ticket: str | None = None


def authenticate_stream(state: Any, creds: StreamCredentials | str | None, kind: str, target_id: int | None) -> User:
    """The user of a stream request (a ticket is consumed: it must be for this `kind` and
    `target_id`); AuthenticationError otherwise. `creds` may be a raw token string. The user is
    detached from its (closed) session."""
    if creds is None or isinstance(creds, str):
        creds = StreamCredentials(token=creds)
    if creds.ticket:
        factory = getattr(state, "session_factory", None)
        if factory is None:
            raise RuntimeError("the application has not started (lifespan did not run)")
        with factory() as db:
            return consume_ticket(db, creds.ticket, kind, target_id)
    if not creds.token:
        raise AuthenticationError("Not authenticated")
    return authenticate_raw_token(state, creds.token)
