"""End to end, the teacher's day: the real bot polls the sandbox over HTTP; the demo teacher
takes the roll, 张琪's guardians get the alert and the correction, answer with the reason, and
the evening digest (driven through the scheduler at its time) tells each family about the day.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot.context import Runtime
from bot.delivery import SendBudget
from bot.i18n import I18n
from bot.jobs import Scheduler
from sandbox import demo
from storage.db import Database
from storage.models import AuditLog, JobRun, Outbox, School, utcnow
from tests.e2e import Person
from tests.test_sandbox import png

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)
CST = ZoneInfo("Asia/Shanghai")


async def test_roll_alert_reason_and_correction_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    teacher, mom, dad = (Person(demo_world.sandbox, who) for who in (TEACHER, MOM, DAD))
    roll = await open_roll(teacher, demo_world, "尚未提交")
    # The classmates' guardians filed a leave and a pick-up this morning: already on the roll.
    assert "📝 请假 (发烧，在家休息)" in roll["text"] and "🚗 提前接走" in roll["text"]
    # 张琪 may be on a later page of the roll: turn pages until her button shows.
    await _page_with(teacher, "张琪 ·")
    await teacher.press("张琪 ·", expecting="张琪 ✅", partial=True)
    await teacher.press("张琪 ✅", expecting="张琪 ❌ 缺勤", partial=True)
    # The classmate on leave is marked absent all the same (two taps: 到, then 缺勤).
    message, _ = await _page_with(teacher, "📝")
    label = next(
        b["text"]
        for row in message["reply_markup"]["inline_keyboard"]
        for b in row
        if "📝" in b["text"]
    )
    who = label.rsplit(" ", 1)[0]  # "12 王小明"
    await teacher.press(label, expecting=f"{who.split(' ', 1)[1]} ✅")
    await teacher.press(f"{who} ✅", expecting=f"{who.split(' ', 1)[1]} ❌ 缺勤")
    await teacher.press("✅ 其余都到", expecting="张琪 ❌ 缺勤")
    saved = await teacher.press("提交", expecting="已保存")
    # Two absent, one covered by a leave: only 张琪's guardians are alerted.
    assert "正在通知 1 名未请假缺勤孩子的家长" in saved["text"]

    alert = await mom.answer(0, "张琪今天没有到")
    assert "吴丽萍" in alert["text"]
    await dad.answer(0, "张琪今天没有到")
    await mom.press("说明原因", expecting="张琪今天没有到")
    answered = await mom.press("生病", expecting="老师已知道")
    assert "生病" in answered["text"]
    told = await teacher.answer(0, "张琪的家长说明了")
    assert "生病" in told["text"]
    await dad.answer(0, "另一位家长已告诉老师")

    # She turns up after all: one tap to 迟到 and a correction goes to both guardians.
    await open_roll(teacher, demo_world, "已于")
    await _page_with(teacher, "张琪 ❌")
    await teacher.press("张琪 ❌", expecting="张琪 ⏰ 迟到", partial=True)
    fixed = await teacher.press("保存更正", expecting="已保存")
    assert "发送更正" in fixed["text"]
    correction = await mom.answer(0, "更正")
    assert "迟到" in correction["text"]

    # The classmate on leave was marked absent too: covered by the leave, nobody is alerted.
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            children = set(
                (
                    await session.scalars(
                        select(Outbox.params["child"].as_string()).where(Outbox.kind == "absence")
                    )
                ).all()
            )
        assert children == {"张琪"}
    finally:
        await db.dispose()


async def test_the_evening_digest_at_its_time_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    teacher, mom, anna = (Person(demo_world.sandbox, who) for who in (TEACHER, MOM, ANNA))
    await teacher.send("/attendance 缺 张琪", expecting="已保存")
    await mom.answer(0, "张琪今天没有到")
    db = Database(database_url)
    try:
        # The school's digest time has just passed (a minute ago, whatever the hour the test
        # runs), and the scheduler ticks now: the run is due, not stale, and its messages are
        # due at once for the running bot's delivery worker.
        now = utcnow()
        local = now.astimezone(CST)
        digest_at = (local - dt.timedelta(minutes=1)).replace(second=0, microsecond=0).time()
        async with db.transaction() as session:
            await session.execute(update(School).values(digest_time=digest_at))
        runtime = Runtime(
            settings=demo_world.settings, db=db, i18n=I18n(CST), budget=SendBudget(rate=29)
        )
        # This tick or the running bot's own (every few seconds) claims the run: the ledger
        # lets exactly one of them do it.
        await Scheduler(runtime).tick(now)
        # The running bot's delivery worker sends it: 张琪's mother reads the day in one message.
        digest = await mom.answer(0, "今日课后服务")
        assert "张琪" in digest["text"] and "缺勤" in digest["text"]
        async with db.transaction() as session:
            due = dt.datetime.combine(local.date(), digest_at, CST).astimezone(dt.UTC)
            runs = (
                await session.scalars(
                    select(JobRun).where(JobRun.job == "digest", JobRun.due_at == due)
                )
            ).all()
        assert len(runs) == 1 and runs[0].outcome and "evening messages" in runs[0].outcome
    finally:
        await db.dispose()
    # Anna's child has no session today: she gets nothing about the day.
    assert not any("after school today" in (m.get("text") or "") for m in anna_messages(anna))


async def open_roll(teacher: Person, world: demo.DemoWorld, expecting: str) -> dict[str, object]:
    """/attendance: the roll of the demo session (from the day's list when the teacher has
    another session today too)."""
    shown = await teacher.send("/attendance", expecting="")
    if expecting in str(shown.get("text")):
        return shown
    assert world.scene is not None
    course = world.scene.teacher_course_id
    message = teacher.sandbox.messages(teacher.chat_id)[-1]
    data = next(
        b["callback_data"]
        for row in message["reply_markup"]["inline_keyboard"]
        for b in row
        if b.get("callback_data", "").startswith(f"at:o:{course}:")
    )
    after = teacher.sandbox.seq
    await teacher.sandbox.user_presses(
        teacher.user_id, teacher.chat_id, message["message_id"], data
    )
    return await teacher.answer(after, expecting)


async def _page_with(person: Person, label: str) -> tuple[dict[str, object], str]:
    """Turn the roll's pages (from the first) until a button containing `label` shows."""
    for _ in range(10):
        try:
            return person.button(label, partial=True)
        except AssertionError:
            await person.press("›", expecting="")
    raise AssertionError(f"no page of the roll has {label!r}")


