"""Benchmark: the admin reports of a school of 3,000 children, and the district export over
100,000 children on PostgreSQL, with time and peak memory.

    .venv/bin/python bench/reports.py school                       # 3,000 students, SQLite
    .venv/bin/python bench/reports.py school --students 300        # a smoke run
    .venv/bin/python bench/reports.py district                     # 100,000, throwaway PG
    .venv/bin/python bench/reports.py district --database-url postgresql+asyncpg://…/db

**school**: the school is made by the generator (`bot.demo.big.build_school`: classes, courses
of both periods, children signed up through the sign-up service), then, in bulk, six weeks of
rolls (a session per course and day, a mark per enrolled child: 90 % present, 5 % absent, 5 %
on leave) and term-end ballots from 40 % of the families, the window closed. Timed: every report
of the term (`reports.term_report`), each report's CSV and XLSX, and the three charts; peak
memory is the process's resident high-water mark (VmHWM) reset before the step.

**district**: `--students` children over schools of 3,000 (grades 1–6, classes of 45, a
homework course per grade every day and six period-2 courses per grade, 92 % in homework help
and two period-2 courses each), four weeks of rolls and ballots, seeded with INSERT … SELECT
(PostgreSQL only). Timed: `kehou export --district out.xlsx` (and `.csv`) in its own process,
with that process's peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bench.measure import peak_mb, reset_peak, say  # noqa: E402
from bot.i18n import I18n  # noqa: E402
from bot.services import reports, sheets  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    AttendanceMark,
    Ballot,
    Course,
    Enrolment,
    EnrolmentStatus,
    School,
    Session,
    Student,
    Term,
    utcnow,
)

SCHOOL_TARGET_S, DISTRICT_TARGET_S, DISTRICT_TARGET_MB = 5.0, 60.0, 500.0


# --- a school of 3,000 ------------------------------------------------------------------------


async def add_rolls_and_ballots(db: Database, school_id: int, weeks: int) -> dict[str, int]:
    """Six weeks (or `weeks`) of rolls and the term's ballots, written in bulk (executemany)."""
    from bot.services import attendance, catalogue
    from bot.services.leaves import sessions_on

    async with db.transaction() as session:
        await attendance.codes(session, school_id)
        term = (await session.scalars(select(Term).where(Term.school_id == school_id))).first()
        assert term is not None
        found = await catalogue.of(session, school_id)
        courses = [c for c in found.of_term(term.id) if c.cancelled_at is None]
        enrolled: dict[int, list[int]] = {}
        for course_id, student_id in await session.execute(
            select(Enrolment.course_id, Enrolment.student_id).where(
                Enrolment.school_id == school_id, Enrolment.status == EnrolmentStatus.ENROLLED
            )
        ):
            enrolled.setdefault(course_id, []).append(student_id)
        term.rating_closed_at = utcnow()
        term_id, first = term.id, term.starts_on
    days = [first + dt.timedelta(days=n) for n in range(weeks * 7)]
    rows = []
    for day in days:
        for course in sessions_on(found, courses, day):
            rows.append(
                {
                    "school_id": school_id,
                    "course_id": course.id,
                    "date": day,
                    "starts_at": course.starts_at,
                    "ends_at": course.ends_at,
                    "venue": course.venue,
                    "teacher_id": course.teacher_id,
                    "roll_submitted_at": utcnow(),
                }
            )
    async with db.transaction() as session:
        await session.execute(Session.__table__.insert(), rows)
        held = (
            await session.execute(
                select(Session.id, Session.course_id).where(Session.school_id == school_id)
            )
        ).all()
    codes = ["present"] * 18 + ["absent", "leave"]
    marks = [
        {
            "school_id": school_id,
            "session_id": session_id,
            "student_id": student_id,
            "code": codes[(session_id * 7 + student_id) % 20],
            "source": "roll",
            "alerted": False,
            "created_at": utcnow(),
        }
        for session_id, course_id in held
        for student_id in enrolled.get(course_id, ())
    ]
    async with db.transaction() as session:
        for start in range(0, len(marks), 20_000):
            await session.execute(AttendanceMark.__table__.insert(), marks[start : start + 20_000])
    turnout, ballots = [], []
    for course_id, children in enrolled.items():
        for n, student_id in enumerate(children):
            turnout.append(
                {
                    "term_id": term_id,
                    "course_id": course_id,
                    "student_id": student_id,
                    "school_id": school_id,
                    "done": n % 5 < 2,
                }
            )
            if n % 5 < 2:
                ballots.append(
                    {
                        "token": f"b{course_id}-{student_id}",
                        "school_id": school_id,
                        "term_id": term_id,
                        "course_id": course_id,
                        "content": 3 + (student_id % 3),
                        "teaching": 2 + (student_id % 4),
                        "safety": 4 + (student_id % 2),
                        "again": ("yes", "unsure", "no")[student_id % 3],
                        "face": "happy",
                    }
                )
    from storage.models import RatingTurnout

    async with db.transaction() as session:
        await session.execute(RatingTurnout.__table__.insert(), turnout)
        await session.execute(Ballot.__table__.insert(), ballots)
    return {"sessions": len(rows), "marks": len(marks), "ballots": len(ballots)}


