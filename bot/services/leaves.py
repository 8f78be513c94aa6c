"""Leaves and early pick-ups: a guardian takes a child out of one session, a day or several days.

Opting out is always allowed (POLICY: voluntary participation), before a cut-off the school sets
(`School.leave_cutoff_minutes`, default one hour before the session starts), so the teacher
knows in time. An early pick-up is for the day as it goes: it can be filed (and taken back)
until the pick-up time itself, from the first session's start until the last one ends. The
child's other guardians are told of what one of them files or takes back (docs/UX.md, 5).
Which sessions a date has follows the school calendar: none on holidays and no-service days,
and a swapped working day (调休) runs the timetable of the weekday it names.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import catalogue, family, guard, outbox
from bot.services.catalogue import Catalogue, CourseInfo
from bot.services.guard import Child, child_columns, of_guardian, with_child
from bot.services.members import Member
from bot.services.outbox import NewMessage
from storage.models import (
    CalendarKind,
    Course,
    Enrolment,
    EnrolmentStatus,
    Leave,
    Priority,
    School,
    SchoolClass,
    Student,
    Teacher,
    User,
    utcnow,
)

# What the child's other guardians are told (outbox templates, translated for each reader).
FAMILY_LEAVE = N_("👪 {child}'s other guardian recorded a leave: {course}, {day} {start}–{end}.")
FAMILY_PICKUP = N_(
    "👪 {child}'s other guardian will collect {child} early on {day} at {pickup} ({course})."
)
FAMILY_DAYS = N_("👪 {child}'s other guardian recorded leaves from {day} to {last} (whole days).")
FAMILY_TAKEN_BACK = N_(
    "👪 {child}'s other guardian took back the leave of {day}: {child} takes part as usual."
)
# What the teacher (and the child's head teacher) hear of a change to today's session.
STAFF_LEAVE = N_("📝 Today: {child} ({klass}) is on leave from {course} ({start}–{end}).")
STAFF_LEAVE_REASON = N_(
    "📝 Today: {child} ({klass}) is on leave from {course} ({start}–{end}). Reason: {reason}"
)
STAFF_PICKUP = N_("🚗 Today: {child} ({klass}) will be collected early from {course} at {pickup}.")
STAFF_TAKEN_BACK = N_(
    "↩️ Today: {child} ({klass}) takes part in {course} after all: the guardian took back the "
    "leave or pick-up."
)
MAX_DAYS = 31  # a longer absence is a withdrawal, or a word with the school
REFUSED = "leave.refused"  # the audit action of a refused leave press


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


def sessions_on(
    found: Catalogue, enrolled: Iterable[CourseInfo], day: dt.date, period: int | None = None
) -> list[CourseInfo]:
    """Which of these courses run on `day` (in `period`, if given), by the school calendar."""
    term = found.current_term(day)
    if term is None or not term.starts_on <= day <= term.ends_on:
        return []
    special = term.day(day)
    weekday = day.isoweekday()
    if special is not None:
        if special.kind in (CalendarKind.HOLIDAY, CalendarKind.NO_SERVICE):
            return []
        if special.kind is CalendarKind.WORKDAY and special.runs_weekday:
            weekday = special.runs_weekday
    running = [
        c
        for c in enrolled
        if c.term_id == term.id
        and c.weekdays & (1 << (weekday - 1)) != 0
        and (period is None or c.period == period)
    ]
    return sorted(running, key=lambda c: c.starts_at)


async def courses_on(
    session: AsyncSession, student_id: int, day: dt.date, period: int | None = None
) -> list[CourseInfo]:
    """The child's enrolled courses that run on `day` (in `period`, if given)."""
    rows = (
        await session.execute(
            select(Enrolment.school_id, Enrolment.course_id).where(
                Enrolment.student_id == student_id, Enrolment.status == EnrolmentStatus.ENROLLED
            )
        )
    ).all()
    if not rows:
        return []
    found = await catalogue.of(session, rows[0][0])
    enrolled = (found.course(course_id) for _, course_id in rows)
    return sessions_on(found, (c for c in enrolled if c is not None), day, period)


