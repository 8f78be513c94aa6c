"""Admin reports of a term: enrolment, attendance, ratings, fees, teacher hours and the "1+N"
check, each as spreadsheet sheets (headers in the reader's language) and a short chat summary.

    built = await reports.term_report(session, school, term, t)   # every report, ~26 statements
    one = await reports.BUILDERS["attendance"](session, school, term, t)

Every report reads the term with a bounded number of grouped queries, whatever the size of
the school (no query per course, class or child). Ratings follow `ratings`: a course whose
results may not be shown gives its ballot count and turnout only, never a score, and a
teacher's or provider's figures pool shown courses only. See docs/REPORTS.md.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, Translator
from bot.services import catalogue, fee_reports, ratings, term_attendance
from bot.services.catalogue import Catalogue, CourseInfo, TermInfo
from bot.services.hours import Month, minutes
from bot.services.leaves import sessions_on
from bot.services.sheets import Cell, Sheet
from bot.services.term_attendance import Tally
from storage.models import (
    CalendarKind,
    Category,
    Course,
    Enrolment,
    EnrolmentStatus,
    School,
    SchoolClass,
    Session,
    SessionStatus,
    Student,
    Teacher,
    Term,
)

INTEREST_SHARE = 50  # % of the day's after-school time in interest activities ("1+N")
LIST_MAX = 8  # lines of a list in a chat summary
HUNDRED = Decimal(100)

TITLES = {
    "enrolment": N_("Enrolment"),
    "attendance": N_("Attendance"),
    "ratings": N_("Ratings"),
    "compliance": N_("1+N check"),
    "fees": N_("Fees"),
    "hours": N_("Teacher hours"),
}
HIDDEN = N_("Too few ballots to show")
NOT_CLOSED = N_("Shown once the rating has closed")


@dataclass(frozen=True)
class Report:
    key: str  # one of TITLES
    title: str  # translated
    summary: str  # HTML, for the chat
    sheets: list[Sheet]
    # Renders the report's chart as PNG bytes (CPU work: run it in a thread); None: no chart.
    chart: Callable[[], bytes] | None = None


Builder = Callable[[AsyncSession, School, Term, Translator], Awaitable[Report]]


def percent(part: int, whole: int) -> Decimal | None:
    """part/whole as a percentage with one decimal, or None when whole is 0."""
    if not whole:
        return None
    return (Decimal(part) * HUNDRED / whole).quantize(Decimal("0.1"))


def two(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def _pct_text(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


def _term_courses(found: Catalogue, term: Term) -> list[CourseInfo]:
    return sorted(found.of_term(term.id), key=lambda c: (c.period, c.code))


# --- enrolment --------------------------------------------------------------------------------


async def enrolment(session: AsyncSession, school: School, term: Term, t: Translator) -> Report:
    """Per course: enrolled, waitlisted, withdrawn, capacity and how full it is."""
    found = await catalogue.of(session, school.id)
    courses = _term_courses(found, term)
    counts: dict[tuple[int, EnrolmentStatus], int] = {}
    for course_id, status, n in await session.execute(
        select(Enrolment.course_id, Enrolment.status, func.count())
        .join(Course, Course.id == Enrolment.course_id)
        .where(Enrolment.school_id == school.id, Course.term_id == term.id)
        .group_by(Enrolment.course_id, Enrolment.status)
    ):
        counts[(course_id, status)] = int(n)
    rows: list[list[Cell]] = []
    taken = seats = waiting = withdrawn = full = 0
    for c in courses:
        enrolled = counts.get((c.id, EnrolmentStatus.ENROLLED), 0)
        waitlisted = counts.get((c.id, EnrolmentStatus.WAITLISTED), 0)
        left = counts.get((c.id, EnrolmentStatus.WITHDRAWN), 0)
        rows.append(
            [
                c.code,
                c.name,
                wording.category(t, c.category),
                wording.period(t, c.period),
                wording.grades(t, c.grade_min, c.grade_max),
                wording.weekday_run(t, _weekdays(c.weekdays)),
                wording.span(t, c.starts_at, c.ends_at),
                c.teacher or "",
                c.provider or "",
                c.capacity,
                enrolled,
                waitlisted,
                left,
                percent(enrolled, c.capacity) if c.capacity else None,
                t.gettext("Cancelled") if c.cancelled_at is not None else "",
            ]
        )
        if c.cancelled_at is None:
            waiting += waitlisted
            withdrawn += left
            if c.capacity:
                taken += enrolled
                seats += c.capacity
                full += enrolled >= c.capacity
    header = [
        t.gettext("Code"),
        t.gettext("Course"),
        t.gettext("Category"),
        t.gettext("Period"),
        t.gettext("Grades"),
        t.gettext("Days"),
        t.gettext("Time"),
        t.gettext("Teacher"),
        t.gettext("Provider"),
        t.gettext("Capacity"),
        t.gettext("Enrolled"),
        t.gettext("Waitlisted"),
        t.gettext("Withdrawn"),
        t.gettext("Fill %"),
        t.gettext("Note"),
    ]
    title = t.gettext(TITLES["enrolment"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.ngettext("{n} course this term", "{n} courses this term", len(courses)).format(
            n=len(courses)
        ),
        t.gettext("Places taken: {taken} of {seats} ({share})").format(
            taken=taken, seats=seats, share=_pct_text(percent(taken, seats))
        ),
        t.ngettext("{n} course is full", "{n} courses are full", full).format(n=full),
        t.ngettext("{n} child on a waitlist", "{n} children on waitlists", waiting).format(
            n=waiting
        ),
        t.ngettext("{n} withdrawal", "{n} withdrawals", withdrawn).format(n=withdrawn),
    ]
    return Report("enrolment", title, "\n".join(lines), [Sheet(title, header, rows)])


def _weekdays(mask: int) -> list[int]:
    return [d for d in range(1, 8) if mask & (1 << (d - 1))]


# --- attendance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekRate:
    week: dt.date  # its Monday
    tally: Tally


def weekly(by_date: dict[tuple[Any, ...], Tally]) -> list[WeekRate]:
    weeks: dict[dt.date, Tally] = {}
    for (day,), tally in by_date.items():
        monday = day - dt.timedelta(days=day.isoweekday() - 1)
        weeks[monday] = weeks.get(monday, Tally(0, 0)) + tally
    return [WeekRate(w, weeks[w]) for w in sorted(weeks)]


def _tally_cells(tally: Tally) -> list[Cell]:
    return [tally.present, tally.marked, percent(tally.present, tally.marked), tally.leave]


async def attendance(session: AsyncSession, school: School, term: Term, t: Translator) -> Report:
    """Present over marked per course, per class and per week; leave counted apart."""
    found = await catalogue.of(session, school.id)
    by_course = await term_attendance.tally(session, school.id, term, "course")
    by_class = await term_attendance.tally(session, school.id, term, "class")
    by_date = await term_attendance.tally(session, school.id, term, "date")
    classes = dict(
        (
            await session.execute(
                select(SchoolClass.id, SchoolClass.name).where(SchoolClass.school_id == school.id)
            )
        ).all()
    )
    figures = [
        t.gettext("Times present"),
        t.gettext("Marked"),
        t.gettext("Attendance %"),
        t.gettext("On leave"),
    ]
    course_rows: list[list[Cell]] = []
    for c in _term_courses(found, term):
        tally = by_course.get((c.id,))
        if tally is None:
            continue
        course_rows.append([c.code, c.name, c.teacher or "", *_tally_cells(tally)])
    class_rows: list[list[Cell]] = [
        [classes.get(class_id, ""), *_tally_cells(tally)]
        for (class_id,), tally in sorted(
            by_class.items(), key=lambda item: str(classes.get(item[0][0], ""))
        )
    ]
    weeks = weekly(by_date)
    week_rows: list[list[Cell]] = [[w.week, *_tally_cells(w.tally)] for w in weeks]
    total = sum(by_course.values(), Tally(0, 0))
    title = t.gettext(TITLES["attendance"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.gettext("Present {present} of {marked} marked ({share})").format(
            present=total.present,
            marked=total.marked,
            share=_pct_text(percent(total.present, total.marked)),
        ),
        t.ngettext(
            "{n} absence on approved leave", "{n} absences on approved leave", total.leave
        ).format(n=total.leave),
    ]
    # The courses below the school's own rate, worst first: where to look.
    school_rate = percent(total.present, total.marked)
    lowest = sorted(
        (
            r
            for r in course_rows
            if isinstance(r[5], Decimal) and school_rate and r[5] < school_rate
        ),
        key=lambda r: r[5],  # type: ignore[arg-type,return-value]
    )[:3]
    if lowest:
        lines.append(t.gettext("Lowest attendance:"))
        lines += [
            t.gettext("• {course}: {share}%").format(course=html.escape(str(r[1])), share=r[5])
            for r in lowest
        ]
    sheets = [
        Sheet(
            t.gettext("By course"),
            [t.gettext("Code"), t.gettext("Course"), t.gettext("Teacher"), *figures],
            course_rows,
        ),
        Sheet(t.gettext("By class"), [t.gettext("Class"), *figures], class_rows),
        Sheet(t.gettext("By week"), [t.gettext("Week of"), *figures], week_rows),
    ]

    def chart() -> bytes:
        from bot.services import charts

        return charts.attendance(t, weeks)

    return Report("attendance", title, "\n".join(lines), sheets, chart if weeks else None)


# --- ratings ----------------------------------------------------------------------------------

ASPECT_NAMES = {
    "content": N_("Content"),
    "teaching": N_("Teaching"),
    "safety": N_("Care and safety"),
}


def _rating_cells(t: Translator, result: ratings.Result | None, why: str = HIDDEN) -> list[Cell]:
    """The scores of a shown result; blanks and the reason for anything else."""
    if result is None or not result.shown:
        blanks: list[Cell] = [None] * (len(ratings.ASPECTS) + 4)
        return [*blanks, t.gettext(why)]
    again = result.again
    return [
        *(two(result.mean(a)) for a in ratings.ASPECTS),
        two(result.overall),
        percent(again.get(ratings.Again.YES, 0), result.ballots),
        again.get(ratings.Again.UNSURE, 0),
        again.get(ratings.Again.NO, 0),
        "",
    ]


def _rating_header(t: Translator) -> list[str]:
    return [
        *(t.gettext(ASPECT_NAMES[a]) for a in ratings.ASPECTS),
        t.gettext("Overall"),
        t.gettext("Would sign up again %"),
        t.gettext("Unsure"),
        t.gettext("Would not"),
        t.gettext("Note"),
    ]


async def ratings_report(
    session: AsyncSession, school: School, term: Term, t: Translator
) -> Report:
    """Per course, per teacher and per provider: shown results only."""
    found = await catalogue.of(session, school.id)
    results = await ratings.course_results(session, school, term.id)
    courses = [c for c in _term_courses(found, term) if c.id in results]
    # Nothing is shown while families can still rate (ratings.course_results).
    why = HIDDEN if term.rating_closed_at is not None else NOT_CLOSED
    course_rows: list[list[Cell]] = []
    for c in courses:
        r = results[c.id]
        course_rows.append(
            [
                c.code,
                c.name,
                c.teacher or "",
                c.provider or "",
                r.families,
                r.ballots,
                percent(r.ballots, r.families),
                *_rating_cells(t, r, why),
            ]
        )
    # Keyed by id as well as name: two teachers may share a name.
    by_teacher: dict[tuple[str, int], list[ratings.Result]] = defaultdict(list)
    by_provider: dict[tuple[str, int], list[ratings.Result]] = defaultdict(list)
    for c in courses:
        if c.teacher and c.teacher_id is not None:
            by_teacher[(c.teacher, c.teacher_id)].append(results[c.id])
        if c.provider and c.provider_id is not None:
            by_provider[(c.provider, c.provider_id)].append(results[c.id])

    def pooled_rows(groups: dict[tuple[str, int], list[ratings.Result]]) -> list[list[Cell]]:
        rows: list[list[Cell]] = []
        for name, key in sorted(groups):
            pool = ratings.pooled(groups[(name, key)])
            ballots = pool.result.ballots if pool.result is not None else None
            rows.append(
                [name, pool.courses, pool.hidden, ballots, *_rating_cells(t, pool.result, why)]
            )
        return rows

    pooled_head = [
        t.gettext("Courses shown"),
        t.gettext("Courses hidden"),
        t.gettext("Ballots"),
        *_rating_header(t),
    ]
    school_pool = ratings.pooled(results[c.id] for c in courses)
    shown = school_pool.courses
    title = t.gettext(TITLES["ratings"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.ngettext(
            "{n} course with results shown", "{n} courses with results shown", shown
        ).format(n=shown),
    ]
    if term.rating_closed_at is None and results:
        lines.append(t.gettext("The rating is still open: results are shown once it closes."))
    elif school_pool.hidden:
        lines.append(
            t.ngettext(
                "{n} course hidden: too few ballots to show",
                "{n} courses hidden: too few ballots to show",
                school_pool.hidden,
            ).format(n=school_pool.hidden)
        )
    overall = school_pool.result
    if overall is not None and overall.overall is not None:
        lines.append(
            t.ngettext(
                "School overall: {score} of 5, from {n} ballot",
                "School overall: {score} of 5, from {n} ballots",
                overall.ballots,
            ).format(score=two(overall.overall), n=overall.ballots)
        )
        ranked = sorted(
            (c for c in courses if results[c.id].shown and results[c.id].overall is not None),
            key=lambda c: results[c.id].overall or 0,
        )
        if len(ranked) > 1:
            low = ranked[0]
            lines.append(
                t.gettext("Lowest: {course} {score}").format(
                    course=html.escape(low.name), score=two(results[low.id].overall)
                )
            )
    sheets = [
        Sheet(
            t.gettext("By course"),
            [
                t.gettext("Code"),
                t.gettext("Course"),
                t.gettext("Teacher"),
                t.gettext("Provider"),
                t.gettext("Families asked"),
                t.gettext("Ballots"),
                t.gettext("Turnout %"),
                *_rating_header(t),
            ],
            course_rows,
        ),
        Sheet(
            t.gettext("By teacher"), [t.gettext("Teacher"), *pooled_head], pooled_rows(by_teacher)
        ),
        Sheet(
            t.gettext("By provider"),
            [t.gettext("Provider"), *pooled_head],
            pooled_rows(by_provider),
        ),
    ]
    chart = None
    if overall is not None:
        shown_result = overall

        def chart() -> bytes:
            from bot.services import charts

            return charts.ratings(t, shown_result, t.gettext("All courses shown"))

    return Report("ratings", title, "\n".join(lines), sheets, chart)


# --- fees and hours ---------------------------------------------------------------------------


async def fees(session: AsyncSession, school: School, term: Term, t: Translator) -> Report:
    """The fee collection report of `fee_reports`, with its totals in the summary."""
    built = await fee_reports.build(session, t, school.id, term.id)
    first = list(built[0].rows)
    built[0] = Sheet(built[0].title, built[0].header, first)
    sums = [sum((Decimal(str(r[i] or 0)) for r in first), Decimal(0)) for i in (3, 6, 8)]
    title = t.gettext(TITLES["fees"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.gettext("Charged {charged} · paid {paid} · still due {due}").format(
            charged=t.money(int(sums[0] * 100)),
            paid=t.money(int(sums[1] * 100)),
            due=t.money(int(sums[2] * 100)),
        ),
    ]
    owing = list(built[1].rows)
    built[1] = Sheet(built[1].title, built[1].header, owing)
    lines.append(
        t.ngettext(
            "{n} family still owes money", "{n} families still owe money", len(owing)
        ).format(n=len(owing))
    )
    return Report("fees", title, "\n".join(lines), built)


async def hours_report(session: AsyncSession, school: School, term: Term, t: Translator) -> Report:
    """Sessions taught per teacher and month, by the rule of `hours.of_school`: a session
    counts when its roll was submitted, for whoever taught it, for its length."""
    totals: dict[tuple[Month, str], list[int]] = defaultdict(list)
    for name, date, starts, ends in await session.execute(
        select(Teacher.name, Session.date, Session.starts_at, Session.ends_at)
        .join(Teacher, Teacher.id == Session.teacher_id)
        .join(Course, Course.id == Session.course_id)
        .where(
            Session.school_id == school.id,
            Course.term_id == term.id,
            Session.date.between(term.starts_on, term.ends_on),
            Session.roll_submitted_at.is_not(None),
        )
    ):
        totals[(Month.of(date), name)].append(minutes(starts, ends))
    rows: list[list[Cell]] = []
    for (month, name), spans in sorted(totals.items(), key=lambda i: (i[0][0], i[0][1])):
        rows.append(
            [
                f"{month.year:04d}-{month.month:02d}",
                name,
                len(spans),
                (Decimal(sum(spans)) / 60).quantize(Decimal("0.01")),
            ]
        )
    sessions_n = sum(len(s) for s in totals.values())
    hours_total = (Decimal(sum(sum(s) for s in totals.values())) / 60).quantize(Decimal("0.1"))
    teachers = len({name for _, name in totals})
    title = t.gettext(TITLES["hours"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.ngettext(
            "{n} session taught with its roll in",
            "{n} sessions taught with their roll in",
            sessions_n,
        ).format(n=sessions_n),
        t.ngettext(
            "{hours} hours by {n} teacher", "{hours} hours by {n} teachers", teachers
        ).format(hours=hours_total, n=teachers),
    ]
    sheet = Sheet(
        title,
        [t.gettext("Month"), t.gettext("Teacher"), t.gettext("Sessions"), t.gettext("Hours")],
        rows,
    )
    return Report("hours", title, "\n".join(lines), [sheet])


# --- the "1+N" check --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassDay:
    """One class on one teaching day, by the courses offered to its grade that day."""

    class_id: int
    klass: str
    date: dt.date
    weekday: int  # the timetable it runs (a 调休 Saturday may run Wednesday's)
    total: int  # minutes of after-school service offered (overlapping courses counted once)
    interest: int  # of which in interest activities (every category but homework help)
    science: bool
    sports: bool
    attending: int  # children of the class with a course that day
    homework_only: int  # of whom only homework help that day
    reasons: tuple[str, ...] = ()  # why it fails (msgids with {fields}); empty: it passes
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return not self.reasons

    @property
    def share(self) -> Decimal | None:
        return percent(self.interest, self.total)


NO_SERVICE = N_("no after-school service offered")
ONLY_HOMEWORK = N_("only homework help, no interest activity")
UNDER_HALF = N_("interest activities only {share}% of the time (at least 50% needed)")
NO_SPORTS = N_("no sports")
NO_SCIENCE = N_("no science all week")
NO_SCIENCE_TODAY = N_("no science")


def _union(spans: Iterable[tuple[dt.time, dt.time]]) -> int:
    """Minutes covered by the spans, overlaps counted once."""
    total = 0
    end_so_far: int | None = None
    for start, end in sorted((s.hour * 60 + s.minute, e.hour * 60 + e.minute) for s, e in spans):
        if end_so_far is None or start >= end_so_far:
            total += end - start
            end_so_far = end
        elif end > end_so_far:
            total += end - end_so_far
            end_so_far = end
    return total


def teaching_days(info: TermInfo) -> list[tuple[dt.date, int]]:
    """The term's school days and the weekday timetable each runs: Monday to Friday, less
    holidays and days without service, plus swapped working days (调休)."""
    days = []
    day = info.starts_on
    while day <= info.ends_on:
        special = info.day(day)
        weekday = day.isoweekday()
        if special is not None and special.kind in (CalendarKind.HOLIDAY, CalendarKind.NO_SERVICE):
            pass
        elif special is not None and special.kind is CalendarKind.WORKDAY:
            days.append((day, special.runs_weekday or weekday))
        elif weekday <= 5:
            days.append((day, weekday))
        day += dt.timedelta(days=1)
    return days


async def class_days(session: AsyncSession, school: School, term: Term) -> list[ClassDay]:
    """Every class on every teaching day of the term, checked against "1+N" (four queries).
    Science is asked of every day, or of every teaching week (`School.science_every_day`)."""
    school_id = school.id
    found = await catalogue.of(session, school_id)
    info = found.term(term.id)
    if info is None:
        return []
    offered = [c for c in found.of_term(term.id) if c.cancelled_at is None]
    cancelled = set(
        (
            await session.execute(
                select(Session.course_id, Session.date)
                .join(Course, Course.id == Session.course_id)
                .where(
                    Session.school_id == school_id,
                    Course.term_id == term.id,
                    Session.status == SessionStatus.CANCELLED,
                )
            )
        ).all()
    )
    classes = (
        await session.execute(
            select(SchoolClass.id, SchoolClass.name, SchoolClass.grade)
            .where(SchoolClass.school_id == school_id)
            .order_by(SchoolClass.grade, SchoolClass.code)
        )
    ).all()
    # Each child's enrolled courses, by class: who attends, and who has only homework help.
    taking: dict[int, dict[int, list[CourseInfo]]] = defaultdict(lambda: defaultdict(list))
    by_id = {c.id: c for c in offered}
    for class_id, student_id, course_id in await session.execute(
        select(Student.class_id, Enrolment.student_id, Enrolment.course_id)
        .join(Student, Student.id == Enrolment.student_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            Enrolment.school_id == school_id,
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Course.term_id == term.id,
            Student.active.is_(True),
        )
    ):
        if course_id in by_id:
            taking[class_id][student_id].append(by_id[course_id])
    # Per class and weekday timetable: children attending, and those with only homework.
    attendance_by: dict[tuple[int, int], tuple[int, int]] = {}
    for class_id, children in taking.items():
        for weekday in range(1, 8):
            bit = 1 << (weekday - 1)
            attending = only = 0
            for courses in children.values():
                today = [c for c in courses if c.weekdays & bit]
                if today:
                    attending += 1
                    only += all(c.category is Category.HOMEWORK for c in today)
            attendance_by[(class_id, weekday)] = (attending, only)
    grades = {grade for _, _, grade in classes}
    by_grade = {g: [c for c in offered if c.grade_min <= g <= c.grade_max] for g in grades}
    days = teaching_days(info)
    # Per grade and day: what runs (the calendar's rules, as every screen applies them).
    running: dict[tuple[int, dt.date], list[CourseInfo]] = {}
    for grade, courses in by_grade.items():
        for day, _ in days:
            running[(grade, day)] = [
                c for c in sessions_on(found, courses, day) if (c.id, day) not in cancelled
            ]
    # Where science is read as an item of the programme: checked per teaching week.
    science_weeks: set[tuple[int, dt.date]] = set()
    last_of_week: dict[dt.date, dt.date] = {}
    for day, _ in days:
        monday = day - dt.timedelta(days=day.isoweekday() - 1)
        last_of_week[monday] = max(last_of_week.get(monday, day), day)
        for grade in grades:
            if any(c.category is Category.SCIENCE for c in running[(grade, day)]):
                science_weeks.add((grade, monday))
    found_days: list[ClassDay] = []
    for class_id, name, grade in classes:
        if not by_grade[grade]:
            continue  # the grade has no after-school service this term at all
        for day, weekday in days:
            courses = running[(grade, day)]
            total = _union((c.starts_at, c.ends_at) for c in courses)
            interest = _union(
                (c.starts_at, c.ends_at) for c in courses if c.category is not Category.HOMEWORK
            )
            science = any(c.category is Category.SCIENCE for c in courses)
            sports = any(c.category is Category.SPORTS for c in courses)
            reasons: list[str] = []
            params: dict[str, Any] = {}
            if not total:
                reasons.append(NO_SERVICE)
            else:
                if not interest:
                    reasons.append(ONLY_HOMEWORK)
                elif interest * 100 < INTEREST_SHARE * total:
                    reasons.append(UNDER_HALF)
                    params["share"] = percent(interest, total)
                if not sports:
                    reasons.append(NO_SPORTS)
            monday = day - dt.timedelta(days=day.isoweekday() - 1)
            if school.science_every_day:
                if total and not science:
                    reasons.append(NO_SCIENCE_TODAY)
            elif last_of_week[monday] == day and (grade, monday) not in science_weeks:
                reasons.append(NO_SCIENCE)
            attending, only = attendance_by.get((class_id, weekday), (0, 0))
            found_days.append(
                ClassDay(
                    class_id,
                    name,
                    day,
                    weekday,
                    total,
                    interest,
                    science,
                    sports,
                    attending,
                    only,
                    tuple(reasons),
                    params,
                )
            )
    return found_days


def why(t: Translator, day: ClassDay) -> str:
    """The reasons a class-day fails, in the reader's language ("" when it passes)."""
    separator = "；" if t.locale.startswith("zh") else "; "
    return separator.join(t.gettext(r).format(**day.params) for r in day.reasons)


