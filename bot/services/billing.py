"""Term bills per child, computed from enrolments, the calendar and the disclosed standards.

- **One bill per child and term**, so whichever guardian pays closes it for all of them. Its
  lines are charges; its money is a ledger of entries (`EntryKind`) whose sum is the balance:
  positive, the family owes it; negative, the school owes the family.
- **Only what was disclosed is billed** (`fees.check_line`): every line is checked before it is
  written, also those Kehou computes itself.
- **Leaving** (a withdrawal, a cancelled course) writes an adjustment by the standard's
  disclosed rule at once (`on_leaving`), the same figure the withdrawal screen showed before
  (`preview_leaving`). Under an `at_term_end` rule the rest is settled from attendance at term
  end (`settle_term`).
- **Compare-and-set**: every entry moves the bill's `version` on, under the bill's row lock
  (`_lock_bill`); a payment's reference is written once per bill (a re-imported file records
  nothing twice).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import attendance, audit, catalogue, fee_notices, fee_rules, fees, guard
from bot.services.catalogue import Catalogue, CourseInfo, TermInfo
from bot.services.fee_rules import Leaving, Rule
from bot.services.fees import LineDraft
from bot.services.members import Member
from storage.models import (
    AttendanceMark,
    Bill,
    BillEntry,
    BillLine,
    CalendarKind,
    Enrolment,
    EnrolmentStatus,
    EntryKind,
    FeeCovers,
    FeeStandard,
    Leave,
    School,
    Session,
    Student,
    utcnow,
)

BILLED = (EnrolmentStatus.ENROLLED, EnrolmentStatus.WITHDRAWN)


# -------------------------------------------------------------------------------------------
# Service days


def course_days(term: TermInfo, course: CourseInfo) -> list[dt.date]:
    """Every day of the term the course runs, by the weekly timetable and the calendar."""
    days = []
    special = {d.date: d for d in term.days}
    day = term.starts_on
    while day <= term.ends_on:
        weekday = day.isoweekday()
        found = special.get(day)
        runs = True
        if found is not None:
            if found.kind in (CalendarKind.HOLIDAY, CalendarKind.NO_SERVICE):
                runs = False
            elif found.kind is CalendarKind.WORKDAY and found.runs_weekday:
                weekday = found.runs_weekday
        if runs and course.weekdays & (1 << (weekday - 1)):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


class Days:
    """Course id → its service days in the term, computed once per course."""

    def __init__(self, term: TermInfo, found: Catalogue) -> None:
        self.term = term
        self.found = found
        self._cache: dict[int, list[dt.date]] = {}

    def of(self, course_id: int) -> list[dt.date]:
        if course_id not in self._cache:
            course = self.found.course(course_id)
            self._cache[course_id] = [] if course is None else course_days(self.term, course)
        return self._cache[course_id]

    def union(self, course_ids: Iterable[int]) -> list[dt.date]:
        return sorted({d for c in course_ids for d in self.of(c)})


# -------------------------------------------------------------------------------------------
# Issuing


@dataclasses.dataclass
class Refused:
    student_id: int
    course_id: int | None
    reason: fees.LineRefusal


@dataclasses.dataclass
class IssueReport:
    bills_new: int = 0
    bills_added_to: int = 0
    lines: int = 0
    total_fen: int = 0
    refused: list[Refused] = dataclasses.field(default_factory=list)
    new_bill_ids: list[int] = dataclasses.field(default_factory=list)
    changed_bill_ids: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Group:
    """What one line bills: a child, a standard's code, and the course (None: the period)."""

    student_id: int
    code: str
    course_id: int | None
    enrolments: list[Enrolment]


def local_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    return moment.astimezone(zone).date()


async def school_rule(session: AsyncSession, school_id: int) -> Rule:
    raw = await session.scalar(select(School.fee_rule).where(School.id == school_id))
    return fee_rules.parse(raw)


