"""Users, passwords and access tokens.

Every function takes the database session explicitly and commits its own writes. Passwords are
hashed with argon2id (`argon2-cffi`), tokens are HS256 JWTs (`PyJWT`) whose `sub` is the user id.
The secret is passed in by the caller (`web` reads it from its settings); nothing here imports `web`.

The system user (owner of the built-in demo datasets) has an unusable password and can never
sign in or use a token.

Each argon2 computation holds `memory_cost` (64 MiB) for its duration, so every hash and verify
goes through a `HashGate`: at most `concurrency` at once in this process (about the CPU count),
and `ServiceBusyError` (503 + Retry-After) for a caller that waited `wait_s` for a slot. Sign-in
and registration also pass a `tools.throttle.LoginThrottle` when the caller has one (429 +
Retry-After for an account or client with too many failures). No database connection is held
while a password is hashed.

Registration answers 409 for an email that exists (a person who forgot signing up is told so;
an account's existence is not a secret worth a confusing silent success here). To keep that the
only signal, the 409 costs the same as a new account: the password is hashed first either way,
and the client's failed-attempt counter of the throttle counts every 409, so enumerating emails
through it is as slow as guessing passwords.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tools.db.models import User
from tools.errors import AuthenticationError, ConflictError, InvalidInputError, ServiceBusyError
from tools.throttle import LoginThrottle

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
HASH_BUSY_MESSAGE = "Too many sign-ins at once; try again shortly"
HASH_BUSY_RETRY_AFTER_S = 2.0


# --- passwords -------------------------------------------------------------------------------


def default_hash_concurrency() -> int:
    """Concurrent argon2 computations by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class HashGate:
    """At most `concurrency` password hashes/verifications at once (each holds 64 MiB).

    `slot()` waits up to `wait_s` for a free slot, then raises ServiceBusyError (nothing done).
    """

    def __init__(self, concurrency: int | None = None, *, wait_s: float = 30.0) -> None:
        self.concurrency = concurrency or default_hash_concurrency()
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(self.concurrency)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise ServiceBusyError(HASH_BUSY_MESSAGE, retry_after_s=HASH_BUSY_RETRY_AFTER_S)
        try:
            yield
        finally:
            self._slots.release()


_default_gate: HashGate | None = None
_default_gate_lock = threading.Lock()


def default_gate() -> HashGate:
    """The process-wide gate for callers that pass none (the server passes its configured one)."""
    global _default_gate
    with _default_gate_lock:
        if _default_gate is None:
            _default_gate = HashGate()
        return _default_gate


def hash_password(password: str, gate: HashGate | None = None) -> str:
    """The argon2 hash of `password` to store, computed in a slot of `gate` (default: the process-wide
    gate), which bounds how many 64 MiB hashes run at once; ServiceBusyError when no slot frees in time."""
    with (gate or default_gate()).slot():
        return _hasher.hash(password)


def verify_password(hashed: str, password: str, gate: HashGate | None = None) -> bool:
    """True when `password` matches `hashed`; False for a mismatch or an unusable/foreign hash."""
    try:
        if not hashed.startswith("$argon2"):
            return False  # not a hash (e.g. UNUSABLE_PASSWORD): nothing to compute, no slot taken
        with (gate or default_gate()).slot():
            return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    """True when `hashed` was made with other argon2 parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(hashed)
    except InvalidHashError:
        return False


def _verify_dummy(password: str, gate: HashGate | None = None) -> None:
    """Spend about the time of a real verification (unknown email: no timing oracle)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password("dummy password for timing", gate)
    verify_password(_dummy_hash, password, gate)


# --- validation ------------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """Strip and lower-case `email`; InvalidInputError when it is not a plausible address."""
    value = (email or "").strip().lower()
    if not value or len(value) > 320 or not _EMAIL_RE.match(value):
        raise InvalidInputError(f"Not a valid email address: {email!r}", detail={"field": "email"})
    return value


def validate_password(password: str) -> None:
    """Raise InvalidInputError (field "password") when `password` is shorter than MIN_PASSWORD_LENGTH
    or longer than MAX_PASSWORD_LENGTH characters."""
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
    """The user with this email (compared trimmed and lower-cased), or None when there is none."""
    value = email.strip().lower()
    if "\x00" in value:  # no stored address has one (normalize_email); PostgreSQL refuses NUL in text (a 500)
        return None
    return db.scalars(select(User).where(User.email == value)).first()


def register_user(
    db: Session,
    email: str,
    password: str,
    *,
    gate: HashGate | None = None,
    throttle: LoginThrottle | None = None,
    client: str | None = None,
) -> User:
    """Create a user. InvalidInputError for a bad email/password, ConflictError when taken.

    The password is hashed before the email is looked up, so a 409 takes as long as a new
    account (see the module docstring); with a throttle each 409 counts against `client`.
    """
    normalized = normalize_email(email)
    validate_password(password)
    guard = throttle.attempt(account=None, client=client) if throttle is not None else nullcontext()
    with guard:
        hashed = hash_password(password, gate)  # first, whatever the answer: equal timing
        taken = ConflictError(f"An account with email {normalized} already exists", detail={"field": "email"})
        if normalized == SYSTEM_USER_EMAIL or get_user_by_email(db, normalized) is not None:
            raise taken
        user = User(email=normalized, hashed_password=hashed, is_system=False, is_active=True)
        db.add(user)
        try:
            db.commit()
        except IntegrityError as exc:  # a concurrent registration won the race
            db.rollback()
            raise taken from exc
        db.refresh(user)
        return user


def authenticate_user(
    db: Session,
    email: str,
    password: str,
    *,
    gate: HashGate | None = None,
    throttle: LoginThrottle | None = None,
    client: str | None = None,
) -> User:
    """The user with these credentials, or AuthenticationError (same message whatever was wrong).

    Unknown emails still cost one argon2 verification. The hash is upgraded when the hasher's
    parameters changed since it was made. With a throttle: TooManyRequestsError while the account
    or the client is locked (the password is then not checked). The user comes back detached
    from `db` (its columns readable), and no connection is held while hashing.
    """
    guard = throttle.attempt(account=email or "", client=client) if throttle is not None else nullcontext()
    with guard:
        user = get_user_by_email(db, email or "")
        if user is not None:
            db.expunge(user)
        db.rollback()  # end the read: the connection goes back to the pool before hashing
        if user is None:
            _verify_dummy(password, gate)
            raise AuthenticationError(BAD_CREDENTIALS)
        hashed = user.hashed_password
        if not verify_password(hashed, password, gate):
            raise AuthenticationError(BAD_CREDENTIALS)
        if user.is_system or not user.is_active:
            raise AuthenticationError(BAD_CREDENTIALS)
        if password_needs_rehash(hashed):
            upgraded = hash_password(password, gate)
            row = db.get(User, user.id)
            if row is not None and row.hashed_password == hashed:  # unchanged meanwhile
                row.hashed_password = upgraded
                db.commit()
                user.hashed_password = upgraded
            db.rollback()
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
    """A signed JWT access token and its lifetime in seconds, as the sign-in response returns them."""

    token: str
    expires_in: int  # seconds


def create_access_token(
    user_id: int, secret: str, *, expires_in: timedelta, now: datetime | None = None
) -> AccessToken:
    """A signed access token for `user_id`, issued at `now` (default: the current time) and valid for
    `expires_in`."""
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
