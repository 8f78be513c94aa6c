"""The roll reminder and the daily patrol record, driven through the scheduler ledger with a
chosen clock (never the wall clock): due at start + the school's delay and not before, sent
once across two processes and restarts, silent on a holiday; the record names what is missing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot import jobs, wording
from bot.context import KehouApplication
from bot.i18n import I18n
from bot.services import outbox, patrol
from storage.db import Database
from storage.models import (
    AttendanceMark,
    CalendarDay,
    CalendarKind,
    DailyUpdate,
    JobRun,
    Leave,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    Session,
    SessionStatus,
    Teacher,
)
from tests.factories import SchoolData, add_member
from tests.harness import Call
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
TEACHER, ADMIN, ADMIN_EN, OTHER_TEACHER = 820, 821, 822, 823
MONDAY = dt.date(2026, 12, 7)
I18N = I18n(CST)
ZH, EN = I18N.get("zh_CN"), I18N.get("en")


def at(hour: int, minute: int = 0, day: dt.date = MONDAY) -> dt.datetime:
    """A moment of the school's day (Asia/Shanghai), as UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), CST).astimezone(dt.UTC)


async def lego(db: Database, school: SchoolData) -> int:
    """乐高机器人 on Mondays 16:50–17:50, taught by 王老师, whose account has a chat."""
    teacher_user = await add_member(db, school, TEACHER, {Role.TEACHER})
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher_user)
        )
    return await make_course(
        db,
        school,
        "LEGO",
        name="乐高机器人",
        teacher_id=school.teacher_id,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
    )


async def sent(db: Database, kind: str) -> list[Outbox]:
    async with db.transaction() as session:
        rows = await session.scalars(select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id))
        return list(rows.all())


def read(row: Outbox) -> str:
    """The message as a Chinese reader sees it."""
    if row.template is None:
        return row.text or ""
    return ZH.gettext(row.template).format(**outbox.format_params(row.params or {}, ZH))


