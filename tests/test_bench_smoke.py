"""The benchmarks of issue 12 (bench/attendance.py, bench/absence_alert.py, bench/evening.py)
at a tiny size on SQLite, so the scripts do not rot: each one's core does what it claims."""

from __future__ import annotations

import argparse
import importlib
import shutil
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import (
    AttendanceMark,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Outbox,
    OutboxStatus,
    Session,
    Student,
    User,
)

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    """bench/ has no __init__: a namespace package from the repository's root (which the
    sandbox's child process, spawned, can import again)."""
    assert (BENCH / f"{name}.py").exists()
    return importlib.import_module(f"bench.{name}")


@pytest.fixture
async def sqlite_db(templates: dict[str, str], tmp_path: Path) -> Any:
    path = tmp_path / "bench.sqlite3"
    shutil.copyfile(templates["sqlite"], path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.dispose()


async def guardians_with_chat(db: Database, student_ids: list[int]) -> Counter[int]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Guardianship.student_id)
            .join(User, User.id == Guardianship.user_id)
            .where(Guardianship.student_id.in_(student_ids), User.chat_id.is_not(None))
        )
        return Counter(student_id for (student_id,) in rows.all())


async def test_sqlite_attendance_bench_saves_rolls_and_enqueues_one_alert_per_guardian(
    sqlite_db: Database,
) -> None:
    bench = load("attendance")
    school = await bench.build(sqlite_db, 30)
    setup = await bench.pick_course(sqlite_db, school, 50, 4)
    assert len(setup.children) >= 3 and len(setup.days) == 4
    found = await bench.run_rolls(sqlite_db, setup, setup.days[:3])
    assert found.failures == []
    assert found.saved == 3 and len(found.open_s) == len(found.submit_s) == 3
    async with sqlite_db.transaction() as session:
        submitted = await session.scalar(
            select(func.count()).where(
                Session.course_id == setup.course_id, Session.roll_submitted_at.is_not(None)
            )
        )
        alerted = list(
            await session.scalars(
                select(AttendanceMark.student_id).where(AttendanceMark.alerted.is_(True))
            )
        )
        marked = await session.scalar(
            select(func.count(func.distinct(AttendanceMark.student_id))).where(
                AttendanceMark.session_id.in_(
                    select(Session.id).where(Session.course_id == setup.course_id)
                )
            )
        )
    assert submitted == 3
    assert marked == len(setup.children)  # every child on the roll got a mark
    assert len(alerted) == found.alerts > 0
    per_child = await guardians_with_chat(sqlite_db, alerted)
    assert found.alert_rows == sum(per_child[s] for s in alerted)  # one alert per guardian

    handled = await bench.run_handler(sqlite_db, str(sqlite_db.engine.url), setup, setup.days[3:])
    assert handled["failures"] == []
    assert handled["submit press"]["n"] == 1


async def test_sqlite_evening_bench_queues_one_digest_per_guardian_naming_their_children(
    sqlite_db: Database,
) -> None:
    bench = load("evening")
    school = await bench.rolls.build(sqlite_db, 30)
    photos = ["photo-a", "photo-b", "photo-c", "photo-d"]
    day = await bench.the_day(sqlite_db, school, photos, updates=1.0, with_photos=1.0)
    assert day["rolls"] == day["sessions"] > 0
    seconds, built = await bench.build_digest(
        sqlite_db, school.report.school_id, day["day"], bench.utcnow()
    )
    rows = await bench.digest_rows(sqlite_db)
    async with sqlite_db.transaction() as session:
        today = (
            select(Enrolment.student_id)
            .join(Session, Session.course_id == Enrolment.course_id)
            .where(Session.date == day["day"], Enrolment.status == EnrolmentStatus.ENROLLED)
        )
        expected = (
            await session.execute(
                select(User.id, Student.name)
                .join(Guardianship, Guardianship.user_id == User.id)
                .join(Student, Student.id == Guardianship.student_id)
                .where(User.chat_id.is_not(None), Student.id.in_(today))
            )
        ).all()
        texts = dict(
            (
                await session.execute(
                    select(Outbox.user_id, Outbox.text).where(
                        Outbox.kind == "evening", Outbox.status == OutboxStatus.PENDING
                    )
                )
            ).all()
        )
    assert seconds > 0
    # One message per guardian of a child at school today, naming each such child.
    assert built.families == rows["rows"] == rows["guardians"] == len({u for u, _ in expected})
    assert set(texts) == {u for u, _ in expected}
    assert all(name in (texts[user] or "") for user, name in expected)
    assert rows["attachments"]["album"] + rows["attachments"]["photo"] > 0  # the updates' photos


def test_sqlite_absence_alert_bench_delivers_each_alert_during_a_broadcast() -> None:
    bench = load("absence_alert")
    args = argparse.Namespace(
        students=30,
        recipients=60,
        alerts=2,
        every=0.5,
        lead=0.5,
        database_url=None,
        seed=bench.big.SEED,
    )
    import asyncio

    result = asyncio.run(bench.run(args))
    assert result["failures"] == []
    assert result["delivered"]["n"] == 2 and result["outbox_sent"]["n"] == 2
    assert result["delivered"]["max"] < bench.TARGET_S * 1000
    assert result["messages_per_s"] > 0  # the broadcast was going out meanwhile


def test_sqlite_fees_bench_bills_every_child_and_matches_the_file(tmp_path: Path) -> None:
    """bench/fees.py at 200 students: every row of the file is paid, partial or unmatched, and
    the file has exactly the rows asked for."""
    import asyncio

    fees_bench = load("fees")
    result = asyncio.run(fees_bench.run(f"sqlite+aiosqlite:///{tmp_path / 'fees.db'}", 200, 250))
    assert result["bills"] > 0 and result["lines"] >= result["bills"]
    assert result["rows"] == 250
    assert result["outbox_rows"] > 0
