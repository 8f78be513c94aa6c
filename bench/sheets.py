"""Benchmark: a term's payment file of 3,000 rows written and read back by bot/services/sheets.py,
as XLSX and as CSV: the time of each step and the memory it took.

    .venv/bin/python bench/sheets.py               # 3,000 rows
    .venv/bin/python bench/sheets.py --rows 300    # a smoke run

Each format is written (`write_xlsx` / `write_csv`: 学号, 姓名, 班级, 金额, 交易号, 支付时间),
then read (`read_table`) and every row parsed (`parse_amount`, `parse_paid_at`), as a payment
import would. Memory is the process's peak resident set above what it held before the step
(VmHWM reset through /proc/self/clear_refs, where Linux allows it), and `resource.getrusage`
maxrss for the whole run. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.services.sheets import (
    AMOUNT,
    PAID_AT,
    STUDENT_NO,
    Cell,
    Sheet,
    parse_amount,
    parse_paid_at,
    read_table,
    write_csv,
    write_xlsx,
)

HEADER = ["学号", "姓名", "班级", "实收金额", "交易单号", "支付时间"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "子涵欣怡梓轩浩然雨桐思远一诺宇轩可馨俊杰"


def amount(n: int) -> Decimal:
    return Decimal(280 + (n % 5) * 30) + Decimal("0.50") * (n % 2)


def payments(count: int) -> Iterator[list[Cell]]:
    start = dt.datetime(2026, 9, 1, 8, 0)
    for n in range(count):
        name = SURNAMES[n % 20] + GIVEN[n % 17] + GIVEN[(n * 7) % 17]
        yield [
            f"2026{n:05d}",
            name,
            f"{n % 6 + 1}年级{n % 8 + 1}班",
            amount(n),
            f"4200001{n:012d}",
            start + dt.timedelta(minutes=7 * n),
        ]


def memory_mb() -> tuple[float, float]:
    """This process's resident set now and its peak since the last reset (VmRSS, VmHWM)."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux: clear_refs 5); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def measured(step: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """The step's result, its seconds, and the MB its peak rose above the resident set before."""
    resettable = reset_peak()
    before, _ = memory_mb()
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    _, peak = memory_mb()
    return result, seconds, (peak - before if resettable else None)


def read_back(data: bytes, name: str, rows: int) -> int:
    """Read the file as a payment import would; the total in fen, checked row by row."""
    table = read_table(data, name, header_with=(STUDENT_NO, AMOUNT))
    student, amount, paid_at = table.find(*STUDENT_NO), table.find(*AMOUNT), table.find(*PAID_AT)
    assert len(table.rows) == rows, (name, len(table.rows))
    total = 0
    for row in table.rows:
        assert row.get(student)
        total += parse_amount(row.get(amount))
        assert parse_paid_at(row.get(paid_at)) is not None
    return total


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args(argv)
    expected = sum(int(amount(n) * 100) for n in range(args.rows))
    lines = [
        f"Payment file of {args.rows:,} rows (bot/services/sheets.py):",
        "",
        "| format | size | write | read + parse | write peak Δ | read peak Δ |",
        "|---|---|---|---|---|---|",
    ]
    writers: list[tuple[str, str, Callable[[], bytes]]] = [
        (
            "XLSX",
            "payments.xlsx",
            lambda: write_xlsx([Sheet("缴费", HEADER, payments(args.rows))]),
        ),
        ("CSV", "payments.csv", lambda: write_csv(HEADER, payments(args.rows))),
    ]
    for label, name, write in writers:
        data, write_s, write_mb = measured(write)
        total, read_s, read_mb = measured(lambda: read_back(data, name, args.rows))  # noqa: B023
        assert total == expected, (label, total, expected)

        def mb(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f} MB"

        lines.append(
            f"| {label} | {len(data) / 1024:.0f} KB | {write_s * 1000:.0f} ms "
            f"| {read_s * 1000:.0f} ms | {mb(write_mb)} | {mb(read_mb)} |"
        )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines += ["", f"Whole run: maxrss {maxrss:.0f} MB (Python, openpyxl and the test data)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
