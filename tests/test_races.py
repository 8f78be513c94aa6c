"""Status changes under races: each test interleaves two transactions by hand.

The second party acts at a chosen point inside the first one's work (a hook on its first read,
or on its rule check). Where the fix makes the second party wait for a lock, it runs as a task
and the test waits until the database (PostgreSQL: `pg_stat_activity`) or the writer queue
(SQLite) shows it waiting, never for a time on the clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import broadcasts, enrolment, leaves, lottery
from bot.services.broadcasts import Audience, AudienceKind
from bot.services.enrolment import OfferAnswer, Refusal, SignedUp
from storage.db import Database
from storage.models import (
    Allocation,
    Course,
    Enrolment,
    EnrolmentStatus,
    Leave,
    Outbox,
    OutboxStatus,
    Role,
    Term,
)
from tests.factories import SchoolData, add_member
from tests.test_enrolment import make_course, pupils
from tests.test_leaves import MONDAY, at, enrolled_child

T0 = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC)


def after_first_read(session: AsyncSession, action: Callable[[], Awaitable[None]]) -> None:
    """Run `action` (the other party) once, right after the session's first statement."""
    fired = False

    def wrap(name: str) -> None:
        original = getattr(session, name)

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            nonlocal fired
            result = await original(*args, **kwargs)
            if not fired:
                fired = True
                await action()
            return result

        setattr(session, name, wrapped)

    for name in ("execute", "scalars", "scalar"):
        wrap(name)


async def waiting_for_lock(
    db: Database, task: asyncio.Task[Any], *, inside_sqlite: bool = False
) -> None:
    """Until `task` finished or waits for a lock another transaction holds.

    PostgreSQL shows a lock wait in `pg_stat_activity`; on SQLite a sign-up waits in the writer
    queue (`Database.writing`). Other SQLite writers wait inside SQLite itself
    (`inside_sqlite`), which serialises every write anyway: there the task is only given a few
    turns of the loop.
    """
    for turn in range(4000):
        if task.done():
            return
        if db.dialect == "postgresql":
            async with db.transaction() as session:
                waiting = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
        elif db._writer is not None and getattr(db._writer, "_waiters", None):
            return
        elif inside_sqlite and turn >= 50:
            return
        await asyncio.sleep(0.001)  # let the task run; the loop ends on what it observes
    raise AssertionError("the other transaction neither finished nor waited for a lock")


async def status(db: Database, enrolment_id: int) -> tuple[EnrolmentStatus, Any]:
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(Enrolment.status, Enrolment.offer_expires_at).where(
                    Enrolment.id == enrolment_id
                )
            )
        ).one()
    return row[0], row[1]


async def full_course_with_waitlist(
    db: Database, school: SchoolData, capacity: int, waiting: int
) -> tuple[int, list[int], list[int]]:
    """A course of `capacity` seats, all taken, and `waiting` children on its waitlist:
    (course, enrolment ids of the seated, enrolment ids of the waitlist in order)."""
    course = await make_course(db, school, "ROBO", capacity=capacity)
    kids = await pupils(db, school, capacity + waiting)
    ids = []
    for kid in kids:
        result = await enrolment.sign_up(db, kid, course, user_id=None, now=T0)
        assert isinstance(result, SignedUp)
        ids.append(result.enrolment_id)
    return course, ids[:capacity], ids[capacity:]


# ---------------------------------------------------------------------------------------------
# b. The expiry job and an accept at the same moment


async def test_an_offer_accepted_while_the_expiry_job_runs_stays_accepted(
    db: Database, school: SchoolData
) -> None:
    course, seated, (waiting,) = await full_course_with_waitlist(db, school, 1, 1)
    async with db.transaction() as session:
        await enrolment.withdraw(session, seated[0], from_date=T0.date(), user_id=None, now=T0)
        assert await enrolment.make_offers(session, course, T0, hours=24) == [waiting]
    deadline = T0 + dt.timedelta(hours=24)
    answers = []

    async def guardian_accepts() -> None:  # a minute before the deadline, in its own transaction
        async with db.transaction() as other:
            answers.append(
                await enrolment.answer_offer(
                    other, waiting, True, user_id=None, now=deadline - dt.timedelta(minutes=1)
                )
            )

    async with db.transaction() as session:  # the job, a minute after the deadline
        after_first_read(session, guardian_accepts)
        assert await enrolment.expire_offers(session, deadline + dt.timedelta(minutes=1)) == []
    assert answers == [OfferAnswer.ACCEPTED]
    assert (await status(db, waiting))[0] is EnrolmentStatus.ENROLLED
    async with db.transaction() as session:
        kinds = (await session.scalars(select(Outbox.kind))).all()
    assert "seat_offer_expired" not in kinds


