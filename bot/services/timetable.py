"""A child's week: the timetable, the history, leaves, the "1+N" advice, and an iCalendar file.

The "1+N" advice (`advice`) is computed here once, for the sign-up result and for /schedule
alike, so both say the same about the same week. The calendar follows the school's calendar:
no session on holidays and no-service days (``EXDATE``), and a swapped working day (调休) runs
the timetable of the weekday it replaces (``RDATE``); each course starts on the day the child
was enrolled, and the file carries the school's ``VTIMEZONE``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import catalogue, enrolment, guard
from bot.services.catalogue import Catalogue, CourseInfo, TermInfo
from bot.services.guard import Child, child_columns, of_guardian
from bot.services.members import Member
from storage.models import (
    CalendarKind,
    Category,
    Enrolment,
    EnrolmentActor,
    EnrolmentEvent,
    EnrolmentStatus,
    Leave,
    Student,
)

ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class Held:
    """One of the child's places this term: enrolled, waitlisted, or entered in the draw."""

    enrolment_id: int
    status: EnrolmentStatus
    waitlist_position: int | None
    draw_rank: int | None
    course: CourseInfo


@dataclass(frozen=True)
class Change:
    """One line of the enrolment history."""

    at: dt.datetime
    course: str
    status: EnrolmentStatus
    actor: EnrolmentActor
    note: str | None


@dataclass(frozen=True)
class Week:
    """What /schedule shows for one child."""

    child: Child
    plan: list[Held]  # by period and time
    history: list[Change]  # oldest first, the last `HISTORY`
    away: list[Leave]  # leaves and early pick-ups from today
    advice: Advice | None  # the "1+N" advice for this term's enrolled courses
    calendar: bool  # a calendar file can be made (enrolled courses this term): 📅 on request


HISTORY = 10


@dataclass(frozen=True)
class Advice:
    """The "1+N" guidance (POLICY.md, "Service structure"), as advice only: on every day the
    child attends, an interest activity (anything but homework help, in period 2), with science
    and sports among the week's activities."""

    days_without_interest: tuple[int, ...]  # ISO weekdays with homework help only
    without_science: bool
    without_sports: bool

    @property
    def meets(self) -> bool:
        return not (self.days_without_interest or self.without_science or self.without_sports)


def advice(
    places: Iterable[tuple[EnrolmentStatus, CourseInfo]], term_id: int | None
) -> Advice | None:
    """The advice for a child's week: their *enrolled* courses of `term_id` (a waitlist place
    or a draw entry is not attended). None when there is no such course. The one function the
    sign-up result and /schedule both use."""
    courses = [
        course
        for status, course in places
        if status is EnrolmentStatus.ENROLLED and course.term_id == term_id
    ]
    if not courses:
        return None
    attended: set[int] = set()
    interest: set[int] = set()
    for course in courses:
        days = set(enrolment.weekdays_of(course.weekdays))
        attended |= days
        if course.category is not Category.HOMEWORK:
            interest |= days
    categories = {c.category for c in courses}
    return Advice(
        days_without_interest=tuple(sorted(attended - interest)),
        without_science=Category.SCIENCE not in categories,
        without_sports=Category.SPORTS not in categories,
    )


async def weeks(session: AsyncSession, member: Member, today: dt.date) -> list[Week]:
    """Each of the member's children's week, history and calendar: three statements for any
    number of children (the children with their places, the history, the leaves)."""
    user_id = guard.parent(member)
    if user_id is None:
        return []
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    rows = await session.execute(
        of_guardian(
            select(
                *child_columns(),
                Enrolment.id,
                Enrolment.status,
                Enrolment.waitlist_position,
                Enrolment.draw_rank,
                Enrolment.course_id,
            ),
            user_id,
        )
        .outerjoin(
            Enrolment,
            (Enrolment.student_id == Student.id) & Enrolment.status.in_(enrolment.LISTED),
        )
        .order_by(Student.class_id, Student.name, Student.id)
    )
    children: dict[int, Child] = {}
    plans: dict[int, list[Held]] = {}
    for row in rows.all():
        child = children.setdefault(row[0], Child(*row[:6]))
        held = plans.setdefault(child.id, [])
        enrolment_id, status, position, rank, course_id = row[6:]
        course = found.course(course_id) if course_id is not None else None
        if course is not None:
            held.append(Held(enrolment_id, EnrolmentStatus(status), position, rank, course))
    if not children:
        return []
    ids = list(children)
    changes: dict[int, list[Change]] = {i: [] for i in ids}
    for at, status, actor, note, student_id, course_id in await session.execute(
        select(
            EnrolmentEvent.created_at,
            EnrolmentEvent.status,
            EnrolmentEvent.actor,
            EnrolmentEvent.note,
            Enrolment.student_id,
            Enrolment.course_id,
        )
        .join(Enrolment, Enrolment.id == EnrolmentEvent.enrolment_id)
        .where(Enrolment.student_id.in_(ids))
        .order_by(EnrolmentEvent.created_at, EnrolmentEvent.id)
    ):
        course = found.course(course_id)
        name = course.name if course is not None else ""
        changes[student_id].append(Change(at, name, status, actor, note))
    away: dict[int, list[Leave]] = {i: [] for i in ids}
    for leave in await session.scalars(
        select(Leave)
        .where(Leave.student_id.in_(ids), Leave.date >= today, Leave.cancelled_at.is_(None))
        .order_by(Leave.date, Leave.period)
    ):
        away[leave.student_id].append(leave)
    term = found.current_term(today)
    term_id = term.id if term is not None else None
    result = []
    for child in children.values():
        plan = sorted(plans[child.id], key=lambda h: (h.course.period, h.course.starts_at))
        found_advice = advice(((h.status, h.course) for h in plan), term_id)
        result.append(
            Week(
                child,
                plan,
                changes[child.id][-HISTORY:],
                away[child.id],
                found_advice,
                calendar=found_advice is not None,
            )
        )
    return result