async def test_the_roll_reminder_is_due_at_start_plus_fifteen_minutes_and_not_before(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    course = await lego(db, school)
    scheduler = jobs.Scheduler(app.runtime)
    assert not [r for r in await scheduler.tick(at(17, 4)) if r.startswith("roll")]
    assert await sent(db, "roll_reminder") == []

    ran = await scheduler.tick(at(17, 5))
    assert f"roll:{course}:20261207" in ran
    (reminder,) = await sent(db, "roll_reminder")
    assert reminder.chat_id == TEACHER
    assert reminder.priority == Priority.INTERACTIVE
    assert read(reminder) == "《乐高机器人》16:50 开始，还没有点名。"
    assert reminder.buttons == [[{"label": patrol.TAKE_ROLL, "data": "go:attendance"}]]
    assert ZH.gettext(patrol.TAKE_ROLL) == "去点名"
    async with db.transaction() as session:
        row = await session.scalar(select(Session).where(Session.course_id == course))
        assert row is not None and row.roll_reminded_at == at(17, 5)


async def test_two_processes_and_a_restart_remind_once(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    course = await lego(db, school)
    one, two = jobs.Scheduler(app.runtime), jobs.Scheduler(app.runtime)
    await one.tick(at(16, 0))
    await two.tick(at(16, 0))
    # Both processes wake at 17:05 on one database: one claims the run, the other finds it.
    first, second = await asyncio.gather(one.tick(at(17, 5)), two.tick(at(17, 5)))
    assert [*first, *second].count(f"roll:{course}:20261207") == 1
    # Later ticks of both, and a process started afresh after a restart, remind no more.
    for later in (at(17, 6), at(17, 30)):
        assert not [r for r in await one.tick(later) if r.startswith("roll")]
        assert not [r for r in await two.tick(later) if r.startswith("roll")]
    restarted = jobs.Scheduler(app.runtime)
    assert not [r for r in await restarted.tick(at(17, 40)) if r.startswith("roll")]
    assert len(await sent(db, "roll_reminder")) == 1
    async with db.transaction() as session:
        runs = (await session.scalars(select(JobRun).where(JobRun.job.like("roll:%")))).all()
    assert [(r.job, r.outcome) for r in runs] == [(f"roll:{course}:20261207", "reminded")]


async def test_a_missed_reminder_is_sent_after_a_restart_the_same_day(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await lego(db, school)
    await jobs.Scheduler(app.runtime).tick(at(16, 0))
    # Kehou was down from 16:00 to 17:20: the reminder goes out at start, once.
    await jobs.Scheduler(app.runtime).tick(at(17, 20))
    assert len(await sent(db, "roll_reminder")) == 1


async def test_a_reminder_missed_until_night_is_not_sent_at_night(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await lego(db, school)
    await jobs.Scheduler(app.runtime).tick(at(16, 0))
    # Down from 16:00 until 21:30, inside the school's quiet hours (21:00–07:00): no reminder.
    restarted = jobs.Scheduler(app.runtime)
    assert not [r for r in await restarted.tick(at(21, 30)) if r.startswith("roll")]
    await restarted.tick(at(7, 30, MONDAY + dt.timedelta(days=1)))
    assert await sent(db, "roll_reminder") == []


async def test_no_reminder_once_the_roll_is_in_or_on_a_holiday(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    course = await lego(db, school)
    async with db.transaction() as session:
        session.add(
            Session(
                school_id=school.school_id,
                course_id=course,
                date=MONDAY,
                starts_at=dt.time(16, 50),
                ends_at=dt.time(17, 50),
                venue="科学教室",
                status=SessionStatus.SCHEDULED,
                teacher_id=school.teacher_id,
                roll_submitted_at=at(16, 55),
            )
        )
        # The next Monday is a holiday: no session, so no reminder and no patrol record.
        session.add(
            CalendarDay(
                school_id=school.school_id,
                term_id=school.term_id,
                date=MONDAY + dt.timedelta(days=7),
                kind=CalendarKind.HOLIDAY,
            )
        )
    await add_member(db, school, ADMIN, {Role.ADMIN})
    scheduler = jobs.Scheduler(app.runtime)
    assert not [r for r in await scheduler.tick(at(17, 30)) if r.startswith("roll")]
    holiday = MONDAY + dt.timedelta(days=7)
    assert not [r for r in await scheduler.tick(at(17, 30, holiday)) if r.startswith("roll")]
    assert "patrol" in await scheduler.tick(at(19, 30, holiday))
    assert await sent(db, "roll_reminder") == []
    assert await sent(db, "patrol") == []
    async with db.transaction() as session:
        run = await session.scalar(
            select(JobRun).where(JobRun.job == "patrol", JobRun.due_at == at(19, 30, holiday))
        )
    assert run is not None and run.outcome == "no service today"


async def a_day_to_patrol(db: Database, school: SchoolData) -> tuple[int, int]:
    """Two sessions on Monday: 乐高机器人 with no roll; 剪纸 with its roll in, 李小明 absent
    with no leave, 张伟 absent on leave, and one update. The digest sent two, one failed."""
    lego_id = await lego(db, school)
    paper = await make_course(
        db,
        school,
        "JZ",
        name="剪纸（非遗）",
        starts_at=dt.time(15, 40),
        ends_at=dt.time(16, 40),
        period=1,
    )
    await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, ADMIN_EN, {Role.ADMIN}, locale="en")
    async with db.transaction() as session:
        row = Session(
            school_id=school.school_id,
            course_id=paper,
            date=MONDAY,
            starts_at=dt.time(15, 40),
            ends_at=dt.time(16, 40),
            venue="美术教室",
            status=SessionStatus.SCHEDULED,
            roll_submitted_at=at(15, 50),
        )
        session.add(row)
        await session.flush()
        for name in ("李小明", "张伟"):
            session.add_all(
                [
                    AttendanceMark(
                        school_id=school.school_id,
                        session_id=row.id,
                        student_id=school.student_ids[name],
                        code="present",
                        source="roll",
                    ),
                ]
            )
            await session.flush()
            session.add(
                AttendanceMark(
                    school_id=school.school_id,
                    session_id=row.id,
                    student_id=school.student_ids[name],
                    code="absent",
                    previous="present",
                    source="roll",
                )
            )
        session.add(
            AttendanceMark(
                school_id=school.school_id,
                session_id=row.id,
                student_id=school.student_ids["李小红"],
                code="present",
                source="roll",
            )
        )
        session.add(
            Leave(
                school_id=school.school_id,
                student_id=school.student_ids["张伟"],
                date=MONDAY,
                period=None,
                reason="发烧",
            )
        )
        session.add(
            DailyUpdate(
                school_id=school.school_id, session_id=row.id, text="今天剪了窗花", photos=[]
            )
        )
        for status in (OutboxStatus.SENT, OutboxStatus.SENT, OutboxStatus.FAILED):
            session.add(
                Outbox(
                    school_id=school.school_id,
                    chat_id=9000,
                    kind="evening",
                    text="晚间汇总",
                    status=status,
                    created_at=at(18, 30),
                )
            )
    return lego_id, paper


async def test_the_patrol_record_names_the_missing_roll_and_counts_the_unexplained_absence(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await a_day_to_patrol(db, school)
    scheduler = jobs.Scheduler(app.runtime)
    await scheduler.tick(at(19, 0))  # Sunday's record, stale by now, is recorded as such
    assert "patrol" not in await scheduler.tick(at(19, 29))
    assert await sent(db, "patrol") == []
    assert "patrol" in await scheduler.tick(at(19, 30))
    records = {r.chat_id: r for r in await sent(db, "patrol")}
    assert set(records) == {ADMIN, ADMIN_EN}
    zh = records[ADMIN].text or ""
    assert zh.splitlines()[0] == "<b>每日巡查记录 · 12月7日周一</b>"
    assert "今日开课 2 节。" in zh
    assert "已点名：1 节。" in zh
    assert "⚠️ 未点名：1 节：\n• 乐高机器人 16:50–17:50 · 王老师" in zh
    assert "无故缺勤：1 人次。" in zh  # 张伟's absence is covered by the leave
    assert "课堂动态：1 条。" in zh
    assert "晚间汇总：已发送 2 条，失败 1 条。" in zh
    en = records[ADMIN_EN].text or ""
    lego_time = wording.span(EN, dt.time(16, 50), dt.time(17, 50))
    assert f"Roll missing: 1 session:\n• 乐高机器人 {lego_time} · 王老师" in en
    assert "Unexplained absences: 1." in en
    # Once a day: another tick, or another process, sends no second record.
    assert "patrol" not in await jobs.Scheduler(app.runtime).tick(at(19, 45))
    assert len(await sent(db, "patrol")) == 2


async def test_a_patrol_record_missed_overnight_is_not_sent_the_next_morning(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await a_day_to_patrol(db, school)
    await jobs.Scheduler(app.runtime).tick(at(19, 0))
    # Down from 19:00 until 07:00 the next day: Monday's record is stale, nothing is sent.
    assert "patrol" in await jobs.Scheduler(app.runtime).tick(
        at(7, 0, MONDAY + dt.timedelta(days=1))
    )
    assert await sent(db, "patrol") == []


async def test_the_reminders_button_opens_the_roll_of_the_session(
    app: KehouApplication,
    db: Database,
    school: SchoolData,
    make_user: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await lego(db, school)
    await jobs.Scheduler(app.runtime).tick(at(17, 5))
    (reminder,) = await sent(db, "roll_reminder")
    monkeypatch.setattr("handlers.teacher.attendance.utcnow", lambda: at(17, 6))
    teacher = make_user(TEACHER)
    # The reminder as the teacher's chat shows it, and its button pressed: the roll of today's
    # session opens (the reminder's own words are not read as a roll shorthand).
    shown = Call(
        "sendMessage", {"chat_id": TEACHER, "text": read(reminder)}, result={"message_id": 77}
    )
    text = teacher.texts(await teacher.press("go:attendance", shown))
    assert "乐高机器人" in text
    assert "没有保存任何内容" not in text
