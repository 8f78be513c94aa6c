"""Each school's programme, cached in process: courses, times, venues, teachers, providers, fees.

Parents open course cards, lists and schedules far more often than a school changes its
programme, and every one of those screens needs the same few hundred rows. So each process
keeps one `Catalogue` per school, and reads it again only when the school's
``catalogue_version`` moved on.

**How a change reaches every process.** Any write to a table the catalogue is built from
(courses, terms, teachers, providers, fee standards) through a session of `storage.db` (an
import, a cancelled course, a test's own ``UPDATE``) moves ``schools.catalogue_version`` on in
the same transaction (`storage.versions`). The loader reads the version with the member at no
extra cost (`bot.services.members.find_member`), so the next update in any process sees the
change. Seat counts and each child's places are never cached: they are
read live, in the statement that needs them.

    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    course = found.course(course_id)       # a CourseInfo, or None
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Allocation,
    CalendarDay,
    CalendarKind,
    Category,
    Course,
    FeeStandard,
    Level,
    Provider,
    ProviderKind,
    School,
    Teacher,
    Term,
    WhitelistStatus,
)
from storage.versions import CACHES


@dataclass(frozen=True, slots=True)
class CourseInfo:
    """A course as the published schedule shows it, with its teacher, provider and fee."""

    id: int
    school_id: int
    term_id: int
    code: str
    name: str
    description: str | None
    category: Category
    period: int
    level: Level | None
    grade_min: int
    grade_max: int
    weekdays: int  # bit 0 = Monday … bit 6 = Sunday
    starts_at: dt.time
    ends_at: dt.time
    venue: str
    teacher_id: int | None
    provider_id: int | None
    capacity: int | None  # as published; seat checks read the live row
    allocation: Allocation
    min_size: int | None
    cancelled_at: dt.datetime | None
    teacher: str | None  # the teacher's name
    provider: str | None  # an outside provider's name; None: the school itself
    provider_ok: bool  # the school itself, or a whitelisted outside provider
    fee_fen: int | None  # None or 0: free
    fee_unit: str | None
    fee_disclosed: bool
    fee_id: int | None = None  # the course's fee standard (its version now in force)


@dataclass(frozen=True, slots=True)
class DayInfo:
    """An exception to the weekly timetable: a holiday, a day without service, or a swapped
    working day (调休) that runs the timetable of `runs_weekday`."""

    date: dt.date
    kind: CalendarKind
    runs_weekday: int | None


@dataclass(frozen=True, slots=True)
class TermInfo:
    id: int
    school_id: int
    name: str
    starts_on: dt.date
    ends_on: dt.date
    enrolment_opens_at: dt.datetime | None
    enrolment_closes_at: dt.datetime | None
    days: tuple[DayInfo, ...] = ()

    def day(self, date: dt.date) -> DayInfo | None:
        return next((d for d in self.days if d.date == date), None)

    def enrolment_open(self, now: dt.datetime) -> bool:
        opens, closes = self.enrolment_opens_at, self.enrolment_closes_at
        return not ((opens is not None and now < opens) or (closes is not None and now >= closes))


@dataclass(frozen=True)
class Catalogue:
    """One school's terms and courses (cancelled ones included), as of `version`."""

    school_id: int
    version: int
    code: str  # the school's
    name: str
    timezone: str
    terms: tuple[TermInfo, ...]  # by start date
    courses: dict[int, CourseInfo]
    _by_term: dict[int, tuple[CourseInfo, ...]] = field(default_factory=dict)

    def course(self, course_id: int) -> CourseInfo | None:
        return self.courses.get(course_id)

    def term(self, term_id: int) -> TermInfo | None:
        return next((t for t in self.terms if t.id == term_id), None)

    def current_term(self, today: dt.date) -> TermInfo | None:
        """The term running today, else the next one, else the last one."""
        for term in self.terms:
            if term.ends_on >= today:
                return term
        return self.terms[-1] if self.terms else None

    def of_term(self, term_id: int) -> tuple[CourseInfo, ...]:
        """The term's courses by period and code."""
        return self._by_term.get(term_id, ())


