"""Enrolment: sign-up, the waitlist and its seat offers, withdrawal, and the child's history.

The rules (POLICY.md, "Service structure", "Enrolment", "Fees"): participation is voluntary and
nothing is bundled; a child may join only courses of their grade, whose provider is whitelisted
and whose fee was disclosed (or which are free), while the enrolment window is open, without
two courses at the same time. Withdrawal is never refused.

**No over-booking, however many press at once.** Everything that changes a course's places
(withdrawal, seat offers and their answers, expiry, cancelling) first takes the course's lock
(`lock_course`), then reads afresh: concurrent changes to one course queue for that instant
only. A sign-up takes its locks in its first read (`situation`: on PostgreSQL ``FOR UPDATE``
of the course and the child, on SQLite a ``BEGIN IMMEDIATE`` transaction), so the rules (time
clash, three choices) are checked inside the transaction that writes; the seat count and the
write are one statement. A child can never be enrolled twice: ``UNIQUE (student_id,
course_id)``. What a course is (its times, grades, provider, fee) comes from the cached
programme (`bot.services.catalogue`); what races can change is read live.

**Every status change is compare-and-set** (docs/STATE_CHANGES.md): `move` is one
``UPDATE … WHERE id = :id AND status = :expected``; a caller that loses changes nothing and
reports what really happened.

Every status change writes an `EnrolmentEvent`: the history parents see with `/schedule`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import audit, billing, catalogue, deadlines, family, guard, outbox
from bot.services.catalogue import Catalogue, CourseInfo, TermInfo
from bot.services.family import SentCopy
from bot.services.guard import Child, child_columns, of_guardian, with_child
from bot.services.members import Member
from bot.services.outbox import NewMessage
from storage.db import Database
from storage.models import (
    Allocation,
    Course,
    Enrolment,
    EnrolmentActor,
    EnrolmentEvent,
    EnrolmentStatus,
    Guardianship,
    LotteryDraw,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    School,
    Student,
    Term,
    User,
    UserRole,
    utcnow,
)

ACTIVE = (EnrolmentStatus.ENROLLED, EnrolmentStatus.WAITLISTED)
MAX_CHOICES = 3  # ranked lottery choices per period and weekday
LISTED = (*ACTIVE, EnrolmentStatus.ENTERED)  # what a family sees and may withdraw from
OFFER_HOURS = 24  # default time a family has to claim a freed seat
OFFER_TEXT = N_(
    "🎉 A seat is free in <b>{course}</b> for {child}. Would you like it? "
    "Please answer by {deadline}; after that it goes to the next child on the waitlist."
)
OFFER_EXPIRED_TEXT = N_(
    "The seat offered in {course} for {child} was not claimed in time and has gone to the next "
    "child on the waitlist."
)
OFFER_EXTENDED_TEXT = N_(
    "⏳ Kehou was offline for a while, so the seat in <b>{course}</b> kept for {child} is held "
    "longer: you can answer until {deadline}."
)
ACCEPT_LABEL = N_("Accept the seat")
VIEW_WEEK = N_("View the week")  # handlers.parent.schedule answers its `sc:v` press
DECLINE_LABEL = N_("Decline")
# What the child's other guardians are told (docs/UX.md, convention 5), in their language.
TOLD_OTHERS = {
    EnrolmentStatus.ENROLLED: N_(
        "👪 {child}'s other guardian signed {child} up for {course} ({days} {start}–{end})."
    ),
    EnrolmentStatus.WAITLISTED: N_(
        "👪 {child}'s other guardian put {child} on the waitlist of {course} "
        "({days} {start}–{end}): position {position}."
    ),
    EnrolmentStatus.ENTERED: N_(
        "👪 {child}'s other guardian entered {child} in the draw for {course} "
        "({days} {start}–{end}) as choice {rank}."
    ),
}
WITHDRAWN_BY_OTHER = N_(
    "👪 {child}'s other guardian took {child} out of {course} ({days} {start}–{end}) for good."
)
LEFT_WAITLIST_BY_OTHER = N_(
    "👪 {child}'s other guardian took {child} off the waitlist of {course} ({days} {start}–{end})."
)
OFFER_ACCEPTED_BY_OTHER = N_(
    "👪 The seat in {course} offered for {child} was accepted by {child}'s other guardian: "
    "{child} is enrolled ({days} {start}–{end})."
)
OFFER_DECLINED_BY_OTHER = N_(
    "👪 The seat in {course} offered for {child} was declined by {child}'s other guardian; "
    "it goes to the next child on the waitlist."
)
OFFER_KINDS = ("seat_offer", "seat_offer_extended")


class Refusal(enum.StrEnum):
    """Why a sign-up is not possible; each has a translated explanation in the handlers."""

    NOT_FOUND = "not_found"
    WINDOW_CLOSED = "window_closed"
    GRADE = "grade"
    CLASH = "clash"
    PROVIDER = "provider"  # the provider is not (or no longer) on the whitelist
    FEE_UNDISCLOSED = "fee_undisclosed"
    CANCELLED = "cancelled"
    ALREADY = "already"  # enrolled or waitlisted already
    TOO_MANY_CHOICES = "too_many_choices"  # a fourth ranked choice for the same period and day


@dataclass(frozen=True)
class SignedUp:
    enrolment_id: int
    status: EnrolmentStatus
    waitlist_position: int | None
    draw_rank: int | None = None  # for a lottery entry: the family's preference, 1-3


def weekdays_of(mask: int) -> list[int]:
    """ISO weekdays (1 = Monday) in a course's 7-bit mask (bit 0 = Monday)."""
    return [day + 1 for day in range(7) if mask & (1 << day)]


@dataclass(frozen=True)
class Situation:
    """What a sign-up decides on, read in one statement (`situation`): the child, the course's
    live state, and the child's places in every course (the catalogue says when those run)."""

    child: Child
    course: CourseInfo
    term: TermInfo | None
    cancelled: bool  # live, not the catalogue's copy: a course may be cancelled meanwhile
    drawn: bool  # the term's lottery was drawn
    places: tuple[tuple[int, int, EnrolmentStatus], ...]  # (enrolment id, course id, status)
    catalogue: Catalogue
    # The child's other guardians the bot can write to, (user id, chat id): read in the same
    # statement, so telling them of a sign-up costs no statement when there are none.
    others: tuple[tuple[int, int], ...] = ()

    def place(self, course_id: int) -> tuple[int, EnrolmentStatus] | None:
        return next(((e, st) for e, c, st in self.places if c == course_id), None)

    def courses(self, statuses: Iterable[EnrolmentStatus]) -> list[CourseInfo]:
        """The child's courses with one of these statuses, as the catalogue has them."""
        wanted = set(statuses)
        found = (self.catalogue.course(c) for _, c, st in self.places if st in wanted)
        return [c for c in found if c is not None]

    def clashes(self) -> list[CourseInfo]:
        """The child's courses (enrolled or waitlisted) at the same time as this one."""
        return clashing(self.course, self.courses(ACTIVE))

    def week(self) -> list[tuple[EnrolmentStatus, CourseInfo]]:
        """The child's places with their courses (what the "1+N" advice reads)."""
        found = ((st, self.catalogue.course(c)) for _, c, st in self.places)
        return [(st, c) for st, c in found if c is not None]


