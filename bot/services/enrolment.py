"""Enrolment: sign-up, the waitlist and its seat offers, withdrawal, and the child's history.

The rules (POLICY.md, "Service structure", "Enrolment", "Fees"): participation is voluntary and
nothing is bundled; a child may join only courses of their grade, whose provider is whitelisted
and whose fee was disclosed (or which are free), while the enrolment window is open, without
two courses at the same time. Withdrawal is never refused.

**No over-booking, however many press at once.** The seat count and the insert are one SQL
statement (`INSERT … SELECT` with the count inside), run as the first statement of its own
transaction: SQLite runs it under its single writer lock; on PostgreSQL the course row is
locked first (``SELECT … FOR UPDATE``), so concurrent sign-ups for one course queue for that
instant only. A child can never be enrolled twice: ``UNIQUE (student_id, course_id)``.

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
    """Check the rules, then take a seat or a waitlist place in one atomic step."""
    now = now or utcnow()
    async with db.transaction() as session:
        refusal = await check(session, student_id, course_id, now)
        school_id = await session.scalar(select(Course.school_id).where(Course.id == course_id))
        # A withdrawn child signing up again reuses the row (one per student and course).
        previous = await session.scalar(
            select(Enrolment.id).where(
                Enrolment.student_id == student_id, Enrolment.course_id == course_id
            )
        )
        lottery = await _open_lottery(session, course_id)
        rank = await _next_rank(session, student_id, course_id) if lottery else None
    if refusal is not None:
        return refusal
    assert school_id is not None
    if rank is not None and rank > MAX_CHOICES:
        return Refusal.TOO_MANY_CHOICES
    try:
        async with db.writing() as session:
            if rank is not None:
                return await _enter_draw(
                    session, school_id, student_id, course_id, previous, rank, user_id, now
                )
            return await _take_place(
                session, school_id, student_id, course_id, previous, user_id, actor, now
            )
    except IntegrityError:  # a second press, or the other guardian, got there first
        return Refusal.ALREADY


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
    """The seat count and the write in one statement, the first of its transaction.

    On SQLite a read before it would pin an old snapshot; the write statement itself takes the
    writer lock and sees the newest data. PostgreSQL locks the course row first.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(Course.id).where(Course.id == course_id).with_for_update())
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
        found = await session.get(Enrolment, previous)
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


def move(
    session: AsyncSession,
    enrolment: Enrolment,
    status: EnrolmentStatus,
    *,
    actor: EnrolmentActor,
    user_id: int | None,
    now: dt.datetime,
    position: int | None = None,
    note: str | None = None,
) -> None:
    """Change an enrolment's status (any open offer ends) and record it in the history."""
    enrolment.status, enrolment.waitlist_position = status, position
    enrolment.offer_expires_at, enrolment.updated_at = None, now
    record_event(
        session, enrolment.school_id, enrolment.id, status, position, actor, user_id, now, note
    )


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
) -> Enrolment | None:
    """Leave a course (or its waitlist) for good. Never refused; None if not active."""
    now = now or utcnow()
    enrolment = await session.get(Enrolment, enrolment_id, with_for_update=True)
    if enrolment is None or enrolment.status not in LISTED:
        return None
    move(
        session,
        enrolment,
        EnrolmentStatus.WITHDRAWN,
        actor=actor,
        user_id=user_id,
        now=now,
        note=note,
    )
    enrolment.withdrawn_from = from_date
    await session.flush()
    await compact_waitlist(session, enrolment.course_id)
    return enrolment


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
    (or `hours`); returns their enrolment ids."""
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
            buttons=[
                [
                    {"label": ACCEPT_LABEL, "data": f"of:{enrolment.id}:1"},
                    {"label": DECLINE_LABEL, "data": f"of:{enrolment.id}:0"},
                ]
            ],
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
    NONE = "none"  # no open offer for this enrolment


async def answer_offer(
    session: AsyncSession,
    enrolment_id: int,
    accept: bool,
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> OfferAnswer:
    now = now or utcnow()
    enrolment = await session.get(Enrolment, enrolment_id, with_for_update=True)
    if (
        enrolment is None
        or enrolment.status is not EnrolmentStatus.WAITLISTED
        or enrolment.offer_expires_at is None
    ):
        return OfferAnswer.NONE
    if enrolment.offer_expires_at <= now:
        return OfferAnswer.EXPIRED
    course_id = enrolment.course_id
    if accept:
        move(
            session,
            enrolment,
            EnrolmentStatus.ENROLLED,
            actor=EnrolmentActor.OFFER,
            user_id=user_id,
            now=now,
            note="offer accepted",
        )
        await session.flush()
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
    )
    await make_offers(session, course_id, now)
    return OfferAnswer.DECLINED


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
    """Offers past their deadline leave the waitlist and move on; returns the courses touched."""
    rows = await session.scalars(
        select(Enrolment).where(
            Enrolment.status == EnrolmentStatus.WAITLISTED,
            Enrolment.offer_expires_at.is_not(None),
            Enrolment.offer_expires_at <= now,
        )
    )
    courses = set()
    for enrolment in rows.all():
        await _tell_guardians(
            session,
            enrolment,
            OFFER_EXPIRED_TEXT,
            kind="seat_offer_expired",
            dedupe=f"offer-expired:{enrolment.id}:{now.isoformat()}",
        )
        await withdraw(
            session,
            enrolment.id,
            from_date=now.date(),
            user_id=None,
            actor=EnrolmentActor.OFFER,
            now=now,
            note="offer expired",
        )
        courses.add(enrolment.course_id)
    for course_id in courses:
        await make_offers(session, course_id, now)
    return sorted(courses)


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

    @property
    def seats_left(self) -> int | None:
        if self.course.capacity is None:
            return None
        return max(self.course.capacity - self.enrolled, 0)


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


async def cancel_course(
    session: AsyncSession, course_id: int, *, admin_user_id: int, now: dt.datetime | None = None
) -> int | None:
    """Cancel a course: every place ends and every family is told; returns the places
    cancelled, or None if the course was cancelled already."""
    now = now or utcnow()
    course = await session.get(Course, course_id, with_for_update=True)
    if course is None or course.cancelled_at is not None:
        return None
    course.cancelled_at = now
    rows = await session.scalars(
        select(Enrolment).where(Enrolment.course_id == course_id, Enrolment.status.in_(LISTED))
    )
    places = list(rows.all())
    for place in places:
        move(
            session,
            place,
            EnrolmentStatus.CANCELLED,
            actor=EnrolmentActor.ADMIN,
            user_id=admin_user_id,
            now=now,
            note="course cancelled",
        )
        await _tell_guardians(
            session,
            place,
            COURSE_CANCELLED,
            kind="course_cancelled",
            dedupe=f"course-cancelled:{place.id}",
        )
    audit.record(
        session,
        course.school_id,
        "course.cancel",
        actor_user_id=admin_user_id,
        target=("course", course.id),
        details={"places": len(places), "reason": "below minimum"},
    )
    return len(places)