async def pickup_period(
    session: AsyncSession, member: Member | None, student_id: int, day: dt.date, clock: dt.time
) -> int | LeaveRefusal | None:
    """The period a pick-up at `clock` on `day` takes the child out of (one statement).

    `LeaveRefusal.BAD_TIME` when none of the child's sessions that day runs at that time;
    None (refused, audited) when the member is not one of the child's guardians.
    """
    user_id = guard.parent(member)
    rows: Sequence[Row[Any, Any]] = ()
    if user_id is not None:
        columns: tuple[Any, ...] = (Student.school_id, Enrolment.course_id)
        query = select(*columns)
        rows = (
            await session.execute(
                of_guardian(query, user_id)
                .outerjoin(
                    Enrolment,
                    (Enrolment.student_id == Student.id)
                    & (Enrolment.status == EnrolmentStatus.ENROLLED),
                )
                .where(Student.id == student_id)
            )
        ).all()
    if not rows:
        guard.refuse(session, member, REFUSED)
        return None
    school_id = rows[0][0]
    assert member is not None  # a parent, since guard.parent found one
    version = member.catalogue_version if member.school_id == school_id else None
    found = await catalogue.of(session, school_id, version)
    enrolled = (found.course(row[1]) for row in rows if row[1] is not None)
    running = sessions_on(found, (c for c in enrolled if c is not None), day)
    period = pickup_period_of(running, clock)
    return LeaveRefusal.BAD_TIME if period is None else period


def pickup_period_of(running: Sequence[CourseInfo], clock: dt.time) -> int | None:
    """The period a pick-up at `clock` takes the child out of: the session running then, or
    (between two sessions) the next one. From the first session's start (a pick-up as period 2
    starts is the usual way to skip it) until the last one ends; None outside that."""
    if not running or not min(c.starts_at for c in running) <= clock:
        return None
    return next((c.period for c in running if clock < c.ends_at), None)


@dataclass(frozen=True)
class Request:
    """What a guardian asks for: dates, a period (None: the whole day), an early pick-up."""

    first: dt.date
    last: dt.date
    period: int | None = None
    pickup_at: dt.time | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Filed:
    """What became of a request: the leaves made, or why none could be."""

    child: Child
    made: list[Leave]
    refusal: LeaveRefusal | None
    cutoff_minutes: int
    # The sessions each leave made takes the child out of; with a refusal, those of the first
    # day asked for (whose teacher the refusal names).
    sessions: dict[dt.date, list[CourseInfo]] = field(default_factory=dict)


async def file(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    request: Request,
    *,
    now: dt.datetime | None = None,
) -> Filed | None:
    """A guardian files a leave or an early pick-up; None (refused, audited) if the child is not
    theirs. Three statements: the child with their courses, the leaves already on those days,
    the new ones. One date follows that day's rules; a range skips the days it cannot take."""
    user_id = guard.parent(member)
    filed = None
    if user_id is not None and member is not None:
        found = await catalogue.of(session, member.school_id, member.catalogue_version)
        filed = await _file(session, found, student_id, request, user_id, user_id, now)
    if filed is None:
        guard.refuse(session, member, REFUSED)
    elif filed.made:
        await _tell_family(session, filed.child, filed.made, filed.sessions, user_id, taken=False)
        await _tell_staff(
            session,
            filed.child,
            filed.made,
            filed.sessions,
            now,
            taken=False,
            zone=ZoneInfo(found.timezone),
        )
    return filed


