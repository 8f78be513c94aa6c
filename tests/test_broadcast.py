"""/broadcast, /broadcasts, the confirm button, /notices and digests, through the handlers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, update

from bot import broadcasting
from bot.context import KehouApplication
from bot.i18n import I18n
from bot.services import broadcasts, members, outbox
from bot.services.broadcasts import Audience, AudienceKind, Notice, Refused
from bot.services.outbox import NewMessage
from storage.db import Database
from storage.models import (
    AuditLog,
    Broadcast,
    BroadcastStatus,
    NoticeMode,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    SchoolClass,
    User,
    UserRole,
    utcnow,
)
from tests.factories import SchoolData, add_member, make_school
from tests.harness import Call, FakeUser

ADMIN, MOM, DAD, OTHER, TEACHER = 700, 701, 702, 703, 704
ELSEWHERE = 705  # an admin of another school
NOT_ADMIN = "只有学校的课后服务管理员"  # "Only the school's after-school admins can send …"
INACTIVE = "此按钮已不再有效"  # "This button is no longer active."
CST = ZoneInfo("Asia/Shanghai")
MORNING = dt.datetime(2026, 12, 2, 10, 0, tzinfo=CST)


async def people(db: Database, school: SchoolData) -> dict[int, int]:
    """An admin, two parents of 李小明 (三年级1班), a parent in 七年级2班, a teacher."""
    return {
        ADMIN: await add_member(db, school, ADMIN, {Role.ADMIN}),
        MOM: await add_member(db, school, MOM, {Role.PARENT}, ("李小明",)),
        DAD: await add_member(db, school, DAD, {Role.PARENT}, ("李小明", "张伟"), locale="en"),
        OTHER: await add_member(db, school, OTHER, {Role.PARENT}, ("李小红",)),
        TEACHER: await add_member(db, school, TEACHER, {Role.TEACHER}),
    }


async def rows(db: Database) -> list[Outbox]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Outbox).order_by(Outbox.chat_id))).all())


async def audit_actions(db: Database) -> list[str]:
    async with db.transaction() as session:
        return list((await session.scalars(select(AuditLog.action))).all())


def draft_id(person: FakeUser) -> str:
    """The draft id in the newest broadcast keyboard this person was shown."""
    for call in reversed(person.request.sent_to(person.id)):
        for button in call.buttons():
            if button.get("callback_data", "").startswith("bc:"):
                return str(button["callback_data"].split(":")[2])
    raise AssertionError("no broadcast keyboard shown")


async def test_admin_sends_a_notice_to_one_class_with_a_confirm_button(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    assert "通知内容" in FakeUser.texts(await admin.send("/broadcast"))
    assert "发给谁" in FakeUser.texts(await admin.send("明天下午<b>停课</b>"))
    await admin.click("班级")
    assert "可选一个或多个" in FakeUser.texts(await admin.click("三年级1班"))
    # Both parents of 李小明 are one family.
    preview = FakeUser.texts(await admin.click("下一步（1 个班）"))
    assert "发给：三年级1班家长 · 1 个家庭 · 2 位家长" in preview
    assert "确认收到按钮：关" in preview and "选择晚间汇总的家庭会在汇总中看到" in preview
    preview = FakeUser.texts(await admin.click("⬜ 请对方点击“确认收到”"))
    assert "确认收到按钮：开" in preview and "会立即发给每个家庭" in preview
    question = FakeUser.texts(await admin.click("立即发送"))
    assert "现在把这条通知发给三年级1班家长（1 个家庭 · 2 位家长）？" in question
    assert await rows(db) == []  # nothing goes out before the confirm step
    status = FakeUser.texts(await admin.click("✅ 确认发送"))
    assert "通知 #" in status and "接收人 2" in status and "排队 2" in status

    queued = await rows(db)
    assert [r.chat_id for r in queued] == [MOM, DAD]
    assert all(r.status is OutboxStatus.PENDING and r.kind == "broadcast" for r in queued)
    params = queued[0].params or {}
    assert params["html"] == "明天下午&lt;b&gt;停课&lt;/b&gt;"  # typed tags are text, not HTML
    assert params["school"] == "河清实验学校" and queued[0].template == broadcasts.NOTICE_TEMPLATE
    assert queued[0].buttons == [[{"label": "✅ Got it", "data": f"ack:{queued[0].broadcast_id}"}]]
    assert "broadcast.create" in await audit_actions(db)


async def test_people_who_are_not_admins_cannot_broadcast(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    for telegram_id in (MOM, TEACHER):
        person: FakeUser = make_user(telegram_id)
        assert "只有学校的课后服务管理员" in FakeUser.texts(await person.send("/broadcast"))
        assert "只有" in FakeUser.texts(await person.send("/broadcasts"))
        # A forged press of a preview button does nothing either.
        replies = await person.press("bc:send")
        assert await rows(db) == []
        assert replies  # answered, politely
    # An admin who lost the role mid-draft cannot finish it.
    admin: FakeUser = make_user(ADMIN)
    await admin.send("/broadcast")
    await admin.send("通知")
    async with db.transaction() as session:
        await session.execute(delete(UserRole).where(UserRole.user_id == ids[ADMIN]))
    before = await audit_count(db)
    pressed = f"bc:a:{draft_id(admin)}:parents"
    replies = await admin.press(pressed)
    assert NOT_ADMIN in json.dumps([c.params for c in replies], ensure_ascii=False)
    assert await rows(db) == []
    # The preview's service refused it, and recorded that once.
    assert await audit_since(db, before) == [("broadcast.refused", ids[ADMIN], pressed)]
    # The conversation is over: the draft's other buttons change nothing either.
    again = await admin.press(f"bc:v:{pressed.split(':')[2]}:grade:3")
    assert NOT_ADMIN in json.dumps([c.params for c in again], ensure_ascii=False)
    assert await rows(db) == [] and await broadcast_rows(db) == []


async def audit_count(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


async def audit_since(db: Database, count: int) -> list[tuple[str, int | None, str | None]]:
    """The audit rows written after the first `count`: action, actor, the press's data."""
    async with db.transaction() as session:
        found = await session.execute(
            select(AuditLog.action, AuditLog.actor_user_id, AuditLog.details)
            .order_by(AuditLog.id)
            .offset(count)
        )
        return [(a, actor, (d or {}).get("callback_data")) for a, actor, d in found.all()]


