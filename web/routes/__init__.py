"""One APIRouter per module; `web.main.create_app` includes them under `/api/v1` (health at `/`).

`UTCDateTime` is the type for timestamps in response models: SQLite hands back naive datetimes
(stored in UTC), so they are marked UTC and every response carries an explicit offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def as_utc(value: datetime) -> datetime:
    """The same instant with an explicit UTC offset (a naive value is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
