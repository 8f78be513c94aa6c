"""Importing the payment system's export (CSV or XLSX), matched by student number and amount.

Every row is read and checked first; a row that cannot be read stops the import and nothing is
recorded (nothing is half-imported). Readable rows are then matched in one transaction:

- **paid**: the student has a bill of the term and the amount is what is still to pay;
- **partial**: less than what is still to pay (kept exactly, the rest stays due);
- **duplicate**: this transaction number is on the bill already (the same file twice);
- **not matched**: no such student, no bill, nothing to pay, or more than is due — left for
  an admin, with the reason, never guessed.

Each recorded payment sends its receipt (`fee_notices.receipt`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import audit, billing, sheets
from bot.services.sheets import SheetError, Table
from storage.models import Bill, Student


class Match(enum.StrEnum):
    PAID = "paid"
    PARTIAL = "partial"
    DUPLICATE = "duplicate"
    NO_STUDENT = "no_student"
    NO_BILL = "no_bill"
    NOTHING_DUE = "nothing_due"
    TOO_MUCH = "too_much"


@dataclasses.dataclass(frozen=True)
class Line:
    row: int  # as the admin sees it in the file
    student_no: str
    amount_fen: int
    reference: str
    match: Match
    due_fen: int = 0


@dataclasses.dataclass
class ImportReport:
    lines: list[Line] = dataclasses.field(default_factory=list)

    def count(self, *matches: Match) -> int:
        return sum(1 for line in self.lines if line.match in matches)

    @property
    def recorded_fen(self) -> int:
        return sum(
            line.amount_fen for line in self.lines if line.match in (Match.PAID, Match.PARTIAL)
        )

    @property
    def unmatched(self) -> list[Line]:
        return [
            line
            for line in self.lines
            if line.match not in (Match.PAID, Match.PARTIAL, Match.DUPLICATE)
        ]


@dataclasses.dataclass(frozen=True)
class Parsed:
    row: int
    student_no: str
    amount_fen: int
    reference: str


def parse(table: Table) -> list[Parsed]:
    """The rows with a student number and an amount; SheetError names the first bad row.

    Rows with neither (a total line at the end of a WeChat bill) are skipped. Without a column
    of transaction numbers, a row's reference is made from its content, so importing the same
    file again records nothing twice.
    """
    number_col = table.require(*sheets.STUDENT_NO)
    amount_col = table.require(*sheets.AMOUNT)
    reference_col = table.find(*sheets.REFERENCE)
    found = []
    for row in table.rows:
        number = row.get(number_col).strip()
        amount_text = row.get(amount_col).strip()
        if not number and not amount_text:
            continue
        if not number:
            raise SheetError(N_("Row {row}: the student number is missing."), row=row.number)
        try:
            amount = sheets.parse_amount(amount_text)
        except ValueError:
            raise SheetError(
                N_("Row {row}: the amount {value} cannot be read."),
                row=row.number,
                value=amount_text or "—",
            ) from None
        reference = row.get(reference_col).strip() if reference_col is not None else ""
        if not reference:
            digest = hashlib.sha256("|".join(row.cells).encode()).hexdigest()[:16]
            reference = f"row:{digest}"
        found.append(Parsed(row.number, number, amount, reference[:100]))
    if not found:
        raise SheetError(N_("The file is empty."))
    return found


async def record(
    session: AsyncSession,
    school_id: int,
    term_id: int,
    rows: list[Parsed],
    *,
    user_id: int | None,
) -> ImportReport:
    """Match and record every row in the caller's transaction (see the module)."""
    numbers = {r.student_no for r in rows}
    bills = {
        number: bill_id
        for number, bill_id in (
            await session.execute(
                select(Student.student_no, Bill.id)
                .join(Bill, Bill.student_id == Student.id)
                .where(
                    Student.school_id == school_id,
                    Bill.term_id == term_id,
                    Student.student_no.in_(numbers),
                )
            )
        ).all()
    }
    known = set(
        await session.scalars(
            select(Student.student_no).where(
                Student.school_id == school_id, Student.student_no.in_(numbers)
            )
        )
    )
    report = ImportReport()
    matched = [r for r in rows if r.student_no in bills]
    outcomes = iter(
        await billing.record_payments(
            session,
            [billing.Payment(bills[r.student_no], r.amount_fen, r.reference) for r in matched],
            user_id=user_id,
        )
    )
    for r in rows:
        bill_id = bills.get(r.student_no)
        if bill_id is None:
            match = Match.NO_STUDENT if r.student_no not in known else Match.NO_BILL
            report.lines.append(Line(r.row, r.student_no, r.amount_fen, r.reference, match))
            continue
        done = next(outcomes)
        before = done.balance_fen + (
            done.amount_fen if done.result is billing.Recorded.DONE else 0
        )
        if done.result is billing.Recorded.DUPLICATE:
            match = Match.DUPLICATE
        elif done.result is billing.Recorded.DONE:
            match = Match.PAID if done.balance_fen == 0 else Match.PARTIAL
        elif before <= 0:
            match = Match.NOTHING_DUE
        else:
            match = Match.TOO_MUCH
        report.lines.append(
            Line(r.row, r.student_no, r.amount_fen, r.reference, match, max(before, 0))
        )
    audit.record(
        session,
        school_id,
        "fees.import",
        actor_user_id=user_id,
        target=("term", term_id),
        details={
            "rows": len(rows),
            "paid": report.count(Match.PAID),
            "partial": report.count(Match.PARTIAL),
            "duplicate": report.count(Match.DUPLICATE),
            "unmatched": len(report.unmatched),
            "recorded_fen": report.recorded_fen,
        },
    )
    return report