async def issue(
    session: AsyncSession,
    school_id: int,
    term_id: int,
    *,
    due_on: dt.date,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> IssueReport:
    """Bill every child for the term's disclosed fees; again later, bill only what is new (a
    late joiner, a new course). Lines that may not be billed are reported, not written."""
    now = now or utcnow()
    report = IssueReport()
    # One issuing per term at a time: a second admin's press waits, then bills only what the
    # first did not (the bills and lines it reads are the first one's, committed).
    if not await _lock_term(session, school_id, term_id):
        return report
    found = await catalogue.of(session, school_id)
    term = found.term(term_id)
    if term is None:
        return report
    zone = ZoneInfo(found.timezone)
    default = await school_rule(session, school_id)
    standards = await fees.standards_by_code(session, term_id)
    by_id = {s.id: s for versions in standards.values() for s in versions}
    days = Days(term, found)
    groups = _groups(
        found, term_id, by_id, await _billable_enrolments(session, term_id, term.starts_on)
    )
    bills = {
        b.student_id: b
        for b in await session.scalars(
            select(Bill).where(Bill.term_id == term_id, Bill.school_id == school_id)
        )
    }
    existing = await _existing_lines(session, [b.id for b in bills.values()])
    new_lines: dict[int, list[tuple[LineDraft, list[Enrolment]]]] = defaultdict(list)
    for group in groups:
        first = min(group.enrolments, key=lambda e: e.created_at)
        standard = fees.version_for(standards.get(group.code, []), first.created_at)
        course_ids = [e.course_id for e in group.enrolments]
        if standard is None:
            report.refused.append(
                Refused(group.student_id, group.course_id, fees.LineRefusal.NOT_DISCLOSED_BEFORE)
            )
            continue
        bill = bills.get(group.student_id)
        if bill is not None and (standard.code, group.course_id) in existing.get(bill.id, set()):
            continue
        start = max(term.starts_on, local_date(first.created_at, zone))
        rule = fee_rules.parse(standard.rule, default)
        charged = fee_rules.charge(
            standard.unit, standard.amount_fen, days.union(course_ids), start, rule.join
        )
        if charged.amount_fen == 0:
            continue  # free, or no service day left to bill
        draft = LineDraft(
            standard_id=standard.id,
            course_id=group.course_id,
            enrolment_id=first.id if group.course_id is not None else None,
            unit_fen=standard.amount_fen,
            quantity=charged.quantity,
            amount_fen=charged.amount_fen,
            from_date=start,
        )
        refusal = fees.check_line(
            draft,
            standard,
            [(e, found.course(e.course_id)) for e in group.enrolments],
            expected=charged,
            versions=standards.get(group.code, []),
        )
        if refusal is not None:
            report.refused.append(Refused(group.student_id, group.course_id, refusal))
            continue
        new_lines[group.student_id].append((draft, group.enrolments))
    for student_id, drafts in new_lines.items():
        bill = bills.get(student_id)
        if bill is None:
            bill = Bill(
                school_id=school_id,
                term_id=term_id,
                student_id=student_id,
                issued_at=now,
                issued_by_user_id=user_id,
                due_on=due_on,
            )
            session.add(bill)
            await session.flush()
            bills[student_id] = bill
            report.bills_new += 1
            report.new_bill_ids.append(bill.id)
        else:
            bill = await _lock_bill(session, bill.id) or bill
            report.bills_added_to += 1
            report.changed_bill_ids.append(bill.id)
        for draft, enrolments in drafts:
            line = _write_line(session, school_id, bill, draft)
            await session.flush()
            _entry(session, bill, EntryKind.CHARGE, draft.amount_fen, line_id=line.id)
            report.lines += 1
            report.total_fen += draft.amount_fen
            for e in enrolments:
                if e.status is EnrolmentStatus.WITHDRAWN and e.withdrawn_from is not None:
                    await _adjust_for_leaving(
                        session, bill, line, by_id[draft.standard_id], default, days, e
                    )
        bill.version += 1
    await session.flush()
    if default.settle is fee_rules.Settle.CREDIT:
        await _bring_credits(session, school_id, term_id, report.new_bill_ids, user_id)
    await fee_notices.bills_issued(session, report.new_bill_ids)
    audit.record(
        session,
        school_id,
        "fees.issue",
        actor_user_id=user_id,
        target=("term", term_id),
        details={
            "bills_new": report.bills_new,
            "bills_added_to": report.bills_added_to,
            "lines": report.lines,
            "total_fen": report.total_fen,
            "refused": len(report.refused),
        },
    )
    return report


async def _lock_term(session: AsyncSession, school_id: int, term_id: int) -> bool:
    """The term's row lock until the transaction ends (SQLite: its writer lock, taken by a
    no-op UPDATE before anything is read); False when there is no such term."""
    from storage.models import Term

    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Term)
            .where(Term.id == term_id)
            .values(name=Term.name)
            .execution_options(synchronize_session=False, catalogue_unchanged=True)
        )
    found = await session.scalar(
        select(Term.id).where(Term.id == term_id, Term.school_id == school_id).with_for_update()
    )
    return found is not None


async def _bring_credits(
    session: AsyncSession,
    school_id: int,
    term_id: int,
    bill_ids: list[int],
    user_id: int | None,
) -> None:
    """Where the school keeps money owed to families as a credit: what an earlier term's bill
    owes the child moves onto their new bill."""
    new = {
        b.student_id: b.id
        for b in await session.scalars(select(Bill).where(Bill.id.in_(bill_ids)))
    }
    earlier = list(
        await session.scalars(
            select(Bill).where(
                Bill.school_id == school_id,
                Bill.term_id != term_id,
                Bill.student_id.in_(list(new)),
            )
        )
    )
    owed = await balances(session, [b.id for b in earlier])
    for bill in earlier:
        if owed[bill.id] < 0:
            await carry_credit(session, bill.id, new[bill.student_id], user_id=user_id)


