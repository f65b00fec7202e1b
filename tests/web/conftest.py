"""Fixtures for the web tests (the shared ones — `db_url`, `settings`, `app`, `client`, `make_user`,
`auth_headers` — live in tests/conftest.py).

    `craft_token(sub, *, secret=TEST_SECRET, expires_in=..., **claims)`  a JWT made by hand
    (expired, wrong type, tampered...) to probe `get_current_user`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.conftest import TEST_SECRET

CraftToken = Callable[..., str]


@pytest.fixture
def craft_token() -> CraftToken:
    def _craft(
        sub: Any,
        *,
        secret: str = TEST_SECRET,
        expires_in: timedelta = timedelta(minutes=5),
        issued_at: datetime | None = None,
        **claims: Any,
    ) -> str:
        iat = issued_at or datetime.now(UTC)
        payload: dict[str, Any] = {"sub": str(sub), "type": "access", "iat": iat, "exp": iat + expires_in}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, secret, algorithm="HS256")

    return _craft
