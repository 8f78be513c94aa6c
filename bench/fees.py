"""Benchmark: issuing the term's bills for a school of 3,000 children, and importing a payment
file of one row per bill, with time and peak memory.

    .venv/bin/python bench/fees.py                      # 3,000 students, SQLite
    .venv/bin/python bench/fees.py --students 300       # a smoke run
    .venv/bin/python bench/fees.py --database-url postgresql+asyncpg://…/kehou_bench

The school is made by the generator (`bot.demo.big.build_school`: the demo school's courses and
disclosed fees, children signed up through the sign-up service). Then, timed, each in one
transaction with its commit:

- **issue**: `billing.issue` bills every child for the term (lines checked against the
  disclosed standards, charges on the ledger, one notice per guardian queued);
- **import**: a payment export with one row per bill (XLSX, as a school's payment system gives
  it; every tenth bill is paid in two parts, and rows the school cannot match fill the file
  up to `--rows`, 3,000 by default) read by `sheets.read_table`, checked by
  `payments.parse` and matched and recorded by `payments.record` (a receipt per payment).

Peak memory is the process's resident set high-water mark (VmHWM), reset before each step
through /proc/self/clear_refs where Linux allows it, and `resource.getrusage` maxrss.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.measure import peak_mb, reset_peak, say  # noqa: E402
from bot.demo import big  # noqa: E402
from bot.services import billing, payments, sheets  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import Bill, BillLine, Outbox, Student, Term  # noqa: E402


async def run(url: str, students: int, rows_wanted: int) -> dict[str, float]:
    await upgrade_async(url)
    db = Database(url)
    try:
        school = await big.build_school(db, students, progress=say)
        school_id = school.report.school_id
        async with db.transaction() as session:
            term_id = await session.scalar(select(Term.id).where(Term.school_id == school_id))
            assert term_id is not None
        due = dt.date.today() + dt.timedelta(days=14)

        reset_peak()
        started = time.perf_counter()
        async with db.transaction() as session:
            report = await billing.issue(session, school_id, term_id, due_on=due, user_id=None)
        issue_s = time.perf_counter() - started
        issue_mb = peak_mb()
        say(f"issued {report.bills_new} bills, {report.lines} lines in {issue_s:.2f} s")

        async with db.transaction() as session:
            bills = (
                await session.execute(
                    select(Student.student_no, Bill.id).join(
                        Student, Student.id == Bill.student_id
                    )
                )
            ).all()
            owed = await billing.balances(session, [b for _, b in bills])
        rows: list[list[sheets.Cell]] = []
        rest: list[list[sheets.Cell]] = []
        for n, (number, bill_id) in enumerate(bills):
            amount = owed[bill_id] if n % 10 else owed[bill_id] // 2
            rows.append([f"T{n:06d}", number, Decimal(amount) / 100])
            if amount < owed[bill_id]:  # the rest, paid later in the same export
                rest.append([f"R{n:06d}", number, Decimal(owed[bill_id] - amount) / 100])
        rows += rest
        # Up to `rows_wanted`: payments the school cannot match (a mistyped 学号).
        rows += [
            [f"X{n:06d}", f"9{n:07d}", Decimal(280)]
            for n in range(max(0, rows_wanted - len(rows)))
        ]
        export = sheets.write_xlsx([sheets.Sheet("缴费", ["交易单号", "学号", "实收金额"], rows)])

        reset_peak()
        started = time.perf_counter()
        table = sheets.read_table(export, "收款明细.xlsx")
        parsed = payments.parse(table)
        async with db.transaction() as session:
            imported = await payments.record(session, school_id, term_id, parsed, user_id=None)
        import_s = time.perf_counter() - started
        import_mb = peak_mb()
        say(
            f"imported {len(parsed)} rows in {import_s:.2f} s: "
            f"{imported.count(payments.Match.PAID)} paid, "
            f"{imported.count(payments.Match.PARTIAL)} partial, "
            f"{len(imported.unmatched)} not matched"
        )
        async with db.transaction() as session:
            lines = await session.scalar(select(func.count()).select_from(BillLine))
            queued = await session.scalar(select(func.count()).select_from(Outbox))
        return {
            "students": students,
            "bills": report.bills_new,
            "lines": float(lines or 0),
            "issue_s": issue_s,
            "issue_peak_mb": issue_mb,
            "rows": len(parsed),
            "import_s": import_s,
            "import_peak_mb": import_mb,
            "outbox_rows": float(queued or 0),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        await db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=3000, help="rows in the payment file")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        result = asyncio.run(run(url, args.students, args.rows))
    print(
        "| students | bills | lines | issue | issue peak RSS | payment rows | import | "
        "import peak RSS |\n|---|---|---|---|---|---|---|---|\n"
        f"| {result['students']:,} | {result['bills']:,} | {int(result['lines']):,} | "
        f"{result['issue_s']:.2f} s | {result['issue_peak_mb']:.0f} MB | {result['rows']:,} | "
        f"{result['import_s']:.2f} s | {result['import_peak_mb']:.0f} MB |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