async def test_accepting_after_the_expiry_says_it_expired(
    db: Database, school: SchoolData
) -> None:
    course, seated, (waiting,) = await full_course_with_waitlist(db, school, 1, 1)
    async with db.transaction() as session:
        await enrolment.withdraw(session, seated[0], from_date=T0.date(), user_id=None, now=T0)
        await enrolment.make_offers(session, course, T0, hours=1)
    later = T0 + dt.timedelta(hours=2)
    async with db.transaction() as session:
        assert await enrolment.expire_offers(session, later) == [course]
    async with db.transaction() as session:
        answer = await enrolment.answer_offer(session, waiting, True, user_id=None, now=later)
    assert answer is OfferAnswer.EXPIRED
    assert (await status(db, waiting))[0] is EnrolmentStatus.WITHDRAWN


async def test_a_second_accept_says_the_seat_is_taken_already(
    db: Database, school: SchoolData
) -> None:
    course, seated, (waiting,) = await full_course_with_waitlist(db, school, 1, 1)
    async with db.transaction() as session:
        await enrolment.withdraw(session, seated[0], from_date=T0.date(), user_id=None, now=T0)
        await enrolment.make_offers(session, course, T0, hours=1)
    for expected in (OfferAnswer.ACCEPTED, OfferAnswer.ALREADY_ACCEPTED):
        async with db.transaction() as session:
            assert await enrolment.answer_offer(session, waiting, True, user_id=None, now=T0) is (
                expected
            )


# ---------------------------------------------------------------------------------------------
# c. Two withdrawals at the same moment


async def test_two_withdrawals_at_once_offer_two_seats_and_a_later_sign_up_waits(
    db: Database, school: SchoolData
) -> None:
    course, seated, waiting = await full_course_with_waitlist(db, school, 2, 3)

    async def withdraw(session: AsyncSession, enrolment_id: int) -> None:
        assert await enrolment.withdraw(
            session, enrolment_id, from_date=T0.date(), user_id=None, now=T0
        )
        await enrolment.make_offers(session, course, T0, hours=24)

    async def second() -> None:
        async with db.transaction() as session:
            await withdraw(session, seated[1])

    async with db.transaction() as session:
        await withdraw(session, seated[0])
        other = asyncio.create_task(second())
        await waiting_for_lock(db, other, inside_sqlite=True)
    await other
    offered = [(await status(db, w))[1] is not None for w in waiting]
    assert offered == [True, True, False]
    late = school.student_ids["李小明"]
    result = await enrolment.sign_up(db, late, course, user_id=None, now=T0)
    assert isinstance(result, SignedUp) and result.status is EnrolmentStatus.WAITLISTED


# ---------------------------------------------------------------------------------------------
# d. Two guardians sign one child up for overlapping courses at once