async def _tell_staff(
    session: AsyncSession,
    child: Child,
    made: list[Leave],
    sessions: dict[dt.date, list[CourseInfo]],
    now: dt.datetime | None,
    *,
    taken: bool,
    zone: ZoneInfo | None = None,
) -> None:
    """A leave or pick-up for today is pushed at once to the teacher of each session it
    changes and to the child's head teacher (班主任); later days are on their /roster. The
    school's `zone`, when the caller has it, saves a statement."""
    now = now or utcnow()
    if all(abs((x.date - now.date()).days) > 1 for x in made):
        return  # no zone puts any of these days today: no statement spent
    if zone is None:
        zone = (await rules_for(session, child.id)).zone
    today = now.astimezone(zone).date()
    todays = [x for x in made if x.date == today]
    if not todays:
        return
    courses = sessions.get(today, [])
    klass, head_user = (
        await session.execute(
            select(SchoolClass.name, Teacher.user_id)
            .join(Student, Student.class_id == SchoolClass.id)
            .outerjoin(Teacher, Teacher.id == SchoolClass.head_teacher_id)
            .where(Student.id == child.id)
        )
    ).one()
    teacher_ids = {c.teacher_id for c in courses if c.teacher_id is not None}
    teacher_users = dict(
        (
            await session.execute(
                select(Teacher.id, Teacher.user_id).where(Teacher.id.in_(teacher_ids))
            )
        ).all()
    )
    wanted = {u for u in (*teacher_users.values(), head_user) if u is not None}
    chats = dict(
        (
            await session.execute(
                select(User.id, User.chat_id).where(User.id.in_(wanted), User.chat_id.is_not(None))
            )
        ).all()
    )
    leave = todays[0]
    step = "x" if taken else "f"
    messages = []
    for course in courses:
        readers = (
            {teacher_users.get(course.teacher_id), head_user} if course.teacher_id else {head_user}
        )
        params: dict[str, Any] = {
            "child": child.name,
            "klass": klass,
            "course": course.name,
            "start": {"$time": course.starts_at.isoformat("minutes")},
            "end": {"$time": course.ends_at.isoformat("minutes")},
            "pickup": {"$time": leave.pickup_at.isoformat("minutes")} if leave.pickup_at else "",
            "reason": leave.reason or "",
        }
        if taken:
            template = STAFF_TAKEN_BACK
        elif leave.pickup_at is not None:
            template = STAFF_PICKUP
        else:
            template = STAFF_LEAVE_REASON if leave.reason else STAFF_LEAVE
        for user_id in readers:
            chat_id = chats.get(user_id) if user_id is not None else None
            if chat_id is None:
                continue
            messages.append(
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="leave-staff",
                    priority=Priority.INTERACTIVE,
                    template=template,
                    params=params,
                    dedupe_key=f"leave-staff:{leave.id}:{step}:{course.id}:{user_id}",
                    digest=False,
                )
            )
    await outbox.enqueue_many(session, child.school_id, messages, now=now)


async def _tell_family(
    session: AsyncSession,
    child: Child,
    made: list[Leave],
    sessions: dict[dt.date, list[CourseInfo]],
    user_id: int | None,
    *,
    taken: bool,
) -> None:
    """Tell the child's other guardians what one of them filed or took back (docs/UX.md, 5)."""
    first, last = made[0], made[-1]
    courses = sessions.get(first.date, [])
    params: dict[str, Any] = {
        "child": child.name,
        "day": {"$day": first.date.isoformat()},
        "last": {"$day": last.date.isoformat()},
        "course": "、".join(c.name for c in courses),
        "start": {"$time": min(c.starts_at for c in courses).isoformat("minutes")}
        if courses
        else "",
        "end": {"$time": max(c.ends_at for c in courses).isoformat("minutes")} if courses else "",
        "pickup": {"$time": first.pickup_at.isoformat("minutes")} if first.pickup_at else "",
    }
    if taken:
        template = FAMILY_TAKEN_BACK
    elif len(made) > 1:
        template = FAMILY_DAYS
    elif first.pickup_at is not None:
        template = FAMILY_PICKUP
    else:
        template = FAMILY_LEAVE
    await family.tell_other_guardians(
        session,
        child.school_id,
        child.id,
        user_id,
        kind="leave",
        template=template,
        params=params,
        dedupe=f"leave:{'x' if taken else 'f'}:{first.id}",
    )


