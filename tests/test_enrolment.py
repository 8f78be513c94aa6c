"""Enrolment rules, the waitlist and seat offers, as services over a real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import insert, select, update

from bot.services import enrolment, lottery, timetable
from bot.services.catalogue import CourseInfo
from bot.services.enrolment import OfferAnswer, Refusal, SignedUp
from storage.db import Database
from storage.models import (
    Allocation,
    Category,
    Course,
    Enrolment,
    EnrolmentActor,
    EnrolmentStatus,
    FeeStandard,
    FeeUnit,
    Guardianship,
    LotteryDraw,
    Outbox,
    Provider,
    ProviderKind,
    Role,
    School,
    Student,
    Term,
    User,
    WhitelistStatus,
    utcnow,
)
from tests.factories import SchoolData, add_member

MONDAY, WEDNESDAY = 0b0000001, 0b0000100


async def make_course(db: Database, school: SchoolData, code: str, **fields: Any) -> int:
    values: dict[str, Any] = {
        "school_id": school.school_id,
        "term_id": school.term_id,
        "code": code,
        "name": f"课程{code}",
        "category": Category.SCIENCE,
        "period": 2,
        "grade_min": 1,
        "grade_max": 6,
        "weekdays": MONDAY,
        "starts_at": dt.time(16, 40),
        "ends_at": dt.time(17, 40),
        "venue": "科学教室",
        "capacity": 2,
    } | fields
    async with db.transaction() as session:
        course = Course(**values)
        session.add(course)
        await session.flush()
        return course.id


async def pupils(db: Database, school: SchoolData, count: int) -> list[int]:
    """`count` more third-graders in 三年级1班."""
    async with db.transaction() as session:
        await session.execute(
            insert(Student),
            [
                {
                    "school_id": school.school_id,
                    "class_id": school.class_ids["3-1"],
                    "student_no": f"X{i:04d}",
                    "name": f"学生{i}",
                    "active": True,
                }
                for i in range(count)
            ],
        )
        rows = await session.scalars(
            select(Student.id).where(Student.student_no.like("X%")).order_by(Student.student_no)
        )
        return list(rows.all())


async def test_seats_then_a_waitlist_in_order(db: Database, school: SchoolData) -> None:
    course = await make_course(db, school, "ROBO")
    kids = await pupils(db, school, 4)
    results = [await enrolment.sign_up(db, kid, course, user_id=None) for kid in kids]
    assert [(r.status, r.waitlist_position) for r in results if isinstance(r, SignedUp)] == [
        (EnrolmentStatus.ENROLLED, None),
        (EnrolmentStatus.ENROLLED, None),
        (EnrolmentStatus.WAITLISTED, 1),
        (EnrolmentStatus.WAITLISTED, 2),
    ]
    assert await enrolment.sign_up(db, kids[0], course, user_id=None) is Refusal.ALREADY


async def test_the_rules_each_refuse_with_their_reason(db: Database, school: SchoolData) -> None:
    xiaoming, xiaohong = school.student_ids["李小明"], school.student_ids["李小红"]
    monday = await make_course(db, school, "MON")
    overlapping = await make_course(
        db, school, "MON2", starts_at=dt.time(17, 0), ends_at=dt.time(18, 0)
    )
    wednesday = await make_course(db, school, "WED", weekdays=WEDNESDAY)
    async with db.transaction() as session:
        outside = Provider(
            school_id=school.school_id,
            code="P",
            name="星火科创",
            kind=ProviderKind.OUTSIDE,
            whitelist_status=WhitelistStatus.REMOVED,
        )
        secret_fee = FeeStandard(
            school_id=school.school_id,
            term_id=school.term_id,
            code="F",
            name="材料费",
            amount_fen=5000,
            unit=FeeUnit.TERM,
        )
        session.add_all([outside, secret_fee])
        await session.flush()
        ids = outside.id, secret_fee.id
    removed = await make_course(db, school, "OUT", weekdays=WEDNESDAY, provider_id=ids[0])
    undisclosed = await make_course(db, school, "FEE", weekdays=WEDNESDAY, fee_standard_id=ids[1])

    assert await enrolment.sign_up(db, xiaohong, monday, user_id=None) is Refusal.GRADE  # grade 7
    assert isinstance(await enrolment.sign_up(db, xiaoming, monday, user_id=None), SignedUp)
    assert await enrolment.sign_up(db, xiaoming, overlapping, user_id=None) is Refusal.CLASH
    assert isinstance(await enrolment.sign_up(db, xiaoming, wednesday, user_id=None), SignedUp)
    assert await enrolment.sign_up(db, xiaoming, removed, user_id=None) is Refusal.PROVIDER
    assert (
        await enrolment.sign_up(db, xiaoming, undisclosed, user_id=None) is Refusal.FEE_UNDISCLOSED
    )
    async with db.transaction() as session:
        await session.execute(
            update(FeeStandard).values(
                disclosed_on=dt.date(2026, 8, 21), disclosed_at=utcnow() - dt.timedelta(days=30)
            )
        )
        await session.execute(
            update(Term).values(enrolment_closes_at=utcnow() - dt.timedelta(days=1))
        )
    assert (
        await enrolment.sign_up(db, xiaoming, undisclosed, user_id=None) is Refusal.WINDOW_CLOSED
    )
    assert await enrolment.sign_up(db, xiaoming, 99999, user_id=None) is Refusal.NOT_FOUND


async def test_five_hundred_at_once_for_thirty_seats(db: Database, school: SchoolData) -> None:
    course = await make_course(db, school, "RUSH", capacity=30)
    kids = await pupils(db, school, 500)
    results = await asyncio.gather(
        *(enrolment.sign_up(db, kid, course, user_id=None) for kid in kids)
    )
    assert all(isinstance(r, SignedUp) for r in results)
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Enrolment.status, Enrolment.waitlist_position).where(
                    Enrolment.course_id == course
                )
            )
        ).all()
    enrolled = [r for r in rows if r[0] is EnrolmentStatus.ENROLLED]
    waiting = sorted(p for s, p in rows if s is EnrolmentStatus.WAITLISTED)
    assert len(enrolled) == 30
    assert waiting == list(range(1, 471))  # distinct, consecutive
    # What each family was told matches what was stored.
    told = sorted(
        r.waitlist_position for r in results if isinstance(r, SignedUp) and r.waitlist_position
    )
    assert told == waiting


async def test_a_freed_seat_is_offered_in_order_and_moves_on(
    db: Database, school: SchoolData
) -> None:
    course = await make_course(db, school, "OFFER", capacity=1)
    first, second, third, fourth = await pupils(db, school, 4)
    signed = {
        kid: await enrolment.sign_up(db, kid, course, user_id=None)
        for kid in (first, second, third, fourth)
    }
    ids = {kid: r.enrolment_id for kid, r in signed.items() if isinstance(r, SignedUp)}
    now = utcnow()
    async with db.transaction() as session:
        await enrolment.withdraw(session, ids[first], from_date=now.date(), user_id=None)
        assert await enrolment.make_offers(session, course, now) == [ids[second]]
        # The offered seat is held: nobody else can take it meanwhile.
        assert await enrolment.free_seats(session, course) == 0
    late = await enrolment.sign_up(db, first, course, user_id=None)  # comes back: waits
    assert isinstance(late, SignedUp) and late.status is EnrolmentStatus.WAITLISTED

    async with db.transaction() as session:
        answer = await enrolment.answer_offer(session, ids[second], False, user_id=None, now=now)
        assert answer is OfferAnswer.DECLINED
        # Declining passes the offer to the next child at once.
        third_row = await session.get(Enrolment, ids[third])
        assert third_row is not None and third_row.offer_expires_at is not None
        deadline = third_row.offer_expires_at  # OFFER_HOURS on, out of the quiet hours
    # The third family lets it expire: it moves on to the fourth.
    later = deadline + dt.timedelta(minutes=1)
    async with db.transaction() as session:
        assert (
            await enrolment.answer_offer(session, ids[third], True, user_id=None, now=later)
            is OfferAnswer.EXPIRED
        )
        assert await enrolment.expire_offers(session, later) == [course]
        assert (
            await enrolment.answer_offer(session, ids[fourth], True, user_id=None, now=later)
            is OfferAnswer.ACCEPTED
        )
        assert await enrolment.waitlist(session, course) == [(ids[first], 1)]
        history = await enrolment.history(session, fourth)
    assert [(e.status, e.actor, e.note) for e, _ in history] == [
        (EnrolmentStatus.WAITLISTED, EnrolmentActor.PARENT, None),
        (EnrolmentStatus.WAITLISTED, EnrolmentActor.OFFER, "offered"),
        (EnrolmentStatus.ENROLLED, EnrolmentActor.OFFER, "offer accepted"),
    ]


def info(category: Category, weekdays: int, term_id: int = 1, period: int = 2) -> CourseInfo:
    """A course as the catalogue holds it, for the pure rules."""
    return CourseInfo(
        id=hash((category, weekdays, term_id, period)) & 0xFFFF,
        school_id=1,
        term_id=term_id,
        code="C",
        name="课程",
        description=None,
        category=category,
        period=period,
        level=None,
        grade_min=1,
        grade_max=6,
        weekdays=weekdays,
        starts_at=dt.time(16, 40),
        ends_at=dt.time(17, 40),
        venue="教室",
        teacher_id=None,
        provider_id=None,
        capacity=None,
        allocation=Allocation.FIRST_COME,
        min_size=None,
        cancelled_at=None,
        teacher=None,
        provider=None,
        provider_ok=True,
        fee_fen=None,
        fee_unit=None,
        fee_disclosed=True,
    )


def test_one_plus_n_advice_reads_the_enrolled_courses_of_the_term_only() -> None:
    enrolled, waiting = EnrolmentStatus.ENROLLED, EnrolmentStatus.WAITLISTED
    homework = info(Category.HOMEWORK, 0b0011111, period=1)
    science = info(Category.SCIENCE, MONDAY)
    sports = info(Category.SPORTS, 0b0011110)
    advice = timetable.advice([(enrolled, homework), (enrolled, science)], 1)
    assert advice == timetable.Advice((2, 3, 4, 5), without_science=False, without_sports=True)
    assert not advice.meets
    assert timetable.advice([(enrolled, c) for c in (homework, science, sports)], 1).meets  # type: ignore[union-attr]
    # A waitlist place is not attended: the same week as without it.
    assert timetable.advice([(enrolled, homework), (enrolled, science), (waiting, sports)], 1) == (
        advice
    )
    # Another term's courses do not count; nothing enrolled gives no advice at all.
    assert timetable.advice([(enrolled, info(Category.SPORTS, 0b11111, term_id=2))], 1) is None
    assert timetable.advice([(waiting, sports)], 1) is None
    assert enrolment.weekdays_of(0b1000101) == [1, 3, 7]


async def test_lottery_entries_are_ranked_and_the_draw_is_reproducible(
    db: Database, school: SchoolData
) -> None:

    chess = await make_course(db, school, "CHESS", allocation=Allocation.LOTTERY, capacity=1)
    clay = await make_course(db, school, "CLAY", allocation=Allocation.LOTTERY, capacity=1)
    same_time = [
        await make_course(db, school, f"X{i}", allocation=Allocation.LOTTERY) for i in range(3)
    ]
    kids = await pupils(db, school, 3)
    for kid in kids:  # everyone's first choice is chess, second clay
        first = await enrolment.sign_up(db, kid, chess, user_id=None)
        second = await enrolment.sign_up(db, kid, clay, user_id=None)
        assert isinstance(first, SignedUp) and first.status is EnrolmentStatus.ENTERED
        assert (first.draw_rank, second.draw_rank) == (1, 2)  # type: ignore[union-attr]
    # A fourth choice at the same time is one too many; nothing is decided before the draw.
    await enrolment.sign_up(db, kids[0], same_time[0], user_id=None)
    assert (
        await enrolment.sign_up(db, kids[0], same_time[1], user_id=None)
        is Refusal.TOO_MANY_CHOICES
    )
    async with db.transaction() as session:
        assert await enrolment.free_seats(session, chess) == 1
    await add_member(db, school, 950, {Role.PARENT}, ())
    async with db.transaction() as session:  # a guardian for the first child, to be told
        user_id = (await session.scalars(select(User.id).where(User.telegram_id == 950))).one()
        session.add(
            Guardianship(
                school_id=school.school_id,
                user_id=user_id,
                student_id=kids[0],
                consent_version="t",
                consented_at=utcnow(),
            )
        )

    seed = "00ff" * 8
    async with db.transaction() as session:
        numbers = dict(
            (
                await session.execute(
                    select(Student.id, Student.student_no).where(Student.id.in_(kids))
                )
            ).all()
        )
        session.add(LotteryDraw(school_id=school.school_id, term_id=school.term_id, seed=seed))
        await lottery.draw(session, school.term_id, seed, utcnow())

    # Anyone can recompute the keys from the seed and check the outcome.
    def order(code: str) -> list[int]:
        return sorted(
            kids, key=lambda k: hashlib.sha256(f"{seed}:{code}:{numbers[k]}".encode()).hexdigest()
        )

    chess_winner = order("CHESS")[0]
    clay_order = [k for k in order("CLAY") if k != chess_winner]
    async with db.transaction() as session:
        rows = dict(
            ((s, c), (st, p))
            for s, c, st, p in (
                await session.execute(
                    select(
                        Enrolment.student_id,
                        Enrolment.course_id,
                        Enrolment.status,
                        Enrolment.waitlist_position,
                    )
                )
            ).all()
        )
        messages = (
            await session.scalars(select(Outbox).where(Outbox.kind == "draw_result"))
        ).all()
    assert rows[chess_winner, chess] == (EnrolmentStatus.ENROLLED, None)
    assert rows[chess_winner, clay][0] is EnrolmentStatus.WITHDRAWN  # same time: entry ends
    assert rows[clay_order[0], clay] == (EnrolmentStatus.ENROLLED, None)
    assert rows[clay_order[1], clay] == (EnrolmentStatus.WAITLISTED, 1)
    # The child who won clay leaves the chess waitlist (same time); the last waits for both.
    assert rows[clay_order[0], chess][0] is EnrolmentStatus.WITHDRAWN
    assert rows[clay_order[1], chess] == (EnrolmentStatus.WAITLISTED, 1)
    assert messages and all(seed in json.dumps(m.params) for m in messages)
    # A sign-up after the draw takes a free seat or the waitlist, as usual.
    result = await enrolment.sign_up(db, school.student_ids["张伟"], chess, user_id=None)
    assert isinstance(result, SignedUp) and result.waitlist_position == 2


async def test_the_school_sets_how_long_an_offer_is_held(db: Database, school: SchoolData) -> None:

    course = await make_course(db, school, "OFFER2", capacity=1)
    first, second = await pupils(db, school, 2)
    signed = [await enrolment.sign_up(db, kid, course, user_id=None) for kid in (first, second)]
    now = utcnow()
    async with db.transaction() as session:
        # No quiet hours here: the deadline is exactly offer_hours on, whatever the hour.
        await session.execute(
            update(School).values(offer_hours=2, quiet_from=dt.time(0), quiet_until=dt.time(0))
        )
        await enrolment.withdraw(
            session, signed[0].enrolment_id, from_date=now.date(), user_id=None
        )  # type: ignore[union-attr]
        (offered,) = await enrolment.make_offers(session, course, now)
        row = await session.get(Enrolment, offered)
        assert row is not None and row.offer_expires_at == now + dt.timedelta(hours=2)