async def situation(
    session: AsyncSession,
    found: Catalogue,
    student_id: int,
    course_id: int,
    *,
    guardian: int | None,
    lock: bool = False,
) -> Situation | None:
    """The child with their places, and the course (only if of the child's school): one
    statement. Only a child of `guardian`'s, unless None (the school's own action). With
    `lock`, PostgreSQL locks the child's and the course's rows until the transaction ends
    (SQLite: `Database.writing`)."""
    course = found.course(course_id)
    if course is None:
        return None
    drawn = exists().where(LotteryDraw.term_id == Course.term_id)
    query: Select[Any] = select(
        *child_columns(),
        Course.cancelled_at,
        drawn,
        Enrolment.id,
        Enrolment.course_id,
        Enrolment.status,
    )
    query = (
        (of_guardian(query, guardian) if guardian is not None else with_child(query))
        .join(Course, (Course.id == course_id) & (Course.school_id == Student.school_id))
        .outerjoin(Enrolment, Enrolment.student_id == Student.id)
        .where(Student.id == student_id)
    )
    if guardian is not None:
        other, reader = aliased(Guardianship), aliased(User)
        query = (
            query.add_columns(reader.id, reader.chat_id)
            .outerjoin(other, (other.student_id == Student.id) & (other.user_id != guardian))
            .outerjoin(reader, (reader.id == other.user_id) & reader.chat_id.is_not(None))
        )
    if lock:
        query = query.with_for_update(of=[Student, Course])  # type: ignore[list-item]
    rows = (await session.execute(query)).all()
    if not rows:
        return None
    first = rows[0]
    places = {row[8]: (row[8], row[9], EnrolmentStatus(row[10])) for row in rows if row[8]}
    others = {row[11]: (row[11], row[12]) for row in rows if len(row) > 11 and row[11]}
    return Situation(
        child=Child(*first[:6]),
        course=course,
        term=found.term(course.term_id),
        cancelled=first[6] is not None,
        drawn=bool(first[7]),
        places=tuple(places.values()),
        catalogue=found,
        others=tuple(others.values()),
    )


async def check(found: Situation, now: dt.datetime) -> Refusal | None:
    """Every rule a sign-up must pass, or the first it fails (reads nothing more)."""
    course = found.course
    if found.cancelled:
        return Refusal.CANCELLED
    if found.term is None or not found.term.enrolment_open(now):
        return Refusal.WINDOW_CLOSED
    if not course.grade_min <= found.child.grade <= course.grade_max:
        return Refusal.GRADE
    if not course.provider_ok:
        return Refusal.PROVIDER
    if not course.fee_disclosed:
        return Refusal.FEE_UNDISCLOSED
    place = found.place(course.id)
    if place is not None and place[1] in LISTED:
        return Refusal.ALREADY
    if any(_overlap(course, other) for other in found.courses(ACTIVE)):
        return Refusal.CLASH
    return None


def clashing(course: CourseInfo, others: Iterable[CourseInfo]) -> list[CourseInfo]:
    """Those of `others` that run at the same time as `course` (same term, a shared weekday,
    overlapping times), by time."""
    return sorted((o for o in others if _overlap(course, o)), key=lambda o: o.starts_at)


def _overlap(course: CourseInfo, other: CourseInfo) -> bool:
    """Another course of the same term on a shared weekday, overlapping in time."""
    return (
        other.id != course.id
        and other.term_id == course.term_id
        and other.weekdays & course.weekdays != 0
        and other.starts_at < course.ends_at
        and other.ends_at > course.starts_at
    )


def _draw_rank(found: Situation) -> int:
    """The family's preference order: the child's entries for lottery courses in the same
    period on a shared weekday, and this one after them."""
    course = found.course
    earlier = [
        c
        for c in found.courses([EnrolmentStatus.ENTERED])
        if c.term_id == course.term_id
        and c.period == course.period
        and c.weekdays & course.weekdays != 0
    ]
    return len(earlier) + 1


@dataclass(frozen=True)
class SignUpOutcome:
    """What the parent is told after pressing Confirm: the child, the course, the result, the
    child's places afterwards (for the "1+N" advice, `timetable.advice`), and for a clash the
    course it clashes with."""

    child: Child
    course: CourseInfo
    result: SignedUp | Refusal
    week: list[tuple[EnrolmentStatus, CourseInfo]]
    clashes: list[CourseInfo]


async def confirm_sign_up(
    db: Database,
    member: Member | None,
    student_id: int,
    course_id: int,
    *,
    pressed: str | None = None,
    now: dt.datetime | None = None,
) -> SignUpOutcome | None:
    """A guardian's sign-up; None (refused and audited) if the child or course is not theirs.

    Three statements in one transaction: the locked read (`situation`, which also finds the
    child's other guardians), the seat and the write in one statement, the history event; and
    when the child has another guardian, the outbox insert that tells them.
    """
    parent = guard.parent(member)
    if parent is None or member is None:
        if member is not None:
            async with db.transaction() as session:
                guard.refuse(session, member, REFUSED, pressed)
        return None
    current: Situation | None = None
    try:
        async with db.writing() as session:
            found = await catalogue.of(session, member.school_id, member.catalogue_version)
            current = await situation(
                session, found, student_id, course_id, guardian=parent, lock=True
            )
            if current is None:
                guard.refuse(session, member, REFUSED, pressed)
                return None
            result = await _decide(session, current, member.user_id, EnrolmentActor.PARENT, now)
            if isinstance(result, SignedUp):
                await _tell_others_signed_up(session, current, result, member.user_id)
    except IntegrityError:  # the other guardian's press got there first
        if current is None:
            raise
        result = Refusal.ALREADY
    week = [(st, c) for st, c in current.week() if c.id != current.course.id]
    if isinstance(result, SignedUp):
        week.append((result.status, current.course))
    clashes = current.clashes() if result is Refusal.CLASH else []
    return SignUpOutcome(current.child, current.course, result, week, clashes)


def _times(course: CourseInfo) -> dict[str, Any]:
    """A course's days and times as outbox parameters, formatted for each reader."""
    return {
        "days": {"$weekdays": course.weekdays},
        "start": {"$time": course.starts_at.isoformat(timespec="minutes")},
        "end": {"$time": course.ends_at.isoformat(timespec="minutes")},
    }


async def _tell_others_signed_up(
    session: AsyncSession, found: Situation, result: SignedUp, user_id: int
) -> None:
    """The child's other guardians learn of the sign-up (docs/UX.md, convention 5), as
    `family.tell_other_guardians` tells them, but from the guardians `situation` read already:
    the sign-up rush path spends no statement on finding them."""
    params = {
        "child": found.child.name,
        "course": found.course.name,
        "position": result.waitlist_position or "",
        "rank": result.draw_rank or "",
        **_times(found.course),
    }
    await family.tell(
        session,
        found.child.school_id,
        [(other, chat_id) for other, chat_id in found.others if other != user_id],
        kind="family_sign_up",
        template=TOLD_OTHERS[result.status],
        params=params,
        dedupe=f"sign-up:{result.enrolment_id}:{utcnow().isoformat()}",
        buttons=[[{"label": VIEW_WEEK, "data": "sc:v"}]],
    )


async def sign_up(
    db: Database,
    student_id: int,
    course_id: int,
    *,
    user_id: int | None,
    actor: EnrolmentActor = EnrolmentActor.PARENT,
    now: dt.datetime | None = None,
) -> SignedUp | Refusal:
    """Sign a child up on the school's (or a test's) own authority: no guardian check."""
    try:
        async with db.writing() as session:
            school_id = await session.scalar(
                select(Course.school_id).where(Course.id == course_id)
            )
            if school_id is None:
                return Refusal.NOT_FOUND
            found = await catalogue.of(session, school_id)
            current = await situation(
                session, found, student_id, course_id, guardian=None, lock=True
            )
            if current is None:
                return Refusal.NOT_FOUND
            return await _decide(session, current, user_id, actor, now)
    except IntegrityError:  # a second press, or the other guardian, got there first
        return Refusal.ALREADY


