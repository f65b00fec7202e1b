"""ids never reused (SQLite AUTOINCREMENT on every table whose id is in a URL or a token) and
single-use stream tickets

On SQLite a plain INTEGER PRIMARY KEY is a rowid: deleting the newest row gives its id to the next
row inserted, so a job id (and the WebSocket follower of the deleted job) went to the next user's
job. AUTOINCREMENT can only be declared when a table is created, so each table is rebuilt (Alembic
batch "recreate": copy, drop, rename) with its rows, indexes, constraints and foreign keys.
`tools.db.session.migrate` runs SQLite migrations with ``PRAGMA foreign_keys=OFF`` (a DROP TABLE
would otherwise cascade into the child tables); this migration refuses to run with them on.
The copy sets each table's sqlite_sequence to its highest id, so new ids continue after it.

PostgreSQL: SERIAL/IDENTITY sequences never hand out a value twice; nothing to rebuild.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSE_TABLES = ("users", "projects", "dataset_images", "jobs", "test_runs", "model_exports", "slack_links")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise RuntimeError(
                "migration 0007 rebuilds tables and must run with PRAGMA foreign_keys=OFF "
                "(use tools.db.session.migrate): a DROP TABLE with foreign keys on deletes child rows"
            )
        for table in NEVER_REUSE_TABLES:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ) as batch_op:
                del batch_op  # the rebuild itself is the change
        problems = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"foreign key check failed after the rebuild: {problems[:5]}")

    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ticket_hash"),
    )
    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_tickets_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stream_tickets_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    """Drops the tickets; the rebuilt tables keep AUTOINCREMENT (harmless on older code)."""
    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_tickets_expires_at"))
        batch_op.drop_index(batch_op.f("ix_stream_tickets_user_id"))
    op.drop_table("stream_tickets")
