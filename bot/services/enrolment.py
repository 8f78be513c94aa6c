"""Enrolment: sign-up, the waitlist and its seat offers, withdrawal, and the child's history.

The rules (POLICY.md, "Service structure", "Enrolment", "Fees"): participation is voluntary and
nothing is bundled; a child may join only courses of their grade, whose provider is whitelisted
and whose fee was disclosed (or which are free), while the enrolment window is open, without
two courses at the same time. Withdrawal is never refused.

**No over-booking, however many press at once.** Everything that changes a course's places
(sign-up, withdrawal, seat offers and their answers, expiry, cancelling) first takes the
course's lock (`lock_course`), then reads afresh: concurrent changes to one course queue for
that instant only. A sign-up also locks the child's row, so the rules (time clash, three
choices) are checked inside the transaction that writes. A child can never be enrolled twice:
``UNIQUE (student_id, course_id)``.

**Every status change is compare-and-set** (docs/STATE_CHANGES.md): `move` is one
``UPDATE … WHERE id = :id AND status = :expected``; a caller that loses changes nothing and
reports what really happened.

Every status change writes an `EnrolmentEvent`: the history parents see with `/schedule`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_
from bot.services import audit, deadlines, outbox
from bot.services.outbox import NewMessage
from storage.db import Database
from storage.models import (
    Allocation,
    Category,
    Course,
    Enrolment,
    EnrolmentActor,
    EnrolmentEvent,
    EnrolmentStatus,
    FeeStandard,
    Guardianship,
    LotteryDraw,
    Priority,
    Provider,
    ProviderKind,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    Term,
    User,
    UserRole,
    WhitelistStatus,
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
DECLINE_LABEL = N_("Decline")


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


async def check(
    session: AsyncSession, student_id: int, course_id: int, now: dt.datetime
) -> Refusal | None:
    """Every rule a sign-up must pass, or the first it fails."""
    row = (
        await session.execute(
            select(Course, Term, SchoolClass.grade, Provider, FeeStandard)
            .join(Term, Term.id == Course.term_id)
            .join(Student, Student.id == student_id)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .outerjoin(Provider, Provider.id == Course.provider_id)
            .outerjoin(FeeStandard, FeeStandard.id == Course.fee_standard_id)
            .where(Course.id == course_id, Course.school_id == Student.school_id)
        )
    ).first()
    if row is None:
        return Refusal.NOT_FOUND
    course, term, grade, provider, fee = row
    if course.cancelled_at is not None:
        return Refusal.CANCELLED
    opens, closes = term.enrolment_opens_at, term.enrolment_closes_at
    if (opens is not None and now < opens) or (closes is not None and now >= closes):
        return Refusal.WINDOW_CLOSED
    if not course.grade_min <= grade <= course.grade_max:
        return Refusal.GRADE
    if provider is not None and provider.kind is ProviderKind.OUTSIDE:
        if provider.whitelist_status is not WhitelistStatus.WHITELISTED:
            return Refusal.PROVIDER
    if fee is not None and fee.amount_fen > 0 and fee.disclosed_on is None:
        return Refusal.FEE_UNDISCLOSED
    existing = await session.scalar(
        select(Enrolment.status).where(
            Enrolment.student_id == student_id, Enrolment.course_id == course_id
        )
    )
    if existing in (*ACTIVE, EnrolmentStatus.ENTERED):
        return Refusal.ALREADY
    if await clashes(session, student_id, course):
        return Refusal.CLASH
    return None


async def clashes(session: AsyncSession, student_id: int, course: Course) -> list[Course]:
    """The child's active courses in the same period on a shared weekday, overlapping in time."""
    rows = await session.scalars(
        select(Course)
        .join(Enrolment, Enrolment.course_id == Course.id)
        .where(
            Enrolment.student_id == student_id,
            Enrolment.status.in_(ACTIVE),
            Course.id != course.id,
            Course.term_id == course.term_id,
            Course.weekdays.op("&")(course.weekdays) != 0,
            Course.starts_at < course.ends_at,
            Course.ends_at > course.starts_at,
        )
    )
    return list(rows.all())


