"""delivery: outbox claims and digests, broadcast progress, delivery workers

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("pending", "sending", "sent", "failed", "blocked", "cancelled")
NEW_STATUSES = (*OLD_STATUSES, "held", "digested")


def _status_check(values: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "delivery_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_workers")),
    )
    with op.batch_alter_table("delivery_workers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_workers_heartbeat_at"), ["heartbeat_at"], unique=False
        )

    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("digest_time", sa.Time(), nullable=False, server_default="19:00:00")
        )
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.alter_column("digest_time", server_default=None)

    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="2")
        )
        batch_op.add_column(
            sa.Column("recipients", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reping_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("status_chat_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("status_message_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.alter_column("priority", server_default=None)
        batch_op.alter_column("recipients", server_default=None)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("digest_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_digest_id"), ["digest_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_digest_id_outbox"),
            "outbox",
            ["digest_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.drop_constraint(op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.create_check_constraint("outbox_status", _status_check(NEW_STATUSES))
        batch_op.alter_column(
            "status",
            existing_type=sa.Enum(*OLD_STATUSES, name="outbox_status", native_enum=False),
            type_=sa.Enum(*NEW_STATUSES, name="outbox_status", native_enum=False),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.alter_column(
            "status",
            existing_type=sa.Enum(*NEW_STATUSES, name="outbox_status", native_enum=False),
            type_=sa.Enum(*OLD_STATUSES, name="outbox_status", native_enum=False),
            existing_nullable=False,
        )
        batch_op.create_check_constraint("outbox_status", _status_check(OLD_STATUSES))
        batch_op.drop_constraint(batch_op.f("fk_outbox_digest_id_outbox"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_outbox_digest_id"))
        batch_op.drop_column("digest_id")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        for column in (
            "status_message_id",
            "status_chat_id",
            "cancelled_at",
            "reping_at",
            "finished_at",
            "started_at",
            "recipients",
            "priority",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("schools", schema=None) as batch_op:
        batch_op.drop_column("digest_time")
    with op.batch_alter_table("delivery_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_workers_heartbeat_at"))
    op.drop_table("delivery_workers")
