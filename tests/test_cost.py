"""What a typical action costs in SQL beyond the loader: one regression test per action.

Each action is one update a parent sends, with the school's programme already in the process's
catalogue cache (the first update after a change reloads it). The budget is the issue's: at
most three statements and one transaction for the handler's work; persistence writes only what
changed, so pressing a button inside no conversation writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.context import KehouApplication
from storage.db import Database
from storage.models import Enrolment, Leave, Role
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import FakeUser
from tests.sqlcount import Cost, SqlCounter
from tests.test_enrolment import make_course

MOM = 820
EVERY_DAY = 0b1111111


@pytest.fixture
def counter(db: Database, app: KehouApplication) -> Iterator[SqlCounter]:
    found = SqlCounter(db, app)
    yield found
    found.close()


class Family:
    def __init__(self, mom: FakeUser, child: int, course: int) -> None:
        self.mom, self.child, self.course = mom, child, course


@pytest.fixture
async def family(make_user: Any, db: Database, school: SchoolData) -> Family:
    await term_around_today(db)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    course = await make_course(
        db, school, "ROBO", name="机器人编程", capacity=20, weekdays=EVERY_DAY
    )
    await make_course(db, school, "ART", name="剪纸", capacity=20, weekdays=EVERY_DAY, period=1)
    mom: FakeUser = make_user(MOM)
    await mom.send("/courses")  # the first update after the programme changed loads it
    return Family(mom, school.student_ids["李小明"], course)


async def cost_of(counter: SqlCounter, action: Callable[[], Awaitable[Any]]) -> Cost:
    with counter.update() as cost:
        await action()
    assert (cost.loader_statements, cost.loader_transactions) == (1, 1), (
        "the loader: one statement (the member, their roles and school) in one transaction"
    )
    return cost


def within(cost: Cost, statements: int = 3, transactions: int = 1) -> None:
    assert cost.statements <= statements and cost.transactions <= transactions, str(cost)


async def test_opening_the_course_list(family: Family, counter: SqlCounter) -> None:
    cost = await cost_of(counter, lambda: family.mom.send("/courses"))
    within(cost)


async def test_opening_a_course_card(family: Family, counter: SqlCounter) -> None:
    cost = await cost_of(
        counter, lambda: family.mom.press(f"cs:c:{family.child}:{family.course}:0:0:0:0")
    )
    within(cost)


async def test_the_confirm_screen(family: Family, counter: SqlCounter) -> None:
    cost = await cost_of(counter, lambda: family.mom.press(f"cs:s:{family.child}:{family.course}"))
    within(cost)


async def test_confirming_a_sign_up(family: Family, counter: SqlCounter, db: Database) -> None:
    replies: list[Any] = []

    async def press() -> None:
        replies.extend(await family.mom.press(f"cs:y:{family.child}:{family.course}"))

    cost = await cost_of(counter, press)
    within(cost)
    assert any("机器人编程" in str(c.params.get("text", "")) for c in replies)
    async with db.transaction() as session:
        assert await session.scalar(
            select(Enrolment.status).where(Enrolment.student_id == family.child)
        )


async def test_the_filter_screen_reads_nothing(family: Family, counter: SqlCounter) -> None:
    cost = await cost_of(counter, lambda: family.mom.press(f"cs:f:{family.child}:0:0:0"))
    within(cost, statements=0, transactions=0)


async def test_confirming_a_sign_up_tells_the_other_guardian_in_one_more_statement(
    family: Family, counter: SqlCounter, db: Database, school: SchoolData
) -> None:
    """The other guardians come with the sign-up's first read (`situation`); telling them is
    the outbox insert only, and nothing at all when there is no other guardian (above)."""
    await add_member(db, school, MOM + 1, {Role.PARENT}, ("李小明",))
    cost = await cost_of(counter, lambda: family.mom.press(f"cs:y:{family.child}:{family.course}"))
    within(cost, statements=4)
    assert any("INSERT INTO outbox" in s for s in cost.sql), str(cost)


async def test_the_calendar_file(family: Family, counter: SqlCounter) -> None:
    await family.mom.press(f"cs:y:{family.child}:{family.course}")
    cost = await cost_of(counter, lambda: family.mom.press(f"sc:i:{family.child}"))
    within(cost)


async def test_opening_the_schedule(family: Family, counter: SqlCounter) -> None:
    await family.mom.press(f"cs:y:{family.child}:{family.course}")
    cost = await cost_of(counter, lambda: family.mom.send("/schedule"))
    within(cost)


async def test_filing_a_leave(family: Family, counter: SqlCounter, db: Database) -> None:
    mom = family.mom
    await mom.press(f"cs:y:{family.child}:{family.course}")
    await mom.send("/leave")
    await mom.press("lv:w:1:0")  # tomorrow, the whole day
    cost = await cost_of(counter, lambda: mom.press("lv:r:-"))  # no reason: recorded
    # The leave itself: three statements in one transaction, and a fourth since docs/UX.md's
    # convention 5: the child's other guardians are looked up to be told (family.py). The
    # conversation ends and its draft goes: persistence removes both rows in one more
    # statement and transaction.
    assert len([s for s in cost.sql if "bot_state" not in s]) <= 4, str(cost)
    assert len([s for s in cost.sql if "bot_state" in s]) <= 1, str(cost)
    within(cost, statements=5, transactions=2)
    async with db.transaction() as session:
        assert await session.scalar(select(Leave.id).where(Leave.student_id == family.child))


async def test_a_press_outside_any_conversation_writes_no_state(
    family: Family, counter: SqlCounter
) -> None:
    cost = await cost_of(
        counter, lambda: family.mom.press(f"cs:c:{family.child}:{family.course}:0:0:0:0")
    )
    assert not [s for s in cost.sql if "bot_state" in s], str(cost)