async def _billable_enrolments(
    session: AsyncSession, term_id: int, starts_on: dt.date
) -> list[Enrolment]:
    from storage.models import Course

    rows = await session.scalars(
        select(Enrolment)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            Course.term_id == term_id,
            Course.cancelled_at.is_(None),
            Enrolment.status.in_(BILLED),
        )
    )
    return [
        e
        for e in rows
        if e.status is EnrolmentStatus.ENROLLED
        or (e.withdrawn_from is not None and e.withdrawn_from > starts_on)
    ]


def _groups(
    found: Catalogue,
    term_id: int,
    standards: dict[int, FeeStandard],
    enrolments: Sequence[Enrolment],
) -> list[_Group]:
    """Enrolments → lines: one per course for a course fee, one per child for a period fee."""
    groups: dict[tuple[int, str, int | None], _Group] = {}
    for e in enrolments:
        course = found.course(e.course_id)
        if course is None or course.term_id != term_id or course.fee_id is None:
            continue
        standard = standards.get(course.fee_id)
        if standard is None or standard.covers is FeeCovers.FREE:
            continue
        per_course = standard.covers is FeeCovers.COURSE
        key = (e.student_id, standard.code, course.id if per_course else None)
        group = groups.setdefault(key, _Group(e.student_id, standard.code, key[2], []))
        group.enrolments.append(e)
    return list(groups.values())


async def _existing_lines(
    session: AsyncSession, bill_ids: list[int]
) -> dict[int, set[tuple[str, int | None]]]:
    found: dict[int, set[tuple[str, int | None]]] = defaultdict(set)
    if not bill_ids:
        return found
    rows = await session.execute(
        select(BillLine.bill_id, FeeStandard.code, BillLine.course_id)
        .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
        .where(BillLine.bill_id.in_(bill_ids))
    )
    for bill_id, code, course_id in rows.all():
        found[bill_id].add((code, course_id))
    return found


def _write_line(session: AsyncSession, school_id: int, bill: Bill, draft: LineDraft) -> BillLine:
    line = BillLine(
        school_id=school_id,
        bill_id=bill.id,
        fee_standard_id=draft.standard_id,
        course_id=draft.course_id,
        enrolment_id=draft.enrolment_id,
        unit_fen=draft.unit_fen,
        quantity=draft.quantity,
        amount_fen=draft.amount_fen,
        from_date=draft.from_date,
    )
    session.add(line)
    return line


def _entry(
    session: AsyncSession,
    bill: Bill,
    kind: EntryKind,
    amount_fen: int,
    *,
    line_id: int | None = None,
    reference: str | None = None,
    note: str | None = None,
    user_id: int | None = None,
) -> BillEntry:
    entry = BillEntry(
        school_id=bill.school_id,
        bill_id=bill.id,
        kind=kind,
        amount_fen=amount_fen,
        line_id=line_id,
        reference=reference,
        note=note,
        actor_user_id=user_id,
    )
    session.add(entry)
    return entry


