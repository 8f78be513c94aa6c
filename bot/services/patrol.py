"""The school's watch over each day: the teacher's roll reminder and the admins' patrol record.

**Roll reminder.** When a session's roll is still not in `School.roll_reminder_minutes` after it
started, its teacher gets one reminder with a button to /attendance. Which reminders are due is
read from the calendar and the sessions' rows on every tick (`rolls_due`); each is a ledger run
of its own (`roll:<course>:<yyyymmdd>`, due at start + the delay), and `remind` marks the
session's `roll_reminded_at` compare-and-set, so two processes or a restart never remind twice.

**Patrol record (每日巡查记录).** At the school's `patrol_time` every admin gets the day's record
in their language: sessions held, rolls taken and missing (named, with the teacher),
unexplained absences, updates posted and the evening digest's sent / failed counts. Nothing is
sent on a day without service.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, I18n, Translator
from bot.services import catalogue, deadlines, outbox, sessions
from bot.services.attendance import ABSENT
from bot.services.catalogue import CourseInfo
from bot.services.leaves import sessions_on
from bot.services.outbox import NewMessage
from storage.models import (
    AttendanceCode,
    AttendanceMark,
    DailyUpdate,
    Leave,
    Outbox,
    Priority,
    Role,
    School,
    Session,
    SessionStatus,
    Teacher,
    User,
    UserRole,
)

REMINDER = N_("“{course}” started at {time} and its roll has not been taken yet.")
TAKE_ROLL = N_("Take the roll")
GUARDIAN = "guardian"  # a mark whose source is a guardian's reason: the absence is explained
EVENING = "evening"  # the outbox kind of the evening digest's messages (bot.services.evening)


def _live(found: catalogue.Catalogue) -> list[CourseInfo]:
    return [c for c in found.courses.values() if c.cancelled_at is None]


# --- the roll reminder ------------------------------------------------------------------------


@dataclass(frozen=True)
class RollDue:
    school_id: int
    course_id: int
    date: dt.date
    due_at: dt.datetime  # UTC: the session's start plus the school's delay

    @property
    def job(self) -> str:
        return f"roll:{self.course_id}:{self.date:%Y%m%d}"


def parse_job(job: str) -> tuple[int, dt.date] | None:
    """`roll:<course>:<yyyymmdd>` → (course id, date)."""
    parts = job.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    try:
        return int(parts[1]), dt.datetime.strptime(parts[2], "%Y%m%d").date()
    except ValueError:
        return None


async def rolls_due(session: AsyncSession, now: dt.datetime) -> list[RollDue]:
    """Today's sessions, in each school, whose reminder time has passed with no roll in and no
    reminder sent, and whose teacher can be reached."""
    found: list[RollDue] = []
    for school in (await session.scalars(select(School).order_by(School.id))).all():
        if deadlines.in_quiet_hours(school, now):
            continue  # Kehou was down all evening: no reminder at night, and tomorrow is late
        school_id, zone, delay = school.id, ZoneInfo(school.timezone), school.roll_reminder_minutes
        local = now.astimezone(zone)
        today = local.date()
        programme = await catalogue.of(session, school_id)
        after = dt.timedelta(minutes=delay)
        due = {
            c.id: (c, dt.datetime.combine(today, c.starts_at, zone) + after)
            for c in sessions_on(programme, _live(programme), today)
            if c.teacher_id is not None
        }
        due = {k: (c, at) for k, (c, at) in due.items() if at <= local}
        if not due:
            continue
        settled = set(
            (
                await session.scalars(
                    select(Session.course_id).where(
                        Session.course_id.in_(list(due)),
                        Session.date == today,
                        (Session.roll_submitted_at.is_not(None))
                        | (Session.roll_reminded_at.is_not(None))
                        | (Session.status == SessionStatus.CANCELLED),
                    )
                )
            ).all()
        )
        reachable = set(
            (
                await session.scalars(
                    select(Teacher.id)
                    .join(User, User.id == Teacher.user_id)
                    .where(
                        Teacher.id.in_({c.teacher_id for c, _ in due.values()}),
                        User.chat_id.is_not(None),
                    )
                )
            ).all()
        )
        found += [
            RollDue(school_id, course.id, today, at.astimezone(dt.UTC))
            for course, at in due.values()
            if course.id not in settled and course.teacher_id in reachable
        ]
    return found


async def remind(
    session: AsyncSession, school_id: int, course_id: int, date: dt.date, now: dt.datetime
) -> str:
    """Remind the course's teacher that the roll of `date` is not in; returns the outcome.

    The session's `roll_reminded_at` is set compare-and-set, so of two runs (two processes, a
    run taken over after a crash) one reminds and the other finds it done.
    """
    school = await session.get(School, school_id)
    assert school is not None
    if now.astimezone(ZoneInfo(school.timezone)).date() != date:
        return "stale: the day is over"
    if deadlines.in_quiet_hours(school, now):
        return "stale: not at night"
    programme = await catalogue.of(session, school_id)
    course = programme.course(course_id)
    if course is None or course.cancelled_at is not None:
        return "course cancelled"
    if not sessions_on(programme, [course], date):
        return "no session that day"
    row = await sessions.materialise(session, course, date)
    if row.status is SessionStatus.CANCELLED:
        return "session cancelled"
    won = await session.execute(
        update(Session)
        .where(
            Session.id == row.id,
            Session.roll_submitted_at.is_(None),
            Session.roll_reminded_at.is_(None),
        )
        .values(roll_reminded_at=now)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return "roll in or reminded already"
    teacher = (
        await session.execute(
            select(User.id, User.chat_id)
            .join(Teacher, Teacher.user_id == User.id)
            .where(Teacher.id == (row.teacher_id or course.teacher_id), User.chat_id.is_not(None))
        )
    ).first()
    if teacher is None:
        return "no teacher to remind"
    user_id, chat_id = teacher
    assert chat_id is not None
    await outbox.enqueue_many(
        session,
        school_id,
        [
            NewMessage(
                chat_id=chat_id,
                user_id=user_id,
                kind="roll_reminder",
                priority=Priority.INTERACTIVE,
                template=REMINDER,
                params={"course": course.name, "time": {"$time": course.starts_at.isoformat()}},
                buttons=[[{"label": TAKE_ROLL, "data": "go:attendance"}]],
                dedupe_key=f"roll-reminder:{row.id}",
                digest=False,
            )
        ],
        now=now,
    )
    return "reminded"


# --- the patrol record ------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingRoll:
    course: str
    starts_at: dt.time
    ends_at: dt.time
    teacher: str | None


@dataclass(frozen=True)
class Record:
    """One day's patrol record of a school."""

    date: dt.date
    held: int  # sessions that ran by the calendar (not cancelled)
    taken: int  # of which the roll is in
    missing: list[MissingRoll]  # the others, by start time
    unexplained: int  # latest marks of an absence with no leave and no reason given
    updates: int  # daily updates posted
    evening: dict[str, int] = field(default_factory=dict)  # the digest's messages by status


