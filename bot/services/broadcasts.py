"""Broadcasts: an admin's notice to an audience, through the outbox, with acknowledgements.

A broadcast is created (now or for later), then *started*: its audience is resolved at that
moment and one outbox row per recipient is written in the same transaction. Its figures
(queued, sent, failed, blocked, acknowledged) are always read from those rows.

An admin's actions are one call each, in the update's one transaction, given the `Member`:
`choices` (what an audience is picked from), `preview` (who would get the notice), `send`,
`recent` (/broadcasts), `stop`, `unconfirmed` and `release`. Each asks the guard first
(`guard.holds(..., Role.ADMIN)`) and checks that every id names something of the member's
school; a refusal is audited in that same transaction and returned as a `Refused` value, and
nothing is changed. They return plain frozen values: names are data (a class's or course's
name, a grade number); turning them into words is the caller's (`bot.broadcasting`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, func, literal_column, null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import audit, deadlines, guard, outbox
from bot.services.members import Member
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
REFUSED = "broadcast.refused"  # the audit action of a refused broadcast press or command


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
class AudienceName:
    """An audience as a reply names it: its kind and what it names, as data.

    `name` is the class's or the course's name, the grade or the period (a number), or None
    for the kinds that name nothing (and for a class or course deleted since).
    """

    kind: AudienceKind
    name: str | int | None = None


@dataclass(frozen=True)
class Recipient:
    user_id: int | None  # None for a group chat
    chat_id: int


class Refused(enum.Enum):
    """Why an admin's action was refused; the refusal is audited, nothing changed."""

    NOT_ADMIN = "not_admin"  # the member is not (or no longer) an admin of their school
    NOT_FOUND = "not_found"  # the id names nothing of the member's school (a forged press)


def may_broadcast(member: Member | None) -> bool:
    """Whether `member` may send broadcasts: for a handler's early, friendly answer. No
    statement and no audit; every action below asks the guard again."""
    return member is not None and member.has(Role.ADMIN)


def _admin(session: AsyncSession, member: Member | None, pressed: str | None) -> Member | None:
    """The member if they are an admin of their school; else None, the refusal audited."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return None
    assert member is not None
    return member


def _not_found(session: AsyncSession, member: Member, pressed: str | None) -> Refused:
    guard.refuse(session, member, REFUSED, pressed)
    return Refused.NOT_FOUND


NEEDS_VALUE = (AudienceKind.GRADE, AudienceKind.CLASS, AudienceKind.COURSE, AudienceKind.PERIOD)
PERIODS = (1, 2)


@dataclass(frozen=True)
class Choice:
    """One value an admin can pick for an audience: a grade, a class, a course or a period."""

    value: int  # the grade, class id, course id or period
    name: str  # the class's or course's name; the grade or period as a number's text


async def choices(
    session: AsyncSession, member: Member | None, kind: AudienceKind, *, pressed: str | None = None
) -> list[Choice] | Refused:
    """What an admin picks from for an audience of `kind`, in the school's order: grades,
    classes, courses (one statement) or the periods (none)."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    if kind not in NEEDS_VALUE:
        return _not_found(session, admin, pressed)
    if kind is AudienceKind.PERIOD:
        return [Choice(p, str(p)) for p in PERIODS]
    school_id = admin.school_id
    if kind is AudienceKind.GRADE:
        grades = await session.scalars(
            select(SchoolClass.grade)
            .where(SchoolClass.school_id == school_id)
            .distinct()
            .order_by(SchoolClass.grade)
        )
        return [Choice(g, str(g)) for g in grades.all()]
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
    return [Choice(value, name) for value, name in rows.all()]


def _well_formed(audience: Audience) -> bool:
    """A value where the kind needs one, and a period that exists; nothing read."""
    value = audience.value
    if audience.kind not in NEEDS_VALUE:
        return value is None
    if value is None:
        return False
    return audience.kind is not AudienceKind.PERIOD or value in PERIODS


def _of_school(school_id: int, audience: Audience) -> Any | None:
    """A scalar that is NULL (or false) unless the audience's class, course or grade is this
    school's: the class's or course's name, whether the grade exists. None when the audience
    names nothing to look up (ids from buttons are never trusted)."""
    value = audience.value
    if audience.kind is AudienceKind.CLASS:
        return (
            select(SchoolClass.name)
            .where(SchoolClass.school_id == school_id, SchoolClass.id == value)
            .scalar_subquery()
        )
    if audience.kind is AudienceKind.COURSE:
        return (
            select(Course.name)
            .where(Course.school_id == school_id, Course.id == value)
            .scalar_subquery()
        )
    if audience.kind is AudienceKind.GRADE:
        return exists().where(SchoolClass.school_id == school_id, SchoolClass.grade == value)
    return None