async def sign_up(
    db: Database,
    student_id: int,
    course_id: int,
    *,
    user_id: int | None,
    actor: EnrolmentActor = EnrolmentActor.PARENT,
    now: dt.datetime | None = None,
) -> SignedUp | Refusal:
    """Lock the course and the child, check the rules, then take a seat, a waitlist place or
    a draw entry: all in one transaction, so two presses at once cannot both pass the checks."""
    now = now or utcnow()
    try:
        async with db.writing() as session:
            course = await lock_course(session, course_id)
            await lock_student(session, student_id)
            refusal = await check(session, student_id, course_id, now)
            if refusal is not None:
                return refusal
            assert course is not None
            # A withdrawn child signing up again reuses the row (one per student and course).
            previous = await session.scalar(
                select(Enrolment.id).where(
                    Enrolment.student_id == student_id, Enrolment.course_id == course_id
                )
            )
            if await _open_lottery(session, course_id):
                rank = await _next_rank(session, student_id, course_id)
                if rank > MAX_CHOICES:
                    return Refusal.TOO_MANY_CHOICES
                return await _enter_draw(
                    session, course.school_id, student_id, course_id, previous, rank, user_id, now
                )
            return await _take_place(
                session, course.school_id, student_id, course_id, previous, user_id, actor, now
            )
    except IntegrityError:  # a second press, or the other guardian, got there first
        return Refusal.ALREADY


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
            .execution_options(synchronize_session=False)
        )
    return await session.scalar(
        select(Course)
        .where(Course.id == course_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_student(session: AsyncSession, student_id: int) -> Student | None:
    """Lock the child's row (after the course's): their sign-ups to other courses wait."""
    return await session.scalar(
        select(Student)
        .where(Student.id == student_id)
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
    school_id: int,
    student_id: int,
    course_id: int,
    previous: int | None,
    user_id: int | None,
    actor: EnrolmentActor,
    now: dt.datetime,
) -> SignedUp:
    """The seat count and the write in one statement, under the course's lock."""
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
    statement: Any
    if previous is None:
        statement = (
            insert(Enrolment)
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
                    literal(school_id),
                    literal(student_id),
                    literal(course_id),
                    status,
                    position,
                    literal(user_id),
                    literal(now, Enrolment.created_at.type),
                    literal(now, Enrolment.updated_at.type),
                ),
            )
            .returning(Enrolment.id, Enrolment.status, Enrolment.waitlist_position)
        )
    else:
        statement = (
            update(Enrolment)
            .where(Enrolment.id == previous, Enrolment.status.not_in(ACTIVE))
            .values(
                status=status,
                waitlist_position=position,
                created_by_user_id=user_id,
                updated_at=now,
                offer_expires_at=None,
                withdrawn_from=None,
            )
            .returning(Enrolment.id, Enrolment.status, Enrolment.waitlist_position)
        )
    enrolment_id, new_status, new_position = (await session.execute(statement)).one()
    result = SignedUp(enrolment_id, EnrolmentStatus(new_status), new_position)
    record_event(
        session, school_id, result.enrolment_id, result.status, new_position, actor, user_id, now
    )
    return result


async def _open_lottery(session: AsyncSession, course_id: int) -> bool:
    """A lottery course whose term has not been drawn yet: sign-ups are draw entries."""
    course = await session.get(Course, course_id)
    if course is None or course.allocation is not Allocation.LOTTERY:
        return False
    drawn = await session.scalar(
        select(LotteryDraw.id).where(LotteryDraw.term_id == course.term_id)
    )
    return drawn is None


async def _next_rank(session: AsyncSession, student_id: int, course_id: int) -> int:
    """The family's preference order: entries of the child for lottery courses in the same
    period on a shared weekday, in the order they were made."""
    course = await session.get(Course, course_id)
    assert course is not None
    earlier = await session.scalar(
        select(func.count())
        .select_from(Enrolment)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            Enrolment.student_id == student_id,
            Enrolment.status == EnrolmentStatus.ENTERED,
            Course.term_id == course.term_id,
            Course.period == course.period,
            Course.weekdays.op("&")(course.weekdays) != 0,
        )
    )
    return int(earlier or 0) + 1


