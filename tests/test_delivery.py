"""The delivery worker against the sandbox over HTTP, with Telegram's limits and faults on.

Telegram's real rates (30 messages/s) would make 1,000 recipients take half a minute per test;
most tests scale the sandbox's bot-wide rate and the worker's budget up together, which keeps
every mechanism (buckets, 429, per-chat limits) in play. The reply-delay test and the benchmark
(bench/broadcast.py) use the real rates.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiolimiter import AsyncLimiter
from sqlalchemy import func, insert, select
from telegram import Update

from bot.config import Secret, Settings
from bot.delivery import FENCE_SECONDS, DeliveryWorker, SendBudget, answering, make_bot
from bot.i18n import I18n
from bot.services import outbox
from bot.services.outbox import NewMessage
from sandbox.core import Sandbox
from sandbox.server import run_sandbox
from storage.db import Database
from storage.models import DeliveryWorker as WorkerRow
from storage.models import Outbox, OutboxStatus, Priority, SchoolClass, User
from tests.e2e import free_port
from tests.factories import SchoolData
from tests.test_sandbox import png

TOKEN = "424242:DELIVERY-TEST"
FIRST_USER = 500_000


class World:
    def __init__(self, sandbox: Sandbox, url: str, db: Database, school: SchoolData) -> None:
        self.sandbox = sandbox
        self.url = url
        self.db = db
        self.school = school
        self.workers: list[DeliveryWorker] = []

    def settings(self, rate: float) -> Settings:
        return Settings(
            token=Secret(TOKEN), database_url=self.db.url, api_base_url=self.url, send_rate=rate
        )

    async def worker(self, rate: float, **kwargs: Any) -> DeliveryWorker:
        budget = SendBudget(rate)
        bot = make_bot(self.settings(rate), budget)
        await bot.initialize()
        worker = DeliveryWorker(self.db, bot, I18n(ZoneInfo("Asia/Shanghai")), budget, **kwargs)
        await worker.start()
        self.workers.append(worker)
        return worker

    async def people(self, count: int, locale: str | None = None) -> list[tuple[int, int]]:
        """`count` linked users; returns (user id, chat id) pairs."""
        ids = range(
            FIRST_USER + len(self.sandbox.users), FIRST_USER + len(self.sandbox.users) + count
        )
        for telegram_id in ids:
            self.sandbox.add_user(telegram_id, f"家长{telegram_id}")
        async with self.db.transaction() as session:
            await session.execute(
                insert(User),
                [
                    {
                        "school_id": self.school.school_id,
                        "telegram_id": t,
                        "chat_id": t,
                        "display_name": f"家长{t}",
                        "locale": locale,
                    }
                    for t in ids
                ],
            )
            rows = await session.execute(
                select(User.id, User.chat_id).where(User.telegram_id.in_(list(ids)))
            )
            return [(u, int(c)) for u, c in rows.all()]

    async def enqueue(self, messages: list[NewMessage]) -> None:
        async with self.db.transaction() as session:
            await outbox.enqueue_many(session, self.school.school_id, messages)
        for worker in self.workers:
            worker.wake()

    async def statuses(self) -> collections.Counter[str]:
        async with self.db.transaction() as session:
            rows = await session.execute(
                select(Outbox.status, func.count()).group_by(Outbox.status)
            )
            return collections.Counter({str(s): n for s, n in rows.all()})

    def received(self, chat_ids: list[int]) -> collections.Counter[int]:
        """How many bot messages each chat holds."""
        return collections.Counter(
            {c: sum(1 for m in self.sandbox.messages(c) if m["outgoing"]) for c in chat_ids}
        )


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


def broadcast(people: list[tuple[int, int]], **kwargs: Any) -> list[NewMessage]:
    return [
        NewMessage(
            chat,
            "broadcast",
            user_id=user,
            template="Language set to {language}.",
            params={"language": "English"},
            **kwargs,
        )
        for user, chat in people
    ]


def incoming(message: dict[str, Any]) -> dict[str, Any]:
    """A message the sandbox stored, as the update the bot gets for it."""
    fields = {k: v for k, v in message.items() if k in ("message_id", "from", "chat", "date")}
    return {"update_id": 1, "message": {**fields, "text": message.get("text", "")}}


def scaled_limits(sandbox: Sandbox, factor: float) -> None:
    sandbox.limits.enabled = True
    sandbox.limits.bot_per_second = 30 * factor
    sandbox.limits.bot_burst = int(30 * factor)


async def test_a_thousand_recipients_with_limits_and_faults(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    scaled_limits(world.sandbox, 10)
    world.sandbox.faults.error_rate = 0.03  # 502s, not carried out
    world.sandbox.faults.delay = 0.005
    world.sandbox.faults.jitter = 0.02
    people = await world.people(1000)
    blocked = [chat for _, chat in people[::250]]  # four people blocked the bot
    world.sandbox.faults.blocked_users = set(blocked)
    await world.enqueue(broadcast(people))

    # The sandbox shares this process's CPU: leave it more margin than Telegram would need.
    worker = await world.worker(rate=250)
    await worker.idle(timeout=120)

    received = world.received([chat for _, chat in people])
    assert [c for c, n in received.items() if n == 0] == blocked  # nobody else lost
    assert max(received.values()) == 1  # nobody got it twice
    assert await world.statuses() == {"sent": 996, "blocked": 4}
    assert world.sandbox.counters.faults["bad_gateway"] > 0  # the faults really happened
    assert world.sandbox.counters.rate_limited < 10  # 429s are rare, and each was retried
    async with world.db.transaction() as session:
        marked = await session.scalars(select(User.chat_id).where(User.blocked_at.is_not(None)))
        assert sorted(marked.all()) == sorted(blocked)
    # Every message went out in the recipient's language (the school default, Chinese).
    assert world.sandbox.messages(people[1][1])[-1]["text"] == "语言已设置为English。"


async def test_429_pauses_sending_and_nothing_is_lost(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker believes it may send twice as fast as the sandbox allows."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    scaled_limits(world.sandbox, 2)
    people = await world.people(200)
    await world.enqueue(broadcast(people))
    worker = await world.worker(rate=120)
    await worker.idle(timeout=60)
    assert world.sandbox.counters.rate_limited > 0
    received = world.received([chat for _, chat in people])
    assert set(received.values()) == {1}
    assert await world.statuses() == {"sent": 200}


async def test_group_migrated_to_a_supergroup_is_followed(world: World) -> None:
    world.sandbox.add_user(FIRST_USER - 1, "班主任")
    world.sandbox.add_group(-4242, "三年级1班家长群", [FIRST_USER - 1])
    async with world.db.transaction() as session:
        school_class = await session.get(SchoolClass, world.school.class_ids["3-1"])
        assert school_class is not None
        school_class.group_chat_id = -4242
    new_id = world.sandbox.migrate_group(-4242)
    await world.enqueue([NewMessage(-4242, "group", text="明天停课")])
    worker = await world.worker(rate=30)
    await worker.idle()
    assert [m["text"] for m in world.sandbox.messages(new_id) if m["outgoing"]] == ["明天停课"]
    async with world.db.transaction() as session:
        school_class = await session.get(SchoolClass, world.school.class_ids["3-1"])
        assert school_class is not None and school_class.group_chat_id == new_id
        row = (await session.scalars(select(Outbox))).one()
        assert row.status is OutboxStatus.SENT and row.chat_id == new_id


async def test_network_errors_are_retried_then_given_up(world: World) -> None:
    people = await world.people(1)
    world.sandbox.faults.error_rate = 1.0
    world.sandbox.faults.methods = {"sendmessage"}
    await world.enqueue(broadcast(people))
    worker = await world.worker(rate=30)
    async with world.db.transaction() as session:
        row = (await session.scalars(select(Outbox))).one()
    # Pretend five attempts already failed: the sixth is the last.
    async with world.db.transaction() as session:
        stored = await session.get(Outbox, row.id)
        assert stored is not None
        stored.attempts = outbox.MAX_ATTEMPTS - 1
        stored.not_before = dt.datetime.now(dt.UTC)
    worker.wake()
    await worker.idle()
    async with world.db.transaction() as session:
        stored = await session.get(Outbox, row.id)
        assert stored is not None
        assert stored.status is OutboxStatus.FAILED and "Bad Gateway" in (stored.last_error or "")


async def test_replies_are_not_starved_by_a_broadcast(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telegram's real rate: 400 bulk messages take 14 seconds; replies still go at once."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    world.sandbox.limits.enabled = True
    people = await world.people(400)
    (asker,) = await world.people(1)
    await world.enqueue(broadcast(people, priority=Priority.BULK))
    # The sandbox shares this process's CPU, which bunches requests: leave some margin.
    worker = await world.worker(rate=25)
    await asyncio.sleep(1.5)  # the broadcast is under way
    delays = []
    for n in range(8):
        update = await world.sandbox.user_sends(asker[1], asker[1], f"第{n}个问题")
        started = time.monotonic()
        # A handler's reply: the application's bot and rate limiter, in answer to the update.
        with answering(Update.de_json(incoming(update), worker.bot)):
            await worker.bot.send_message(asker[1], "收到")
        delays.append(time.monotonic() - started)
        await asyncio.sleep(1.0)  # one a second, as a person would get them
    still = await world.statuses()
    assert still["pending"] + still["sending"] > 0  # measured while the broadcast drained
    assert statistics.quantiles(delays, n=20)[-1] < 2.0
    await worker.idle(timeout=60)
    assert await world.statuses() == {"sent": 400}
    assert world.sandbox.counters.rate_limited <= 4  # rare, and each one was retried


async def test_two_workers_share_the_table_and_the_rate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    scaled_limits(world.sandbox, 5)
    people = await world.people(600)
    first = await world.worker(rate=125)
    second = await world.worker(rate=125)
    await first._heartbeat()  # both see each other at once rather than after a heartbeat
    assert first.budget.share == 2
    await world.enqueue(broadcast(people))
    await first.idle(timeout=60)
    await second.idle(timeout=60)
    received = world.received([chat for _, chat in people])
    assert set(received.values()) == {1}
    assert first.sent > 0 and second.sent > 0 and first.sent + second.sent == 600
    assert world.sandbox.counters.rate_limited < 10


async def test_a_stalling_link_does_not_turn_into_a_flood(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls held up on the way arrive together: the worker keeps few enough in flight, and
    small enough bursts, that a bunch released at once stays within Telegram's limit."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    scaled_limits(world.sandbox, 5)
    world.sandbox.faults.stall_every = 0.6
    people = await world.people(600)
    first = await world.worker(rate=125)
    second = await world.worker(rate=125)
    await first._heartbeat()
    await world.enqueue(broadcast(people))
    await first.idle(timeout=60)
    await second.idle(timeout=60)
    assert set(world.received([chat for _, chat in people]).values()) == {1}
    assert world.sandbox.counters.faults["delayed"] >= 600
    assert world.sandbox.counters.rate_limited < 5


async def test_kill_and_resume_loses_nothing(world: World, tmp_path: Path) -> None:
    """`kehou deliver` is killed with SIGKILL mid-broadcast, then started again."""
    world.sandbox.limits.enabled = True
    scaled_limits(world.sandbox, 3)
    people = await world.people(400)
    await world.enqueue(broadcast(people))
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "KEHOU_DATABASE_URL": world.db.url,
        "KEHOU_API_BASE_URL": world.url,
        "KEHOU_SEND_RATE": "75",
        "KEHOU_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "bot.cli", "deliver"]
    chats = [chat for _, chat in people]

    async def delivered() -> int:
        return sum(1 for n in world.received(chats).values() if n)

    process = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        deadline = time.monotonic() + 60
        while await delivered() < 150:
            assert time.monotonic() < deadline, "the worker sent nothing"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    async with world.db.transaction() as session:
        in_flight = await session.scalar(
            select(func.count()).where(Outbox.status == OutboxStatus.SENDING)
        )
        (dead,) = (await session.scalars(select(WorkerRow.id))).all()
    assert in_flight and 150 <= await delivered() < 400  # it really died mid-way, holding rows

    # The next worker on this host sees that the dead one's process is gone and takes its rows
    # at once, not when their two-minute lease runs out.
    worker = await world.worker(rate=75)
    async with world.db.transaction() as session:
        assert (await session.scalars(select(WorkerRow.id))).all() == [worker.worker_id]
        assert dead != worker.worker_id
    await worker.idle(timeout=30)
    received = world.received(chats)
    assert min(received.values()) == 1  # nothing lost
    twice = sum(1 for n in received.values() if n == 2)
    assert max(received.values()) <= 2 and twice <= (in_flight or 0)
    assert await world.statuses() == {"sent": 400}


async def test_photos_long_texts_and_buttons_are_delivered_whole(world: World) -> None:
    (user, chat), (_, chat2) = await world.people(2, locale="en")
    worker = await world.worker(rate=30)
    uploaded = await worker.bot.send_photo(chat2, photo=png())
    file_id = uploaded.photo[-1].file_id
    long_text = "\n\n".join(f"<b>第{i}段</b> " + "课后服务。" * 300 for i in range(4))  # ~6,000
    await world.enqueue(
        [
            NewMessage(
                chat,
                "broadcast",
                user_id=user,
                text="<b>运动会</b>照片",
                attachment={"type": "photo", "file_id": file_id},
                buttons=[[{"label": "✅ Got it", "data": "ack:1"}]],
            ),
            NewMessage(chat, "broadcast", user_id=user, text=long_text),
        ]
    )
    await worker.idle()
    sent = [m for m in world.sandbox.messages(chat) if m["outgoing"]]
    photo, *parts = sent
    assert photo["caption"] == "运动会照片" and photo["photo_url"]
    assert photo["reply_markup"]["inline_keyboard"][0][0]["text"] == "✅ Got it"
    assert len(parts) == 2 and all(len(p["text"]) <= 4096 for p in parts)
    assert "".join(p["text"] for p in parts).count("课后服务。") == 1200  # nothing lost
    assert await world.statuses() == {"sent": 2}


async def test_a_stopping_worker_gives_back_what_it_did_not_send(world: World) -> None:
    people = await world.people(40)
    await world.enqueue(broadcast(people))
    worker = await world.worker(rate=10)  # holds 20 rows, sends 10 a second
    await asyncio.sleep(0.6)
    await worker.stop()
    world.workers.remove(worker)
    await worker.bot.shutdown()
    counts = await world.statuses()
    sent = counts["sent"]
    assert 0 < sent < 40 and counts == {"sent": sent, "pending": 40 - sent}
    async with world.db.transaction() as session:
        attempts = await session.scalars(
            select(Outbox.attempts).where(Outbox.status == OutboxStatus.PENDING)
        )
        assert set(attempts.all()) == {0}  # giving back is not an attempt
    # Another worker finishes the job.
    await (await world.worker(rate=100)).idle()
    assert set(world.received([chat for _, chat in people]).values()) == {1}


async def test_a_worker_whose_heartbeat_lapsed_sends_nothing_it_held(world: World) -> None:
    """Its rows may be another worker's by then: it gives them back and claims afresh."""
    people = await world.people(30)
    await world.enqueue(broadcast(people))
    # It beats only when told to here, and sends two a second: most rows wait in its queue.
    worker = await world.worker(rate=2, heartbeat_seconds=3600)
    deadline = time.monotonic() + 10
    while worker.sent < 1:
        assert time.monotonic() < deadline, "nothing was sent"
        await asyncio.sleep(0.01)
    # Its heartbeat could not be written for longer than FENCE_SECONDS.
    worker._heartbeat_ok -= FENCE_SECONDS + 1
    deadline = time.monotonic() + 10
    while (await world.statuses())["sending"]:  # everything unsent went back to the table
        assert time.monotonic() < deadline, "the rows were not given back"
        await asyncio.sleep(0.05)
    sent = (await world.statuses())["sent"]
    assert 0 < sent < 30 and worker.sent == sent
    async with world.db.transaction() as session:
        attempts = await session.scalars(
            select(Outbox.attempts).where(Outbox.status == OutboxStatus.PENDING)
        )
        assert set(attempts.all()) == {0}  # giving back is not an attempt

    await worker._heartbeat()  # it can write again: it claims and sends the rest, once each
    worker.budget.overall = AsyncLimiter(100, 1)
    await worker.idle()
    assert set(world.received([chat for _, chat in people]).values()) == {1}
