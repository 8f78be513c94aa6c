"""docs/UX.md in the common screens: onboarding, /help, free text, class groups, toasts."""

from __future__ import annotations

from bot.features import FEATURES
from bot.services import invites
from storage.db import Database
from storage.models import Role
from tests.factories import SchoolData, add_member
from tests.harness import Call, FakeUser, RecordingRequest
from tests.test_onboarding import guardians, parent_code

GROUP = {"id": -100777, "type": "supergroup", "title": "三年级1班家长群"}
# What the welcome, /help and the letter promise is what exists: the list in bot.features, now
# with term-end ratings (/rate) as its last flow.
RATING_LINE = {"zh-hans": "学期末和孩子一起匿名评价每门课程", "en": "rate each course at term end"}


def methods(calls: list[Call]) -> list[str]:
    return [c.method for c in calls]


# ---------------------------------------------------------------------------------------------
# Free text


async def test_a_leave_typed_in_words_is_offered_the_leave_flow(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 300, {Role.PARENT}, children=("张伟",))
    parent: FakeUser = make_user(300)
    for typed in ("张伟明天请假", "今天要提前接", "能早接吗"):
        reply = FakeUser.texts(await parent.send(typed))
        assert "没有看懂" not in reply, typed
        assert "/leave" in reply and "请假" in reply, typed
    english: FakeUser = make_user(300, language_code="en")
    assert "/leave" in FakeUser.texts(await english.send("Zhang Wei is sick tomorrow"))


async def test_courses_and_schedule_in_words_get_a_button_that_opens_them(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 301, {Role.PARENT}, children=("张伟",))
    parent: FakeUser = make_user(301)
    await parent.send("我想给孩子选课")
    pressed = await parent.click("选课")
    assert methods(pressed).count("answerCallbackQuery") == 1
    opened = FakeUser.texts(pressed)
    assert opened == FakeUser.texts(await parent.send("/courses"))
    await parent.send("看一下课表")
    pressed = await parent.click("查看课表")
    assert methods(pressed).count("answerCallbackQuery") == 1  # Telegram refuses a second
    opened = FakeUser.texts(pressed)
    assert opened and opened == FakeUser.texts(await parent.send("/schedule"))
    english: FakeUser = make_user(301, language_code="en")
    await english.send("where is the timetable?")
    assert "View the week" in english.all_buttons()


async def test_anything_else_gets_the_commands_of_the_users_roles(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 302, {Role.PARENT}, children=("张伟",))
    await add_member(db, school, 303, {Role.TEACHER})
    parent: FakeUser = make_user(302)
    reply = FakeUser.texts(await parent.send("你好"))
    assert "没有看懂" in reply and "/leave" in reply and "/roster" not in reply
    teacher: FakeUser = make_user(303)
    reply = FakeUser.texts(await teacher.send("明天请假"))  # a teacher has no leave flow here
    assert "没有看懂" in reply and "/roster" in reply and "/leave" not in reply


# ---------------------------------------------------------------------------------------------
# Onboarding


