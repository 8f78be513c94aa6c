"""Broadcasts: an admin's notice to an audience, through the outbox, with acknowledgements.

A broadcast is created (now or for later), then *started*: its audience is resolved at that
moment and one outbox row per recipient is written in the same transaction. Its figures
(queued, sent, failed, blocked, acknowledged) are always read from those rows.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import audit, deadlines, outbox
from bot.services.outbox import NewMessage
from storage.models import (
    Bill,
    BillLine,
    BillStatus,
    Broadcast,
    BroadcastStatus,
    Course,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    School,
    SchoolClass,
    Student,
    User,
    UserRole,
    utcnow,
)

ACK_LABEL = N_("✅ Got it")
REPING_TEMPLATE = N_("⏰ Reminder: please confirm that you have read this notice.\n\n{html}")
RECENT = 10


class AudienceKind(enum.StrEnum):
    PARENTS = "parents"  # every linked guardian
    GRADE = "grade"  # guardians of children in one grade
    CLASS = "class"  # guardians of children in one class
    COURSE = "course"  # guardians of children enrolled in one course
    PERIOD = "period"  # guardians of children enrolled in a course of period 1 or 2
    UNPAID = "unpaid"  # guardians of children with an unpaid bill line
    TEACHERS = "teachers"  # every teacher
    GROUPS = "groups"  # the class parents' groups the bot is in


@dataclass(frozen=True)
class Audience:
    kind: AudienceKind
    value: int | None = None  # the grade, class id, course id or period

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "value": self.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audience:
        return cls(AudienceKind(data["kind"]), data.get("value"))


@dataclass(frozen=True)
class Recipient:
    user_id: int | None  # None for a group chat
    chat_id: int


async def audience_values(
    session: AsyncSession, school_id: int, kind: AudienceKind
) -> list[tuple[int, str]]:
    """What an admin picks from for an audience of `kind`: grades (value, the grade again),
    classes (id, name) or courses (id, name), in the school's order. One statement."""
    if kind is AudienceKind.GRADE:
        grades = await session.scalars(
            select(SchoolClass.grade)
            .where(SchoolClass.school_id == school_id)
            .distinct()
            .order_by(SchoolClass.grade)
        )
        return [(g, str(g)) for g in grades.all()]
    if kind is AudienceKind.CLASS:
        rows = await session.execute(
            select(SchoolClass.id, SchoolClass.name)
            .where(SchoolClass.school_id == school_id)
            .order_by(SchoolClass.grade, SchoolClass.code)
        )
    else:
        rows = await session.execute(
            select(Course.id, Course.name)
            .where(Course.school_id == school_id)
            .order_by(Course.period, Course.code)
        )
    return [(value, name) for value, name in rows.all()]


NEEDS_VALUE = (AudienceKind.GRADE, AudienceKind.CLASS, AudienceKind.COURSE, AudienceKind.PERIOD)


async def audience_is_valid(session: AsyncSession, school_id: int, audience: Audience) -> bool:
    """The audience names only things of this school (ids from buttons are never trusted)."""
    value = audience.value
    if audience.kind not in NEEDS_VALUE:
        return value is None
    if value is None:
        return False
    if audience.kind is AudienceKind.PERIOD:
        return value in (1, 2)
    if audience.kind is AudienceKind.COURSE:
        query = select(Course.id).where(Course.school_id == school_id, Course.id == value)
    else:
        column = SchoolClass.grade if audience.kind is AudienceKind.GRADE else SchoolClass.id
        query = select(SchoolClass.id).where(SchoolClass.school_id == school_id, column == value)
    return (await session.scalar(query.limit(1))) is not None


