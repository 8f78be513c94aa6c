"""The parent's leave flow as a parent meets it (docs/UX.md): the child's own session days,
the cut-off said before anything is chosen, a same-day early pick-up after the absences'
cut-off, the teacher named when it is too late, 返回/取消 on every step, results that name the
child, course, day and time with their next steps, and the other guardian told."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import wording
from bot.i18n import I18n
from bot.services import enrolment, leaves, outbox
from handlers.common.keyboards import PAGE_MAX
from storage.db import Database
from storage.models import AuditLog, Category, Leave, Outbox, Role
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import Call, FakeUser
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
MOM, DAD, STRANGER = 811, 812, 813
NAV = {"‹ 返回", "取消"}
ZH = I18n(CST).get("zh_CN")


class Clock:
    """The time the leave flow and its service see: the school's today, at a chosen time."""

    def __init__(self) -> None:
        self.today = dt.datetime.now(CST).date()
        self.now = dt.datetime.combine(self.today, dt.time(9, 0), CST)

    def at(self, hour: int, minute: int = 0, days: int = 0) -> None:
        self.now = dt.datetime.combine(
            self.today + dt.timedelta(days=days), dt.time(hour, minute), CST
        )

    def __call__(self) -> dt.datetime:
        return self.now.astimezone(dt.UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr("handlers.parent.leave.utcnow", found)
    monkeypatch.setattr("bot.services.leaves.utcnow", found)
    return found


@dataclass
class Family:
    mom: FakeUser
    dad: FakeUser
    child: int
    paper_cutting: int


async def family(
    db: Database, school: SchoolData, make_user: Any, weekdays: int = 0b1111111
) -> Family:
    """李小明 with two guardians, in homework help (period 1, 15:40–16:40) and 剪纸（非遗）
    (period 2, 16:50–17:50, taught by 王老师) on `weekdays`."""
    await term_around_today(db)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明",))
    await add_member(db, school, STRANGER, {Role.PARENT}, ("张伟",))
    homework = await make_course(
        db,
        school,
        "HW",
        name="作业辅导",
        period=1,
        category=Category.HOMEWORK,
        weekdays=weekdays,
        starts_at=dt.time(15, 40),
        ends_at=dt.time(16, 40),
        capacity=None,
    )
    paper = await make_course(
        db,
        school,
        "JZ",
        name="剪纸（非遗）",
        teacher_id=school.teacher_id,
        weekdays=weekdays,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
        capacity=None,
    )
    child = school.student_ids["李小明"]
    for course in (homework, paper):
        assert not isinstance(
            await enrolment.sign_up(db, child, course, user_id=None), enrolment.Refusal
        )
    return Family(make_user(MOM), make_user(DAD), child, paper)


def last_buttons(calls: list[Call]) -> list[str]:
    shown = [c for c in calls if c.buttons()]
    assert shown, "no screen with buttons"
    return [b["text"] for b in shown[-1].buttons()]


async def recorded(db: Database, child: int) -> list[Leave]:
    async with db.transaction() as session:
        return await leaves.upcoming(session, child, dt.datetime.now(CST).date())


async def told(db: Database, user_telegram_id: int) -> list[str]:
    """What the other guardian reads, from the outbox, in Chinese."""
    async with db.transaction() as session:
        rows = (
            await session.scalars(
                select(Outbox).where(Outbox.kind == "leave", Outbox.chat_id == user_telegram_id)
            )
        ).all()
    return [
        ZH.gettext(r.template or "").format(**outbox.format_params(r.params or {}, ZH))
        for r in rows
    ]


async def test_same_day_pick_up_is_possible_after_the_absence_cut_off(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(16, 0)  # absences for today closed at 14:40 (an hour before 15:40)
    first = await home.mom.send("/leave")
    assert "今天的请假已于 14:40 截止；仍可登记提前接" in FakeUser.texts(first)
    times = await home.mom.click("今天提前接走…")
    offered = last_buttons(times)
    # 16:50, period 2's start and the prompt's own example, is offered and accepted.
    example = re.search(r"如 (\d\d:\d\d)", FakeUser.texts(times))
    assert example is not None and "16:50" in offered
    assert "16:00" not in offered and "17:50" not in offered  # past, or after the session
    assert set(offered) >= NAV and len(offered) - 2 <= PAGE_MAX
    assert "原因" in FakeUser.texts(await home.mom.send(example[1]))  # the example, typed
    await home.mom.click("‹ 返回")
    typed = FakeUser.texts(await home.mom.send("4:30"))  # the afternoon, by the sessions
    assert f"提前接李小明：{wording.day(ZH, clock.today)} 16:30，作业辅导" in typed
    await home.mom.click("‹ 返回")
    for words in ("4点半", "下午四点半"):  # as parents write it
        typed = FakeUser.texts(await home.mom.send(words))
        assert f"提前接李小明：{wording.day(ZH, clock.today)} 16:30，作业辅导" in typed, words
        await home.mom.click("‹ 返回")
    asked = FakeUser.texts(await home.mom.click("16:50"))
    assert "提前接李小明：" in asked and "16:50，剪纸（非遗）" in asked
    done = await home.mom.click("不填原因")
    text = FakeUser.texts(done)
    assert f"已登记提前接李小明：{wording.day(ZH, clock.today)} 16:50，剪纸（非遗）" in text
    assert set(last_buttons(done)) == {f"撤销 {wording.day(ZH, clock.today)} 16:50", "查看课表"}
    (leave,) = await recorded(db, home.child)
    assert leave.pickup_at == dt.time(16, 50) and leave.period == 2
    # Its day now shows what is recorded, with its 撤销, instead of offering it again.
    await home.mom.send("/leave")
    day = await home.mom.click(wording.day(ZH, clock.today))
    assert "第二时段：剪纸（非遗） 16:50–17:50 · 16:50 提前接" in FakeUser.texts(day)
    assert f"撤销 {wording.day(ZH, clock.today)} 16:50" in last_buttons(day)
    assert "剪纸（非遗） 16:50–17:50" not in last_buttons(day)

    # The pick-up time itself is the cut-off; after the sessions no pick-up is offered.
    clock.at(16, 55)
    await home.mom.send("/leave")
    assert "今天提前接走…" in home.mom.all_buttons()
    clock.at(17, 50)
    later = await home.mom.send("/leave")
    assert "今天提前接走…" not in last_buttons(later)


async def test_the_cut_off_is_stated_before_anything_is_chosen(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(9, 0)
    text = FakeUser.texts(await home.mom.send("/leave"))
    assert "今天的请假截止到 14:40" in text and "原因" not in text


async def test_only_the_childs_session_days_are_offered_with_course_and_time(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user, weekdays=0b0000101)  # Monday and Wednesday
    clock.at(9, 0)
    first = await home.mom.send("/leave")
    days = [b for b in last_buttons(first) if "月" in b]
    expected = [
        wording.day(ZH, clock.today + dt.timedelta(days=n))
        for n in range(28)
        if (clock.today + dt.timedelta(days=n)).weekday() in (0, 2)
    ]
    assert days == expected[: len(days)] and 0 < len(days) <= PAGE_MAX - 2
    assert "取消" in last_buttons(first)
    later = await home.mom.click("更多日期 ›")
    assert next(b for b in last_buttons(later) if "月" in b) == expected[len(days)]
    await home.mom.click("‹ 较早")
    session_screen = await home.mom.click(expected[1])
    text = FakeUser.texts(session_screen)
    assert (
        "第一时段：作业辅导 15:40–16:40" in text and "第二时段：剪纸（非遗） 16:50–17:50" in text
    )
    assert set(last_buttons(session_screen)) >= {
        "作业辅导 15:40–16:40",
        "剪纸（非遗） 16:50–17:50",
        "全天",
        "‹ 返回",
        "取消",
    }
    reason = await home.mom.click("剪纸（非遗） 16:50–17:50")
    assert set(last_buttons(reason)) >= NAV
    assert f"剪纸（非遗），{expected[1]} 16:50–17:50" in FakeUser.texts(reason)
    # 返回 leads back a step; 取消 ends the flow with nothing recorded.
    assert "不参加哪一节" in FakeUser.texts(await home.mom.click("‹ 返回"))
    await home.mom.click("剪纸（非遗） 16:50–17:50")
    assert "已取消" in FakeUser.texts(await home.mom.click("取消"))
    assert await recorded(db, home.child) == []

    await home.mom.send("/leave")
    await home.mom.click(expected[1])
    await home.mom.click("剪纸（非遗） 16:50–17:50")
    done = await home.mom.click("生病")
    assert f"已为李小明请假：剪纸（非遗），{expected[1]} 16:50–17:50" in FakeUser.texts(done)
    assert "查看课表" in last_buttons(done)
    week = FakeUser.texts(await home.mom.click("查看课表"))
    assert "请假和提前接走" in week and f"{expected[1]} 剪纸（非遗） 16:50–17:50" in week


async def test_too_late_online_names_the_teacher_and_offers_a_pick_up(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(16, 0)
    await home.mom.send("/leave")
    await home.mom.click(wording.day(ZH, clock.today))
    refused = await home.mom.click("剪纸（非遗） 16:50–17:50")
    text = FakeUser.texts(refused)
    assert "已来不及在线为李小明请这节课的假" in text and "60 分钟" in text
    assert "请直接联系剪纸（非遗）的王老师" in text
    assert set(last_buttons(refused)) == {"改为提前接…", "‹ 返回", "取消"}
    assert await recorded(db, home.child) == []


async def test_a_typed_day_without_a_session_is_answered_with_the_childs_days(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user, weekdays=0b0000101)  # Monday and Wednesday
    clock.at(9, 0)
    tuesday = clock.today + dt.timedelta(days=(1 - clock.today.weekday()) % 7 or 7)
    await home.mom.send("/leave")
    await home.mom.click("其他日期…")
    answer = await home.mom.send(f"{tuesday:%m-%d}")
    text = FakeUser.texts(answer)
    assert f"李小明{wording.day(ZH, tuesday)}没有课" in text and "上课日是周一、周三" in text
    assert set(last_buttons(answer)) == NAV
    assert "什么时候不参加" in FakeUser.texts(await home.mom.click("‹ 返回"))
    # What it cannot read, it answers with the child's session days to pick from.
    await home.mom.click("其他日期…")
    monday = clock.today + dt.timedelta(days=-clock.today.weekday() % 7)
    unread = await home.mom.send("等天气好了")
    assert "没能识别" in FakeUser.texts(unread)
    assert wording.day(ZH, monday) in last_buttons(unread) and set(last_buttons(unread)) >= NAV
    picked = await home.mom.click(wording.day(ZH, monday))
    assert "不参加哪一节" in FakeUser.texts(picked)


@pytest.mark.parametrize(
    ("typed", "days_ahead"),
    [("下周一", lambda today: 7 - today.weekday()), ("下周三", lambda today: 9 - today.weekday())],
)
async def test_a_day_typed_as_parents_write_it_is_understood(
    make_user: Any, db: Database, school: SchoolData, clock: Clock, typed: str, days_ahead: Any
) -> None:
    home = await family(db, school, make_user, weekdays=0b0000101)  # Monday and Wednesday
    clock.at(9, 0)
    meant = clock.today + dt.timedelta(days=days_ahead(clock.today))
    await home.mom.send("/leave")
    await home.mom.click("其他日期…")
    answer = FakeUser.texts(await home.mom.send(typed))
    assert "没能识别" not in answer
    assert f"为李小明请假：{wording.day(ZH, meant)} 全天" in answer, answer


async def test_the_other_guardian_is_told_of_a_leave_and_its_take_back(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(9, 0)
    tomorrow = wording.day(ZH, clock.today + dt.timedelta(days=1))
    await home.mom.send("/leave")
    await home.mom.click(tomorrow)
    await home.mom.click("剪纸（非遗） 16:50–17:50")
    await home.mom.click("不填原因")
    assert await told(db, DAD) == [
        f"👪 李小明的另一位家长已请假：剪纸（非遗），{tomorrow} 16:50–17:50。"
    ]
    assert await told(db, MOM) == []

    # The dad sees it in /schedule, with its own 撤销 button, and takes it back there.
    week = await home.dad.send("/schedule")
    assert f"{tomorrow} 剪纸（非遗） 16:50–17:50" in FakeUser.texts(week)
    button = f"撤销 {tomorrow} 第二时段"
    assert button in home.dad.all_buttons()
    answer = await home.dad.click(button)
    toast = next(c for c in answer if c.method == "answerCallbackQuery")
    assert "已撤销：李小明照常参加" in toast.params["text"] and tomorrow in toast.params["text"]
    assert await recorded(db, home.child) == []
    assert f"👪 李小明的另一位家长已撤销{tomorrow}的请假，李小明照常参加。" in await told(db, MOM)


async def test_a_forged_take_back_from_the_schedule_is_refused_and_audited(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(9, 0)
    async with db.transaction() as session:
        leave = await leaves.announce(
            session, home.child, clock.today + dt.timedelta(days=1), 2, user_id=None
        )
    assert isinstance(leave, Leave)
    stranger: FakeUser = make_user(STRANGER)
    answer = await stranger.press(f"lv:x:{leave.id}")
    assert any(c.method == "answerCallbackQuery" for c in answer)
    assert len(await recorded(db, home.child)) == 1
    async with db.transaction() as session:
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert "leave.refused" in actions


async def test_other_dates_in_english_name_the_day_and_the_courses(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    """The typed path the end-to-end test takes over the wire, in English."""
    await family(db, school, make_user)
    clock.at(9, 0)
    anna: FakeUser = make_user(MOM, language_code="en")
    assert "not take part" in FakeUser.texts(await anna.send("/leave"))
    assert "Which days" in FakeUser.texts(await anna.click("Other days…"))
    day = clock.today + dt.timedelta(days=7)
    asked = FakeUser.texts(await anna.send(f"{day:%m-%d}"))
    english = I18n(CST).get("en")
    assert f"{wording.day(english, day)}, the whole day (作业辅导, 剪纸（非遗）)" in asked
    assert "reason" in asked
    done = FakeUser.texts(await anna.click("Ill"))
    assert f"Recorded for 李小明: {wording.day(english, day)}, the whole day" in done
    assert "Reason: Ill" in done

    # A pick-up time as English speakers write it, and as the prompt's own example shows it.
    day = clock.today + dt.timedelta(days=1)
    await anna.send("/leave")
    await anna.click(wording.day(english, day))
    times = FakeUser.texts(await anna.click("Pick up early…"))
    example = re.search(r"like (\d{1,2}:\d\d\W?[AP]M)", times)
    assert example is not None
    assert "reason" in FakeUser.texts(await anna.send(example[1]))
    await anna.click("‹ Back")
    asked = FakeUser.texts(await anna.send("4:30 pm"))
    assert f"{wording.day(english, day)} at 4:30\u202fPM, from 作业辅导" in asked
    await anna.click("‹ Back")
    asked = FakeUser.texts(await anna.send("5:10"))  # no AM/PM: the afternoon's session
    assert f"{wording.day(english, day)} at 5:10\u202fPM, from 剪纸（非遗）" in asked


async def test_several_days_are_picked_not_typed(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user, weekdays=0b0000101)  # Monday and Wednesday
    clock.at(9, 0)
    days = [
        clock.today + dt.timedelta(days=n)
        for n in range(1, 28)
        if (clock.today + dt.timedelta(days=n)).weekday() in (0, 2)
    ]
    await home.mom.send("/leave")
    await home.mom.click(wording.day(ZH, days[0]))
    until = await home.mom.click("连续多天…")
    offered = last_buttons(until)
    assert [b for b in offered if "月" in b] == [wording.day(ZH, d) for d in days[1:9]]
    assert set(offered) >= NAV
    asked = await home.mom.click(wording.day(ZH, days[2]))
    assert f"{wording.day(ZH, days[0])}至{wording.day(ZH, days[2])}，全天" in FakeUser.texts(asked)
    done = await home.mom.click("不填原因")
    assert "已为李小明请假 3 天（全天）" in FakeUser.texts(done)
    assert [x.date for x in await recorded(db, home.child)] == days[:3]
    first, last = wording.day(ZH, days[0]), wording.day(ZH, days[2])
    assert await told(db, DAD) == [f"👪 李小明的另一位家长已请假：{first}至{last}，全天。"]


async def test_a_day_pressed_after_midnight_is_the_day_it_showed(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    home = await family(db, school, make_user)
    clock.at(23, 58)
    tomorrow = wording.day(ZH, clock.today + dt.timedelta(days=1))
    await home.mom.send("/leave")
    clock.at(0, 1, days=1)
    assert f"李小明 · {tomorrow}" in FakeUser.texts(await home.mom.click(tomorrow))
    await home.mom.click("剪纸（非遗） 16:50–17:50")
    done = await home.mom.click("不填原因")
    assert f"已为李小明请假：剪纸（非遗），{tomorrow} 16:50–17:50" in FakeUser.texts(done)


async def test_a_go_leave_button_opens_the_flow(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    """`go:leave` (handlers.common.intents' button for a flow) enters the conversation."""
    home = await family(db, school, make_user)
    clock.at(9, 0)
    opened = await home.mom.press("go:leave")
    assert "李小明什么时候不参加" in FakeUser.texts(opened)
    assert wording.day(ZH, clock.today) in last_buttons(opened)
