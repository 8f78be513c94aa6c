"""The evening digest: one message per guardian about the day, with the notices held for it.

At the school's `digest_time` (default 18:30), on a day with service, every guardian whose
children had a session today gets one message, in their language, covering all their
children: each session with its attendance, how the child left (an early pick-up, the
dismissal), and the teachers' updates of the day if the guardian reads updates in the digest
(their photos as one album). The notices held for their digest that day come in the same
message. A guardian with nothing to hear about gets nothing.

Built by the scheduler's `digest` run (`bot.jobs`), once per school and evening through the
ledger, and written to the outbox in one statement at BULK priority: absence alerts and
answers go first whatever the digest's size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, I18n, Translator
from bot.services import audit, catalogue, guard, ledger, outbox
from bot.services.catalogue import CourseInfo
from bot.services.leaves import sessions_on
from bot.services.members import Member
from bot.services.outbox import Claimed, NewMessage
from storage.models import (
    AttendanceCode,
    AttendanceMark,
    DailyUpdate,
    Dismissal,
    DismissalWay,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Leave,
    Outbox,
    OutboxStatus,
    PickupPerson,
    Priority,
    Role,
    School,
    Session,
    Student,
    Teacher,
    UpdateMode,
    User,
)

KIND = "evening"
MAX_PHOTOS = 10  # one album
HEADER = N_("🌙 {school} · after school today, {day}")
DIGEST_HEADER = N_("📬 Your daily digest: {count} messages from {school}")
NO_ROLL = N_("roll not taken yet")
HELD_HEADER = N_("📬 Notices of the day")
MORE_PHOTOS = N_("(the first {shown} of {total} photos)")
WAYS = {
    DismissalWay.GUARDIAN: N_("{time} collected by a guardian"),
    DismissalWay.AUTHORISED: N_("{time} collected by {person}"),
    DismissalWay.ALONE: N_("{time} went home alone"),
    DismissalWay.EXTENDED: N_("{time} moved to extended care"),
}
EARLY = N_("to be collected at {time}")


@dataclass
class _Child:
    id: int
    name: str
    courses: list[CourseInfo] = field(default_factory=list)


@dataclass
class _Reader:
    user_id: int
    chat_id: int
    locale: str | None
    updates: UpdateMode
    children: list[_Child] = field(default_factory=list)


@dataclass
class _Day:
    """What happened today, by course and child."""

    marks: dict[tuple[int, int], str]  # (course, student) → code
    codes: dict[str, tuple[str, str]]  # code → (emoji, label)
    leaves: dict[int, list[Leave]]  # student → today's leaves and pick-ups
    dismissals: dict[tuple[int, int], tuple[Dismissal, str | None]]  # … → (row, person)
    updates: dict[int, list[tuple[DailyUpdate, str | None]]]  # course → (update, teacher)
    zone: str


@dataclass(frozen=True)
class Built:
    families: int  # evening messages queued
    held: int  # held notices folded into them


async def build(
    session: AsyncSession, i18n: I18n, school_id: int, day: dt.date, now: dt.datetime
) -> Built:
    """Queue the evening digest of `day` for the school (nothing on a day without service but
    the held notices, which `fold_held` delivers on their own)."""
    school = await session.get(School, school_id)
    assert school is not None
    found = await catalogue.of(session, school_id)
    live = [c for c in found.courses.values() if c.cancelled_at is None]
    running = {c.id: c for c in sessions_on(found, live, day)}
    if not running:
        return Built(0, 0)
    readers = await _readers(session, school_id, running)
    if not readers:
        return Built(0, 0)
    today = await _today(session, school, running, day)
    held = await _held(session, school_id, {r.user_id for r in readers})
    messages, folded = [], []
    for reader in readers:
        t = i18n.get(reader.locale or school.default_locale, school.timezone)
        text, photos = _render(t, school.name, day, reader, today, running)
        notices = held.get(reader.user_id, [])
        if notices:
            text += "\n\n<b>" + html.escape(t.gettext(HELD_HEADER)) + "</b>\n\n"
            text += "\n\n— — —\n\n".join(_held_text(row, t) for row in notices)
        buttons = [line for row in notices for line in (row.buttons or [])]
        attachment: dict[str, Any] | None = None
        if len(photos) == 1:
            attachment = {"type": "photo", "file_id": photos[0]}
        elif photos:
            attachment = {"type": "album", "photos": photos[:MAX_PHOTOS]}
        messages.append(
            NewMessage(
                chat_id=reader.chat_id,
                user_id=reader.user_id,
                kind=KIND,
                priority=Priority.BULK,
                text=text,
                buttons=buttons or None,
                attachment=attachment,
                dedupe_key=f"{KIND}:{reader.user_id}:{day.isoformat()}",
                digest=False,
            )
        )
        folded.append((reader.user_id, notices))
    ids = await outbox.enqueue_many(session, school_id, messages, now=now)
    # The new message of each reader with held notices (a few; not every id: an IN list of
    # thousands is a statement no backend likes).
    holding = [user_id for user_id, notices in folded if notices]
    by_user: dict[int | None, int] = {}
    if holding:
        keys = [f"{school_id}:{KIND}:{user_id}:{day.isoformat()}" for user_id in holding]
        fresh = set(ids)  # a message queued by an earlier run was sent without these notices
        queued = await session.execute(
            select(Outbox.user_id, Outbox.id).where(Outbox.dedupe_key.in_(keys))
        )
        by_user = {user_id: row_id for user_id, row_id in queued.all() if row_id in fresh}
    count = 0
    for user_id, notices in folded:
        digest_id = by_user.get(user_id)
        if digest_id is None:
            continue  # queued already (a repeated run): its notices were folded then
        for row in notices:
            row.status = OutboxStatus.DIGESTED
            row.digest_id = digest_id
            count += 1
    return Built(len(ids), count)


async def _readers(
    session: AsyncSession, school_id: int, running: dict[int, CourseInfo]
) -> list[_Reader]:
    """Each guardian with a chat whose children are enrolled in a course running today."""
    enrolled = await session.execute(
        select(Enrolment.student_id, Enrolment.course_id).where(
            Enrolment.course_id.in_(list(running)), Enrolment.status == EnrolmentStatus.ENROLLED
        )
    )
    courses: dict[int, list[CourseInfo]] = {}
    for student_id, course_id in enrolled.all():
        courses.setdefault(student_id, []).append(running[course_id])
    if not courses:
        return []
    # The school's guardians, filtered here: an IN list of every child with a session today
    # makes SQLite's plan grow with guardians × children (seconds at 10,000 students).
    rows = await session.execute(
        select(User.id, User.chat_id, User.locale, User.update_mode, Student.id, Student.name)
        .join(Guardianship, Guardianship.user_id == User.id)
        .join(Student, Student.id == Guardianship.student_id)
        .where(
            User.school_id == school_id,
            User.chat_id.is_not(None),
            User.blocked_at.is_(None),
        )
        .order_by(User.id, Student.student_no)
    )
    readers: dict[int, _Reader] = {}
    for user_id, chat_id, locale, mode, student_id, name in rows.all():
        if student_id not in courses:
            continue
        assert chat_id is not None  # the query asks for guardians with a chat
        reader = readers.setdefault(user_id, _Reader(user_id, chat_id, locale, mode))
        taken = sorted(courses[student_id], key=lambda c: c.starts_at)
        reader.children.append(_Child(student_id, name, taken))
    return list(readers.values())


async def _today(
    session: AsyncSession, school: School, running: dict[int, CourseInfo], day: dt.date
) -> _Day:
    rows = (
        await session.execute(
            select(Session.id, Session.course_id).where(
                Session.course_id.in_(list(running)), Session.date == day
            )
        )
    ).all()
    course_of = {session_id: course_id for session_id, course_id in rows}
    marks: dict[tuple[int, int], str] = {}
    for student_id, session_id, code in (
        await session.execute(
            select(AttendanceMark.student_id, AttendanceMark.session_id, AttendanceMark.code)
            .where(AttendanceMark.session_id.in_(list(course_of)))
            .order_by(AttendanceMark.id)
        )
    ).all():
        marks[(course_of[session_id], student_id)] = code
    codes = {
        code: (emoji, label)
        for code, emoji, label in (
            await session.execute(
                select(AttendanceCode.code, AttendanceCode.emoji, AttendanceCode.label).where(
                    AttendanceCode.school_id == school.id
                )
            )
        ).all()
    }
    dismissals: dict[tuple[int, int], tuple[Dismissal, str | None]] = {}
    for left, person in (
        await session.execute(
            select(Dismissal, PickupPerson.name)
            .outerjoin(PickupPerson, PickupPerson.id == Dismissal.pickup_person_id)
            .where(Dismissal.session_id.in_(list(course_of)))
            .order_by(Dismissal.id)
        )
    ).all():
        dismissals[(course_of[left.session_id], left.student_id)] = (left, person)
    updates: dict[int, list[tuple[DailyUpdate, str | None]]] = {}
    for posted, teacher in (
        await session.execute(
            select(DailyUpdate, Teacher.name)
            .outerjoin(Teacher, Teacher.id == DailyUpdate.teacher_id)
            .where(DailyUpdate.session_id.in_(list(course_of)))
            .order_by(DailyUpdate.id)
        )
    ).all():
        updates.setdefault(course_of[posted.session_id], []).append((posted, teacher))
    leaves: dict[int, list[Leave]] = {}
    for leave in (
        await session.scalars(
            select(Leave)
            .join(Student, Student.id == Leave.student_id)
            .where(Student.school_id == school.id, Leave.date == day, Leave.cancelled_at.is_(None))
        )
    ).all():
        leaves.setdefault(leave.student_id, []).append(leave)
    return _Day(marks, codes, leaves, dismissals, updates, school.timezone)


async def _held(
    session: AsyncSession, school_id: int, user_ids: Iterable[int]
) -> dict[int, list[Outbox]]:
    """The notices waiting for these readers' digest, locked (see `fold_held`)."""
    rows = await session.scalars(
        select(Outbox)
        .where(
            Outbox.school_id == school_id,
            Outbox.status == OutboxStatus.HELD,
            Outbox.user_id.in_(list(user_ids)),
        )
        .order_by(Outbox.user_id, Outbox.created_at, Outbox.id)
        .with_for_update()
    )
    found: dict[int, list[Outbox]] = {}
    for row in rows.all():
        assert row.user_id is not None
        found.setdefault(row.user_id, []).append(row)
    return found


