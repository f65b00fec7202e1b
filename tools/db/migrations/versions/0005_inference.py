"""inference: test runs and model exports

Revision ID: 0005
Revises: 0004 (0003 was left unused: 0004_chat chains straight to 0002)
Create Date: 2026-11-26 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "test_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("snapshot_id", sa.String(length=32), nullable=True),
        sa.Column("checkpoint", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("failed_images", sa.Integer(), nullable=False),
        sa.Column("labeled", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("predictions_key", sa.String(length=1024), nullable=True),
        sa.Column("report_key", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_test_runs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_runs_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_runs_status"), ["status"], unique=False)

    op.create_table(
        "model_exports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("checkpoint", sa.String(length=16), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_exports_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_exports_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_exports_owner_id"))
        batch_op.drop_index(batch_op.f("ix_model_exports_job_id"))
    op.drop_table("model_exports")
    with op.batch_alter_table("test_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_runs_status"))
        batch_op.drop_index(batch_op.f("ix_test_runs_owner_id"))
        batch_op.drop_index(batch_op.f("ix_test_runs_job_id"))
    op.drop_table("test_runs")
