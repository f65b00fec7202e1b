"""Alembic environment: runs on the connection handed over by `tools.db.session.migrate` (how the
server, the CLIs and the tests migrate), else on the URL the caller configured as the Alembic
config's ``sqlalchemy.url`` (the alembic command line). It reads no environment variable: the
database is the caller's choice (the server's is `web.config.Settings.resolved_database_url`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tools.db.models import Base

target_metadata = Base.metadata
config = context.config


def run_migrations_online() -> None:
    """Run the migrations on the connection `migrate` handed over, else on a new engine for the
    configured ``sqlalchemy.url``; RuntimeError when neither is given."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database to migrate: call tools.db.migrate(engine), or set sqlalchemy.url "
            "(alembic.ini, Config.set_main_option) to the server's DATABASE_URL"
        )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