CALENDAR_REFUSED = "timetable.refused"  # the audit action of a refused calendar press


async def calendar(
    session: AsyncSession, member: Member | None, student_id: int, today: dt.date
) -> tuple[Child, bytes | None] | None:
    """The child's calendar file (None inside if nothing is enrolled this term), for one of the
    child's guardians; None (refused, audited) otherwise. Two statements: the guard and the
    child's enrolled places."""
    child = await guard.child(session, member, student_id, action=CALENDAR_REFUSED)
    if child is None or member is None:
        return None
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    rows = await session.execute(
        select(Enrolment.id, Enrolment.course_id, Enrolment.updated_at).where(
            Enrolment.student_id == student_id, Enrolment.status == EnrolmentStatus.ENROLLED
        )
    )
    enrolled = []
    for enrolment_id, course_id, since in rows.all():
        course = found.course(course_id)
        if course is not None:
            enrolled.append((enrolment_id, course, since))
    return child, calendar_file(found, child.name, enrolled, today)


def calendar_file(
    found: Catalogue,
    name: str,
    enrolled: Iterable[tuple[int, CourseInfo, dt.datetime]],
    today: dt.date,
) -> bytes | None:
    """The child's enrolled courses (enrolment id, course, when enrolled) as a .ics file, each
    from the first session on or after the day the child was enrolled, with the school's
    VTIMEZONE; None when there is nothing of the current term to put in it."""
    term = found.current_term(today)
    if term is None:
        return None
    zone = ZoneInfo(found.timezone)
    events = [
        _event(course, term, zone, enrolment_id, found.code, _local_date(since, zone))
        for enrolment_id, course, since in enrolled
        if course.term_id == term.id
    ]
    if not events:
        return None
    calendar = Calendar()
    calendar.add("prodid", "-//Kehou//after-school timetable//ZH")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"{name} · {found.name}")
    calendar.add("x-wr-timezone", found.timezone)
    for event in events:
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return calendar.to_ical()


def _local_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    if moment.tzinfo is None:  # stored as UTC without a zone (SQLite)
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).date()


def _event(
    course: CourseInfo,
    term: TermInfo,
    zone: ZoneInfo,
    enrolment_id: int,
    school_code: str,
    enrolled_on: dt.date,
) -> Event:
    days = term.days
    weekdays = enrolment.weekdays_of(course.weekdays)
    first = max(term.starts_on, enrolled_on)
    while first.isoweekday() not in weekdays:
        first += dt.timedelta(days=1)
    event = Event()
    event.add("uid", f"enrolment-{enrolment_id}@{school_code}.kehou")
    event.add("summary", course.name)
    event.add("location", course.venue)
    if course.teacher:
        event.add("description", course.teacher)
    event.add("dtstart", dt.datetime.combine(first, course.starts_at, zone))
    event.add("dtend", dt.datetime.combine(first, course.ends_at, zone))
    last = dt.datetime.combine(term.ends_on, dt.time(23, 59), zone).astimezone(dt.UTC)
    event.add(
        "rrule", {"freq": "weekly", "byday": [ICAL_DAYS[d - 1] for d in weekdays], "until": last}
    )
    skipped = [
        dt.datetime.combine(d.date, course.starts_at, zone)
        for d in days
        if d.kind in (CalendarKind.HOLIDAY, CalendarKind.NO_SERVICE)
        and d.date.isoweekday() in weekdays
        and d.date >= first
    ]
    extra = [
        dt.datetime.combine(d.date, course.starts_at, zone)
        for d in days
        if d.kind is CalendarKind.WORKDAY and d.runs_weekday in weekdays and d.date >= first
    ]
    if skipped:
        event.add("exdate", skipped)
    if extra:
        event.add("rdate", extra)
    return event
