"""enrolment: allocation, seat offers, withdrawal, history; leaves by period; pick-ups

Also: a course's minimum size, a school's leave cut-off, outbox templates of any length.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("enrolled", "waitlisted", "withdrawn")
NEW_STATUSES = (*OLD_STATUSES, "cancelled", "entered")
ACTORS = ("parent", "admin", "draw", "offer", "system")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column(
            "template", existing_type=sa.String(length=100), type_=sa.Text(), nullable=True
        )

    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offer_expires_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("withdrawn_from", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("draw_rank", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("draw_key", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(op.f("ck_enrolments_enrolment_status"), type_="check")
        batch_op.create_check_constraint("enrolment_status", _in("status", NEW_STATUSES))
        batch_op.alter_column(
            "status",
            existing_type=sa.Enum(*OLD_STATUSES, name="enrolment_status", native_enum=False),
            type_=sa.Enum(*NEW_STATUSES, name="enrolment_status", native_enum=False),
            existing_nullable=False,
        )

    op.create_table(
        "lottery_draws",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("drawn_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_lottery_draws_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["term_id"],
            ["terms.id"],
            name=op.f("fk_lottery_draws_term_id_terms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lottery_draws")),
        sa.UniqueConstraint("term_id", name=op.f("uq_lottery_draws_term_id")),
    )
    op.create_table(
        "enrolment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("enrolment_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *NEW_STATUSES, name="enrolment_status", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("waitlist_position", sa.Integer(), nullable=True),
        sa.Column(
            "actor",
            sa.Enum(*ACTORS, name="enrolment_actor", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_user_id"],
            ["users.id"],
            name=op.f("fk_enrolment_events_actor_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolments.id"],
            name=op.f("fk_enrolment_events_enrolment_id_enrolments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["school_id"],
            ["schools.id"],
            name=op.f("fk_enrolment_events_school_id_schools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_events")),
    )
    with op.batch_alter_table("enrolment_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrolment_events_enrolment_id"), ["enrolment_id"], unique=False
        )

    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "allocation",
                sa.Enum(
                    "first_come",
                    "lottery",
                    name="allocation",
                    native_enum=False,
                    create_constraint=True,
                ),
                nullable=False,
                server_default="first_come",
            )
        )
        batch_op.add_column(sa.Column("min_size", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.alter_column("allocation", server_default=None)

    with op.batch_alter_table("leaves", schema=None) as batch_op:
        batch_op.add_column(sa.Column("period", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("pickup_at", sa.Time(), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))
        batch_op.create_check_constraint("period", "period IS NULL OR period IN (1, 2)")
        batch_op.create_index("ix_leaves_student_date", ["student_id", "date"], unique=False)

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "leave_cutoff_minutes", sa.SmallInteger(), nullable=False, server_default="60"
            )
        )
        batch_op.add_column(
            sa.Column("offer_hours", sa.SmallInteger(), nullable=False, server_default="24")
        )
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.alter_column("leave_cutoff_minutes", server_default=None)
        batch_op.alter_column("offer_hours", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("offer_hours")
        batch_op.drop_column("leave_cutoff_minutes")
    with op.batch_alter_table("leaves", schema=None) as batch_op:
        batch_op.drop_index("ix_leaves_student_date")
        batch_op.drop_constraint(op.f("ck_leaves_period"), type_="check")
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("pickup_at")
        batch_op.drop_column("period")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column(
            "template", existing_type=sa.Text(), type_=sa.String(length=100), nullable=True
        )
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_courses_allocation"), type_="check")
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("min_size")
        batch_op.drop_column("allocation")
    with op.batch_alter_table("enrolment_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolment_events_enrolment_id"))
    op.drop_table("enrolment_events")
    op.drop_table("lottery_draws")
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_enrolments_enrolment_status"), type_="check")
        batch_op.alter_column(
            "status",
            existing_type=sa.Enum(*NEW_STATUSES, name="enrolment_status", native_enum=False),
            type_=sa.Enum(*OLD_STATUSES, name="enrolment_status", native_enum=False),
            existing_nullable=False,
        )
        batch_op.create_check_constraint("enrolment_status", _in("status", OLD_STATUSES))
        batch_op.drop_column("draw_key")
        batch_op.drop_column("draw_rank")
        batch_op.drop_column("withdrawn_from")
        batch_op.drop_column("offer_expires_at")
