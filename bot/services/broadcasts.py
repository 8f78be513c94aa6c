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

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import audit, deadlines, guard, outbox
from bot.services.family import SentCopy
from bot.services.members import Member
from bot.services.outbox import NewMessage
from storage.models import (
    Bill,
    BillEntry,
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
# Every notice carries a header in the reader's language: the school, the sender, what it is.
# The admin's own text ({html}) is never translated.
NOTICE_TEMPLATE = N_("<b>📣 {school} · Notice</b>\nFrom: {sender}\n\n{html}")
REPING_TEMPLATE = N_(
    "<b>⏰ {school} · Reminder</b>\nFrom: {sender}\nPlease confirm that you have read this "
    "notice.\n\n{html}"
)
MAX_PICK = 40  # classes picked for one notice at most (the choice screen pages through them)
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
    # Several classes (CLASS: their parents; GROUPS: their parents' groups, none = all groups)
    values: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": str(self.kind), "value": self.value}
        if self.values:
            found["values"] = list(self.values)
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audience:
        values = data.get("values") or ()
        return cls(AudienceKind(data["kind"]), data.get("value"), tuple(int(v) for v in values))

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes this audience names, one or several; () if it names none."""
        if self.values:
            return self.values
        if self.kind is AudienceKind.CLASS and self.value is not None:
            return (self.value,)
        return ()


@dataclass(frozen=True)
class AudienceName:
    """An audience as a reply names it: its kind and what it names, as data.

    `name` is the class's or the course's name, the grade or the period (a number), or None
    for the kinds that name nothing (and for a class or course deleted since).
    """

    kind: AudienceKind
    name: str | int | None = None
    several: int = 0  # several classes (or their groups): how many; the name is then None


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
    session: AsyncSession,
    member: Member | None,
    kind: AudienceKind,
    *,
    pick: int | None = None,
    pressed: str | None = None,
) -> list[Choice] | Refused:
    """What an admin picks from for an audience of `kind`, in the school's order: grades,
    classes, courses (one statement) or the periods (none); for GROUPS, the classes whose
    parents' group the bot is in. `pick`: the class (or group) the press picks, refused
    (audited) unless it is among them."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    if kind not in (*NEEDS_VALUE, AudienceKind.GROUPS):
        return _not_found(session, admin, pressed)
    found = await _choices(session, admin.school_id, kind)
    if pick is not None and all(c.value != pick for c in found):
        return _not_found(session, admin, pressed)
    return found


async def _choices(session: AsyncSession, school_id: int, kind: AudienceKind) -> list[Choice]:
    if kind is AudienceKind.PERIOD:
        return [Choice(p, str(p)) for p in PERIODS]
    if kind is AudienceKind.GRADE:
        grades = await session.scalars(
            select(SchoolClass.grade)
            .where(SchoolClass.school_id == school_id)
            .distinct()
            .order_by(SchoolClass.grade)
        )
        return [Choice(g, str(g)) for g in grades.all()]
    if kind in (AudienceKind.CLASS, AudienceKind.GROUPS):
        query = select(SchoolClass.id, SchoolClass.name).where(SchoolClass.school_id == school_id)
        if kind is AudienceKind.GROUPS:
            query = query.where(SchoolClass.group_chat_id.is_not(None))
        rows = await session.execute(query.order_by(SchoolClass.grade, SchoolClass.code))
    else:
        rows = await session.execute(
            select(Course.id, Course.name)
            .where(Course.school_id == school_id)
            .order_by(Course.period, Course.code)
        )
    return [Choice(value, name) for value, name in rows.all()]


def _well_formed(audience: Audience) -> bool:
    """A value where the kind needs one, and a period that exists; nothing read."""
    value, values = audience.value, audience.values
    if len(values) != len(set(values)) or len(values) > MAX_PICK:
        return False
    if audience.kind is AudienceKind.GROUPS:
        return value is None
    if audience.kind is AudienceKind.CLASS and values:
        return value is None
    if values:
        return False
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
    if audience.values:
        of_school = [SchoolClass.school_id == school_id, SchoolClass.id.in_(audience.values)]
        if audience.kind is AudienceKind.GROUPS:
            of_school.append(SchoolClass.group_chat_id.is_not(None))
        if len(audience.values) == 1:  # its name, or NULL
            return select(SchoolClass.name).where(*of_school).scalar_subquery()
        return select(func.count()).select_from(SchoolClass).where(*of_school).scalar_subquery()
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


def _absent(found: Any, audience: Audience | None = None) -> bool:
    """What `_of_school` gave for a class, course or grade that is not the school's: no name,
    or a false EXISTS (0 on SQLite); for several classes, fewer of them than were named."""
    if audience is not None and len(audience.values) > 1:
        return found != len(audience.values)
    return found is None or found is False or found == 0


def _named(audience: Audience, found: Any) -> AudienceName:
    if len(audience.values) > 1:
        return AudienceName(audience.kind, None, len(audience.values))
    if audience.values or audience.kind in (AudienceKind.CLASS, AudienceKind.COURSE):
        return AudienceName(audience.kind, found)
    return AudienceName(audience.kind, audience.value)


@dataclass(frozen=True)
class Preview:
    """Who a notice to this audience would reach now."""

    audience: AudienceName
    count: int  # recipients: people, or the class groups
    families: int = 0  # the families those people make (guardians sharing a child: one)
    parents: int = 0  # for class groups: the parents of those classes, in or out of the groups

    @property
    def groups(self) -> bool:
        return self.audience.kind is AudienceKind.GROUPS


def family_key(schools: Any) -> Any:
    """(user, key) for every guardian of these schools (`schools`: a school id, or a subquery
    of them): their family, as one of its guardians' ids. A child's key is the least of its
    guardians' ids; a guardian's is the least of their children's keys. So both parents of a
    child (and of all their children) are one family; a person with no child (a teacher) has
    no row and is a family alone (`func.coalesce(key, user id)`). Computed by the database:
    counting the families of 10,000 recipients reads no rows into Python."""
    of_school = (
        Guardianship.school_id == schools
        if isinstance(schools, int)
        else Guardianship.school_id.in_(schools)
    )
    child = (
        select(Guardianship.student_id.label("child"), func.min(Guardianship.user_id).label("key"))
        .where(of_school)
        .group_by(Guardianship.student_id)
        .subquery()
    )
    return (
        select(Guardianship.user_id.label("user"), func.min(child.c.key).label("key"))
        .join(child, child.c.child == Guardianship.student_id)
        .where(of_school)
        .group_by(Guardianship.user_id)
        .subquery()
    )


async def preview(
    session: AsyncSession, member: Member | None, audience: Audience, *, pressed: str | None = None
) -> Preview | Refused:
    """The audience's name and how many people, families (or groups) it reaches: one
    statement, which also checks that the classes, course or grade are the member's school's."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    if not _well_formed(audience):
        return _not_found(session, admin, pressed)
    school_id = admin.school_id
    known = _of_school(school_id, audience)
    checked = known if known is not None else literal(1)
    if audience.kind is AudienceKind.GROUPS:
        groups = _recipients_query(school_id, audience).order_by(None).subquery()
        reached = (
            select(func.count(func.distinct(User.id)))
            .join(Guardianship, Guardianship.user_id == User.id)
            .join(Student, Student.id == Guardianship.student_id)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .where(*_group_classes(school_id, audience), Student.active.is_(True))
            .scalar_subquery()
        )
        count = select(func.count()).select_from(groups).scalar_subquery()
        row = (await session.execute(select(count, reached, checked))).one()
        if known is not None and _absent(row[2], audience):
            return _not_found(session, admin, pressed)
        return Preview(_named(audience, row[2]), int(row[0] or 0), parents=int(row[1] or 0))
    people = _recipients_query(school_id, audience).order_by(None).subquery()
    person = next(iter(people.c))
    keys = family_key(school_id)
    counted = (
        select(
            func.count(person).label("people"),
            func.count(func.distinct(func.coalesce(keys.c.key, person))).label("families"),
        )
        .select_from(people)
        .outerjoin(keys, keys.c.user == person)
        .subquery()
    )
    one = select(literal(1).label("one")).subquery()
    row = (
        await session.execute(
            select(checked, counted.c.people, counted.c.families).select_from(
                one.outerjoin(counted, true())
            )
        )
    ).one()
    if known is not None and _absent(row[0], audience):
        return _not_found(session, admin, pressed)
    people_count = int(row[1] or 0)
    return Preview(_named(audience, row[0]), people_count, int(row[2] or 0), people_count)


async def audience_names(
    session: AsyncSession, audiences: Sequence[Audience]
) -> list[AudienceName]:
    """The names of these audiences, in their order: one statement for all the classes and
    courses among them (none if there are none)."""
    classes = {a.classes[0] for a in audiences if len(a.classes) == 1}
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
    return [_named(a, _name_of(a, names)) for a in audiences]


def _name_of(audience: Audience, names: dict[tuple[AudienceKind, int], str]) -> str | None:
    if len(audience.classes) == 1:
        return names.get((AudienceKind.CLASS, audience.classes[0]))
    if audience.value is None:
        return None
    return names.get((audience.kind, audience.value))


async def recipients(session: AsyncSession, school_id: int, audience: Audience) -> list[Recipient]:
    """Who gets the broadcast now, each person once, in a stable order."""
    rows = await session.execute(_recipients_query(school_id, audience))
    return [Recipient(user_id, chat_id) for user_id, chat_id in rows.all() if chat_id is not None]


def _group_classes(school_id: int, audience: Audience) -> list[Any]:
    """The conditions on `SchoolClass` for a notice to class groups: all of them, or some."""
    found = [SchoolClass.school_id == school_id, SchoolClass.group_chat_id.is_not(None)]
    if audience.values:
        found.append(SchoolClass.id.in_(audience.values))
    return found


def _recipients_query(school_id: int, audience: Audience) -> Select[Any, Any]:
    """(user id, chat id) of each recipient, once, ordered; (NULL, chat id) for the groups."""
    if audience.kind is AudienceKind.GROUPS:
        return (
            select(null().label("user_id"), SchoolClass.group_chat_id)
            .where(*_group_classes(school_id, audience))
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
            return Student.class_id.in_(audience.classes)
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
            return Student.id.in_(
                select(Bill.student_id)
                .join(BillEntry, BillEntry.bill_id == Bill.id)
                .where(Bill.school_id == school_id)
                .group_by(Bill.id, Bill.student_id)
                .having(func.sum(BillEntry.amount_fen) > 0)
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
    if audience.kind is AudienceKind.GROUPS:
        ack = False  # a class group stays quiet: nobody in it is asked to press anything
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
    if known is not None and _absent(found, audience):
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
    figures = await progress(session, broadcast.id, ack=broadcast.ack_requested)
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
    header, _school = await _header(session, broadcast)
    await outbox.enqueue_many(
        session,
        broadcast.school_id,
        [
            NewMessage(
                chat_id=p.chat_id,
                user_id=p.user_id,
                kind="broadcast",
                priority=Priority(broadcast.priority),
                template=NOTICE_TEMPLATE,
                params=header | {"html": broadcast.text},
                buttons=buttons if p.user_id is not None else None,
                attachment=broadcast.attachment,
                dedupe_key=f"broadcast:{broadcast.id}:{p.chat_id}",
                broadcast_id=broadcast.id,
                # A notice that asks for a confirmation is read when it comes, not at 19:00.
                digest=not broadcast.ack_requested,
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


async def _header(session: AsyncSession, broadcast: Broadcast) -> tuple[dict[str, Any], School]:
    """The header's parameters: the school's name and the sender's (one statement), and the
    school: kept by the caller, the notice budget that comes next finds it loaded."""
    school, sender = (
        await session.execute(
            select(School, User.display_name)
            .select_from(School)
            .outerjoin(User, User.id == broadcast.created_by_user_id)
            .where(School.id == broadcast.school_id)
        )
    ).one()
    return {"school": school.name, "sender": sender or school.name}, school


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
    acknowledged: int  # people who confirmed
    # Families (guardians sharing a child count once) whose copy was delivered or waits in
    # their digest, and those of them where someone confirmed: only with a confirm button.
    families: int = 0
    confirmed: int = 0

    @property
    def finished(self) -> bool:
        return self.queued == 0


EMPTY = Progress(0, 0, 0, 0, 0, 0, 0, 0)
REACHED = (OutboxStatus.SENT, OutboxStatus.DIGESTED, OutboxStatus.HELD)


async def progress(session: AsyncSession, broadcast_id: int, *, ack: bool = False) -> Progress:
    return (await progress_of(session, [broadcast_id], acks=[broadcast_id] if ack else ()))[
        broadcast_id
    ]


async def progress_of(
    session: AsyncSession, broadcast_ids: Iterable[int], *, acks: Iterable[int] = ()
) -> dict[int, Progress]:
    """The figures of each of these broadcasts, in one statement (none for no broadcasts);
    a second one for the families of those that asked for a confirmation (`acks`)."""
    ids = sorted(set(broadcast_ids))
    if not ids:
        return {}
    figures = await _progress_of(session, ids)
    confirming = sorted(set(acks) & set(ids))
    if not confirming:
        return figures
    for broadcast_id, (count, confirmed) in (await family_figures(session, confirming)).items():
        figures[broadcast_id] = dataclasses.replace(
            figures[broadcast_id], families=count, confirmed=confirmed
        )
    return figures


async def family_figures(
    session: AsyncSession, broadcast_ids: Iterable[int]
) -> dict[int, tuple[int, int]]:
    """For each of these broadcasts: the families it reached (delivered, or waiting in their
    digest) and how many of them confirmed. One statement, counted by the database; it still
    goes over a row per recipient, so the progress job asks only when a broadcast's plain
    figures moved."""
    ids = sorted(set(broadcast_ids))
    if not ids:
        return {}
    keys = family_key(select(Broadcast.school_id).where(Broadcast.id.in_(ids)))
    family = func.coalesce(keys.c.key, Outbox.user_id)
    rows = await session.execute(
        select(
            Outbox.broadcast_id,
            func.count(func.distinct(family)),
            func.count(func.distinct(case((Outbox.acknowledged_at.is_not(None), family)))),
        )
        .outerjoin(keys, keys.c.user == Outbox.user_id)
        .where(
            Outbox.broadcast_id.in_(ids),
            Outbox.kind == "broadcast",
            Outbox.user_id.is_not(None),
            Outbox.status.in_(REACHED),
        )
        .group_by(Outbox.broadcast_id)
    )
    found = dict.fromkeys(ids, (0, 0))
    for broadcast_id, families, confirmed in rows.all():
        assert broadcast_id is not None
        found[broadcast_id] = (int(families), int(confirmed))
    return found


@dataclass
class _Family:
    people: set[int]
    confirmed: bool = False
    delivered: bool = False  # someone's copy was sent (alone or in a digest)
    held: bool = False  # someone's copy waits in the digest


def _family_tally(rows: Iterable[Sequence[Any]]) -> dict[int, _Family]:
    """The families that got the notice (delivered or held for the digest), by their key,
    from (user id, outbox status, acknowledged, family key) rows (`family_key`)."""
    tally: dict[int, _Family] = {}
    for user, status, acknowledged, key in rows:
        if status not in REACHED:
            continue
        family = tally.setdefault(key if key is not None else user, _Family(set()))
        family.people.add(user)
        family.confirmed = family.confirmed or bool(acknowledged)
        family.delivered = family.delivered or status is not OutboxStatus.HELD
        family.held = family.held or status is OutboxStatus.HELD
    return tally


async def _progress_of(session: AsyncSession, ids: list[int]) -> dict[int, Progress]:
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
        """Some families who received it have not confirmed it yet."""
        return self.ack_requested and self.progress.families > self.progress.confirmed


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
    figures = await progress_of(
        session, [row.id for row in rows], acks=[row.id for row in rows if row.ack_requested]
    )
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
    summary: Summary | None = None  # the broadcast as it is now (an admin's `stop`)


async def cancel(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int
) -> Cancelled | None:
    """Stop a scheduled or running broadcast: what has not gone out yet never will.

    Compare-and-set against the status read fresh from the database, so a cancel and the
    tick that starts the broadcast at the same moment never both win: either the tick finds
    it cancelled and sends nothing, or the cancel finds it sending and says how many went out.
    None if the broadcast is not this school's.
    """
    found = await _cancel(session, school_id, broadcast_id, actor_user_id)
    return found[0] if found else None


async def _cancel(
    session: AsyncSession, school_id: int, broadcast_id: int, actor_user_id: int
) -> tuple[Cancelled, Broadcast] | None:
    """`cancel`, with the broadcast as it is afterwards."""
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
            return Cancelled(Stop.FINISHED), broadcast
        if await _set_status(
            session, broadcast, status, BroadcastStatus.CANCELLED, cancelled_at=utcnow()
        ):
            break
    else:
        assert broadcast is not None
        return Cancelled(Stop.FINISHED), broadcast
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
        return Cancelled(Stop.CANCELLED), broadcast
    return Cancelled(Stop.STOPPED, (await progress(session, broadcast.id)).sent), broadcast


async def stop(
    session: AsyncSession,
    member: Member | None,
    broadcast_id: int,
    *,
    show: bool = True,
    pressed: str | None = None,
) -> Cancelled | Refused:
    """An admin's cancel (/broadcasts, or the question about a late one): `cancel`, guarded;
    `show`: with the broadcast as it is afterwards, for the screen to show it."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    found = await _cancel(session, admin.school_id, broadcast_id, admin.user_id)
    if found is None:
        return _not_found(session, admin, pressed)
    result, broadcast = found
    if not show:
        return result
    return dataclasses.replace(result, summary=await _summary_of(session, broadcast))


async def card(
    session: AsyncSession, member: Member | None, broadcast_id: int, *, pressed: str | None = None
) -> Summary | Refused:
    """One broadcast of the admin's school as its status message shows it."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    found = await _summary(session, broadcast_id, admin.school_id)
    return _not_found(session, admin, pressed) if found is None else found


async def _summary(
    session: AsyncSession, broadcast_id: int, school_id: int | None = None
) -> Summary | None:
    """The broadcast as read now (of this school, if given); None if there is no such one."""
    broadcast = await session.scalar(
        select(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .execution_options(populate_existing=True)
    )
    if broadcast is None or (school_id is not None and broadcast.school_id != school_id):
        return None
    return await _summary_of(session, broadcast)


async def _summary_of(session: AsyncSession, broadcast: Broadcast) -> Summary:
    (name,) = await audience_names(session, [Audience.from_json(broadcast.audience)])
    figures = await progress(session, broadcast.id, ack=broadcast.ack_requested)
    return Summary.of(broadcast, name, figures)


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


async def family_copies(
    session: AsyncSession, broadcast_id: int, telegram_id: int
) -> list[SentCopy]:
    """The delivered, unconfirmed copies of this notice held by the other guardians of the
    confirming guardian's children: their 确认收到 buttons now mislead (docs/UX.md, 5)."""
    mine = aliased(Guardianship)
    theirs = aliased(Guardianship)
    me = aliased(User)
    rows = await session.execute(
        select(
            Outbox.chat_id, Outbox.message_id, func.coalesce(User.locale, School.default_locale)
        )
        .distinct()
        .join(User, User.id == Outbox.user_id)
        .join(School, School.id == Outbox.school_id)
        .join(theirs, theirs.user_id == User.id)
        .join(mine, mine.student_id == theirs.student_id)
        .join(me, me.id == mine.user_id)
        .where(
            Outbox.broadcast_id == broadcast_id,
            Outbox.kind == "broadcast",
            Outbox.status == OutboxStatus.SENT,
            Outbox.message_id.is_not(None),
            Outbox.acknowledged_at.is_(None),
            me.telegram_id == telegram_id,
            User.id != me.id,
        )
    )
    return [SentCopy(c, m, loc) for c, m, loc in rows.all() if m is not None]


@dataclass(frozen=True)
class Unconfirmed:
    """A family that got the notice and where nobody has confirmed it yet."""

    names: tuple[str, ...]  # the guardians who got it
    children: tuple[str, ...]  # their children, by name
    waiting: bool = False  # their copy waits in tonight's digest: they have not seen it yet


async def unconfirmed(
    session: AsyncSession, member: Member | None, broadcast_id: int, *, pressed: str | None = None
) -> list[Unconfirmed] | Refused:
    """The families that have not confirmed a broadcast of the admin's school: one statement."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    found = await unacknowledged(session, admin.school_id, broadcast_id)
    return _not_found(session, admin, pressed) if found is None else found


async def unacknowledged(
    session: AsyncSession, school_id: int, broadcast_id: int
) -> list[Unconfirmed] | None:
    """Families who got the notice (or whose copy waits in their digest) where nobody has
    confirmed it, with their guardians' and children's names; None if the broadcast is not
    this school's. One statement."""
    found = await _families_of(session, school_id, broadcast_id)
    if found is None:
        return None
    missing = [
        Unconfirmed(
            tuple(sorted({found.names[p] for p in family.people})),
            tuple(sorted({c for p in family.people for c in found.children.get(p, ())})),
            waiting=not family.delivered,
        )
        for family in found.tally.values()
        if not family.confirmed
    ]
    return sorted(missing, key=lambda u: (u.waiting, u.children, u.names))


@dataclass
class _Recipients:
    broadcast: Any  # the row of the broadcast's own columns
    tally: dict[int, _Family]
    names: dict[int, str]
    children: dict[int, list[str]]
    chats: dict[int, int]  # person → the chat their copy went to


async def _families_of(
    session: AsyncSession, school_id: int, broadcast_id: int
) -> _Recipients | None:
    """A broadcast's recipients by family, with names (one statement); None if the broadcast
    is not this school's."""
    keys = family_key(school_id)
    rows = (
        await session.execute(
            select(
                Broadcast.id,
                Broadcast.ack_requested,
                Outbox.user_id,
                Outbox.status,
                Outbox.acknowledged_at.is_not(None),
                keys.c.key,
                User.display_name,
                Student.name,
                Outbox.chat_id,
            )
            .select_from(Broadcast)
            .outerjoin(
                Outbox,
                and_(
                    Outbox.broadcast_id == Broadcast.id,
                    Outbox.kind == "broadcast",
                    Outbox.user_id.is_not(None),
                ),
            )
            .outerjoin(User, User.id == Outbox.user_id)
            .outerjoin(keys, keys.c.user == User.id)
            .outerjoin(Guardianship, Guardianship.user_id == User.id)
            .outerjoin(Student, Student.id == Guardianship.student_id)
            .where(Broadcast.id == broadcast_id, Broadcast.school_id == school_id)
        )
    ).all()
    if not rows:
        return None
    people = [r for r in rows if r.user_id is not None]
    names: dict[int, str] = {}
    children: dict[int, list[str]] = {}
    chats: dict[int, int] = {}
    for r in people:
        names[r.user_id] = r.display_name
        chats[r.user_id] = r.chat_id
        if r.name:
            children.setdefault(r.user_id, []).append(r.name)
    tally = _family_tally((r[2], r[3], r[4], r[5]) for r in people)
    return _Recipients(rows[0], tally, names, children, chats)


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
    """Remind, once, the families who got the notice and where nobody has confirmed it."""
    found = await _families_of(session, broadcast.school_id, broadcast.id)
    count = await _remind(session, broadcast, found, now) if found is not None else 0
    broadcast.reping_at = now
    return count


async def _remind(
    session: AsyncSession, broadcast: Broadcast, found: _Recipients, now: dt.datetime
) -> int:
    """Queue the reminder for every guardian of an unconfirmed family whose copy was delivered
    (a copy still waiting in the digest is not yet read); returns how many were queued."""
    people = sorted(
        p
        for family in found.tally.values()
        if not family.confirmed and family.delivered
        for p in family.people
    )
    header, _school = await _header(session, broadcast) if people else ({}, None)
    reminders = [
        NewMessage(
            chat_id=found.chats[p],
            user_id=p,
            kind="broadcast_reping",
            priority=Priority(broadcast.priority),
            template=REPING_TEMPLATE,
            params=header | {"html": broadcast.text},
            buttons=[[{"label": ACK_LABEL, "data": f"ack:{broadcast.id}"}]],
            # One reminder per person and broadcast, whoever asks for it and however often.
            dedupe_key=f"broadcast-reping:{broadcast.id}:{found.chats[p]}",
            broadcast_id=broadcast.id,
            digest=False,
        )
        for p in people
    ]
    return len(await outbox.enqueue_many(session, broadcast.school_id, reminders, now=now))


class Remind(enum.Enum):
    SENT = "sent"  # the reminder is queued for `count` people
    ALREADY = "already"  # it was reminded before (at `at`): nothing more is sent
    NOBODY = "nobody"  # every family that got it has confirmed (or still waits for its digest)


@dataclass(frozen=True)
class Reminded:
    outcome: Remind
    count: int = 0
    at: dt.datetime | None = None
    summary: Summary | None = None


async def remind(
    session: AsyncSession,
    member: Member | None,
    broadcast_id: int,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Reminded | Refused:
    """An admin's "remind the unconfirmed now": once per broadcast. The broadcast's
    `reping_at` is the ledger (compare-and-set), and each reminder's dedupe key keeps a
    second press, or the automatic reminder, from sending anyone a second one."""
    admin = _admin(session, member, pressed)
    if admin is None:
        return Refused.NOT_ADMIN
    found = await _families_of(session, admin.school_id, broadcast_id)
    if found is None or not found.broadcast.ack_requested:
        return _not_found(session, admin, pressed)
    broadcast = await session.get(Broadcast, broadcast_id)
    assert broadcast is not None
    if not any(not f.confirmed and f.delivered for f in found.tally.values()):
        return Reminded(Remind.NOBODY, summary=await _summary(session, broadcast_id))
    won = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.reping_at.is_(None))
        .values(reping_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        at = await session.scalar(select(Broadcast.reping_at).where(Broadcast.id == broadcast_id))
        return Reminded(Remind.ALREADY, at=at, summary=await _summary(session, broadcast_id))
    set_committed_value(broadcast, "reping_at", now)
    count = await _remind(session, broadcast, found, now)
    audit.record(
        session,
        admin.school_id,
        "broadcast.remind",
        actor_user_id=admin.user_id,
        target=("broadcast", broadcast_id),
        details={"reminded": count},
    )
    return Reminded(Remind.SENT, count, now, await _summary(session, broadcast_id))


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
                    # asks first (handlers/admin/late.py), then `lb:c` cancels
                    {"label": CANCEL_LATE_LABEL, "data": f"lb:q:{broadcast.id}"},
                ]
            ],
            dedupe_key=f"broadcast-late:{broadcast.id}:{user_id}",
        )
        for user_id, chat_id in admins.all()
        if chat_id is not None
    ]
    await outbox.enqueue_many(session, broadcast.school_id, questions, now=now)
    return len(questions)