async def compliance(session: AsyncSession, school: School, term: Term, t: Translator) -> Report:
    """The "1+N" check of every class on every teaching day, and the days that fail."""
    days = await class_days(session, school, term)
    yes, no = t.gettext("Yes"), t.gettext("No")
    header = [
        t.gettext("Class"),
        t.gettext("Date"),
        t.gettext("Timetable of"),
        t.gettext("Minutes offered"),
        t.gettext("Interest minutes"),
        t.gettext("Interest %"),
        t.gettext("Science"),
        t.gettext("Sports"),
        t.gettext("Children attending"),
        t.gettext("Of whom only homework help"),
        t.gettext("Result"),
        t.gettext("Why"),
    ]
    rows: list[list[Cell]] = []
    fails: list[list[Cell]] = []
    for d in days:
        reason = why(t, d)
        rows.append(
            [
                d.klass,
                d.date,
                t.weekday(d.weekday, "abbreviated"),
                d.total,
                d.interest,
                d.share,
                yes if d.science else no,
                yes if d.sports else no,
                d.attending,
                d.homework_only,
                t.gettext("Passes") if d.passes else t.gettext("Fails"),
                reason,
            ]
        )
        if not d.passes:
            fails.append([d.klass, d.date, reason])
    failing = [d for d in days if not d.passes]
    title = t.gettext(TITLES["compliance"])
    lines = [
        f"<b>{html.escape(title)} · {html.escape(term.name)}</b>",
        t.gettext(
            "Each teaching day: interest activities at least half the after-school time, "
            "sports and science that day."
        )
        if school.science_every_day
        else t.gettext(
            "Each teaching day: interest activities at least half the after-school time, "
            "sports that day, science every week."
        ),
        t.ngettext(
            "{fails} of {n} class-day fails", "{fails} of {n} class-days fail", len(days)
        ).format(fails=len(failing), n=len(days)),
    ]
    for d in failing[:LIST_MAX]:
        lines.append(
            t.gettext("• {klass} · {day}: {why}").format(
                klass=html.escape(d.klass), day=wording.day(t, d.date), why=html.escape(why(t, d))
            )
        )
    if len(failing) > LIST_MAX:
        lines.append(
            t.ngettext(
                "…and {n} more in the spreadsheet",
                "…and {n} more in the spreadsheet",
                len(failing) - LIST_MAX,
            ).format(n=len(failing) - LIST_MAX)
        )
    sheets = [
        Sheet(t.gettext("Failing days"), [header[0], header[1], header[-1]], fails),
        Sheet(t.gettext("Every day"), header, rows),
    ]
    heat = compliance_heat(days)

    def chart() -> bytes:
        from bot.services import charts

        return charts.compliance(t, heat)

    return Report("compliance", title, "\n".join(lines), sheets, chart if days else None)


