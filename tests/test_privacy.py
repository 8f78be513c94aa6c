"""/forget and /mydata: everything a guardian asks about or removes, at every school."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.i18n import I18n
from bot.services import outbox, privacy
from bot.services.outbox import NewMessage
from storage.db import Database
from storage.models import Guardianship, Outbox, OutboxStatus, Role, School, User, utcnow
from tests.factories import SchoolData, add_member, make_school
from tests.harness import FakeUser

PARENT = 301


async def _messages(db: Database, school_id: int, user_id: int) -> dict[str, int]:
    """One row per status the guardian can have; returns kind → row id."""
    ids = {}
    async with db.transaction() as session:
        for status in OutboxStatus:
            if status is OutboxStatus.DIGESTED:
                continue
            (row_id,) = await outbox.enqueue_many(
                session,
                school_id,
                [
                    NewMessage(
                        chat_id=PARENT,
                        kind=f"notice-{status.value}",
                        user_id=user_id,
                        template="{child} is on leave",
                        params={"child": "李小明"},
                    )
                ],
            )
            await session.execute(update(Outbox).where(Outbox.id == row_id).values(status=status))
            ids[status.value] = row_id
    return ids


async def test_forget_covers_every_school_cancels_unsent_and_scrubs_sent(
    db: Database, school: SchoolData
) -> None:
    other = await make_school(db, code="other")
    async with db.transaction() as session:
        await session.execute(
            update(School).where(School.id == other.school_id).values(name="东城小学")
        )
    here = await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    there = await add_member(db, other, PARENT, {Role.PARENT}, children=("张伟",))
    rows = await _messages(db, school.school_id, here) | {
        f"other-{k}": v for k, v in (await _messages(db, other.school_id, there)).items()
    }

    async with db.transaction() as session:
        done = await privacy.forget(session, PARENT)

    assert sorted(done.schools) == ["东城小学", "河清实验学校"]
    assert done.account_deleted
    # pending, sending and held (the evening digest) at both schools
    assert done.cancelled == 6
    async with db.transaction() as session:
        assert await session.scalar(select(User.id).where(User.telegram_id == PARENT)) is None
        assert list(await session.scalars(select(Guardianship))) == []
        kept = {r.id: r for r in await session.scalars(select(Outbox))}
    assert set(kept) == set(rows.values())  # counts kept
    for name, row_id in rows.items():
        row = kept[row_id]
        assert row.chat_id == 0 and row.params is None and row.text is None
        assert row.user_id is None
        status = name.removeprefix("other-")
        if status in ("pending", "sending", "held"):
            assert row.status is OutboxStatus.CANCELLED, name
        else:
            assert row.status.value == status, name
    assert done.scrubbed == len(rows) - 6


async def test_forget_on_the_button_says_which_schools(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    other = await make_school(db, code="other")
    await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    await add_member(db, other, PARENT, {Role.PARENT}, children=("张伟",))
    parent: FakeUser = make_user(PARENT, language_code="en")
    await parent.send("/forget")
    text = FakeUser.texts(await parent.click("Yes, delete my data"))
    assert "Goodbye" in text and "河清实验学校" in text
    async with db.transaction() as session:
        assert list(await session.scalars(select(User).where(User.telegram_id == PARENT))) == []


async def test_times_are_the_schools_zone_not_the_deployments(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    """KEHOU_TIMEZONE is Asia/Shanghai; this school is in Los Angeles."""
    async with db.transaction() as session:
        await session.execute(
            update(School)
            .where(School.id == school.school_id)
            .values(timezone="America/Los_Angeles")
        )
    user_id = await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    joined = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)  # 10:30 in Shanghai
    async with db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(created_at=joined))
        await outbox.enqueue_many(
            session,
            school.school_id,
            [
                NewMessage(
                    chat_id=PARENT,
                    kind="offer",
                    user_id=user_id,
                    template="Answer by {deadline}",
                    params={"deadline": {"$datetime": joined.isoformat()}},
                )
            ],
        )
    parent: FakeUser = make_user(PARENT, language_code="en")
    text = FakeUser.texts(await parent.send("/mydata"))
    assert "6:30" in text and "10:30" not in text  # 18:30 the day before, in Los Angeles

    async with db.transaction() as session:
        (claimed,) = await outbox.claim(
            session, "w", limit=10, lease=dt.timedelta(minutes=1), now=utcnow()
        )
    assert claimed.timezone == "America/Los_Angeles"
    i18n = I18n(ZoneInfo("Asia/Shanghai"), "en")
    rendered = outbox.render(claimed, i18n.get(claimed.locale, claimed.timezone))
    assert "18:30" in rendered.parts[0] and "10:30" not in rendered.parts[0]


async def test_retention_clears_old_content_and_keeps_counts(
    db: Database, school: SchoolData
) -> None:
    user_id = await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    rows = await _messages(db, school.school_id, user_id)
    now = utcnow() + dt.timedelta(days=31)
    async with db.transaction() as session:
        await session.execute(
            update(School).where(School.id == school.school_id).values(outbox_retention_days=30)
        )
        cleared = await outbox.clear_old_content(session, now)
        assert await outbox.clear_old_content(session, now) == 0  # once is enough
    assert cleared == 4  # sent, failed, blocked, cancelled; the unsent are left to be sent
    async with db.transaction() as session:
        kept = {r.kind: r for r in await session.scalars(select(Outbox))}
    assert len(kept) == len(rows)
    for kind, row in kept.items():
        unsent = kind.removeprefix("notice-") in ("pending", "sending", "held")
        assert (row.params is None and row.chat_id == 0) is not unsent, kind


async def test_mydata_is_complete_in_both_languages(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    user_id = await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    await _messages(db, school.school_id, user_id)
    async with db.transaction() as session:
        await session.execute(
            update(Guardianship).values(consent_version="2026-09", consented_at=utcnow())
        )
        seen = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)  # 10:30 in the school's zone
        await session.execute(update(User).where(User.id == user_id).values(last_seen_at=seen))
    english = FakeUser.texts(await make_user(PARENT, language_code="en").send("/mydata"))
    assert "version 2026-09" in english and f"Telegram chat: {PARENT}" in english
    assert "Notices: as they come" in english and "10:30" in english
    assert "messages from Kehou to you" in english
    assert "message · held for the daily digest" in english and "notice-" not in english
    async with db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(locale="zh_CN"))
    chinese = FakeUser.texts(await make_user(PARENT, language_code="zh-hans").send("/mydata"))
    assert "版本 2026-09" in chinese and "通知方式：即时推送" in chinese and "10:30" in chinese
    assert "消息 · 留待每日汇总" in chinese and "held" not in chinese
