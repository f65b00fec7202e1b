"""Slack over HTTP.

    POST /slack/events         Events API: app_mention, message.im / .channels / .groups (and the
                               url_verification challenge)
    POST /slack/commands       slash command /train
    POST /slack/interactions   Block Kit button clicks (the app manifest's interactivity URL)

All three go to the same slack-bolt app (`web.slack.bot.SlackBot`), which tells the payloads apart
by their body; each is verified first (signature over the raw body, timestamp within 5 minutes:
401 otherwise) and answered at once, the work running after the answer. Slack off (no
SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET): 404. Bodies over 1 MiB: 413 before anything is read into
the bot.

Linking a Slack user to your account (`tools.slack_links`), signed in:

    POST   /api/v1/slack/link           -> 201 {"code", "expires_at", "instructions"}  one-time code
    GET    /api/v1/slack/links          your linked Slack users
    DELETE /api/v1/slack/links/{id}     unlink one (another user's -> 404)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tools import slack_links
from web.deps import SettingsDep, ToolContextDep
from web.params import IdPath

router = APIRouter(tags=["slack"])
api_router = APIRouter(prefix="/slack", tags=["slack"])

MAX_BODY_BYTES = 1024 * 1024


class LinkCode(BaseModel):
    """A one-time code that links the Slack user who sends it to your account, and how to send it."""

    code: str
    expires_at: str
    instructions: str


class SlackLinkOut(BaseModel):
    """A Slack user linked to an account; `source` says how ("code": they sent a link code, "admin":
    an administrator linked them)."""

    id: int
    team_id: str
    slack_user_id: str
    user_id: int
    source: str
    created_at: str | None
    email: str | None = None


async def _slack(request: Request) -> Response:
    bot: Any = getattr(request.app.state, "slack", None)
    if bot is None:
        return JSONResponse(
            {"detail": "Slack is not enabled: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET", "error": "NotFoundError"},
            status_code=404,
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return JSONResponse({"detail": "request too large", "error": "PayloadTooLargeError"}, status_code=413)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"detail": "request too large", "error": "PayloadTooLargeError"}, status_code=413)
    if not bot.verify(body, request.headers):
        return JSONResponse({"detail": "invalid Slack signature or timestamp", "error": "AuthenticationError"}, 401)
    headers: dict[str, str | Sequence[str]] = dict(request.headers.items())
    status, out_headers, content = await run_in_threadpool(bot.dispatch, body, request.url.query, headers)
    return Response(content=content, status_code=status, headers=out_headers)


@router.post("/slack/events", summary="Slack Events API (app_mention, direct messages, thread replies)")
async def slack_events(request: Request) -> Response:
    """For Slack, not people: Events API callbacks (mentions, direct messages, thread replies and the
    URL check). 401 without a valid Slack signature, 404 when Slack is not enabled, 413 over 1 MiB."""
    return await _slack(request)


@router.post("/slack/commands", summary="Slack slash command /train")
async def slack_commands(request: Request) -> Response:
    """For Slack, not people: the `/train` slash command. 401 without a valid Slack signature, 404 when
    Slack is not enabled, 413 over 1 MiB."""
    return await _slack(request)


@router.post("/slack/interactions", summary="Slack interactivity (Confirm / Change buttons)")
async def slack_interactions(request: Request) -> Response:
    """For Slack, not people: clicks on the bot's buttons. 401 without a valid Slack signature, 404
    when Slack is not enabled, 413 over 1 MiB."""
    return await _slack(request)


@api_router.post("/link", response_model=LinkCode, status_code=201, summary="A one-time code to link a Slack user")
def create_link(ctx: ToolContextDep, settings: SettingsDep) -> dict[str, Any]:
    """A new one-time code that links a Slack user to your account when they send it to the bot before
    it expires; 401 without sign-in."""
    return slack_links.create_link_code(ctx, ttl_s=settings.slack.link_code_ttl_s)


@api_router.get("/links", response_model=list[SlackLinkOut], summary="Your linked Slack users")
def list_links(ctx: ToolContextDep) -> list[dict[str, Any]]:
    """The Slack users linked to your account."""
    return slack_links.my_links(ctx)


@api_router.delete("/links/{link_id}", status_code=204, summary="Unlink one of your Slack users")
def delete_link(link_id: IdPath, ctx: ToolContextDep) -> Response:
    """Unlink one of your Slack users; 404 when the link does not exist or is not yours."""
    slack_links.delete_my_link(ctx, link_id)
    return Response(status_code=204)
