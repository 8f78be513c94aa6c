"""Fee notices through the outbox: a bill issued, reminders on a ladder, a receipt.

Reminders follow the school's ladder (`schools.fee_reminders`; default: 3 days before the due
date, on the day, then weekly, at most 3 times after it). They go only to the guardians of a
child whose bill still has something unpaid, once per step (the outbox dedupe key names the bill
and the step), from a daily scheduler run at the school's `fee_reminder_time` (one run per day
through the job ledger). A bill paid in full gets no further reminder: the balance is read in
the run that sends it. No penalty is ever charged automatically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import family, outbox
from bot.services.outbox import NewMessage
from storage.models import Bill, BillEntry, Outbox, Priority, School, Student, Term

ISSUED = N_(
    "The after-school bill of {child} for {term} is issued: {amount}, due by {due}. Every item "
    "is one the school disclosed. Send /fees to see it line by line."
)
REMINDER_BEFORE = N_(
    "Reminder: {amount} for {child}'s after-school service ({term}) is due by {due}. Send /fees "
    "to see the bill."
)
REMINDER_DUE = N_(
    "Reminder: {amount} for {child}'s after-school service ({term}) is due today. Send /fees "
    "to see the bill."
)
REMINDER_AFTER = N_(
    "{amount} for {child}'s after-school service ({term}) was due on {due} and is still "
    "unpaid. If you have paid, please tell the school; send /fees to see the bill."
)
RECEIPT = N_("Payment received for {child} ({term}): {amount}. Still to pay: {left}. Thank you.")
REFUNDED = N_("Refund for {child} ({term}): {amount} has been paid back to you.")


@dataclasses.dataclass(frozen=True)
class Ladder:
    before: tuple[int, ...] = (3,)  # days before the due date
    on_due: bool = True
    every: int = 7  # days between reminders after the due date
    at_most: int = 3  # reminders after the due date

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Ladder:
        if not data:
            return cls()
        unknown = set(data) - {"before", "on_due", "every", "at_most"}
        if unknown:
            raise ValueError(f"unknown field: {', '.join(sorted(unknown))}")
        before = data.get("before", [3])
        if not isinstance(before, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 60 for n in before
        ):
            raise ValueError("before is a list of days, each from 1 to 60")
        on_due = data.get("on_due", True)
        if not isinstance(on_due, bool):
            raise ValueError("on_due must be true or false")
        every = data.get("every", 7)
        at_most = data.get("at_most", 3)
        for name, value, low, high in (("every", every, 1, 60), ("at_most", at_most, 0, 10)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}")
        return cls(tuple(sorted(set(before), reverse=True)), on_due, every, at_most)

    def as_json(self) -> dict[str, Any]:
        return {
            "before": list(self.before),
            "on_due": self.on_due,
            "every": self.every,
            "at_most": self.at_most,
        }

    def step(self, due_on: dt.date, today: dt.date) -> str | None:
        """The reminder due today for a bill due on `due_on`: "b3", "d", "a1"…; or None."""
        days = (due_on - today).days
        if days > 0:
            return f"b{days}" if days in self.before else None
        if days == 0:
            return "d" if self.on_due else None
        late = -days
        if late % self.every == 0 and late // self.every <= self.at_most:
            return f"a{late // self.every}"
        return None


def _params(child: str, term: str, amount: int, due: dt.date | None) -> dict[str, Any]:
    params: dict[str, Any] = {"child": child, "term": term, "amount": {"$money": amount}}
    if due is not None:
        params["due"] = {"$date": due.isoformat()}
    return params


async def _facts(
    session: AsyncSession, bill_ids: Iterable[int]
) -> list[tuple[int, int, int, str, str, dt.date | None, int]]:
    """(bill, school, student, child's name, term's name, due date, balance) for each bill."""
    ids = list(bill_ids)
    if not ids:
        return []
    totals = (
        select(BillEntry.bill_id, func.sum(BillEntry.amount_fen).label("balance"))
        .where(BillEntry.bill_id.in_(ids))
        .group_by(BillEntry.bill_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Bill.id,
            Bill.school_id,
            Bill.student_id,
            Student.name,
            Term.name,
            Bill.due_on,
            func.coalesce(totals.c.balance, 0),
        )
        .join(Student, Student.id == Bill.student_id)
        .join(Term, Term.id == Bill.term_id)
        .outerjoin(totals, totals.c.bill_id == Bill.id)
        .where(Bill.id.in_(ids))
    )
    return [(a, b, c, d, e, f, int(g)) for a, b, c, d, e, f, g in rows.all()]


def _news(
    guardians: Iterable[tuple[int, int]],
    *,
    kind: str,
    template: str,
    params: dict[str, Any],
    dedupe: str,
) -> list[NewMessage]:
    """One child's news for each guardian, keyed per reader as `family.tell` keys it, so many
    children's news go out in one statement (`outbox.enqueue_many`)."""
    return [
        NewMessage(
            chat_id=chat_id,
            user_id=user_id,
            kind=kind,
            priority=Priority.INTERACTIVE,
            template=template,
            params=params,
            dedupe_key=f"{dedupe}:{user_id}",
        )
        for user_id, chat_id in guardians
    ]


