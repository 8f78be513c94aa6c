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
from storage.models import JobRun, Outbox, School, utcnow
from tests.e2e import Person

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)
CST = ZoneInfo("Asia/Shanghai")


async def test_roll_alert_reason_and_correction_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    teacher, mom, dad = (Person(demo_world.sandbox, who) for who in (TEACHER, MOM, DAD))
    roll = await teacher.send("/attendance", expecting="尚未提交")
    # The classmates' guardians filed a leave and a pick-up this morning: already on the roll.
    assert "📝 请假 (发烧，在家休息)" in roll["text"] and "🚗 提前接走" in roll["text"]
    # 张琪 may be on a later page of the roll: turn pages until her button shows.
    while True:
        try:
            teacher.button("张琪 ·", partial=True)
            break
        except AssertionError:
            await teacher.press("›", expecting="尚未提交")
    await teacher.press("张琪 ·", expecting="张琪 ✅", partial=True)
    await teacher.press("张琪 ✅", expecting="张琪 ❌ 缺勤", partial=True)
    await teacher.press("✅ 其余都到", expecting="张琪 ❌ 缺勤")
    saved = await teacher.press("提交", expecting="已保存")
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
    await teacher.send("/attendance", expecting="已于")
    while True:
        try:
            teacher.button("张琪 ❌", partial=True)
            break
        except AssertionError:
            await teacher.press("›", expecting="已于")
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


def anna_messages(person: Person) -> list[dict[str, object]]:
    return list(person.sandbox.messages(person.chat_id))
