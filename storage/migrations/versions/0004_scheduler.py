"""scheduler: the job-run ledger, quiet hours, late broadcasts held for an admin's go-ahead

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=60), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job", "school_id", "due_at", name=op.f("uq_job_runs_job")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_runs_finished_at"), ["finished_at"], unique=False)

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quiet_from", sa.Time(), nullable=False, server_default="21:00:00")
        )
        batch_op.add_column(
            sa.Column("quiet_until", sa.Time(), nullable=False, server_default="07:00:00")
        )
        batch_op.add_column(
            sa.Column(
                "late_broadcast_hours", sa.SmallInteger(), nullable=False, server_default="2"
            )
        )
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.alter_column("quiet_from", server_default=None)
        batch_op.alter_column("quiet_until", server_default=None)
        batch_op.alter_column("late_broadcast_hours", server_default=None)

    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("held_at")
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("late_broadcast_hours")
        batch_op.drop_column("quiet_until")
        batch_op.drop_column("quiet_from")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_runs_finished_at"))
    op.drop_table("job_runs")