async def _queue(session: AsyncSession, school_id: int | None, messages: list[NewMessage]) -> int:
    if school_id is None or not messages:
        return 0
    return len(await outbox.enqueue_many(session, school_id, messages))


async def bills_issued(session: AsyncSession, bill_ids: Iterable[int]) -> int:
    """Tell each guardian of each child their new bill; returns the messages queued."""
    facts = await _facts(session, bill_ids)
    guardians = await family.guardian_chats(session, [f[2] for f in facts])
    messages = []
    for bill_id, _school, student_id, child, term, due, balance in facts:
        if balance > 0:
            messages += _news(
                guardians.get(student_id, []),
                kind="fee_bill",
                template=ISSUED,
                params=_params(child, term, balance, due),
                dedupe=f"fee-bill:{bill_id}",
            )
    return await _queue(session, facts[0][1] if facts else None, messages)


async def receipt(
    session: AsyncSession, bill_id: int, amount_fen: int, reference: str, *, refund: bool = False
) -> int:
    """A receipt for a payment (or a refund) to every guardian of the child."""
    return await receipts(session, [(bill_id, amount_fen, reference)], refund=refund)


async def receipts(
    session: AsyncSession, paid: Sequence[tuple[int, int, str]], *, refund: bool = False
) -> int:
    """Receipts for many (bill, amount, reference) at once: three statements for a file."""
    facts = {f[0]: f for f in await _facts(session, {bill_id for bill_id, _, _ in paid})}
    guardians = await family.guardian_chats(session, {f[2] for f in facts.values()})
    messages = []
    for bill_id, amount_fen, reference in paid:
        if bill_id not in facts:
            continue
        _, _school, student_id, child, term, due, balance = facts[bill_id]
        params = _params(child, term, amount_fen, due)
        params["left"] = {"$money": max(balance, 0)}
        kind = "refund" if refund else "receipt"
        messages += _news(
            guardians.get(student_id, []),
            kind=f"fee_{kind}",
            template=REFUNDED if refund else RECEIPT,
            params=params,
            dedupe=f"fee-{kind}:{bill_id}:{reference}",
        )
    school_id = next(iter(facts.values()))[1] if facts else None
    return await _queue(session, school_id, messages)


async def send_reminders(session: AsyncSession, school_id: int, today: dt.date) -> int:
    """Today's step of the ladder for every bill with something unpaid; returns messages."""
    raw = await session.scalar(select(School.fee_reminders).where(School.id == school_id))
    ladder = Ladder.parse(raw)
    candidates = list(
        await session.scalars(
            select(Bill.id).where(Bill.school_id == school_id, Bill.due_on.is_not(None))
        )
    )
    facts = [f for f in await _facts(session, candidates) if f[6] > 0 and f[5] is not None]
    steps = {f[0]: ladder.step(f[5], today) for f in facts if f[5] is not None}
    due = [f for f in facts if steps.get(f[0])]
    keys = {f[0]: f"fee-reminder:{f[0]}:{steps[f[0]]}" for f in due}
    guardians = await family.guardian_chats(session, [f[2] for f in due])
    # A step already told (a run earlier the same day) is neither sent nor counted again.
    # (stored as the outbox stores keys: school first, reader last)
    wanted = [
        f"{school_id}:{keys[f[0]]}:{user_id}"
        for f in due
        for user_id, _ in guardians.get(f[2], [])
    ]
    told = {
        key.split(":", 1)[1].rsplit(":", 1)[0]
        for key in await session.scalars(
            select(Outbox.dedupe_key).where(Outbox.dedupe_key.in_(wanted or [""]))
        )
        if key is not None
    }
    due = [f for f in due if keys[f[0]] not in told]
    messages = []
    for bill_id, _school, student_id, child, term, due_on, balance in due:
        step = steps[bill_id]
        assert step is not None and due_on is not None
        template = (
            REMINDER_BEFORE
            if step.startswith("b")
            else REMINDER_DUE
            if step == "d"
            else REMINDER_AFTER
        )
        messages += _news(
            guardians.get(student_id, []),
            kind="fee_reminder",
            template=template,
            params=_params(child, term, balance, due_on),
            dedupe=keys[bill_id],
        )
    reminded = [f[0] for f in due if guardians.get(f[2])]
    if reminded:
        await session.execute(
            update(Bill)
            .where(Bill.id.in_(reminded))
            .values(reminders_sent=Bill.reminders_sent + 1)
            .execution_options(synchronize_session=False)
        )
    return await _queue(session, school_id, messages)
