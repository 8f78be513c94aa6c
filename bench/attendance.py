"""Benchmark: opening the roll and submitting attendance for a 50-child session at a school of
10,000 students, on SQLite and PostgreSQL.

    .venv/bin/python bench/attendance.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/attendance.py --backend sqlite --rolls 100
    .venv/bin/python bench/attendance.py --database-url postgresql+asyncpg://…/kehou_bench
    .venv/bin/python bench/attendance.py --quick                  # a smoke run, 1,000 students

The school is made by the generator (`bot.demo.big.build_school`, as bench/big_school.py does):
10,000 students, their guardians and teachers bound, every child signed up through the sign-up
service. The roll is a homework-help period 1 course (a class's own, taught by its head teacher,
who has an account) topped up to `--size` children (50) with children of the same grade who
take no period 1, signed up through the sign-up service. The term is stretched back so the
course has `--rolls` school days behind today.

Each roll is a fresh session on a different day, oldest first, with that day as "today" and
17:05 as "now": a guardian files a leave for one child that morning (not timed), then, timed,
each in its own transaction as the handler runs them,

- **open**: `attendance.open_roll(...)` (the session's row is written on first open);
- **submit**: `attendance.submit(...)` with three children absent without leave, one late,
  the one on leave as filed and everyone else present: the marks, the urgent alerts to the
  absent children's guardians (outbox rows), the streak check, the audit row, and the roll as
  saved, with the commit.

Then `--handler-rolls` more rolls through the handler itself (handlers/teacher/attendance.py)
with `Application.process_update` and the Bot API calls recorded (tests/harness.py): `/attendance`
(the loader, the day's sessions, the roll rendered) and the submit press (`at:s:`, which opens
the roll once more before submitting), timed from the update to the last recorded call.

Every SQL statement of the service calls is timed too (SQLAlchemy's cursor events): how many
each call runs and which take longest. PostgreSQL: `--database-url`, or a throwaway cluster
under /tmp started as tests/pg.py starts the tests' one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, update  # noqa: E402

from bot.demo import big  # noqa: E402
from bot.services import attendance, enrolment, leaves, members, sessions  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    AttendanceMark,
    Course,
    Enrolment,
    EnrolmentStatus,
    Outbox,
    School,
    SchoolClass,
    Student,
    Term,
)

JSON = dict[str, Any]
TARGET_MS = 100.0
ZONE = ZoneInfo("Asia/Shanghai")
ABSENT, LATE = 3, 1


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def quantile_ms(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


def spread(values: Sequence[float]) -> JSON:
    return {
        "n": len(values),
        "p50": quantile_ms(values, 0.50),
        "p95": quantile_ms(values, 0.95),
        "p99": quantile_ms(values, 0.99),
        "max": max(values) * 1000 if values else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# The school and the course


@dataclass
class Setup:
    school_id: int
    course_id: int
    course: str
    teacher_telegram_id: int
    children: list[int]  # enrolled, in no particular order
    days: list[dt.date]  # school days of the course, oldest first, today last
    seconds: dict[str, float] = field(default_factory=dict)


async def build(
    db: Database, students: int, *, seed: int = big.SEED, grades: int = 9
) -> big.BigSchool:
    """The generated school, open today (a weekend runs Wednesday's timetable)."""
    school = await big.build_school(db, students, seed=seed, grades=grades, progress=say)
    await big.open_for_today(db, school.report.school_id, weekday_today=True)
    return school


async def pick_course(
    db: Database, school: big.BigSchool, size: int, days: int, now: dt.datetime | None = None
) -> Setup:
    """The period-1 course nearest to `size` children, taught by a teacher with an account,
    topped up to `size` with children of its grade who take no period 1, through the sign-up
    service; the term stretched back so the course has `days` school days up to today."""
    school_id = school.report.school_id
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(ZONE).date()
    bound = {t.teacher_id: t.telegram_id for t in school.population.teachers}
    async with db.transaction() as session:
        counted = (
            await session.execute(
                select(Course.id, Course.name, Course.teacher_id, Course.grade_min, func.count())
                .join(Enrolment, Enrolment.course_id == Course.id)
                .where(
                    Course.school_id == school_id,
                    Course.period == 1,
                    Enrolment.status == EnrolmentStatus.ENROLLED,
                )
                .group_by(Course.id, Course.name, Course.teacher_id, Course.grade_min)
            )
        ).all()
        in_period_1 = (
            select(Enrolment.student_id)
            .join(Course, Course.id == Enrolment.course_id)
            .where(Course.period == 1)
        )
        free_by_grade: dict[int, list[int]] = defaultdict(list)
        for student_id, grade in await session.execute(
            select(Student.id, SchoolClass.grade)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .where(Student.school_id == school_id, Student.id.not_in(in_period_1))
            .order_by(Student.id)
        ):
            free_by_grade[grade].append(student_id)
        # The course that comes nearest to `size` children, then the fullest.
        course_id, name, teacher_id, grade, _ = max(
            (row for row in counted if row[2] in bound),
            key=lambda row: (min(size, row[4] + len(free_by_grade[row[3]])), row[4], -row[0]),
        )
        free = free_by_grade[grade]
    started = time.perf_counter()
    for child in free:
        async with db.transaction() as session:
            enrolled = await session.scalar(
                select(func.count()).where(
                    Enrolment.course_id == course_id, Enrolment.status == EnrolmentStatus.ENROLLED
                )
            )
        if (enrolled or 0) >= size:
            break
        signed = await enrolment.sign_up(db, child, course_id, user_id=None, now=now)
        if not isinstance(signed, enrolment.SignedUp):
            say(f"sign-up refused: {signed}")
    topped_up = time.perf_counter() - started
    async with db.transaction() as session:
        children = list(
            await session.scalars(
                select(Enrolment.student_id).where(
                    Enrolment.course_id == course_id, Enrolment.status == EnrolmentStatus.ENROLLED
                )
            )
        )
        # Term time from far enough back; moving the catalogue's version drops its cache.
        back = today - dt.timedelta(days=days * 2 + 60)
        await session.execute(
            update(Term)
            .where(Term.school_id == school_id, Term.starts_on > back)
            .values(starts_on=back)
        )
        await session.execute(
            update(School)
            .where(School.id == school_id)
            .values(catalogue_version=School.catalogue_version + 1)
        )
    assert teacher_id is not None
    telegram_id = bound[teacher_id]
    async with db.transaction() as session:
        member = await members.find_member(session, telegram_id)
        assert member is not None
        found: list[dt.date] = []
        day = today
        while len(found) < days and (today - day).days < days * 2 + 60:
            if await sessions.find(session, member, course_id, day, day):
                found.append(day)
            day -= dt.timedelta(days=1)
    return Setup(
        school_id,
        course_id,
        name,
        telegram_id,
        children,
        sorted(found),
        seconds={"top_up": topped_up},
    )


# ---------------------------------------------------------------------------------------------
# Statements


FROM = re.compile(r"\b(FROM|INTO|UPDATE) (\w+)")


def statement_name(sql: str) -> str:
    flat = " ".join(sql.split())
    table = FROM.search(flat)
    return flat[:40] + (
        f" … {table.group(1)} {table.group(2)}" if table and len(flat) > 40 else ""
    )


class Statements:
    """Every statement the engine runs, timed, under the name of the step that ran it."""

    def __init__(self, db: Database) -> None:
        self.doing: str | None = None
        self.timed: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.calls: dict[str, int] = defaultdict(int)
        engine = db.engine.sync_engine

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
            conn.info["kehou.bench.t"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
            if self.doing is not None:
                spent = time.perf_counter() - conn.info["kehou.bench.t"]
                self.timed[self.doing][statement_name(sql)].append(spent)

    @contextlib.contextmanager
    def step(self, name: str) -> Any:
        self.doing = name
        self.calls[name] += 1
        try:
            yield
        finally:
            self.doing = None

    def summary(self) -> JSON:
        found: JSON = {}
        for name, rows in self.timed.items():
            calls = self.calls[name]
            ranked = sorted(rows.items(), key=lambda kv: -sum(kv[1]))
            found[name] = {
                "statements": sum(len(v) for v in rows.values()) / calls,
                "sql_ms": sum(sum(v) for v in rows.values()) / calls * 1000,
                "top": [(sql, sum(v) / len(v) * 1000, len(v) / calls) for sql, v in ranked[:4]],
            }
        return found


# ---------------------------------------------------------------------------------------------
# The rolls through the services


@dataclass
class Rolls:
    open_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    both_s: list[float] = field(default_factory=list)
    saved: int = 0
    alerts: int = 0  # children whose guardians were alerted
    alert_rows: int = 0  # outbox rows enqueued for them
    flagged: int = 0
    failures: list[str] = field(default_factory=list)


def at_local(day: dt.date, clock: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, clock, ZONE).astimezone(dt.UTC)


def plan_marks(
    roll: attendance.Roll, rng: random.Random, absent: int = ABSENT, late: int = LATE
) -> tuple[dict[int, str], list[int]]:
    """What the teacher marks: `absent` children absent (never the one on leave), `late` late,
    the rest present; a child on leave keeps what the guardian filed. The absent children."""
    free = [line.student_id for line in roll.lines if line.proposed is None]
    chosen = rng.sample(free, min(len(free), absent + late))
    away, late_ones = chosen[:absent], chosen[absent:]
    marks = {s: attendance.PRESENT for s in free}
    marks |= {s: attendance.ABSENT for s in away}
    marks |= {s: attendance.LATE for s in late_ones}
    return marks, away


async def file_leave(db: Database, setup: Setup, day: dt.date, rng: random.Random) -> int:
    """A guardian's leave for one child that morning (untimed)."""
    child = rng.choice(setup.children)
    async with db.transaction() as session:
        await leaves.announce(
            session, child, day, 1, user_id=None, reason="看病", now=at_local(day, dt.time(8))
        )
    return child


async def run_rolls(
    db: Database,
    setup: Setup,
    days: Sequence[dt.date],
    *,
    seed: int = 1,
    statements: Statements | None = None,
    progress: Callable[[str], None] | None = None,
) -> Rolls:
    """Open and submit one roll per day, each in its own transaction, timed."""
    rng = random.Random(seed)
    found = Rolls()
    async with db.transaction() as session:
        member = await members.find_member(session, setup.teacher_telegram_id)
    assert member is not None
    quiet = contextlib.nullcontext
    for number, day in enumerate(days, start=1):
        await file_leave(db, setup, day, rng)
        now = at_local(day, dt.time(17, 5))
        started = time.perf_counter()
        with statements.step("open") if statements else quiet():
            async with db.transaction() as session:
                roll = await attendance.open_roll(session, member, setup.course_id, day, day)
        opened = time.perf_counter()
        if roll is None or not roll.editable:
            found.failures.append(f"{day}: the roll did not open for marking")
            continue
        marks, away = plan_marks(roll, rng)
        before = opened
        with statements.step("submit") if statements else quiet():
            async with db.transaction() as session:
                result = await attendance.submit(
                    session, member, setup.course_id, day, marks, roll.version, now
                )
        done = time.perf_counter()
        found.open_s.append(opened - started)
        found.submit_s.append(done - before)
        found.both_s.append(done - started)
        if result.outcome is not attendance.Outcome.SAVED:
            found.failures.append(f"{day}: {result.outcome}")
            continue
        found.saved += 1
        found.alerts += len(result.alerts)
        found.flagged += len(result.flagged)
        if sorted(result.alerts) != sorted(away):
            found.failures.append(f"{day}: alerted {result.alerts}, absent {away}")
        if progress and number % 50 == 0:
            progress(f"{number} rolls, open p50 {quantile_ms(found.open_s, 0.5):.1f} ms")
    async with db.transaction() as session:
        found.alert_rows = int(
            await session.scalar(
                select(func.count()).where(
                    Outbox.kind == "absence",
                    Outbox.dedupe_key.like(f"{setup.school_id}:absence:%"),
                )
            )
            or 0
        )
    return found


# ---------------------------------------------------------------------------------------------
# The rolls through the handler


async def run_handler(
    db: Database, url: str, setup: Setup, days: Sequence[dt.date], *, seed: int = 2
) -> JSON:
    """`/attendance` and the submit press through `Application.process_update`."""
    import handlers.teacher.attendance as screen
    from bot.app import build_application
    from bot.config import Secret, Settings
    from tests.harness import FakeUser, RecordingRequest

    rng = random.Random(seed)
    request = RecordingRequest()
    settings = Settings(
        token=Secret("123456:BENCH-ATTENDANCE"), database_url=url, delivery=False, limits=False
    )
    app = build_application(settings, request=request, db=db)
    await app.initialize()
    teacher = FakeUser(app, request, setup.teacher_telegram_id)
    clock = [at_local(days[0], dt.time(17, 5))]
    original = screen.utcnow
    screen.utcnow = lambda: clock[0]  # type: ignore[assignment]
    listed_s: list[float] = []
    opened_s: list[float] = []
    submitted_s: list[float] = []
    failures: list[str] = []
    try:
        for day in days:
            await file_leave(db, setup, day, rng)
            clock[0] = at_local(day, dt.time(17, 5))
            started = time.perf_counter()
            shown = await teacher.send("/attendance")
            listed_s.append(time.perf_counter() - started)
            roll_call = _with(shown, "at:s:")
            if roll_call is None:  # the day's list (a head teacher sees their class's too)
                listed = _with(shown, f"at:o:{setup.course_id}:")
                if listed is None:
                    failures.append(f"{day}: /attendance showed neither the roll nor the course")
                    continue
                data = next(d for d in _data(listed) if d.startswith(f"at:o:{setup.course_id}:"))
                started = time.perf_counter()
                shown = await teacher.press(data, listed)
                opened_s.append(time.perf_counter() - started)
                roll_call = _with(shown, "at:s:")
            if roll_call is None:
                failures.append(f"{day}: the roll did not open")
                continue
            taps = [b["callback_data"] for b in roll_call.buttons()
                    if b.get("callback_data", "").startswith("at:t:")]  # fmt: skip
            for data in rng.sample(taps, min(2, len(taps))):  # one tap: present → absent
                await teacher.press(data, roll_call)
                await teacher.press(data, roll_call)
            last = request.sent_to(teacher.id)[-1]
            rest = next((b["callback_data"] for b in last.buttons()
                         if b.get("callback_data", "").startswith("at:a:")), None)  # fmt: skip
            if rest:
                await teacher.press(rest, last)
                last = request.sent_to(teacher.id)[-1]
            submit = next(b["callback_data"] for b in last.buttons()
                          if b.get("callback_data", "").startswith("at:s:"))  # fmt: skip
            started = time.perf_counter()
            said = await teacher.press(submit, last)
            submitted_s.append(time.perf_counter() - started)
            if not any("✅" in c.text and c.method.startswith("edit") for c in said):
                failures.append(f"{day}: the submit showed no saved roll")
    finally:
        screen.utcnow = original  # type: ignore[assignment]
        await app.shutdown()
    return {
        "/attendance": spread(listed_s),
        "open press": spread(opened_s),
        "submit press": spread(submitted_s),
        "failures": failures,
    }


def _data(call: Any) -> list[str]:
    return [str(b.get("callback_data", "")) for b in call.buttons()]


def _with(calls: Sequence[Any], prefix: str) -> Any:
    """The last call with a button whose data starts with `prefix`."""
    return next((c for c in reversed(calls) if any(d.startswith(prefix) for d in _data(c))), None)


# ---------------------------------------------------------------------------------------------
# A run on one database


@contextlib.asynccontextmanager
async def postgres(database_url: str | None) -> AsyncIterator[str]:
    """The URL given, or a throwaway cluster's fresh database (tests/pg.py)."""
    if database_url:
        yield database_url
        return
    import asyncpg

    from tests import pg

    with pg.cluster() as server:
        conn = await asyncpg.connect(server.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute("CREATE DATABASE kehou_bench")
        finally:
            await conn.close()
        yield server.rsplit("/", 1)[0] + "/kehou_bench"


async def one_backend(url: str, args: argparse.Namespace) -> JSON:
    await upgrade_async(url)
    db = Database(url)
    try:
        started = time.perf_counter()
        school = await build(db, args.students, seed=args.seed)
        built = time.perf_counter() - started
        total = 3 + args.rolls + args.handler_rolls
        setup = await pick_course(db, school, args.size, total)
        say(
            f"{args.students:,} students ready in {built:.0f} s; {setup.course}: "
            f"{len(setup.children)} children, {len(setup.days)} school days"
        )
        if len(setup.days) < total:
            raise SystemExit(f"only {len(setup.days)} school days found, {total} wanted")
        statements = Statements(db)
        warm = setup.days[:3]
        await run_rolls(db, setup, warm, seed=0)  # warm-up: caches, statement compilation
        found = await run_rolls(
            db,
            setup,
            setup.days[3 : 3 + args.rolls],
            seed=args.seed,
            statements=statements,
            progress=say,
        )
        handler = None
        if args.handler_rolls:
            handler = await run_handler(db, url, setup, setup.days[-args.handler_rolls :])
        async with db.transaction() as session:
            marks = await session.scalar(select(func.count()).select_from(AttendanceMark))
            outbox_rows = await session.scalar(select(func.count()).select_from(Outbox))
        return {
            "backend": db.engine.dialect.name,
            "students": args.students,
            "build_s": built,
            "children": len(setup.children),
            "course": setup.course,
            "open": spread(found.open_s),
            "submit": spread(found.submit_s),
            "open+submit": spread(found.both_s),
            "rolls": found.saved,
            "alerts": found.alerts,
            "alert_rows": found.alert_rows,
            "flagged": found.flagged,
            "failures": found.failures + (handler["failures"] if handler else []),
            "statements": statements.summary(),
            "handler": handler,
            "marks_after": marks,
            "outbox_after": outbox_rows,
        }
    finally:
        await db.dispose()


def report(results: list[JSON], args: argparse.Namespace) -> str:
    lines = [
        f"{dt.date.today()}, Python {sys.version.split()[0]}, {os.cpu_count()} cores; "
        f"{args.students:,} students, a roll of {results[0]['children']} children, "
        f"{args.rolls} rolls (+3 warm-up), {args.handler_rolls} through the handler",
        "",
        "| backend | step | p50 | p95 | p99 | max | statements | SQL per call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for step in ("open", "submit", "open+submit"):
            s = r[step]
            st = r["statements"].get(step)
            lines.append(
                f"| {r['backend']} | {step} | {s['p50']:.1f} ms | {s['p95']:.1f} ms | "
                f"{s['p99']:.1f} ms | {s['max']:.1f} ms | "
                + (f"{st['statements']:.1f} | {st['sql_ms']:.1f} ms |" if st else "— | — |")
            )
        if r["handler"]:
            for step in ("/attendance", "open press", "submit press"):
                s = r["handler"][step]
                if not s["n"]:
                    continue
                lines.append(
                    f"| {r['backend']} | handler {step} | {s['p50']:.1f} ms | {s['p95']:.1f} ms | "
                    f"{s['p99']:.1f} ms | {s['max']:.1f} ms | — | — |"
                )
    lines += ["", "| backend | rolls saved | children alerted | alert rows | flagged | failures |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['rolls']} | {r['alerts']} | {r['alert_rows']} | "
            f"{r['flagged']} | {len(r['failures'])} |"
        )
    lines += ["", "Longest statements (mean ms × statements per call):", ""]
    for r in results:
        for step in ("open", "submit"):
            st = r["statements"].get(step)
            if st:
                top = "; ".join(f"`{sql}` {ms:.2f} ms × {n:.1f}" for sql, ms, n in st["top"])
                lines.append(f"- {r['backend']} {step}: {top}")
    lines += ["", f"Target: p99 of each step < {TARGET_MS:.0f} ms."]
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[JSON]:
    results = []
    if args.backend in ("sqlite", "both") and not args.database_url:
        workdir = Path(tempfile.mkdtemp(prefix="kehou-bench-attendance-"))
        try:
            results.append(await one_backend(f"sqlite+aiosqlite:///{workdir}/bench.sqlite3", args))
            say(json.dumps(results[-1], ensure_ascii=False, default=str))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.backend in ("postgresql", "both") or args.database_url:
        async with postgres(args.database_url) as url:
            results.append(await one_backend(url, args))
            say(json.dumps(results[-1], ensure_ascii=False, default=str))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=50, help="children on the roll (50)")
    parser.add_argument("--rolls", type=int, default=200, help="through the services (200)")
    parser.add_argument("--handler-rolls", type=int, default=30, help="through the handler (30)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--database-url", help="a PostgreSQL database to use (empty)")
    parser.add_argument("--seed", type=int, default=big.SEED)
    parser.add_argument("--quick", action="store_true", help="1,000 students, 20 + 5 rolls")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.students, args.rolls, args.handler_rolls = 1_000, 20, 5
    results = asyncio.run(bench(args))
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str))
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
