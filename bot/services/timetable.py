"""A child's week: the timetable, the history, leaves, and an iCalendar file for the phone.

The calendar follows the school's calendar: no session on holidays and no-service days
(``EXDATE``), and a swapped working day (调休) runs the timetable of the weekday it replaces
(``RDATE``).
"""

from __future__ import annotations

import datetime as dt
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
    ics: bytes | None  # the enrolled courses as a calendar file; None if there are none


HISTORY = 10


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
    result = []
    for child in children.values():
        plan = sorted(plans[child.id], key=lambda h: (h.course.period, h.course.starts_at))
        enrolled = [h for h in plan if h.status is EnrolmentStatus.ENROLLED]
        ics = calendar_file(found, child.name, enrolled, today)
        result.append(Week(child, plan, changes[child.id][-HISTORY:], away[child.id], ics))
    return result


def calendar_file(
    found: Catalogue, name: str, enrolled: list[Held], today: dt.date
) -> bytes | None:
    """The child's enrolled courses as a .ics file; None when there is nothing to put in it."""
    term = found.current_term(today)
    if term is None or not enrolled:
        return None
    zone = ZoneInfo(found.timezone)
    calendar = Calendar()
    calendar.add("prodid", "-//Kehou//after-school timetable//ZH")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"{name} · {found.name}")
    calendar.add("x-wr-timezone", found.timezone)
    for held in enrolled:
        if held.course.term_id == term.id:
            calendar.add_component(_event(held.course, term, zone, held.enrolment_id, found.code))
    return calendar.to_ical()


def _event(
    course: CourseInfo, term: TermInfo, zone: ZoneInfo, enrolment_id: int, school_code: str
) -> Event:
    days = term.days
    weekdays = enrolment.weekdays_of(course.weekdays)
    first = term.starts_on
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
    ]
    extra = [
        dt.datetime.combine(d.date, course.starts_at, zone)
        for d in days
        if d.kind is CalendarKind.WORKDAY and d.runs_weekday in weekdays
    ]
    if skipped:
        event.add("exdate", skipped)
    if extra:
        event.add("rdate", extra)
    return event
