"""job_throughput: the measured training speed and fixed cost of each completed job, for
duration estimates of later jobs of the same kind

Revision ID: 0009_job_throughput
Revises: 0008_init_from
Create Date: 2026-12-07 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_job_throughput"
down_revision: str | None = "0008_init_from"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_throughput",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("task_type", sa.String(length=64), nullable=False),
        sa.Column("image_size", sa.Integer(), nullable=False),
        sa.Column("size_bucket", sa.Integer(), nullable=False),
        sa.Column("device_kind", sa.String(length=32), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("train_images", sa.Integer(), nullable=False),
        sa.Column("val_images", sa.Integer(), nullable=False),
        sa.Column("train_ips", sa.Double(), nullable=False),
        sa.Column("val_ips", sa.Double(), nullable=True),
        sa.Column("overhead_s", sa.Double(), nullable=False),
        sa.Column("wall_s", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("job_throughput", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_throughput_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_throughput", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_throughput_created_at"))
    op.drop_table("job_throughput")