async def test_two_guardians_at_once_cannot_enrol_a_child_in_two_overlapping_courses(
    db: Database, school: SchoolData, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await make_course(db, school, "MON")
    overlapping = await make_course(
        db, school, "MON2", starts_at=dt.time(17, 0), ends_at=dt.time(18, 0)
    )
    child = school.student_ids["李小明"]
    check = enrolment.check
    others: list[asyncio.Task[Any]] = []

    async def other_guardian() -> SignedUp | Refusal:
        return await enrolment.sign_up(db, child, overlapping, user_id=None, now=T0)

    async def checked(*args: Any) -> Refusal | None:
        result = await check(*args)
        if not others:  # the first guardian's rules passed: now the other one presses
            others.append(asyncio.create_task(other_guardian()))
            await waiting_for_lock(db, others[0])
        return result

    monkeypatch.setattr(enrolment, "check", checked)
    mine = await enrolment.sign_up(db, child, first, user_id=None, now=T0)
    theirs = await others[0]
    assert isinstance(mine, SignedUp) and mine.status is EnrolmentStatus.ENROLLED
    assert theirs is Refusal.CLASH
    async with db.transaction() as session:
        statuses = (
            await session.scalars(select(Enrolment.status).where(Enrolment.student_id == child))
        ).all()
    assert statuses == [EnrolmentStatus.ENROLLED]


# ---------------------------------------------------------------------------------------------
# e. A dropped lottery choice moves the next one up


async def test_dropping_a_first_choice_makes_the_next_one_first(
    db: Database, school: SchoolData
) -> None:
    kite = await make_course(db, school, "KITE", allocation=Allocation.LOTTERY, capacity=1)
    chess = await make_course(db, school, "CHESS", allocation=Allocation.LOTTERY, capacity=1)
    child, rival = school.student_ids["李小明"], school.student_ids["张伟"]
    (third,) = await pupils(db, school, 1)  # takes the kite seat from the rival
    kite_winner = await enrolment.sign_up(db, third, kite, user_id=None, now=T0)
    assert isinstance(kite_winner, SignedUp)
    entries = {}
    for kid, course in ((child, kite), (child, chess), (rival, kite), (rival, chess)):
        result = await enrolment.sign_up(db, kid, course, user_id=None, now=T0)
        assert isinstance(result, SignedUp)
        entries[kid, course] = result
    assert [r.draw_rank for r in entries.values()] == [1, 2, 1, 2]
    async with db.transaction() as session:
        dropped = entries[child, kite].enrolment_id
        await enrolment.withdraw(session, dropped, from_date=T0.date(), user_id=None)
    kept = entries[child, chess].enrolment_id
    async with db.transaction() as session:
        rank = await session.scalar(select(Enrolment.draw_rank).where(Enrolment.id == kept))
    assert rank == 1  # what /schedule shows
    # A seed under which the third child draws the kite seat before the rival, and the rival
    # is drawn before the child in chess: among equal ranks the rival would win chess.
    seed = next(
        s
        for s in map(str, range(1000))
        if lottery.key(s, "KITE", "X0000") < lottery.key(s, "KITE", "S003")
        and lottery.key(s, "CHESS", "S003") < lottery.key(s, "CHESS", "S001")
    )
    async with db.transaction() as session:
        await lottery.draw(session, school.term_id, seed, T0)
    # Chess is the child's only choice left, so a first choice: it beats the rival's second.
    assert (await status(db, kept))[0] is EnrolmentStatus.ENROLLED


async def test_the_draw_derives_ranks_from_the_live_entries(
    db: Database, school: SchoolData
) -> None:
    kite = await make_course(db, school, "KITE", allocation=Allocation.LOTTERY, capacity=1)
    child = school.student_ids["李小明"]
    entry = await enrolment.sign_up(db, child, kite, user_id=None, now=T0)
    assert isinstance(entry, SignedUp)
    async with db.transaction() as session:  # a rank left over from choices since dropped
        await session.execute(
            update(Enrolment).where(Enrolment.id == entry.enrolment_id).values(draw_rank=3)
        )
    async with db.transaction() as session:
        await lottery.draw(session, school.term_id, "seed", T0)
        rank = await session.scalar(
            select(Enrolment.draw_rank).where(Enrolment.id == entry.enrolment_id)
        )
    assert rank == 1


# ---------------------------------------------------------------------------------------------
# f. A seat held by an open offer is not shown as free


async def test_the_catalogue_counts_a_seat_held_for_an_offer_as_taken(
    db: Database, school: SchoolData
) -> None:
    course, seated, _ = await full_course_with_waitlist(db, school, 1, 1)
    async with db.transaction() as session:
        await enrolment.withdraw(session, seated[0], from_date=T0.date(), user_id=None, now=T0)
        await enrolment.make_offers(session, course, T0, hours=24)
    async with db.transaction() as session:
        (facts,) = await enrolment.facts(session, [course])
        free = await enrolment.free_seats(session, course)
    assert facts.seats_left == free == 0


# ---------------------------------------------------------------------------------------------
# h. Cancelling a course only when it is really below its minimum after enrolment closed


async def close_enrolment(db: Database, school: SchoolData, when: dt.datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Term).where(Term.id == school.term_id).values(enrolment_closes_at=when)
        )


