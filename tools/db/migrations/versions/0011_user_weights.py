"""user_weights: weights files users upload for their own jobs ("use my weights")

Revision ID: 0011_user_weights
Revises: 0010_weights
Create Date: 2026-12-07 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_user_weights"
down_revision: str | None = "0010_weights"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # sqlite_autoincrement: the id of a deleted upload is never given to a new one (0007); it is in
    # URLs and in the records of jobs that started from it
    op.create_table(
        "user_weights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_user_weights_owner_id"), "user_weights", ["owner_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_user_weights_owner_id"), table_name="user_weights")
    op.drop_table("user_weights")