async def _decide(
    session: AsyncSession,
    found: Situation,
    user_id: int | None,
    actor: EnrolmentActor,
    now: dt.datetime | None,
) -> SignedUp | Refusal:
    """Check the rules, then take a seat, a waitlist place or a draw entry, under the locks:
    two presses at once cannot both pass the checks."""
    now = now or utcnow()
    refusal = await check(found, now)
    if refusal is not None:
        return refusal
    place = found.place(found.course.id)
    # A withdrawn child signing up again reuses the row (one per student and course).
    previous = place[0] if place is not None else None
    if found.course.allocation is Allocation.LOTTERY and not found.drawn:
        rank = _draw_rank(found)
        if rank > MAX_CHOICES:
            return Refusal.TOO_MANY_CHOICES
        return await _enter_draw(session, found, previous, rank, user_id, now)
    return await _take_place(session, found, previous, user_id, actor, now)


async def lock_course(session: AsyncSession, course_id: int) -> Course | None:
    """Take the course's lock and read it afresh; held until the transaction ends.

    Every change to a course's places takes it first. PostgreSQL locks the row
    (``SELECT … FOR UPDATE``). SQLite has no row locks: a write takes its single writer lock,
    so a no-op UPDATE takes it here, and every read after it sees the newest data.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Course)
            .where(Course.id == course_id)
            .values(capacity=Course.capacity)
            .execution_options(synchronize_session=False, catalogue_unchanged=True)
        )
    return await session.scalar(
        select(Course)
        .where(Course.id == course_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def fresh(session: AsyncSession, enrolment_id: int) -> Enrolment | None:
    """The enrolment as the database has it now, locked; never the identity map's copy."""
    return await session.scalar(
        select(Enrolment)
        .where(Enrolment.id == enrolment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _take_place(
    session: AsyncSession,
    found: Situation,
    previous: int | None,
    user_id: int | None,
    actor: EnrolmentActor,
    now: dt.datetime,
) -> SignedUp | Refusal:
    """The seat count and the write in one statement, under the course's lock; a refusal if a
    place the other guardian took meanwhile clashes (or, for a reused row, is this one)."""
    school_id, student_id, course_id = found.child.school_id, found.child.id, found.course.id
    statement = _SEAT_INSERT if previous is None else _SEAT_UPDATE
    values = {
        "p_school_id": school_id,
        "p_student_id": student_id,
        "p_course_id": course_id,
        "p_user_id": user_id,
        "p_now": now,
        "p_previous": previous,
        "p_clashing": [
            c.id
            for c in found.catalogue.of_term(found.course.term_id)
            if _overlap(found.course, c)
        ],
    }
    written = (await session.execute(statement, values)).first()
    if written is None:
        return Refusal.CLASH if previous is None else Refusal.ALREADY
    enrolment_id, new_status, new_position = written
    result = SignedUp(enrolment_id, EnrolmentStatus(new_status), new_position)
    record_event(
        session, school_id, result.enrolment_id, result.status, new_position, actor, user_id, now
    )
    return result


def _seat_statements() -> tuple[Any, Any]:
    """The two forms of taking a place, built once: a new row, or a withdrawn one reused."""
    course_id = bindparam("p_course_id", type_=Integer)
    taken = (
        select(func.count())
        .where(Enrolment.course_id == course_id, _holds_seat())
        .scalar_subquery()
    )
    capacity = select(Course.capacity).where(Course.id == course_id).scalar_subquery()
    has_seat = (capacity.is_(None)) | (taken < capacity)
    last = (
        select(func.coalesce(func.max(Enrolment.waitlist_position), 0))
        .where(Enrolment.course_id == course_id, Enrolment.status == EnrolmentStatus.WAITLISTED)
        .scalar_subquery()
    )
    status = case(
        (has_seat, literal(EnrolmentStatus.ENROLLED.value)),
        else_=literal(EnrolmentStatus.WAITLISTED.value),
    )
    position = case((has_seat, literal(None)), else_=last + 1)
    now = bindparam("p_now", type_=Enrolment.created_at.type)
    user_id = bindparam("p_user_id", type_=Integer)
    returned = (Enrolment.id, Enrolment.status, Enrolment.waitlist_position)
    # PostgreSQL: the child's row was locked by the first statement, whose snapshot predates the
    # lock; this statement's is fresh, so a clashing place the other guardian just took (the
    # courses that overlap this one, from the catalogue) is seen here and nothing is written.
    other = cast(Table, Enrolment.__table__).alias("other")
    no_clash = ~exists().where(
        other.c.student_id == bindparam("p_student_id", type_=Integer),
        other.c.status.in_([s.value for s in ACTIVE]),
        other.c.course_id.in_(bindparam("p_clashing", expanding=True)),
    )
    # Core statements over the table: executed with a dict of parameters, an ORM statement
    # would be taken for a bulk insert.
    table = cast(Table, Enrolment.__table__)
    fresh_row = (
        insert(table)
        .from_select(
            [
                "school_id",
                "student_id",
                "course_id",
                "status",
                "waitlist_position",
                "created_by_user_id",
                "created_at",
                "updated_at",
            ],
            select(
                bindparam("p_school_id", type_=Integer),
                bindparam("p_student_id", type_=Integer),
                course_id,
                status,
                position,
                user_id,
                now,
                now,
            ).where(no_clash),
        )
        .returning(*returned)
    )
    reused = (
        update(table)
        .where(Enrolment.id == bindparam("p_previous"), Enrolment.status.not_in(ACTIVE), no_clash)
        .values(
            status=status,
            waitlist_position=position,
            created_by_user_id=user_id,
            updated_at=now,
            offer_expires_at=None,
            withdrawn_from=None,
        )
        .returning(*returned)
    )
    return fresh_row, reused


async def _enter_draw(
    session: AsyncSession,
    found: Situation,
    previous: int | None,
    rank: int,
    user_id: int | None,
    now: dt.datetime,
) -> SignedUp:
    school_id = found.child.school_id
    entered = {
        "status": EnrolmentStatus.ENTERED,
        "draw_rank": rank,
        "waitlist_position": None,
        "updated_at": now,
    }
    if previous is None:
        statement: Any = insert(Enrolment).values(
            school_id=school_id,
            student_id=found.child.id,
            course_id=found.course.id,
            created_by_user_id=user_id,
            created_at=now,
            **entered,
        )
    else:
        statement = (
            update(Enrolment)
            .where(Enrolment.id == previous, Enrolment.status.not_in(LISTED))
            .values(**entered)
        )
    enrolment_id = (await session.execute(statement.returning(Enrolment.id))).scalar_one()
    record_event(
        session,
        school_id,
        enrolment_id,
        EnrolmentStatus.ENTERED,
        None,
        EnrolmentActor.PARENT,
        user_id,
        now,
    )
    return SignedUp(enrolment_id, EnrolmentStatus.ENTERED, None, rank)


def record_event(
    session: AsyncSession,
    school_id: int,
    enrolment_id: int,
    status: EnrolmentStatus,
    position: int | None,
    actor: EnrolmentActor,
    user_id: int | None,
    now: dt.datetime,
    note: str | None = None,
) -> None:
    session.add(
        EnrolmentEvent(
            school_id=school_id,
            enrolment_id=enrolment_id,
            status=status,
            waitlist_position=position,
            actor=actor,
            actor_user_id=user_id,
            note=note,
            created_at=now,
        )
    )


async def move(
    session: AsyncSession,
    enrolment: Enrolment,
    status: EnrolmentStatus,
    *,
    expected: EnrolmentStatus | Iterable[EnrolmentStatus],
    actor: EnrolmentActor,
    user_id: int | None,
    now: dt.datetime,
    position: int | None = None,
    note: str | None = None,
    when: Iterable[ColumnElement[bool]] = (),
    **values: Any,
) -> bool:
    """Change an enrolment's status if it is still `expected` (and every condition in `when`
    holds): one conditional UPDATE. Any open offer ends; the change is recorded in the history.

    Returns whether it won. A loser changes nothing, and `enrolment` is refreshed to what the
    database has, so the caller can tell its user what really happened.
    """
    allowed = [expected] if isinstance(expected, EnrolmentStatus) else list(expected)
    changes = {
        "status": status,
        "waitlist_position": position,
        "offer_expires_at": None,
        "updated_at": now,
        **values,
    }
    result = await session.execute(
        update(Enrolment)
        .where(Enrolment.id == enrolment.id, Enrolment.status.in_(allowed), *when)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.refresh(enrolment)
        return False
    for name, value in changes.items():
        set_committed_value(enrolment, name, value)
    record_event(
        session, enrolment.school_id, enrolment.id, status, position, actor, user_id, now, note
    )
    return True


async def waitlist(session: AsyncSession, course_id: int) -> list[tuple[int, int]]:
    """(enrolment id, position) of the course's waitlist, in order."""
    rows = await session.execute(
        select(Enrolment.id, Enrolment.waitlist_position)
        .where(Enrolment.course_id == course_id, Enrolment.status == EnrolmentStatus.WAITLISTED)
        .order_by(Enrolment.waitlist_position)
    )
    return [(i, p) for i, p in rows.all() if p is not None]


async def history(session: AsyncSession, student_id: int) -> list[tuple[EnrolmentEvent, str]]:
    """Every change of the child's enrolments, oldest first, with the course name."""
    rows = await session.execute(
        select(EnrolmentEvent, Course.name)
        .join(Enrolment, Enrolment.id == EnrolmentEvent.enrolment_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(Enrolment.student_id == student_id)
        .order_by(EnrolmentEvent.created_at, EnrolmentEvent.id)
    )
    return [(event, name) for event, name in rows.all()]


async def compact_waitlist(session: AsyncSession, course_id: int) -> None:
    """Close the gap a child leaving the waitlist left: positions stay 1, 2, 3 …"""
    for index, (enrolment_id, position) in enumerate(await waitlist(session, course_id), 1):
        if position != index:
            await session.execute(
                update(Enrolment)
                .where(Enrolment.id == enrolment_id)
                .values(waitlist_position=index)
            )


async def withdraw(
    session: AsyncSession,
    enrolment_id: int,
    *,
    from_date: dt.date,
    user_id: int | None,
    actor: EnrolmentActor = EnrolmentActor.PARENT,
    now: dt.datetime | None = None,
    note: str | None = None,
    expected: Iterable[EnrolmentStatus] = LISTED,
) -> Enrolment | None:
    """Leave a course (or its waitlist, or its draw) for good, under the course's lock.

    Never refused; None if the enrolment is not (or no longer) in one of the `expected`
    states. Dropping a draw entry moves the child's later choices up."""
    now = now or utcnow()
    course_id = await session.scalar(
        select(Enrolment.course_id).where(Enrolment.id == enrolment_id)
    )
    if course_id is None:
        return None
    await lock_course(session, course_id)
    enrolment = await fresh(session, enrolment_id)
    allowed = list(expected)
    if enrolment is None or enrolment.status not in allowed:
        return None
    was = enrolment.status
    won = await move(
        session,
        enrolment,
        EnrolmentStatus.WITHDRAWN,
        expected=was,
        actor=actor,
        user_id=user_id,
        now=now,
        note=note,
        withdrawn_from=from_date,
    )
    if not won:
        return None
    if was is EnrolmentStatus.ENTERED:
        await renumber_choices(session, enrolment.student_id, enrolment.course_id)
    if was is EnrolmentStatus.ENROLLED:
        await billing.on_leaving(session, enrolment, from_date)
    await compact_waitlist(session, course_id)
    return enrolment


def choice_ranks(entries: Iterable[tuple[Enrolment, Course]]) -> dict[int, int]:
    """Enrolment id → the family's preference (1 = first choice) among the child's live draw
    entries: 1 + the entries of the same child, term and period sharing a weekday that come
    before it, in the order they were chosen. A dropped choice moves the later ones up."""
    listed = sorted(entries, key=lambda p: (p[0].draw_rank or 9, p[0].updated_at, p[0].id))
    ranks = {}
    for index, (entry, course) in enumerate(listed):
        ranks[entry.id] = 1 + sum(
            1
            for other, other_course in listed[:index]
            if other.student_id == entry.student_id
            and other_course.term_id == course.term_id
            and other_course.period == course.period
            and other_course.weekdays & course.weekdays
        )
    return ranks


async def renumber_choices(session: AsyncSession, student_id: int, course_id: int) -> None:
    """After a draw entry ends, the child's remaining entries of that term keep ranks 1, 2, 3."""
    term_id = select(Course.term_id).where(Course.id == course_id).scalar_subquery()
    rows = await session.execute(
        select(Enrolment, Course)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            Enrolment.student_id == student_id,
            Enrolment.status == EnrolmentStatus.ENTERED,
            Course.term_id == term_id,
        )
        .execution_options(populate_existing=True)
    )
    pairs = [(e, c) for e, c in rows.all()]
    ranks = choice_ranks(pairs)
    for entry, _ in pairs:
        if entry.draw_rank != ranks[entry.id]:
            entry.draw_rank = ranks[entry.id]
    await session.flush()


def _tally(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows of the group meet `condition` (a portable COUNT … FILTER)."""
    return func.sum(case((condition, 1), else_=0))


def _holds_seat() -> ColumnElement[bool]:
    """A seat is taken by an enrolled child, or held for a waitlisted child with an offer."""
    return or_(
        Enrolment.status == EnrolmentStatus.ENROLLED,
        and_(
            Enrolment.status == EnrolmentStatus.WAITLISTED,
            Enrolment.offer_expires_at.is_not(None),
        ),
    )


async def free_seats(session: AsyncSession, course_id: int) -> int | None:
    """Seats neither taken nor offered; None for a course without a limit."""
    capacity = await session.scalar(select(Course.capacity).where(Course.id == course_id))
    if capacity is None:
        return None
    taken = await session.scalar(
        select(func.count()).where(Enrolment.course_id == course_id, _holds_seat())
    )
    return max(capacity - int(taken or 0), 0)


async def make_offers(
    session: AsyncSession, course_id: int, now: dt.datetime, hours: int | None = None
) -> list[int]:
    """Offer every free seat to the first waitlisted children, for the school's `offer_hours`
    (or `hours`); returns their enrolment ids. Runs under the course's lock, so two seats
    freed at once are offered to two children, and a sign-up cannot take one meanwhile."""
    await lock_course(session, course_id)
    free = await free_seats(session, course_id)
    if free is None or free == 0:
        return []
    if hours is None:
        hours = await session.scalar(
            select(School.offer_hours)
            .join(Course, Course.school_id == School.id)
            .where(Course.id == course_id)
        )
        hours = hours or OFFER_HOURS
    rows = await session.scalars(
        select(Enrolment)
        .where(
            Enrolment.course_id == course_id,
            Enrolment.status == EnrolmentStatus.WAITLISTED,
            Enrolment.offer_expires_at.is_(None),
        )
        .order_by(Enrolment.waitlist_position)
        .limit(free)
        .execution_options(populate_existing=True)
    )
    offered = []
    for enrolment in rows.all():
        enrolment.offer_expires_at = await deadlines.offer_deadline(
            session, enrolment.school_id, now, hours
        )
        await _tell_guardians(
            session,
            enrolment,
            OFFER_TEXT,
            kind="seat_offer",
            buttons=_offer_buttons(enrolment.id),
            deadline=enrolment.offer_expires_at,
            dedupe=f"offer:{enrolment.id}:{enrolment.offer_expires_at.isoformat()}",
        )
        record_event(
            session,
            enrolment.school_id,
            enrolment.id,
            enrolment.status,
            enrolment.waitlist_position,
            EnrolmentActor.OFFER,
            None,
            now,
            "offered",
        )
        offered.append(enrolment.id)
    return offered


class OfferAnswer(enum.StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"  # too late: the offer has moved on
    ALREADY_ACCEPTED = "already_accepted"  # accepted before (the other guardian, a double tap)
    NONE = "none"  # no open offer for this enrolment


async def answer_offer(
    session: AsyncSession,
    enrolment_id: int,
    accept: bool,
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> OfferAnswer:
    """Accept or decline a seat offer, under the course's lock; if the offer has ended
    meanwhile (accepted, declined or expired), say which and change nothing."""
    now = now or utcnow()
    course_id = await session.scalar(
        select(Enrolment.course_id).where(Enrolment.id == enrolment_id)
    )
    if course_id is None:
        return OfferAnswer.NONE
    await lock_course(session, course_id)
    enrolment = await fresh(session, enrolment_id)
    assert enrolment is not None
    if enrolment.status is not EnrolmentStatus.WAITLISTED or enrolment.offer_expires_at is None:
        return await _ended_offer(session, enrolment)
    if enrolment.offer_expires_at <= now:
        return OfferAnswer.EXPIRED
    if accept:
        if not await move(
            session,
            enrolment,
            EnrolmentStatus.ENROLLED,
            expected=EnrolmentStatus.WAITLISTED,
            when=[Enrolment.offer_expires_at > now],
            actor=EnrolmentActor.OFFER,
            user_id=user_id,
            now=now,
            note="offer accepted",
        ):
            return await _ended_offer(session, enrolment)
        await compact_waitlist(session, course_id)
        return OfferAnswer.ACCEPTED
    await withdraw(
        session,
        enrolment.id,
        from_date=now.date(),
        user_id=user_id,
        actor=EnrolmentActor.OFFER,
        now=now,
        note="offer declined",
        expected=[EnrolmentStatus.WAITLISTED],
    )
    await make_offers(session, course_id, now)
    return OfferAnswer.DECLINED


async def _ended_offer(session: AsyncSession, enrolment: Enrolment) -> OfferAnswer:
    """What became of an offer that is no longer open, from the enrolment's history."""
    note = await session.scalar(
        select(EnrolmentEvent.note)
        .where(EnrolmentEvent.enrolment_id == enrolment.id)
        .order_by(EnrolmentEvent.id.desc())
        .limit(1)
    )
    if enrolment.status is EnrolmentStatus.ENROLLED and note == "offer accepted":
        return OfferAnswer.ALREADY_ACCEPTED
    if note == "offer expired":
        return OfferAnswer.EXPIRED
    return OfferAnswer.NONE


def _offer_buttons(enrolment_id: int) -> list[list[dict[str, Any]]]:
    return [
        [
            {"label": ACCEPT_LABEL, "data": f"of:{enrolment_id}:1"},
            {"label": DECLINE_LABEL, "data": f"of:{enrolment_id}:0"},
        ]
    ]


async def tell_extended(session: AsyncSession, enrolment_ids: Iterable[int]) -> None:
    """Tell the guardians of each open offer its new deadline (after Kehou was down)."""
    for enrolment_id in enrolment_ids:
        entry = await session.get(Enrolment, enrolment_id, populate_existing=True)
        if entry is None or entry.offer_expires_at is None:
            continue
        await _tell_guardians(
            session,
            entry,
            OFFER_EXTENDED_TEXT,
            kind="seat_offer_extended",
            buttons=_offer_buttons(entry.id),
            deadline=entry.offer_expires_at,
            dedupe=f"offer:{entry.id}:{entry.offer_expires_at.isoformat()}",
        )


async def _tell_guardians(
    session: AsyncSession,
    enrolment: Enrolment,
    template: str,
    *,
    kind: str,
    dedupe: str,
    buttons: list[list[dict[str, Any]]] | None = None,
    deadline: dt.datetime | None = None,
) -> None:
    """A message to every guardian of the enrolment's child, through the outbox."""
    names = (
        await session.execute(
            select(Student.name, Course.name)
            .join(Course, Course.id == enrolment.course_id)
            .where(Student.id == enrolment.student_id)
        )
    ).one()
    params: dict[str, Any] = {"child": names[0], "course": names[1]}
    if deadline is not None:
        params["deadline"] = {"$datetime": deadline.isoformat()}
    guardians = await family.guardian_chats(session, [enrolment.student_id])
    await family.tell(
        session,
        enrolment.school_id,
        guardians.get(enrolment.student_id, []),
        kind=kind,
        template=template,
        params=params,
        dedupe=dedupe,
        buttons=buttons,
    )


async def expire_offers(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Offers past their deadline leave the waitlist and move on; returns the courses touched.

    Each course is locked and each offer read afresh first: an offer its family accepted or
    declined meanwhile is left as they decided."""
    due = await session.execute(
        select(Enrolment.id, Enrolment.course_id)
        .where(
            Enrolment.status == EnrolmentStatus.WAITLISTED,
            Enrolment.offer_expires_at.is_not(None),
            Enrolment.offer_expires_at <= now,
        )
        .order_by(Enrolment.course_id, Enrolment.id)
    )
    by_course: dict[int, list[int]] = {}
    for enrolment_id, course_id in due.all():
        by_course.setdefault(course_id, []).append(enrolment_id)
    courses = []
    for course_id, enrolment_ids in by_course.items():
        await lock_course(session, course_id)
        expired = [e for e in [await _expire(session, i, now) for i in enrolment_ids] if e]
        if expired:
            courses.append(course_id)
            await make_offers(session, course_id, now)
    return courses


async def _expire(session: AsyncSession, enrolment_id: int, now: dt.datetime) -> bool:
    """End one offer if it is still open and due (the course is locked); tell the family."""
    enrolment = await fresh(session, enrolment_id)
    if (
        enrolment is None
        or enrolment.status is not EnrolmentStatus.WAITLISTED
        or enrolment.offer_expires_at is None
        or enrolment.offer_expires_at > now
    ):
        return False
    ended = await withdraw(
        session,
        enrolment.id,
        from_date=now.date(),
        user_id=None,
        actor=EnrolmentActor.OFFER,
        now=now,
        note="offer expired",
        expected=[EnrolmentStatus.WAITLISTED],
    )
    if ended is None:
        return False
    await _tell_guardians(
        session,
        enrolment,
        OFFER_EXPIRED_TEXT,
        kind="seat_offer_expired",
        dedupe=f"offer-expired:{enrolment.id}:{now.isoformat()}",
    )
    return True


# ---------------------------------------------------------------------------------------------
# The catalogue, as parents browse it


@dataclass(frozen=True)
class CourseFacts:
    """What the published schedule must show about a course (POLICY: 课后服务安排表)."""

    course: CourseInfo
    enrolled: int
    waitlisted: int
    held: int = 0  # seats taken or held for an open offer: the rule sign-up counts by

    @property
    def teacher(self) -> str | None:
        return self.course.teacher

    @property
    def provider(self) -> str | None:  # None: the school itself
        return self.course.provider

    @property
    def fee_fen(self) -> int | None:  # None or 0: free
        return self.course.fee_fen

    @property
    def fee_unit(self) -> str | None:
        return self.course.fee_unit

    @property
    def seats_left(self) -> int | None:
        if self.course.capacity is None:
            return None
        return max(self.course.capacity - self.held, 0)


def _counts() -> Any:
    """Seat figures of some courses (``:ids``), one row per course that has any: built once."""
    return (
        select(
            Enrolment.course_id,
            _tally(Enrolment.status == EnrolmentStatus.ENROLLED),
            _tally(Enrolment.status == EnrolmentStatus.WAITLISTED),
            _tally(_holds_seat()),
        )
        .where(Enrolment.course_id.in_(bindparam("ids", expanding=True)))
        .group_by(Enrolment.course_id)
    )


async def counted(session: AsyncSession, courses: list[CourseInfo]) -> list[CourseFacts]:
    """The courses with their live seat figures: one statement (none for no courses)."""
    if not courses:
        return []
    rows = await session.execute(_COUNTS, {"ids": [c.id for c in courses]})
    tally = {course_id: (e, w, h) for course_id, e, w, h in rows.all()}
    return [CourseFacts(c, *(int(n or 0) for n in tally.get(c.id, (0, 0, 0)))) for c in courses]


async def facts(session: AsyncSession, course_ids: list[int]) -> list[CourseFacts]:
    """Courses by id, of any school, with their seat figures (for jobs and admin screens)."""
    if not course_ids:
        return []
    schools = (
        await session.scalars(select(Course.school_id).where(Course.id.in_(course_ids)).distinct())
    ).all()
    found: dict[int, CourseInfo] = {}
    for school_id in schools:
        found |= (await catalogue.of(session, school_id)).courses
    return await counted(session, [found[i] for i in course_ids if i in found])


def offered(
    found: Catalogue,
    grade: int,
    today: dt.date,
    *,
    period: int | None = None,
    category: str | None = None,
    weekday: int | None = None,
) -> list[CourseInfo]:
    """Courses of the current term a child of `grade` may take, with these filters."""
    term = found.current_term(today)
    if term is None:
        return []
    return [
        c
        for c in found.of_term(term.id)
        if c.grade_min <= grade <= c.grade_max
        and c.cancelled_at is None
        and (period is None or c.period == period)
        and (category is None or c.category.value == category)
        and (weekday is None or c.weekdays & (1 << (weekday - 1)) != 0)
    ]


REFUSED = "enrolment.refused"  # the audit action of every refused enrolment press


@dataclass(frozen=True)
class Holding:
    """The child's place in a course: what "already registered" shows."""

    enrolment_id: int
    status: EnrolmentStatus


@dataclass(frozen=True)
class CourseView:
    """A course card for one child (or, for staff, for nobody: read-only): what the card, the
    confirm screen and their buttons show."""

    child: Child | None
    facts: CourseFacts
    refusal: Refusal | None = None  # set on the confirm screen when a rule already says no
    clashes: tuple[CourseInfo, ...] = ()  # the child's courses at the same time
    holding: Holding | None = None  # the child is enrolled, waitlisted or in the draw already


async def _child_places(
    session: AsyncSession, student_id: int
) -> list[tuple[int, int, EnrolmentStatus]]:
    """(enrolment id, course id, status) of the child's listed places: one statement."""
    rows = await session.execute(
        select(Enrolment.id, Enrolment.course_id, Enrolment.status).where(
            Enrolment.student_id == student_id, Enrolment.status.in_(LISTED)
        )
    )
    return [(e, c, EnrolmentStatus(st)) for e, c, st in rows.all()]


def _staff(member: Member | None) -> bool:
    """Teachers and admins may browse the programme read-only."""
    return member is not None and (member.has(Role.TEACHER) or member.has(Role.ADMIN))


async def course_card(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    course_id: int,
    *,
    pressed: str | None = None,
) -> CourseView | None:
    """The card of a course of the child's school, for one of the child's guardians, with the
    child's place in it and the courses it clashes with; for staff with `student_id` 0, the
    card alone (read-only). None (and the refusal audited) otherwise. Three statements: the
    guard, the seat figures, the child's places."""
    if student_id == 0 and _staff(member) and member is not None:
        found = (await catalogue.of(session, member.school_id, member.catalogue_version)).course(
            course_id
        )
        if found is None:
            guard.refuse(session, member, REFUSED, pressed)
            return None
        (counts,) = await counted(session, [found])
        return CourseView(None, counts)
    child = await guard.child(session, member, student_id, action=REFUSED, pressed=pressed)
    if child is None or member is None:
        return None
    programme = await catalogue.of(session, member.school_id, member.catalogue_version)
    found = programme.course(course_id)
    if found is None or found.school_id != child.school_id:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    (counts,) = await counted(session, [found])
    places = await _child_places(session, child.id)
    holding = next((Holding(e, st) for e, c, st in places if c == course_id), None)
    active = [programme.course(c) for _, c, st in places if st in ACTIVE]
    clashes = clashing(found, [c for c in active if c is not None])
    return CourseView(child, counts, clashes=tuple(clashes), holding=holding)


async def sign_up_preview(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    course_id: int,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> CourseView | None:
    """The confirm screen: the card, and the first rule that already refuses the sign-up.
    Two statements: the child with their places (`situation`), the seat figures."""
    parent = guard.parent(member)
    if parent is None or member is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    current = await situation(session, found, student_id, course_id, guardian=parent)
    if current is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    (counts,) = await counted(session, [current.course])
    place = current.place(course_id)
    holding = Holding(*place) if place is not None and place[1] in LISTED else None
    return CourseView(
        current.child,
        counts,
        await check(current, now),
        clashes=tuple(current.clashes()),
        holding=holding,
    )


@dataclass(frozen=True)
class Browse:
    """The course list: the member's children, the child it is for, and that child's courses;
    for staff (`read_only`), the whole programme of the term, without a child."""

    children: list[Child]
    child: Child | None  # None: several children and none chosen yet, or staff
    courses: list[CourseFacts]
    clashes: dict[int, list[CourseInfo]] = field(default_factory=dict)  # course id → clashing
    holding: dict[int, EnrolmentStatus] = field(default_factory=dict)  # course id → place
    read_only: bool = False


async def browse(
    session: AsyncSession,
    member: Member | None,
    student_id: int | None,
    *,
    today: dt.date,
    period: int | None = None,
    category: str | None = None,
    weekday: int | None = None,
    pressed: str | None = None,
) -> Browse | None:
    """The catalogue for one of the member's children (the only one, if `student_id` is None),
    each course marked if the child holds a place in it or it clashes with one; for staff
    without children (`student_id` None or 0), the term's whole programme, read-only. None
    (audited) if not theirs. Three statements: the guard, the seat figures, the child's places.
    """
    if student_id is None:
        children = await guard.children(session, member)
        if len(children) != 1:
            if not children and _staff(member):
                return await _browse_all(session, member, today, period, category, weekday)
            return Browse(children, None, [])
        child: Child | None = children[0]
    elif student_id == 0 and _staff(member):
        return await _browse_all(session, member, today, period, category, weekday)
    else:
        child = await guard.child(session, member, student_id, action=REFUSED, pressed=pressed)
        children = [child] if child is not None else []
    if child is None or member is None:
        return None
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    courses = offered(found, child.grade, today, period=period, category=category, weekday=weekday)
    places = await _child_places(session, child.id)
    holding = {c: st for _, c, st in places}
    active = [found.course(c) for _, c, st in places if st in ACTIVE]
    mine = [c for c in active if c is not None]
    clashes = {c.id: clashing(c, mine) for c in courses if c.id not in holding}
    return Browse(
        children,
        child,
        await counted(session, courses),
        clashes={k: v for k, v in clashes.items() if v},
        holding=holding,
    )


async def _browse_all(
    session: AsyncSession,
    member: Member | None,
    today: dt.date,
    period: int | None,
    category: str | None,
    weekday: int | None,
) -> Browse:
    """The term's programme for staff: every grade, nothing to sign up for."""
    assert member is not None
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    term = found.current_term(today)
    courses = [
        c
        for c in (found.of_term(term.id) if term is not None else ())
        if c.cancelled_at is None
        and (period is None or c.period == period)
        and (category is None or c.category.value == category)
        and (weekday is None or c.weekdays & (1 << (weekday - 1)) != 0)
    ]
    return Browse([], None, await counted(session, courses), read_only=True)


@dataclass(frozen=True)
class Place:
    """One of a child's places, for a guardian: what the withdrawal and offer screens name."""

    enrolment_id: int
    child: Child
    course: CourseInfo
    status: EnrolmentStatus


async def place_of(
    session: AsyncSession,
    member: Member | None,
    enrolment_id: int,
    *,
    pressed: str | None = None,
) -> Place | None:
    """The place if `member` is a guardian of its child; else None, the refusal audited.
    One statement (the catalogue names the course)."""
    user_id = guard.parent(member)
    row = None
    if user_id is not None and member is not None:
        query = of_guardian(
            select(*child_columns(), Enrolment.course_id, Enrolment.status), user_id
        ).join(Enrolment, (Enrolment.student_id == Student.id) & (Enrolment.id == enrolment_id))
        row = (await session.execute(query)).first()
    if row is not None and member is not None:
        found = await catalogue.of(session, member.school_id, member.catalogue_version)
        course = found.course(row[6])
        if course is not None:
            return Place(enrolment_id, Child(*row[:6]), course, EnrolmentStatus(row[7]))
    guard.refuse(session, member, REFUSED, pressed)
    return None


async def places(session: AsyncSession, member: Member | None) -> tuple[list[Child], list[Place]]:
    """The member's children and each one's places (enrolled, waitlisted, in the draw), by
    child, period and time: one statement."""
    user_id = guard.parent(member)
    if user_id is None or member is None:
        return [], []
    rows = await session.execute(
        of_guardian(
            select(*child_columns(), Enrolment.id, Enrolment.course_id, Enrolment.status),
            user_id,
        )
        .outerjoin(Enrolment, (Enrolment.student_id == Student.id) & Enrolment.status.in_(LISTED))
        .order_by(Student.class_id, Student.name, Student.id)
    )
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    children: dict[int, Child] = {}
    held: list[Place] = []
    for row in rows.all():
        child = children.setdefault(row[0], Child(*row[:6]))
        course = found.course(row[7]) if row[7] is not None else None
        if course is not None:
            held.append(Place(row[6], child, course, EnrolmentStatus(row[8])))
    order = {child_id: n for n, child_id in enumerate(children)}
    held.sort(key=lambda p: (order[p.child.id], p.course.period, p.course.starts_at))
    return list(children.values()), held


async def withdraw_place(
    session: AsyncSession,
    member: Member,
    place: Place,
    *,
    from_date: dt.date,
    now: dt.datetime | None = None,
) -> bool:
    """A guardian takes the child out of the course for good (`withdraw`), and the freed seat
    is offered on; False if the child had left it already."""
    now = now or utcnow()
    done = await withdraw(session, place.enrolment_id, from_date=from_date, user_id=member.user_id)
    if done is None:
        return False
    await make_offers(session, place.course.id, now)
    await family.tell_other_guardians(
        session,
        place.child.school_id,
        place.child.id,
        member.user_id,
        kind="family_withdrawal",
        template=(
            LEFT_WAITLIST_BY_OTHER
            if place.status is EnrolmentStatus.WAITLISTED
            else WITHDRAWN_BY_OTHER
        ),
        params={"child": place.child.name, "course": place.course.name, **_times(place.course)},
        dedupe=f"withdrawal:{place.enrolment_id}:{now.isoformat()}",
    )
    return True


@dataclass(frozen=True)
class OfferReply:
    """A guardian's answer to a seat offer: the place, what came of it, and the copies of the
    offer the child's other guardians hold (to be edited so their buttons no longer mislead)."""

    place: Place
    answer: OfferAnswer
    copies: list[SentCopy]


async def reply_to_offer(
    session: AsyncSession,
    member: Member | None,
    enrolment_id: int,
    accept: bool,
    *,
    pressed: str | None = None,
    now: dt.datetime | None = None,
) -> OfferReply | None:
    """A guardian's Accept or Decline (`answer_offer`); None (refused, audited) unless the
    member is a guardian of the child. When it decides the offer, the other guardians are
    told, and their copies still waiting to be sent are withdrawn."""
    place = await place_of(session, member, enrolment_id, pressed=pressed)
    if place is None or member is None:
        return None
    now = now or utcnow()
    answer = await answer_offer(session, enrolment_id, accept, user_id=member.user_id, now=now)
    copies: list[SentCopy] = []
    if answer in (OfferAnswer.ACCEPTED, OfferAnswer.DECLINED):
        copies = await _other_offer_copies(session, place, member.user_id)
        await family.tell_other_guardians(
            session,
            place.child.school_id,
            place.child.id,
            member.user_id,
            kind="family_offer",
            template=(
                OFFER_ACCEPTED_BY_OTHER
                if answer is OfferAnswer.ACCEPTED
                else OFFER_DECLINED_BY_OTHER
            ),
            params={
                "child": place.child.name,
                "course": place.course.name,
                **_times(place.course),
            },
            dedupe=f"offer-answer:{enrolment_id}:{now.isoformat()}",
        )
    return OfferReply(place, answer, copies)


async def _other_offer_copies(session: AsyncSession, place: Place, user_id: int) -> list[SentCopy]:
    """The other guardians' copies of this place's offers: those sent, to edit; those not sent
    yet are cancelled (compare-and-set on their status), so no live buttons arrive later."""
    prefix = f"{place.child.school_id}:offer:{place.enrolment_id}:"
    rows = await session.execute(
        select(
            Outbox.id,
            Outbox.chat_id,
            Outbox.message_id,
            Outbox.status,
            func.coalesce(User.locale, School.default_locale),
        )
        .outerjoin(User, User.id == Outbox.user_id)
        .join(School, School.id == Outbox.school_id)
        .where(
            Outbox.school_id == place.child.school_id,
            Outbox.kind.in_(OFFER_KINDS),
            Outbox.dedupe_key.startswith(prefix, autoescape=True),
            Outbox.user_id != user_id,
        )
    )
    copies, waiting = [], []
    for row_id, chat_id, message_id, status, locale in rows.all():
        if status is OutboxStatus.SENT and message_id is not None:
            copies.append(SentCopy(chat_id, message_id, locale))
        elif status in (OutboxStatus.PENDING, OutboxStatus.HELD):
            waiting.append(row_id)
    if waiting:
        await session.execute(
            update(Outbox)
            .where(
                Outbox.id.in_(waiting),
                Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.HELD)),
            )
            .values(status=OutboxStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        )
    return copies


# ---------------------------------------------------------------------------------------------
# Minimum class size, decided by an admin when enrolment closes

SMALL_COURSE = N_(
    "{course} has {enrolled} children signed up, fewer than its minimum of {minimum}. Cancel "
    "it for this term? Every family will be told."
)
COURSE_CANCELLED = N_(
    "{course} will not run this term: too few children signed up. {child}'s place is "
    "cancelled; any fee paid is refunded under the disclosed fee standard. Send /courses to "
    "choose another."
)
CANCEL_LABEL = N_("Cancel the course")
KEEP_LABEL = N_("Keep it running")


async def ask_about_small_courses(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Once enrolment has closed, ask the school's admins about each course below its
    minimum; returns the courses asked about (each is asked once: the messages are deduped)."""
    enrolled = (
        select(func.count())
        .where(Enrolment.course_id == Course.id, Enrolment.status == EnrolmentStatus.ENROLLED)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Course, enrolled)
        .join(Term, Term.id == Course.term_id)
        .where(
            Course.min_size.is_not(None),
            Course.cancelled_at.is_(None),
            Term.enrolment_closes_at.is_not(None),
            Term.enrolment_closes_at <= now,
            Term.ends_on >= now.date(),
            enrolled < Course.min_size,
        )
    )
    asked = []
    for course, count in rows.all():
        admins = await session.execute(
            select(User.id, User.chat_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.school_id == course.school_id,
                UserRole.role == Role.ADMIN,
                User.chat_id.is_not(None),
            )
        )
        await outbox.enqueue_many(
            session,
            course.school_id,
            [
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="small_course",
                    priority=Priority.INTERACTIVE,
                    template=SMALL_COURSE,
                    params={"course": course.name, "enrolled": count, "minimum": course.min_size},
                    buttons=[
                        [
                            {"label": CANCEL_LABEL, "data": f"ms:c:{course.id}"},
                            {"label": KEEP_LABEL, "data": f"ms:k:{course.id}"},
                        ]
                    ],
                    dedupe_key=f"small-course:{course.id}:{user_id}",
                )
                for user_id, chat_id in admins.all()
                if chat_id is not None
            ],
            now=now,
        )
        asked.append(course.id)
    return asked


class CancelOutcome(enum.StrEnum):
    POSSIBLE = "possible"  # only from `assess_cancel`: the course may be cancelled
    CANCELLED = "cancelled"
    NOT_BELOW_MINIMUM = "not_below_minimum"  # no minimum, or enough children signed up
    ENROLMENT_STILL_OPEN = "enrolment_still_open"
    ALREADY_CANCELLED = "already_cancelled"
    NOT_FOUND = "not_found"  # no such course at this school


@dataclass(frozen=True)
class Cancellation:
    outcome: CancelOutcome
    families: int = 0  # families that lose (or would lose) their place
    course: str = ""  # the course's name
    enrolled: int = 0  # children enrolled now
    minimum: int | None = None  # the course's minimum size


async def assess_cancel(
    session: AsyncSession, course_id: int, school_id: int, now: dt.datetime
) -> Cancellation:
    """May the course be cancelled for being too small, and how many families lose a place?

    Only a course of `school_id`, not cancelled yet, whose enrolment has closed and which has
    fewer children enrolled than its minimum."""
    row = (
        await session.execute(
            select(Course, Term.enrolment_closes_at)
            .join(Term, Term.id == Course.term_id)
            .where(Course.id == course_id, Course.school_id == school_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        return Cancellation(CancelOutcome.NOT_FOUND)
    course, closes = row
    if course.cancelled_at is not None:
        return Cancellation(CancelOutcome.ALREADY_CANCELLED, course=course.name)
    if closes is None or closes > now:
        return Cancellation(CancelOutcome.ENROLMENT_STILL_OPEN, course=course.name)
    enrolled = await session.scalar(
        select(func.count()).where(
            Enrolment.course_id == course_id, Enrolment.status == EnrolmentStatus.ENROLLED
        )
    )
    if course.min_size is None or int(enrolled or 0) >= course.min_size:
        return Cancellation(
            CancelOutcome.NOT_BELOW_MINIMUM,
            course=course.name,
            enrolled=int(enrolled or 0),
            minimum=course.min_size,
        )
    places = await session.scalar(
        select(func.count(func.distinct(Enrolment.student_id))).where(
            Enrolment.course_id == course_id, Enrolment.status.in_(LISTED)
        )
    )
    return Cancellation(
        CancelOutcome.POSSIBLE, int(places or 0), course.name, int(enrolled or 0), course.min_size
    )


COURSE_REFUSED = "course.refused"  # the audit action of a refused press on a small course


async def decide_small_course(
    session: AsyncSession,
    member: Member | None,
    course_id: int,
    action: str,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Cancellation | None:
    """An admin's press on the question about a course below its minimum size: ``c`` asks how
    many families would lose their place, ``b`` goes back to the question, ``k`` keeps the
    course running (audited), ``y`` cancels it. None (refused, audited) unless the member is an
    admin of the course's school."""
    if member is None or not member.has(Role.ADMIN) or action not in ("c", "b", "k", "y"):
        guard.refuse(session, member, COURSE_REFUSED, pressed)
        return None
    found = await assess_cancel(session, course_id, member.school_id, now)
    if found.outcome is CancelOutcome.NOT_FOUND:
        guard.refuse(session, member, COURSE_REFUSED, pressed)
        return None
    if action == "k":
        audit.record(
            session,
            member.school_id,
            "course.keep_small",
            actor_user_id=member.user_id,
            target=("course", course_id),
        )
    elif action == "y" and found.outcome is CancelOutcome.POSSIBLE:
        return await cancel_course(
            session, course_id, member.school_id, admin_user_id=member.user_id, now=now
        )
    return found


async def cancel_course(
    session: AsyncSession,
    course_id: int,
    school_id: int,
    *,
    admin_user_id: int,
    now: dt.datetime | None = None,
) -> Cancellation:
    """Cancel a course below its minimum once enrolment has closed: every place ends and every
    family is told. Under the course's lock, re-checking everything; a course that may not be
    cancelled (or already is) is left as it is, with the reason."""
    now = now or utcnow()
    if await lock_course(session, course_id) is None:
        return Cancellation(CancelOutcome.NOT_FOUND)
    found = await assess_cancel(session, course_id, school_id, now)
    if found.outcome is not CancelOutcome.POSSIBLE:
        return found
    marked = await session.execute(
        update(Course)
        .where(Course.id == course_id, Course.cancelled_at.is_(None))
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(marked, "rowcount", 0) != 1:
        return Cancellation(CancelOutcome.ALREADY_CANCELLED, course=found.course)
    rows = await session.scalars(
        select(Enrolment)
        .where(Enrolment.course_id == course_id, Enrolment.status.in_(LISTED))
        .execution_options(populate_existing=True)
    )
    families = set()
    for place in list(rows.all()):
        if not await move(
            session,
            place,
            EnrolmentStatus.CANCELLED,
            expected=LISTED,
            actor=EnrolmentActor.ADMIN,
            user_id=admin_user_id,
            now=now,
            note="course cancelled",
        ):
            continue
        families.add(place.student_id)
        await billing_on_cancel(session, place, now)
        await _tell_guardians(
            session,
            place,
            COURSE_CANCELLED,
            kind="course_cancelled",
            dedupe=f"course-cancelled:{place.id}",
        )
    audit.record(
        session,
        school_id,
        "course.cancel",
        actor_user_id=admin_user_id,
        target=("course", course_id),
        details={"places": len(families), "reason": "below minimum"},
    )
    return Cancellation(CancelOutcome.CANCELLED, len(families), found.course)


async def billing_on_cancel(session: AsyncSession, place: Enrolment, now: dt.datetime) -> None:
    """A cancelled course is refunded in full (its bill line, if it was billed)."""
    await billing.on_leaving(session, place, now.date(), cancelled=True)


_SEAT_INSERT, _SEAT_UPDATE = _seat_statements()
_COUNTS = _counts()
