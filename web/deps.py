"""FastAPI dependencies shared by every route module.

The lifespan (`web.main`) puts the long-lived resources on `app.state`: `settings`, `engine`,
`session_factory`, `storage`, `work_dir`, `secret_key`, `system_user_id`, `services` (the app's
`tools.services.AppServices`, `app_services`, handed to every ToolContext). Routes get them only
through these dependencies (so tests can override them with `app.dependency_overrides`):

    SettingsDep        Settings of this app (not the process-wide cached one)
    SessionDep         a SQLAlchemy Session per request; tools commit, this rolls back on error and closes
                       it as soon as the route returns (before the response is sent)
    CurrentUser        the signed-in user (Bearer JWT), else 401 with `WWW-Authenticate: Bearer`
    OptionalUser       the signed-in user, or None without a token (a bad token is still 401)
    StorageDep         the DualStorageClient
    ToolContextDep     ToolContext(db, user, storage, work_dir, limits, links, services) for the signed-in user
    OptionalToolContextDep  the same with `user=None` for anonymous callers

`authenticate_raw_token(app_state, token)` checks a token string outside a request (WebSocket
`?token=`), opening and closing its own session.

Database connections. FastAPI runs each synchronous dependency, the route and
its response validation as separate steps on the worker-thread pool (40 threads), and a Session
keeps the connection it checked out until its transaction ends. When the sign-in check ran on the
request's session, every request past it held a connection while it waited for a thread for the
route; with ~100 requests at once every thread waited for a connection held by a request waiting
for a thread, until the pool's 30 s timeout (500s). Now a connection is held only while it is used:

- the sign-in check (`get_current_user`, `get_optional_user`) runs on a short session of its own,
  closed before it returns; the user is attached to the request's session without a query
  (`Session.merge(load=False)`), so the request's session has not touched the pool yet;
- the request's session (`get_db`) takes a connection at its first query, in the route's own
  thread step, and is closed when the route returns (`scope="function"`), not after the response
  has been sent (a slow client or a streamed download holds no connection);
- `web.overload` bounds the requests in flight below threads + connections, and a pool timeout
  (DB_POOL_TIMEOUT_S) is answered 503 + Retry-After (`web.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from tools.context import ToolContext, UploadLimits
from tools.db.models import User
from tools.downloads import LinkSigner
from tools.errors import AuthenticationError
from tools.services import AppServices
from trainer_runtime.formats.limits import FormatLimits
from trainer_runtime.storage import DualStorageClient
from web.config import Settings
from web.security import authenticate_token

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    """The settings the app was created with (`create_app(settings)`)."""
    settings: Settings = request.app.state.settings
    return settings


async def _settings_dep(request: Request) -> Settings:
    return get_settings(request)


# The dependencies that only read app.state are `async def` wrappers of the plain functions: FastAPI
# runs a sync dependency as a step of its own on the worker-thread pool, and under load each such
# step waits for a thread again (the plain functions stay for code that runs in a thread already).
SettingsDep = Annotated[Settings, Depends(_settings_dep)]


def _session_factory(state: Any) -> sessionmaker[Session]:
    factory: sessionmaker[Session] | None = getattr(state, "session_factory", None)
    if factory is None:
        raise RuntimeError("the application has not started (lifespan did not run)")
    return factory


def get_db(request: Request) -> Iterator[Session]:
    """One session per request. Committing is the tool's job; any exception rolls back."""
    db = _session_factory(request.app.state)()
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


# "function": closed when the route returns (with its response model validated), before sending.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


def get_secret_key(request: Request) -> str:
    """The key that signs access tokens and download links: the lifespan's, else the one the settings resolve."""
    secret: str | None = getattr(request.app.state, "secret_key", None)
    if secret is None:
        secret = get_settings(request).resolved_secret_key()
    return secret


def _authenticate(request: Request, db: Session, token: str) -> User:
    """The user `token` names, checked on a short session of its own (closed before this returns,
    so no connection stays checked out for the rest of the request), then attached to `db`
    without a query."""
    with _session_factory(request.app.state)() as auth_db:
        user = authenticate_token(auth_db, token, get_secret_key(request))
    return db.merge(user, load=False)