async def _lock_bill(session: AsyncSession, bill_id: int) -> Bill | None:
    """The bill, read afresh under its lock until the transaction ends (a no-op UPDATE takes
    SQLite's writer lock; PostgreSQL locks the row)."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Bill)
            .where(Bill.id == bill_id)
            .values(version=Bill.version)
            .execution_options(synchronize_session=False)
        )
    return await session.scalar(
        select(Bill)
        .where(Bill.id == bill_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


# -------------------------------------------------------------------------------------------
# The ledger


async def balance(session: AsyncSession, bill_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(BillEntry.amount_fen), 0)).where(
            BillEntry.bill_id == bill_id
        )
    )
    return int(total or 0)


async def balances(session: AsyncSession, bill_ids: Iterable[int]) -> dict[int, int]:
    ids = list(bill_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(BillEntry.bill_id, func.sum(BillEntry.amount_fen))
        .where(BillEntry.bill_id.in_(ids))
        .group_by(BillEntry.bill_id)
    )
    found = {bill_id: 0 for bill_id in ids}
    found.update({bill_id: int(total) for bill_id, total in rows.all()})
    return found


class Recorded(enum.StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"
    STALE = "stale"  # the bill changed since it was shown: nothing written
    DUPLICATE = "duplicate"  # this reference is on the bill already
    TOO_MUCH = "too_much"  # more than is outstanding (or owed back)
    BAD_AMOUNT = "bad_amount"  # zero or negative


@dataclasses.dataclass(frozen=True)
class Outcome:
    result: Recorded
    bill: Bill | None = None
    balance_fen: int = 0
    amount_fen: int = 0


AUDITED = {
    EntryKind.PAYMENT: "fees.payment",
    EntryKind.EXEMPTION: "fees.exemption",
    EntryKind.REFUND: "fees.refund",
}


async def _record(
    session: AsyncSession,
    bill_id: int,
    kind: EntryKind,
    amount_fen: int,
    *,
    user_id: int | None,
    expected_version: int | None,
    reference: str | None = None,
    note: str | None = None,
) -> Outcome:
    """One money entry (`amount_fen` > 0; its sign comes from `kind`) under the bill's lock,
    never beyond what is outstanding (a payment, an exemption) or owed back (a refund);
    audited, and a payment or a refund is told to the guardians with a receipt."""
    if amount_fen <= 0:
        return Outcome(Recorded.BAD_AMOUNT)
    bill = await _lock_bill(session, bill_id)
    if bill is None:
        return Outcome(Recorded.NOT_FOUND)
    if expected_version is not None and bill.version != expected_version:
        return Outcome(Recorded.STALE, bill, await balance(session, bill_id))
    if reference is not None:
        seen = await session.scalar(
            select(BillEntry.id).where(
                BillEntry.bill_id == bill_id,
                BillEntry.kind == kind,
                BillEntry.reference == reference,
            )
        )
        if seen is not None:
            return Outcome(Recorded.DUPLICATE, bill, await balance(session, bill_id))
    before = await balance(session, bill_id)
    room = before if kind in (EntryKind.PAYMENT, EntryKind.EXEMPTION) else -before
    if amount_fen > room:
        return Outcome(Recorded.TOO_MUCH, bill, before)
    signed = amount_fen if kind in (EntryKind.REFUND, EntryKind.CREDIT_OUT) else -amount_fen
    _entry(session, bill, kind, signed, reference=reference, note=note, user_id=user_id)
    bill.version += 1
    await session.flush()
    details: dict[str, object] = {"amount_fen": amount_fen, "reference": reference}
    if note:
        details["note"] = note
    audit.record(
        session,
        bill.school_id,
        AUDITED[kind],
        actor_user_id=user_id,
        target=("bill", bill_id),
        details=details,
    )
    if kind is not EntryKind.EXEMPTION:
        await fee_notices.receipt(
            session,
            bill_id,
            amount_fen,
            reference or f"v{bill.version}",
            refund=kind is EntryKind.REFUND,
        )
    return Outcome(Recorded.DONE, bill, before + signed, amount_fen)


async def record_payment(
    session: AsyncSession,
    bill_id: int,
    amount_fen: int,
    *,
    user_id: int | None,
    reference: str | None = None,
    expected_version: int | None = None,
    note: str | None = None,
) -> Outcome:
    """Money received, up to what is outstanding; partial payments are kept exactly."""
    return await _record(
        session,
        bill_id,
        EntryKind.PAYMENT,
        amount_fen,
        user_id=user_id,
        expected_version=expected_version,
        reference=reference,
        note=note,
    )


@dataclasses.dataclass(frozen=True)
class Payment:
    bill_id: int
    amount_fen: int
    reference: str


async def _lock_bills(session: AsyncSession, bill_ids: list[int]) -> dict[int, Bill]:
    """The bills, read afresh under their locks (in id order, so two imports cannot deadlock)."""
    if not bill_ids:
        return {}
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Bill)
            .where(Bill.id.in_(bill_ids))
            .values(version=Bill.version)
            .execution_options(synchronize_session=False)
        )
    rows = await session.scalars(
        select(Bill)
        .where(Bill.id.in_(bill_ids))
        .order_by(Bill.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {bill.id: bill for bill in rows}


async def record_payments(
    session: AsyncSession, paid: Sequence[Payment], *, user_id: int | None
) -> list[Outcome]:
    """Many payments at once (a payment file), each as `record_payment` would record it, in a
    few statements: the bills locked together, their balances and the references already on
    them read once, the entries and the receipts written in bulk."""
    ids = sorted({p.bill_id for p in paid})
    bills = await _lock_bills(session, ids)
    owed = await balances(session, ids)
    seen: set[tuple[int, str | None]] = {
        (bill_id, reference)
        for bill_id, reference in (
            await session.execute(
                select(BillEntry.bill_id, BillEntry.reference).where(
                    BillEntry.bill_id.in_(ids),
                    BillEntry.kind == EntryKind.PAYMENT,
                    BillEntry.reference.in_({p.reference for p in paid}),
                )
            )
        ).all()
    }
    outcomes: list[Outcome] = []
    done: list[tuple[int, int, str]] = []
    for p in paid:
        bill = bills.get(p.bill_id)
        if bill is None:
            outcomes.append(Outcome(Recorded.NOT_FOUND))
        elif p.amount_fen <= 0:
            outcomes.append(Outcome(Recorded.BAD_AMOUNT, bill, owed[bill.id]))
        elif (bill.id, p.reference) in seen:
            outcomes.append(Outcome(Recorded.DUPLICATE, bill, owed[bill.id]))
        elif p.amount_fen > owed[bill.id]:
            outcomes.append(Outcome(Recorded.TOO_MUCH, bill, owed[bill.id]))
        else:
            _entry(
                session,
                bill,
                EntryKind.PAYMENT,
                -p.amount_fen,
                reference=p.reference,
                note="import",
                user_id=user_id,
            )
            bill.version += 1
            owed[bill.id] -= p.amount_fen
            seen.add((bill.id, p.reference))
            done.append((bill.id, p.amount_fen, p.reference))
            outcomes.append(Outcome(Recorded.DONE, bill, owed[bill.id], p.amount_fen))
    await session.flush()
    await fee_notices.receipts(session, done)
    return outcomes


async def exempt(
    session: AsyncSession,
    bill_id: int,
    amount_fen: int,
    *,
    user_id: int,
    reason: str,
    expected_version: int | None = None,
) -> Outcome:
    """A hardship exemption or reduction (减免), set by an admin with a reason."""
    return await _record(
        session,
        bill_id,
        EntryKind.EXEMPTION,
        amount_fen,
        user_id=user_id,
        expected_version=expected_version,
        note=reason[:200],
    )


async def record_refund(
    session: AsyncSession,
    bill_id: int,
    amount_fen: int,
    *,
    user_id: int,
    reference: str | None = None,
    expected_version: int | None = None,
) -> Outcome:
    """Money paid back to the family, up to what the school owes them."""
    return await _record(
        session,
        bill_id,
        EntryKind.REFUND,
        amount_fen,
        user_id=user_id,
        expected_version=expected_version,
        reference=reference,
    )


async def carry_credit(
    session: AsyncSession, bill_id: int, to_bill_id: int, *, user_id: int | None
) -> Outcome:
    """What the school owes on `bill_id` moves to `to_bill_id` (the child's next bill)."""
    bill = await _lock_bill(session, bill_id)
    target = await _lock_bill(session, to_bill_id)
    if bill is None or target is None or bill.student_id != target.student_id:
        return Outcome(Recorded.NOT_FOUND)
    owed = -await balance(session, bill_id)
    if owed <= 0:
        return Outcome(Recorded.TOO_MUCH, bill, -owed)
    reference = f"credit:{bill_id}->{to_bill_id}"
    _entry(session, bill, EntryKind.CREDIT_OUT, owed, reference=reference, user_id=user_id)
    _entry(session, target, EntryKind.CREDIT_IN, -owed, reference=reference, user_id=user_id)
    bill.version += 1
    target.version += 1
    await session.flush()
    return Outcome(Recorded.DONE, target, await balance(session, to_bill_id), owed)


# -------------------------------------------------------------------------------------------
# Leaving: withdrawal and cancellation


@dataclasses.dataclass(frozen=True)
class LeavingPreview:
    """What leaving a course from `on` means for the bill, by the disclosed rule."""

    charged_fen: int  # the line's charge (0: not billed yet, or free)
    back_fen: int  # what comes back (as a refund, or a credit where the school says so)
    rule: Rule | None
    billed: bool  # a bill line exists (else: what would be billed is not charged at all)
    paid: bool  # the bill has no balance left (so the amount is money back, not a reduction)


async def _line_for(
    session: AsyncSession, enrolment: Enrolment, found: Catalogue
) -> tuple[BillLine, FeeStandard, Bill] | None:
    """The bill line that charges this enrolment: its course's line, else its period's."""
    row = (
        await session.execute(
            select(BillLine, FeeStandard, Bill)
            .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
            .join(Bill, Bill.id == BillLine.bill_id)
            .where(
                Bill.student_id == enrolment.student_id, BillLine.course_id == enrolment.course_id
            )
        )
    ).first()
    if row is not None:
        return row[0], row[1], row[2]
    course = found.course(enrolment.course_id)
    if course is None or course.fee_id is None:
        return None
    code = await session.scalar(select(FeeStandard.code).where(FeeStandard.id == course.fee_id))
    row = (
        await session.execute(
            select(BillLine, FeeStandard, Bill)
            .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
            .join(Bill, Bill.id == BillLine.bill_id)
            .where(
                Bill.student_id == enrolment.student_id,
                Bill.term_id == course.term_id,
                BillLine.course_id.is_(None),
                FeeStandard.code == code,
            )
        )
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def _period_courses(
    session: AsyncSession, found: Catalogue, enrolment: Enrolment, code: str, on: dt.date
) -> list[tuple[int, dt.date | None]]:
    """For a period line: each course of the child it pays for, with the day the child left it
    (`on` for this one; None for one the child keeps)."""
    rows = (
        await session.execute(
            select(
                Enrolment.id, Enrolment.course_id, Enrolment.status, Enrolment.withdrawn_from
            ).where(Enrolment.student_id == enrolment.student_id)
        )
    ).all()
    fee_ids = {c.fee_id for c in found.courses.values() if c.fee_id is not None}
    codes = dict(
        (
            await session.execute(
                select(FeeStandard.id, FeeStandard.code).where(FeeStandard.id.in_(fee_ids))
            )
        ).all()
    )
    courses: list[tuple[int, dt.date | None]] = [(enrolment.course_id, on)]
    for enrolment_id, course_id, status, left in rows:
        course = found.course(course_id)
        if course is None or codes.get(course.fee_id or 0) != code or enrolment_id == enrolment.id:
            continue
        if status is EnrolmentStatus.ENROLLED:
            courses.append((course_id, None))
        elif status is EnrolmentStatus.WITHDRAWN and left is not None:
            courses.append((course_id, left))  # paid for until it was left
    return courses


async def _context(
    session: AsyncSession, school_id: int, course_id: int
) -> tuple[Catalogue, TermInfo, CourseInfo, Rule] | None:
    found = await catalogue.of(session, school_id)
    course = found.course(course_id)
    term = found.term(course.term_id) if course is not None else None
    if course is None or term is None:
        return None
    return found, term, course, await school_rule(session, school_id)


async def _leave_days(
    session: AsyncSession, student_id: int, days: Sequence[dt.date]
) -> set[dt.date]:
    if not days:
        return set()
    rows = await session.scalars(
        select(Leave.date).where(
            Leave.student_id == student_id,
            Leave.date.between(days[0], days[-1]),
            Leave.pickup_at.is_(None),
            Leave.cancelled_at.is_(None),
        )
    )
    return set(rows)


async def preview_leaving(
    session: AsyncSession, enrolment: Enrolment, on: dt.date, *, cancelled: bool = False
) -> LeavingPreview:
    """The figure the withdrawal screen shows: computed as `on_leaving` will write it."""
    context = await _context(session, enrolment.school_id, enrolment.course_id)
    found_line = await _line_for(session, enrolment, context[0]) if context else None
    if context is None or found_line is None:
        return LeavingPreview(0, 0, None, False, False)
    found, term, _course, default = context
    line, standard, bill = found_line
    rule = fee_rules.parse(standard.rule, default)
    back = await _back_for(
        session, line, standard, rule, Days(term, found), enrolment, on, cancelled
    )
    return LeavingPreview(line.amount_fen, back, rule, True, await balance(session, bill.id) <= 0)


async def preview_for(session: AsyncSession, enrolment_id: int, on: dt.date) -> LeavingPreview:
    enrolment = await session.get(Enrolment, enrolment_id)
    if enrolment is None:
        return LeavingPreview(0, 0, None, False, False)
    return await preview_leaving(session, enrolment, on)


async def _back_for(
    session: AsyncSession,
    line: BillLine,
    standard: FeeStandard,
    rule: Rule,
    days: Days,
    enrolment: Enrolment,
    on: dt.date,
    cancelled: bool,
) -> int:
    start = line.from_date or days.term.starts_on
    leave = Leaving(on, cancelled)
    still: set[dt.date] = set()
    keeps = False
    if line.course_id is None:  # a period's fee: the child may keep other courses of it
        courses = await _period_courses(session, days.found, enrolment, standard.code, on)
        universe = days.union(c for c, _ in courses)
        served = {d for c, left in courses for d in days.of(c) if left is None or d < left}
        keeps = any(left is None for _, left in courses)
        if rule.refund is not fee_rules.Refund.WINDOWS:
            # Every day no course serves any more is unused, whichever leaving freed it.
            first = min(left for _, left in courses if left is not None)
            leave = Leaving(first, cancelled)
            still = {d for d in served if d >= first}
    else:
        universe = days.of(enrolment.course_id)
    already = await _adjusted(session, line.id)
    amount = fee_rules.refund_for_leaving(
        rule,
        standard.unit,
        line.unit_fen,
        universe,
        start,
        line.amount_fen,
        leave,
        await _leave_days(session, enrolment.student_id, universe) if rule.count_leave else (),
        still,
        keeps,
    )
    # What the rule gives for every day to come, less what earlier leavings gave already (a
    # period's fee gives back course by course).
    return max(0, min(amount, line.amount_fen) - already)


async def _adjusted(session: AsyncSession, line_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(BillEntry.amount_fen), 0)).where(
            BillEntry.line_id == line_id, BillEntry.kind == EntryKind.ADJUSTMENT
        )
    )
    return -int(total or 0)


