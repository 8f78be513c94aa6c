"""A child's week: the timetable, and an iCalendar file parents can add to their phone.

The calendar follows the school's calendar: no session on holidays and no-service days
(``EXDATE``), and a swapped working day (调休) runs the timetable of the weekday it replaces
(``RDATE``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import enrolment
from storage.models import CalendarDay, CalendarKind, EnrolmentStatus, School, Student, Term

ICAL_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


async def calendar_file(session: AsyncSession, student_id: int, today: dt.date) -> bytes | None:
    """The child's enrolled courses as a .ics file; None when there is nothing to put in it."""
    student = await session.get(Student, student_id)
    if student is None:
        return None
    school = await session.get(School, student.school_id)
    term = await enrolment.current_term(session, student.school_id, today)
    assert school is not None
    if term is None:
        return None
    zone = ZoneInfo(school.timezone)
    days = list(
        (await session.scalars(select(CalendarDay).where(CalendarDay.term_id == term.id))).all()
    )
    calendar = Calendar()
    calendar.add("prodid", "-//Kehou//after-school timetable//ZH")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"{student.name} · {school.name}")
    calendar.add("x-wr-timezone", school.timezone)
    count = 0
    for entry, facts in await enrolment.active_enrolments(session, student_id):
        if entry.status is not EnrolmentStatus.ENROLLED:
            continue
        calendar.add_component(_event(facts, term, days, zone, entry.id, school.code))
        count += 1
    return calendar.to_ical() if count else None


def _event(
    facts: enrolment.CourseFacts,
    term: Term,
    days: list[CalendarDay],
    zone: ZoneInfo,
    enrolment_id: int,
    school_code: str,
) -> Event:
    course = facts.course
    weekdays = enrolment.weekdays_of(course.weekdays)
    first = term.starts_on
    while first.isoweekday() not in weekdays:
        first += dt.timedelta(days=1)
    event = Event()
    event.add("uid", f"enrolment-{enrolment_id}@{school_code}.kehou")
    event.add("summary", course.name)
    event.add("location", course.venue)
    if facts.teacher:
        event.add("description", facts.teacher)
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