async def _file(
    session: AsyncSession,
    found: Catalogue,
    student_id: int,
    request: Request,
    guardian: int | None,
    user_id: int | None,
    now: dt.datetime | None,
    *,
    single: bool | None = None,
) -> Filed | None:
    now = now or utcnow()
    query = select(*child_columns(), Enrolment.course_id)
    rows = (
        await session.execute(
            (of_guardian(query, guardian) if guardian is not None else with_child(query))
            .outerjoin(
                Enrolment,
                (Enrolment.student_id == Student.id)
                & (Enrolment.status == EnrolmentStatus.ENROLLED),
            )
            .where(Student.id == student_id, Student.school_id == found.school_id)
        )
    ).all()
    if not rows:
        return None
    child = Child(*rows[0][:6])
    enrolled = [c for c in (found.course(r[6]) for r in rows if r[6] is not None) if c]
    first, last = sorted((request.first, request.last))
    existing = list(
        (
            await session.scalars(
                select(Leave).where(
                    Leave.student_id == student_id,
                    Leave.date.between(first, last),
                    Leave.cancelled_at.is_(None),
                )
            )
        ).all()
    )
    rules = Rules(ZoneInfo(found.timezone), dt.timedelta(minutes=child.leave_cutoff_minutes))
    single = first == last if single is None else single
    made, refusal = _plan(found, rules, enrolled, existing, request, now, single)
    leaves = [
        Leave(
            school_id=child.school_id,
            student_id=child.id,
            date=day,
            period=request.period if single else None,
            pickup_at=request.pickup_at if single else None,
            reason=(request.reason or "").strip()[:200] or None,
            created_by_user_id=user_id,
            created_at=now,
        )
        for day in made
    ]
    if leaves:
        session.add_all(leaves)
        await session.flush()
    period = request.period if single else None
    sessions = {day: sessions_on(found, enrolled, day, period) for day in made or [first]}
    return Filed(child, leaves, refusal, child.leave_cutoff_minutes, sessions)


def _plan(
    found: Catalogue,
    rules: Rules,
    enrolled: list[CourseInfo],
    existing: list[Leave],
    request: Request,
    now: dt.datetime,
    single: bool,
) -> tuple[list[dt.date], LeaveRefusal | None]:
    """The days to record, or why not. One date: that day's answer. A range (whole days only):
    every day with a session; today may be too late while the following days are fine."""
    first, last = sorted((request.first, request.last))
    if single:
        refusal = _day(found, rules, enrolled, existing, first, request, now)
        return ([], refusal) if refusal is not None else ([first], None)
    if (last - first).days >= MAX_DAYS:
        return [], LeaveRefusal.TOO_LONG
    whole = Request(first, last, reason=request.reason)
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    made = [d for d in days if _day(found, rules, enrolled, existing, d, whole, now) is None]
    return made, (None if made else LeaveRefusal.NO_SESSION)


def _day(
    found: Catalogue,
    rules: Rules,
    enrolled: list[CourseInfo],
    existing: list[Leave],
    day: dt.date,
    request: Request,
    now: dt.datetime,
) -> LeaveRefusal | None:
    """Why a leave (or pick-up) on `day` cannot be recorded, if it cannot."""
    if day < now.astimezone(rules.zone).date():
        return LeaveRefusal.PAST
    pickup = request.pickup_at
    if pickup is not None:
        # An early pick-up is for the day as it goes: it can be filed until the pick-up time
        # itself (the absences' cut-off does not apply), within the day's sessions.
        running = sessions_on(found, enrolled, day)
        if not running:
            return LeaveRefusal.NO_SESSION
        if pickup_period_of(running, pickup) is None:
            return LeaveRefusal.BAD_TIME
        if now >= dt.datetime.combine(day, pickup, rules.zone):
            return LeaveRefusal.TOO_LATE
    else:
        courses = sessions_on(found, enrolled, day, request.period)
        if not courses:
            return LeaveRefusal.NO_SESSION
        if now >= deadline(rules, day, courses):
            return LeaveRefusal.TOO_LATE
    for leave in existing:
        if leave.date == day and (
            leave.period is None or request.period is None or leave.period == request.period
        ):
            return LeaveRefusal.ALREADY
    return None