async def on_leaving(
    session: AsyncSession, enrolment: Enrolment, on: dt.date, *, cancelled: bool = False
) -> int:
    """Write the adjustment leaving gives (0 when there is no line, or nothing comes back).
    Called in the transaction that ends the place, so a withdrawal and its refund are one."""
    context = await _context(session, enrolment.school_id, enrolment.course_id)
    found_line = await _line_for(session, enrolment, context[0]) if context else None
    if context is None or found_line is None:
        return 0
    found, term, _course, default = context
    line, standard, bill = found_line
    locked = await _lock_bill(session, bill.id)
    if locked is None:
        return 0
    return await _adjust_for_leaving(
        session, locked, line, standard, default, Days(term, found), enrolment, on, cancelled
    )


async def _adjust_for_leaving(
    session: AsyncSession,
    bill: Bill,
    line: BillLine,
    standard: FeeStandard,
    default: Rule,
    days: Days,
    enrolment: Enrolment,
    on: dt.date | None = None,
    cancelled: bool = False,
) -> int:
    on = on or enrolment.withdrawn_from or days.term.starts_on
    rule = fee_rules.parse(standard.rule, default)
    back = await _back_for(session, line, standard, rule, days, enrolment, on, cancelled)
    if back <= 0:
        return 0
    why = "cancelled" if cancelled else f"left:{on.isoformat()}"
    _entry(
        session,
        bill,
        EntryKind.ADJUSTMENT,
        -back,
        line_id=line.id,
        reference=f"{why}:{line.id}:{enrolment.id}",
        note=why,
    )
    bill.version += 1
    await session.flush()
    return back


