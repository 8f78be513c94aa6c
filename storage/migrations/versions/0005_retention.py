"""retention: the personal content of sent outbox rows is cleared after a school-set period

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "outbox_retention_days", sa.SmallInteger(), nullable=False, server_default="180"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("outbox_retention_days")
