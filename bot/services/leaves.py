"""Leaves and early pick-ups: a guardian takes a child out of one session, a day or several days.

Opting out is always allowed (POLICY: voluntary participation), before a cut-off the school sets
(`School.leave_cutoff_minutes`, default one hour before the session starts), so the teacher
knows in time. Which sessions a date has follows the school calendar: none on holidays and
no-service days, and a swapped working day (调休) runs the timetable of the weekday it names.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.services import enrolment
from storage.models import (
    CalendarDay,
    CalendarKind,
    Course,
    Enrolment,
    EnrolmentStatus,
    Leave,
    School,
    Student,
    Teacher,
    utcnow,
)

MAX_DAYS = 31  # a longer absence is a withdrawal, or a word with the school


class LeaveRefusal(enum.StrEnum):
    PAST = "past"
    NO_SESSION = "no_session"  # the child has no session then
    TOO_LATE = "too_late"  # past the school's cut-off
    ALREADY = "already"
    BAD_TIME = "bad_time"  # a pick-up time outside the session
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class Rules:
    zone: ZoneInfo
    cutoff: dt.timedelta


async def rules_for(session: AsyncSession, student_id: int) -> Rules:
    row = (
        await session.execute(
            select(School.timezone, School.leave_cutoff_minutes)
            .join(Student, Student.school_id == School.id)
            .where(Student.id == student_id)
        )
    ).one()
    return Rules(ZoneInfo(row[0]), dt.timedelta(minutes=row[1]))


async def courses_on(
    session: AsyncSession, student_id: int, day: dt.date, period: int | None = None
) -> list[Course]:
    """The child's enrolled courses that run on `day` (in `period`, if given)."""
    student = await session.get(Student, student_id)
    if student is None:
        return []
    term = await enrolment.current_term(session, student.school_id, day)
    if term is None or not term.starts_on <= day <= term.ends_on:
        return []
    special = await session.scalar(
        select(CalendarDay).where(CalendarDay.term_id == term.id, CalendarDay.date == day)
    )
    weekday = day.isoweekday()
    if special is not None:
        if special.kind in (CalendarKind.HOLIDAY, CalendarKind.NO_SERVICE):
            return []
        if special.kind is CalendarKind.WORKDAY and special.runs_weekday:
            weekday = special.runs_weekday
    query = (
        select(Course)
        .join(Enrolment, Enrolment.course_id == Course.id)
        .where(
            Enrolment.student_id == student_id,
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Course.term_id == term.id,
            Course.weekdays.op("&")(1 << (weekday - 1)) != 0,
        )
        .order_by(Course.starts_at)
    )
    if period is not None:
        query = query.where(Course.period == period)
    return list((await session.scalars(query)).all())


async def announce(
    session: AsyncSession,
    student_id: int,
    day: dt.date,
    period: int | None,
    *,
    user_id: int | None,
    reason: str | None = None,
    pickup_at: dt.time | None = None,
    now: dt.datetime | None = None,
) -> Leave | LeaveRefusal:
    """Record a leave (or an early pick-up) for one date, if the rules allow it."""
    now = now or utcnow()
    rules = await rules_for(session, student_id)
    if day < now.astimezone(rules.zone).date():
        return LeaveRefusal.PAST
    courses = await courses_on(session, student_id, day, period)
    if not courses:
        return LeaveRefusal.NO_SESSION
    starts = min(c.starts_at for c in courses)
    if now >= dt.datetime.combine(day, starts, rules.zone) - rules.cutoff:
        return LeaveRefusal.TOO_LATE
    if pickup_at is not None and not starts < pickup_at < max(c.ends_at for c in courses):
        return LeaveRefusal.BAD_TIME
    for existing in await on_day(session, student_id, day):
        if existing.period is None or period is None or existing.period == period:
            return LeaveRefusal.ALREADY
    leave = Leave(
        school_id=(await session.get(Student, student_id)).school_id,  # type: ignore[union-attr]
        student_id=student_id,
        date=day,
        period=period,
        pickup_at=pickup_at,
        reason=(reason or "").strip()[:200] or None,
        created_by_user_id=user_id,
        created_at=now,
    )
    session.add(leave)
    await session.flush()
    return leave


