"""index teachers.user_id: a teacher's own sessions are found by their account

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_teachers_user_id"), "teachers", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_teachers_user_id"), table_name="teachers")
