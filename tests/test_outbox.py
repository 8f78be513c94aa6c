"""The outbox as a service: enqueueing, dedupe, notice budget, claiming, splitting, rendering."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.i18n import I18n
from bot.services import outbox
from bot.services.outbox import MessageTooLong, NewMessage, Outcome, split_html, visible_text
from storage.db import Database
from storage.models import NoticeMode, Outbox, OutboxStatus, Priority, School, User, utcnow
from tests.factories import SchoolData, add_member

LEASE = dt.timedelta(seconds=60)


async def statuses(db: Database) -> list[tuple[int, str]]:
    async with db.transaction() as session:
        rows = await session.execute(select(Outbox.chat_id, Outbox.status).order_by(Outbox.id))
        return [(chat, str(status)) for chat, status in rows.all()]


async def test_dedupe_key_makes_enqueueing_idempotent(db: Database, school: SchoolData) -> None:
    message = NewMessage(chat_id=1, kind="reminder", text="hi", dedupe_key="reminder:1:2026-12-01")
    async with db.transaction() as session:
        first = await outbox.enqueue(session, school.school_id, message)
    async with db.transaction() as session:
        second = await outbox.enqueue(session, school.school_id, message)
        many = await outbox.enqueue_many(
            session, school.school_id, [message, NewMessage(chat_id=2, kind="x", text="b")]
        )
    assert first is not None and second is None and len(many) == 1
    assert await statuses(db) == [(1, "pending"), (2, "pending")]


async def test_nothing_is_enqueued_when_the_transaction_fails(
    db: Database, school: SchoolData
) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await outbox.enqueue(session, school.school_id, NewMessage(1, "x", text="t"))
            raise RuntimeError("the change that caused the message failed")
    assert await statuses(db) == []


async def test_claim_takes_the_most_urgent_first_and_never_twice(
    db: Database, school: SchoolData
) -> None:
    now = utcnow()
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session,
            school.school_id,
            [
                NewMessage(10, "bulk", priority=Priority.BULK, text="b"),
                NewMessage(11, "later", text="l", not_before=now + dt.timedelta(hours=1)),
                NewMessage(12, "alert", priority=Priority.URGENT, text="u"),
                NewMessage(13, "normal", text="n"),
            ],
        )
    now += dt.timedelta(seconds=1)  # the rows were written after `now` was taken
    async with db.transaction() as session:
        for worker in ("w1", "w2"):
            await outbox.heartbeat(session, worker, now)
    async with db.transaction() as session:
        first = await outbox.claim(session, "w1", limit=2, lease=LEASE, now=now)
    async with db.transaction() as session:
        second = await outbox.claim(session, "w2", limit=10, lease=LEASE, now=now)
    assert [r.chat_id for r in first] == [12, 13]
    assert [r.chat_id for r in second] == [10]  # the future one is not due

    # Rows whose lease ran out go to another worker, even while their claimer's heartbeat
    # goes on (it is stuck).
    later = now + 2 * LEASE
    async with db.transaction() as session:
        for worker in ("w1", "w2", "w3"):
            await outbox.heartbeat(session, worker, later)
        again = await outbox.claim(session, "w3", limit=10, lease=LEASE, now=later)
    assert sorted(r.chat_id for r in again) == [10, 12, 13]
    assert all(r.attempts == 2 for r in again)


async def test_a_dead_workers_rows_come_back_within_seconds_not_after_the_lease(
    db: Database, school: SchoolData
) -> None:
    lease = dt.timedelta(minutes=2)
    now = utcnow()
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session,
            school.school_id,
            [NewMessage(20 + n, "bulk", text="b") for n in range(3)],
            now=now,
        )
        for worker in ("dies", "lives"):
            await outbox.heartbeat(session, worker, now)
    async with db.transaction() as session:
        taken = await outbox.claim(session, "dies", limit=10, lease=lease, now=now)
    assert len(taken) == 3

    def at(seconds: float) -> dt.datetime:
        return now + dt.timedelta(seconds=seconds)

    # "dies" stops beating at once; "lives" beats every two seconds and claims each time.
    reclaimed: list[tuple[float, list[int]]] = []
    for seconds in range(2, 16, 2):
        async with db.transaction() as session:
            await outbox.heartbeat(session, "lives", at(seconds))
            rows = await outbox.claim(session, "lives", limit=10, lease=lease, now=at(seconds))
        if rows:
            reclaimed.append((seconds, sorted(r.chat_id for r in rows)))
    # Alive until its heartbeat is WORKER_ALIVE (10 s) old, then its rows are taken over.
    assert reclaimed == [(12, [20, 21, 22])]

    # A worker that keeps beating keeps its rows for the whole lease.
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session, school.school_id, [NewMessage(30, "bulk", text="b")], now=now
        )
        assert len(await outbox.claim(session, "lives", limit=10, lease=lease, now=at(14))) == 1
        await outbox.heartbeat(session, "other", at(60))
        await outbox.heartbeat(session, "lives", at(60))
        assert await outbox.claim(session, "other", limit=10, lease=lease, now=at(60)) == []
    # And the worker that gave up a dead one's rows never takes its own back by mistake.
    async with db.transaction() as session:
        assert await outbox.claim(session, "lives", limit=10, lease=lease, now=at(100)) == []


async def test_a_restarted_process_forgets_its_dead_predecessors_at_once(
    db: Database, school: SchoolData
) -> None:
    now = utcnow()
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session, school.school_id, [NewMessage(40, "bulk", text="b")], now=now
        )
        await outbox.heartbeat(session, "host:1:old", now)
        await outbox.claim(session, "host:1:old", limit=10, lease=LEASE, now=now)
    async with db.transaction() as session:
        await outbox.heartbeat(session, "host:2:new", now)
        assert await outbox.claimers(session) == {"host:1:old", "host:2:new"}
        assert await outbox.claim(session, "host:2:new", limit=10, lease=LEASE, now=now) == []
        await outbox.forget_workers(session, ["host:1:old"])
        (row,) = await outbox.claim(session, "host:2:new", limit=10, lease=LEASE, now=now)
    assert row.chat_id == 40


async def test_outcomes_are_recorded_only_by_the_worker_holding_the_row(
    db: Database, school: SchoolData
) -> None:
    async with db.transaction() as session:
        await outbox.enqueue(session, school.school_id, NewMessage(5, "x", text="t"))
    async with db.transaction() as session:
        (row,) = await outbox.claim(session, "w1", limit=5, lease=LEASE)
    now = utcnow()
    async with db.transaction() as session:
        await outbox.record(session, "intruder", [Outcome(row.id, OutboxStatus.SENT, 7)], now)
    assert await statuses(db) == [(5, "sending")]
    async with db.transaction() as session:
        await outbox.record(session, "w1", [Outcome(row.id, OutboxStatus.SENT, 7)], now)
        sent = await session.get(Outbox, row.id)
        assert sent is not None and sent.message_id == 7 and sent.sent_at is not None


async def test_blocked_recipients_are_skipped(db: Database, school: SchoolData) -> None:
    user_id = await add_member(db, school, 301, set())
    async with db.transaction() as session:
        await outbox.enqueue_many(
            session,
            school.school_id,
            [NewMessage(301, "x", user_id=user_id, text="a"), NewMessage(302, "x", text="b")],
        )
        await outbox.mark_blocked(session, 301, utcnow())
    async with db.transaction() as session:
        claimed = await outbox.claim(session, "w", limit=10, lease=LEASE)
    assert [r.chat_id for r in claimed] == [302]
    assert await statuses(db) == [(301, "blocked"), (302, "sending")]
    async with db.transaction() as session:
        await outbox.unblock(session, 301)
        user = await session.get(User, user_id)
        assert user is not None and user.blocked_at is None


async def test_digest_choice_and_daily_cap_hold_non_urgent_messages(
    db: Database, school: SchoolData
) -> None:
    digest_parent = await add_member(db, school, 401, set())
    capped_parent = await add_member(db, school, 402, set())
    async with db.transaction() as session:
        await session.execute(
            update(User).where(User.id == digest_parent).values(notice_mode=NoticeMode.DIGEST)
        )
        await session.execute(
            update(School).where(School.id == school.school_id).values(daily_notice_cap=2)
        )
    messages = [
        NewMessage(401, "update", user_id=digest_parent, text="d1"),
        NewMessage(401, "alert", user_id=digest_parent, priority=Priority.URGENT, text="u"),
        *[NewMessage(402, "update", user_id=capped_parent, text=f"c{i}") for i in range(3)],
        NewMessage(402, "alert", user_id=capped_parent, priority=Priority.URGENT, text="u"),
    ]
    async with db.transaction() as session:
        await outbox.enqueue_many(session, school.school_id, messages)
    # The cap counts what was already enqueued today, across calls.
    async with db.transaction() as session:
        await outbox.enqueue(
            session, school.school_id, NewMessage(402, "update", user_id=capped_parent, text="c3")
        )
    assert await statuses(db) == [
        (401, "held"),
        (401, "pending"),
        (402, "pending"),
        (402, "pending"),
        (402, "held"),
        (402, "pending"),
        (402, "held"),
    ]


async def test_group_migration_is_followed(db: Database, school: SchoolData) -> None:
    async with db.transaction() as session:
        await outbox.enqueue(session, school.school_id, NewMessage(-32, "group", text="g"))
        await outbox.migrate_chat(session, -32, -100_032)
        assert await session.scalar(select(func.count()).where(Outbox.chat_id == -100_032)) == 1


def test_short_texts_are_one_part() -> None:
    assert split_html("<b>你好</b>") == ["<b>你好</b>"]


def test_long_texts_split_between_paragraphs_and_never_inside_a_tag() -> None:
    paragraph = "<b>通知</b> " + "课后服务安排。" * 100  # about 700 characters
    text = "\n\n".join([paragraph] * 12)  # about 8,400 characters
    parts = split_html(text)
    assert len(parts) == 3
    assert all(len(visible_text(p)) <= outbox.MAX_TEXT for p in parts)
    assert all(p.count("<b>") == p.count("</b>") for p in parts)
    assert "\n\n".join(parts) == text  # nothing lost or changed


def test_a_formatted_run_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(MessageTooLong):
        split_html("<pre>" + "x" * 5000 + "</pre>")


async def test_enqueueing_an_unsplittable_text_fails_at_once(
    db: Database, school: SchoolData
) -> None:
    with pytest.raises(MessageTooLong):
        async with db.transaction() as session:
            await outbox.enqueue(
                session, school.school_id, NewMessage(1, "x", text="<b>" + "y" * 5000 + "</b>")
            )
    assert await statuses(db) == []


def test_entities_count_as_one_character() -> None:
    text = "&lt;" * 4000
    assert split_html(text) == [text]


def test_rendering_translates_the_template_params_and_buttons() -> None:
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    row = outbox.Claimed(
        id=1,
        school_id=1,
        chat_id=1,
        user_id=1,
        kind="broadcast",
        priority=2,
        template="Language set to {language}.",
        params={"language": "<English>"},
        text=None,
        buttons=[
            [
                {"label": "I agree", "data": "ack:1"},
                {"label": "原文", "raw": True, "url": "https://example.org"},
            ]
        ],
        attachment=None,
        attempts=1,
        broadcast_id=None,
        locale="zh_CN",
    )
    rendered = outbox.render(row, i18n.get("zh_CN"))
    assert rendered.parts == ["语言已设置为&lt;English&gt;。"]
    assert rendered.buttons == [
        [{"label": "同意", "data": "ack:1"}, {"label": "原文", "url": "https://example.org"}]
    ]


def test_typed_parameters_are_formatted_in_each_readers_language() -> None:
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    params = {
        "day": {"$day": "2026-12-07"},
        "time": {"$time": "16:50"},
        "days": {"$weekdays": 0b0011111},
        "some": {"$weekdays": 0b0000101},
        "money": {"$money": 123450},
        "name": "<张琪>",
    }
    zh = outbox.format_params(params, i18n.get("zh_CN"))
    en = outbox.format_params(params, i18n.get("en"))
    assert (zh["day"], zh["time"], zh["days"], zh["some"]) == (
        "12月7日周一",
        "16:50",
        "周一至周五",
        "周一、周三",
    )
    assert (en["day"], en["time"], en["days"], en["some"]) == (
        "Mon, Dec 7",
        "4:50\u202fPM",
        "Mon–Fri",
        "Mon, Wed",
    )
    assert zh["money"] == "¥1,234.50" and zh["name"] == "&lt;张琪&gt;"
