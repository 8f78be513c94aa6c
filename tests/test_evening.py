"""The evening digest as a service: one message per guardian, all their children, in their
language; updates only for digest readers; held notices folded in; nothing on a quiet day."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.context import KehouApplication
from bot.i18n import I18n
from bot.jobs import Scheduler
from bot.services import attendance, evening, outbox
from bot.services.evening import Early
from bot.services.outbox import NewMessage
from storage.db import Database
from storage.models import (
    CalendarDay,
    CalendarKind,
    DailyUpdate,
    Dismissal,
    DismissalWay,
    NoticeMode,
    Outbox,
    OutboxStatus,
    UpdateMode,
    User,
)
from tests.factories import SchoolData
from tests.harness import FakeUser
from tests.test_attendance import ADMIN, CST, DAD, MONDAY, MUM, TEACHER, at, member, setup

I18N = I18n(CST)


async def evening_rows(db: Database) -> dict[int, Outbox]:
    async with db.transaction() as session:
        rows = await session.scalars(select(Outbox).where(Outbox.kind == evening.KIND))
        return {r.chat_id: r for r in rows.all()}


async def test_one_message_per_guardian_with_the_day_of_each_child(
    db: Database, school: SchoolData
) -> None:
    course = await setup(db, school)
    teacher = await member(db, TEACHER)
    ming, wei = school.student_ids["李小明"], school.student_ids["张伟"]
    async with db.transaction() as session:
        await session.execute(
            update(User).where(User.telegram_id == MUM).values(notice_mode=NoticeMode.DIGEST)
        )
        await session.execute(
            update(User).where(User.telegram_id == DAD).values(update_mode=UpdateMode.INSTANT)
        )
        saved = await attendance.submit(
            session,
            teacher,
            course,
            MONDAY,
            {ming: "late", wei: "present"},
            0,
            at(MONDAY, 16, 45),
        )
        assert saved.roll is not None
        session.add(
            Dismissal(
                school_id=school.school_id,
                session_id=saved.roll.session_id,
                student_id=ming,
                way=DismissalWay.GUARDIAN,
                left_at=at(MONDAY, 17, 52),
            )
        )
        session.add(
            DailyUpdate(
                school_id=school.school_id,
                session_id=saved.roll.session_id,
                teacher_id=school.teacher_id,
                text="今天搭了一座桥",
                photos=["P1", "P2"],
            )
        )
        mum_id = await session.scalar(select(User.id).where(User.telegram_id == MUM))
        await outbox.enqueue(
            session,
            school.school_id,
            NewMessage(chat_id=MUM, user_id=mum_id, kind="notice", text="明天停水"),
        )
    async with db.transaction() as session:
        built = await evening.build(session, I18N, school.school_id, MONDAY, at(MONDAY, 18, 30))
    assert built == evening.Built(families=2, held=1)
    rows = await evening_rows(db)
    mum, dad = rows[MUM], rows[DAD]
    # 妈妈 (digest reader, Chinese): her child, the roll, how he left, the update with its
    # photos as an album, and her held notice — one message.
    assert "<b>李小明</b>" in mum.text and "⏰ 迟到" in mum.text and "17:52 由家长接走" in mum.text
    assert "💬 王老师：今天搭了一座桥" in mum.text and "明天停水" in mum.text
    assert mum.attachment == {"type": "album", "photos": ["P1", "P2"]}
    assert mum.priority == 3  # bulk: alerts and answers go first
    # 爸爸 reads updates at once, in English: both children, no update repeated, no photos.
    assert "<b>李小明</b>" in dad.text and "<b>张伟</b>" in dad.text
    assert "Late" in dad.text and "Present" in dad.text and "搭了" not in dad.text
    assert dad.attachment is None
    async with db.transaction() as session:
        held = await session.scalar(select(Outbox).where(Outbox.kind == "notice"))
    assert held is not None and held.status is OutboxStatus.DIGESTED and held.digest_id == mum.id
    # Running it again queues nothing more.
    async with db.transaction() as session:
        again = await evening.build(session, I18N, school.school_id, MONDAY, at(MONDAY, 18, 31))
    assert again.families == 0 and len(await evening_rows(db)) == 2


async def test_nothing_on_a_day_without_service_or_for_a_family_without_a_session(
    db: Database, school: SchoolData
) -> None:
    await setup(db, school)
    saturday = MONDAY + dt.timedelta(days=5)
    async with db.transaction() as session:
        quiet = await evening.build(session, I18N, school.school_id, saturday, at(saturday, 18))
        assert quiet == evening.Built(0, 0)
        session.add(
            CalendarDay(
                school_id=school.school_id,
                term_id=school.term_id,
                date=MONDAY,
                kind=CalendarKind.HOLIDAY,
            )
        )
    async with db.transaction() as session:
        holiday = await evening.build(session, I18N, school.school_id, MONDAY, at(MONDAY, 18))
    assert holiday == evening.Built(0, 0) and await evening_rows(db) == {}


async def test_a_swapped_working_day_runs_the_named_weekday(
    db: Database, school: SchoolData
) -> None:
    await setup(db, school)  # the course runs Monday to Friday
    sunday = MONDAY - dt.timedelta(days=1)
    async with db.transaction() as session:
        session.add(
            CalendarDay(
                school_id=school.school_id,
                term_id=school.term_id,
                date=sunday,
                kind=CalendarKind.WORKDAY,
                runs_weekday=1,
            )
        )
    async with db.transaction() as session:
        built = await evening.build(session, I18N, school.school_id, sunday, at(sunday, 18, 30))
    rows = await evening_rows(db)
    assert built.families == 2 and "老师尚未登记考勤" in rows[MUM].text  # no roll: said so


async def test_an_admin_sends_todays_digest_early_once_and_sees_the_counts(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    await setup(db, school)
    admin, parent = await member(db, ADMIN), await member(db, MUM)
    noon = at(MONDAY, 12)
    async with db.transaction() as session:
        assert (await evening.send_now(session, I18N, parent, noon)).outcome is Early.REFUSED
        early = await evening.send_now(session, I18N, admin, noon)
        again = await evening.send_now(session, I18N, admin, noon)
    assert early.outcome is Early.SENT and early.built == evening.Built(2, 0)
    assert again.outcome is Early.ALREADY
    # At the digest time the scheduler finds today's run done: nothing goes twice.
    ran = await Scheduler(app.runtime).tick(at(MONDAY, 18, 31))
    assert "digest" not in ran and len(await evening_rows(db)) == 2
    async with db.transaction() as session:
        await session.execute(
            update(Outbox)
            .where(Outbox.kind == evening.KIND, Outbox.chat_id == MUM)
            .values(status=OutboxStatus.FAILED)
        )
        counts = await evening.evenings(session, admin, MONDAY)
        assert await evening.evenings(session, parent, MONDAY) is None
    assert counts == [evening.Evening(MONDAY, sent=0, failed=1, waiting=1)]


async def test_digest_screens_for_an_admin(
    make_user: Any, db: Database, school: SchoolData, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup(db, school)
    monkeypatch.setattr("handlers.admin.digest.utcnow", lambda: at(MONDAY, 12))
    admin = make_user(ADMIN)
    shown = await admin.send("/digest")
    assert "最近 7 天没有发送晚间汇总。" in FakeUser.texts(shown)
    asked = await admin.click("立即发送今天的汇总…")
    assert "不会出现在今天的汇总里" in FakeUser.texts(asked)
    assert {"✅ 立即发送", "‹ 返回", "取消"} <= set(admin.all_buttons())
    sent = await admin.click("✅ 立即发送")
    assert "今天的晚间汇总正在发给 2 个家庭。" in FakeUser.texts(sent)
    twice = await admin.press("ev:y")
    assert "今天的晚间汇总已经发出，不会重复发送。" in FakeUser.texts(twice)
    parent = make_user(MUM)
    assert "仅供学校管理员使用。" in FakeUser.texts(await parent.send("/digest"))
