"""Teacher hours: the sessions a teacher taught in a month (those whose roll is in), by course,
with the rolls still missing; an admin's per-teacher monthly totals, paged, month by month."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.services import hours, members
from bot.services.hours import Month
from bot.services.members import Member
from storage.db import Database
from storage.models import Role, Session, SessionStatus, Teacher, TeacherKind
from tests.factories import SchoolData, add_member
from tests.harness import Call
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
TEACHER, ADMIN, MOM = 840, 841, 842
NOW = dt.datetime(2026, 12, 14, 18, 0, tzinfo=CST).astimezone(dt.UTC)  # a Monday evening
WEDNESDAY = 1 << 2


async def member(db: Database, telegram_id: int) -> Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


def ran(
    school: SchoolData, course: int, day: dt.date, start: dt.time, end: dt.time, teacher: int
) -> Session:
    return Session(
        school_id=school.school_id,
        course_id=course,
        date=day,
        starts_at=start,
        ends_at=end,
        venue="教室",
        status=SessionStatus.SCHEDULED,
        teacher_id=teacher,
        roll_submitted_at=dt.datetime.combine(day, end, CST).astimezone(dt.UTC),
    )


async def a_month(db: Database, school: SchoolData) -> int:
    """王老师 teaches 乐高机器人 (Mondays 16:50–17:50) and 剪纸 (Wednesdays 15:40–17:10).
    In December: 乐高 on the 7th with its roll, the 14th without; 剪纸 on the 2nd, and on the
    9th taught by 李老师 (a substitute). In November: 乐高 on the 30th. Returns 李老师's id."""
    user = await add_member(db, school, TEACHER, {Role.TEACHER})
    lego = await make_course(
        db,
        school,
        "LEGO",
        name="乐高机器人",
        teacher_id=school.teacher_id,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
    )
    paper = await make_course(
        db,
        school,
        "JZ",
        name="剪纸",
        teacher_id=school.teacher_id,
        weekdays=WEDNESDAY,
        starts_at=dt.time(15, 40),
        ends_at=dt.time(17, 10),
    )
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=user)
        )
        substitute = Teacher(
            school_id=school.school_id, code="T02", name="李老师", kind=TeacherKind.STAFF
        )
        session.add(substitute)
        await session.flush()
        lego_times = (dt.time(16, 50), dt.time(17, 50))
        paper_times = (dt.time(15, 40), dt.time(17, 10))
        mine = school.teacher_id
        session.add_all(
            [
                ran(school, lego, dt.date(2026, 12, 7), *lego_times, mine),
                ran(school, paper, dt.date(2026, 12, 2), *paper_times, mine),
                ran(school, paper, dt.date(2026, 12, 9), *paper_times, substitute.id),
                ran(school, lego, dt.date(2026, 11, 30), *lego_times, mine),
            ]
        )
        return substitute.id


# --- the service --------------------------------------------------------------------------------


def test_months_are_read_as_typed_and_stepped() -> None:
    assert Month.parse("2026-11") == Month.parse("2026年11月") == Month(2026, 11)
    assert Month.parse("202611") == Month(2026, 11)
    assert Month.parse("2026-13") is None and Month.parse("next") is None
    assert Month(2026, 1).previous() == Month(2025, 12)
    assert Month(2026, 12).next() == Month(2027, 1)
    assert Month(2026, 2).last == dt.date(2026, 2, 28)