def _held_text(row: Outbox, t: Translator) -> str:
    plain = dataclasses.replace(Claimed.of(row, t.locale), buttons=None, attachment=None)
    return "\n".join(p for p in outbox.render(plain, t).parts if p)


def _render(
    t: Translator,
    school: str,
    day: dt.date,
    reader: _Reader,
    today: _Day,
    running: dict[int, CourseInfo],
) -> tuple[str, list[str]]:
    lines = [
        "<b>"
        + html.escape(t.gettext(HEADER).format(school=school, day=wording.day(t, day)))
        + "</b>"
    ]
    photos: list[str] = []
    shown_updates: set[int] = set()
    for child in reader.children:
        lines += ["", f"<b>{html.escape(child.name)}</b>"]
        for course in child.courses:
            lines.append(
                f"· {html.escape(course.name)} {wording.span(t, course.starts_at, course.ends_at)}"
                f"：{_status(t, today, course, child)}"
            )
            if reader.updates is not UpdateMode.DIGEST or course.id in shown_updates:
                continue
            shown_updates.add(course.id)
            for update, teacher in today.updates.get(course.id, []):
                by = f"{html.escape(teacher)}：" if teacher else ""
                lines.append(f"  💬 {by}{html.escape(update.text)}")
                photos += update.photos or []
    if len(photos) > MAX_PHOTOS:
        lines.append(t.gettext(MORE_PHOTOS).format(shown=MAX_PHOTOS, total=len(photos)))
    return "\n".join(lines), photos


