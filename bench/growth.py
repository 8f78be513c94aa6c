"""Benchmark: the term's growth records (课后成长档案) of a school of 3,000 children, built and
rendered as PDFs, with time and peak memory.

    .venv/bin/python bench/growth.py                    # 3,000 students, SQLite
    .venv/bin/python bench/growth.py --students 300     # a smoke run
    .venv/bin/python bench/growth.py --database-url postgresql+asyncpg://…/kehou_bench

The school is made by the generator (`bot.demo.big.build_school`: the demo school's courses,
children signed up through the sign-up service). Not timed: every course of the term gets
`--sessions` dated sessions with a roll (most children present, some absent, late or on
leave), and every child two teachers' notes. Then, timed:

- **build**: `growth.records(session, term_id)`, every child's record in one call (a fixed
  number of statements, whatever the number of children);
- **render**: `growth.render_pdf(record, t)` for each, in Chinese, with the embedded font;
- **release**: `growth.release(...)` (the compare-and-set, the notes, one outbox row per
  guardian in one INSERT), with its commit.

Peak memory is the process's resident set high-water mark (VmHWM), reset before each step
through /proc/self/clear_refs where Linux allows it, and tracemalloc's peak of Python
allocations while rendering a sample of 50 (untimed: tracemalloc slows it about tenfold).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, update  # noqa: E402

from bench.measure import peak_mb, reset_peak, say  # noqa: E402
from bot.demo import big  # noqa: E402
from bot.i18n import I18n  # noqa: E402
from bot.services import attendance, fonts, growth  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    AttendanceMark,
    Course,
    Enrolment,
    EnrolmentStatus,
    GrowthNote,
    Outbox,
    Session,
    Term,
    utcnow,
)

TRACED = 50  # records rendered again under tracemalloc
NOTES = ("主动帮助同学完成实验", "作品在班级展示，表达清楚", "课堂专注，进步明显")


async def roll_and_notes(db: Database, school_id: int, term_id: int, sessions: int) -> int:
    """`sessions` rolls of every course of the term, two notes per child; returns the marks."""
    rng = random.Random(14)
    async with db.transaction() as session:
        await attendance.codes(session, school_id)  # seeds the school's codes
        term = await session.get(Term, term_id)
        assert term is not None
        courses = (
            await session.execute(
                select(Course.id, Course.starts_at, Course.ends_at, Course.venue).where(
                    Course.term_id == term_id, Course.cancelled_at.is_(None)
                )
            )
        ).all()
        places = (
            await session.execute(
                select(Enrolment.course_id, Enrolment.student_id).where(
                    Enrolment.school_id == school_id, Enrolment.status == EnrolmentStatus.ENROLLED
                )
            )
        ).all()
        step = max(1, (term.ends_on - term.starts_on).days // (sessions + 1))
        dates = [term.starts_on + dt.timedelta(days=step * (n + 1)) for n in range(sessions)]
        session_rows = [
            {
                "school_id": school_id,
                "course_id": course_id,
                "date": day,
                "starts_at": starts,
                "ends_at": ends,
                "venue": venue,
                "roll_version": 1,
            }
            for course_id, starts, ends, venue in courses
            for day in dates
        ]
        await session.execute(insert(Session), session_rows)
        ids = {
            (c, d): i
            for i, c, d in (
                await session.execute(
                    select(Session.id, Session.course_id, Session.date).where(
                        Session.school_id == school_id
                    )
                )
            ).all()
        }
        children: dict[int, list[int]] = {}
        for course_id, student_id in places:
            children.setdefault(course_id, []).append(student_id)
        now = utcnow()
        marks = []
        for (course_id, _day), session_id in ids.items():
            for student_id in children.get(course_id, ()):
                code = rng.choices(("present", "absent", "late", "leave"), weights=(90, 3, 4, 3))[
                    0
                ]
                marks.append(
                    {
                        "school_id": school_id,
                        "session_id": session_id,
                        "student_id": student_id,
                        "code": code,
                        "source": "roll",
                        "alerted": False,
                        "created_at": now,
                    }
                )
        for start in range(0, len(marks), 20_000):
            await session.execute(insert(AttendanceMark), marks[start : start + 20_000])
        pupils = sorted({s for _, s in places})
        await session.execute(
            insert(GrowthNote),
            [
                {
                    "school_id": school_id,
                    "term_id": term_id,
                    "student_id": student_id,
                    "text": rng.choice(NOTES),
                    "created_at": now - dt.timedelta(days=n * 20),
                }
                for student_id in pupils
                for n in range(2)
            ],
        )
    return len(marks)


async def run(url: str, students: int, sessions: int) -> dict[str, float]:
    await upgrade_async(url)
    db = Database(url)
    try:
        school = await big.build_school(db, students, progress=say)
        school_id = school.report.school_id
        async with db.transaction() as session:
            term_id = await session.scalar(select(Term.id).where(Term.school_id == school_id))
            assert term_id is not None
            # A term that has run its course: the rolls fall inside it.
            today = dt.date.today()
            await session.execute(
                update(Term)
                .where(Term.id == term_id)
                .values(starts_on=today - dt.timedelta(days=140), ends_on=today)
            )
        marks = await roll_and_notes(db, school_id, term_id, sessions)
        say(f"wrote {marks:,} attendance marks and two notes a child")
        t = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
        say(f"font: {fonts.cjk_font() or 'none (CID fallback)'}")

        reset_peak()
        started = time.perf_counter()
        async with db.transaction() as session:
            found = await growth.records(session, term_id)
        build_s = time.perf_counter() - started
        build_mb = peak_mb()
        say(f"built {len(found):,} records in {build_s:.2f} s")

        reset_peak()
        started = time.perf_counter()
        size = 0
        for record in found:
            size += len(growth.render_pdf(record, t))
        render_s = time.perf_counter() - started
        render_mb = peak_mb()
        say(f"rendered {len(found):,} PDFs ({size / 2**20:.1f} MB) in {render_s:.2f} s")
        # tracemalloc slows rendering about tenfold, so it watches a sample, untimed.
        tracemalloc.start()
        for record in found[:TRACED]:
            growth.render_pdf(record, t)
        traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

        reset_peak()
        started = time.perf_counter()
        async with db.transaction() as session:
            queued = await growth.release(session, school_id, term_id, utcnow())
        release_s = time.perf_counter() - started
        release_mb = peak_mb()
        async with db.transaction() as session:
            rows = await session.scalar(
                select(func.count()).select_from(Outbox).where(Outbox.kind == growth.KIND)
            )
        assert rows == queued
        say(f"released: {queued:,} messages queued in {release_s:.2f} s")
        return {
            "students": students,
            "records": len(found),
            "marks": marks,
            "build_s": build_s,
            "build_peak_mb": build_mb,
            "render_s": render_s,
            "render_peak_mb": render_mb,
            "render_traced_mb": traced_mb,
            "pdf_kb": size / max(1, len(found)) / 1024,
            "messages": queued,
            "release_s": release_s,
            "release_peak_mb": release_mb,
        }
    finally:
        await db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=20, help="rolls of each course")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        r = asyncio.run(run(url, args.students, args.sessions))
    total = r["build_s"] + r["render_s"]
    print(
        "| students | records | marks | build | render | build + render | PDF size | "
        "render peak RSS | traced peak (50) | release (messages) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {r['students']:,} | {int(r['records']):,} | {int(r['marks']):,} | "
        f"{r['build_s']:.2f} s | {r['render_s']:.2f} s | {total:.2f} s | "
        f"{r['pdf_kb']:.0f} KB | {r['render_peak_mb']:.0f} MB | {r['render_traced_mb']:.0f} MB | "
        f"{r['release_s']:.2f} s ({int(r['messages']):,}) |"
    )
    return 0 if total < 60 else 1


if __name__ == "__main__":
    raise SystemExit(main())