@dataclass(frozen=True)
class Heat:
    """Share of teaching days that pass, per class (rows) and weekday timetable (columns)."""

    classes: list[str]
    weekdays: list[int]
    share: list[list[float | None]]


def compliance_heat(days: Sequence[ClassDay]) -> Heat:
    counts: dict[tuple[str, int], Counter[bool]] = defaultdict(Counter)
    order: dict[str, None] = {}
    for d in days:
        order.setdefault(d.klass)
        counts[(d.klass, d.weekday)][d.passes] += 1
    weekdays = sorted({d.weekday for d in days})
    share: list[list[float | None]] = []
    for name in order:
        row: list[float | None] = []
        for w in weekdays:
            c = counts.get((name, w))
            row.append(c[True] / (c[True] + c[False]) if c else None)
        share.append(row)
    return Heat(list(order), weekdays, share)


# --- all of them ------------------------------------------------------------------------------

BUILDERS: dict[str, Builder] = {
    "enrolment": enrolment,
    "attendance": attendance,
    "ratings": ratings_report,
    "compliance": compliance,
    "fees": fees,
    "hours": hours_report,
}


async def term_report(
    session: AsyncSession, school: School, term: Term, t: Translator
) -> list[Report]:
    """Every report of the term, in menu order."""
    return [await build(session, school, term, t) for build in BUILDERS.values()]