def _absent(found: Any) -> bool:
    """What `_of_school` gave for a class, course or grade that is not the school's: no name,
    or a false EXISTS (0 on SQLite)."""
    return found is None or found is False or found == 0


def _named(audience: Audience, found: Any) -> AudienceName:
    if audience.kind in (AudienceKind.CLASS, AudienceKind.COURSE):
        return AudienceName(audience.kind, found)
    return AudienceName(audience.kind, audience.value)


@dataclass(frozen=True)
class Preview:
    """Who a notice to this audience would reach now."""

    audience: AudienceName
    count: int  # recipients: people, or the class groups


async def preview(
    session: AsyncSession, member: Member | None, audience: Audience, *, pressed: str | None = None
) -> Preview | Refused:
    """The audience's name and how many it reaches: one statement, which also checks that
    the class, course or grade is the member's school's."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    if not _well_formed(audience):
        return _not_found(session, admin, pressed)
    query = _recipients_query(admin.school_id, audience).order_by(None).subquery()
    count = select(func.count()).select_from(query).scalar_subquery()
    known = _of_school(admin.school_id, audience)
    if known is None:
        return Preview(_named(audience, None), int(await session.scalar(select(count)) or 0))
    row = (await session.execute(select(count, known))).one()
    if _absent(row[1]):
        return _not_found(session, admin, pressed)
    return Preview(_named(audience, row[1]), int(row[0] or 0))


async def audience_names(
    session: AsyncSession, audiences: Sequence[Audience]
) -> list[AudienceName]:
    """The names of these audiences, in their order: one statement for all the classes and
    courses among them (none if there are none)."""
    classes = {a.value for a in audiences if a.kind is AudienceKind.CLASS and a.value is not None}
    courses = {a.value for a in audiences if a.kind is AudienceKind.COURSE and a.value is not None}
    names: dict[tuple[AudienceKind, int], str] = {}
    if classes or courses:
        parts: list[Select[Any, Any, Any]] = []
        if classes:
            parts.append(
                select(literal_column("0"), SchoolClass.id, SchoolClass.name).where(
                    SchoolClass.id.in_(sorted(classes))
                )
            )
        if courses:
            parts.append(
                select(literal_column("1"), Course.id, Course.name).where(
                    Course.id.in_(sorted(courses))
                )
            )
        query = parts[0] if len(parts) == 1 else parts[0].union_all(parts[1])
        for which, value, name in (await session.execute(query)).all():
            kind = AudienceKind.COURSE if int(which) else AudienceKind.CLASS
            names[(kind, value)] = name
    return [
        _named(a, names.get((a.kind, a.value)) if a.value is not None else None) for a in audiences
    ]


async def recipients(session: AsyncSession, school_id: int, audience: Audience) -> list[Recipient]:
    """Who gets the broadcast now, each person once, in a stable order."""
    rows = await session.execute(_recipients_query(school_id, audience))
    return [Recipient(user_id, chat_id) for user_id, chat_id in rows.all() if chat_id is not None]


def _recipients_query(school_id: int, audience: Audience) -> Select[Any, Any]:
    """(user id, chat id) of each recipient, once, ordered; (NULL, chat id) for the groups."""
    if audience.kind is AudienceKind.GROUPS:
        return (
            select(null().label("user_id"), SchoolClass.group_chat_id)
            .where(SchoolClass.school_id == school_id, SchoolClass.group_chat_id.is_not(None))
            .order_by(SchoolClass.grade, SchoolClass.code)
        )
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
    return query.where(User.chat_id.is_not(None)).distinct().order_by(User.id)


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
    status_message_id: int | None = None,
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
        status_message_id=status_message_id,
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


@dataclass(frozen=True)
class Notice:
    """What an admin's draft sends, and how."""

    text: str  # HTML
    audience: Audience
    attachment: dict[str, Any] | None = None  # {"type": "photo" | "document", "file_id": …}
    ack: bool = False  # a confirm button under it
    reping_hours: int | None = None  # remind the unconfirmed once, this long after the start
    urgent: bool = False


