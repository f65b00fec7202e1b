"""pretrained weights registry (table weights), users.is_admin, jobs.pretrained

Revision ID: 0010_weights
Revises: 0009_job_throughput
Create Date: 2026-12-07 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_weights"
down_revision: str | None = "0009_job_throughput"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "weights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("license", sa.String(length=200), nullable=False),
        sa.Column("pretraining", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("framework", "model_name", name="uq_weights_model"),
        sqlite_autoincrement=True,
    )
    # plain ADD COLUMN: a batch (copy-and-move) rebuild on SQLite would drop the tables'
    # AUTOINCREMENT (ids never reused, 0007)
    op.add_column("users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("pretrained", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("pretrained")
    with op.batch_alter_table("users", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("is_admin")
    op.drop_table("weights")
