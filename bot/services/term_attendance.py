"""Attendance over a term, counted in the database: one query for any grouping.

A child's status in a session is the latest mark of the append-only log (`attendance`). The
attendance rate is present marks over all marks: a session nobody took the roll of counts for
nobody, and a leave counts as not present (a family's own choice still means the child was not
there). `leave` is counted on its own so a report can tell excused from unexplained absence.

    rates = await term_attendance.tally(session, school_id, term, "course")
    rates[(course_id,)].rate
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.attendance import LEAVE
from storage.models import AttendanceCode, AttendanceMark, Course, Session, Student, Term

Key = Literal["course", "student", "class", "date", "provider", "teacher"]

_COLUMNS: dict[str, Any] = {
    "course": Session.course_id,
    "student": AttendanceMark.student_id,
    "class": Student.class_id,
    "date": Session.date,
    "provider": Course.provider_id,
    "teacher": Course.teacher_id,
}


@dataclass(frozen=True)
class Tally:
    present: int  # marked with a code that counts as present (present, late, picked up early)
    marked: int  # every child a roll named
    leave: int = 0  # of the absent, on approved leave

    @property
    def rate(self) -> float | None:
        """Present over marked, or None when no roll named anyone."""
        return self.present / self.marked if self.marked else None

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.present + other.present, self.marked + other.marked, self.leave + other.leave
        )


async def tally(
    session: AsyncSession,
    school_id: int,
    term: Term,
    *keys: Key,
    students: Sequence[int] | None = None,
) -> dict[tuple[Any, ...], Tally]:
    """Marks of the term's courses between its first and last day, grouped by `keys` (in that
    order in each result key). No keys: one total under ``()``. `students`: only their marks
    (one child's record reads its own marks, not the school's)."""
    latest = (
        select(func.max(AttendanceMark.id).label("id"))
        .join(Session, Session.id == AttendanceMark.session_id)
        .join(Course, Course.id == Session.course_id)
        .where(
            AttendanceMark.school_id == school_id,
            Course.term_id == term.id,
            Session.date.between(term.starts_on, term.ends_on),
        )
        .group_by(AttendanceMark.session_id, AttendanceMark.student_id)
    )
    if students is not None:
        latest = latest.where(AttendanceMark.student_id.in_(list(students)))
    subquery = latest.subquery()
    columns = [_COLUMNS[key] for key in keys]
    present = func.sum(cast(AttendanceCode.present, Integer))
    leave = func.sum(case((AttendanceMark.code == LEAVE, 1), else_=0))
    query = (
        select(*columns, present, func.count(), leave)
        .select_from(AttendanceMark)
        .join(subquery, subquery.c.id == AttendanceMark.id)
        .join(Session, Session.id == AttendanceMark.session_id)
        .join(Course, Course.id == Session.course_id)
        .join(
            AttendanceCode,
            and_(
                AttendanceCode.school_id == AttendanceMark.school_id,
                AttendanceCode.code == AttendanceMark.code,
            ),
        )
    )
    if "class" in keys:
        query = query.join(Student, Student.id == AttendanceMark.student_id)
    if columns:
        query = query.group_by(*columns)
    result: dict[tuple[Any, ...], Tally] = {}
    for row in await session.execute(query):
        *key, present_n, marked_n, leave_n = row
        result[tuple(key)] = Tally(int(present_n or 0), int(marked_n), int(leave_n or 0))
    return result
