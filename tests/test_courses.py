"""/courses, /signup, /withdraw and seat offers through the handlers."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import select, update

from bot.services import enrolment, lottery
from storage.db import Database
from storage.models import (
    Allocation,
    AuditLog,
    CalendarDay,
    CalendarKind,
    Enrolment,
    LotteryDraw,
    Outbox,
    Role,
    Term,
    utcnow,
)
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser
from tests.test_enrolment import make_course

MOM, OTHER = 801, 802  # 李小明's guardian; 张伟's guardian (both 三年级1班)


async def statuses(db: Database) -> dict[int, tuple[str, int | None]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Enrolment.student_id, Enrolment.status, Enrolment.waitlist_position)
        )
        return {s: (str(st), p) for s, st, p in rows.all()}


def alerts(calls: list) -> str:  # type: ignore[type-arg]
    """What the presser was told: the callback answer, and any message edited in reply."""
    return json.dumps(
        [c.params for c in calls if c.method in ("answerCallbackQuery", "editMessageText")],
        ensure_ascii=False,
    )


async def test_parent_browses_reads_the_card_and_signs_up(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await make_course(db, school, "ROBO", name="机器人编程", venue="创客教室", capacity=20)
    await make_course(
        db,
        school,
        "HW",
        name="作业辅导",
        period=1,
        category="homework",
        starts_at=dt.time(15, 40),
        ends_at=dt.time(16, 30),
    )
    mom: FakeUser = make_user(MOM)
    listing = FakeUser.texts(await mom.send("/courses"))
    assert "李小明可选的课程" in listing and "共 2 门课程" in listing
    assert any("机器人编程" in b for b in mom.all_buttons())
    await mom.click("🔍 筛选")
    only_period_2 = FakeUser.texts(await mom.click("第二时段"))
    assert "共 1 门课程" in only_period_2 and "筛选：第二时段" in only_period_2
    card = FakeUser.texts(await mom.click(next(b for b in mom.all_buttons() if "机器人编程" in b)))
    for fact in (
        "机器人编程",
        "科技活动 · 第二时段",
        "时间：周一 16:40–17:40",
        "创客教室",
        "承办：学校",
        "1–6 年级 · 班额 20",
        "名额：剩余 20 个",
        "免费",
    ):
        assert fact in card, fact
    confirm = FakeUser.texts(await mom.click("报名"))
    assert "为李小明报名这门课程" in confirm and "/withdraw" in confirm
    done = await mom.click("确认报名")
    assert "✅ 李小明已成功报名机器人编程，周一 16:40–17:40" in FakeUser.texts(done)
    # Monday has an interest activity, and it is science; no sports course yet.
    assert "· 还没有体育类课程。" in FakeUser.texts(done)
    assert "科技类" not in FakeUser.texts(done).split("其中包括科技和体育")[1]
    assert [b["text"] for b in done[-1].buttons()] == ["查看课表", "继续选课", "撤销"]
    assert await statuses(db) == {school.student_ids["李小明"]: ("enrolled", None)}


async def test_buttons_naming_another_family_s_child_change_nothing(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO")
    other: FakeUser = make_user(OTHER)
    xiaoming = school.student_ids["李小明"]
    for data in (
        f"cs:y:{xiaoming}:{course}",
        f"cs:s:{xiaoming}:{course}",
        f"cs:c:{xiaoming}:{course}:0:0:0:0",
        f"cs:l:{xiaoming}:0:0:0:0",
        "cs:y:abc:1",
        f"cs:y:{school.student_ids['张伟']}:999999",  # own child, a course of no school
    ):
        replies = await other.press(data)
        assert "不再有效" in alerts(replies), data
    assert await statuses(db) == {}
    async with db.transaction() as session:
        refused = (await session.scalars(select(AuditLog.action))).all()
    assert refused.count("enrolment.refused") == 6  # every refused press, malformed ones too


async def test_withdrawal_frees_a_seat_that_is_offered_and_accepted(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",), locale="en")
    course = await make_course(db, school, "ROBO", name="机器人编程", capacity=1)
    mom: FakeUser = make_user(MOM)
    other: FakeUser = make_user(OTHER, language_code="en")
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    full = FakeUser.texts(await other.press(f"cs:y:{school.student_ids['张伟']}:{course}"))
    assert "张伟 is on its waitlist at position 1 (Mon 4:40\u202fPM–5:40\u202fPM)" in full
    assert "1+N" not in full  # the advice follows an enrolment, not a waitlist place

    await mom.send("/withdraw")
    question = FakeUser.texts(await mom.click("李小明 · 机器人编程"))
    assert "退出机器人编程（周一 16:40–17:40）" in question and "免费" in question
    assert {"确认退出", "‹ 返回", "取消"} <= set(mom.all_buttons()[-3:])
    assert "李小明已退出机器人编程，周一 16:40–17:40" in FakeUser.texts(
        await mom.click("确认退出")
    )

    async with db.transaction() as session:
        (offer,) = (await session.scalars(select(Outbox).where(Outbox.kind == "seat_offer"))).all()
    assert offer.chat_id == OTHER and offer.priority == 1
    enrolment_id = int(offer.buttons[0][0]["data"].split(":")[1])  # type: ignore[index]
    # Mom cannot answer an offer made to another family.
    assert "不再有效" in alerts(await mom.press(f"of:{enrolment_id}:1"))
    answer = FakeUser.texts(await other.press(f"of:{enrolment_id}:1"))
    assert "Seat accepted: 张伟 is enrolled in 机器人编程, Mon 4:40\u202fPM" in answer
    xiaoming, zhangwei = school.student_ids["李小明"], school.student_ids["张伟"]
    assert await statuses(db) == {xiaoming: ("withdrawn", None), zhangwei: ("enrolled", None)}


async def test_people_without_children_are_told_politely(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    stranger: FakeUser = make_user(804)
    await add_member(db, school, 804, set())
    teacher: FakeUser = make_user(803)
    await add_member(db, school, 803, {Role.TEACHER})
    for command in ("/courses", "/signup", "/withdraw"):
        assert "孩子的家长" in FakeUser.texts(await stranger.send(command))
    assert "孩子的家长" in FakeUser.texts(await teacher.send("/withdraw"))
    assert await statuses(db) == {}


async def test_schedule_shows_the_week_the_history_and_a_calendar_file(
    make_user, db: Database, school: SchoolData, request_recorder
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    robo = await make_course(db, school, "ROBO", name="机器人编程", venue="创客教室", capacity=1)
    art = await make_course(db, school, "ART", name="国画", weekdays=0b0000100, capacity=1)
    async with db.transaction() as session:
        session.add_all(
            [  # a Monday holiday, and a Sunday that runs Monday's timetable
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=dt.date(2026, 10, 5),
                    kind=CalendarKind.HOLIDAY,
                ),
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=dt.date(2026, 10, 11),
                    kind=CalendarKind.WORKDAY,
                    runs_weekday=1,
                ),
            ]
        )
    other: FakeUser = make_user(OTHER)
    await other.press(f"cs:y:{school.student_ids['张伟']}:{art}")
    mom: FakeUser = make_user(MOM)
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{robo}")
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{art}")

    replies = await mom.send("/schedule")
    text = FakeUser.texts(replies)
    assert "李小明的一周课表" in text and "星期一" in text and "机器人编程 · 创客教室" in text
    assert "16:40–17:40 机器人编程" in text
    assert "国画候补：第 1 位" in text
    assert "报名成功（家长）" in text and "进入候补（家长）" in text
    # The calendar comes on request, not with every /schedule.
    assert not [c for c in replies if c.method == "sendDocument"]
    replies = await mom.click("📅 添加到手机日历")
    (document,) = [c for c in replies if c.method == "sendDocument"]
    name, content, _ = document.files["document"]
    assert name == "李小明的课表.ics"
    calendar = Calendar.from_ical(content)
    (event,) = calendar.walk("VEVENT")
    assert [str(z["tzid"]) for z in calendar.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    assert str(event["summary"]) == "机器人编程" and str(event["location"]) == "创客教室"
    assert event["rrule"]["FREQ"] == ["WEEKLY"] and event["rrule"]["BYDAY"] == ["MO"]
    # Signed up today: from the first Monday on or after today, not from the start of term.
    zone = ZoneInfo("Asia/Shanghai")
    first = max(utcnow().astimezone(zone).date(), dt.date(2026, 9, 1))
    first += dt.timedelta(days=(7 - first.weekday()) % 7)
    assert event["dtstart"].dt == dt.datetime.combine(first, dt.time(16, 40), zone)
    # Signed up before term began: from the first Monday of term, with the calendar's days.
    async with db.transaction() as session:
        await session.execute(
            update(Enrolment)
            .where(Enrolment.course_id == robo)
            .values(updated_at=dt.datetime(2026, 8, 20, tzinfo=dt.UTC))
        )
    replies = await mom.press(f"sc:i:{school.student_ids['李小明']}")
    (document,) = [c for c in replies if c.method == "sendDocument"]
    (event,) = Calendar.from_ical(document.files["document"][1]).walk("VEVENT")
    assert event["dtstart"].dt == dt.datetime(2026, 9, 7, 16, 40, tzinfo=zone)
    assert [d.dt.date() for d in event["exdate"].dts] == [dt.date(2026, 10, 5)]
    assert [d.dt.date() for d in event["rdate"].dts] == [dt.date(2026, 10, 11)]


async def test_a_lottery_course_takes_entries_and_the_draw_runs_once_at_close(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]

    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    chess = await make_course(db, school, "CHESS", name="围棋", allocation=Allocation.LOTTERY)
    mom: FakeUser = make_user(MOM)
    card = FakeUser.texts(await mom.press(f"cs:c:{school.student_ids['李小明']}:{chess}:0:0:0:0"))
    assert "摇号分配" in card
    entered = FakeUser.texts(await mom.press(f"cs:y:{school.student_ids['李小明']}:{chess}"))
    assert "已参加围棋（周一 16:40–17:40）的摇号，第 1 志愿" in entered
    assert "围棋摇号：第 1 志愿" in FakeUser.texts(await mom.send("/schedule"))

    async with db.transaction() as session:
        assert await lottery.run_due_draws(session, utcnow()) == []  # enrolment still open
        await session.execute(
            Term.__table__.update().values(enrolment_closes_at=utcnow() - dt.timedelta(minutes=1))
        )
    async with db.transaction() as session:
        assert await lottery.run_due_draws(session, utcnow()) == [school.term_id]
        assert await lottery.run_due_draws(session, utcnow()) == []  # once
        seed = (await session.scalars(select(LotteryDraw.seed))).one()
    assert await statuses(db) == {school.student_ids["李小明"]: ("enrolled", None)}
    async with db.transaction() as session:
        (told,) = (await session.scalars(select(Outbox).where(Outbox.kind == "draw_result"))).all()
    assert told.chat_id == MOM and told.params["seed"] == seed  # type: ignore[index]


async def test_a_course_below_its_minimum_is_cancelled_on_the_admin_s_word(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]

    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, 810, {Role.ADMIN})
    small = await make_course(db, school, "KITE", name="风筝", min_size=5)
    big = await make_course(db, school, "RUN", name="跑步", weekdays=0b10, min_size=1)
    mom: FakeUser = make_user(MOM)
    admin: FakeUser = make_user(810)
    for course in (small, big):
        await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    # While enrolment is open, no button cancels a course.
    assert "仍在报名中" in FakeUser.texts(await admin.press(f"ms:y:{small}"))
    async with db.transaction() as session:
        assert await enrolment.ask_about_small_courses(session, utcnow()) == []  # still open
        await session.execute(
            Term.__table__.update().values(enrolment_closes_at=utcnow() - dt.timedelta(hours=1))
        )
    async with db.transaction() as session:
        assert await enrolment.ask_about_small_courses(session, utcnow()) == [small]
    async with db.transaction() as session:
        await enrolment.ask_about_small_courses(session, utcnow())  # asked once only
        (question,) = (
            await session.scalars(select(Outbox).where(Outbox.kind == "small_course"))
        ).all()
    assert question.chat_id == 810 and question.buttons[0][0]["data"] == f"ms:c:{small}"  # type: ignore[index]

    assert "不再有效" in alerts(await mom.press(f"ms:c:{small}"))  # parents cannot decide
    async with db.transaction() as session:
        assert "course.refused" in (await session.scalars(select(AuditLog.action))).all()
    # Cancelling asks first, saying how many families lose their place; Back changes nothing.
    asked = FakeUser.texts(await admin.press(f"ms:c:{small}"))
    assert "确定取消风筝吗？1 个家庭将失去名额" in asked
    assert "少于开班最低人数" in FakeUser.texts(await admin.press(f"ms:b:{small}"))
    # A course at its minimum is not cancelled, whatever the button says.
    assert "没有低于开班最低人数" in FakeUser.texts(await admin.press(f"ms:y:{big}"))
    done = FakeUser.texts(await admin.press(f"ms:y:{small}"))
    assert "风筝已取消，正在通知 1 个家庭" in done
    assert "已经取消过了" in FakeUser.texts(await admin.press(f"ms:y:{small}"))
    async with db.transaction() as session:
        told = (
            await session.scalars(select(Outbox).where(Outbox.kind == "course_cancelled"))
        ).all()
        states = (await session.execute(select(Enrolment.course_id, Enrolment.status))).all()
    assert [m.chat_id for m in told] == [MOM]
    assert {c: str(s) for c, s in states} == {small: "cancelled", big: "enrolled"}
    history = FakeUser.texts(await mom.send("/schedule"))
    assert "课程取消（学校）" in history


async def test_withdrawal_and_leave_buttons_of_another_family_change_nothing(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO")
    mom: FakeUser = make_user(MOM)
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    async with db.transaction() as session:
        enrolment_id = (await session.scalars(select(Enrolment.id))).one()
    other: FakeUser = make_user(OTHER)
    for data in (
        f"wd:a:{enrolment_id}",
        f"wd:y:{enrolment_id}",
        f"lv:k:{school.student_ids['李小明']}",
    ):
        replies = await other.press(data)
        assert "不再有效" in alerts(replies), data
    assert await statuses(db) == {school.student_ids["李小明"]: ("enrolled", None)}
    async with db.transaction() as session:
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert actions.count("enrolment.refused") == 2  # the two withdrawal buttons
