"""/attendance as a teacher meets it, and the absence alert as a parent answers it, through
`Application.process_update` with the Bot API calls recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.services import enrolment, leaves
from storage.db import Database
from storage.models import AttendanceMark, AuditLog, Outbox, Role, Teacher
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import FakeUser
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
TEACHER, MUM, DAD, STRANGER, PARENT_ONLY = 900, 901, 902, 903, 904


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.combine(dt.datetime.now(CST).date(), dt.time(16, 55), CST)

    def __call__(self) -> dt.datetime:
        return self.now.astimezone(dt.UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr("handlers.teacher.attendance.utcnow", found)
    return found


async def lego(db: Database, school: SchoolData) -> int:
    """乐高机器人 every day 16:50–17:50 by 王老师 (account 900): 李小明 (two guardians) and
    张伟 enrolled; 张伟 is on leave today."""
    await term_around_today(db)
    teacher_user = await add_member(db, school, TEACHER, {Role.TEACHER})
    await add_member(db, school, MUM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明",), locale="en")
    await add_member(db, school, STRANGER, {Role.PARENT}, ("李小红",))
    await add_member(db, school, PARENT_ONLY, {Role.PARENT}, ("张伟",))
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=teacher_user)
        )
    course = await make_course(
        db,
        school,
        "LEGO",
        name="乐高机器人",
        teacher_id=school.teacher_id,
        weekdays=0b1111111,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
        capacity=None,
    )
    for name in ("李小明", "张伟"):
        assert not isinstance(
            await enrolment.sign_up(db, school.student_ids[name], course, user_id=None),
            enrolment.Refusal,
        )
    today = dt.datetime.now(CST).date()
    async with db.transaction() as session:
        await leaves.announce(
            session,
            school.student_ids["张伟"],
            today,
            2,
            user_id=None,
            reason="看牙医",
            now=dt.datetime.combine(today, dt.time(8), CST),
        )
    return course


async def alerts(db: Database) -> list[Outbox]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(Outbox).where(Outbox.kind == "absence").order_by(Outbox.id)
        )
        return list(rows.all())


async def test_the_roll_in_taps_then_the_alert_and_the_parents_reason(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    await lego(db, school)
    teacher = make_user(TEACHER)
    opened = await teacher.send("/attendance")
    text = FakeUser.texts(opened)
    # The only session of today opens at once: numbered, 张伟's leave already on it.
    assert "<b>乐高机器人</b>" in text or "乐高机器人" in text
    assert "1. 李小明 · 未点名" in text and "2. 张伟 📝 请假 (看牙医)" in text
    assert {"1 李小明 ·", "2 张伟 📝", "✅ 其余都到", "提交", "‹ 返回", "取消"} <= set(
        teacher.all_buttons()
    )
    # Submitting with 李小明 unmarked saves nothing and says who is missing.
    refused = await teacher.click("提交")
    assert "还有 1 个孩子未点名：序号 1。" in FakeUser.texts(refused)
    # Two taps: present, then absent.
    await teacher.click("1 李小明 ·")
    tapped = await teacher.click("1 李小明 ✅")
    assert "1. 李小明 ❌ 缺勤" in FakeUser.texts(tapped)
    assert "1 处修改尚未提交。" in FakeUser.texts(tapped)
    saved = await teacher.click("提交")
    said = FakeUser.texts(saved)
    assert "✅ 已保存乐高机器人（" in said and "正在通知 1 名未请假缺勤孩子的家长。" in said
    sent = await alerts(db)
    assert sorted(r.chat_id for r in sent) == [MUM, DAD]
    # Re-opening shows what was saved.
    again = await teacher.send("/attendance")
    assert "1. 李小明 ❌ 缺勤 (已通知家长)" in FakeUser.texts(again)
    assert "已于" in FakeUser.texts(again) and "保存更正" in teacher.all_buttons()

    # The mother answers the alert with a reason; the teacher is told.
    mark_id = sent[0].buttons[0][0]["data"].split(":")[2]
    mum = make_user(MUM)
    reasons = await mum.press(f"ab:r:{mark_id}")
    assert reasons  # the alert's buttons turn into the reasons
    assert "生病" in mum.all_buttons() and "其他原因…" in mum.all_buttons()
    answered = await mum.press(f"ab:s:{mark_id}:ill")
    assert "老师已知道李小明未到乐高机器人的原因：生病" in FakeUser.texts(answered)
    async with db.transaction() as session:
        to_teacher = await session.scalar(
            select(Outbox).where(Outbox.kind == "absence-reason", Outbox.chat_id == TEACHER)
        )
    assert to_teacher is not None and to_teacher.params["reason"] == {"$msgid": "Ill"}
    # Another family's parent forging the press changes nothing.
    stranger = make_user(STRANGER)
    await stranger.press(f"ab:s:{mark_id}:family")
    async with db.transaction() as session:
        notes = (
            await session.scalars(
                select(AttendanceMark.note).where(AttendanceMark.note.is_not(None))
            )
        ).all()
        refusals = await session.scalar(
            select(AuditLog.id).where(AuditLog.action == "attendance.refused")
        )
    assert notes == ["Ill"] and refusals is not None


async def test_a_typed_reason_and_a_correction(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    await lego(db, school)
    teacher = make_user(TEACHER)
    done = await teacher.send("/attendance 乐高 缺 1")
    assert "正在通知 1 名未请假缺勤孩子的家长。" in FakeUser.texts(done)
    mark_id = (await alerts(db))[0].buttons[0][0]["data"].split(":")[2]
    mum = make_user(MUM)
    await mum.press(f"ab:o:{mark_id}")
    answered = await mum.send("奶奶临时接走了")
    assert "奶奶临时接走了" in FakeUser.texts(answered)
    # The child turns up: one tap back to present and the guardians get a correction.
    await teacher.send("/attendance")
    await teacher.click("1 李小明 ❌")  # → late
    fixed = await teacher.click("保存更正")
    assert "将向 1 个孩子的家长发送更正。" in FakeUser.texts(fixed)
    corrections = [r for r in await alerts(db) if "absence-fixed" in (r.dedupe_key or "")]
    assert sorted(r.chat_id for r in corrections) == [MUM, DAD]


async def test_the_shorthand_refuses_to_guess_and_strangers_are_turned_away(
    make_user: Any, db: Database, school: SchoolData, clock: Clock
) -> None:
    await lego(db, school)
    teacher = make_user(TEACHER)
    unknown = await teacher.send("/attendance 乐高 缺 9")
    assert "乐高机器人的名单中没有序号或姓名为“9”的孩子。" in FakeUser.texts(unknown)
    assert "没有保存任何内容。" in FakeUser.texts(unknown)
    no_code = await teacher.send("/attendance 乐高 1 2")
    assert "请写明要登记的状态" in FakeUser.texts(no_code)
    parent = make_user(MUM)
    assert "点名仅供老师和学校管理员使用。" in FakeUser.texts(await parent.send("/attendance"))
    # A parent forging a roll press: refused, audited, nothing saved.
    await parent.press("at:s:1:20261207:0")
    async with db.transaction() as session:
        assert (await session.scalars(select(AttendanceMark))).all() == []
        assert await session.scalar(
            select(AuditLog.id).where(AuditLog.action == "attendance.refused")
        )
    assert await alerts(db) == []