async def school_reports(db: Database, school_id: int) -> dict[str, Any]:
    """term_report, then each report's CSV and XLSX, then the charts: time and peak memory."""
    t = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
    async with db.transaction() as session:
        school = await session.get(School, school_id)
        term = (await session.scalars(select(Term).where(Term.school_id == school_id))).first()
        assert school is not None and term is not None
    reset_peak()
    started = time.perf_counter()
    async with db.transaction() as session:
        built = await reports.term_report(session, school, term, t)
    report_s = time.perf_counter() - started
    report_mb = peak_mb()
    reset_peak()
    started = time.perf_counter()
    sizes = {"csv": 0, "xlsx": 0}
    for report in built:
        for sheet in report.sheets:
            sizes["csv"] += len(sheets.write_csv(sheet.header, sheet.rows))
        sizes["xlsx"] += len(sheets.write_xlsx(report.sheets))
    files_s = time.perf_counter() - started
    files_mb = peak_mb()
    reset_peak()
    started = time.perf_counter()
    charts = [r.chart() for r in built if r.chart is not None]
    charts_s = time.perf_counter() - started
    return {
        "term_report_s": report_s,
        "term_report_peak_mb": report_mb,
        "files_s": files_s,
        "files_peak_mb": files_mb,
        "charts_peak_mb": peak_mb(),
        "charts": len(charts),
        "charts_s": charts_s,
        "rows": sum(len(list(s.rows)) for r in built for s in r.sheets),
        "csv_kb": sizes["csv"] / 1024,
        "xlsx_kb": sizes["xlsx"] / 1024,
        "summaries": {r.key: r.summary for r in built},
    }


async def run_school(url: str, students: int, weeks: int = 6) -> dict[str, Any]:
    from bot.demo import big

    await upgrade_async(url)
    db = Database(url)
    try:
        made = await big.build_school(db, students, progress=say)
        school_id = made.report.school_id
        started = time.perf_counter()
        seeded = await add_rolls_and_ballots(db, school_id, weeks)
        say(f"seeded {seeded} in {time.perf_counter() - started:.1f} s")
        result = await school_reports(db, school_id)
        return {"students": students, **seeded, **result}
    finally:
        await db.dispose()


# --- the district ------------------------------------------------------------------------------

PER_SCHOOL = 3000
CLASS_SIZE = 45
GRADES = 6
# slot 0: homework help every day; 1–6: period 2 (category, weekday mask)
SLOTS = [
    ("homework", 31, "15:30", "16:30"),
    ("science", 1, "16:40", "17:40"),
    ("sports", 7, "16:40", "17:40"),
    ("arts", 8, "16:40", "17:40"),
    ("reading", 2, "16:40", "17:40"),
    ("labour", 16, "16:40", "17:40"),
    ("sports", 16, "16:40", "17:40"),
]