async def recipients(session: AsyncSession, school_id: int, audience: Audience) -> list[Recipient]:
    """Who gets the broadcast now, each person once, in a stable order."""
    if audience.kind is AudienceKind.GROUPS:
        chats = await session.scalars(
            select(SchoolClass.group_chat_id)
            .where(SchoolClass.school_id == school_id, SchoolClass.group_chat_id.is_not(None))
            .order_by(SchoolClass.grade, SchoolClass.code)
        )
        return [Recipient(None, c) for c in chats.all() if c is not None]
    if audience.kind is AudienceKind.TEACHERS:
        query = (
            select(User.id, User.chat_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(User.school_id == school_id, UserRole.role == Role.TEACHER)
        )
    else:
        query = (
            select(User.id, User.chat_id)
            .join(Guardianship, Guardianship.user_id == User.id)
            .join(Student, Student.id == Guardianship.student_id)
            .where(User.school_id == school_id)
        )
        query = query.where(_children(audience, school_id))
    rows = await session.execute(
        query.where(User.chat_id.is_not(None)).distinct().order_by(User.id)
    )
    return [Recipient(user_id, chat_id) for user_id, chat_id in rows.all() if chat_id is not None]


def _children(audience: Audience, school_id: int) -> Any:
    """The condition on `Student` for a guardians' audience."""
    value = audience.value
    enrolled = and_(
        Enrolment.student_id == Student.id, Enrolment.status == EnrolmentStatus.ENROLLED
    )
    match audience.kind:
        case AudienceKind.PARENTS:
            return Student.active.is_(True)
        case AudienceKind.GRADE:
            return Student.class_id.in_(
                select(SchoolClass.id).where(
                    SchoolClass.school_id == school_id, SchoolClass.grade == value
                )
            )
        case AudienceKind.CLASS:
            return Student.class_id == value
        case AudienceKind.COURSE:
            return exists().where(enrolled, Enrolment.course_id == value)
        case AudienceKind.PERIOD:
            return exists().where(
                enrolled,
                Enrolment.course_id.in_(
                    select(Course.id).where(Course.school_id == school_id, Course.period == value)
                ),
            )
        case AudienceKind.UNPAID:
            return exists().where(
                Bill.student_id == Student.id,
                BillLine.bill_id == Bill.id,
                BillLine.status == BillStatus.UNPAID,
            )
    raise ValueError(f"not a guardians' audience: {audience.kind}")


async def create(
    session: AsyncSession,
    school_id: int,
    *,
    sender_user_id: int,
    text: str,
    audience: Audience,
    attachment: dict[str, Any] | None = None,
    ack: bool = False,
    reping_hours: int | None = None,
    urgent: bool = False,
    scheduled_for: dt.datetime | None = None,
    status_chat_id: int | None = None,
    now: dt.datetime | None = None,
) -> Broadcast:
    """Record a broadcast; start it at once unless it is scheduled for later."""
    now = now or utcnow()
    if attachment is None:
        outbox.split_html(text)  # refuse what cannot be sent, before anything is stored
    broadcast = Broadcast(
        school_id=school_id,
        created_by_user_id=sender_user_id,
        text=text,
        audience=audience.to_json(),
        attachment=attachment,
        status=BroadcastStatus.SCHEDULED,
        scheduled_for=scheduled_for,
        ack_requested=ack,
        reping_after_hours=reping_hours if ack else None,
        priority=int(Priority.URGENT if urgent else Priority.BULK),
        recipients=0,
        status_chat_id=status_chat_id,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    audit.record(
        session,
        school_id,
        "broadcast.create",
        actor_user_id=sender_user_id,
        target=("broadcast", broadcast.id),
        details={
            "audience": audience.to_json(),
            "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
            "ack": ack,
            "urgent": urgent,
        },
    )
    if scheduled_for is None or scheduled_for <= now:
        await start(session, broadcast, now)
    return broadcast


async def start(session: AsyncSession, broadcast: Broadcast, now: dt.datetime) -> int | None:
    """Move a scheduled broadcast to sending, then resolve its audience and write one outbox
    row per recipient; returns their number, or None when it was no longer scheduled (an
    admin cancelled it meanwhile): then nothing is written."""
    won = await _set_status(
        session,
        broadcast,
        BroadcastStatus.SCHEDULED,
        BroadcastStatus.SENDING,
        started_at=now,
        held_at=None,
    )
    if not won:
        return None
    people = await recipients(session, broadcast.school_id, Audience.from_json(broadcast.audience))
    buttons = (
        [[{"label": ACK_LABEL, "data": f"ack:{broadcast.id}"}]]
        if broadcast.ack_requested
        else None
    )
    await outbox.enqueue_many(
        session,
        broadcast.school_id,
        [
            NewMessage(
                chat_id=p.chat_id,
                user_id=p.user_id,
                kind="broadcast",
                priority=Priority(broadcast.priority),
                text=broadcast.text,
                buttons=buttons if p.user_id is not None else None,
                attachment=broadcast.attachment,
                dedupe_key=f"broadcast:{broadcast.id}:{p.chat_id}",
                broadcast_id=broadcast.id,
            )
            for p in people
        ],
        now=now,
    )
    await session.execute(
        update(Broadcast).where(Broadcast.id == broadcast.id).values(recipients=len(people))
    )
    set_committed_value(broadcast, "recipients", len(people))
    return len(people)


async def _set_status(
    session: AsyncSession,
    broadcast: Broadcast,
    expected: BroadcastStatus,
    new: BroadcastStatus,
    **values: Any,
) -> bool:
    """Compare-and-set: True if this transaction moved the broadcast from `expected`."""
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast.id, Broadcast.status == expected)
        .values(status=new, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # The row is ours now; keep the loaded copy in step without a second, blind UPDATE.
    set_committed_value(broadcast, "status", new)
    for name, value in values.items():
        set_committed_value(broadcast, name, value)
    return True


@dataclass(frozen=True)
class Progress:
    total: int
    queued: int  # pending or sending
    held: int  # waiting for the recipients' daily digest (their choice, or the daily cap)
    sent: int  # delivered, in a digest or on its own
    failed: int
    blocked: int
    cancelled: int
    acknowledged: int

    @property
    def finished(self) -> bool:
        return self.queued == 0


async def progress(session: AsyncSession, broadcast_id: int) -> Progress:
    rows = await session.execute(
        select(Outbox.status, func.count(), func.count(Outbox.acknowledged_at))
        .where(Outbox.broadcast_id == broadcast_id, Outbox.kind == "broadcast")
        .group_by(Outbox.status)
    )
    counts: dict[OutboxStatus, int] = {}
    acknowledged = 0
    for status, count, acks in rows.all():
        counts[status] = count
        acknowledged += acks
    return Progress(
        total=sum(counts.values()),
        queued=counts.get(OutboxStatus.PENDING, 0) + counts.get(OutboxStatus.SENDING, 0),
        held=counts.get(OutboxStatus.HELD, 0),
        sent=counts.get(OutboxStatus.SENT, 0) + counts.get(OutboxStatus.DIGESTED, 0),
        failed=counts.get(OutboxStatus.FAILED, 0),
        blocked=counts.get(OutboxStatus.BLOCKED, 0),
        cancelled=counts.get(OutboxStatus.CANCELLED, 0),
        acknowledged=acknowledged,
    )


async def get(session: AsyncSession, school_id: int, broadcast_id: int) -> Broadcast | None:
    """The broadcast if it belongs to this school (ids from buttons are never trusted)."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.school_id != school_id:
        return None
    return broadcast


async def recent(session: AsyncSession, school_id: int) -> list[Broadcast]:
    rows = await session.scalars(
        select(Broadcast)
        .where(Broadcast.school_id == school_id)
        .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
        .limit(RECENT)
    )
    return list(rows.all())


class Stop(enum.Enum):
    CANCELLED = "cancelled"  # it had not started: nothing went out
    STOPPED = "stopped"  # it had started: what was sent stays sent, the rest is cancelled
    FINISHED = "finished"  # nothing left to stop (done, or cancelled already)


@dataclass(frozen=True)
class Cancelled:
    outcome: Stop
    sent: int = 0  # what had gone out already (STOPPED)


async def cancel(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int
) -> Cancelled | None:
    """Stop a scheduled or running broadcast: what has not gone out yet never will.

    Compare-and-set against the status read fresh from the database, so a cancel and the
    tick that starts the broadcast at the same moment never both win: either the tick finds
    it cancelled and sends nothing, or the cancel finds it sending and says how many went out.
    None if the broadcast is not this school's.
    """
    for _ in range(3):
        broadcast = await session.scalar(
            select(Broadcast)
            .where(Broadcast.id == broadcast_id)
            .execution_options(populate_existing=True)
        )
        if broadcast is None or broadcast.school_id != school_id:
            return None
        status = broadcast.status
        if status not in (BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING):
            return Cancelled(Stop.FINISHED)
        if await _set_status(
            session, broadcast, status, BroadcastStatus.CANCELLED, cancelled_at=utcnow()
        ):
            break
    else:
        return Cancelled(Stop.FINISHED)
    await session.execute(
        update(Outbox)
        .where(
            Outbox.broadcast_id == broadcast.id,
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.HELD)),
        )
        .values(status=OutboxStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        school_id,
        "broadcast.cancel",
        actor_user_id=actor_user_id,
        target=("broadcast", broadcast.id),
        details={"was": str(status)},
    )
    if status is BroadcastStatus.SCHEDULED:
        return Cancelled(Stop.CANCELLED)
    return Cancelled(Stop.STOPPED, (await progress(session, broadcast.id)).sent)


class Ack(enum.Enum):
    RECORDED = "recorded"
    ALREADY = "already"
    NOT_YOURS = "not_yours"  # the presser was not a recipient (forged or forwarded button)


async def acknowledge(
    session: AsyncSession, broadcast_id: int, telegram_id: int, now: dt.datetime | None = None
) -> Ack:
    row_id = await session.scalar(
        select(Outbox.id)
        .join(User, User.id == Outbox.user_id)
        .where(
            Outbox.broadcast_id == broadcast_id,
            Outbox.kind == "broadcast",
            User.telegram_id == telegram_id,
        )
    )
    if row_id is None:
        return Ack.NOT_YOURS
    # Compare-and-set: of two taps at once (or on two devices) one records, the other is told.
    done = await session.execute(
        update(Outbox)
        .where(Outbox.id == row_id, Outbox.acknowledged_at.is_(None))
        .values(acknowledged_at=now or utcnow())
    )
    return Ack.RECORDED if done.rowcount == 1 else Ack.ALREADY  # type: ignore[attr-defined]


async def unacknowledged(
    session: AsyncSession, school_id: int, broadcast_id: int
) -> list[tuple[str, list[str]]]:
    """Recipients who got the notice and have not confirmed: (name, their children)."""
    rows = await session.execute(
        select(User.id, User.display_name, Student.name)
        .join(Outbox, Outbox.user_id == User.id)
        .outerjoin(Guardianship, Guardianship.user_id == User.id)
        .outerjoin(Student, Student.id == Guardianship.student_id)
        .where(
            Outbox.school_id == school_id,
            Outbox.broadcast_id == broadcast_id,
            Outbox.kind == "broadcast",
            Outbox.acknowledged_at.is_(None),
            Outbox.status.in_((OutboxStatus.SENT, OutboxStatus.DIGESTED)),
        )
        .order_by(User.display_name, User.id, Student.name)
    )
    people: dict[int, tuple[str, list[str]]] = {}
    for user_id, name, child in rows.all():
        entry = people.setdefault(user_id, (name, []))
        if child:
            entry[1].append(child)
    return list(people.values())


async def due_scheduled(session: AsyncSession, now: dt.datetime) -> list[Broadcast]:
    rows = await session.scalars(
        select(Broadcast).where(
            Broadcast.status == BroadcastStatus.SCHEDULED,
            Broadcast.scheduled_for <= now,
            Broadcast.held_at.is_(None),
        )
    )
    return list(rows.all())


async def running(session: AsyncSession) -> list[Broadcast]:
    rows = await session.scalars(
        select(Broadcast).where(Broadcast.status == BroadcastStatus.SENDING)
    )
    return list(rows.all())


def reping_due(school: School, broadcast: Broadcast) -> dt.datetime:
    """When the reminder goes out: `reping_after_hours` after the start, never in the school's
    quiet hours (a reminder due at 23:00 waits until the morning)."""
    assert broadcast.started_at is not None and broadcast.reping_after_hours is not None
    return deadlines.family_deadline(school, broadcast.started_at, broadcast.reping_after_hours)


async def due_repings(session: AsyncSession, now: dt.datetime) -> list[Broadcast]:
    rows = await session.execute(
        select(Broadcast, School)
        .join(School, School.id == Broadcast.school_id)
        .where(
            Broadcast.ack_requested.is_(True),
            Broadcast.reping_after_hours.is_not(None),
            Broadcast.reping_at.is_(None),
            Broadcast.started_at.is_not(None),
            or_(
                Broadcast.status == BroadcastStatus.SENDING,
                Broadcast.status == BroadcastStatus.DONE,
            ),
        )
    )
    return [b for b, school in rows.all() if reping_due(school, b) <= now]


async def reping(session: AsyncSession, broadcast: Broadcast, now: dt.datetime) -> int:
    """Remind, once, those who got the notice and have not confirmed it."""
    rows = await session.execute(
        select(Outbox.user_id, Outbox.chat_id).where(
            Outbox.broadcast_id == broadcast.id,
            Outbox.kind == "broadcast",
            Outbox.acknowledged_at.is_(None),
            Outbox.status == OutboxStatus.SENT,
        )
    )
    reminders = [
        NewMessage(
            chat_id=chat_id,
            user_id=user_id,
            kind="broadcast_reping",
            priority=Priority(broadcast.priority),
            template=REPING_TEMPLATE,
            params={"html": broadcast.text},
            buttons=[[{"label": ACK_LABEL, "data": f"ack:{broadcast.id}"}]],
            dedupe_key=f"broadcast-reping:{broadcast.id}:{chat_id}",
            broadcast_id=broadcast.id,
        )
        for user_id, chat_id in rows.all()
    ]
    await outbox.enqueue_many(session, broadcast.school_id, reminders, now=now)
    broadcast.reping_at = now
    return len(reminders)


async def finish(
    session: AsyncSession, broadcast: Broadcast, figures: Progress, now: dt.datetime
) -> bool:
    """Mark a running broadcast done once nothing of it is queued; True if it just finished.

    Messages held for a digest do not keep it running: they go out with the digest. Only a
    broadcast still sending is marked (a cancel meanwhile stays a cancel).
    """
    if broadcast.status is not BroadcastStatus.SENDING or not figures.finished:
        return False
    return await _set_status(
        session, broadcast, BroadcastStatus.SENDING, BroadcastStatus.DONE, finished_at=now
    )


async def hold(session: AsyncSession, broadcast: Broadcast, now: dt.datetime) -> bool:
    """A scheduled broadcast missed by too much waits for an admin; True if held just now."""
    result = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.id == broadcast.id,
            Broadcast.status == BroadcastStatus.SCHEDULED,
            Broadcast.held_at.is_(None),
        )
        .values(held_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    set_committed_value(broadcast, "held_at", now)
    return True


async def send_held(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int, now: dt.datetime
) -> int | None:
    """An admin's go-ahead for a held broadcast: it starts now. None if it was not held (sent
    or cancelled meanwhile, or not this school's); else the number of recipients."""
    broadcast = await session.scalar(
        select(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.school_id == school_id)
        .execution_options(populate_existing=True)
    )
    if broadcast is None or broadcast.held_at is None:
        return None
    count = await start(session, broadcast, now)
    if count is not None:
        audit.record(
            session,
            school_id,
            "broadcast.release",
            actor_user_id=actor_user_id,
            target=("broadcast", broadcast.id),
            details={"scheduled_for": _iso(broadcast.scheduled_for), "recipients": count},
        )
    return count


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


LATE_TEXT = N_(
    "⏸ Broadcast #{id} was scheduled for {when}, but Kehou was not running then, so it has "
    "not gone out. Send it now, or cancel it?\n\n{snippet}"
)
SEND_NOW_LABEL = N_("Send now")
CANCEL_LATE_LABEL = N_("Cancel it")


async def ask_about_late(session: AsyncSession, broadcast: Broadcast, now: dt.datetime) -> int:
    """Ask the school's admins for a go-ahead on a held broadcast; returns how many were asked."""
    admins = await session.execute(
        select(User.id, User.chat_id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(
            User.school_id == broadcast.school_id,
            UserRole.role == Role.ADMIN,
            User.chat_id.is_not(None),
        )
        .order_by(User.id)
    )
    plain = " ".join(outbox.visible_text(broadcast.text).split())
    questions = [
        NewMessage(
            chat_id=chat_id,
            user_id=user_id,
            kind="broadcast_late",
            priority=Priority.INTERACTIVE,
            template=LATE_TEXT,
            params={
                "id": broadcast.id,
                "when": {"$datetime": _iso(broadcast.scheduled_for)},
                "snippet": plain if len(plain) <= 200 else plain[:199] + "…",
            },
            buttons=[
                [
                    {"label": SEND_NOW_LABEL, "data": f"lb:s:{broadcast.id}"},
                    {"label": CANCEL_LATE_LABEL, "data": f"lb:c:{broadcast.id}"},
                ]
            ],
            dedupe_key=f"broadcast-late:{broadcast.id}:{user_id}",
        )
        for user_id, chat_id in admins.all()
        if chat_id is not None
    ]
    await outbox.enqueue_many(session, broadcast.school_id, questions, now=now)
    return len(questions)