def _status(t: Translator, today: _Day, course: CourseInfo, child: _Child) -> str:
    parts = []
    code = today.marks.get((course.id, child.id))
    if code is None:
        parts.append(t.gettext(NO_ROLL))
    else:
        emoji, label = today.codes.get(code, ("", code))
        parts.append(f"{emoji} {t.gettext(label)}".strip())
    left = today.dismissals.get((course.id, child.id))
    if left is not None:
        row, person = left
        local = row.left_at.astimezone(t.timezone).time()
        parts.append(t.gettext(WAYS[row.way]).format(time=t.time(local), person=person or ""))
    else:
        pickup = next(
            (
                x.pickup_at
                for x in today.leaves.get(child.id, [])
                if x.pickup_at is not None and (x.period is None or x.period == course.period)
            ),
            None,
        )
        if pickup is not None:
            parts.append(t.gettext(EARLY).format(time=t.time(pickup)))
    return html.escape(" · ".join(parts))


# --- the admins' view -------------------------------------------------------------------------

JOB = "digest"  # the scheduler ledger's name for the evening run (bot.jobs)
REFUSED = "evening.refused"


@dataclass(frozen=True)
class Evening:
    """One evening's digest as delivered so far."""

    date: dt.date
    sent: int
    failed: int  # failed, or the guardian blocked the bot
    waiting: int  # still queued or being sent