def deadline(rules: Rules, day: dt.date, courses: Sequence[CourseInfo]) -> dt.datetime:
    """Until when an absence from these sessions of `day` can be filed or taken back."""
    starts = min(c.starts_at for c in courses)
    return dt.datetime.combine(day, starts, rules.zone) - rules.cutoff


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
    """Record a leave (or an early pick-up) for one date, if the rules allow it (on the
    school's own authority: no guardian check)."""
    request = Request(day, day, period, pickup_at, reason)
    made, refusal = await _announce(session, student_id, request, user_id, now, single=True)
    return made[0] if made else refusal or LeaveRefusal.NO_SESSION


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
    request = Request(first, last, reason=reason)
    return await _announce(session, student_id, request, user_id, now, single=False)


async def _announce(
    session: AsyncSession,
    student_id: int,
    request: Request,
    user_id: int | None,
    now: dt.datetime | None,
    *,
    single: bool,
) -> tuple[list[Leave], LeaveRefusal | None]:
    school_id = await session.scalar(select(Student.school_id).where(Student.id == student_id))
    if school_id is None:
        return [], LeaveRefusal.NO_SESSION
    found = await catalogue.of(session, school_id)
    filed = await _file(session, found, student_id, request, None, user_id, now, single=single)
    if filed is None:
        return [], LeaveRefusal.NO_SESSION
    return filed.made, filed.refusal


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
    if leave.pickup_at is not None:  # a pick-up is taken back until its time, like it is filed
        if now >= dt.datetime.combine(leave.date, leave.pickup_at, rules.zone):
            return LeaveRefusal.TOO_LATE
    else:
        courses = await courses_on(session, leave.student_id, leave.date, leave.period)
        if courses and now >= deadline(rules, leave.date, courses):
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


HORIZON = 28  # days ahead the leave screen offers, session days only


@dataclass(frozen=True)
class Day:
    """A day on which the child has sessions, by the school calendar."""

    date: dt.date
    sessions: list[CourseInfo]  # by start time


@dataclass(frozen=True)
class Overview:
    """The screens of /leave: the member's children, and for the one chosen (or the only one)
    the leaves already recorded from today, the days with sessions ahead and the rules."""

    children: list[Child]
    child: Child | None
    upcoming: list[Leave]
    days: list[Day] = field(default_factory=list)
    weekdays: list[int] = field(default_factory=list)  # ISO weekdays the child's courses meet
    rules: Rules | None = None
    found: Catalogue | None = None
    enrolled: list[CourseInfo] = field(default_factory=list)

    def day(self, date: dt.date) -> Day | None:
        return next((d for d in self.days if d.date == date), None)

    def sessions_of(self, leave: Leave) -> list[CourseInfo]:
        """The sessions a recorded leave takes the child out of."""
        if self.found is None:
            return []
        return sessions_on(self.found, self.enrolled, leave.date, leave.period)


def session_days(
    found: Catalogue, enrolled: list[CourseInfo], today: dt.date, horizon: int = HORIZON
) -> list[Day]:
    days = (today + dt.timedelta(days=n) for n in range(horizon))
    return [Day(d, s) for d in days if (s := sessions_on(found, enrolled, d))]


async def overview(
    session: AsyncSession,
    member: Member | None,
    today: dt.date,
    student_id: int | None = None,
    *,
    pressed: str | None = None,
) -> Overview | None:
    """None (refused, audited) if `student_id` is given and not one of the member's children.
    Three statements once a child is chosen (the children, their leaves, their courses)."""
    children = await guard.children(session, member)
    if student_id is None and len(children) == 1:
        student_id = children[0].id
    child = next((c for c in children if c.id == student_id), None)
    if student_id is not None and child is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    if child is None or member is None:
        return Overview(children, None, [])
    recorded = await upcoming(session, child.id, today)
    course_ids = (
        await session.scalars(
            select(Enrolment.course_id).where(
                Enrolment.student_id == child.id, Enrolment.status == EnrolmentStatus.ENROLLED
            )
        )
    ).all()
    version = member.catalogue_version if member.school_id == child.school_id else None
    found = await catalogue.of(session, child.school_id, version)
    enrolled = [c for c in (found.course(i) for i in course_ids) if c is not None]
    weekdays = sorted({d for c in enrolled for d in range(1, 8) if c.weekdays & (1 << (d - 1))})
    rules = Rules(ZoneInfo(found.timezone), dt.timedelta(minutes=child.leave_cutoff_minutes))
    return Overview(
        children,
        child,
        recorded,
        session_days(found, enrolled, today),
        weekdays,
        rules,
        found,
        enrolled,
    )


