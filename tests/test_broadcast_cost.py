"""What the admin's broadcast steps cost in SQL beyond the loader.

Each step of /broadcast, /broadcasts and the buttons under them is one update that makes one
service call in one transaction (docs/ARCHITECTURE.md). A conversation step also changes the
conversation's state, which persistence writes in a transaction of its own (``bot_state``):
that one is counted apart. /broadcasts reads the same few statements however many broadcasts
it lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.context import KehouApplication
from bot.services import broadcasts
from bot.services.broadcasts import Audience, AudienceKind
from storage.db import IMMEDIATE, Database
from storage.models import Broadcast, BroadcastStatus, Outbox, OutboxStatus, utcnow
from tests.factories import SchoolData
from tests.harness import Call, FakeUser
from tests.sqlcount import Cost, SqlCounter
from tests.test_broadcast import ADMIN, people
from tests.test_enrolment import make_course


class StepCounter(SqlCounter):
    """`SqlCounter`, with the statements of each transaction kept together, so an update's own
    work and what persistence writes after it (the conversation in ``bot_state``) are told
    apart."""

    def __init__(self, db: Database, app: KehouApplication) -> None:
        self.transactions: list[list[str]] = []
        super().__init__(db, app)

    def _begin(self, *args: Any) -> None:
        super()._begin(*args)
        if self.cost is not None and not self.in_loader:
            self.transactions.append([])

    def _statement(self, *args: Any) -> None:
        super()._statement(*args)
        if self.cost is not None and not self.in_loader and args[2] != IMMEDIATE:
            self.transactions[-1].append(args[2])


@dataclass
class Step:
    cost: Cost
    work: list[list[str]]  # the handler's transactions, each with its statements
    state: list[list[str]]  # persistence's: the conversation's state and draft
    replies: list[Call]

    @property
    def statements(self) -> int:
        return sum(len(t) for t in self.work)

    def __str__(self) -> str:
        return str(self.cost)


@pytest.fixture
def counter(db: Database, app: KehouApplication) -> Iterator[StepCounter]:
    found = StepCounter(db, app)
    yield found
    found.close()


async def step(counter: StepCounter, action: Callable[[], Awaitable[list[Call]]]) -> Step:
    first = len(counter.transactions)
    with counter.update() as cost:
        replies = await action()
    assert (cost.loader_statements, cost.loader_transactions) == (1, 1), str(cost)
    found = counter.transactions[first:]
    state = [t for t in found if t and all("bot_state" in s for s in t)]
    work = [t for t in found if not (t and all("bot_state" in s for s in t))]
    assert len(state) <= 1, str(cost)  # persistence: one transaction, if anything changed
    return Step(cost, work, state, replies)


def within(found: Step, statements: int) -> None:
    """One transaction for the update's own work (none if it reads nothing), this many
    statements at most."""
    assert len(found.work) <= 1 and found.statements <= statements, str(found)


async def test_each_step_of_a_broadcast_is_one_transaction(
    make_user: Any, db: Database, school: SchoolData, counter: StepCounter
) -> None:
    await people(db, school)
    admin: FakeUser = make_user(ADMIN, language_code="en")
    # Writing the notice reads nothing: only the draft is saved.
    for found in (
        await step(counter, lambda: admin.send("/broadcast")),
        await step(counter, lambda: admin.send("Closed tomorrow")),
    ):
        assert found.work == [] and len(found.state) == 1, str(found)
    kinds = await step(counter, lambda: admin.click("Classes"))  # the school's classes
    within(kinds, statements=1)
    assert "Which classes?" in FakeUser.texts(kinds.replies)
    # Picking a class: the classes again, the one picked among them, in one statement.
    picked = await step(counter, lambda: admin.click("三年级1班"))
    within(picked, statements=1)
    assert "✓ 三年级1班" in picked.replies[-1].buttons()[0]["text"]
    # The preview: the class is the school's, its name, its recipients and their children
    # (to count families), in one statement.
    preview = await step(counter, lambda: admin.click("Next: 1 class"))
    within(preview, statements=1)
    assert "To: parents of 三年级1班 · 1 family · 2 parents" in FakeUser.texts(preview.replies)
    option = await step(counter, lambda: admin.click("⬜ Ask recipients to confirm"))
    within(option, statements=1)
    assert "Confirm button: on" in FakeUser.texts(option.replies)
    # The confirm step counts again who it reaches: one statement.
    confirm = await step(counter, lambda: admin.click("Send now"))
    within(confirm, statements=1)
    assert "(1 family · 2 parents) now?" in FakeUser.texts(confirm.replies)
    # Sending: the audience checked again, the broadcast, its audit row, its start, the
    # recipients, the header's school and sender, the outbox rows and the figures the status
    # shows. A notice with a confirm button is never held for a digest, so the notice budget
    # reads nothing; its figures add one statement: its recipients' families (both parents
    # of a child confirm once), which the status counts.
    sent = await step(counter, lambda: admin.click("✅ Send it"))
    within(sent, statements=10)
    assert "Recipients 2 · queued 2" in FakeUser.texts(sent.replies)
    async with db.transaction() as session:
        assert len((await session.scalars(select(Outbox.id))).all()) == 2


async def test_scheduling_a_broadcast_is_one_transaction(
    make_user: Any,
    app: KehouApplication,
    db: Database,
    school: SchoolData,
    counter: StepCounter,
) -> None:
    await people(db, school)
    admin: FakeUser = make_user(ADMIN, language_code="en")
    await admin.send("/broadcast")
    await admin.send("Concert on Friday")
    within(await step(counter, lambda: admin.click("All teachers")), statements=1)
    later = await step(counter, lambda: admin.click("Send later"))  # asks for the time
    assert later.work == [], str(later)
    when = (utcnow() + dt.timedelta(days=1)).astimezone(app.runtime.i18n.timezone)
    # The confirm step: who it reaches, counted again in one statement.
    confirm = await step(counter, lambda: admin.send(when.strftime("%Y-%m-%d %H:%M")))
    within(confirm, statements=1)
    assert "(1 teacher) at" in FakeUser.texts(confirm.replies)
    scheduled = await step(counter, lambda: admin.click("✅ Schedule it"))
    # The broadcast, its audit row and its (empty) figures: nothing starts yet.
    within(scheduled, statements=3)
    assert "scheduled" in FakeUser.texts(scheduled.replies)
    async with db.transaction() as session:
        status = await session.scalar(select(Broadcast.status))
    assert status is BroadcastStatus.SCHEDULED


async def some_broadcasts(db: Database, school: SchoolData, admin: int, count: int) -> list[int]:
    """`count` sent broadcasts with a confirm button, to classes, courses and everyone."""
    courses = [
        await make_course(db, school, f"C{i}", name=f"课程{i}") for i in range(min(count, 3))
    ]
    audiences = [
        Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
        Audience(AudienceKind.PARENTS),
        Audience(AudienceKind.CLASS, school.class_ids["7-2"]),
        Audience(AudienceKind.GRADE, 3),
    ] + [Audience(AudienceKind.COURSE, c) for c in courses]
    made = []
    async with db.transaction() as session:
        for i in range(count):
            broadcast = await broadcasts.create(
                session,
                school.school_id,
                sender_user_id=admin,
                text=f"通知{i}",
                audience=audiences[i % len(audiences)],
                ack=True,
            )
            made.append(broadcast.id)
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    return made


@pytest.mark.parametrize("count", [1, 7])
async def test_the_list_of_broadcasts_reads_the_same_however_many(
    count: int, make_user: Any, db: Database, school: SchoolData, counter: StepCounter
) -> None:
    ids = await people(db, school)
    made = await some_broadcasts(db, school, ids[ADMIN], count)
    admin: FakeUser = make_user(ADMIN, language_code="en")
    listing = await step(counter, lambda: admin.send("/broadcasts"))
    # The broadcasts; the figures of all of them; the families of those that asked for a
    # confirmation, of all of them at once (confirmations count per family: a fourth statement
    # since the status says "Confirmed by 1 of 2 families"); the names of their classes and
    # courses.
    within(listing, statements=4)
    assert listing.state == []
    text = FakeUser.texts(listing.replies)
    assert all(f"Broadcast #{i} to" in text for i in made), text
    assert "parents of 三年级1班" in text and "Confirmed by 0 of " in text
    if count > 1:
        assert "parents of children in 课程0" in text and "parents of grade 3" in text


async def test_the_buttons_under_the_list_are_one_transaction_each(
    make_user: Any, db: Database, school: SchoolData, counter: StepCounter
) -> None:
    ids = await people(db, school)
    (sent,) = await some_broadcasts(db, school, ids[ADMIN], 1)
    admin: FakeUser = make_user(ADMIN, language_code="en")
    await admin.send("/broadcasts")
    # A broadcast's card: the broadcast, its class's name, its figures and its families.
    card = await step(counter, lambda: admin.click(f"#{sent}"))
    within(card, statements=4)
    unconfirmed = await step(counter, lambda: admin.click("Not confirmed"))
    within(unconfirmed, statements=1)  # the broadcast and who has not confirmed, at once
    assert "Broadcast #1: 1 family has not confirmed yet:" in FakeUser.texts(unconfirmed.replies)
    # The reminder: who has not confirmed; the broadcast; its ledger (compare-and-set); the
    # header; the reminders; the audit row; then the card as it is now (the broadcast, its
    # class's name, its figures and families).
    reminded = await step(counter, lambda: admin.click("Remind now"))
    within(reminded, statements=10)
    assert "Reminder for broadcast #1 queued for 2 parents." in FakeUser.texts(reminded.replies)
    async with db.transaction() as session:
        await session.execute(
            update(Outbox).where(Outbox.kind == "broadcast").values(status=OutboxStatus.PENDING)
        )
    asked = await step(counter, lambda: admin.click("Cancel it"))  # the confirm step: the card
    within(asked, statements=4)
    assert "Cancel broadcast #1? 0 messages have gone out" in FakeUser.texts(asked.replies)
    # The broadcast, its compare-and-set, what has not gone out, the audit row, the figures
    # it tells; then the card as it is now (its class's name, its figures and families).
    stopped = await step(counter, lambda: admin.click("Yes, cancel it"))
    within(stopped, statements=8)
    assert "had already started: 0 messages were sent" in FakeUser.texts(stopped.replies)


async def test_the_answers_about_a_late_broadcast_are_one_transaction_each(
    make_user: Any, db: Database, school: SchoolData, counter: StepCounter
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        held = []
        for text in ("演出", "家长会"):
            broadcast = await broadcasts.create(
                session,
                school.school_id,
                sender_user_id=ids[ADMIN],
                text=text,
                audience=Audience(AudienceKind.PARENTS),
                scheduled_for=utcnow() + dt.timedelta(hours=1),
            )
            held.append(broadcast.id)
        await session.execute(update(Broadcast).values(held_at=utcnow()))
    admin: FakeUser = make_user(ADMIN, language_code="en")
    released = await step(counter, lambda: admin.press(f"lb:s:{held[0]}"))
    # The broadcast, its start, the recipients, the notice budget, the outbox rows, the
    # count of recipients, the audit row.
    within(released, statements=8)
    assert f"Broadcast #{held[0]} is going out now to 3 recipients." in FakeUser.texts(
        released.replies
    )
    asked = await step(counter, lambda: admin.press(f"lb:q:{held[1]}"))
    # The confirm step reads the broadcast and its figures (no names: it goes to everyone).
    within(asked, statements=2)
    assert "It has not gone out yet: nobody will receive it." in FakeUser.texts(asked.replies)
    cancelled = await step(counter, lambda: admin.press(f"lb:c:{held[1]}"))
    within(cancelled, statements=4)
    assert "cancelled before it started" in FakeUser.texts(cancelled.replies)