async def send(
    session: AsyncSession,
    member: Member | None,
    notice: Notice,
    *,
    scheduled_for: dt.datetime | None = None,
    status_chat_id: int | None = None,
    status_message_id: int | None = None,
    pressed: str | None = None,
    now: dt.datetime | None = None,
) -> Summary | Refused:
    """An admin sends a notice now, or schedules it: the broadcast as its status message shows
    it. Raises `outbox.MessageTooLong` (nothing stored) for a text that cannot be sent."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    audience = notice.audience
    if not _well_formed(audience):
        return _not_found(session, admin, pressed)
    known = _of_school(admin.school_id, audience)
    found = await session.scalar(select(known)) if known is not None else None
    if known is not None and _absent(found):
        return _not_found(session, admin, pressed)  # gone since the preview, or not this school's
    broadcast = await create(
        session,
        admin.school_id,
        sender_user_id=admin.user_id,
        text=notice.text,
        audience=audience,
        attachment=notice.attachment,
        ack=notice.ack,
        reping_hours=notice.reping_hours,
        urgent=notice.urgent,
        scheduled_for=scheduled_for,
        status_chat_id=status_chat_id,
        status_message_id=status_message_id,
        now=now,
    )
    figures = await progress(session, broadcast.id)
    return Summary.of(broadcast, _named(audience, found), figures)


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


EMPTY = Progress(0, 0, 0, 0, 0, 0, 0, 0)


async def progress(session: AsyncSession, broadcast_id: int) -> Progress:
    return (await progress_of(session, [broadcast_id]))[broadcast_id]


async def progress_of(session: AsyncSession, broadcast_ids: Iterable[int]) -> dict[int, Progress]:
    """The figures of each of these broadcasts, in one statement (none for no broadcasts)."""
    ids = sorted(set(broadcast_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(
            Outbox.broadcast_id, Outbox.status, func.count(), func.count(Outbox.acknowledged_at)
        )
        .where(Outbox.broadcast_id.in_(ids), Outbox.kind == "broadcast")
        .group_by(Outbox.broadcast_id, Outbox.status)
    )
    counts: dict[int, dict[OutboxStatus, int]] = {i: {} for i in ids}
    acknowledged = dict.fromkeys(ids, 0)
    for broadcast_id, status, count, acks in rows.all():
        assert broadcast_id is not None
        counts[broadcast_id][status] = count
        acknowledged[broadcast_id] += acks
    return {i: _figures(counts[i], acknowledged[i]) for i in ids}


def _figures(counts: dict[OutboxStatus, int], acknowledged: int) -> Progress:
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


@dataclass(frozen=True)
class Summary:
    """A broadcast as the sender's status message and /broadcasts show it."""

    id: int
    status: BroadcastStatus
    audience: AudienceName
    scheduled_for: dt.datetime | None
    ack_requested: bool
    progress: Progress
    text: str  # the notice, HTML

    @classmethod
    def of(cls, broadcast: Broadcast, audience: AudienceName, figures: Progress) -> Summary:
        return cls(
            broadcast.id,
            broadcast.status,
            audience,
            broadcast.scheduled_for,
            broadcast.ack_requested,
            figures,
            broadcast.text,
        )

    @property
    def cancellable(self) -> bool:
        """Not started yet, or still sending: a cancel stops what has not gone out."""
        return self.status in (BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING)

    @property
    def unconfirmed(self) -> bool:
        """Some who received it have not confirmed it yet."""
        return self.ack_requested and self.progress.sent > self.progress.acknowledged


async def get(session: AsyncSession, school_id: int, broadcast_id: int) -> Broadcast | None:
    """The broadcast if it belongs to this school (ids from buttons are never trusted)."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.school_id != school_id:
        return None
    return broadcast


async def recent(
    session: AsyncSession, member: Member | None, *, pressed: str | None = None
) -> list[Summary] | Refused:
    """The school's latest broadcasts, newest first, with their figures and audiences' names:
    three statements however many there are (the broadcasts; the figures of all of them; the
    names of the classes and courses they went to)."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    rows = (
        await session.execute(
            select(
                Broadcast.id,
                Broadcast.status,
                Broadcast.audience,
                Broadcast.scheduled_for,
                Broadcast.ack_requested,
                Broadcast.text,
            )
            .where(Broadcast.school_id == admin.school_id)
            .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
            .limit(RECENT)
        )
    ).all()
    figures = await progress_of(session, [row.id for row in rows])
    names = await audience_names(session, [Audience.from_json(row.audience) for row in rows])
    return [
        Summary(
            row.id,
            row.status,
            name,
            row.scheduled_for,
            row.ack_requested,
            figures[row.id],
            row.text,
        )
        for row, name in zip(rows, names, strict=True)
    ]


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