async def evenings(
    session: AsyncSession, member: Member | None, today: dt.date, days: int = 7
) -> list[Evening] | None:
    """The last `days` evenings' sent / failed counts (newest first; days with none left out);
    None (refused, audited) for anyone but an admin."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED):
        return None
    assert member is not None
    zone = ZoneInfo(member.school_timezone or "Asia/Shanghai")
    since = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), zone)
    rows = await session.execute(
        select(Outbox.created_at, Outbox.status).where(
            Outbox.school_id == member.school_id,
            Outbox.kind == KIND,
            Outbox.created_at >= since.astimezone(dt.UTC),
        )
    )
    counted: dict[dt.date, list[int]] = {}
    for created_at, status in rows.all():
        figures = counted.setdefault(created_at.astimezone(zone).date(), [0, 0, 0])
        if status is OutboxStatus.SENT:
            figures[0] += 1
        elif status in (OutboxStatus.FAILED, OutboxStatus.BLOCKED):
            figures[1] += 1
        elif status in (OutboxStatus.PENDING, OutboxStatus.SENDING):
            figures[2] += 1
    return [Evening(day, *counted[day]) for day in sorted(counted, reverse=True)]


class Early(enum.StrEnum):
    SENT = "sent"
    ALREADY = "already"  # today's run was claimed (at its time, or early) already
    NO_SERVICE = "no_service"  # nothing runs today: there is no day to tell about
    REFUSED = "refused"


@dataclass(frozen=True)
class SentEarly:
    outcome: Early
    built: Built | None = None
    due_at: dt.datetime | None = None  # today's scheduled time, in UTC


async def send_now(
    session: AsyncSession, i18n: I18n, member: Member | None, now: dt.datetime
) -> SentEarly:
    """An admin sends today's evening digest before its time (a half day, an early closing).

    It is today's scheduled run, claimed in the ledger under its own key, so the scheduler
    finds it done at the digest time and nothing goes twice. What happens after it (a later
    update, a dismissal) is not in today's digest.
    """
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED):
        return SentEarly(Early.REFUSED)
    assert member is not None
    school = await session.get(School, member.school_id)
    assert school is not None
    zone = ZoneInfo(school.timezone)
    today = now.astimezone(zone).date()
    due_at = dt.datetime.combine(today, school.digest_time, zone).astimezone(dt.UTC)
    found = await catalogue.of(session, school.id)
    live = [c for c in found.courses.values() if c.cancelled_at is None]
    if not sessions_on(found, live, today):
        return SentEarly(Early.NO_SERVICE, due_at=due_at)
    worker = f"admin:{member.user_id}"
    if not await ledger.claim(session, JOB, school.id, due_at, worker, now):
        return SentEarly(Early.ALREADY, due_at=due_at)
    built = await build(session, i18n, school.id, today, now)
    count = await fold_held(session, i18n, school.id, now)
    await ledger.finish(
        session,
        JOB,
        school.id,
        due_at,
        worker,
        outcome=f"sent early by an admin: {built.families} evening messages, {count} digests",
        now=now,
    )
    audit.record(
        session,
        school.id,
        "evening.sent_early",
        actor_user_id=member.user_id,
        details={"families": built.families, "held": built.held, "digests": count},
    )
    return SentEarly(Early.SENT, built, due_at)


async def fold_held(session: AsyncSession, i18n: I18n, school_id: int, now: dt.datetime) -> int:
    """Fold every notice still held for a digest into one digest message per recipient (those
    `build` did not take into an evening message: a day without service, a family without a
    session today); returns the digests queued."""
    school = await session.get(School, school_id)
    assert school is not None
    rows = await session.execute(
        select(Outbox, User.locale)
        .join(User, User.id == Outbox.user_id)
        .where(Outbox.school_id == school_id, Outbox.status == OutboxStatus.HELD)
        .order_by(Outbox.user_id, Outbox.created_at, Outbox.id)
        # Locked, so a /forget that cancels a held row either comes first (and the row is not
        # folded) or waits until the digest is queued (and then cancels the digest itself).
        .with_for_update(of=Outbox)
    )
    held: dict[int, list[tuple[Outbox, str | None]]] = {}
    for row, locale in rows.all():
        assert row.user_id is not None
        held.setdefault(row.user_id, []).append((row, locale))
    for user_id, items in held.items():
        t = i18n.get(items[0][1] or school.default_locale, school.timezone)
        texts, buttons = [], []
        for row, _ in items:
            # The digest is text; the held messages' buttons go on the digest as a whole.
            plain = dataclasses.replace(Claimed.of(row, t.locale), buttons=None, attachment=None)
            rendered = outbox.render(plain, t)
            texts.append("\n".join(p for p in rendered.parts if p))
            buttons.extend(row.buttons or [])
        header = t.gettext(DIGEST_HEADER).format(count=len(items), school=html.escape(school.name))
        digest_id = await outbox.enqueue(
            session,
            school_id,
            NewMessage(
                chat_id=items[0][0].chat_id,
                user_id=user_id,
                kind="digest",
                priority=Priority.NORMAL,
                text="<b>" + header + "</b>\n\n" + "\n\n— — —\n\n".join(texts),
                buttons=buttons or None,
                dedupe_key=f"digest:{user_id}:{now.date().isoformat()}:{items[-1][0].id}",
            ),
        )
        for row, _ in items:
            row.status = OutboxStatus.DIGESTED
            row.digest_id = digest_id
    return len(held)
