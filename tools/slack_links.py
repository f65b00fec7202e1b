"""Slack identities linked to platform users.

A Slack user acts as exactly one platform user, and only once linked:

* one-time code: a signed-in user asks for a code (`create_link_code`, `POST /api/v1/slack/link`)
  and sends it to the bot (`/train link CODE`, or "link CODE" in a DM); `redeem_link_code` links
  the Slack user who sent it. A code is 8 characters (``XXXX-XXXX``, 32 symbols: about 10^12
  values), lives `ttl_s` seconds (default 10 minutes), works once, and only its sha256 is stored;
  a new code replaces the user's unused ones.
* admin mapping: `link_user(db, email, slack_user_id, team_id)` (``vision-agent slack link``).
  `team_id` "" links the Slack user id in any workspace (a single-workspace bot needs no team).

`linked_user(db, team_id, slack_user_id)` answers the platform user (an exact team link first,
then a team-less one) or None: the bot then answers with instructions and nothing else.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tools.context import ToolContext, iso_utc, require_user
from tools.db.models import SlackLink, SlackLinkCode, User
from tools.errors import InvalidInputError, NotFoundError

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 8
DEFAULT_TTL_S = 600
_CODE_CHARS = re.compile(r"[^A-Z0-9]")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")

LINK_INSTRUCTIONS = (
    "In Slack, send `/train link {code}` (or `link {code}` in a direct message to the bot) before {expires} "
    "(UTC). The code works once."
)


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_code(code: str) -> str:
    """Upper case without separators and spaces ("abcd-efgh" -> "ABCDEFGH")."""
    return _CODE_CHARS.sub("", (code or "").upper())


def hash_code(code: str) -> str:
    """The SHA-256 of a normalized link code: what is stored, never the code itself."""
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


def _check_slack_id(value: str, what: str) -> str:
    value = (value or "").strip().upper()
    if not _SLACK_ID.match(value):
        raise InvalidInputError(f"{what} {value!r} is not a Slack id (like U012ABCDEF)", detail={"field": what})
    return value


def create_link_code(ctx: ToolContext, ttl_s: int = DEFAULT_TTL_S) -> dict[str, Any]:
    """A new one-time code for the signed-in user: {"code", "expires_at", "instructions"}."""
    user = require_user(ctx, "Slack linking")
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    code = f"{raw[:4]}-{raw[4:]}"
    expires = _now() + timedelta(seconds=max(30, int(ttl_s)))
    ctx.db.execute(delete(SlackLinkCode).where(SlackLinkCode.user_id == user.id, SlackLinkCode.used_at.is_(None)))
    ctx.db.add(SlackLinkCode(user_id=user.id, code_hash=hash_code(code), expires_at=expires, created_at=_now()))
    ctx.db.commit()
    expires_at = iso_utc(expires) or ""
    return {
        "code": code,
        "expires_at": expires_at,
        "instructions": LINK_INSTRUCTIONS.format(code=code, expires=expires_at[:19].replace("T", " ")),
    }


def _set_link(db: Session, team_id: str, slack_user_id: str, user_id: int, source: str) -> SlackLink:
    db.execute(delete(SlackLink).where(SlackLink.team_id == team_id, SlackLink.slack_user_id == slack_user_id))
    link = SlackLink(team_id=team_id, slack_user_id=slack_user_id, user_id=user_id, source=source, created_at=_now())
    db.add(link)
    return link


def redeem_link_code(db: Session, team_id: str, slack_user_id: str, code: str) -> User:
    """Link the Slack user to the owner of `code` (InvalidInputError when the code is unknown,
    used or expired — one message for all three). Single use even under concurrent redeems: the
    code is claimed by one conditional UPDATE."""
    slack_user_id = _check_slack_id(slack_user_id, "slack_user_id")
    if len(normalize_code(code)) != CODE_LENGTH:
        raise InvalidInputError("that link code is not valid (it has 8 characters, like ABCD-EFGH)")
    digest = hash_code(code)
    now = _now()
    claimed = db.execute(
        update(SlackLinkCode)
        .where(SlackLinkCode.code_hash == digest, SlackLinkCode.used_at.is_(None), SlackLinkCode.expires_at > now)
        .values(used_at=now)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        db.rollback()
        raise InvalidInputError("that link code is unknown, already used or expired: ask for a new one")
    row = db.scalar(select(SlackLinkCode).where(SlackLinkCode.code_hash == digest))
    user = db.get(User, row.user_id) if row is not None else None
    if user is None or not user.is_active or user.is_system:
        db.rollback()
        raise InvalidInputError("that link code belongs to no active user")
    _set_link(db, team_id or "", slack_user_id, user.id, "code")
    db.commit()
    return user


def linked_user(db: Session, team_id: str, slack_user_id: str) -> User | None:
    """The active platform user a Slack user acts as (exact team first, then team ""), else None."""
    rows = db.scalars(
        select(SlackLink).where(
            SlackLink.slack_user_id == (slack_user_id or "").upper(),
            or_(SlackLink.team_id == (team_id or ""), SlackLink.team_id == ""),
        )
    ).all()
    rows = sorted(rows, key=lambda r: r.team_id == "")  # the exact team's link wins
    for r in rows:
        user = db.get(User, r.user_id)
        if user is not None and user.is_active and not user.is_system:
            return user
    return None


def link_user(db: Session, email: str, slack_user_id: str, team_id: str = "") -> dict[str, Any]:
    """Admin mapping: link a Slack user to the platform user with `email` (NotFoundError when none)."""
    slack_user_id = _check_slack_id(slack_user_id, "slack_user_id")
    team_id = _check_slack_id(team_id, "team_id") if team_id else ""
    user = db.scalar(select(User).where(User.email == (email or "").strip().lower()))
    if user is None or user.is_system:
        raise NotFoundError(f"no user with email {email!r}", detail={"email": email})
    link = _set_link(db, team_id, slack_user_id, user.id, "admin")
    db.commit()
    return link_dict(link, user.email)


def unlink(db: Session, slack_user_id: str, team_id: str | None = None, *, user_id: int | None = None) -> int:
    """Remove the links of a Slack user (of one team when `team_id` is given; only those of
    `user_id` when given). Returns how many were removed."""
    stmt = delete(SlackLink).where(SlackLink.slack_user_id == (slack_user_id or "").upper())
    if team_id is not None:
        stmt = stmt.where(SlackLink.team_id == team_id)
    if user_id is not None:
        stmt = stmt.where(SlackLink.user_id == user_id)
    n = int(getattr(db.execute(stmt), "rowcount", 0) or 0)
    db.commit()
    return n


def link_dict(link: SlackLink, email: str | None = None) -> dict[str, Any]:
    """A Slack link as the API returns it (with the linked user's `email` when given)."""
    out: dict[str, Any] = {
        "id": link.id,
        "team_id": link.team_id,
        "slack_user_id": link.slack_user_id,
        "user_id": link.user_id,
        "source": link.source,
        "created_at": iso_utc(link.created_at),
    }
    if email is not None:
        out["email"] = email
    return out


def list_links(db: Session, user_id: int | None = None) -> list[dict[str, Any]]:
    """Every link (admin) or one user's, with the user's email."""
    stmt = select(SlackLink, User.email).join(User, User.id == SlackLink.user_id).order_by(SlackLink.id)
    if user_id is not None:
        stmt = stmt.where(SlackLink.user_id == user_id)
    return [link_dict(link, email) for link, email in db.execute(stmt).all()]


def my_links(ctx: ToolContext) -> list[dict[str, Any]]:
    """The signed-in user's Slack links."""
    return list_links(ctx.db, require_user(ctx, "Slack linking").id)


def delete_my_link(ctx: ToolContext, link_id: int) -> None:
    """Remove one of the caller's links (another user's -> NotFoundError)."""
    user = require_user(ctx, "Slack linking")
    link = ctx.db.get(SlackLink, int(link_id))
    if link is None or link.user_id != user.id:
        raise NotFoundError(f"Slack link {link_id} not found", detail={"link_id": link_id})
    ctx.db.delete(link)
    ctx.db.commit()
