"""slack: linked users, one-time link codes, thread sessions, delivery dedupe, progress messages

Revision ID: 0006
Revises: 0004 (the chain is 0001 -> 0002 -> 0005 -> 0004 -> 0006)
Create Date: 2026-11-26 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_events",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("slack_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_events_created_at"), ["created_at"], unique=False)

    op.create_table(
        "slack_link_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("slack_link_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_link_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "slack_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "slack_user_id", name="uq_slack_link_user"),
    )
    with op.batch_alter_table("slack_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_links_slack_user_id"), ["slack_user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slack_links_user_id"), ["user_id"], unique=False)

    op.create_table(
        "slack_threads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["chat_sessions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "channel_id", "thread_ts", "user_id", name="uq_slack_thread_user"),
    )
    with op.batch_alter_table("slack_threads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_threads_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slack_threads_user_id"), ["user_id"], unique=False)

    op.create_table(
        "slack_job_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("message_ts", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("slack_job_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_job_messages_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_slack_job_messages_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    for table, indexes in (
        ("slack_job_messages", ("ix_slack_job_messages_user_id", "ix_slack_job_messages_status")),
        ("slack_threads", ("ix_slack_threads_user_id", "ix_slack_threads_session_id")),
        ("slack_links", ("ix_slack_links_user_id", "ix_slack_links_slack_user_id")),
        ("slack_link_codes", ("ix_slack_link_codes_user_id",)),
        ("slack_events", ("ix_slack_events_created_at",)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in indexes:
                batch_op.drop_index(name)
        op.drop_table(table)
