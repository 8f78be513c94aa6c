"""Teacher hours (课时): the sessions a teacher taught in a month, the basis of subsidies (补助).

A session counts when it ran: a `Session` row of the month whose roll was submitted
(`roll_submitted_at`), credited to who taught it (`Session.teacher_id`), for its length
(ends − starts). A teacher sees their month by course, with the sessions of the month so far
whose roll is still missing; an admin sees every teacher's monthly total.

    mine = await hours.of_teacher(session, member, month, now)
    school = await hours.of_school(session, member, month, now)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import catalogue, guard, sessions
from bot.services.leaves import sessions_on
from bot.services.members import Member
from storage.models import Course, Role, Session, SessionStatus, Teacher

REFUSED = "hours.refused"


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @property
    def first(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def last(self) -> dt.date:
        return self.next().first - dt.timedelta(days=1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def key(self) -> str:
        return f"{self.year:04d}{self.month:02d}"

    @classmethod
    def of(cls, day: dt.date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> Month | None:
        """ "2026-11", "2026/11", "202611" or "2026年11月"; None for anything else."""
        digits = "".join(c if c.isdigit() else " " for c in text.strip()).split()
        if len(digits) == 1 and len(digits[0]) == 6:
            digits = [digits[0][:4], digits[0][4:]]
        if len(digits) != 2 or len(digits[0]) != 4:
            return None
        year, month = int(digits[0]), int(digits[1])
        return cls(year, month) if 2000 <= year <= 2100 and 1 <= month <= 12 else None


def minutes(starts: dt.time, ends: dt.time) -> int:
    begin, end = starts.hour * 60 + starts.minute, ends.hour * 60 + ends.minute
    return max(0, end - begin)


@dataclass(frozen=True)
class CourseHours:
    course: str
    sessions: int
    minutes: int


@dataclass(frozen=True)
class Missing:
    course: str
    date: dt.date
    starts_at: dt.time
    ends_at: dt.time


@dataclass(frozen=True)
class TeacherMonth:
    month: Month
    courses: list[CourseHours]  # by course name
    missing: list[Missing]  # sessions of the month so far with no roll, by date

    @property
    def sessions(self) -> int:
        return sum(c.sessions for c in self.courses)

    @property
    def minutes(self) -> int:
        return sum(c.minutes for c in self.courses)


@dataclass(frozen=True)
class TeacherTotal:
    teacher: str
    sessions: int
    minutes: int


@dataclass(frozen=True)
class SchoolMonth:
    month: Month
    teachers: list[TeacherTotal]  # by name

    @property
    def sessions(self) -> int:
        return sum(t.sessions for t in self.teachers)

    @property
    def minutes(self) -> int:
        return sum(t.minutes for t in self.teachers)


async def of_teacher(
    session: AsyncSession,
    member: Member | None,
    month: Month,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> TeacherMonth | None:
    """The member's sessions taught in `month`, by course, and the month's missing rolls so
    far; None (refused and audited) for someone who teaches nothing here."""
    if member is None or not member.has(Role.TEACHER):
        guard.refuse(session, member, REFUSED, pressed)
        return None
    mine = await sessions.teacher_ids(session, member)
    if not mine:
        return TeacherMonth(month, [], [])
    rows = await session.execute(
        select(Course.name, Session.course_id, Session.starts_at, Session.ends_at)
        .join(Course, Course.id == Session.course_id)
        .where(
            Session.school_id == member.school_id,
            Session.teacher_id.in_(mine),
            Session.date.between(month.first, month.last),
            Session.roll_submitted_at.is_not(None),
        )
    )
    taught: dict[tuple[str, int], list[int]] = {}
    for name, course_id, starts, ends in rows.all():
        taught.setdefault((name, course_id), []).append(minutes(starts, ends))
    courses = sorted(
        (CourseHours(name, len(spans), sum(spans)) for (name, _), spans in taught.items()),
        key=lambda c: c.course,
    )
    missing = await _missing(session, member, mine, month, now)
    return TeacherMonth(month, courses, missing)


async def _missing(
    session: AsyncSession, member: Member, mine: set[int], month: Month, now: dt.datetime
) -> list[Missing]:
    """The member's sessions of the month that have ended, by the calendar, with no roll."""
    zone_now = now.astimezone(await _zone(session, member))
    today = zone_now.date()
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    theirs = [c for c in found.courses.values() if c.teacher_id in mine and c.cancelled_at is None]
    if not theirs or month.first > today:
        return []
    held = {
        (course_id, date): (submitted is not None, status)
        for course_id, date, submitted, status in await session.execute(
            select(
                Session.course_id, Session.date, Session.roll_submitted_at, Session.status
            ).where(
                Session.course_id.in_([c.id for c in theirs]),
                Session.date.between(month.first, min(month.last, today)),
            )
        )
    }
    missing = []
    day = month.first
    while day <= min(month.last, today):
        for course in sessions_on(found, theirs, day):
            if day == today and course.ends_at > zone_now.time():
                continue  # still running or still to come
            submitted, status = held.get((course.id, day), (False, SessionStatus.SCHEDULED))
            if not submitted and status is not SessionStatus.CANCELLED:
                missing.append(Missing(course.name, day, course.starts_at, course.ends_at))
        day += dt.timedelta(days=1)
    return missing


async def _zone(session: AsyncSession, member: Member) -> dt.tzinfo:
    if member.school_timezone:
        return ZoneInfo(member.school_timezone)
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    return ZoneInfo(found.timezone)


async def of_school(
    session: AsyncSession,
    member: Member | None,
    month: Month,
    *,
    pressed: str | None = None,
) -> SchoolMonth | None:
    """Every teacher's sessions taught in `month` and their length: the basis of subsidies.
    None (refused and audited) for anyone but an admin."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return None
    assert member is not None
    rows = await session.execute(
        select(Teacher.name, Session.teacher_id, Session.starts_at, Session.ends_at)
        .join(Teacher, Teacher.id == Session.teacher_id)
        .where(
            Session.school_id == member.school_id,
            Session.date.between(month.first, month.last),
            Session.roll_submitted_at.is_not(None),
        )
    )
    totals: dict[tuple[str, int | None], list[int]] = {}
    for name, teacher_id, starts, ends in rows.all():
        totals.setdefault((name, teacher_id), []).append(minutes(starts, ends))
    teachers = sorted(
        (TeacherTotal(name, len(spans), sum(spans)) for (name, _), spans in totals.items()),
        key=lambda t: (t.teacher, -t.minutes),
    )
    return SchoolMonth(month, teachers)
