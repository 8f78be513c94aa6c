"""The admin's broadcast screens as a phone shows them (docs/UX.md): every step's way back and
out, the confirm steps and what they say, counts per family, the class groups, the choice of
several classes, the reminder to the unconfirmed, the cancel that asks first, and the header
every copy carries in its reader's language."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.i18n import I18n
from bot.services import broadcasts, outbox
from bot.services.broadcasts import Audience, AudienceKind
from bot.services.outbox import Claimed
from handlers.common.keyboards import ROW_WIDTH, width
from storage.db import Database
from storage.models import (
    AuditLog,
    Broadcast,
    BroadcastStatus,
    NoticeMode,
    Outbox,
    OutboxStatus,
    SchoolClass,
    User,
    utcnow,
)
from tests.factories import SchoolData
from tests.harness import Call, FakeUser
from tests.test_broadcast import ADMIN, DAD, MOM, OTHER, people, rows

CONTENT = {"‹ 返回", "取消", "‹ Back", "Cancel", "‹", "›"}


def answers(replies: list[Call]) -> list[Call]:
    return [c for c in replies if c.method == "answerCallbackQuery"]


def said(replies: list[Call]) -> str:
    return json.dumps([c.params for c in replies], ensure_ascii=False)


def keyboard(call: Call) -> list[list[dict[str, Any]]]:
    markup = call.params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return list(markup.get("inline_keyboard", []))


def assert_fits_a_phone(calls: list[Call]) -> None:
    """At most three buttons a row, none wider than its share of a 390 px row, ≤ 8 content
    buttons (navigation apart), and a 返回 or 取消 on every step that has buttons."""
    for call in calls:
        rows = keyboard(call)
        if not rows:
            continue
        for row in rows:
            labels = [b["text"] for b in row]
            assert len(row) <= 3, labels
            assert max(width(label) for label in labels) * len(row) <= ROW_WIDTH, labels
        labels = [b["text"] for row in rows for b in row]
        content = [label for label in labels if label not in CONTENT and "/" not in label]
        assert len(content) <= 8 + 2, labels  # the choices, plus the step's one or two actions


async def start_draft(admin: FakeUser, text: str = "周五接孩子时间改为 16:30") -> None:
    await admin.send("/broadcast")
    await admin.send(text)


async def to_preview(admin: FakeUser) -> list[Call]:
    await start_draft(admin)
    return await admin.click("全体家长")


# The steps of /broadcast, each reached from the start, and how its 取消 is pressed.
STEPS = {
    "the notice": lambda admin: admin.send("/broadcast"),
    "who should receive it": start_draft,
    "the classes": lambda admin: _then(start_draft(admin), admin.click, "班级"),
    "a grade": lambda admin: _then(start_draft(admin), admin.click, "某个年级"),
    "the preview": to_preview,
    "the confirm step": lambda admin: _then(to_preview(admin), admin.click, "立即发送"),
    "the time": lambda admin: _then(to_preview(admin), admin.click, "定时发送"),
}


async def _then(first: Any, click: Any, label: str) -> list[Call]:
    await first
    return list(await click(label))


@pytest.mark.parametrize("where", list(STEPS))
async def test_cancel_answers_once_and_ends_cleanly_on_every_step(
    where: str, make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    """取消 on "发给谁？" used to answer "已取消" and then the system's apology."""
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    await STEPS[where](admin)
    replies = await admin.click("取消")
    assert len(answers(replies)) == 1, replies
    assert "已取消，没有发送任何消息" in FakeUser.texts(replies)
    assert "问题" not in said(replies)  # no apology ("抱歉，系统出了点问题")
    # It has ended: nothing is sent, a text is no notice, the old buttons do nothing.
    assert "没有可取消" in FakeUser.texts(await admin.send("/cancel"))
    assert await rows(db) == []
    async with db.transaction() as session:
        assert (await session.scalars(select(Broadcast))).all() == []