async def of(session: AsyncSession, school_id: int, version: int | None = None) -> Catalogue:
    """The school's catalogue: from the cache when it is at `version` (read if not given)."""
    if version is None:
        version = await session.scalar(
            select(School.catalogue_version).where(School.id == school_id)
        )
        version = version or 0
    cache: dict[int, Any] | None = session.info.get(CACHES)
    found = cache.get(school_id) if cache is not None else None
    if found is not None and found.version == version:
        return found
    found = await _load(session, school_id, version)
    if cache is not None:
        # Keep the newest: a slow loader must not replace what a later change loaded.
        held = cache.get(school_id)
        if held is None or held.version <= version:
            cache[school_id] = found
    return found


async def _load(session: AsyncSession, school_id: int, version: int) -> Catalogue:
    school = (
        await session.execute(
            select(School.code, School.name, School.timezone).where(School.id == school_id)
        )
    ).one()
    days: dict[int, list[DayInfo]] = {}
    for term_id, date, kind, runs in await session.execute(
        select(CalendarDay.term_id, CalendarDay.date, CalendarDay.kind, CalendarDay.runs_weekday)
        .where(CalendarDay.school_id == school_id)
        .order_by(CalendarDay.date)
    ):
        days.setdefault(term_id, []).append(DayInfo(date, kind, runs))
    terms = tuple(
        TermInfo(
            id=t.id,
            school_id=t.school_id,
            name=t.name,
            starts_on=t.starts_on,
            ends_on=t.ends_on,
            enrolment_opens_at=t.enrolment_opens_at,
            enrolment_closes_at=t.enrolment_closes_at,
            days=tuple(days.get(t.id, ())),
        )
        for t in await session.scalars(
            select(Term).where(Term.school_id == school_id).order_by(Term.starts_on, Term.id)
        )
    )
    rows = await session.execute(
        select(Course, Teacher.name, Provider, FeeStandard)
        .outerjoin(Teacher, Teacher.id == Course.teacher_id)
        .outerjoin(Provider, Provider.id == Course.provider_id)
        .outerjoin(FeeStandard, FeeStandard.id == Course.fee_standard_id)
        .where(Course.school_id == school_id)
        .order_by(Course.term_id, Course.period, Course.code)
    )
    courses: dict[int, CourseInfo] = {}
    by_term: dict[int, list[CourseInfo]] = {}
    for course, teacher, provider, fee in rows.all():
        outside = provider is not None and provider.kind is ProviderKind.OUTSIDE
        info = CourseInfo(
            id=course.id,
            school_id=course.school_id,
            term_id=course.term_id,
            code=course.code,
            name=course.name,
            description=course.description,
            category=course.category,
            period=course.period,
            level=course.level,
            grade_min=course.grade_min,
            grade_max=course.grade_max,
            weekdays=course.weekdays,
            starts_at=course.starts_at,
            ends_at=course.ends_at,
            venue=course.venue,
            teacher_id=course.teacher_id,
            provider_id=course.provider_id,
            capacity=course.capacity,
            allocation=course.allocation,
            min_size=course.min_size,
            cancelled_at=course.cancelled_at,
            teacher=teacher,
            provider=provider.name if outside else None,
            provider_ok=not outside or provider.whitelist_status is WhitelistStatus.WHITELISTED,
            fee_fen=fee.amount_fen if fee is not None else None,
            fee_unit=fee.unit.value if fee is not None else None,
            fee_disclosed=fee is None or fee.amount_fen == 0 or fee.disclosed_at is not None,
            fee_id=fee.id if fee is not None else None,
        )
        courses[info.id] = info
        by_term.setdefault(info.term_id, []).append(info)
    by_term_tuples = {k: tuple(v) for k, v in by_term.items()}
    return Catalogue(school_id, version, *school, terms, courses, by_term_tuples)