async def _enter_draw(
    session: AsyncSession,
    school_id: int,
    student_id: int,
    course_id: int,
    previous: int | None,
    rank: int,
    user_id: int | None,
    now: dt.datetime,
) -> SignedUp:
    if previous is None:
        entry = Enrolment(
            school_id=school_id,
            student_id=student_id,
            course_id=course_id,
            status=EnrolmentStatus.ENTERED,
            draw_rank=rank,
            created_by_user_id=user_id,
            created_at=now,
            updated_at=now,
        )
        session.add(entry)
        await session.flush()
    else:
        found = await fresh(session, previous)
        assert found is not None
        entry = found
        entry.status, entry.draw_rank, entry.updated_at = EnrolmentStatus.ENTERED, rank, now
        entry.waitlist_position = None
    record_event(
        session, school_id, entry.id, entry.status, None, EnrolmentActor.PARENT, user_id, now
    )
    return SignedUp(entry.id, EnrolmentStatus.ENTERED, None, rank)


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
    guardians = await guardian_chats(session, [enrolment.student_id])
    await outbox.enqueue_many(
        session,
        enrolment.school_id,
        [
            NewMessage(
                chat_id=chat_id,
                user_id=user_id,
                kind=kind,
                priority=Priority.INTERACTIVE,
                template=template,
                params=params,
                buttons=buttons,
                dedupe_key=f"{dedupe}:{user_id}",
            )
            for user_id, chat_id in guardians.get(enrolment.student_id, [])
        ],
    )


async def guardian_chats(
    session: AsyncSession, student_ids: Iterable[int]
) -> dict[int, list[tuple[int, int]]]:
    """Student id → (user id, chat id) of each guardian the bot can write to; one query."""
    rows = await session.execute(
        select(Guardianship.student_id, User.id, User.chat_id)
        .join(User, User.id == Guardianship.user_id)
        .where(Guardianship.student_id.in_(list(student_ids)), User.chat_id.is_not(None))
    )
    found: dict[int, list[tuple[int, int]]] = {}
    for student_id, user_id, chat_id in rows.all():
        if chat_id is not None:
            found.setdefault(student_id, []).append((user_id, chat_id))
    return found


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

    course: Course
    teacher: str | None
    provider: str | None  # None: the school itself
    fee_fen: int | None  # None or 0: free
    fee_unit: str | None
    enrolled: int
    waitlisted: int
    held: int = 0  # seats taken or held for an open offer: the rule sign-up counts by

    @property
    def seats_left(self) -> int | None:
        if self.course.capacity is None:
            return None
        return max(self.course.capacity - self.held, 0)


async def current_term(session: AsyncSession, school_id: int, today: dt.date) -> Term | None:
    """The term running today, else the next one, else the last one."""
    terms = list(
        (
            await session.scalars(
                select(Term).where(Term.school_id == school_id).order_by(Term.starts_on)
            )
        ).all()
    )
    for term in terms:
        if term.ends_on >= today:
            return term
    return terms[-1] if terms else None


async def catalogue(
    session: AsyncSession,
    student_id: int,
    *,
    today: dt.date,
    period: int | None = None,
    category: str | None = None,
    weekday: int | None = None,
) -> list[CourseFacts]:
    """Courses of the current term the child's grade may take, with their seat figures."""
    student = await session.get(Student, student_id)
    if student is None:
        return []
    grade = await session.scalar(
        select(SchoolClass.grade).where(SchoolClass.id == student.class_id)
    )
    term = await current_term(session, student.school_id, today)
    if term is None or grade is None:
        return []
    query = select(Course.id).where(
        Course.term_id == term.id,
        Course.grade_min <= grade,
        Course.grade_max >= grade,
        Course.cancelled_at.is_(None),
    )
    if period is not None:
        query = query.where(Course.period == period)
    if category is not None:
        query = query.where(Course.category == category)
    if weekday is not None:
        query = query.where(Course.weekdays.op("&")(1 << (weekday - 1)) != 0)
    ids = list((await session.scalars(query.order_by(Course.period, Course.code))).all())
    return await facts(session, ids)


