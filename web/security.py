"""Token issuing and checking with the server's settings (the work is done in `tools.auth`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from tools import auth
from tools.db.models import User
from web.config import Settings


def token_lifetime(settings: Settings) -> timedelta:
    """How long an access token is valid (`ACCESS_TOKEN_EXPIRE_MINUTES`, one day by default)."""
    return timedelta(minutes=settings.access_token_expire_minutes)


def issue_access_token(user: User, settings: Settings, secret: str | None = None) -> auth.AccessToken:
    """A signed access token for `user`; `secret` defaults to the settings' resolved secret."""
    return auth.create_access_token(
        user.id, secret or settings.resolved_secret_key(), expires_in=token_lifetime(settings)
    )


def authenticate_token(db: Session, token: str, secret: str) -> User:
    """The signed-in user a raw token string names (HTTP Bearer or WebSocket `?token=`).

    Raises `tools.errors.AuthenticationError` for a missing, malformed, tampered or expired token,
    or when the user was deleted, deactivated, or is the system user.
    """
    return auth.user_from_token(db, token, secret)