async def settle_term(session: AsyncSession, school_id: int, term_id: int) -> int:
    """Term-end settlement for lines under an `at_term_end` rule: billed days the child did
    not attend come back. Once per line (the adjustment's reference); returns the total."""
    found = await catalogue.of(session, school_id)
    term = found.term(term_id)
    if term is None:
        return 0
    default = await school_rule(session, school_id)
    days = Days(term, found)
    rows = (
        await session.execute(
            select(BillLine, FeeStandard, Bill)
            .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
            .join(Bill, Bill.id == BillLine.bill_id)
            .where(Bill.term_id == term_id, Bill.school_id == school_id)
        )
    ).all()
    present = {c.code for c in (await attendance.codes(session, school_id)).all if c.present}
    total = 0
    for line, standard, bill in rows:
        rule = fee_rules.parse(standard.rule, default)
        if rule.refund is not fee_rules.Refund.AT_TERM_END:
            continue
        course_ids = [line.course_id] if line.course_id is not None else []
        universe = days.union(course_ids)
        served = await _served(session, bill.student_id, course_ids, present)
        back = fee_rules.settle_at_term_end(
            rule,
            standard.unit,
            line.unit_fen,
            universe,
            line.from_date or term.starts_on,
            line.amount_fen,
            await _adjusted(session, line.id),
            served,
            await _leave_days(session, bill.student_id, universe),
        )
        if back <= 0:
            continue
        reference = f"settled:{line.id}"
        seen = await session.scalar(
            select(BillEntry.id).where(
                BillEntry.bill_id == bill.id,
                BillEntry.kind == EntryKind.ADJUSTMENT,
                BillEntry.reference == reference,
            )
        )
        if seen is not None:
            continue
        locked = await _lock_bill(session, bill.id) or bill
        _entry(session, locked, EntryKind.ADJUSTMENT, -back, line_id=line.id, reference=reference)
        locked.version += 1
        total += back
    await session.flush()
    return total


