"""Album attachments of outbox rows: rendered as sendMediaGroup, delivered whole.

A teacher's daily update is a text and up to ten photos; parents get one album, its caption
under it when the text fits one, and any buttons on a text after it (an album carries none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.delivery import DeliveryWorker, SendBudget, make_bot
from bot.i18n import I18n
from bot.services import outbox
from bot.services.outbox import Claimed, MessageTooLong, NewMessage
from sandbox.core import Sandbox
from sandbox.server import run_sandbox
from storage.db import Database
from storage.models import Outbox
from tests.e2e import free_port
from tests.factories import SchoolData
from tests.test_delivery import TOKEN, World
from tests.test_sandbox import png

I18N = I18n(ZoneInfo("Asia/Shanghai"))
ACK = [[{"label": "✅ Got it", "data": "ack:7"}]]


def row(**changes: Any) -> Claimed:
    base = Claimed(
        id=1,
        school_id=1,
        chat_id=1,
        user_id=1,
        kind="daily_update",
        priority=2,
        template=None,
        params=None,
        text="<b>今天</b>的手工课",
        buttons=None,
        attachment={"type": "album", "photos": ["p1", "p2", "p3"]},
        attempts=1,
        broadcast_id=None,
        locale="zh_CN",
    )
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------------------------------------
# Rendering


def test_a_short_text_is_the_albums_caption() -> None:
    rendered = outbox.render(row(), I18N.get("zh_CN"))
    assert rendered.parts == ["<b>今天</b>的手工课"]
    assert rendered.album == ["p1", "p2", "p3"] and rendered.buttons is None


def test_the_caption_limit_counts_visible_utf16_units() -> None:
    # Tags do not count; an emoji counts two units, as Telegram counts.
    fits = "<b>" + "课" * 1020 + "</b>😀😀"  # 1,024 units
    assert outbox.render(row(text=fits), I18N.get("zh_CN")).parts == [fits]
    longer = fits + "。"  # 1,025: no caption, the text follows the album
    assert outbox.render(row(text=longer), I18N.get("zh_CN")).parts == ["", longer]


def test_a_long_text_follows_the_album_in_parts() -> None:
    text = "\n\n".join(f"<b>第{i}段</b> " + "课后服务。" * 300 for i in range(4))  # ~6,000
    rendered = outbox.render(row(text=text), I18N.get("zh_CN"))
    caption, *parts = rendered.parts
    assert caption == "" and len(parts) == 2
    assert "".join(parts).count("课后服务。") == 1200


def test_buttons_go_on_a_text_after_the_album() -> None:
    rendered = outbox.render(row(buttons=ACK), I18N.get("en"))
    assert rendered.parts == ["", "<b>今天</b>的手工课"]  # no caption: the text carries them
    assert rendered.buttons == [[{"label": "✅ Got it", "data": "ack:7"}]]


def test_an_album_of_one_photo_is_sent_as_a_photo() -> None:
    rendered = outbox.render(row(attachment={"type": "album", "photos": ["p1"]}), I18N.get("en"))
    assert rendered.attachment == {"type": "photo", "file_id": "p1"} and rendered.album is None
    # A photo carries its buttons itself.
    with_buttons = outbox.render(
        row(attachment={"type": "album", "photos": ["p1"]}, buttons=ACK), I18N.get("en")
    )
    assert with_buttons.parts == ["<b>今天</b>的手工课"] and with_buttons.buttons


async def test_enqueue_refuses_albums_telegram_cannot_send(
    db: Database, school: SchoolData
) -> None:
    def album(photos: int, **changes: Any) -> NewMessage:
        fields: dict[str, Any] = {
            "text": "今天的手工课",
            "attachment": {"type": "album", "photos": [f"p{n}" for n in range(photos)]},
            **changes,
        }
        return NewMessage(1, "daily_update", **fields)

    async with db.transaction() as session:
        for refused in (album(0), album(11), album(3, text="", buttons=ACK)):
            with pytest.raises(ValueError):
                await outbox.enqueue_many(session, school.school_id, [refused])
        # A text that cannot be split is refused now, attachment or not.
        with pytest.raises(MessageTooLong):
            await outbox.enqueue_many(
                session, school.school_id, [album(3, text="<b>" + "课" * 5000 + "</b>")]
            )
        ids = await outbox.enqueue_many(session, school.school_id, [album(10), album(1)])
        assert len(ids) == 2


# ---------------------------------------------------------------------------------------------
# Delivery through the worker, against the sandbox


@pytest.fixture
async def world(db: Database, school: SchoolData) -> AsyncIterator[World]:
    sandbox = Sandbox(TOKEN, bot_username="kehou_test_bot")
    port = free_port()
    runner: web.AppRunner = await run_sandbox(sandbox, "127.0.0.1", port)
    found = World(sandbox, f"http://127.0.0.1:{port}", db, school)
    try:
        yield found
    finally:
        for worker in found.workers:
            await worker.stop()
            await worker.bot.shutdown()
        await runner.cleanup()


async def start_worker(world: World, budget: SendBudget) -> DeliveryWorker:
    bot = make_bot(world.settings(budget.rate), budget)
    await bot.initialize()
    worker = DeliveryWorker(world.db, bot, I18N, budget)
    await worker.start()
    world.workers.append(worker)
    return worker


async def photos(worker: DeliveryWorker, chat_id: int, count: int) -> list[str]:
    """File ids of `count` photos the bot has sent (to another chat)."""
    ids = []
    for n in range(count):
        sent = await worker.bot.send_photo(chat_id, photo=png(n + 1, 2))
        ids.append(sent.photo[-1].file_id)
    return ids


def bot_messages(world: World, chat_id: int) -> list[dict[str, Any]]:
    return [m for m in world.sandbox.messages(chat_id) if m["outgoing"]]


async def recorded_message_ids(world: World) -> list[int | None]:
    async with world.db.transaction() as session:
        return list((await session.scalars(select(Outbox.message_id).order_by(Outbox.id))).all())


async def test_the_chat_shows_one_album_with_its_caption(world: World) -> None:
    (user, chat), (_, other) = await world.people(2, locale="en")
    worker = await start_worker(world, SendBudget(30))
    album = await photos(worker, other, 3)
    await world.enqueue(
        [
            NewMessage(
                chat,
                "daily_update",
                user_id=user,
                text="<b>手工课</b>：孩子们做了灯笼",
                attachment={"type": "album", "photos": album},
            )
        ]
    )
    await worker.idle()
    sent = bot_messages(world, chat)
    assert len(sent) == 3 and len({m["media_group_id"] for m in sent}) == 1
    assert [m["photo"][-1]["file_id"] for m in sent] == album
    assert [m.get("caption") for m in sent] == ["手工课：孩子们做了灯笼", None, None]
    assert sent[0]["caption_entities"] == [{"offset": 0, "length": 3, "type": "bold"}]
    assert await world.statuses() == {"sent": 1}
    assert await recorded_message_ids(world) == [sent[-1]["message_id"]]  # the last one


async def test_an_album_with_buttons_and_a_long_text(world: World) -> None:
    (user, chat), (_, other) = await world.people(2, locale="en")
    worker = await start_worker(world, SendBudget(30))
    album = await photos(worker, other, 2)
    long_text = "\n\n".join(f"<b>第{i}段</b> " + "课后服务。" * 300 for i in range(4))
    await world.enqueue(
        [
            NewMessage(
                chat,
                "daily_update",
                user_id=user,
                text="今天的照片",
                attachment={"type": "album", "photos": album},
                buttons=ACK,
            ),
            NewMessage(
                chat,
                "daily_update",
                user_id=user,
                text=long_text,
                attachment={"type": "album", "photos": album},
                not_before=outbox.utcnow() + dt.timedelta(seconds=1),
            ),
        ]
    )
    await worker.idle()
    first, second, text, *later = bot_messages(world, chat)
    assert first["media_group_id"] == second["media_group_id"]
    assert "caption" not in first and "caption" not in second  # the text carries the buttons
    assert text["text"] == "今天的照片"
    assert text["reply_markup"]["inline_keyboard"][0][0]["text"] == "✅ Got it"
    album2 = later[:2]
    assert len({m["media_group_id"] for m in album2}) == 1 and "caption" not in album2[0]
    parts = later[2:]
    assert len(parts) == 2 and "".join(p["text"] for p in parts).count("课后服务。") == 1200
    assert await recorded_message_ids(world) == [text["message_id"], parts[-1]["message_id"]]


async def test_a_429_on_the_album_pauses_and_the_album_goes_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    (user, chat), (_, other) = await world.people(2, locale="en")
    # The worker believes a chat takes 20 at once; the sandbox allows Telegram's 3.
    worker = await start_worker(world, SendBudget(30, chat_burst=20, chat_per_second=20))
    album = await photos(worker, other, 4)
    world.sandbox.limits.enabled = True
    for _ in range(3):  # the chat's burst is spent just before the row is sent
        assert world.sandbox.rate.admit(world.sandbox.limits, chat, False) is None
    await world.enqueue(
        [
            NewMessage(
                chat,
                "daily_update",
                user_id=user,
                text="运动会",
                attachment={"type": "album", "photos": album},
            )
        ]
    )
    await worker.idle(timeout=30)
    assert world.sandbox.counters.chats[chat].rate_limited >= 1  # it was refused at first
    sent = bot_messages(world, chat)
    assert len(sent) == 4 and len({m["media_group_id"] for m in sent}) == 1  # once, whole
    assert sent[0]["caption"] == "运动会"
    assert await world.statuses() == {"sent": 1}


async def test_a_429_after_the_album_is_waited_out_without_sending_it_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    (user, chat), (_, other) = await world.people(2, locale="en")
    worker = await start_worker(world, SendBudget(30, chat_burst=20, chat_per_second=20))
    album = await photos(worker, other, 4)
    world.sandbox.limits.enabled = True
    # The album of four takes the chat's burst of three and more: the text right after it is
    # refused with 429 by the sandbox.
    await world.enqueue(
        [
            NewMessage(
                chat,
                "daily_update",
                user_id=user,
                text="今天的照片，请确认",
                attachment={"type": "album", "photos": album},
                buttons=ACK,
            )
        ]
    )
    await worker.idle(timeout=30)
    assert world.sandbox.counters.chats[chat].rate_limited >= 1
    sent = bot_messages(world, chat)
    assert len(sent) == 5  # four photos once, then the text
    assert len({m.get("media_group_id") for m in sent[:4]}) == 1
    assert sent[4]["text"] == "今天的照片，请确认" and sent[4]["reply_markup"]
    assert await world.statuses() == {"sent": 1}
    assert await recorded_message_ids(world) == [sent[4]["message_id"]]
