"""Migrations on every configured database: idempotent, complete, and in step with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from tools.db import Base, create_engine_for_url, make_session_factory, migrate
from tools.db.session import MIGRATIONS_DIR

TABLES = {"users", "projects", "datasets", "dataset_images", "dataset_snapshots"}


def _head() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrate_twice_is_idempotent_and_creates_tables(db_url: str) -> None:
    engine = create_engine_for_url(db_url)
    try:
        migrate(engine)
        migrate(engine)
        names = set(inspect(engine).get_table_names())
        assert names >= TABLES | {"alembic_version"}
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == _head()
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    """Autogenerate finds nothing to do: the newest migration describes the models exactly."""
    engine = create_engine_for_url(db_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_postgres_is_isolated_in_its_schema(db_url: str) -> None:
    """Each test sees an empty database (own SQLite file, or own PostgreSQL schema)."""
    from tools.auth import ensure_system_user
    from tools.db import User

    engine = create_engine_for_url(db_url)
    try:
        migrate(engine)
        factory = make_session_factory(engine)
        with factory() as db:
            assert db.query(User).count() == 0
            first = ensure_system_user(db).id
            assert ensure_system_user(db).id == first
            assert db.query(User).count() == 1
    finally:
        engine.dispose()


def test_the_alembic_command_migrates_the_url_it_is_given_and_reads_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a connection handed over (the alembic command line), env.py migrates the config's
    sqlalchemy.url; DATABASE_URL is the server's setting, not read here."""
    from alembic import command

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'not-this.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with pytest.raises(RuntimeError, match="no database to migrate"):
        command.upgrade(cfg, "head")
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'given.db'}")
    command.upgrade(cfg, "head")
    engine = create_engine_for_url(f"sqlite:///{tmp_path / 'given.db'}")
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == _head()
    finally:
        engine.dispose()
    assert not (tmp_path / "not-this.db").exists()
