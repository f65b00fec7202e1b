"""jobs.init_from: the earlier job's checkpoint a fine-tuning job starts from

Revision ID: 0008_init_from
Revises: 0007
Create Date: 2026-12-07 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_init_from"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN: a batch rebuild on SQLite would drop the table's AUTOINCREMENT (0007)
    op.add_column("jobs", sa.Column("init_from", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("init_from")
