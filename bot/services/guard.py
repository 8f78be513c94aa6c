"""One guard for every flow: may this member act for this child, on this course, in this role?

Callback data and commands come from the user's client, so every action asks the guard first,
inside the action's own transaction, and a refusal is audited in that same transaction. The
handler only tells the user (`handlers.common.presses.refuse(..., audited=True)`).

    child = await guard.child(session, member, student_id, course_id=course_id,
                              action="enrolment.refused", pressed=query.data)
    if child is None:
        ...  # refused and audited; change nothing

    if not guard.holds(session, member, Role.ADMIN, action="broadcast.refused"):
        ...  # the same for an admin's or a teacher's action

A member of no school cannot be audited at any school: the refusal goes to the operator's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit
from bot.services.members import Member
from storage.models import Guardianship, Role, School, SchoolClass, Student

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Child:
    """A child the member is a guardian of: what a reply names."""

    id: int
    name: str
    school_id: int
    grade: int
    student_no: str
    leave_cutoff_minutes: int  # the school's: leaves are accepted until this long before


def child_columns() -> tuple[Any, ...]:
    """The columns a `Child` is made of, for statements that read more beside them."""
    return (
        Student.id,
        Student.name,
        Student.school_id,
        SchoolClass.grade,
        Student.student_no,
        School.leave_cutoff_minutes,
    )


def with_child(query: Select[Any]) -> Select[Any]:
    """`query` (over `child_columns`) joined to what a `Child` needs beside the student."""
    return query.join(SchoolClass, SchoolClass.id == Student.class_id).join(
        School, School.id == Student.school_id
    )


def of_guardian(query: Select[Any], user_id: int) -> Select[Any]:
    """`query` (over `child_columns`) finding only the children `user_id` is a guardian of."""
    return with_child(query).join(
        Guardianship,
        (Guardianship.student_id == Student.id) & (Guardianship.user_id == user_id),
    )


def parent(member: Member | None) -> int | None:
    """The user id the guard checks guardianship for; None if the member is no parent."""
    return member.user_id if member is not None and member.has(Role.PARENT) else None


def refused(
    session: AsyncSession,
    member: Member | None,
    action: str,
    pressed: str | None = None,
    telegram_id: int | None = None,
) -> None:
    """Record a refused action: in the school's audit log, or the operator's log for a stranger."""
    if member is not None:
        audit.record(
            session,
            member.school_id,
            action,
            actor_user_id=member.user_id,
            details={"callback_data": pressed[:64]} if pressed is not None else None,
        )
        return
    # No school knows this account, so no school's audit log can hold the press: the operator's
    # log does (the Telegram id only; callback data holds no personal data).
    log.warning(
        "refused %s from Telegram account %s, a member of no school: %r",
        action,
        telegram_id,
        pressed[:64] if pressed is not None else None,
    )


def holds(
    session: AsyncSession,
    member: Member | None,
    role: Role,
    *,
    action: str,
    pressed: str | None = None,
) -> bool:
    """Whether `member` holds `role` at their school (an admin's, a teacher's action); if not,
    the refusal is audited in this transaction. No statement: the loader read the roles."""
    if member is not None and member.has(role):
        return True
    refuse(session, member, action, pressed)
    return False


async def child(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    *,
    action: str,
    pressed: str | None = None,
) -> Child | None:
    """The child if `member` is a parent and one of the child's guardians; else None, with
    the refusal audited. One statement."""
    user_id = parent(member)
    if user_id is not None:
        query = of_guardian(select(*child_columns()), user_id).where(Student.id == student_id)
        row = (await session.execute(query)).first()
        if row is not None:
            return Child(*row)
    refuse(session, member, action, pressed)
    return None


def refuse(
    session: AsyncSession, member: Member | None, action: str, pressed: str | None = None
) -> None:
    """`refused`, for the member the update came from. A stranger's refusal is left to the
    handler, which knows their Telegram account (`handlers.common.presses.refuse`)."""
    if member is not None:
        refused(session, member, action, pressed, member.telegram_id)


async def children(session: AsyncSession, member: Member | None) -> list[Child]:
    """The member's children (none unless a parent), by class and name. One statement."""
    user_id = parent(member)
    if user_id is None:
        return []
    rows = await session.execute(
        of_guardian(select(*child_columns()), user_id).order_by(
            Student.class_id, Student.name, Student.id
        )
    )
    return [Child(*row) for row in rows.all()]