async def record(session: AsyncSession, school_id: int, day: dt.date) -> Record | None:
    """The day's record; None on a day without service (no session by the calendar)."""
    programme = await catalogue.of(session, school_id)
    running = sessions_on(programme, _live(programme), day)
    if not running:
        return None
    rows = {
        course_id: (session_id, submitted, status)
        for course_id, session_id, submitted, status in await session.execute(
            select(Session.course_id, Session.id, Session.roll_submitted_at, Session.status).where(
                Session.course_id.in_([c.id for c in running]), Session.date == day
            )
        )
    }
    held = [c for c in running if c.id not in rows or rows[c.id][2] is not SessionStatus.CANCELLED]
    taken = [c for c in held if c.id in rows and rows[c.id][1] is not None]
    missing = [
        MissingRoll(c.name, c.starts_at, c.ends_at, c.teacher)
        for c in held
        if c.id not in {t.id for t in taken}
    ]
    period_of = {rows[c.id][0]: c.period for c in held if c.id in rows}
    unexplained = await _unexplained(session, school_id, day, period_of)
    updates = await session.scalar(
        select(func.count())
        .select_from(DailyUpdate)
        .join(Session, Session.id == DailyUpdate.session_id)
        .where(Session.school_id == school_id, Session.date == day)
    )
    return Record(
        day,
        len(held),
        len(taken),
        missing,
        unexplained,
        updates or 0,
        await _evening(session, school_id, day),
    )


async def _unexplained(
    session: AsyncSession, school_id: int, day: dt.date, period_of: dict[int, int]
) -> int:
    """Absences (by each child's latest mark) with no leave on file and no reason given."""
    if not period_of:
        return 0
    alerting = set(
        (
            await session.scalars(
                select(AttendanceCode.code).where(
                    AttendanceCode.school_id == school_id, AttendanceCode.alerts.is_(True)
                )
            )
        ).all()
    ) or {ABSENT}
    latest: dict[tuple[int, int], tuple[str, str]] = {}
    for session_id, student_id, code, source in await session.execute(
        select(
            AttendanceMark.session_id,
            AttendanceMark.student_id,
            AttendanceMark.code,
            AttendanceMark.source,
        )
        .where(AttendanceMark.session_id.in_(list(period_of)))
        .order_by(AttendanceMark.id)
    ):
        latest[(session_id, student_id)] = (code, source)
    absent = [
        (session_id, student_id)
        for (session_id, student_id), (code, source) in latest.items()
        if code in alerting and source != GUARDIAN
    ]
    if not absent:
        return 0
    leaves = (
        await session.execute(
            select(Leave.student_id, Leave.period).where(
                Leave.student_id.in_({s for _, s in absent}),
                Leave.date == day,
                Leave.cancelled_at.is_(None),
                Leave.pickup_at.is_(None),
            )
        )
    ).all()
    covered = {
        (session_id, student_id)
        for session_id, student_id in absent
        for leave_student, leave_period in leaves
        if leave_student == student_id
        and (leave_period is None or leave_period == period_of[session_id])
    }
    return len(absent) - len(covered)


