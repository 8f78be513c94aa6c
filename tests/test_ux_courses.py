"""docs/UX.md's conventions on the course screens: what a parent, a teacher and the other
guardian see when browsing, signing up, joining a waitlist, answering an offer and withdrawing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot import wording
from bot.i18n import I18n
from handlers.common.keyboards import PAGE_MAX, ROW_WIDTH, width
from storage.db import Database
from storage.models import (
    AuditLog,
    Category,
    Enrolment,
    Outbox,
    OutboxStatus,
    Role,
)
from tests.factories import SchoolData, add_member
from tests.harness import Call, FakeUser, RecordingRequest
from tests.test_enrolment import make_course

MOM, DAD, OTHER, TEACHER = 830, 831, 832, 833  # 李小明's two guardians; 张伟's; a teacher
WEEKDAYS = 0b0011111
WEDNESDAY = 0b0000100


def rows_of(call: Call) -> list[list[dict[str, Any]]]:
    markup = call.params.get("reply_markup")
    if isinstance(markup, str):
        markup = json.loads(markup)
    return list(markup["inline_keyboard"]) if markup else []


def last_with_buttons(calls: list[Call]) -> Call:
    return next(c for c in reversed(calls) if rows_of(c))


def fits_a_phone(call: Call) -> None:
    """Convention 1: at most three buttons a row, no label wider than its share of the row."""
    for row in rows_of(call):
        labels = [b["text"] for b in row]
        assert len(row) <= 3 or all(len(label) <= 2 for label in labels), labels
        if len(row) > 1:  # a long label may have a row of its own
            assert max(width(label) for label in labels) * len(row) <= ROW_WIDTH, labels


async def two_guardians(db: Database, school: SchoolData) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明",))


async def outbox_rows(db: Database, kind: str) -> list[Outbox]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Outbox).where(Outbox.kind == kind))).all())


async def test_the_list_fits_a_phone_with_filters_behind_one_button(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    for n in range(PAGE_MAX + 2):
        await make_course(db, school, f"C{n:02d}", name=f"课程{n:02d}", capacity=5)
    for language, mom in (("zh", make_user(MOM)), ("en", make_user(MOM, language_code="en"))):
        listing = last_with_buttons(await mom.send("/courses"))
        content = [r for r in rows_of(listing) if r[0]["callback_data"].startswith("cs:c:")]
        assert len(content) == PAGE_MAX  # the rest on page 2
        assert sum(len(r) for r in rows_of(listing)) <= PAGE_MAX + 5  # paging, Filter, Cancel
        fits_a_phone(listing)
        filter_label = next(
            b["text"]
            for r in rows_of(listing)
            for b in r
            if b["callback_data"].startswith("cs:f:")
        )
        screen = last_with_buttons(await mom.click(filter_label))
        fits_a_phone(screen)  # the weekdays no longer break into "周/一" or "An/y/da/y"
        labels = [b["text"] for r in rows_of(screen) for b in r]
        assert labels[-1] in ("取消", "Cancel") and labels[-2] in ("‹ 返回", "‹ Back")
        if language == "zh":
            assert {"第一时段", "第二时段", "周一", "周五"} <= set(labels)
        else:
            assert {"Period 1", "Period 2", "Mon", "Fri"} <= set(labels)


async def test_a_family_with_two_children_can_go_back_to_the_choice_of_child(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明", "李小红"))
    await make_course(db, school, "C01", name="课程01", capacity=5)
    mom = make_user(MOM)
    choice = last_with_buttons(await mom.send("/courses"))
    assert "为哪个孩子办理" in choice.text
    listing = last_with_buttons(await mom.click("李小明"))
    assert "李小明可选的课程" in listing.text
    labels = [b["text"] for r in rows_of(listing) for b in r]
    assert labels[-2:] == ["‹ 返回", "取消"]
    fits_a_phone(listing)
    again = last_with_buttons(await mom.click("‹ 返回"))
    assert "为哪个孩子办理" in again.text
    assert {"李小明", "李小红"} <= {b["text"] for r in rows_of(again) for b in r}
    # A family with one child has nothing to go back to: the list ends with 取消.
    await add_member(db, school, DAD, {Role.PARENT}, ("李小红",))
    alone = last_with_buttons(await make_user(DAD).send("/courses"))
    assert [b["text"] for b in rows_of(alone)[-1]][-1] == "取消"
    assert "‹ 返回" not in [b["text"] for r in rows_of(alone) for b in r]


async def test_a_full_course_offers_the_waitlist_and_says_which_place(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO", name="机器人编程", capacity=1)
    other: FakeUser = make_user(OTHER)
    await other.press(f"cs:y:{school.student_ids['张伟']}:{course}")
    mom: FakeUser = make_user(MOM)
    card = await mom.press(f"cs:c:{school.student_ids['李小明']}:{course}:0:0:0:0")
    assert "名额：已满" in FakeUser.texts(card)
    assert "加入候补" in mom.all_buttons()[-3:] and "报名" not in mom.all_buttons()[-3:]
    confirm = await mom.click("加入候补")
    text = FakeUser.texts(confirm)
    assert "机器人编程名额已满" in text and "第 1 位" in text
    labels = [b["text"] for b in last_with_buttons(confirm).buttons()]
    assert labels == ["加入候补", "‹ 返回", "取消"]  # not 确认报名
    done = await mom.click("加入候补")
    text = FakeUser.texts(done)
    assert "李小明已加入候补，排第 1 位（周一 16:40–17:40）" in text
    assert "1+N" not in text  # the advice follows an enrolment only
    # The seat count speaks the language's plural: one seat left, in English.
    other_course = await make_course(db, school, "ART", name="剪纸", capacity=1, weekdays=0b10)
    en: FakeUser = make_user(OTHER, language_code="en")
    card = FakeUser.texts(
        await en.press(f"cs:c:{school.student_ids['张伟']}:{other_course}:0:0:0:0")
    )
    assert "Seats: 1 seat left" in card


async def test_a_clash_is_marked_in_the_list_and_named_on_the_card_and_refusal(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    art = await make_course(
        db,
        school,
        "ART",
        name="剪纸（非遗）",
        weekdays=WEDNESDAY,
        capacity=5,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
    )
    robo = await make_course(
        db,
        school,
        "ROBO",
        name="机器人编程",
        weekdays=WEDNESDAY | 1,
        capacity=5,
        starts_at=dt.time(17, 0),
        ends_at=dt.time(18, 0),
    )
    mom: FakeUser = make_user(MOM)
    child = school.student_ids["李小明"]
    await mom.press(f"cs:y:{child}:{art}")
    listing = await mom.send("/courses")
    labels = mom.all_buttons()
    assert any(b.startswith("⚠️ 机器人编程") for b in labels), labels
    assert any(b.startswith("✅ 剪纸（非遗）") for b in labels), labels
    assert "与李小明已选课程时间冲突" in FakeUser.texts(listing)
    card = FakeUser.texts(await mom.press(f"cs:c:{child}:{robo}:0:0:0:0"))
    assert "与李小明已选的剪纸（非遗）（周三 16:50–17:50）时间冲突" in card
    assert "报名" not in mom.all_buttons()[-2:]
    # Pressed anyway (an old confirm screen): the refusal names the course and day, with 返回.
    refusal = await mom.press(f"cs:s:{child}:{robo}")
    text = FakeUser.texts(refusal)
    assert "与李小明已选的剪纸（非遗）（周三 16:50–17:50）时间冲突" in text
    assert "‹ 返回" in [b["text"] for b in last_with_buttons(refusal).buttons()]
    refused = FakeUser.texts(await mom.press(f"cs:y:{child}:{robo}"))
    assert "剪纸（非遗）（周三 16:50–17:50）" in refused
    # Already registered: what is registered, and what to do about it.
    again = await mom.press(f"cs:s:{child}:{art}")
    assert "李小明已报名剪纸（非遗）（周三 16:50–17:50）" in FakeUser.texts(again)
    assert {"查看课表", "退出这门课程", "‹ 返回"} <= set(
        b["text"] for b in last_with_buttons(again).buttons()
    )


async def test_the_card_uses_the_shared_wording(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    course = await make_course(
        db,
        school,
        "HW",
        name="作业辅导",
        category=Category.HOMEWORK,
        period=1,
        grade_min=3,
        grade_max=3,
        weekdays=WEEKDAYS,
        capacity=None,
    )
    mom: FakeUser = make_user(MOM)
    card = FakeUser.texts(await mom.press(f"cs:c:{school.student_ids['李小明']}:{course}:0:0:0:0"))
    t = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
    assert f"{wording.category(t, Category.HOMEWORK)} · 第一时段" in card
    assert "时间：周一至周五 16:40–17:40" in card
    assert "3 年级" in card and "3–3" not in card
    assert "Period 1 · homework help" not in card and "homework help" not in card


async def test_sign_up_result_replaces_the_card_with_next_steps_and_no_toast(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await two_guardians(db, school)
    course = await make_course(db, school, "ROBO", name="机器人编程", capacity=5)
    mom: FakeUser = make_user(MOM)
    child = school.student_ids["李小明"]
    confirm = await mom.press(f"cs:s:{child}:{course}")
    replies = await mom.press(f"cs:y:{child}:{course}", confirm[-1])
    answers = [c for c in replies if c.method == "answerCallbackQuery"]
    assert len(answers) == 1 and not answers[0].params.get("text")  # no "正在报名…" left over
    (result,) = [c for c in replies if c.method == "editMessageText"]
    assert result.params["message_id"] == confirm[-1].result["message_id"]  # replaces it
    assert "李小明已成功报名机器人编程，周一 16:40–17:40" in result.text
    assert [b["text"] for b in result.buttons()] == ["查看课表", "继续选课", "撤销"]
    # The other guardian is told, in the outbox, with the course and its time.
    (told,) = await outbox_rows(db, "family_sign_up")
    assert told.chat_id == DAD and told.params["course"] == "机器人编程"  # type: ignore[index]
    # 查看课表 shows the week; 撤销 asks first, stating the consequence.
    week = FakeUser.texts(await mom.click("查看课表"))
    assert "李小明的一周课表" in week
    undo = await mom.press(result.buttons()[2]["callback_data"], result)
    assert "确定让李小明从" in FakeUser.texts(undo) and "候补名单上的下一位" in FakeUser.texts(
        undo
    )
    labels = [b["text"] for b in last_with_buttons(undo).buttons()]
    assert labels == ["确认退出", "‹ 返回", "取消"]
    assert "已关闭" in FakeUser.texts(await mom.click("取消"))
    async with db.transaction() as session:
        assert (await session.scalars(select(Enrolment.status))).one() == "enrolled"
    left = await mom.press(last_with_buttons(undo).buttons()[0]["callback_data"])
    assert "李小明已退出机器人编程，周一 16:40–17:40" in FakeUser.texts(left)
    assert [b["text"] for b in last_with_buttons(left).buttons()] == ["查看课表", "继续选课"]
    (withdrawn,) = await outbox_rows(db, "family_withdrawal")
    assert withdrawn.chat_id == DAD


async def test_one_plus_n_advice_is_the_same_after_sign_up_and_in_the_schedule(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    homework = await make_course(
        db,
        school,
        "HW",
        name="作业辅导",
        category=Category.HOMEWORK,
        period=1,
        weekdays=WEEKDAYS,
        starts_at=dt.time(15, 40),
        ends_at=dt.time(16, 30),
        capacity=None,
    )
    full = await make_course(
        db, school, "BALL", name="篮球", category=Category.SPORTS, weekdays=0b10, capacity=1
    )
    science = await make_course(db, school, "ROBO", name="机器人编程", capacity=5)
    other: FakeUser = make_user(OTHER)
    await other.press(f"cs:y:{school.student_ids['张伟']}:{full}")
    mom: FakeUser = make_user(MOM)
    child = school.student_ids["李小明"]
    await mom.press(f"cs:y:{child}:{homework}")
    waitlisted = FakeUser.texts(await mom.press(f"cs:y:{child}:{full}"))
    assert "1+N" not in waitlisted
    done = FakeUser.texts(await mom.press(f"cs:y:{child}:{science}"))
    advice = done[done.index("💡") :]
    assert "· 周二至周五还没有兴趣活动。" in advice  # the waitlist place is not counted
    assert "· 还没有体育类课程。" in advice and "科技类课程" not in advice
    assert "（没有" not in advice
    week = FakeUser.texts(await mom.send("/schedule"))
    assert advice in week  # one function, one verdict


async def test_an_offer_answered_by_one_guardian_updates_the_other_s_copy(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await two_guardians(db, school)
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO", name="机器人编程", capacity=1)
    other: FakeUser = make_user(OTHER)
    await other.press(f"cs:y:{school.student_ids['张伟']}:{course}")
    mom: FakeUser = make_user(MOM)
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    await other.send("/withdraw")
    await other.click("张伟 · 机器人编程")
    await other.click("确认退出")
    offers = await outbox_rows(db, "seat_offer")
    assert sorted(o.chat_id for o in offers) == [MOM, DAD]
    # Dad's copy was delivered (message 4242); Mom's is what she presses.
    async with db.transaction() as session:
        await session.execute(
            update(Outbox)
            .where(Outbox.kind == "seat_offer")
            .values(status=OutboxStatus.SENT, message_id=4242)
        )
    enrolment_id = int(offers[0].buttons[0][0]["data"].split(":")[1])  # type: ignore[index]
    replies = await mom.press(f"of:{enrolment_id}:1")
    assert "已接受名额：李小明已报名机器人编程，周一 16:40–17:40" in FakeUser.texts(replies)
    (edit,) = [c for c in request_recorder.of("editMessageText") if c.chat_id == DAD]
    assert int(edit.params["message_id"]) == 4242
    assert "已由李小明的另一位家长接受" in edit.text and not edit.buttons()
    (told,) = await outbox_rows(db, "family_offer")
    assert told.chat_id == DAD
    # Dad presses his old copy anyway: told what happened, nothing changes.
    dad: FakeUser = make_user(DAD)
    late = FakeUser.texts(await dad.press(f"of:{enrolment_id}:0"))
    assert "已经接受过了" in late


async def test_an_offer_copy_not_sent_yet_is_withdrawn_and_a_gone_copy_is_no_error(
    make_user: Any, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await two_guardians(db, school)
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO", name="机器人编程", capacity=1)
    await make_user(OTHER).press(f"cs:y:{school.student_ids['张伟']}:{course}")
    mom: FakeUser = make_user(MOM)
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    other: FakeUser = make_user(OTHER)
    await other.send("/withdraw")
    await other.click("张伟 · 机器人编程")
    await other.click("确认退出")
    offers = await outbox_rows(db, "seat_offer")
    enrolment_id = int(offers[0].buttons[0][0]["data"].split(":")[1])  # type: ignore[index]
    request_recorder.fail_next("editMessageText", "Bad Request: message to edit not found")
    replies = await mom.press(f"of:{enrolment_id}:0")
    assert "您已放弃机器人编程（周一 16:40–17:40）为李小明保留的名额" in FakeUser.texts(replies)
    statuses = {o.chat_id: o.status for o in await outbox_rows(db, "seat_offer")}
    assert statuses[DAD] is OutboxStatus.CANCELLED  # no live buttons arrive later
    assert not [c for c in request_recorder.of("editMessageText") if c.chat_id == DAD]


async def test_teachers_browse_read_only(make_user: Any, db: Database, school: SchoolData) -> None:
    await add_member(db, school, TEACHER, {Role.TEACHER})
    course = await make_course(db, school, "ROBO", name="机器人编程", grade_min=7, grade_max=9)
    teacher: FakeUser = make_user(TEACHER)
    listing = FakeUser.texts(await teacher.send("/courses"))
    assert "本学期课程（仅供查看）" in listing
    card = FakeUser.texts(
        await teacher.click(next(b for b in teacher.all_buttons() if "机器人编程" in b))
    )
    assert "7–9 年级" in card
    assert teacher.all_buttons()[-2:] == ["‹ 返回", "取消"]  # no sign-up, no child to choose
    refused = await teacher.press(f"cs:s:0:{course}")
    assert "不再有效" in json.dumps([c.params for c in refused], ensure_ascii=False)
    async with db.transaction() as session:
        assert (await session.scalars(select(AuditLog.action))).all() == ["enrolment.refused"]


async def test_the_calendar_of_another_family_s_child_is_refused(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, OTHER, {Role.PARENT}, ("张伟",))
    course = await make_course(db, school, "ROBO")
    mom: FakeUser = make_user(MOM)
    await mom.press(f"cs:y:{school.student_ids['李小明']}:{course}")
    replies = await make_user(OTHER).press(f"sc:i:{school.student_ids['李小明']}")
    assert not [c for c in replies if c.method == "sendDocument"]
    async with db.transaction() as session:
        assert (await session.scalars(select(AuditLog.action))).all() == ["timetable.refused"]
