"""Fixtures of the security tests (tests/security).

The tests/conftest.py fixtures (`client`, `make_user`, ...) make one app per TEST. The route matrix
and the schema fuzzing want one app per MODULE (hundreds of cases on the same users and resources),
so this package adds module-scoped ones:

    `module_db_url`    like `db_url` (sqlite always; postgresql when TEST_DATABASE_URL is set), made
                       once per module: a file under a module temp folder, or a fresh PostgreSQL
                       schema named like tests/conftest.py's (dropped after the module, and at the
                       session's end with the others).
    `open_app(settings)`  context manager: `create_app(settings)` under a started TestClient;
                       afterwards every trainer it launched is killed.
    `fake_trainer_settings_for(db_url, folder, **overrides)`  Settings whose trainer interpreters
                       are a fake that sleeps (jobs launch, never train: no torch in these tests).
    `register(client, email=None) -> Actor`  a new account through the API (id, email, headers).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import DB_BACKENDS, DEFAULT_PASSWORD, make_settings, with_search_path
from tests.live_server import write_fake_python

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from sqlalchemy import Engine

    from web.config import Settings


@dataclass(frozen=True)
class Actor:
    """A signed-in account: its id, email, bearer token and ready-made headers."""

    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(client: TestClient, email: str | None = None) -> Actor:
    email = email or f"sec-{uuid.uuid4().hex[:10]}@example.com"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})
    assert r.status_code == 201, r.text
    tok = client.post("/api/v1/auth/token", data={"username": email, "password": DEFAULT_PASSWORD})
    assert tok.status_code == 200, tok.text
    return Actor(int(r.json()["id"]), email, str(tok.json()["access_token"]))


@pytest.fixture(scope="module", params=DB_BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('security-db') / 'test.db'}"
        return
    from sqlalchemy import text

    from tests import conftest as root

    admin: Engine = request.getfixturevalue("pg_admin")  # session-scoped; fails when unreachable
    schema = f"t_{root._SESSION_HEX}_{next(root._schema_counter)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield with_search_path(root.TEST_DATABASE_URL, schema)
    with admin.connect() as conn:
        conn.execute(text("SET lock_timeout = '10s'"))
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def fake_trainer_settings_for(db_url: str, folder: Path, **overrides: Any) -> Settings:
    fake = write_fake_python(folder / "fake-python", mode="sleep", seconds=120)
    values: dict[str, Any] = {
        "trainer_python_timm": fake,
        "trainer_python_ultralytics": fake,
        "trainer_python_transformers": fake,
        "max_concurrent_jobs": 1,
        "stop_grace_period_s": 2,
    }
    values.update(overrides)
    return make_settings(db_url, folder, **values)


@contextmanager
def open_app(settings: Settings) -> Iterator[TestClient]:
    from fastapi.testclient import TestClient

    from web.main import create_app

    with TestClient(create_app(settings)) as client:
        try:
            yield client
        finally:
            client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]