async def test_a_teachers_month_counts_sessions_with_their_roll_and_lists_the_missing(
    db: Database, school: SchoolData
) -> None:
    await a_month(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        found = await hours.of_teacher(session, teacher, Month(2026, 12), NOW)
    assert found is not None
    assert found.courses == [
        hours.CourseHours("乐高机器人", 1, 60),
        hours.CourseHours("剪纸", 1, 90),
    ]
    assert (found.sessions, found.minutes) == (2, 150)
    # The 9th was taught (and counted) by the substitute; the 14th has no roll yet.
    assert found.missing == [
        hours.Missing("乐高机器人", dt.date(2026, 12, 14), dt.time(16, 50), dt.time(17, 50))
    ]


async def test_the_school_month_totals_each_teacher_and_only_admins_see_it(
    db: Database, school: SchoolData
) -> None:
    await a_month(db, school)
    await add_member(db, school, ADMIN, {Role.ADMIN})
    admin, teacher = await member(db, ADMIN), await member(db, TEACHER)
    async with db.transaction() as session:
        found = await hours.of_school(session, admin, Month(2026, 12))
        refused = await hours.of_school(session, teacher, Month(2026, 12))
    assert found is not None and refused is None
    assert found.teachers == [
        hours.TeacherTotal("李老师", 1, 90),
        hours.TeacherTotal("王老师", 2, 150),
    ]
    async with db.transaction() as session:
        november = await hours.of_school(session, admin, Month(2026, 11))
    assert november is not None
    assert november.teachers == [hours.TeacherTotal("王老师", 1, 60)]


# --- through Telegram ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handlers.teacher.hours.utcnow", lambda: NOW)


def buttons(calls: list[Call]) -> list[str]:
    return [b["text"] for c in calls for b in c.buttons()]


async def test_a_teacher_sees_the_month_by_course_and_the_missing_roll(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await a_month(db, school)
    teacher = make_user(TEACHER)
    calls = await teacher.send("/hours")
    text = teacher.texts(calls)
    assert "2026年12月 您的授课" in text
    assert "• 乐高机器人：1 节，1 小时\n• 剪纸：1 节，1.5 小时" in text
    assert "合计：2 节，2.5 小时" in text
    assert (
        "⚠️ 1 节课还没有点名（点名后才计入课时）：\n• 12月14日周一 乐高机器人 16:50–17:50" in text
    )
    assert buttons(calls) == ["‹ 2026年11月"]
    november = teacher.texts(await teacher.click("‹ 2026年11月"))
    assert "2026年11月 您的授课" in november and "合计：1 节，1 小时" in november


async def test_an_admin_sees_every_teacher_pages_and_months(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await a_month(db, school)
    await add_member(db, school, ADMIN, {Role.ADMIN})
    admin = make_user(ADMIN)
    text = admin.texts(await admin.send("/hours"))
    assert "2026年12月 教师课时统计" in text
    assert text.index("• 李老师：1 节，1.5 小时") < text.index("• 王老师：2 节，2.5 小时")
    assert "合计：2 位老师，3 节，4 小时" in text
    november = admin.texts(await admin.send("/hours 2026-11"))
    assert "2026年11月 教师课时统计" in november and "• 王老师：1 节，1 小时" in november
    assert "请这样写月份：/hours 2026-11" in admin.texts(await admin.send("/hours soon"))

    # Twenty more teachers with a session each: the list is paged.
    course = await make_course(db, school, "EXTRA", name="托管", weekdays=0b1111111)
    async with db.transaction() as session:
        for n in range(20):
            extra = Teacher(
                school_id=school.school_id,
                code=f"X{n:02d}",
                name=f"教师{n:02d}",
                kind=TeacherKind.STAFF,
            )
            session.add(extra)
            await session.flush()
            session.add(
                ran(
                    school,
                    course,
                    dt.date(2026, 12, 1 + n),
                    dt.time(16, 0),
                    dt.time(17, 0),
                    extra.id,
                )
            )
    calls = await admin.send("/hours")
    first = admin.texts(calls)
    assert "教师00" in first and "王老师" not in first
    assert buttons(calls)[:2] == ["1/2", "›"]
    second = admin.texts(await admin.click("›"))
    assert "王老师" in second and "教师00" not in second
    assert "合计：22 位老师，23 节，24 小时" in second


async def test_hours_is_not_for_parents_and_a_forged_month_is_refused(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await a_month(db, school)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    mom = make_user(MOM)
    assert "此功能供老师和学校管理员使用。" in mom.texts(await mom.send("/hours"))
    teacher = make_user(TEACHER)
    calls = await teacher.press("hrs:a:202612:0")  # a teacher asking for the school's month
    assert any(c.method == "answerCallbackQuery" and c.params.get("show_alert") for c in calls)
    calls = await teacher.press("hrs:t:999999")
    assert any(c.method == "answerCallbackQuery" and c.params.get("show_alert") for c in calls)