async def test_every_step_has_a_way_back_and_out_and_fits_a_phone(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    shown: list[Call] = list(await admin.send("/broadcast"))
    shown += await admin.send("通知")
    for label in ("某个年级", "‹ 返回", "班级", "三年级1班", "‹ 返回", "全体家长"):
        shown += await admin.click(label)
    shown += await admin.click("⬜ 请对方点击“确认收到”")
    shown += await admin.click("立即发送")
    assert "‹ 返回" in admin.all_buttons() and "取消" in admin.all_buttons()
    shown += await admin.click("‹ 返回")  # back to the preview, options kept
    assert "确认收到按钮：开" in FakeUser.texts(shown[-2:])
    shown += await admin.click("定时发送")
    shown += await admin.send("明天")
    assert_fits_a_phone([c for c in shown if c.method != "answerCallbackQuery"])
    with_buttons = [c for c in shown if keyboard(c)]
    for call in with_buttons:
        labels = [b["text"] for row in keyboard(call) for b in row]
        assert "取消" in labels, labels
    # ‹ 返回 from "Who should receive it?" goes back to writing the notice.
    await admin.send("/broadcast")
    await admin.send("第一稿")
    assert "请发来通知内容" in FakeUser.texts(await admin.click("‹ 返回"))
    assert "发给谁" in FakeUser.texts(await admin.send("第二稿"))
    await admin.click("全体教师")
    await admin.click("立即发送")
    await admin.click("✅ 确认发送")
    assert [(r.params or {})["html"] for r in await rows(db)] == ["第二稿"]


async def more_classes(db: Database, school: SchoolData, count: int) -> None:
    async with db.transaction() as session:
        for i in range(count):
            session.add(
                SchoolClass(
                    school_id=school.school_id, code=f"5-{i + 1}", grade=5, name=f"五年级{i + 1}班"
                )
            )


async def test_several_classes_are_picked_on_pages_of_eight(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    await more_classes(db, school, 9)  # 11 classes: two pages
    admin: FakeUser = make_user(ADMIN)
    await start_draft(admin)
    first = await admin.click("班级")
    page = keyboard(first[-1])
    names = [b["text"] for row in page for b in row if "班" in b["text"]]
    assert len(names) == 8 and all(len(row) <= 3 for row in page)
    assert ["1/2", "›"] == [b["text"] for b in page[-2]]
    await admin.click("三年级1班")
    second = await admin.click("›")
    assert "七年级2班" in [b["text"] for row in keyboard(second[-1]) for b in row]
    picked = await admin.click("七年级2班")
    labels = [b["text"] for row in keyboard(picked[-1]) for b in row]
    assert "✓ 七年级2班" in labels and "下一步（2 个班）" in labels
    back = await admin.click("‹")  # the first page remembers its pick
    assert "✓ 三年级1班" in [b["text"] for row in keyboard(back[-1]) for b in row]
    assert_fits_a_phone([first[-1], second[-1], picked[-1], back[-1]])
    preview = FakeUser.texts(await admin.click("下一步（2 个班）"))
    # 李小明's two parents and 李小红's: two families, three parents.
    assert "发给：2 个班级的家长 · 2 个家庭 · 3 位家长" in preview
    await admin.click("立即发送")
    await admin.click("✅ 确认发送")
    assert sorted(r.chat_id for r in await rows(db)) == [MOM, DAD, OTHER]
    # A forged class id among the picks is refused and recorded.
    await start_draft(admin)
    await admin.click("班级")
    draft = keyboard(admin.request.sent_to(ADMIN)[-1])[0][0]["callback_data"].split(":")[2]
    replies = await admin.press(f"bc:t:{draft}:class:99999:0")
    assert answers(replies)[0].params["show_alert"] is True
    async with db.transaction() as session:
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert "broadcast.refused" in actions


async def groups(db: Database, school: SchoolData) -> None:
    async with db.transaction() as session:
        for code, chat in (("3-1", -31), ("7-2", -72)):
            await session.execute(
                update(SchoolClass)
                .where(SchoolClass.id == school.class_ids[code])
                .values(group_chat_id=chat)
            )


async def test_class_groups_are_counted_apart_from_people_and_never_asked_to_confirm(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    await groups(db, school)
    admin: FakeUser = make_user(ADMIN)
    await start_draft(admin)
    await admin.click("班级家长群")
    preview = await admin.click("全部班级群")
    text = FakeUser.texts(preview)
    assert "发给：各班家长群 · 2 个班级群 · 3 位家长" in text
    assert "班级群中不设确认按钮" in text
    assert not any("确认收到" in label for label in admin.all_buttons()[-6:])
    # A forged option press cannot switch a confirm button on for the groups.
    draft = keyboard(preview[-1])[0][0]["callback_data"].split(":")[2]
    await admin.press(f"bc:o:{draft}:ack")
    assert "确认收到按钮：开" not in FakeUser.texts(admin.request.sent_to(ADMIN)[-1:])
    question = FakeUser.texts(await admin.click("立即发送"))
    assert "（2 个班级群 · 3 位家长）" in question
    status = FakeUser.texts(await admin.click("✅ 确认发送"))
    assert "已确认" not in status
    sent = await rows(db)
    assert sorted(r.chat_id for r in sent) == [-72, -31] and all(r.buttons is None for r in sent)
    async with db.transaction() as session:
        assert await session.scalar(select(Broadcast.ack_requested)) is False


async def test_one_class_group_can_be_chosen(make_user, db: Database, school: SchoolData) -> None:  # type: ignore[no-untyped-def]
    await people(db, school)
    await groups(db, school)
    admin: FakeUser = make_user(ADMIN)
    await start_draft(admin)
    await admin.click("班级家长群")
    await admin.click("七年级2班")
    preview = FakeUser.texts(await admin.click("下一步（1 个群）"))
    assert "发给：七年级2班家长群 · 1 个班级群 · 1 位家长" in preview
    await admin.click("立即发送")
    await admin.click("✅ 确认发送")
    assert [r.chat_id for r in await rows(db)] == [-72]


async def test_a_notice_that_asks_for_confirmation_is_never_held_for_the_digest(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        await session.execute(
            update(User).where(User.id == ids[DAD]).values(notice_mode=NoticeMode.DIGEST)
        )
        for text, ack in (("周五 16:30 接孩子，请确认", True), ("本周图书角开放", False)):
            await broadcasts.create(
                session,
                school.school_id,
                sender_user_id=ids[ADMIN],
                text=text,
                audience=Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
                ack=ack,
            )
    async with db.transaction() as session:
        found = await session.execute(
            select(Broadcast.ack_requested, Outbox.status)
            .join(Broadcast, Broadcast.id == Outbox.broadcast_id)
            .where(Outbox.chat_id == DAD)
        )
        by_ack = dict(found.all())
    # Dad reads his notices in the evening digest; the one asking for a confirmation comes now.
    assert by_ack == {True: OutboxStatus.PENDING, False: OutboxStatus.HELD}


async def sent_with_ack(db: Database, school: SchoolData, ids: dict[int, int]) -> int:
    """A notice to all parents with a confirm button, delivered to everyone."""
    async with db.transaction() as session:
        broadcast = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="请确认周五的接送时间",
            audience=Audience(AudienceKind.PARENTS),
            ack=True,
        )
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
    return broadcast.id


async def test_confirmations_count_per_family_and_the_digest_waiters_are_listed(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    broadcast_id = await sent_with_ack(db, school, ids)
    for parent in (MOM, DAD):  # both parents of 李小明 confirm: one family
        await make_user(parent).press(f"ack:{broadcast_id}")
    async with db.transaction() as session:
        figures = await broadcasts.progress(session, broadcast_id, ack=True)
        # 李小红's parent's copy still waits in their digest.
        await session.execute(
            update(Outbox).where(Outbox.chat_id == OTHER).values(status=OutboxStatus.HELD)
        )
    assert (figures.acknowledged, figures.families, figures.confirmed) == (2, 2, 1)
    admin: FakeUser = make_user(ADMIN)
    listing = FakeUser.texts(await admin.send("/broadcasts"))
    assert "已确认 1 / 2 个家庭" in listing
    await admin.click(f"#{broadcast_id}")
    missing = FakeUser.texts(await admin.click("未确认名单"))
    assert "还有 1 个家庭未确认" in missing
    assert f"user {OTHER} (李小红) — 在今晚的汇总中" in missing
    assert f"user {MOM}" not in missing and f"user {DAD}" not in missing


async def test_the_other_guardians_copy_shows_the_family_has_confirmed(
    make_user, db: Database, school: SchoolData, request_recorder
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    broadcast_id = await sent_with_ack(db, school, ids)
    async with db.transaction() as session:  # delivered: each copy has its Telegram message
        await session.execute(update(Outbox).values(message_id=Outbox.chat_id + 5000))
    await make_user(MOM).press(f"ack:{broadcast_id}")
    edits = [c for c in request_recorder.calls if c.method == "editMessageReplyMarkup"]
    by_chat = {int(c.params["chat_id"]): c for c in edits}
    assert set(by_chat) == {MOM, DAD}  # her own button, and the dad's copy; not 李小红's family
    assert int(by_chat[DAD].params["message_id"]) == DAD + 5000
    # In the dad's own language (English), not the mother's.
    assert [b["text"] for b in by_chat[DAD].buttons()] == ["✅ Confirmed by your family"]
    assert [b["text"] for b in by_chat[MOM].buttons()] == ["✅ 已确认"]


async def test_remind_now_reaches_only_unconfirmed_families_and_never_twice(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    broadcast_id = await sent_with_ack(db, school, ids)
    await make_user(MOM).press(f"ack:{broadcast_id}")  # 李小明's family has confirmed
    admin: FakeUser = make_user(ADMIN)
    await admin.send("/broadcasts")
    card = await admin.click(f"#{broadcast_id}")
    assert "已确认 1 / 2 个家庭" in FakeUser.texts(card)
    first = await admin.click("提醒未确认")
    assert len(answers(first)) == 1
    assert "已向 1 位家长发出通知" in said(first)
    # The card shows the new state: reminded, the list still one tap away.
    assert "已向 1 位家长发出通知" in FakeUser.texts(first)
    second = await admin.press(f"bl:remind:{broadcast_id}")  # a double press
    assert "不会重复提醒" in said(second)
    reminders = [r for r in await rows(db) if r.kind == "broadcast_reping"]
    assert [r.chat_id for r in reminders] == [OTHER]
    # The automatic reminder later finds it done: nobody gets a second one.
    async with db.transaction() as session:
        assert await broadcasts.due_repings(session, utcnow() + dt.timedelta(days=3)) == []
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert actions.count("broadcast.remind") == 1


async def test_cancelling_a_scheduled_notice_asks_first_and_tells_the_truth(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    async with db.transaction() as session:
        later = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="下周一家长会",
            audience=Audience(AudienceKind.PARENTS),
            scheduled_for=utcnow() + dt.timedelta(days=1),
        )
        running = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="今天提前放学",
            audience=Audience(AudienceKind.PARENTS),
        )
        await session.execute(
            update(Outbox).where(Outbox.chat_id == MOM).values(status=OutboxStatus.SENT)
        )
    admin: FakeUser = make_user(ADMIN)
    await admin.send("/broadcasts")
    await admin.click(f"#{later.id}")
    asked = await admin.click("撤销")
    assert "它还没有发出，撤销后不会有人收到" in FakeUser.texts(asked)
    async with db.transaction() as session:
        status = await session.scalar(select(Broadcast.status).where(Broadcast.id == later.id))
    assert status is BroadcastStatus.SCHEDULED  # asking changed nothing
    back = await admin.click("‹ 返回")  # changes its mind: the card again
    assert "撤销" in [b["text"] for row in keyboard(back[-1]) for b in row]
    await admin.click("撤销")
    done = await admin.click("确定取消")
    text = FakeUser.texts(done)
    assert "在发出前已撤销，一条也没有发送" in text and "已撤销" in text
    # The screen shows the new state: no cancel button any more.
    assert "撤销" not in [b["text"] for row in keyboard(done[-1]) for b in row]
    listing = FakeUser.texts(await admin.click("‹ 返回"))
    assert f"通知 #{later.id}" in listing and "已撤销" in listing

    # A notice already going out: the question and the result say how many got it.
    await admin.click(f"#{running.id}")
    asked = await admin.click("撤销")
    assert "已发出 1 条" in FakeUser.texts(asked)
    done = await admin.click("确定取消")
    assert "1 条" in FakeUser.texts(done) and "其余" in FakeUser.texts(done)


async def test_every_copy_carries_a_header_in_its_readers_language(
    db: Database, school: SchoolData
) -> None:
    ids = await people(db, school)
    async with db.transaction() as session:
        await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="周五 <b>16:30</b> 接孩子",
            audience=Audience(AudienceKind.CLASS, school.class_ids["3-1"]),
            ack=True,
        )
        found = (await session.scalars(select(Outbox).order_by(Outbox.chat_id))).all()
        copies = {
            row.chat_id: Claimed.of(row, "zh_CN" if row.chat_id == MOM else "en") for row in found
        }
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    mom = outbox.render(copies[MOM], i18n.get("zh_CN"))
    dad = outbox.render(copies[DAD], i18n.get("en"))
    assert mom.parts == [
        f"<b>📣 河清实验学校 · 通知</b>\n发布人：user {ADMIN}\n\n周五 <b>16:30</b> 接孩子"
    ]
    assert dad.parts == [
        f"<b>📣 河清实验学校 · Notice</b>\nFrom: user {ADMIN}\n\n周五 <b>16:30</b> 接孩子"
    ]
    assert dad.buttons == [[{"label": "✅ Got it", "data": copies[DAD].buttons[0][0]["data"]}]]  # type: ignore[index]


async def test_the_status_message_counts_families_and_offers_the_next_steps(
    make_user, app, db: Database, school: SchoolData, request_recorder
) -> None:  # type: ignore[no-untyped-def]
    from bot import broadcasting
    from bot.context import BotContext

    await people(db, school)
    admin: FakeUser = make_user(ADMIN)
    await start_draft(admin, "周五 16:30 接孩子，请确认")
    await admin.click("全体家长")
    await admin.click("⬜ 请对方点击“确认收到”")
    await admin.click("立即发送")
    status = await admin.click("✅ 确认发送")
    assert "撤销" in [b["text"] for row in keyboard(status[-1]) for b in row]
    async with db.transaction() as session:
        await session.execute(update(Outbox).values(status=OutboxStatus.SENT))
        broadcast_id = await session.scalar(select(Broadcast.id))
    for parent in (MOM, DAD):  # 李小明's two parents: one family
        await make_user(parent).press(f"ack:{broadcast_id}")
    before = len(request_recorder.calls)
    await broadcasting.tick(BotContext(app))
    (edit,) = [c for c in request_recorder.calls[before:] if c.method == "editMessageText"]
    assert "已确认 1 / 2 个家庭" in edit.text and "已完成" in edit.text
    labels = [b["text"] for row in keyboard(edit) for b in row]
    assert labels == ["未确认名单", "提醒未确认"]
    # 李小红's parent confirms too: the next tick counts again.
    await make_user(OTHER).press(f"ack:{broadcast_id}")
    before = len(request_recorder.calls)
    await broadcasting.tick(BotContext(app))
    (edit,) = [c for c in request_recorder.calls[before:] if c.method == "editMessageText"]
    assert "已确认 2 / 2 个家庭" in edit.text
    assert [b["text"] for row in keyboard(edit) for b in row] == ["未确认名单"]


async def test_cancelling_a_late_broadcast_asks_first(
    make_user, db: Database, school: SchoolData
) -> None:  # type: ignore[no-untyped-def]
    ids = await people(db, school)
    async with db.transaction() as session:
        held = await broadcasts.create(
            session,
            school.school_id,
            sender_user_id=ids[ADMIN],
            text="周五演出",
            audience=Audience(AudienceKind.PARENTS),
            scheduled_for=utcnow() + dt.timedelta(hours=1),
        )
        await session.execute(update(Broadcast).values(held_at=utcnow()))
        await broadcasts.ask_about_late(session, held, utcnow())
        (question,) = (await session.scalars(select(Outbox))).all()
    assert question.buttons is not None
    cancel_it = question.buttons[0][1]["data"]
    admin: FakeUser = make_user(ADMIN)
    asked = await admin.press(cancel_it)
    assert "它还没有发出，撤销后不会有人收到" in FakeUser.texts(asked)
    again = await admin.click("‹ 返回")  # the question again, with its two answers
    assert "周五演出" in FakeUser.texts(again)
    assert [b["text"] for row in keyboard(again[-1]) for b in row] == ["立即发送", "撤销"]
    async with db.transaction() as session:
        assert await session.scalar(select(Broadcast.status)) is BroadcastStatus.SCHEDULED
    await admin.click("撤销")
    done = await admin.click("确定取消")
    assert "在发出前已撤销，一条也没有发送" in FakeUser.texts(done)
    async with db.transaction() as session:
        assert await session.scalar(select(Broadcast.status)) is BroadcastStatus.CANCELLED


def test_a_period_audience_is_named_as_everywhere_else() -> None:
    from zoneinfo import ZoneInfo

    from bot.broadcasting import audience_label
    from bot.i18n import I18n
    from bot.services.broadcasts import AudienceKind, AudienceName

    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    period = AudienceName(AudienceKind.PERIOD, 2)
    assert "第二时段" in audience_label(i18n.get("zh_CN"), period)
    assert "Period 2" in audience_label(i18n.get("en"), period)