async def seed_district(db: Database, students: int, weeks: int) -> dict[str, int]:
    """Schools of 3,000 children with a term of rolls and ballots, in bulk (PostgreSQL)."""
    schools = max(1, -(-students // PER_SCHOOL))
    first = dt.date(2026, 9, 7)  # a Monday
    closed = utcnow()
    async with db.transaction() as session:
        for n in range(schools):
            size = min(PER_SCHOOL, students - n * PER_SCHOOL)
            school = School(code=f"S{n:03d}", name=f"第{n + 1}实验学校")
            session.add(school)
            await session.flush()
            term = Term(
                school_id=school.id,
                name="2026秋季学期",
                starts_on=first,
                ends_on=dt.date(2027, 1, 22),
                rating_closed_at=closed,
            )
            session.add(term)
            await session.flush()
            classes = max(GRADES, size // CLASS_SIZE)
            await session.execute(
                text(
                    "INSERT INTO classes (school_id, code, grade, name, group_updates) "
                    "SELECT :s, 'C' || g, 1 + g % 6, "
                    "(1 + g % 6) || '年级' || (1 + g / 6) || '班', false "
                    "FROM generate_series(0, :n - 1) g"
                ),
                {"s": school.id, "n": classes},
            )
            await session.execute(
                text(
                    "INSERT INTO teachers (school_id, code, name, kind, credentials_checked) "
                    "VALUES (:s, 'T1', '王老师', 'staff', true)"
                ),
                {"s": school.id},
            )
            await session.execute(
                text(
                    "INSERT INTO students (school_id, class_id, student_no, name, active) "
                    "SELECT :s, c.id, 'N' || i, '学生' || i, true "
                    "FROM generate_series(0, :n - 1) i "
                    "JOIN classes c ON c.school_id = :s AND c.code = 'C' || (i % :k)"
                ),
                {"s": school.id, "n": size, "k": classes},
            )
            for grade in range(1, GRADES + 1):
                for slot, (category, days, start, end) in enumerate(SLOTS):
                    await session.execute(
                        text(
                            "INSERT INTO courses (school_id, term_id, code, name, category, "
                            "period, grade_min, grade_max, weekdays, starts_at, ends_at, venue, "
                            "teacher_id, capacity, allocation) SELECT :s, :t, :code, :name, "
                            ":cat, :period, :g, :g, :days, :a, :b, "
                            "'教室', id, 400, 'first_come' FROM teachers WHERE school_id = :s"
                        ),
                        {
                            "s": school.id,
                            "t": term.id,
                            "code": f"G{grade}-{slot}",
                            "name": f"{grade}年级{category}{slot}",
                            "cat": category,
                            "period": 1 if slot == 0 else 2,
                            "g": grade,
                            "days": days,
                            "a": dt.time.fromisoformat(start),
                            "b": dt.time.fromisoformat(end),
                        },
                    )
        # Every school's codes, enrolments, sessions, marks and ballots, set-wise.
        for spec in (
            ("present", True, 1),
            ("absent", False, 2),
            ("late", True, 3),
            ("leave", False, None),
            ("early", True, None),
        ):
            await session.execute(
                text(
                    "INSERT INTO attendance_codes (school_id, code, emoji, label, words, "
                    "present, alerts, cycle, position) SELECT id, :c, '', :c, '[]', :p, false, "
                    ":y, 0 FROM schools"
                ),
                {"c": spec[0], "p": spec[1], "y": spec[2]},
            )
        await session.execute(
            text(
                "INSERT INTO enrolments (school_id, student_id, course_id, status, created_at, "
                "updated_at) SELECT s.school_id, s.id, c.id, 'enrolled', now(), now() "
                "FROM students s JOIN classes k ON k.id = s.class_id "
                "JOIN courses c ON c.school_id = s.school_id AND c.grade_min = k.grade AND "
                "(c.code = 'G' || k.grade || '-0' AND s.id % 13 <> 0 "
                " OR c.code = 'G' || k.grade || '-' || (1 + s.id % 6) "
                " OR c.code = 'G' || k.grade || '-' || (1 + (s.id + 3) % 6))"
            )
        )
        await session.execute(
            text(
                "INSERT INTO sessions (school_id, course_id, date, starts_at, ends_at, venue, "
                "status, teacher_id, roll_submitted_at, roll_version) "
                "SELECT c.school_id, c.id, d::date, c.starts_at, c.ends_at, c.venue, "
                "'scheduled', c.teacher_id, now(), 1 FROM courses c "
                "CROSS JOIN generate_series(CAST(:a AS DATE), CAST(:b AS DATE), '1 day') d "
                "WHERE extract(isodow FROM d) <= 5 "
                "AND (c.weekdays & (1 << (extract(isodow FROM d)::int - 1))) <> 0"
            ),
            {"a": first, "b": first + dt.timedelta(days=7 * weeks - 1)},
        )
        await session.execute(
            text(
                "INSERT INTO attendance_marks (school_id, session_id, student_id, code, source, "
                "alerted, created_at) SELECT e.school_id, x.id, e.student_id, "
                "CASE (x.id * 7 + e.student_id) % 20 WHEN 0 THEN 'absent' WHEN 1 THEN 'leave' "
                "ELSE 'present' END, 'roll', false, now() "
                "FROM sessions x JOIN enrolments e ON e.course_id = x.course_id"
            )
        )
        await session.execute(
            text(
                "INSERT INTO rating_turnout (term_id, course_id, student_id, school_id, done) "
                "SELECT c.term_id, e.course_id, e.student_id, e.school_id, e.student_id % 5 < 2 "
                "FROM enrolments e JOIN courses c ON c.id = e.course_id"
            )
        )
        await session.execute(
            text(
                "INSERT INTO ballots (token, school_id, term_id, course_id, content, teaching, "
                "safety, again, face) SELECT md5(e.student_id || '-' || e.course_id), "
                "e.school_id, c.term_id, e.course_id, 3 + e.student_id % 3, "
                "2 + e.student_id % 4, 4 + e.student_id % 2, "
                "(ARRAY['yes','unsure','no'])[1 + e.student_id % 3], 'happy' "
                "FROM enrolments e JOIN courses c ON c.id = e.course_id "
                "WHERE e.student_id % 5 < 2"
            )
        )
    async with db.transaction() as session:
        await session.execute(text("ANALYZE"))
        counted = {
            "schools": await session.scalar(select(func.count()).select_from(School)),
            "students": await session.scalar(select(func.count()).select_from(Student)),
            "courses": await session.scalar(select(func.count()).select_from(Course)),
            "enrolments": await session.scalar(select(func.count()).select_from(Enrolment)),
            "marks": await session.scalar(select(func.count()).select_from(AttendanceMark)),
            "ballots": await session.scalar(select(func.count()).select_from(Ballot)),
        }
    return {k: int(v or 0) for k, v in counted.items()}


def export_in_process(url: str, out: Path) -> dict[str, float]:
    """`kehou export --district out` in its own process: wall time and its peak memory."""
    script = (
        "import resource, sys\n"
        "from bot.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "raise SystemExit(rc)\n"
    )
    env = {**os.environ, "KEHOU_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, "export", "--district", str(out)],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"kehou export failed:\n{done.stderr}")
    peak = next(
        int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK")
    )
    return {"seconds": seconds, "peak_mb": peak / 1024, "bytes": out.stat().st_size}


async def run_district(url: str, students: int, weeks: int, folder: Path) -> dict[str, Any]:
    await upgrade_async(url)
    db = Database(url)
    try:
        started = time.perf_counter()
        seeded = await seed_district(db, students, weeks)
        seed_s = time.perf_counter() - started
        say(f"seeded {seeded} in {seed_s:.1f} s")
    finally:
        await db.dispose()
    xlsx = export_in_process(url, folder / "district.xlsx")
    csv = export_in_process(url, folder / "district.csv")
    return {**seeded, "seed_s": seed_s, "xlsx": xlsx, "csv": csv}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["school", "district"])
    parser.add_argument("--students", type=int)
    parser.add_argument("--weeks", type=int)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if args.what == "school":
            url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
            r = asyncio.run(run_school(url, args.students or 3000, args.weeks or 6))
            print(
                "| students | marks | ballots | term_report | peak RSS | CSV + XLSX | peak RSS | "
                "charts | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n"
                f"| {r['students']:,} | {r['marks']:,} | {r['ballots']:,} | "
                f"{r['term_report_s']:.2f} s | {r['term_report_peak_mb']:.0f} MB | "
                f"{r['files_s']:.2f} s ({r['rows']:,} rows) | {r['files_peak_mb']:.0f} MB | "
                f"{r['charts']} in {r['charts_s']:.2f} s | {r['charts_peak_mb']:.0f} MB |"
            )
            ok = r["term_report_s"] < SCHOOL_TARGET_S
        else:
            from tests import pg

            with contextlib.ExitStack() as stack:
                url = args.database_url or stack.enter_context(pg.cluster())
                r = asyncio.run(
                    run_district(url, args.students or 100_000, args.weeks or 4, folder)
                )
            print(
                "| schools | students | enrolments | marks | ballots | seed | export .xlsx | "
                "peak RSS | export .csv | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n"
                f"| {r['schools']} | {r['students']:,} | {r['enrolments']:,} | {r['marks']:,} | "
                f"{r['ballots']:,} | {r['seed_s']:.0f} s | {r['xlsx']['seconds']:.1f} s | "
                f"{r['xlsx']['peak_mb']:.0f} MB | {r['csv']['seconds']:.1f} s | "
                f"{r['csv']['peak_mb']:.0f} MB |"
            )
            ok = all(
                r[k]["seconds"] < DISTRICT_TARGET_S and r[k]["peak_mb"] < DISTRICT_TARGET_MB
                for k in ("xlsx", "csv")
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
