"""Users, passwords and access tokens.

Every function takes the database session explicitly and commits its own writes. Passwords are
hashed with argon2id (`argon2-cffi`), tokens are HS256 JWTs (`PyJWT`) whose `sub` is the user id.
The secret is passed in by the caller (`web` reads it from its settings); nothing here imports `web`.

The system user (owner of the built-in demo datasets) has an unusable password and can never
sign in or use a token.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tools.db.models import User
from tools.errors import AuthenticationError, ConflictError, InvalidInputError

SYSTEM_USER_EMAIL = "system@vision-agent.local"
# Not a valid argon2 hash: `verify_password` is always False for it.
UNUSABLE_PASSWORD = "!unusable"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" is a cheap denial of service
JWT_ALGORITHM = "HS256"
TOKEN_TYPE_ACCESS = "access"
BAD_CREDENTIALS = "Incorrect email or password"

_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)

_hasher = PasswordHasher()
_dummy_hash: str | None = None


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """True when `password` matches `hashed`; False for a mismatch or an unusable/foreign hash."""
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    """True when `hashed` was made with other argon2 parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(hashed)
    except InvalidHashError:
        return False


def _verify_dummy(password: str) -> None:
    """Spend about the time of a real verification (unknown email: no timing oracle)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("dummy password for timing")
    verify_password(_dummy_hash, password)


# --- validation ------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """Strip and lower-case `email`; InvalidInputError when it is not a plausible address."""
    value = (email or "").strip().lower()
    if not value or len(value) > 320 or not _EMAIL_RE.match(value):
        raise InvalidInputError(f"Not a valid email address: {email!r}", detail={"field": "email"})
    return value


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters long", detail={"field": "password"}
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"Password must be at most {MAX_PASSWORD_LENGTH} characters long", detail={"field": "password"}
        )


# --- users -----------------------------------------------------------------------------------


def get_user_by_email(db: Session, email: str) -> User | None:
    return db.scalars(select(User).where(User.email == email.strip().lower())).first()


def register_user(db: Session, email: str, password: str) -> User:
    """Create a user. InvalidInputError for a bad email/password, ConflictError when taken."""
    normalized = normalize_email(email)
    validate_password(password)
    if normalized == SYSTEM_USER_EMAIL or get_user_by_email(db, normalized) is not None:
        raise ConflictError(f"An account with email {normalized} already exists", detail={"field": "email"})
    user = User(email=normalized, hashed_password=hash_password(password), is_system=False, is_active=True)
    db.add(user)
    try:
        db.commit()
    except IntegrityError as exc:  # a concurrent registration won the race
        db.rollback()
        raise ConflictError(f"An account with email {normalized} already exists", detail={"field": "email"}) from exc
    db.refresh(user)
    return user


def authenticate_user(db: Session, email: str, password: str) -> User:
    """The user with these credentials, or AuthenticationError (same message whatever was wrong).

    Unknown emails still cost one argon2 verification. The hash is upgraded when the hasher's
    parameters changed since it was made.
    """
    user = get_user_by_email(db, email or "")
    if user is None:
        _verify_dummy(password)
        raise AuthenticationError(BAD_CREDENTIALS)
    if not verify_password(user.hashed_password, password):
        raise AuthenticationError(BAD_CREDENTIALS)
    if user.is_system or not user.is_active:
        raise AuthenticationError(BAD_CREDENTIALS)
    if password_needs_rehash(user.hashed_password):
        user.hashed_password = hash_password(password)
        db.commit()
    return user


def ensure_system_user(db: Session) -> User:
    """Return the system user, creating it when missing (idempotent, safe against a racing worker)."""
    user = get_user_by_email(db, SYSTEM_USER_EMAIL)
    if user is not None:
        return user
    user = User(email=SYSTEM_USER_EMAIL, hashed_password=UNUSABLE_PASSWORD, is_system=True, is_active=True)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        existing = get_user_by_email(db, SYSTEM_USER_EMAIL)
        if existing is None:
            raise
        return existing
    db.refresh(user)
    return user


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


def create_access_token(
    user_id: int, secret: str, *, expires_in: timedelta, now: datetime | None = None
) -> AccessToken:
    issued = now or datetime.now(UTC)
    payload = {
        "sub": str(user_id),
        "type": TOKEN_TYPE_ACCESS,
        "iat": issued,
        "exp": issued + expires_in,
    }
    return AccessToken(
        token=jwt.encode(payload, secret, algorithm=JWT_ALGORITHM),
        expires_in=int(expires_in.total_seconds()),
    )


# Tokens whose signature and claims were verified: (secret, token) -> (user id, exp). A token is a
# pure function of its claims and the secret, so a repeat only needs its expiry checked again
# (the hot inference route sees the same token on every request; PyJWT's verify is ~0.1 ms).
_VERIFIED: collections.OrderedDict[tuple[str, str], tuple[int, float]] = collections.OrderedDict()
_VERIFIED_MAX = 4096
_VERIFIED_LOCK = threading.Lock()


def decode_access_token(token: str, secret: str) -> int:
    """The user id in a valid access token; AuthenticationError when missing, bad or expired."""
    if not token:
        raise AuthenticationError("Not authenticated")
    key = (secret, token)
    with _VERIFIED_LOCK:
        hit = _VERIFIED.get(key)
    if hit is not None:
        if time.time() < hit[1]:
            return hit[0]
        raise AuthenticationError("Token has expired")
    user_id, exp = _verify_access_token(token, secret)
    with _VERIFIED_LOCK:
        _VERIFIED[key] = (user_id, exp)
        while len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    return user_id


def _verify_access_token(token: str, secret: str) -> tuple[int, float]:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "type"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("Token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError("Invalid token") from exc
    if payload.get("type") != TOKEN_TYPE_ACCESS:
        raise AuthenticationError("Invalid token")
    try:
        return int(payload["sub"]), float(payload["exp"])
    except (TypeError, ValueError) as exc:
        raise AuthenticationError("Invalid token") from exc


def user_from_token(db: Session, token: str, secret: str) -> User:
    """The active, non-system user a token names; AuthenticationError otherwise."""
    user_id = decode_access_token(token, secret)
    user = db.get(User, user_id)
    if user is None or not user.is_active or user.is_system:
        raise AuthenticationError("Invalid token")
    return user