async def stop(
    session: AsyncSession, member: Member | None, broadcast_id: int, *, pressed: str | None = None
) -> Cancelled | Refused:
    """An admin's cancel (/broadcasts, or the question about a late one): `cancel`, guarded."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    result = await cancel(session, admin.school_id, broadcast_id, admin.user_id)
    return _not_found(session, admin, pressed) if result is None else result


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


@dataclass(frozen=True)
class Unconfirmed:
    """A recipient who got the notice and has not confirmed it."""

    name: str
    children: tuple[str, ...]  # the children they are a guardian of, by name


async def unconfirmed(
    session: AsyncSession, member: Member | None, broadcast_id: int, *, pressed: str | None = None
) -> list[Unconfirmed] | Refused:
    """Who has not confirmed a broadcast of the admin's school yet: one statement."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    found = await unacknowledged(session, admin.school_id, broadcast_id)
    return _not_found(session, admin, pressed) if found is None else found


async def unacknowledged(
    session: AsyncSession, school_id: int, broadcast_id: int
) -> list[Unconfirmed] | None:
    """Recipients who got the notice and have not confirmed, by name, with their children;
    None if the broadcast is not this school's. One statement."""
    rows = await session.execute(
        select(Broadcast.id, User.id, User.display_name, Student.name)
        .select_from(Broadcast)
        .outerjoin(
            Outbox,
            and_(
                Outbox.broadcast_id == Broadcast.id,
                Outbox.kind == "broadcast",
                Outbox.acknowledged_at.is_(None),
                Outbox.status.in_((OutboxStatus.SENT, OutboxStatus.DIGESTED)),
            ),
        )
        .outerjoin(User, User.id == Outbox.user_id)
        .outerjoin(Guardianship, Guardianship.user_id == User.id)
        .outerjoin(Student, Student.id == Guardianship.student_id)
        .where(Broadcast.id == broadcast_id, Broadcast.school_id == school_id)
        .order_by(User.display_name, User.id, Student.name)
    )
    found = rows.all()
    if not found:
        return None
    people: dict[int, tuple[str, list[str]]] = {}
    for _, user_id, name, child in found:
        if user_id is None:  # nobody (left), or a class group
            continue
        entry = people.setdefault(user_id, (name, []))
        if child:
            entry[1].append(child)
    return [Unconfirmed(name, tuple(children)) for name, children in people.values()]


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


class Release(enum.Enum):
    STARTED = "started"  # it goes out now
    ALREADY = "already"  # it was sent or cancelled meanwhile (by another admin): nothing done


@dataclass(frozen=True)
class Released:
    outcome: Release
    recipients: int = 0  # how many it goes out to (STARTED)


async def release(
    session: AsyncSession,
    member: Member | None,
    broadcast_id: int,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Released | Refused:
    """An admin's go-ahead for a broadcast held after Kehou was down: `send_held`, guarded."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    result = await _release(session, admin.school_id, broadcast_id, admin.user_id, now)
    return _not_found(session, admin, pressed) if result is None else result


async def send_held(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int, now: dt.datetime
) -> int | None:
    """An admin's go-ahead for a held broadcast: it starts now. None if it was not held (sent
    or cancelled meanwhile, or not this school's); else the number of recipients."""
    result = await _release(session, school_id, broadcast_id, actor_user_id, now)
    if result is None or result.outcome is not Release.STARTED:
        return None
    return result.recipients


async def _release(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int, now: dt.datetime
) -> Released | None:
    """Start a held broadcast (compare-and-set); None if it is not this school's."""
    broadcast = await session.scalar(
        select(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.school_id == school_id)
        .execution_options(populate_existing=True)
    )
    if broadcast is None:
        return None
    if broadcast.held_at is None:
        return Released(Release.ALREADY)
    count = await start(session, broadcast, now)
    if count is None:
        return Released(Release.ALREADY)
    audit.record(
        session,
        school_id,
        "broadcast.release",
        actor_user_id=actor_user_id,
        target=("broadcast", broadcast.id),
        details={"scheduled_for": _iso(broadcast.scheduled_for), "recipients": count},
    )
    return Released(Release.STARTED, count)


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