def get_current_user(request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]) -> User:
    """The user the Bearer token names, attached to the request's session; 401 without a valid token."""
    if not token:
        raise AuthenticationError("Not authenticated")
    return _authenticate(request, db, token)


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_optional_user(
    request: Request, db: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> User | None:
    """The user the Bearer token names, or None without a token; a token that is not valid still raises (401)."""
    if not token:
        return None
    return _authenticate(request, db, token)


OptionalUser = Annotated[User | None, Depends(get_optional_user)]


def get_storage(request: Request) -> DualStorageClient:
    """The app's external and internal object stores."""
    storage: DualStorageClient = request.app.state.storage
    return storage


async def _storage_dep(request: Request) -> DualStorageClient:
    return get_storage(request)


StorageDep = Annotated[DualStorageClient, Depends(_storage_dep)]


def get_work_dir(request: Request) -> Path:
    """The local folder where uploads are staged and temporary files are made."""
    work_dir: Path = request.app.state.work_dir
    return work_dir


def upload_limits(settings: Settings) -> UploadLimits:
    """The size, count and quota limits for uploads and the formats parsed from them, from the settings."""
    return UploadLimits(
        max_upload_bytes=settings.max_upload_bytes,
        max_file_bytes=settings.max_file_bytes,
        max_zip_entries=settings.max_zip_entries,
        max_zip_uncompressed_bytes=settings.max_zip_uncompressed_bytes,
        max_zip_ratio=settings.max_zip_ratio,
        user_storage_quota_bytes=settings.user_storage_quota_bytes,
        max_user_weights_bytes=settings.user_weights_max_bytes,
        formats=FormatLimits(
            max_label_chars=settings.max_label_chars,
            max_categories=settings.max_categories,
            max_keypoints=settings.max_keypoints,
            max_depth=settings.max_document_depth,
            max_yaml_bytes=settings.max_yaml_bytes,
        ),
    )


def link_signer(state: Any) -> LinkSigner:
    """The app's download-link signer: its secret, DOWNLOAD_LINK_TTL_S, PUBLIC_BASE_URL and its clock
    (`state.download_link_clock` when a test sets one, else the wall clock)."""
    secret: str | None = getattr(state, "secret_key", None)
    settings = state.settings
    if secret is None:
        secret = settings.resolved_secret_key()
    clock = getattr(state, "download_link_clock", None) or time.time
    return LinkSigner(secret, float(settings.download_link_ttl_s), settings.public_base_url, clock)


def app_services(state: Any) -> AppServices:
    """The app's services (`tools.services`), built by the lifespan (`web.main`); an app whose
    lifespan did not run (a test's bare state) gets one made here and kept on `state`."""
    services: AppServices | None = getattr(state, "services", None)
    if services is None:
        services = AppServices()
        state.services = services
    return services


def get_tool_context(request: Request, db: SessionDep, user: CurrentUser, storage: StorageDep) -> ToolContext:
    """The ToolContext that a route's tool calls run in, for the signed-in user (401 without one)."""
    return ToolContext(
        db=db,
        user=user,
        storage=storage,
        work_dir=get_work_dir(request),
        limits=upload_limits(get_settings(request)),
        links=link_signer(request.app.state),
        services=app_services(request.app.state),
    )


async def _tool_context_dep(request: Request, db: SessionDep, user: CurrentUser, storage: StorageDep) -> ToolContext:
    return get_tool_context(request, db, user, storage)


ToolContextDep = Annotated[ToolContext, Depends(_tool_context_dep)]


def get_optional_tool_context(request: Request, db: SessionDep, user: OptionalUser, storage: StorageDep) -> ToolContext:
    """Like `get_tool_context`, but with `user=None` for a caller without a token."""
    return ToolContext(
        db=db,
        user=user,
        storage=storage,
        work_dir=get_work_dir(request),
        limits=upload_limits(get_settings(request)),
        links=link_signer(request.app.state),
        services=app_services(request.app.state),
    )


async def _optional_tool_context_dep(
    request: Request, db: SessionDep, user: OptionalUser, storage: StorageDep
) -> ToolContext:
    return get_optional_tool_context(request, db, user, storage)


OptionalToolContextDep = Annotated[ToolContext, Depends(_optional_tool_context_dep)]


def authenticate_raw_token(state: Any, token: str | None) -> User:
    """The user a raw token names, for code outside a request (WebSocket `?token=`).

    `state` is `app.state` (e.g. `websocket.app.state`). The returned user is detached from its
    (closed) session; its column attributes stay readable. Raises AuthenticationError.
    """
    if not token:
        raise AuthenticationError("Not authenticated")
    secret: str | None = getattr(state, "secret_key", None)
    if secret is None:
        secret = state.settings.resolved_secret_key()
    with _session_factory(state)() as db:
        return authenticate_token(db, token, secret)
