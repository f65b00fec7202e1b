"""Shared fixtures for the whole suite.

Database
    `db_url`        a database URL for one test. Parametrised: `sqlite` (a file under tmp_path)
                    always, and `postgresql` too when the environment sets TEST_DATABASE_URL. Each
                    PostgreSQL test gets its own fresh schema `t_<session hex>_<n>` (the URL carries
                    `options=-csearch_path=<schema>`, which SQLAlchemy hands to psycopg as a connect
                    argument); the schema is dropped after the test, and every schema of the test
                    session is dropped at its end. TEST_DATABASE_URL set but unreachable FAILS the
                    tests that use it (never skips).
    `engine`        a migrated engine on `db_url` (disposed afterwards).
    `session_factory`  `tools.db.make_session_factory(engine)`.

Web (everything that uses them runs once per database)
    `settings`      `web.config.Settings` with data_dir under tmp_path, database_url=`db_url`,
                    a fixed secret (`TEST_SECRET`), create_demo_datasets=False, local storage.
                    Override in a module with your own `settings` fixture built from
                    `make_settings(db_url, tmp_path, **overrides)` (e.g. S3 endpoints, demo data on).
    `app`           `web.main.create_app(settings)`.
    `client`        `fastapi.testclient.TestClient(app)` entered as a context manager, so the
                    lifespan ran (migrations, storage, system user) before the test starts.
    `make_user`     factory: `make_user(email=None, password=DEFAULT_PASSWORD) -> (user_json, headers)`
                    registers through the API and signs in; `headers` is
                    `{"Authorization": "Bearer <token>"}`. A unique email is made when none is given.
    `auth_headers`  the headers of one fresh user.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

# Ultralytics sets OMP_NUM_THREADS=1 in os.environ when it is imported and the variable is unset.
# A test that trains Ultralytics in-process would then hand one thread to every trainer process
# the tests start later (same seed, other numbers). Fixing it to this machine's cores up front keeps
# every process of the suite on the same thread count, whatever the order the tests run in.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy import Engine

    from web.config import Settings

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
DEFAULT_PASSWORD = "correct horse battery staple"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
DB_BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]

MakeUser = Callable[..., tuple[dict[str, Any], dict[str, str]]]
"""Type of the `make_user` fixture."""

_SESSION_HEX = uuid.uuid4().hex[:10]
_schema_counter = itertools.count(1)
_sqlite_template: Path | None = None


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """argon2id with test parameters (1 pass over 1 MiB instead of 3 over 64 MiB), the way Django
    tests swap in a fast hasher: signing users up and in is most of many tests' setup. The product's
    parameters are unchanged; tests/web/test_auth.py checks that a hash made with other parameters
    is upgraded on sign-in, which still holds since these differ from the ones it starts from.
    """
    from argon2 import PasswordHasher

    from tools import auth

    real = auth._hasher
    auth._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    auth._hasher = real


def premigrate_sqlite(db_url: str) -> None:
    """Give a new SQLite database file the schema at head by copying a template migrated once per
    test process: running the Alembic chain for every test cost about a third of a second each.

    Only for `engine` and `make_settings`, whose databases are migrated on first use anyway (the
    migration itself is tested on empty databases in tests/tools/test_db.py, which takes `db_url`).
    """
    global _sqlite_template
    import atexit
    import shutil
    import tempfile

    if not db_url.startswith("sqlite:///") or db_url == "sqlite:///:memory:":
        return
    target = Path(db_url.removeprefix("sqlite:///"))
    if target.exists():
        return
    if _sqlite_template is None:
        from tools.db import create_engine_for_url, migrate

        folder = tempfile.mkdtemp(prefix="vta-db-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "head.db"
        eng = create_engine_for_url(f"sqlite:///{template}")
        try:
            migrate(eng)
        finally:
            eng.dispose()
        _sqlite_template = template
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, target)


def with_search_path(url: str, schema: str) -> str:
    """`url` with `options=-csearch_path=<schema>` in its query (psycopg connect argument)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _admin_engine() -> Engine:
    from sqlalchemy import create_engine

    return create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on TEST_DATABASE_URL; drops this session's schemas at the end."""
    from sqlalchemy import text

    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.fail(f"TEST_DATABASE_URL={TEST_DATABASE_URL} is set but unreachable: {exc}", pytrace=False)
    yield engine
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": f"t\\_{_SESSION_HEX}\\_%"}
        ).scalars()
        for name in list(names):
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture
def pg_schema_url(pg_admin: Engine) -> Iterator[str]:
    """A URL on TEST_DATABASE_URL whose search_path is a new empty schema (dropped afterwards)."""
    from sqlalchemy import text

    schema = f"t_{_SESSION_HEX}_{next(_schema_counter)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield with_search_path(TEST_DATABASE_URL, schema)
    with pg_admin.connect() as conn:
        # Connections the test left open must not block the drop forever.
        conn.execute(text("SET lock_timeout = '10s'"))
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=DB_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    from tools.db import create_engine_for_url, migrate

    premigrate_sqlite(db_url)
    eng = create_engine_for_url(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> Any:
    from tools.db import make_session_factory

    return make_session_factory(engine)


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Test settings: data under tmp_path/data, fixed secret, no demo datasets, local storage."""
    from web.config import Settings

    values: dict[str, Any] = {
        "VTA_DATA_DIR": str(tmp_path / "data"),
        "database_url": db_url,
        "secret_key": TEST_SECRET,
        "create_demo_datasets": False,
        "cors_origins": "",
        "external_storage_endpoint": None,
        "internal_storage_endpoint": None,
        "s3_endpoint": None,
    }
    values.update(overrides)
    premigrate_sqlite(str(values["database_url"]))
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    from web.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


_email_counter = itertools.count(1)


@pytest.fixture
def make_user(client: TestClient) -> MakeUser:
    def _make_user(email: str | None = None, password: str = DEFAULT_PASSWORD) -> tuple[dict[str, Any], dict[str, str]]:
        email = email or f"user{next(_email_counter)}-{uuid.uuid4().hex[:6]}@example.com"
        resp = client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert resp.status_code == 201, resp.text
        tok = client.post("/api/v1/auth/token", data={"username": email, "password": password})
        assert tok.status_code == 200, tok.text
        return resp.json(), {"Authorization": f"Bearer {tok.json()['access_token']}"}

    return _make_user


@pytest.fixture
def auth_headers(make_user: MakeUser) -> dict[str, str]:
    return make_user()[1]