async def announce_days(
    session: AsyncSession,
    student_id: int,
    first: dt.date,
    last: dt.date,
    *,
    user_id: int | None,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[Leave], LeaveRefusal | None]:
    """Whole-day leaves for every day of a range that has a session; days without one are
    skipped. Returns the leaves, or a refusal for the whole range."""
    now = now or utcnow()
    if last < first:
        first, last = last, first
    if (last - first).days >= MAX_DAYS:
        return [], LeaveRefusal.TOO_LONG
    made = []
    day = first
    while day <= last:
        result = await announce(
            session, student_id, day, None, user_id=user_id, reason=reason, now=now
        )
        if isinstance(result, Leave):
            made.append(result)
        elif result is LeaveRefusal.TOO_LATE and day == first:
            pass  # today may be too late; the following days are still fine
        day += dt.timedelta(days=1)
    return made, (None if made else LeaveRefusal.NO_SESSION)


async def on_day(session: AsyncSession, student_id: int, day: dt.date) -> list[Leave]:
    rows = await session.scalars(
        select(Leave).where(
            Leave.student_id == student_id, Leave.date == day, Leave.cancelled_at.is_(None)
        )
    )
    return list(rows.all())


async def upcoming(session: AsyncSession, student_id: int, today: dt.date) -> list[Leave]:
    rows = await session.scalars(
        select(Leave)
        .where(Leave.student_id == student_id, Leave.date >= today, Leave.cancelled_at.is_(None))
        .order_by(Leave.date, Leave.period)
    )
    return list(rows.all())


async def cancel(
    session: AsyncSession, leave_id: int, now: dt.datetime | None = None
) -> bool | LeaveRefusal:
    """Take a leave back, until the same cut-off; True when cancelled, False when not found or
    taken back already (compare-and-set: of two presses at once, one wins)."""
    now = now or utcnow()
    leave = await session.scalar(
        select(Leave).where(Leave.id == leave_id).execution_options(populate_existing=True)
    )
    if leave is None or leave.cancelled_at is not None:
        return False
    rules = await rules_for(session, leave.student_id)
    courses = await courses_on(session, leave.student_id, leave.date, leave.period)
    if courses:
        starts = min(c.starts_at for c in courses)
        if now >= dt.datetime.combine(leave.date, starts, rules.zone) - rules.cutoff:
            return LeaveRefusal.TOO_LATE
    taken_back = await session.execute(
        update(Leave)
        .where(Leave.id == leave_id, Leave.cancelled_at.is_(None))
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken_back, "rowcount", 0) != 1:
        return False
    set_committed_value(leave, "cancelled_at", now)
    return True


async def absences(
    session: AsyncSession, course: Course, day: dt.date
) -> list[tuple[Student, Leave]]:
    """The children of a course away or collected early on `day` (the teacher's roster)."""
    rows = await session.execute(
        select(Student, Leave)
        .join(Leave, Leave.student_id == Student.id)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .where(
            Enrolment.course_id == course.id,
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Leave.date == day,
            Leave.cancelled_at.is_(None),
            (Leave.period.is_(None)) | (Leave.period == course.period),
        )
        .order_by(Student.name)
    )
    return [(student, leave) for student, leave in rows.all()]


async def roster(
    session: AsyncSession, user_id: int, day: dt.date
) -> list[tuple[Course, list[tuple[Student, Leave | None]]]]:
    """A teacher's courses on `day`, each with its enrolled children and any leave or early
    pick-up (the roster and dismissal list)."""
    teacher_ids = list(
        (await session.scalars(select(Teacher.id).where(Teacher.user_id == user_id))).all()
    )
    if not teacher_ids:
        return []
    courses = list(
        (
            await session.scalars(
                select(Course)
                .where(Course.teacher_id.in_(teacher_ids), Course.cancelled_at.is_(None))
                .order_by(Course.starts_at)
            )
        ).all()
    )
    found = []
    for course in courses:
        student = await session.scalar(
            select(Enrolment.student_id).where(
                Enrolment.course_id == course.id, Enrolment.status == EnrolmentStatus.ENROLLED
            )
        )
        runs = student is not None and any(
            c.id == course.id for c in await courses_on(session, student, day, course.period)
        )
        if not runs:
            continue
        away = {s.id: leave for s, leave in await absences(session, course, day)}
        children = (
            await session.scalars(
                select(Student)
                .join(Enrolment, Enrolment.student_id == Student.id)
                .where(
                    Enrolment.course_id == course.id,
                    Enrolment.status == EnrolmentStatus.ENROLLED,
                )
                .order_by(Student.class_id, Student.name)
            )
        ).all()
        found.append((course, [(child, away.get(child.id)) for child in children]))
    return found
