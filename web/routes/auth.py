"""`/api/v1/auth`: register, token (OAuth2 password flow), me.

Register and token hash a password (argon2id, 64 MiB for ~0.1 s), so both are bounded twice: here
an async admission (`anyio.CapacityLimiter`, PASSWORD_HASH_CONCURRENCY) lets at most that many
requests into a worker thread while the rest wait without holding a thread, and answers 503 with
`Retry-After` after PASSWORD_HASH_WAIT_S; inside, `tools.auth.HashGate` bounds the hashes
themselves for any caller. The login throttle (`tools.throttle`, 429 + `Retry-After`) counts
failures per account and per client address. Both live on `app.state` (made on first use).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict

from tools import auth
from tools.errors import ServiceBusyError
from tools.throttle import LoginThrottle, MemoryThrottleStore, RedisThrottleStore, ThrottlePolicy, ThrottleStore
from web.config import Settings
from web.deps import CurrentUser, SessionDep, SettingsDep, get_secret_key
from web.routes import UTCDateTime
from web.security import issue_access_token

router = APIRouter(prefix="/auth", tags=["auth"])

T = TypeVar("T")


def make_login_throttle(settings: Settings) -> LoginThrottle:
    """The sign-in throttle for these settings: Redis-backed when REDIS_URL is set."""
    store: ThrottleStore
    if settings.redis_url:
        store = RedisThrottleStore(settings.redis_url, prefix=settings.redis_channel_prefix)
    else:
        store = MemoryThrottleStore()
    return LoginThrottle(
        store,
        account=ThrottlePolicy(
            max_failures=settings.login_max_failures_per_account,
            window_s=settings.login_failure_window_s,
            lockout_base_s=settings.login_lockout_base_s,
            lockout_max_s=settings.login_lockout_max_s,
        ),
        client=ThrottlePolicy(
            max_failures=settings.login_max_failures_per_client,
            window_s=settings.login_failure_window_s,
            lockout_base_s=settings.login_lockout_base_s,
            lockout_max_s=settings.login_lockout_max_s,
        ),
    )


def login_throttle(state: Any) -> LoginThrottle:
    """This app's login throttle, made from its settings on first use."""
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None:
        throttle = state.login_throttle = make_login_throttle(state.settings)
    return throttle


def hash_gate(state: Any) -> auth.HashGate:
    """This app's password-hashing gate (PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_WAIT_S), made on first use."""
    gate: auth.HashGate | None = getattr(state, "hash_gate", None)
    if gate is None:
        settings: Settings = state.settings
        gate = state.hash_gate = auth.HashGate(settings.password_hash_concurrency, wait_s=settings.password_hash_wait_s)
    return gate


def _admission(state: Any, size: int) -> anyio.CapacityLimiter:
    """The async admission limiter of this app on the running event loop (one per loop)."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = getattr(state, "hash_admission", None)
    if held is None or held[0] is not loop:
        held = (loop, anyio.CapacityLimiter(size))
        state.hash_admission = held
    return held[1]


async def run_hashing(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` (which hashes a password) in a worker thread once an admission slot is free;
    ServiceBusyError (503) when none frees up within PASSWORD_HASH_WAIT_S."""
    gate = hash_gate(request.app.state)
    limiter = _admission(request.app.state, gate.concurrency)
    acquired = False
    with anyio.move_on_after(gate.wait_s):
        await limiter.acquire()
        acquired = True
    if not acquired:
        raise ServiceBusyError(auth.HASH_BUSY_MESSAGE, retry_after_s=auth.HASH_BUSY_RETRY_AFTER_S)
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
    finally:
        limiter.release()


def _client_host(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


class RegisterIn(BaseModel):
    """A new account: its email and a password of at least 8 characters."""

    email: str
    password: str


class UserOut(BaseModel):
    """A user account as the API shows it (never the password)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    created_at: UTCDateTime


class TokenOut(BaseModel):
    """A bearer access token and how many seconds it stays valid."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/register", status_code=201, response_model=UserOut, summary="Create an account")
async def register(body: RegisterIn, request: Request, db: SessionDep) -> UserOut:
    """Email is validated and lower-cased; the password needs at least 8 characters. 409 when taken
    (as slow as a new account; each 409 counts against the client's failed-attempt limit: 429)."""
    state = request.app.state
    user = await run_hashing(
        request,
        auth.register_user,
        db,
        body.email,
        body.password,
        gate=hash_gate(state),
        throttle=login_throttle(state),
        client=_client_host(request),
    )
    return UserOut.model_validate(user)


@router.post("/token", response_model=TokenOut, summary="Sign in (OAuth2 password flow)")
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    secret: Annotated[str, Depends(get_secret_key)],
) -> TokenOut:
    """Form fields `username` (the email) and `password`. 401 for any wrong credential; 429 with
    `Retry-After` after too many failures for the account or from the client; 503 with
    `Retry-After` when too many sign-ins are hashing at once."""
    state = request.app.state
    user = await run_hashing(
        request,
        auth.authenticate_user,
        db,
        form.username,
        form.password,
        gate=hash_gate(state),
        throttle=login_throttle(state),
        client=_client_host(request),
    )
    issued = issue_access_token(user, settings, secret)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=UserOut, summary="The signed-in user")
def me(user: CurrentUser) -> UserOut:
    """The account the bearer token belongs to; 401 without a valid token."""
    return UserOut.model_validate(user)
