"""`POST /api/v1/stream-tickets`: a single-use ticket that opens one live stream.

    POST /api/v1/stream-tickets   {"kind": "job" | "test_run" | "chat", "id"?: int}   (Bearer)
        -> 201 {"ticket", "kind", "id", "expires_at", "expires_in_s", "url"}

`url` is the path (with the ticket) of the stream the ticket opens: `/ws/jobs/{id}`,
`/ws/test-runs/{id}` or `/ws/chat`; the SSE streams (`/api/v1/jobs/{id}/stream`,
`/api/v1/test-runs/{id}/stream`) take the same `?ticket=`. A ticket is valid
`STREAM_TICKET_TTL_S` seconds (60) and opens ONE stream, once, on any replica; another user's job
or test run answers 404 (like REST). Reconnecting needs a new ticket.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from tools.stream_tickets import issue_ticket
from web.deps import SettingsDep, ToolContextDep
from web.params import MAX_ID

router = APIRouter(tags=["job events"])

STREAM_PATHS = {"job": "/ws/jobs/{id}", "test_run": "/ws/test-runs/{id}", "chat": "/ws/chat"}


class StreamTicketIn(BaseModel):
    """Which live stream the ticket is for: one of your jobs, one of your test runs, or the chat."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["job", "test_run", "chat"] = Field(description="which stream the ticket opens")
    id: int | None = Field(default=None, ge=1, le=MAX_ID, description="the job or test run id (none for chat)")


class StreamTicketOut(BaseModel):
    """A single-use stream ticket, when it expires, and the path (ticket included) of the stream it
    opens."""

    ticket: str
    kind: str
    id: int | None
    expires_at: str
    expires_in_s: float
    url: str


@router.post(
    "/stream-tickets",
    status_code=status.HTTP_201_CREATED,
    response_model=StreamTicketOut,
    summary="A single-use ticket (valid 60 s) that opens one WebSocket/SSE stream without the bearer token",
)
def create_stream_ticket(body: StreamTicketIn, ctx: ToolContextDep, settings: SettingsDep) -> dict[str, Any]:
    """A ticket that opens one live stream once, within STREAM_TICKET_TTL_S seconds, so that the bearer
    token stays out of URLs. 404 for a job or test run that is not yours, 422 for a missing or
    unexpected id, 401 without sign-in."""
    out = issue_ticket(ctx, body.kind, body.id, settings.stream_ticket_ttl_s)
    out["url"] = STREAM_PATHS[body.kind].format(id=body.id) + f"?ticket={out['ticket']}"
    return out