async def everything(db: Database) -> tuple[list[Any], list[Any]]:
    """What a broadcast press could change: the broadcasts and their outbox rows."""
    async with db.transaction() as session:
        found = await session.execute(
            select(
                Broadcast.id,
                Broadcast.status,
                Broadcast.held_at,
                Broadcast.started_at,
                Broadcast.cancelled_at,
                Broadcast.recipients,
            ).order_by(Broadcast.id)
        )
        messages = await session.execute(
            select(Outbox.id, Outbox.status, Outbox.acknowledged_at).order_by(Outbox.id)
        )
        return [tuple(r) for r in found.all()], [tuple(r) for r in messages.all()]


async def one_of_each(db: Database, school: SchoolData, admin: int) -> dict[str, int]:
    """A broadcast scheduled for later, one held (it was due while Kehou was down) and one
    sent with a confirm button; and a class, for audience presses."""
    async with db.transaction() as session:
        made = {}
        for name, ack, scheduled_for in (
            ("scheduled", False, utcnow() + dt.timedelta(hours=1)),
            ("held", False, utcnow() + dt.timedelta(hours=1)),
            ("sent", True, None),
        ):
            broadcast = await broadcasts.create(
                session,
                school.school_id,
                sender_user_id=admin,
                text=f"通知 {name}",
                audience=Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
                ack=ack,
                scheduled_for=scheduled_for,
            )
            made[name] = broadcast.id
        await session.execute(
            update(Broadcast).where(Broadcast.id == made["held"]).values(held_at=utcnow())
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    return made | {"class": school.class_ids["3-1"]}


FORGED = [
    ("bl:cancel:{scheduled}", NOT_ADMIN),
    ("bl:unack:{sent}", NOT_ADMIN),
    ("lb:s:{held}", INACTIVE),
    ("lb:c:{held}", INACTIVE),
    ("bc:v:0a1b2c3d:class:{class}", NOT_ADMIN),
]


@pytest.mark.parametrize("who", [MOM, TEACHER])
@pytest.mark.parametrize(("data", "says"), FORGED)
async def test_a_forged_broadcast_press_changes_nothing_and_is_recorded_once(
    who: int, data: str, says: str, make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    """A parent or a teacher presses an admin's button they were never shown."""
    ids = await people(db, school)
    pressed = data.format(**await one_of_each(db, school, ids[ADMIN]))
    before, count = await everything(db), await audit_count(db)
    replies = await make_user(who).press(pressed)
    assert [c.method for c in replies] == ["answerCallbackQuery"]  # nothing sent or edited
    assert replies[0].params["show_alert"] is True and says in replies[0].params["text"]
    assert await audit_since(db, count) == [("broadcast.refused", ids[who], pressed)]
    assert await everything(db) == before


@pytest.mark.parametrize(("data", "says"), FORGED[:4])
async def test_an_admin_of_another_school_cannot_touch_this_schools_broadcasts(
    data: str, says: str, make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    elsewhere = await add_member(db, await make_school(db, "other"), ELSEWHERE, {Role.ADMIN})
    pressed = data.format(**await one_of_each(db, school, ids[ADMIN]))
    before, count = await everything(db), await audit_count(db)
    replies = await make_user(ELSEWHERE).press(pressed)
    assert [c.method for c in replies] == ["answerCallbackQuery"]
    assert INACTIVE in replies[0].params["text"]  # an admin: the id is what is refused
    assert await audit_since(db, count) == [("broadcast.refused", elsewhere, pressed)]
    assert await everything(db) == before
    # Nor can they pick one of its classes for their own notice.
    admin: FakeUser = make_user(ELSEWHERE)
    await admin.send("/broadcast")
    await admin.send("通知")
    forged = f"bc:v:{draft_id(admin)}:class:{school.class_ids['3-1']}"
    replies = await admin.press(forged)
    assert INACTIVE in json.dumps([c.params for c in replies], ensure_ascii=False)
    assert (await audit_since(db, count))[1:] == [("broadcast.refused", elsewhere, forged)]
    assert await everything(db) == before


async def test_the_broadcast_services_refuse_a_member_who_is_no_admin(
    db: Database, school: SchoolData
) -> None:
    """Each service call asks the guard itself, whatever the handler checked before it."""
    ids = await people(db, school)
    made = await one_of_each(db, school, ids[ADMIN])
    before, count = await everything(db), await audit_count(db)
    async with db.transaction() as session:
        teacher = await members.find_member(session, TEACHER)
    class_3_1 = Audience(AudienceKind.CLASS, made["class"])
    calls = {
        "choices": lambda s, m: broadcasts.choices(s, m, AudienceKind.CLASS, pressed="x"),
        "preview": lambda s, m: broadcasts.preview(s, m, class_3_1, pressed="x"),
        "send": lambda s, m: broadcasts.send(s, m, Notice("停课", class_3_1), pressed="x"),
        "recent": lambda s, m: broadcasts.recent(s, m, pressed="x"),
        "stop": lambda s, m: broadcasts.stop(s, m, made["scheduled"], pressed="x"),
        "unconfirmed": lambda s, m: broadcasts.unconfirmed(s, m, made["sent"], pressed="x"),
        "release": lambda s, m: broadcasts.release(s, m, made["held"], utcnow(), pressed="x"),
    }
    for name, call in calls.items():
        for member in (teacher, None):  # None: an account no school knows
            async with db.transaction() as session:
                assert await call(session, member) is Refused.NOT_ADMIN, name
    # The teacher's refusals are in the school's log, once each; a stranger's in none.
    assert await audit_since(db, count) == [("broadcast.refused", ids[TEACHER], "x")] * len(calls)
    assert await everything(db) == before


async def test_forged_audience_ids_are_refused_and_recorded(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    await admin.send("/broadcast")
    await admin.send("通知")
    replies = await admin.press(f"bc:v:{draft_id(admin)}:class:99999")
    assert "不再有效" in FakeUser.texts(replies) or any(
        c.method == "answerCallbackQuery" for c in replies
    )
    assert "broadcast.refused" in await audit_actions(db)
    # The draft survives: a valid choice still works.
    preview = FakeUser.texts(await admin.press(f"bc:a:{draft_id(admin)}:parents"))
    assert "全体家长 · 2 个家庭 · 3 位家长" in preview


def button(calls: list[Call], label: str) -> tuple[str, Call]:
    """The data of the button with this label among these calls, and the message it is on."""
    for call in reversed(calls):
        for found in call.buttons():
            if found["text"] == label:
                return str(found["callback_data"]), call
    raise AssertionError(f"no button {label!r}")


async def broadcast_rows(db: Database) -> list[tuple[str, int, bool]]:
    async with db.transaction() as session:
        found = await session.execute(
            select(Broadcast.text, Broadcast.priority, Broadcast.ack_requested)
        )
        return [tuple(r) for r in found.all()]  # type: ignore[misc]


async def test_an_old_preview_acts_on_nothing_but_its_own_draft(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN, language_code="en")
    await admin.send("/broadcast")
    await admin.send("Draft A")
    preview_a = await admin.click("All parents")
    send_a, on_a = button(preview_a, "Send now")
    urgent_a, _ = button(preview_a, "⬜ Urgent (safety notice)")
    cancel_a, _ = button(preview_a, "Cancel")

    # Draft B replaces A; A's preview is still on screen. While B waits for its audience:
    await admin.send("/broadcast")
    await admin.send("Draft B")
    replies = await admin.press(send_a, on_a)
    assert "This preview is out of date" in json.dumps([c.params for c in replies])
    assert await broadcast_rows(db) == [] and await rows(db) == []

    # And once B's preview is up too: A's Send now, option and Cancel change nothing.
    preview_b = await admin.click("All parents")
    assert "Draft B" in FakeUser.texts(preview_b)
    for data in (send_a, urgent_a, cancel_a):
        replies = await admin.press(data, on_a)
        assert [c.method for c in replies] == ["answerCallbackQuery"]
        assert "This preview is out of date" in replies[0].params["text"]
    assert await broadcast_rows(db) == [] and await rows(db) == []

    # B is untouched: its own Send now sends B, with B's options.
    await admin.click("Send now")
    status = FakeUser.texts(await admin.click("✅ Send it"))
    assert "Recipients 3" in status
    assert await broadcast_rows(db) == [("Draft B", Priority.BULK, False)]  # not urgent
    assert {(r.params or {})["html"] for r in await rows(db)} == {"Draft B"}


async def test_every_audience_resolves_to_the_right_people(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school.class_ids["7-2"])
            .values(group_chat_id=-777)
        )

    async def chats(kind: AudienceKind, value: int | None = None) -> list[int]:
        async with db.transaction() as session:
            found = await broadcasts.recipients(session, school.school_id, Audience(kind, value))
        return sorted(r.chat_id for r in found)

    assert await chats(AudienceKind.PARENTS) == [MOM, DAD, OTHER]
    assert await chats(AudienceKind.GRADE, 7) == [OTHER]
    assert await chats(AudienceKind.CLASS, school.class_ids["3-1"]) == [MOM, DAD]
    assert await chats(AudienceKind.TEACHERS) == [TEACHER]
    assert await chats(AudienceKind.GROUPS) == [-777]
    assert await chats(AudienceKind.UNPAID) == []  # no bills yet
    assert await chats(AudienceKind.COURSE, 1) == []  # nobody enrolled yet
    assert ids[DAD] != ids[MOM]


async def test_confirm_button_records_each_recipient_once(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="家长会",
            audience=Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
            ack=True,
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    mom: FakeUser = make_user(MOM)
    replies = await mom.press(f"ack:{broadcast.id}")
    assert "谢谢，已确认" in json.dumps([c.params for c in replies], ensure_ascii=False)
    again = await mom.press(f"ack:{broadcast.id}")
    assert "已经确认过" in json.dumps([c.params for c in again], ensure_ascii=False)
    stranger: FakeUser = make_user(OTHER)
    refused = await stranger.press(f"ack:{broadcast.id}")
    assert "不是给您的" in json.dumps([c.params for c in refused], ensure_ascii=False)
    assert "broadcast.ack_refused" in await audit_actions(db)

    async with db.transaction() as session:
        figures = await broadcasts.progress(session, broadcast.id, ack=True)
        missing = await broadcasts.unacknowledged(session, school.school_id, broadcast.id)
    # Two people got it, one confirmed; they are 李小明's parents: one family, confirmed.
    assert (figures.sent, figures.acknowledged) == (2, 1)
    assert (figures.families, figures.confirmed) == (1, 1)
    assert missing == []

    # The admin's list shows the figures per family, and who has not confirmed.
    admin: FakeUser = make_user(ADMIN)
    listing = FakeUser.texts(await admin.send("/broadcasts"))
    assert "已确认 1 / 1 个家庭" in listing and "家长会" in listing
    await admin.click(f"#{broadcast.id}")
    names = FakeUser.texts(await admin.click("未确认名单"))
    assert f"收到通知 #{broadcast.id} 的家庭都已确认" in names


async def test_scheduled_broadcast_starts_on_time_and_can_be_cancelled(
    make_user, app: KehouApplication, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    await admin.send("/broadcast")
    await admin.send("周五演出")
    await admin.click("全体教师")
    await admin.click("定时发送")
    assert "没能识别" in FakeUser.texts(await admin.send("next friday"))
    assert "已经过了" in FakeUser.texts(await admin.send("2020-01-01 08:00"))
    status = FakeUser.texts(await admin.send("2099-01-01 08:00"))
    assert "90 天以内" in status
    tomorrow = (utcnow() + dt.timedelta(days=1)).astimezone(app.runtime.i18n.timezone)
    question = FakeUser.texts(await admin.send(tomorrow.strftime("%Y-%m-%d %H:%M")))
    assert "把这条通知发给全体教师（1 位教师）？" in question
    assert await broadcast_rows(db) == []  # not before the confirm step
    status = FakeUser.texts(await admin.click("✅ 确认定时"))
    assert "已定时" in status and "将于" in status
    assert await rows(db) == []  # nothing goes out before its time

    # Its time comes: the job starts it.
    async with db.transaction() as session:
        await session.execute(
            update(Broadcast).values(scheduled_for=utcnow() - dt.timedelta(minutes=1))
        )
        due = await broadcasts.due_scheduled(session, utcnow())
        assert len(due) == 1
        await broadcasts.start(session, due[0], utcnow())
    assert [r.chat_id for r in await rows(db)] == [TEACHER]

    # Cancelled before delivery: nothing more goes out.
    async with db.transaction() as session:
        cancelled = await broadcasts.cancel(session, school.school_id, due[0].id, ids[ADMIN])
        assert cancelled == broadcasts.Cancelled(broadcasts.Stop.STOPPED, sent=0)
    assert [r.status for r in await rows(db)] == [OutboxStatus.CANCELLED]
    assert "broadcast.cancel" in await audit_actions(db)


async def test_reping_reminds_only_families_that_have_not_confirmed(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="请交回执",
            audience=Audience(AudienceKind.PARENTS),
            ack=True,
            reping_hours=24,
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast.id).values(started_at=MORNING)
        )
        await broadcasts.acknowledge(session, broadcast.id, MOM)
    async with db.transaction() as session:
        assert await broadcasts.due_repings(session, MORNING + dt.timedelta(hours=23)) == []
        later = MORNING + dt.timedelta(hours=25)
        (due,) = await broadcasts.due_repings(session, later)
        # Mom confirmed for 李小明's family: Dad is not reminded; 李小红's parent is.
        assert await broadcasts.reping(session, due, later) == 1
        assert await broadcasts.due_repings(session, later) == []  # only once
    reminders = [r for r in await rows(db) if r.kind == "broadcast_reping"]
    assert sorted(r.chat_id for r in reminders) == [OTHER]


async def test_a_reminder_due_at_night_waits_for_the_morning(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    evening = dt.datetime(2026, 12, 2, 21, 30, tzinfo=CST)  # sent at 21:30, reminder after 24 h
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="请交回执",
            audience=Audience(AudienceKind.PARENTS),
            ack=True,
            reping_hours=24,
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
        await session.execute(
            update(Broadcast).where(Broadcast.id == broadcast.id).values(started_at=evening)
        )
    async with db.transaction() as session:
        # 21:30 the next evening is inside the quiet hours (21:00–07:00): not yet
        assert await broadcasts.due_repings(session, evening + dt.timedelta(hours=24)) == []
        morning = dt.datetime(2026, 12, 4, 7, 0, tzinfo=CST)
        assert await broadcasts.due_repings(session, morning - dt.timedelta(minutes=1)) == []
        (due,) = await broadcasts.due_repings(session, morning)
        assert await broadcasts.reping(session, due, morning) == 3


async def test_notices_choice_holds_messages_for_a_daily_digest(
    make_user, app: KehouApplication, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    dad: FakeUser = make_user(DAD, language_code="en")
    assert "Right now: each message as it comes." in FakeUser.texts(await dad.send("/notices"))
    assert "Right now: one daily digest." in FakeUser.texts(await dad.click("○ One daily digest"))
    async with db.transaction() as session:
        assert (await session.get(User, ids[DAD])).notice_mode is NoticeMode.DIGEST  # type: ignore[union-attr]
        await outbox.enqueue_many(
            session,
            school.school_id,
            [
                NewMessage(DAD, "update", user_id=ids[DAD], text="Art club: painting"),
                NewMessage(
                    DAD,
                    "update",
                    user_id=ids[DAD],
                    template="Language set to {language}.",
                    params={"language": "English"},
                ),
                NewMessage(
                    DAD, "alert", user_id=ids[DAD], priority=Priority.URGENT, text="Absent!"
                ),
            ],
        )
    assert [r.status for r in await rows(db)] == [
        OutboxStatus.HELD,
        OutboxStatus.HELD,
        OutboxStatus.PENDING,
    ]
    assert await broadcasting.build_digests(app.runtime, school.school_id, utcnow()) == 1
    stored = await rows(db)
    digest = next(r for r in stored if r.kind == "digest")
    assert digest.status is OutboxStatus.PENDING
    assert "2 messages" in (digest.text or "") and "Art club: painting" in (digest.text or "")
    assert "Language set to English." in (digest.text or "")  # rendered in Dad's language
    folded = [r for r in stored if r.status is OutboxStatus.DIGESTED]
    assert len(folded) == 2 and all(r.digest_id == digest.id for r in folded)
    # The digest itself is never held back, and nothing is left for the next one.
    assert await broadcasting.build_digests(app.runtime, school.school_id, utcnow()) == 0


async def test_admin_menu_lists_the_broadcast_commands(
    make_user, db: Database, school: SchoolData, request_recorder
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    text = FakeUser.texts(await admin.send("/help"))
    assert "/broadcast —" in text and "/broadcasts —" in text
    mom: FakeUser = make_user(MOM)
    text = FakeUser.texts(await mom.send("/help"))
    assert "/notices —" in text and "/broadcast " not in text


async def test_a_broadcast_finishes_while_some_parents_wait_for_their_digest(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        await session.execute(
            update(User).where(User.id == ids[DAD]).values(notice_mode=NoticeMode.DIGEST)
        )
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="周五演出",
            audience=Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
        )
        await session.execute(
            update(Outbox).where(Outbox.chat_id == MOM).values(status=OutboxStatus.SENT)
        )
        figures = await broadcasts.progress(session, broadcast.id)
        assert (figures.sent, figures.held, figures.queued) == (1, 1, 0)
        assert await broadcasts.finish(session, broadcast, figures, utcnow())
        (name,) = await broadcasts.audience_names(
            session, [Audience.from_json(broadcast.audience)]
        )
    t = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
    text = broadcasting.status_text(t, broadcasts.Summary.of(broadcast, name, figures))
    assert "三年级1班家长" in text
    assert "已完成" in text and "等待家长的每日汇总：1" in text


async def test_a_long_notice_is_previewed_shortened_and_sent_whole(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    notice = "\n".join(f"第{i}条：课后服务安排有变，请家长留意。" for i in range(200))  # ~4,000
    await admin.send("/broadcast")
    await admin.send(notice)
    preview = FakeUser.texts(await admin.click("全体教师"))
    assert len(preview) < 4096 and preview.endswith("…") and "第0条" in preview
    await admin.click("立即发送")
    await admin.click("✅ 确认发送")
    (row,) = await rows(db)
    assert (row.params or {})["html"] == notice


async def _scheduled_now(db: Database, school: SchoolData) -> tuple[int, int]:
    ids = await people(db, school)
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="周五演出",
            audience=Audience(AudienceKind.PARENTS),
            scheduled_for=utcnow() + dt.timedelta(hours=1),
        )
        await session.execute(
            update(Broadcast).values(scheduled_for=utcnow() - dt.timedelta(seconds=1))
        )
    return broadcast.id, ids[ADMIN]


async def test_a_cancel_just_before_the_tick_starts_it_sends_nothing(
    db: Database, school: SchoolData
) -> None:
    broadcast_id, admin = await _scheduled_now(db, school)
    async with db.transaction() as tick:
        (due,) = await broadcasts.due_scheduled(tick, utcnow())  # the tick has read the row
        async with db.transaction() as press:  # the admin's cancel commits in between
            result = await broadcasts.cancel(press, school.school_id, broadcast_id, admin)
        assert result == broadcasts.Cancelled(broadcasts.Stop.CANCELLED)
        assert await broadcasts.start(tick, due, utcnow()) is None  # it lost: writes nothing
    assert await rows(db) == []
    async with db.transaction() as session:
        found = await session.get(Broadcast, broadcast_id)
        assert found is not None and found.status is BroadcastStatus.CANCELLED


async def test_a_cancel_just_after_the_tick_started_it_says_what_went_out(
    db: Database, school: SchoolData
) -> None:
    broadcast_id, admin = await _scheduled_now(db, school)
    async with db.transaction() as press:
        seen = await broadcasts.get(press, school.school_id, broadcast_id)  # read: scheduled
        assert seen is not None and seen.status is BroadcastStatus.SCHEDULED
        async with db.transaction() as tick:  # the tick starts it and commits in between
            (due,) = await broadcasts.due_scheduled(tick, utcnow())
            assert await broadcasts.start(tick, due, utcnow()) == 3
        async with db.transaction() as worker:  # one message goes out meanwhile
            await worker.execute(
                update(Outbox).where(Outbox.chat_id == MOM).values(status=OutboxStatus.SENT)
            )
        result = await broadcasts.cancel(press, school.school_id, broadcast_id, admin)
    assert result == broadcasts.Cancelled(broadcasts.Stop.STOPPED, sent=1)
    statuses = sorted(str(r.status) for r in await rows(db))
    assert statuses == ["cancelled", "cancelled", "sent"]
