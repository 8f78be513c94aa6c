"""Fee reports for admins, as sheets for CSV and XLSX (`sheets` writes them safe to open).

- collection per class and item: charged, reduced, given back, paid, refunded, outstanding;
- outstanding per family (children who share a guardian are one family);
- refunds and adjustments per child and item;
- exemptions, with their reason, who set them and when.

Money is written as yuan with two decimals (`Decimal`), never negative: each kind of movement
has its own column.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Translator
from bot.services.sheets import Cell, Sheet
from storage.models import (
    Bill,
    BillEntry,
    BillLine,
    EntryKind,
    FeeStandard,
    Guardianship,
    SchoolClass,
    Student,
    User,
)


def yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


@dataclasses.dataclass
class _Sums:
    charged: int = 0
    reduced: int = 0
    back: int = 0
    paid: int = 0
    refunded: int = 0

    @property
    def outstanding(self) -> int:
        return self.charged - self.reduced - self.back - self.paid + self.refunded


async def build(session: AsyncSession, t: Translator, school_id: int, term_id: int) -> list[Sheet]:
    bills = {
        b.id: b
        for b in await session.scalars(
            select(Bill).where(Bill.school_id == school_id, Bill.term_id == term_id)
        )
    }
    students = {
        s.id: (s, c)
        for s, c in (
            await session.execute(
                select(Student, SchoolClass)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(Student.id.in_([b.student_id for b in bills.values()]))
            )
        ).all()
    }
    lines = {
        line.id: (line, name)
        for line, name in (
            await session.execute(
                select(BillLine, FeeStandard.name)
                .join(FeeStandard, FeeStandard.id == BillLine.fee_standard_id)
                .where(BillLine.bill_id.in_(list(bills)))
            )
        ).all()
    }
    entries = list(
        await session.scalars(
            select(BillEntry).where(BillEntry.bill_id.in_(list(bills))).order_by(BillEntry.id)
        )
    )
    actors = dict(
        (
            await session.execute(
                select(User.id, User.display_name).where(
                    User.id.in_({e.actor_user_id for e in entries if e.actor_user_id})
                )
            )
        ).all()
    )

    # Money that is not on one line (payments, reductions) is shared over the bill's lines in
    # proportion to their charge, so a class's and an item's figures add up to the totals.
    by_bill_lines: dict[int, list[int]] = defaultdict(list)
    for line_id, (line, _) in lines.items():
        by_bill_lines[line.bill_id].append(line_id)
    per_line: dict[int, _Sums] = defaultdict(_Sums)
    per_bill: dict[int, _Sums] = defaultdict(_Sums)
    for e in entries:
        sums = per_bill[e.bill_id]
        amount = abs(e.amount_fen)
        field = {
            EntryKind.CHARGE: "charged",
            EntryKind.EXEMPTION: "reduced",
            EntryKind.ADJUSTMENT: "back",
            EntryKind.PAYMENT: "paid",
            EntryKind.REFUND: "refunded",
            EntryKind.CREDIT_IN: "reduced",
            EntryKind.CREDIT_OUT: "refunded",
        }[e.kind]
        setattr(sums, field, getattr(sums, field) + amount)
        if e.line_id is not None and e.line_id in lines:
            target = per_line[e.line_id]
            setattr(target, field, getattr(target, field) + amount)
        else:
            _spread(per_line, lines, by_bill_lines[e.bill_id], field, amount)

    collection: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    counted: dict[tuple[str, str], set[int]] = defaultdict(set)
    for line_id, (line, item) in lines.items():
        student, klass = students[bills[line.bill_id].student_id]
        key = (klass.name, item)
        counted[key].add(line.bill_id)
        for field in ("charged", "reduced", "back", "paid", "refunded"):
            setattr(
                collection[key],
                field,
                getattr(collection[key], field) + getattr(per_line[line_id], field),
            )
    money = [
        t.gettext("Charged"),
        t.gettext("Reduced"),
        t.gettext("Given back"),
        t.gettext("Paid"),
        t.gettext("Refunded"),
        t.gettext("Outstanding"),
    ]

    def amounts(s: _Sums) -> list[Cell]:
        return [
            yuan(s.charged),
            yuan(s.reduced),
            yuan(s.back),
            yuan(s.paid),
            yuan(s.refunded),
            yuan(max(s.outstanding, 0)),
        ]

    first = Sheet(
        t.gettext("By class and item"),
        [t.gettext("Class"), t.gettext("Item"), t.gettext("Children"), *money],
        [[k[0], k[1], len(counted[k]), *amounts(collection[k])] for k in sorted(collection)],
    )

    guardians: dict[int, frozenset[int]] = defaultdict(frozenset)
    for student_id, user_id in (
        await session.execute(
            select(Guardianship.student_id, Guardianship.user_id).where(
                Guardianship.student_id.in_(list(students))
            )
        )
    ).all():
        guardians[student_id] = guardians[student_id] | {user_id}
    families = _families([b.student_id for b in bills.values()], guardians)
    owed_rows: list[list[Cell]] = []
    for members in families:
        owed = sum(per_bill[b.id].outstanding for b in bills.values() if b.student_id in members)
        if owed <= 0:
            continue
        kids = sorted(members, key=lambda s: (students[s][1].name, students[s][0].name))
        owed_rows.append(
            [
                "、".join(students[s][0].name for s in kids),
                "、".join(students[s][0].student_no for s in kids),
                "、".join(sorted({students[s][1].name for s in kids})),
                yuan(owed),
            ]
        )
    second = Sheet(
        t.gettext("Outstanding by family"),
        [t.gettext("Children"), t.gettext("Student numbers"), t.gettext("Classes"), money[5]],
        sorted(owed_rows, key=lambda r: str(r[2])),
    )

    back_rows: list[list[Cell]] = []
    for line_id, (line, item) in lines.items():
        s = per_line[line_id]
        if s.back or s.refunded:
            student, klass = students[bills[line.bill_id].student_id]
            back_rows.append(
                [
                    klass.name,
                    student.name,
                    student.student_no,
                    item,
                    yuan(s.back),
                    yuan(s.refunded),
                ]
            )
    third = Sheet(
        t.gettext("Refunds"),
        [
            t.gettext("Class"),
            t.gettext("Child"),
            t.gettext("Student number"),
            t.gettext("Item"),
            money[2],
            money[4],
        ],
        sorted(back_rows, key=lambda r: (str(r[0]), str(r[1]))),
    )

    exempt_rows: list[list[Cell]] = []
    for e in entries:
        if e.kind is not EntryKind.EXEMPTION:
            continue
        student, klass = students[bills[e.bill_id].student_id]
        exempt_rows.append(
            [
                klass.name,
                student.name,
                student.student_no,
                yuan(-e.amount_fen),
                e.note or "",
                actors.get(e.actor_user_id, "") if e.actor_user_id else "",
                e.created_at.astimezone(t.timezone).replace(tzinfo=None)
                if isinstance(e.created_at, dt.datetime)
                else None,
            ]
        )
    fourth = Sheet(
        t.gettext("Exemptions"),
        [
            t.gettext("Class"),
            t.gettext("Child"),
            t.gettext("Student number"),
            money[1],
            t.gettext("Reason"),
            t.gettext("Set by"),
            t.gettext("When"),
        ],
        exempt_rows,
    )
    return [first, second, third, fourth]


def _spread(
    per_line: dict[int, _Sums],
    lines: dict[int, tuple[BillLine, str]],
    line_ids: list[int],
    field: str,
    amount: int,
) -> None:
    """Share `amount` over the lines by their charge, the rounding left on the last one."""
    if not line_ids:
        return
    total = sum(lines[i][0].amount_fen for i in line_ids) or 1
    left = amount
    for index, line_id in enumerate(line_ids):
        part = (
            left if index == len(line_ids) - 1 else amount * lines[line_id][0].amount_fen // total
        )
        left -= part
        target = per_line[line_id]
        setattr(target, field, getattr(target, field) + part)


def _families(student_ids: list[int], guardians: dict[int, frozenset[int]]) -> list[set[int]]:
    """Children who share a guardian, joined (siblings); a child without one is alone."""
    parent: dict[int, int] = {s: s for s in student_ids}

    def root(s: int) -> int:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    by_guardian: dict[int, int] = {}
    for s in student_ids:
        for g in guardians.get(s, frozenset()):
            if g in by_guardian:
                parent[root(s)] = root(by_guardian[g])
            else:
                by_guardian[g] = s
    groups: dict[int, set[int]] = defaultdict(set)
    for s in student_ids:
        groups[root(s)].add(s)
    return list(groups.values())