async def facts(session: AsyncSession, course_ids: list[int]) -> list[CourseFacts]:
    if not course_ids:
        return []
    counts = await session.execute(
        select(Enrolment.course_id, Enrolment.status, func.count())
        .where(Enrolment.course_id.in_(course_ids))
        .group_by(Enrolment.course_id, Enrolment.status)
    )
    tally: dict[tuple[int, EnrolmentStatus], int] = {
        (course_id, status): n for course_id, status, n in counts.all()
    }
    held = await session.execute(
        select(Enrolment.course_id, func.count())
        .where(Enrolment.course_id.in_(course_ids), _holds_seat())
        .group_by(Enrolment.course_id)
    )
    holding: dict[int, int] = {course_id: n for course_id, n in held.all()}
    rows = await session.execute(
        select(Course, Teacher.name, Provider, FeeStandard)
        .outerjoin(Teacher, Teacher.id == Course.teacher_id)
        .outerjoin(Provider, Provider.id == Course.provider_id)
        .outerjoin(FeeStandard, FeeStandard.id == Course.fee_standard_id)
        .where(Course.id.in_(course_ids))
    )
    found = {
        course.id: CourseFacts(
            course=course,
            teacher=teacher,
            provider=provider.name
            if provider is not None and provider.kind is ProviderKind.OUTSIDE
            else None,
            fee_fen=fee.amount_fen if fee is not None else None,
            fee_unit=fee.unit.value if fee is not None else None,
            enrolled=tally.get((course.id, EnrolmentStatus.ENROLLED), 0),
            waitlisted=tally.get((course.id, EnrolmentStatus.WAITLISTED), 0),
            held=holding.get(course.id, 0),
        )
        for course, teacher, provider, fee in rows.all()
    }
    return [found[i] for i in course_ids if i in found]


async def active_enrolments(
    session: AsyncSession, student_id: int
) -> list[tuple[Enrolment, CourseFacts]]:
    """The child's enrolments and waitlist places, by period and time."""
    rows = list(
        (
            await session.scalars(
                select(Enrolment).where(
                    Enrolment.student_id == student_id, Enrolment.status.in_(LISTED)
                )
            )
        ).all()
    )
    by_course = {f.course.id: f for f in await facts(session, [e.course_id for e in rows])}
    paired = [(e, by_course[e.course_id]) for e in rows if e.course_id in by_course]
    return sorted(paired, key=lambda p: (p[1].course.period, p[1].course.starts_at))


async def is_guardian(session: AsyncSession, user_id: int, student_id: int) -> bool:
    return (
        await session.scalar(
            select(Guardianship.id).where(
                Guardianship.user_id == user_id, Guardianship.student_id == student_id
            )
        )
    ) is not None


@dataclass(frozen=True)
class PlanAdvice:
    """The "1+N" guidance as advice: an interest activity each attended day, science present."""

    days_without_interest: list[int]  # ISO weekdays with homework help only
    has_science: bool

    @property
    def meets(self) -> bool:
        return not self.days_without_interest and self.has_science


def advise(courses: list[Course]) -> PlanAdvice:
    attended: set[int] = set()
    interest: set[int] = set()
    for course in courses:
        days = set(weekdays_of(course.weekdays))
        attended |= days
        if course.category is not Category.HOMEWORK:
            interest |= days
    return PlanAdvice(
        days_without_interest=sorted(attended - interest),
        has_science=any(c.category is Category.SCIENCE for c in courses),
    )


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
        return Cancellation(CancelOutcome.NOT_BELOW_MINIMUM, course=course.name)
    places = await session.scalar(
        select(func.count(func.distinct(Enrolment.student_id))).where(
            Enrolment.course_id == course_id, Enrolment.status.in_(LISTED)
        )
    )
    return Cancellation(CancelOutcome.POSSIBLE, int(places or 0), course.name)


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
