"""A teacher's day: which sessions run, who may see and mark them, and their rows.

Which sessions a day has follows from the courses and the school calendar
(`leaves.sessions_on`); a `Session` row is written the first time something happens in one (its
roll, an update, a dismissal), by `materialise`, which two devices may call at once safely.

Who may do what with a session:

- its course's teacher marks the roll, dismisses and posts updates, on the day and up to the
  school's `correction_days` after it;
- an admin may do all of that for any session, on any day;
- a head teacher (班主任) sees the sessions their class's children are in, without marking.

    day = await sessions.day_of(session, member, today)      # the sessions the member sees
    found = await sessions.find(session, member, course_id, date, now)   # one, with the access
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import catalogue
from bot.services.catalogue import CourseInfo
from bot.services.leaves import sessions_on
from bot.services.members import Member
from storage.models import (
    Enrolment,
    EnrolmentStatus,
    Role,
    School,
    SchoolClass,
    Session,
    SessionStatus,
    Student,
    Teacher,
)


class Access(enum.IntEnum):
    """What the member may do with one session (ordered: more is more)."""

    NONE = 0
    VIEW = 1  # a head teacher with children in it, or its teacher past the correction window
    MARK = 2  # its teacher within the window, or an admin


@dataclass(frozen=True)
class Running:
    """One course's session on one date, as the member sees it."""

    course: CourseInfo
    date: dt.date
    access: Access

    @property
    def starts(self) -> tuple[dt.date, dt.time]:
        return self.date, self.course.starts_at


async def teacher_ids(session: AsyncSession, member: Member) -> set[int]:
    """The teacher rows of the member's account at their school (staff may have one each)."""
    if not member.has(Role.TEACHER):
        return set()
    rows = await session.scalars(
        select(Teacher.id).where(
            Teacher.user_id == member.user_id, Teacher.school_id == member.school_id
        )
    )
    return set(rows.all())


async def head_of(session: AsyncSession, member: Member) -> set[int]:
    """The classes the member is head teacher (班主任) of."""
    mine = await teacher_ids(session, member)
    if not mine:
        return set()
    rows = await session.scalars(
        select(SchoolClass.id).where(SchoolClass.head_teacher_id.in_(mine))
    )
    return set(rows.all())


async def zone_of(session: AsyncSession, school_id: int) -> ZoneInfo:
    zone = await session.scalar(select(School.timezone).where(School.id == school_id))
    return ZoneInfo(zone or "Asia/Shanghai")


async def local_today(session: AsyncSession, school_id: int, now: dt.datetime) -> dt.date:
    return now.astimezone(await zone_of(session, school_id)).date()


def may_correct(correction_days: int, date: dt.date, today: dt.date) -> bool:
    """A teacher may mark a session of `date` today (not ahead, not past the window)."""
    return today - dt.timedelta(days=correction_days) <= date <= today


async def day_of(
    session: AsyncSession,
    member: Member,
    date: dt.date,
    today: dt.date | None = None,
    *,
    only: int | None = None,
) -> list[Running]:
    """The sessions of `date` the member may see, by start time: their own (a teacher), their
    class's children's (a head teacher), or all (an admin); with `only`, that course's
    session alone. Two statements, three for a head teacher's sessions of other teachers."""
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    live = [
        c
        for c in found.courses.values()
        if c.cancelled_at is None and (only is None or c.id == only)
    ]
    running = sessions_on(found, live, date)
    if not running:
        return []
    today = today or date
    window = await session.scalar(
        select(School.correction_days).where(School.id == member.school_id)
    )
    within = may_correct(window or 0, date, today)
    admin = member.has(Role.ADMIN)
    mine = set() if admin else await teacher_ids(session, member)
    others = [c.id for c in running if not admin and c.teacher_id not in mine]
    viewed = await _with_my_class(session, mine, others) if mine and others else set()
    seen = []
    for course in running:
        access = Access.NONE
        if admin:
            access = Access.MARK
        elif course.teacher_id in mine:
            access = Access.MARK if within and date <= today else Access.VIEW
        elif course.id in viewed:
            access = Access.VIEW
        if access is not Access.NONE:
            seen.append(Running(course, date, access))
    return seen


async def _with_my_class(
    session: AsyncSession, teachers: set[int], course_ids: list[int]
) -> set[int]:
    """Of these courses, those with a child of a class these teacher rows are head of: read
    from the classes' children (a few dozen), not from every enrolment of the courses."""
    children = (
        select(Student.id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(SchoolClass.head_teacher_id.in_(teachers))
    )
    rows = await session.scalars(
        select(Enrolment.course_id)
        .where(
            Enrolment.student_id.in_(children),
            Enrolment.status == EnrolmentStatus.ENROLLED,
        )
        .distinct()
    )
    return set(rows.all()) & set(course_ids)


async def find(
    session: AsyncSession, member: Member, course_id: int, date: dt.date, today: dt.date
) -> Running | None:
    """One session as the member may see it; None when it does not run or is not theirs."""
    found = await day_of(session, member, date, today, only=course_id)
    return found[0] if found else None


async def materialise(session: AsyncSession, course: CourseInfo, date: dt.date) -> Session:
    """The session's row, written now if this is the first thing to happen in it.

    Insert-or-ignore, then read: two teachers' devices opening one roll at once get one row.
    """
    values = {
        "school_id": course.school_id,
        "course_id": course.id,
        "date": date,
        "starts_at": course.starts_at,
        "ends_at": course.ends_at,
        "venue": course.venue,
        "status": SessionStatus.SCHEDULED,
        "teacher_id": course.teacher_id,
        "roll_version": 0,
    }
    existing = await session.scalar(
        select(Session).where(Session.course_id == course.id, Session.date == date)
    )
    if existing is not None:
        return existing
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(Session)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["course_id", "date"])
    )
    row = await session.scalar(
        select(Session).where(Session.course_id == course.id, Session.date == date)
    )
    assert row is not None
    return row


async def rolls_in(session: AsyncSession, course_ids: list[int], date: dt.date) -> set[int]:
    """Of these courses, those whose session of `date` has its roll submitted."""
    if not course_ids:
        return set()
    rows = await session.scalars(
        select(Session.course_id).where(
            Session.course_id.in_(course_ids),
            Session.date == date,
            Session.roll_submitted_at.is_not(None),
        )
    )
    return set(rows.all())


async def roster(session: AsyncSession, course_id: int) -> list[Student]:
    """The children enrolled in the course, by class and school number (学号): the roll's order."""
    rows = await session.scalars(
        select(Student)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .where(
            Enrolment.course_id == course_id,
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Student.active.is_(True),
        )
        .order_by(Student.class_id, Student.student_no, Student.id)
    )
    return list(rows.all())
