"""The context every tool operation receives explicitly (never from module globals)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from tools.db.models import User
from tools.errors import AuthenticationError
from tools.services import AppServices
from trainer_runtime.formats.limits import FormatLimits
from trainer_runtime.storage import DualStorageClient


@dataclass(frozen=True)
class UploadLimits:
    """Limits on what one upload may contain (zip bombs, huge files)."""

    max_upload_bytes: int = 2 * 1024**3  # whole request / archive on disk
    max_file_bytes: int = 256 * 1024**2  # one image
    max_zip_entries: int = 100_000
    max_zip_uncompressed_bytes: int = 8 * 1024**3
    max_zip_ratio: float = 200.0  # uncompressed/compressed, for one entry and for the whole archive
    max_image_pixels: int = 100_000_000
    user_storage_quota_bytes: int = 0  # bytes one user's datasets and weights may hold in all; 0 = no quota
    max_user_weights_bytes: int = 2 * 1024**3  # one weights file a user uploads (tools.user_weights)
    formats: FormatLimits = field(default_factory=FormatLimits)  # what dataset files may contain


@dataclass(frozen=True)
class LinkSigner:
    """What signs download links (`tools.downloads`): the server secret, their lifetime, the public
    base URL ("" for paths relative to the server) and the clock (injectable for tests)."""

    secret: str
    ttl_s: float = 300.0
    base_url: str = ""
    clock: Callable[[], float] = field(default=time.time)


@dataclass
class ToolContext:
    """Who is asking (`user`, None for anonymous), the database session, the storage, and limits.

    `work_dir` is a private scratch folder for staging uploads (same filesystem as local storage
    so that commits can be renames). `links` signs short-lived download links for the user.
    `services` are the app's shared services (`tools.services`: supervisor, job listeners,
    inference, event bus, weights policy); the app hands its one instance to every context, and a
    context made elsewhere (a script, a test) gets a fresh, empty one.
    """

    db: Session
    user: User | None
    storage: DualStorageClient
    work_dir: Path
    limits: UploadLimits = field(default_factory=UploadLimits)
    links: LinkSigner | None = None  # signs download links (tools.downloads); None: no links here
    services: AppServices = field(default_factory=AppServices)


def require_user(ctx: ToolContext, what: str = "") -> User:
    """The signed-in user of `ctx`; AuthenticationError (401) for anonymous callers."""
    if ctx.user is None:
        suffix = f": sign in to use {what}" if what else ""
        raise AuthenticationError(f"Not authenticated{suffix}")
    return ctx.user


# The largest id a row can have: id and seq columns are INTEGER, 32-bit on PostgreSQL. An id from
# text (a chat message, an LLM tool call) past it names no row, and looking it up would fail
# ("integer out of range" on PostgreSQL, OverflowError on SQLite past 2**63-1): a 500.
MAX_DB_ID = 2**31 - 1


def is_db_id(value: int) -> bool:
    """True when `value` can be a row id (1 .. MAX_DB_ID)."""
    return 1 <= value <= MAX_DB_ID


def iso_utc(dt: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp ending in Z (naive datetimes from SQLite are taken as UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
