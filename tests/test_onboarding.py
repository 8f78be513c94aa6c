"""Onboarding through the real handlers: /start, codes, consent, /help, /language, privacy."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from bot.context import KehouApplication
from bot.services import invites
from storage.db import Database
from storage.models import Guardianship, Role, User
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser, RecordingRequest


async def parent_code(db: Database, school: SchoolData, child: str = "李小明") -> str:
    async with db.transaction() as session:
        return await invites.create_invite(
            session,
            school_id=school.school_id,
            role=Role.PARENT,
            student_id=school.student_ids[child],
            ttl=invites.FAILURE_WINDOW * 100,
        )


async def staff_code(db: Database, school: SchoolData, role: Role) -> str:
    async with db.transaction() as session:
        return await invites.create_invite(
            session,
            school_id=school.school_id,
            role=role,
            teacher_id=school.teacher_id if role is Role.TEACHER else None,
            ttl=invites.FAILURE_WINDOW * 100,
        )


async def guardians(db: Database) -> list[tuple[int, int, bool]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(User.telegram_id, Guardianship.student_id, Guardianship.photo_consent).join(
                User, User.id == Guardianship.user_id
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_stranger_is_welcomed_and_asked_for_a_code(make_user, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    parent: FakeUser = make_user(100)
    replies = await parent.send("/start")
    text = FakeUser.texts(replies)
    assert "课后" in text and "邀请码" in text


async def test_deep_link_consent_and_photo_choice_link_the_child(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData, request_recorder: RecordingRequest
) -> None:
    code = await parent_code(db, school)
    parent: FakeUser = make_user(101)
    notice = FakeUser.texts(await parent.send(f"/start {code}"))
    assert "李小明" in notice and "三年级1班" in notice and "/forget" in notice
    assert await guardians(db) == []  # nothing is linked before consent

    await parent.click("同意")
    assert await guardians(db) == []
    done = FakeUser.texts(await parent.click("不同意出现孩子的照片"))
    assert "李小明" in done
    assert await guardians(db) == [(101, school.student_ids["李小明"], False)]
    # The parent's chat now has a parent's menu, with /mydata in it.
    menus = [c for c in request_recorder.of("setMyCommands") if "scope" in c.params]
    assert "mydata" in json.dumps(menus[-1].params["commands"])


async def test_declining_the_notice_links_nothing(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    code = await parent_code(db, school)
    parent: FakeUser = make_user(102)
    await parent.send(f"/start {code}")
    reply = FakeUser.texts(await parent.click("不同意"))
    assert "没有" in reply
    assert await guardians(db) == []
    # The code is still unused: the parent can change their mind.
    await parent.send(code)
    await parent.click("同意")
    await parent.click("可以出现孩子的照片")
    assert await guardians(db) == [(102, school.student_ids["李小明"], True)]


async def test_typed_code_in_english(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    code = await parent_code(db, school, "李小红")
    parent: FakeUser = make_user(103, language_code="en")
    assert "invite code" in FakeUser.texts(await parent.send("/start"))
    notice = FakeUser.texts(await parent.send(invites.pretty(code).lower()))
    assert "李小红" in notice and "Do you agree?" in notice
    await parent.click("I agree")
    reply = FakeUser.texts(await parent.click("No photos of my child"))
    assert "now linked to 李小红" in reply


async def test_wrong_codes_get_a_polite_answer_then_a_throttle(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    code = await staff_code(db, school, Role.ADMIN)
    stranger: FakeUser = make_user(104, language_code="en")
    await stranger.send("/start")
    for _ in range(invites.MAX_FAILURES):
        assert "not a valid invite code" in FakeUser.texts(
            await stranger.send("ABCD-EFGH-JKMN-PQRS")
        )
    assert "Too many wrong codes" in FakeUser.texts(await stranger.send(f"/start {code}"))
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_teacher_and_admin_codes_grant_roles(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    teacher: FakeUser = make_user(105)
    reply = FakeUser.texts(
        await teacher.send(f"/start {await staff_code(db, school, Role.TEACHER)}")
    )
    assert "教师" in reply
    # The same account also becomes an admin: roles add up.
    await teacher.send(f"/start {await staff_code(db, school, Role.ADMIN)}")
    help_text = FakeUser.texts(await teacher.send("/help"))
    assert "教师" in help_text and "管理员" in help_text


async def test_help_depends_on_role(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 106, {Role.PARENT}, children=("李小明",))
    parent: FakeUser = make_user(106, language_code="en")
    stranger: FakeUser = make_user(107, language_code="en")
    assert "/mydata" in FakeUser.texts(await parent.send("/help"))
    stranger_help = FakeUser.texts(await stranger.send("/help"))
    assert "/mydata" not in stranger_help and "not linked" in stranger_help


async def test_language_switch_is_saved(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 108, {Role.PARENT}, children=("李小明",))
    parent: FakeUser = make_user(108)
    await parent.send("/language")
    assert "Language set to English" in FakeUser.texts(await parent.click("English"))
    async with db.transaction() as session:
        assert await session.scalar(select(User.locale).where(User.telegram_id == 108)) == "en"
    # Telegram says Chinese, the saved choice says English: the saved choice wins.
    assert "What I can do" in FakeUser.texts(await parent.send("/help"))
    await parent.send("/language")
    assert "简体中文" in FakeUser.texts(await parent.click("简体中文"))


async def test_forged_language_button_changes_nothing(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 109, {Role.PARENT}, locale="en")
    parent: FakeUser = make_user(109)
    replies = await parent.press("lang:fr")
    assert any(c.method == "answerCallbackQuery" and c.params.get("show_alert") for c in replies)
    async with db.transaction() as session:
        assert await session.scalar(select(User.locale).where(User.telegram_id == 109)) == "en"


async def test_stale_consent_button_is_answered(make_user, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    stranger: FakeUser = make_user(110)
    replies = await stranger.press("consent:yes")
    assert [c.method for c in replies] == ["answerCallbackQuery"]
    assert "不再有效" in replies[0].params["text"]


async def test_group_commands_point_to_the_private_chat(make_user, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    group = {"id": -100123, "type": "supergroup", "title": "三年级1班家长群"}
    parent: FakeUser = make_user(111, chat=group)
    replies = await parent.send("/mydata@kehou_test_bot")
    assert len(replies) == 1
    # The link opens what was asked for, not /help.
    assert replies[0].buttons()[0]["url"] == "https://t.me/kehou_test_bot?start=mydata"


async def test_mydata_sends_summary_and_file(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    await add_member(
        db, school, 112, {Role.PARENT}, children=("李小明", "李小红"), photo_consent=True
    )
    parent: FakeUser = make_user(112)
    replies = await parent.send("/mydata")
    assert "李小明" in replies[0].text and "李小红" in replies[0].text
    document = [c for c in replies if c.method == "sendDocument"]
    assert len(document) == 1
    payload = document[0].files["document"]
    data = json.loads(payload[1] if isinstance(payload, tuple) else payload.input_file_content)
    assert sorted(c["name"] for c in data["children"]) == ["李小明", "李小红"]
    assert data["telegram_id"] == 112


async def test_forget_unlinks_and_deletes(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 113, {Role.PARENT}, children=("李小明",))
    await add_member(db, school, 114, {Role.PARENT, Role.TEACHER}, children=("李小红",))
    parent: FakeUser = make_user(113, language_code="en")
    await parent.send("/forget")
    assert "Nothing was deleted" in FakeUser.texts(await parent.click("No, keep everything"))
    assert len(await guardians(db)) == 2
    await parent.send("/forget")
    assert "deleted" in FakeUser.texts(await parent.click("Yes, delete my data"))
    teacher: FakeUser = make_user(114, language_code="en")
    await teacher.send("/forget")
    assert "staff account stays" in FakeUser.texts(await teacher.click("Yes, delete my data"))
    assert await guardians(db) == []
    async with db.transaction() as session:
        assert list(await session.scalars(select(User.telegram_id))) == [114]
    # The forgotten parent is a stranger again.
    assert "not linked" in FakeUser.texts(await parent.send("/help"))


async def test_a_crash_in_a_handler_gets_an_apology_with_a_reference(  # type: ignore[no-untyped-def]
    app: KehouApplication, make_user, school: SchoolData, caplog
) -> None:
    from telegram.ext import CommandHandler

    async def broken(update: object, context: object) -> None:
        raise RuntimeError("boom")

    app.add_handler(CommandHandler("boom", broken), group=-2)
    app.errors_expected = True  # type: ignore[attr-defined]
    user: FakeUser = make_user(115, language_code="en")
    replies = await user.send("/boom")
    apology = next(c.text for c in replies if "Sorry, something went wrong" in c.text)
    reference = apology.rsplit(" ", 1)[-1]
    assert f"error {reference}" in caplog.text and "RuntimeError: boom" in caplog.text


async def test_photo_choice_can_be_changed_later(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await add_member(db, school, 116, {Role.PARENT}, children=("李小明",), photo_consent=False)
    parent: FakeUser = make_user(116, language_code="en")
    replies = await parent.send("/photos")
    assert [b["text"] for b in replies[0].buttons()] == ["李小明: no photos · tap to allow"]
    edited = await parent.click("李小明: no photos · tap to allow")
    assert any(c.method == "editMessageText" and c.buttons() for c in edited)
    assert await guardians(db) == [(116, school.student_ids["李小明"], True)]


async def test_photo_button_for_someone_elses_child_changes_nothing(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 117, {Role.PARENT}, children=("李小明",), photo_consent=False)
    await add_member(db, school, 118, {Role.PARENT}, children=("张伟",), photo_consent=False)
    intruder: FakeUser = make_user(118, language_code="en")
    replies = await intruder.press(f"photo:{school.student_ids['李小明']}:1")
    assert [c.method for c in replies] == ["answerCallbackQuery"]
    assert replies[0].params["show_alert"] is True
    assert (await intruder.press("photo:not-a-number:1"))[0].params["show_alert"] is True
    assert sorted(await guardians(db)) == [
        (117, school.student_ids["李小明"], False),
        (118, school.student_ids["张伟"], False),
    ]


async def test_a_member_can_link_another_child_without_start(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    await add_member(db, school, 119, {Role.PARENT}, children=("李小明",))
    parent: FakeUser = make_user(119, language_code="en")
    assert "Welcome back" in FakeUser.texts(await parent.send("/start"))
    # Ordinary text after /start is not taken for a code.
    assert "did not understand" in FakeUser.texts(await parent.send("hello"))
    assert "did not understand" in FakeUser.texts(await parent.send("/nosuchcommand"))
    code = await parent_code(db, school, "张伟")
    assert "张伟" in FakeUser.texts(await parent.send(invites.pretty(code)))
    await parent.click("I agree")
    await parent.click("Yes, photos are fine")
    assert sorted(s for t, s, _ in await guardians(db) if t == 119) == sorted(
        [school.student_ids["李小明"], school.student_ids["张伟"]]
    )
