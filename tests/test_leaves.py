"""Leaves and early pick-ups as services: sessions by the school calendar, the cut-off, cancel."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, update

from bot.services import enrolment, leaves
from bot.services.leaves import LeaveRefusal
from storage.db import Database
from storage.models import (
    CalendarDay,
    CalendarKind,
    Category,
    Course,
    Guardianship,
    Leave,
    Role,
    School,
    Teacher,
    Term,
)
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import FakeUser
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
MONDAY = dt.date(2026, 12, 7)
EVERY_WEEKDAY = 0b0011111


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), CST)


async def enrolled_child(db: Database, school: SchoolData) -> int:
    """李小明 in homework help (period 1, 15:40) and robotics (period 2, 16:40) every weekday."""
    homework = await make_course(
        db,
        school,
        "HW",
        period=1,
        category=Category.HOMEWORK,
        weekdays=EVERY_WEEKDAY,
        starts_at=dt.time(15, 40),
        ends_at=dt.time(16, 30),
        capacity=None,
    )
    robotics = await make_course(db, school, "ROBO", weekdays=EVERY_WEEKDAY)
    child = school.student_ids["李小明"]
    for course in (homework, robotics):
        assert not isinstance(
            await enrolment.sign_up(db, child, course, user_id=None), enrolment.Refusal
        )
    return child


async def test_a_period_a_day_and_the_cut_off(db: Database, school: SchoolData) -> None:
    child = await enrolled_child(db, school)
    async with db.transaction() as session:
        morning = at(MONDAY, 8)
        period_2 = await leaves.announce(
            session, child, MONDAY, 2, user_id=None, reason="看牙医", now=morning
        )
        assert isinstance(period_2, Leave) and period_2.reason == "看牙医"
        assert (
            await leaves.announce(session, child, MONDAY, 2, user_id=None, now=morning)
            is LeaveRefusal.ALREADY
        )
        assert (
            await leaves.announce(session, child, MONDAY, None, user_id=None, now=morning)
            is LeaveRefusal.ALREADY
        )  # overlaps
        # Period 1 starts at 15:40: the school's cut-off is an hour before.
        assert (
            await leaves.announce(session, child, MONDAY, 1, user_id=None, now=at(MONDAY, 14, 41))
            is LeaveRefusal.TOO_LATE
        )
        assert isinstance(
            await leaves.announce(session, child, MONDAY, 1, user_id=None, now=at(MONDAY, 14, 39)),
            Leave,
        )
        assert (
            await leaves.announce(
                session, child, MONDAY - dt.timedelta(days=1), None, user_id=None, now=morning
            )
            is LeaveRefusal.PAST
        )
        saturday = MONDAY + dt.timedelta(days=5)
        assert (
            await leaves.announce(session, child, saturday, None, user_id=None, now=morning)
            is LeaveRefusal.NO_SESSION
        )
        upcoming = await leaves.upcoming(session, child, MONDAY)
        assert [(x.date, x.period) for x in upcoming] == [(MONDAY, 1), (MONDAY, 2)]


async def test_early_pick_up_is_within_the_session(db: Database, school: SchoolData) -> None:
    child = await enrolled_child(db, school)
    async with db.transaction() as session:
        early = await leaves.announce(
            session, child, MONDAY, 2, user_id=None, pickup_at=dt.time(17, 0), now=at(MONDAY, 9)
        )
        assert isinstance(early, Leave) and early.pickup_at == dt.time(17, 0)
        assert (
            await leaves.announce(
                session,
                child,
                MONDAY + dt.timedelta(days=1),
                2,
                user_id=None,
                pickup_at=dt.time(18, 30),
                now=at(MONDAY, 9),
            )
            is LeaveRefusal.BAD_TIME
        )


async def test_a_pick_up_is_filed_until_its_own_time_not_the_absence_cut_off(
    db: Database, school: SchoolData
) -> None:
    """Homework 15:40–16:30 and robotics 16:40–17:40: absences closed at 14:40, yet at 16:00
    a parent can still collect the child early, at any time until the last session ends."""
    child = await enrolled_child(db, school)
    afternoon = at(MONDAY, 16)
    async with db.transaction() as session:
        assert (
            await leaves.announce(session, child, MONDAY, 2, user_id=None, now=afternoon)
            is LeaveRefusal.TOO_LATE
        )
        # As period 2 starts (the prompt's own example) is a pick-up that skips period 2.
        early = await leaves.announce(
            session, child, MONDAY, 2, user_id=None, pickup_at=dt.time(16, 40), now=afternoon
        )
        assert isinstance(early, Leave) and early.pickup_at == dt.time(16, 40)
        # A pick-up whose time has passed is too late; one after the sessions is no pick-up.
        tuesday = MONDAY + dt.timedelta(days=1)
        assert (
            await leaves.announce(
                session,
                child,
                tuesday,
                1,
                user_id=None,
                pickup_at=dt.time(16, 0),
                now=at(tuesday, 16, 5),
            )
            is LeaveRefusal.TOO_LATE
        )
        assert (
            await leaves.announce(
                session,
                child,
                tuesday,
                2,
                user_id=None,
                pickup_at=dt.time(17, 40),
                now=at(tuesday, 9),
            )
            is LeaveRefusal.BAD_TIME
        )
        # Taken back until the pick-up time, not the absences' cut-off.
        assert await leaves.cancel(session, early.id, now=at(MONDAY, 16, 41)) is (
            LeaveRefusal.TOO_LATE
        )
        assert await leaves.cancel(session, early.id, now=at(MONDAY, 16, 39)) is True


def test_the_period_a_pick_up_takes_the_child_out_of() -> None:
    homework = _info(1, dt.time(15, 40), dt.time(16, 30))
    robotics = _info(2, dt.time(16, 40), dt.time(17, 40))
    running = [homework, robotics]
    assert leaves.pickup_period_of(running, dt.time(15, 40)) == 1
    assert leaves.pickup_period_of(running, dt.time(16, 35)) == 2  # between the two: skips 2
    assert leaves.pickup_period_of(running, dt.time(16, 40)) == 2
    assert leaves.pickup_period_of(running, dt.time(15, 39)) is None
    assert leaves.pickup_period_of(running, dt.time(17, 40)) is None


def _info(period: int, starts: dt.time, ends: dt.time) -> Any:
    return SimpleNamespace(period=period, starts_at=starts, ends_at=ends)


async def test_the_school_calendar_decides_which_days_have_sessions(
    db: Database, school: SchoolData
) -> None:
    child = await enrolled_child(db, school)
    holiday, swapped_sunday = MONDAY + dt.timedelta(days=1), MONDAY + dt.timedelta(days=6)
    async with db.transaction() as session:
        session.add_all(
            [
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=holiday,
                    kind=CalendarKind.HOLIDAY,
                ),
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=swapped_sunday,
                    kind=CalendarKind.WORKDAY,
                    runs_weekday=5,
                ),
            ]
        )
    async with db.transaction() as session:
        made, refusal = await leaves.announce_days(
            session, child, MONDAY, swapped_sunday, user_id=None, now=at(MONDAY, 8)
        )
    # Monday, Wednesday–Friday and the swapped Sunday; not the holiday, not Saturday.
    assert refusal is None
    assert [x.date.isoformat() for x in made] == [
        "2026-12-07",
        "2026-12-09",
        "2026-12-10",
        "2026-12-11",
        "2026-12-13",
    ]
    async with db.transaction() as session:
        assert (
            await leaves.announce_days(
                session,
                child,
                MONDAY,
                MONDAY + dt.timedelta(days=40),
                user_id=None,
                now=at(MONDAY, 8),
            )
        )[1] is LeaveRefusal.TOO_LONG


async def test_cancel_until_the_cut_off_and_the_teachers_roster(
    db: Database, school: SchoolData
) -> None:
    child = await enrolled_child(db, school)
    async with db.transaction() as session:
        first = await leaves.announce(session, child, MONDAY, 2, user_id=None, now=at(MONDAY, 8))
        second = await leaves.announce(session, child, MONDAY, 1, user_id=None, now=at(MONDAY, 8))
        assert isinstance(first, Leave) and isinstance(second, Leave)
        robotics = (await session.scalars(select(Course).where(Course.code == "ROBO"))).one()
        assert [s.name for s, _ in await leaves.absences(session, robotics, MONDAY)] == ["李小明"]
        assert await leaves.cancel(session, first.id, now=at(MONDAY, 12)) is True
        assert await leaves.absences(session, robotics, MONDAY) == []
        assert await leaves.cancel(session, second.id, now=at(MONDAY, 15)) is LeaveRefusal.TOO_LATE
        assert await leaves.cancel(session, first.id, now=at(MONDAY, 12)) is False


async def test_parent_takes_a_child_out_of_several_days_and_back(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 901, {Role.PARENT}, ("李小明",))
    await add_member(db, school, 902, {Role.PARENT}, ("张伟",))
    child = await enrolled_child(db, school)
    today = dt.datetime.now(CST).date()
    async with db.transaction() as session:  # whenever the test runs, it is term time
        await session.execute(
            update(Term).values(
                starts_on=today - dt.timedelta(days=30), ends_on=today + dt.timedelta(days=60)
            )
        )
    monday = today + dt.timedelta(days=7 - today.weekday())
    wednesday = monday + dt.timedelta(days=2)

    parent: FakeUser = make_user(901)
    assert "李小明什么时候不参加" in FakeUser.texts(await parent.send("/leave"))
    await parent.click("其他日期…")
    assert "没能识别" in FakeUser.texts(await parent.send("随便哪天都行"))
    asked = FakeUser.texts(await parent.send(f"{monday:%m-%d} 至 {wednesday:%m-%d}"))
    assert "原因" in asked
    done = FakeUser.texts(await parent.click("生病"))
    # Updated with the result wording (docs/UX.md 2): it names the child and each day's courses.
    assert "已为李小明请假 3 天（全天）" in done and done.count("全天 · 课程HW、课程ROBO") == 3
    async with db.transaction() as session:
        stored = await leaves.upcoming(session, child, today)
    assert [x.date for x in stored] == [monday + dt.timedelta(days=i) for i in range(3)]
    assert {x.reason for x in stored} == {"生病"}

    # Another family cannot take it back; the parent can.
    other: FakeUser = make_user(902)
    await other.press(f"lv:x:{stored[0].id}")
    async with db.transaction() as session:
        assert len(await leaves.upcoming(session, child, today)) == 3
    take_back = next(b for b in parent.all_buttons() if b.startswith("撤销") and "全天" in b)
    replies = await parent.click(take_back)
    assert any("已撤销" in str(c.params) for c in replies)
    async with db.transaction() as session:
        assert len(await leaves.upcoming(session, child, today)) == 2
    week = FakeUser.texts(await parent.send("/schedule"))
    assert "请假和提前接走" in week and week.count("全天 · ") == 2


async def test_the_teachers_roster_shows_who_is_away_and_who_leaves_early(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    today = dt.datetime.now(CST).date()
    async with db.transaction() as session:
        await session.execute(
            update(Term).values(
                starts_on=today - dt.timedelta(days=30), ends_on=today + dt.timedelta(days=60)
            )
        )
    teacher_user = await add_member(db, school, 960, {Role.TEACHER})
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher_user)
        )
    course = await make_course(
        db,
        school,
        "ROBO",
        name="机器人",
        teacher_id=school.teacher_id,
        weekdays=1 << today.weekday(),
        starts_at=dt.time(16, 40),
        ends_at=dt.time(17, 40),
        capacity=None,
    )
    away, early = school.student_ids["李小明"], school.student_ids["张伟"]
    for child in (away, early):
        assert not isinstance(
            await enrolment.sign_up(db, child, course, user_id=None), enrolment.Refusal
        )
    morning = at(today, 0, 1)
    async with db.transaction() as session:
        assert isinstance(
            await leaves.announce(
                session, away, today, 2, user_id=None, reason="发烧", now=morning
            ),
            Leave,
        )
        assert isinstance(
            await leaves.announce(
                session, early, today, 2, user_id=None, pickup_at=dt.time(17, 10), now=morning
            ),
            Leave,
        )
    teacher: FakeUser = make_user(960)
    text = FakeUser.texts(await teacher.send("/roster"))
    assert "机器人" in text and "应到 2 人，预计出勤 1 人" in text
    assert "今天请假：\n• 李小明 (发烧)" in text and "提前接走：\n• 张伟 17:10" in text
    parent: FakeUser = make_user(961)
    await add_member(db, school, 961, {Role.PARENT}, ("李小明",))
    assert "供教师使用" in FakeUser.texts(await parent.send("/roster"))


async def test_today_is_the_schools_day_not_the_deployments(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    """KEHOU_TIMEZONE is Asia/Shanghai; the school is in a zone whose date differs right now."""
    shanghai_today = dt.datetime.now(CST).date()
    zone = next(
        z
        for z in ("Pacific/Kiritimati", "Pacific/Pago_Pago")
        if dt.datetime.now(ZoneInfo(z)).date() != shanghai_today
    )
    today = dt.datetime.now(ZoneInfo(zone)).date()
    async with db.transaction() as session:
        await session.execute(
            update(Term).values(
                starts_on=today - dt.timedelta(days=30), ends_on=today + dt.timedelta(days=60)
            )
        )
        await session.execute(
            update(School).where(School.id == school.school_id).values(timezone=zone)
        )
    teacher_user = await add_member(db, school, 970, {Role.TEACHER})
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher_user)
        )
    course = await make_course(
        db,
        school,
        "ROBO",
        name="机器人",
        teacher_id=school.teacher_id,
        weekdays=1 << today.weekday(),  # meets on the school's today only, not on Shanghai's
        capacity=None,
    )
    assert not isinstance(
        await enrolment.sign_up(db, school.student_ids["李小明"], course, user_id=None),
        enrolment.Refusal,
    )
    teacher: FakeUser = make_user(970)
    text = FakeUser.texts(await teacher.send("/roster"))
    assert "机器人" in text and "应到 1 人" in text


async def test_an_early_pick_up_time_must_fall_in_a_session_and_stays_guarded(
    make_user, db: Database, school: SchoolData, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # A pick-up is filed until its own time: the clock is set to the morning, so the test does
    # not depend on when it runs.
    morning = at(dt.datetime.now(CST).date(), 9).astimezone(dt.UTC)
    monkeypatch.setattr("handlers.parent.leave.utcnow", lambda: morning)
    monkeypatch.setattr("bot.services.leaves.utcnow", lambda: morning)
    await term_around_today(db)
    await add_member(db, school, 903, {Role.PARENT}, ("李小明",))
    child = school.student_ids["李小明"]
    robotics = await make_course(db, school, "ROBO", name="机器人", weekdays=0b1111111)
    assert not isinstance(
        await enrolment.sign_up(db, child, robotics, user_id=None), enrolment.Refusal
    )

    parent: FakeUser = make_user(903)
    await parent.send("/leave")
    # The example the prompt gives is the first time the child can be collected.
    assert "如 16:40" in FakeUser.texts(await parent.click("今天提前接走…"))
    # Robotics runs 16:40–17:40: 18:30 is no time to collect the child from it.
    assert "可在 16:40–17:40 之间提前接" in FakeUser.texts(await parent.send("18:30"))
    assert "原因" in FakeUser.texts(await parent.send("17:10"))

    # Between two steps the parent is no longer this child's guardian: the step is refused.
    await parent.send("/leave")
    await parent.click("今天提前接走…")
    async with db.transaction() as session:
        await session.execute(delete(Guardianship).where(Guardianship.student_id == child))
    refused = FakeUser.texts(await parent.send("17:10"))
    assert "原因" not in refused
    async with db.transaction() as session:
        assert await leaves.upcoming(session, child, dt.datetime.now(CST).date()) == []