# --- the district export ----------------------------------------------------------------------


def district_headers(t: Translator) -> tuple[list[str], list[str]]:
    schools = [
        t.gettext("School code"),
        t.gettext("School"),
        t.gettext("Term"),
        t.gettext("Courses"),
        t.gettext("Enrolled"),
        t.gettext("Times present"),
        t.gettext("Marked"),
        t.gettext("Attendance %"),
        t.gettext("Courses shown"),
        t.gettext("Courses hidden"),
        t.gettext("Overall"),
        t.gettext("Class-days checked"),
        t.gettext("Class-days failing 1+N"),
    ]
    courses = [
        t.gettext("School code"),
        t.gettext("School"),
        t.gettext("Code"),
        t.gettext("Course"),
        t.gettext("Category"),
        t.gettext("Grades"),
        t.gettext("Capacity"),
        t.gettext("Enrolled"),
        t.gettext("Waitlisted"),
        t.gettext("Attendance %"),
        t.gettext("Ballots"),
        t.gettext("Overall"),
        t.gettext("Class-days failing 1+N"),
        t.gettext("Note"),
    ]
    return schools, courses


async def district_school(
    session: AsyncSession, school: School, term: Term, t: Translator
) -> tuple[list[Cell], list[list[Cell]]]:
    """One school's line and its courses' lines of the district export (eleven statements).

    A course's "1+N" figure is the class-days failing among the grades it is offered to."""
    found = await catalogue.of(session, school.id)
    courses = _term_courses(found, term)
    counts: Counter[tuple[int, EnrolmentStatus]] = Counter()
    for course_id, status, n in await session.execute(
        select(Enrolment.course_id, Enrolment.status, func.count())
        .join(Course, Course.id == Enrolment.course_id)
        .where(Enrolment.school_id == school.id, Course.term_id == term.id)
        .group_by(Enrolment.course_id, Enrolment.status)
    ):
        counts[(course_id, status)] = int(n)
    rates = await term_attendance.tally(session, school.id, term, "course")
    results = await ratings.course_results(session, school, term.id)
    days = await class_days(session, school, term)
    grade_of = dict(
        (
            await session.execute(
                select(SchoolClass.id, SchoolClass.grade).where(SchoolClass.school_id == school.id)
            )
        ).all()
    )
    failing_by_grade: Counter[int] = Counter(grade_of[d.class_id] for d in days if not d.passes)
    rows: list[list[Cell]] = []
    for c in courses:
        tally = rates.get((c.id,), Tally(0, 0))
        result = results.get(c.id)
        shown = result is not None and result.shown
        rows.append(
            [
                school.code,
                school.name,
                c.code,
                c.name,
                wording.category(t, c.category),
                wording.grades(t, c.grade_min, c.grade_max),
                c.capacity,
                counts[(c.id, EnrolmentStatus.ENROLLED)],
                counts[(c.id, EnrolmentStatus.WAITLISTED)],
                percent(tally.present, tally.marked),
                result.ballots if result is not None else None,
                two(result.overall) if shown and result is not None else None,
                sum(failing_by_grade[g] for g in range(c.grade_min, c.grade_max + 1)),
                t.gettext(HIDDEN) if result is not None and not shown else "",
            ]
        )
    total = sum(rates.values(), Tally(0, 0))
    pool = ratings.pooled(results.values())
    line: list[Cell] = [
        school.code,
        school.name,
        term.name,
        len(courses),
        sum(n for (_, s), n in counts.items() if s is EnrolmentStatus.ENROLLED),
        total.present,
        total.marked,
        percent(total.present, total.marked),
        pool.courses,
        pool.hidden,
        two(pool.result.overall) if pool.result is not None else None,
        len(days),
        sum(1 for d in days if not d.passes),
    ]
    return line, rows