async def test_a_course_is_cancelled_only_below_its_minimum_after_enrolment_closed(
    db: Database, school: SchoolData
) -> None:
    small = await make_course(db, school, "KITE", min_size=3)
    unlimited = await make_course(db, school, "RUN", weekdays=0b10)
    admin = await add_member(db, school, 810, {Role.ADMIN})
    for kid in await pupils(db, school, 2):
        assert isinstance(await enrolment.sign_up(db, kid, small, user_id=None, now=T0), SignedUp)

    async def cancel(course: int, school_id: int, now: dt.datetime) -> enrolment.Cancellation:
        async with db.transaction() as session:
            return await enrolment.cancel_course(
                session, course, school_id, admin_user_id=admin, now=now
            )

    await close_enrolment(db, school, T0 + dt.timedelta(days=1))
    assert (await cancel(small, school.school_id, T0)).outcome is (
        enrolment.CancelOutcome.ENROLMENT_STILL_OPEN
    )
    await close_enrolment(db, school, T0)
    later = T0 + dt.timedelta(hours=1)
    assert (await cancel(unlimited, school.school_id, later)).outcome is (
        enrolment.CancelOutcome.NOT_BELOW_MINIMUM
    )
    assert (
        await cancel(small, school.school_id + 1, later)
    ).outcome is enrolment.CancelOutcome.NOT_FOUND
    async with db.transaction() as session:
        assert await session.scalar(select(Course.cancelled_at).where(Course.id == small)) is None
    done = await cancel(small, school.school_id, later)
    assert (done.outcome, done.families) == (enrolment.CancelOutcome.CANCELLED, 2)
    assert (await cancel(small, school.school_id, later)).outcome is (
        enrolment.CancelOutcome.ALREADY_CANCELLED
    )


# ---------------------------------------------------------------------------------------------
# Leave → cancelled


async def test_a_leave_taken_back_twice_at_once_is_taken_back_once(
    db: Database, school: SchoolData
) -> None:
    child = await enrolled_child(db, school)
    async with db.transaction() as session:
        leave = await leaves.announce(session, child, MONDAY, 2, user_id=None, now=at(MONDAY, 8))
        assert isinstance(leave, Leave)
    results = []

    async def other_guardian() -> None:
        async with db.transaction() as other:
            results.append(await leaves.cancel(other, leave.id, now=at(MONDAY, 9)))

    async with db.transaction() as session:
        await session.get(Leave, leave.id)  # this press read the leave first
        after_first_read(session, other_guardian)
        results.append(await leaves.cancel(session, leave.id, now=at(MONDAY, 10)))
    assert sorted(results) == [False, True]
    async with db.transaction() as session:
        taken_back = await session.scalar(select(Leave.cancelled_at).where(Leave.id == leave.id))
    assert taken_back is not None


async def test_two_confirm_taps_at_once_record_one_confirmation(
    db: Database, school: SchoolData
) -> None:
    admin = await add_member(db, school, 880, {Role.ADMIN})
    await add_member(db, school, 881, {Role.PARENT}, ("李小明",))
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=admin,
            text="请交回执",
            audience=Audience(AudienceKind.PARENTS),
            ack=True,
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    results = []

    async def other_device() -> None:
        async with db.transaction() as other:
            results.append(await broadcasts.acknowledge(other, broadcast.id, 881, T0))

    async with db.transaction() as session:
        after_first_read(session, other_device)
        results.append(await broadcasts.acknowledge(session, broadcast.id, 881, T0))
    assert sorted(r.value for r in results) == sorted(
        (broadcasts.Ack.RECORDED.value, broadcasts.Ack.ALREADY.value)
    )
