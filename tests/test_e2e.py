"""End to end: the real Kehou bot polls the sandbox over HTTP; people type and press in it.

No `process_update` here: updates travel as JSON through getUpdates and every answer through the
Bot API, exactly as with Telegram. The world is the demo (`sandbox/demo.py`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from bot.services import enrolment, invites, lottery
from sandbox import demo
from storage.db import Database
from storage.models import (
    Allocation,
    CalendarDay,
    Course,
    Enrolment,
    Guardianship,
    LotteryDraw,
    Student,
    Term,
    User,
    utcnow,
)
from tests.e2e import Person

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)


def command_names(world: demo.DemoWorld, user_id: int, chat_id: int | None = None) -> set[str]:
    return {c["command"] for c in world.sandbox.commands_for(chat_id or user_id, user_id)}


async def test_new_parent_redeems_an_invite_and_links_the_child(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    parent = Person(demo_world.sandbox, demo.NEW_PARENT_ID)
    assert "mydata" not in command_names(demo_world, demo.NEW_PARENT_ID)

    welcome = await parent.send("/start", expecting="邀请码")
    assert "课后" in welcome["text"]
    notice = await parent.send(invites.pretty(demo_world.new_parent_code), expecting="尹铭")
    assert "/forget" in notice["text"]
    await parent.press("同意", expecting="照片")
    done = await parent.press("可以出现孩子的照片", expecting="已与尹铭绑定")
    # The notice stays in the chat as the parent agreed to it; the answers came as new messages.
    assert done["message_id"] != notice["message_id"], parent.transcript()
    kept = next(
        m
        for m in demo_world.sandbox.messages(demo.NEW_PARENT_ID)
        if m["message_id"] == notice["message_id"]
    )
    assert kept["text"] == notice["text"] and not kept.get("reply_markup", {}).get(
        "inline_keyboard"
    )

    db = Database(database_url)
    try:
        async with db.transaction() as session:
            linked = (
                await session.execute(
                    select(Student.student_no, Guardianship.photo_consent)
                    .join(Guardianship, Guardianship.student_id == Student.id)
                    .join(User, User.id == Guardianship.user_id)
                    .where(User.telegram_id == demo.NEW_PARENT_ID)
                )
            ).all()
    finally:
        await db.dispose()
    assert [tuple(row) for row in linked] == [(demo.NEW_PARENT_CHILD, True)]
    # The parent's own menu replaced the stranger's.
    assert {"mydata", "photos", "forget"} <= command_names(demo_world, demo.NEW_PARENT_ID)

    # The code is spent: typing it again links nothing more and says so.
    again = Person(demo_world.sandbox, ANNA)
    refused = await again.send(
        f"/start {demo_world.new_parent_code}", expecting="has already been used"
    )
    assert "尹铭" not in refused["text"]


async def test_help_names_each_persona_and_role_in_their_language(
    demo_world: demo.DemoWorld,
) -> None:
    admin = await Person(demo_world.sandbox, ADMIN).send("/help", expecting="您的身份")
    assert "管理员" in admin["text"] and "河清实验学校" in admin["text"]
    teacher = await Person(demo_world.sandbox, TEACHER).send("/help", expecting="您的身份")
    assert "教师" in teacher["text"]
    anna = await Person(demo_world.sandbox, ANNA).send("/help", expecting="you are")
    assert "parent" in anna["text"] and "/mydata" in anna["text"]


async def test_language_switch_changes_answers_and_menu(demo_world: demo.DemoWorld) -> None:
    mom = Person(demo_world.sandbox, MOM)
    await mom.send("/language", expecting="")
    switched = await mom.press("English", expecting="Language set to English")
    assert switched["text"] == "Language set to English."
    assert "you are: parent" in (await mom.send("/help", expecting="you are"))["text"]
    menu = {c["command"]: c["description"] for c in demo_world.sandbox.commands_for(MOM, MOM)}
    assert menu["help"] == "What I can do for you" and "mydata" in menu

    await mom.send("/language", expecting="")
    back = await mom.press("简体中文", expecting="语言已设置为")
    assert "简体中文" in back["text"]


async def test_personal_commands_in_the_class_group_point_to_the_private_chat(
    demo_world: demo.DemoWorld,
) -> None:
    # A linked parent is answered in her private chat; the group sees nothing.
    group_before = [m for m in demo_world.sandbox.messages(demo.GROUP_CHAT_ID) if m["outgoing"]]
    before = demo_world.sandbox.seq
    await demo_world.sandbox.user_sends(MOM, demo.GROUP_CHAT_ID, f"/mydata@{demo.BOT_USERNAME}")
    private = await Person(demo_world.sandbox, MOM).answer(before, "/mydata")
    assert demo.GROUP_TITLE in private["text"]
    group_after = [m for m in demo_world.sandbox.messages(demo.GROUP_CHAT_ID) if m["outgoing"]]
    assert group_after == group_before


async def test_admin_broadcast_reaches_the_class_and_confirmations_come_back(
    demo_world: demo.DemoWorld,
) -> None:
    admin = Person(demo_world.sandbox, ADMIN)
    await admin.send("/broadcast", expecting="通知内容")
    await admin.send("明天下午 3 点家长会，请准时参加。", expecting="发给谁")
    await admin.press("班级", expecting="发给哪些班级")
    await admin.press("三年级2班", expecting="发给哪些班级")
    await admin.press("下一步（1 个班）", expecting="三年级2班家长 · 2 个家庭 · 3 位家长")
    await admin.press("⬜ 请对方点击“确认收到”", expecting="确认收到按钮：开")
    await admin.press("立即发送", expecting="现在把这条通知发给三年级2班家长")
    status = await admin.press("✅ 确认发送", expecting="接收人 3")

    mom, dad, anna = (Person(demo_world.sandbox, who) for who in (MOM, DAD, ANNA))
    notice = await mom.answer(0, "家长会")
    assert "📣" in notice["text"] and "发布人" in notice["text"]
    assert notice["reply_markup"]["inline_keyboard"][0][0]["text"] == "✅ 确认收到"
    english = await anna.answer(0, "家长会")  # the text is the admin's; the header is Anna's
    assert "Notice" in english["text"] and "From:" in english["text"]
    assert english["reply_markup"]["inline_keyboard"][0][0]["text"] == "✅ Got it"
    await dad.answer(0, "家长会")

    await mom.press("✅ 确认收到", expecting="家长会")
    # The admin's status message is edited in place as delivery and confirmations come in:
    # 张琪's two parents are one family, confirmed by her mother.
    final = await admin.answer(0, "已确认 1 / 2 个家庭")
    assert final["message_id"] == status["message_id"] and "已发送 3" in final["text"]
    listing = await admin.send("/broadcasts", expecting="最近的通知")
    assert "家长会" in listing["text"]
    number = status["text"].split("#", 1)[1].split()[0]  # the demo has a broadcast of its own
    await admin.press(f"#{number}", expecting="家长会")
    names = await admin.press("未确认名单", expecting="个家庭未确认")
    assert "Anna" in names["text"] and "张琪爸爸" not in names["text"]
    assert "张琪妈妈" not in names["text"]


async def test_a_parent_signs_up_reads_the_week_and_withdraws_over_the_wire(
    demo_world: demo.DemoWorld,
) -> None:
    mom = Person(demo_world.sandbox, MOM)
    listing = await mom.send("/courses", expecting="可选的课程")
    assert "张琪" in listing["text"]
    await mom.press("🔍 筛选", expecting="筛选课程")
    await mom.press("第二时段", expecting="门课程符合条件")
    await mom.press("筛选", expecting="筛选课程", partial=True)
    await mom.press("科技活动", expecting="门课程符合条件")
    card = await mom.press("剩余", expecting="承办", partial=True)
    course = card["text"].splitlines()[0]
    await mom.press("报名", expecting="为张琪报名这门课程")
    done = await mom.press("确认报名", expecting="已成功报名")
    assert course in done["text"]
    assert done["message_id"] == listing["message_id"]  # one message, edited in place

    before = demo_world.sandbox.seq
    week = await mom.send("/schedule", expecting="的一周课表")
    assert course in week["text"] and "报名成功（家长）" in week["text"]
    await mom.press("📅 添加到手机日历", expecting="")
    calendar = await mom.answer(before, "日历")
    assert calendar["document_name"] == "张琪的课表.ics"

    await mom.send("/withdraw", expecting="要退出哪门课程")
    await mom.press(course, expecting="退出", partial=True)
    left = await mom.press("确认退出", expecting="已退出")
    assert course in left["text"]


async def test_waitlist_offer_and_leave_in_english_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    mom, anna = Person(demo_world.sandbox, MOM), Person(demo_world.sandbox, ANNA)
    await mom.send("/courses", expecting="可选的课程")
    await mom.press("🔍 筛选", expecting="筛选课程")
    await mom.press("第二时段", expecting="门课程符合条件")
    card = await mom.press("剩余", expecting="承办", partial=True)
    course = card["text"].splitlines()[0]
    db = Database(database_url)
    try:
        async with db.transaction() as session:  # one seat only, to see the waitlist at work
            await session.execute(update(Course).where(Course.name == course).values(capacity=1))
            weekdays = await session.scalar(select(Course.weekdays).where(Course.name == course))
            special = set((await session.scalars(select(CalendarDay.date))).all())
    finally:
        await db.dispose()
    await mom.press("报名", expecting="为张琪报名")
    await mom.press("确认报名", expecting="已成功报名")

    await anna.send("/courses", expecting="Courses for")
    await anna.press("🔍 Filter", expecting="Filter the courses")
    await anna.press("Period 2", expecting="courses match")
    await anna.press(course, expecting="Run by", partial=True)
    await anna.press("Join the waitlist", expecting="would be number 1")
    full = await anna.press("Join the waitlist", expecting="waitlist")
    assert "position 1" in full["text"]

    await mom.send("/withdraw", expecting="要退出哪门课程")
    await mom.press(course, expecting="退出", partial=True)
    await mom.press("确认退出", expecting="已退出")
    offer = await anna.answer(0, "A seat is free")
    assert course in offer["text"]
    accepted = await anna.press("Accept the seat", expecting="Seat accepted")
    assert accepted["message_id"] == offer["message_id"]

    # A day next week on which the course runs (not a holiday or a swapped day).
    day = dt.date.today() + dt.timedelta(days=7)
    while not (weekdays or 0) & (1 << day.weekday()) or day in special:
        day += dt.timedelta(days=1)
    await anna.send("/leave", expecting="not take part")
    await anna.press("Other days…", expecting="Which days")
    await anna.send(f"{day:%m-%d}", expecting="reason")
    recorded = await anna.press("Ill", expecting="Recorded")
    assert "the whole day" in recorded["text"] and "Reason: Ill" in recorded["text"]


async def test_lottery_draw_and_an_expired_offer_reach_families_over_the_wire(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    mom, anna = Person(demo_world.sandbox, MOM), Person(demo_world.sandbox, ANNA)
    await mom.send("/courses", expecting="可选的课程")
    await mom.press("🔍 筛选", expecting="筛选课程")
    await mom.press("第二时段", expecting="门课程符合条件")
    card = await mom.press("剩余", expecting="承办", partial=True)
    course = card["text"].splitlines()[0]
    db = Database(database_url)
    try:
        async with db.transaction() as session:  # a lottery course with one seat
            await session.execute(
                update(Course)
                .where(Course.name == course)
                .values(capacity=1, allocation=Allocation.LOTTERY)
            )
        await mom.press("‹ 返回", expecting="门课程符合条件")
        await mom.press(course, expecting="摇号分配", partial=True)
        await mom.press("参加摇号", expecting="为张琪报名参加")
        await mom.press("确认参加摇号", expecting="第 1 志愿")

        await anna.send("/courses", expecting="Courses for")
        await anna.press("🔍 Filter", expecting="Filter the courses")
        await anna.press("Period 2", expecting="courses match")
        await anna.press(course, expecting="drawn by lot", partial=True)
        await anna.press("Enter the draw", expecting="in the draw for")
        await anna.press("Confirm entry", expecting="choice 1")

        # Enrolment closes and the draw runs (the job does this every minute).
        async with db.transaction() as session:
            await session.execute(
                update(Term).values(enrolment_closes_at=utcnow() - dt.timedelta(minutes=1))
            )
        async with db.transaction() as session:
            assert await lottery.run_due_draws(session, utcnow())
            seed = (await session.scalars(select(LotteryDraw.seed))).one()
        mom_result = await mom.answer(0, "摇号结果")
        anna_result = await anna.answer(0, "Draw result")
        assert seed in mom_result["text"] and seed in anna_result["text"]
        mom_won, anna_won = "抽中了" in mom_result["text"], "has a seat" in anna_result["text"]
        assert mom_won != anna_won  # one seat, one winner
        winner, waiting = (mom, anna) if mom_won else (anna, mom)
        loser_text = anna_result["text"] if mom_won else mom_result["text"]
        assert "position 1" in loser_text or "候补名单第 1 位" in loser_text

        # The winner withdraws; the other is offered the seat and lets the offer expire.
        await winner.send("/withdraw", expecting="")
        await winner.press(course, expecting="", partial=True)
        confirm = "确认退出" if winner is mom else "Withdraw"
        await winner.press(confirm, expecting="退出" if winner is mom else "left")
        offer_text = "名额空出" if waiting is mom else "A seat is free"
        await waiting.answer(0, offer_text)
        async with db.transaction() as session:
            await session.execute(
                update(Enrolment)
                .where(Enrolment.offer_expires_at.is_not(None))
                .values(offer_expires_at=utcnow() - dt.timedelta(seconds=1))
            )
        async with db.transaction() as session:
            assert await enrolment.expire_offers(session, utcnow())
        expired = "未在期限内确认" if waiting is mom else "not claimed in time"
        await waiting.answer(0, expired)
    finally:
        await db.dispose()