async def _evening(session: AsyncSession, school_id: int, day: dt.date) -> dict[str, int]:
    """The evening digest's messages of `day`, by status (empty if it did not run)."""
    zone = ZoneInfo(
        await session.scalar(select(School.timezone).where(School.id == school_id))
        or "Asia/Shanghai"
    )
    start = dt.datetime.combine(day, dt.time(0), zone).astimezone(dt.UTC)
    end = start + dt.timedelta(days=1)
    rows = await session.execute(
        select(Outbox.status, func.count())
        .where(
            Outbox.school_id == school_id,
            Outbox.kind == EVENING,
            Outbox.created_at >= start,
            Outbox.created_at < end,
        )
        .group_by(Outbox.status)
    )
    return {str(status): count for status, count in rows.all()}


def render(t: Translator, school: str, found: Record) -> str:
    """The record as an admin reads it, in their language (HTML)."""
    lines = [
        "<b>"
        + t.gettext("Daily patrol record · {day}").format(day=wording.day(t, found.date))
        + "</b>",
        html.escape(school),
        t.ngettext("{n} session held.", "{n} sessions held.", found.held).format(n=found.held),
        t.ngettext("Roll taken: {n} session.", "Roll taken: {n} sessions.", found.taken).format(
            n=found.taken
        ),
    ]
    if found.missing:
        lines.append(
            t.ngettext(
                "⚠️ Roll missing: {n} session:", "⚠️ Roll missing: {n} sessions:", len(found.missing)
            ).format(n=len(found.missing))
        )
        lines += [
            f"• {html.escape(m.course)} {wording.span(t, m.starts_at, m.ends_at)}"
            + (f" · {html.escape(m.teacher)}" if m.teacher else "")
            for m in found.missing
        ]
    else:
        lines.append(t.gettext("Every roll is in."))
    lines.append(
        t.ngettext(
            "Unexplained absences: {n}.", "Unexplained absences: {n}.", found.unexplained
        ).format(n=found.unexplained)
    )
    lines.append(
        t.ngettext("Updates posted: {n}.", "Updates posted: {n}.", found.updates).format(
            n=found.updates
        )
    )
    if found.evening:
        counts = Counter(found.evening)
        failed = counts["failed"] + counts["blocked"]
        waiting = sum(counts.values()) - counts["sent"] - failed
        if waiting:
            lines.append(
                t.gettext(
                    "Evening digest: {sent} sent, {failed} failed, {waiting} still going out."
                ).format(sent=counts["sent"], failed=failed, waiting=waiting)
            )
        else:
            lines.append(
                t.gettext("Evening digest: {sent} sent, {failed} failed.").format(
                    sent=counts["sent"], failed=failed
                )
            )
    return "\n".join(lines)


async def send_record(
    session: AsyncSession, i18n: I18n, school_id: int, day: dt.date, now: dt.datetime
) -> str:
    """The day's record to every admin of the school who has a chat; returns the outcome."""
    found = await record(session, school_id, day)
    if found is None:
        return "no service today"
    school = await session.get(School, school_id)
    assert school is not None
    admins = (
        await session.execute(
            select(User.id, User.chat_id, User.locale)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.school_id == school_id,
                UserRole.role == Role.ADMIN,
                User.chat_id.is_not(None),
            )
            .distinct()
            .order_by(User.id)
        )
    ).all()
    messages = []
    for user_id, chat_id, locale in admins:
        assert chat_id is not None
        t = i18n.get(locale or school.default_locale, school.timezone)
        messages.append(
            NewMessage(
                chat_id=chat_id,
                user_id=user_id,
                kind="patrol",
                text=render(t, school.name, found),
                dedupe_key=f"patrol:{day.isoformat()}:{user_id}",
                digest=False,
            )
        )
    await outbox.enqueue_many(session, school_id, messages, now=now)
    return f"record sent to {len(messages)} admins"