async def _served(
    session: AsyncSession, student_id: int, course_ids: list[int], present: set[str]
) -> set[dt.date]:
    """Days the child was marked present (or late) in these courses: the latest mark counts."""
    if not course_ids:
        return set()
    rows = await session.execute(
        select(Session.date, AttendanceMark.code, AttendanceMark.id)
        .join(Session, Session.id == AttendanceMark.session_id)
        .where(AttendanceMark.student_id == student_id, Session.course_id.in_(course_ids))
        .order_by(AttendanceMark.id)
    )
    latest: dict[dt.date, str] = {}
    for date, code, _ in rows.all():
        latest[date] = code
    return {d for d, code in latest.items() if code in present}


# -------------------------------------------------------------------------------------------
# Reading bills (parents' /fees, admins' reports)


@dataclasses.dataclass(frozen=True)
class LineView:
    name: str  # the standard's name as disclosed
    course: str | None
    unit: str
    unit_fen: int
    quantity: int
    amount_fen: int
    disclosed_on: dt.date | None
    back_fen: int  # adjustments given back on this line


@dataclasses.dataclass(frozen=True)
class BillView:
    bill_id: int
    version: int
    student_id: int
    student: str
    term: str
    due_on: dt.date | None
    lines: list[LineView]
    charged_fen: int
    paid_fen: int
    exempted_fen: int
    adjusted_fen: int
    refunded_fen: int
    credit_fen: int  # credits brought in minus carried out
    balance_fen: int