def anna_messages(person: Person) -> list[dict[str, object]]:
    return list(person.sandbox.messages(person.chat_id))


async def test_an_update_with_photos_and_children_without_consent_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    sandbox = demo_world.sandbox
    teacher, mom = Person(sandbox, TEACHER), Person(sandbox, MOM)
    # 张琪's mother reads the teachers' updates as they come.
    await mom.send("/notices", expecting="课堂动态")
    await mom.press("动态·即时", expecting="老师发布后即时接收", partial=True)

    await teacher.send("/update", expecting="最多 10 张")
    after = sandbox.seq
    await sandbox.user_sends_photos(
        TEACHER, TEACHER, [(png(), "a.png"), (png(3, 2), "b.png")], caption="今天我们搭了一座桥"
    )
    # Classmates whose guardians gave no photo consent are named; the teacher sends text alone.
    preview = await teacher.answer(after, "没有同意分享照片")
    assert "确认照片中没有他们" in str(preview["reply_markup"])
    await teacher.press("只发文字", expecting="照片没有发送")
    text_only = await mom.answer(0, "今天我们搭了一座桥")
    assert "photo" not in text_only and "课堂动态" in text_only["text"]

    # The second update: the teacher confirms those children are not in the photos.
    await teacher.send("/update", expecting="最多 10 张")
    after = sandbox.seq
    await sandbox.user_sends_photos(
        TEACHER, TEACHER, [(png(), "c.png"), (png(3, 2), "d.png")], caption="孩子们的作品"
    )
    await teacher.answer(after, "没有同意分享照片")
    await teacher.press("确认照片中没有他们", expecting="已发送")
    album = await mom.answer(0, "孩子们的作品")
    group = album.get("media_group_id")
    assert album.get("photo") and group
    assert len([m for m in sandbox.messages(MOM) if m.get("media_group_id") == group]) == 2
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            confirmed = (
                await session.scalars(
                    select(AuditLog.details).where(AuditLog.action == "update.photos_confirmed")
                )
            ).all()
        assert len(confirmed) == 1
    finally:
        await db.dispose()