async def test_the_privacy_notice_stays_and_the_first_screen_offers_next_steps(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    code = await parent_code(db, school, "张伟")
    parent: FakeUser = make_user(304)
    (notice,) = await parent.send(f"/start {code}")
    assert "/forget" in notice.text
    notice_id = notice.result["message_id"]
    consent = await parent.click("同意")
    # The notice keeps its text (only its buttons go); the answer is a new message.
    assert not [c for c in consent if c.method == "editMessageText"]
    assert [c.params["message_id"] for c in consent if c.method == "editMessageReplyMarkup"] == [
        notice_id
    ]
    question = [c for c in consent if c.method == "sendMessage"]
    assert len(question) == 1 and "同意" in question[0].text and "照片" in question[0].text
    done = await parent.click("可以出现孩子的照片")
    assert notice_id not in [c.params.get("message_id") for c in done]
    assert "张伟" in FakeUser.texts(done)
    assert {"选课", "查看课表"} <= {b["text"] for c in done for b in c.buttons()}
    assert await guardians(db) == [(304, school.student_ids["张伟"], True)]
    opened = FakeUser.texts(await parent.click("选课"))
    assert opened == FakeUser.texts(await parent.send("/courses"))


async def test_declining_keeps_the_notice_and_says_so_in_a_new_message(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    code = await parent_code(db, school, "张伟")
    parent: FakeUser = make_user(305, language_code="en")
    await parent.send(f"/start {code}")
    replies = await parent.click("I do not agree")
    assert "editMessageText" not in methods(replies)
    assert "Nothing was linked" in FakeUser.texts(replies)
    assert await guardians(db) == []


async def test_a_stranger_sending_a_parent_command_is_told_where_the_code_is(  # type: ignore[no-untyped-def]
    make_user, school: SchoolData
) -> None:
    stranger: FakeUser = make_user(306)
    for command in (
        "/leave",
        "/schedule",
        "/courses",
        "/signup",
        "/withdraw",
        "/photos",
        "/notices",
        "/mydata",
        "/forget",
    ):
        reply = FakeUser.texts(await stranger.send(command))
        assert "/start" in reply and "《致家长的一封信》" in reply and "邀请码" in reply, command
    # A mistyped code is checked against the same letter, by the same name.
    assert "《致家长的一封信》" in FakeUser.texts(await stranger.send("ABCD-EFGH-JKMN-PQRS"))
    english: FakeUser = make_user(307, language_code="en")
    reply = FakeUser.texts(await english.send("/leave"))
    assert "“Letter to parents”" in reply and "framed box" in reply


# ---------------------------------------------------------------------------------------------
# Only what exists


async def test_welcome_and_help_list_todays_features_and_nothing_else(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    for language, marker in (("zh-hans", "报名课后服务课程"), ("en", "after-school courses")):
        stranger: FakeUser = make_user(308, language_code=language)
        welcome = FakeUser.texts(await stranger.send("/start"))
        help_text = FakeUser.texts(await stranger.send("/help"))
        for text in (welcome, help_text):
            assert RATING_LINE[language] in text, text
            assert marker in text and text.count("• ") == len(FEATURES)


# ---------------------------------------------------------------------------------------------
# Toasts in the chosen language


async def test_toasts_follow_the_saved_language_not_telegrams(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 310, {Role.PARENT}, children=("张伟",), locale="en")
    parent: FakeUser = make_user(310, language_code="zh-hans")
    await parent.send("/photos")
    pressed = await parent.click("张伟: no photos · tap to allow")
    toast = next(c for c in pressed if c.method == "answerCallbackQuery")
    assert toast.params["text"] == "Saved."
    stale = (await parent.press("consent:yes"))[0]
    assert "no longer active" in stale.params["text"]
    # And the other way round: a Chinese choice in an English Telegram.
    await add_member(db, school, 311, {Role.PARENT}, children=("李小明",), locale="zh_CN")
    other: FakeUser = make_user(311, language_code="en")
    assert "不再有效" in (await other.press("consent:yes"))[0].params["text"]


# ---------------------------------------------------------------------------------------------
# A class group stays quiet


async def test_a_linked_member_is_answered_in_private_and_the_group_sees_nothing(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    await add_member(db, school, 312, {Role.PARENT}, children=("张伟",))
    in_group: FakeUser = make_user(312, chat=GROUP)
    assert await in_group.send("/schedule@kehou_test_bot") == []
    (private,) = request_recorder.sent_to(312)
    assert "三年级1班家长群" in private.text and "/schedule" in private.text
    # The private answer opens the flow with one tap.
    parent: FakeUser = make_user(312)
    opened = FakeUser.texts(await parent.click("查看课表"))
    assert opened == FakeUser.texts(await parent.send("/schedule"))
    # A conversation is handed over as a button that enters it.
    await in_group.send("/leave")
    handed = request_recorder.sent_to(312)[-1]
    assert [b["callback_data"] for b in handed.buttons()] == ["go:leave"]
    assert request_recorder.sent_to(GROUP["id"]) == []


async def test_a_stranger_gets_one_pointer_an_hour_that_opens_what_they_typed(  # type: ignore[no-untyped-def]
    make_user, school: SchoolData
) -> None:
    stranger: FakeUser = make_user(313, chat=GROUP)
    (pointer,) = await stranger.send("/leave@kehou_test_bot")
    assert pointer.buttons()[0]["url"] == "https://t.me/kehou_test_bot?start=leave"
    assert await stranger.send("/schedule") == []  # within the hour: silence
    other: FakeUser = make_user(314, chat=GROUP)
    assert len(await other.send("/mydata")) == 1  # the limit is per person


async def test_a_deep_link_with_an_intent_opens_that_flow(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 315, {Role.PARENT}, children=("张伟",))
    parent: FakeUser = make_user(315)
    assert FakeUser.texts(await parent.send("/start schedule")) == FakeUser.texts(
        await parent.send("/schedule")
    )
    assert FakeUser.texts(await parent.send("/start courses")) == FakeUser.texts(
        await parent.send("/courses")
    )
    (offer,) = await parent.send("/start leave")
    assert [b["callback_data"] for b in offer.buttons()] == ["go:leave"]
    assert FakeUser.texts(await parent.press("go:leave", offer)) == FakeUser.texts(
        await parent.send("/leave")
    )
    # A stranger following the same link learns how to link first.
    stranger: FakeUser = make_user(316)
    assert "《致家长的一封信》" in FakeUser.texts(await stranger.send("/start leave"))
    code = await parent_code(db, school, "李小红")
    assert "李小红" in FakeUser.texts(await stranger.send(invites.pretty(code)))


async def test_a_press_answered_before_the_loader_can_use_the_saved_language(  # type: ignore[no-untyped-def]
    app, make_user, db: Database, school: SchoolData
) -> None:
    from telegram import Update
    from telegram.ext import CallbackQueryHandler

    from bot.context import BotContext
    from handlers.common.loader import saved_translator

    async def early(update: Update, context: BotContext) -> None:
        # Like the sign-up acknowledgement: handler group -2, the member not loaded yet.
        assert update.callback_query is not None
        await update.callback_query.answer(saved_translator(update, context).gettext("Saved."))

    app.add_handler(CallbackQueryHandler(early, pattern=r"^early$"), group=-2)
    await add_member(db, school, 317, {Role.PARENT}, children=("张伟",), locale="en")
    parent: FakeUser = make_user(317, language_code="zh-hans")
    await parent.send("/help")  # any update: the account's choice is known from now on
    toast = (await parent.press("early"))[0]
    assert toast.method == "answerCallbackQuery" and toast.params["text"] == "Saved."