async def school_term(
    session: AsyncSession, school_id: int, today: dt.date
) -> tuple[School, Term] | None:
    """The school and the term its reports are about today: the term running, or else the
    last one begun (catalogue `current_term`); None before the school has a term."""
    found = await catalogue.of(session, school_id)
    info = found.current_term(today)
    if info is None:
        return None
    school = await session.get(School, school_id)
    term = await session.get(Term, info.id)
    return (school, term) if school is not None and term is not None else None


def term_of(found: Catalogue, name: str | None, today: dt.date) -> TermInfo | None:
    """The named term, or the one running today (else the next, else the last)."""
    if name is None:
        return found.current_term(today)
    return next((term for term in found.terms if term.name == name), None)


async def district(
    db: Any, t: Translator, term_name: str | None, today: dt.date
) -> tuple[list[list[Cell]], list[list[Cell]], list[str]]:
    """The district export over every school of the database, one school (and one read
    transaction) at a time: its schools' lines, its courses' lines, and the codes of schools
    without such a term. `db` is a `storage.db.Database`."""
    async with db.transaction() as session:
        ids = list(await session.scalars(select(School.id).order_by(School.code)))
    school_rows: list[list[Cell]] = []
    course_rows: list[list[Cell]] = []
    missing: list[str] = []
    for school_id in ids:
        async with db.transaction() as session:
            school = await session.get(School, school_id)
            assert school is not None
            found = await catalogue.of(session, school_id)
            info = term_of(found, term_name, today)
            term = await session.get(Term, info.id) if info is not None else None
            if term is None:
                missing.append(school.code)
                continue
            line, rows = await district_school(session, school, term, t)
        school_rows.append(line)
        course_rows.extend(rows)
    return school_rows, course_rows, missing