async def view(session: AsyncSession, bill_id: int) -> BillView | None:
    from storage.models import Course, Term

    row = (
        await session.execute(
            select(Bill, Student.name, Term.name)
            .join(Student, Student.id == Bill.student_id)
            .join(Term, Term.id == Bill.term_id)
            .where(Bill.id == bill_id)
        )
    ).first()
    if row is None:
        return None
    bill, student, term = row
    lines = (
        await session.execute(
            select(BillLine, FeeStandard, Course.name)
            .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
            .outerjoin(Course, Course.id == BillLine.course_id)
            .where(BillLine.bill_id == bill_id)
            .order_by(BillLine.id)
        )
    ).all()
    entries = list(await session.scalars(select(BillEntry).where(BillEntry.bill_id == bill_id)))
    sums: dict[EntryKind, int] = defaultdict(int)
    back: dict[int, int] = defaultdict(int)
    for entry in entries:
        sums[entry.kind] += entry.amount_fen
        if entry.kind is EntryKind.ADJUSTMENT and entry.line_id is not None:
            back[entry.line_id] -= entry.amount_fen
    return BillView(
        bill_id=bill.id,
        version=bill.version,
        student_id=bill.student_id,
        student=student,
        term=term,
        due_on=bill.due_on,
        lines=[
            LineView(
                standard.name,
                course,
                standard.unit.value,
                line.unit_fen,
                line.quantity,
                line.amount_fen,
                standard.disclosed_on,
                back[line.id],
            )
            for line, standard, course in lines
        ],
        charged_fen=sums[EntryKind.CHARGE],
        paid_fen=-sums[EntryKind.PAYMENT],
        exempted_fen=-sums[EntryKind.EXEMPTION],
        adjusted_fen=-sums[EntryKind.ADJUSTMENT],
        refunded_fen=sums[EntryKind.REFUND],
        credit_fen=-(sums[EntryKind.CREDIT_IN] + sums[EntryKind.CREDIT_OUT]),
        balance_fen=sum(e.amount_fen for e in entries),
    )


async def bills_of(
    session: AsyncSession, student_ids: Iterable[int], term_id: int | None = None
) -> list[int]:
    """The bills of these children (newest term first)."""
    query = select(Bill.id).where(Bill.student_id.in_(list(student_ids)))
    if term_id is not None:
        query = query.where(Bill.term_id == term_id)
    return list(await session.scalars(query.order_by(Bill.issued_at.desc(), Bill.id)))


@dataclasses.dataclass(frozen=True)
class ChildBills:
    child_id: int
    child: str
    bills: list[BillView]


@dataclasses.dataclass(frozen=True)
class FamilyBills:
    school_code: str
    children: list[ChildBills]

    @property
    def balance_fen(self) -> int:
        """What the family owes over every child's bills (negative: owed to the family)."""
        return sum(b.balance_fen for c in self.children for b in c.bills)


async def family_bills(session: AsyncSession, member: Member | None) -> FamilyBills | None:
    """A guardian's children and each one's bills (newest term first); None if not a parent."""
    kids = await guard.children(session, member)
    if member is None or not kids:
        return None
    code = await session.scalar(select(School.code).where(School.id == member.school_id))
    found = []
    for kid in kids:
        views = [await view(session, bill_id) for bill_id in await bills_of(session, [kid.id])]
        found.append(ChildBills(kid.id, kid.name, [v for v in views if v is not None]))
    return FamilyBills(code or "", found)


@dataclasses.dataclass(frozen=True)
class TermTotals:
    bills: int
    charged_fen: int
    paid_fen: int
    outstanding_fen: int  # what families still owe (bills with a positive balance)


async def term_totals(session: AsyncSession, school_id: int, term_id: int) -> TermTotals:
    rows = (
        await session.execute(
            select(BillEntry.bill_id, BillEntry.kind, func.sum(BillEntry.amount_fen))
            .join(Bill, Bill.id == BillEntry.bill_id)
            .where(Bill.school_id == school_id, Bill.term_id == term_id)
            .group_by(BillEntry.bill_id, BillEntry.kind)
        )
    ).all()
    balance: dict[int, int] = defaultdict(int)
    charged = paid = 0
    for bill_id, kind, total in rows:
        balance[bill_id] += int(total)
        if kind is EntryKind.CHARGE:
            charged += int(total)
        elif kind is EntryKind.PAYMENT:
            paid -= int(total)
    count = await session.scalar(
        select(func.count()).where(Bill.school_id == school_id, Bill.term_id == term_id)
    )
    return TermTotals(int(count or 0), charged, paid, sum(b for b in balance.values() if b > 0))


async def bill_of_student(
    session: AsyncSession, school_id: int, term_id: int, student_no: str
) -> tuple[int, str] | None:
    """(bill id, child's name) of the student with this 学号 in the term, or None."""
    row = (
        await session.execute(
            select(Bill.id, Student.name)
            .join(Student, Student.id == Bill.student_id)
            .where(
                Student.school_id == school_id,
                Student.student_no == student_no,
                Bill.term_id == term_id,
            )
        )
    ).first()
    return (row[0], row[1]) if row is not None else None