@dataclass(frozen=True)
class TakenBack:
    """What became of a take-back: True (done), False (already), or a refusal; with what the
    answer names."""

    result: bool | LeaveRefusal
    cutoff_minutes: int
    child: Child
    leave: Leave
    sessions: list[CourseInfo]


async def take_back(
    session: AsyncSession,
    member: Member | None,
    leave_id: int,
    *,
    pressed: str | None = None,
    now: dt.datetime | None = None,
) -> TakenBack | None:
    """A guardian takes a leave back (`cancel`); with the school's cut-off in minutes and the
    sessions concerned, for the answer. None (refused, audited) if the leave is not of one of
    their children. The child's other guardians are told."""
    user_id = guard.parent(member)
    row = None
    if user_id is not None:
        row = (
            await session.execute(
                of_guardian(select(*child_columns()), user_id).join(
                    Leave, (Leave.student_id == Student.id) & (Leave.id == leave_id)
                )
            )
        ).first()
    if row is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    child = Child(*row)
    result = await cancel(session, leave_id, now)
    leave = await session.get(Leave, leave_id)
    assert leave is not None  # the guard found it
    sessions = await courses_on(session, child.id, leave.date, leave.period)
    if result is True:
        await _tell_family(session, child, [leave], {leave.date: sessions}, user_id, taken=True)
        await _tell_staff(session, child, [leave], {leave.date: sessions}, now, taken=True)
    return TakenBack(result, child.leave_cutoff_minutes, child, leave, sessions)


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
    session: AsyncSession, member: Member, day: dt.date
) -> list[tuple[CourseInfo, list[tuple[Student, Leave | None]]]]:
    """A teacher's courses on `day`, each with its enrolled children and any leave or early
    pick-up (the roster and dismissal list). Three statements, however many courses."""
    teacher_ids = set(
        (await session.scalars(select(Teacher.id).where(Teacher.user_id == member.user_id))).all()
    )
    if not teacher_ids:
        return []
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    mine = (
        c for c in found.courses.values() if c.teacher_id in teacher_ids and c.cancelled_at is None
    )
    courses = sessions_on(found, mine, day)
    if not courses:
        return []
    enrolled: dict[int, list[Student]] = {c.id: [] for c in courses}
    for student, course_id in await session.execute(
        select(Student, Enrolment.course_id)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .where(
            Enrolment.course_id.in_(list(enrolled)),
            Enrolment.status == EnrolmentStatus.ENROLLED,
        )
        .order_by(Student.class_id, Student.name)
    ):
        enrolled[course_id].append(student)
    children = {s.id for group in enrolled.values() for s in group}
    away = list(
        (
            await session.scalars(
                select(Leave).where(
                    Leave.student_id.in_(children), Leave.date == day, Leave.cancelled_at.is_(None)
                )
            )
        ).all()
    )

    def leave_of(student: Student, course: CourseInfo) -> Leave | None:
        """The child's leave or pick-up for this session, or a pick-up before it starts."""
        return next(
            (
                x
                for x in away
                if x.student_id == student.id
                and (
                    x.period is None
                    or x.period == course.period
                    or (x.pickup_at is not None and x.pickup_at <= course.starts_at)
                )
            ),
            None,
        )

    return [
        (course, [(s, leave_of(s, course)) for s in enrolled[course.id]])
        for course in courses
        if enrolled[course.id]
    ]
