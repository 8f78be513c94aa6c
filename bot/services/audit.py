"""The audit log: who did what, for every admin action and every change of access."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog


def record(
    session: AsyncSession,
    school_id: int,
    action: str,
    *,
    actor_user_id: int | None = None,
    actor_label: str | None = None,
    target: tuple[str, int] | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the caller's transaction."""
    session.add(
        AuditLog(
            school_id=school_id,
            actor_user_id=actor_user_id,
            actor_label=actor_label,
            action=action,
            target_type=target[0] if target else None,
            target_id=target[1] if target else None,
            details=details,
        )
    )
