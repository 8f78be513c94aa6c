"""Daily updates (/update): photo consent enforced when the update is sent, each family served
by its choice once, class groups only when linked, a retried post never sent twice; the flow
as a teacher meets it (an album collected into one update, the consent screen, 只发文字 and
确认); /notices' choice for updates; /linkclass in a group."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.context import KehouApplication
from bot.services import enrolment, members, updates
from bot.services.updates import NeedsConsent, Posted, Problem
from storage.db import Database
from storage.models import (
    AuditLog,
    DailyUpdate,
    Guardianship,
    Outbox,
    Role,
    SchoolClass,
    Teacher,
    TeacherKind,
    UpdateMode,
    User,
)
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import Call, FakeUser
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
TEACHER, OTHER_TEACHER, ADMIN, MOM, DAD, ZHANG = 901, 902, 903, 904, 905, 906
GROUP_31, GROUP_72 = -100931, -100972
_ids = itertools.count(50_000)


@dataclass
class World:
    course: int
    today: dt.date
    users: dict[int, int]  # telegram id → user id
    li: int  # 李小明: MOM (consents) and DAD (does not)
    hong: int  # 李小红: MOM only
    zhang: int  # 张伟: ZHANG only, who does not consent


async def world(db: Database, school: SchoolData) -> World:
    """剪纸（非遗） every day, taught by 王老师 (TEACHER's account): 李小明 and 张伟 of 3-1 and
    李小红 of 7-2 enrolled. MOM (of 李小明 and 李小红) agreed to photos and gets updates at
    once; DAD (of 李小明) did not, digest; ZHANG (of 张伟) did not, muted. 3-1's parent group is
    linked with updates on; 7-2's group is known but takes no updates."""
    await term_around_today(db)
    users = {
        TEACHER: await add_member(db, school, TEACHER, {Role.TEACHER}),
        OTHER_TEACHER: await add_member(db, school, OTHER_TEACHER, {Role.TEACHER}),
        ADMIN: await add_member(db, school, ADMIN, {Role.ADMIN}),
        MOM: await add_member(
            db, school, MOM, {Role.PARENT}, ("李小明", "李小红"), photo_consent=True
        ),
        DAD: await add_member(db, school, DAD, {Role.PARENT}, ("李小明",)),
        ZHANG: await add_member(db, school, ZHANG, {Role.PARENT}, ("张伟",)),
    }
    course = await make_course(
        db,
        school,
        "JZ",
        name="剪纸（非遗）",
        teacher_id=school.teacher_id,
        weekdays=0b1111111,
        grade_min=1,
        grade_max=9,
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
        capacity=None,
    )
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=users[TEACHER])
        )
        session.add(
            Teacher(
                school_id=school.school_id,
                code="T02",
                name="李老师",
                kind=TeacherKind.STAFF,
                user_id=users[OTHER_TEACHER],
            )
        )
        await session.execute(
            update(User).where(User.id == users[MOM]).values(update_mode=UpdateMode.INSTANT)
        )
        await session.execute(
            update(User).where(User.id == users[ZHANG]).values(update_mode=UpdateMode.MUTED)
        )
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school.class_ids["3-1"])
            .values(group_chat_id=GROUP_31, group_updates=True)
        )
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school.class_ids["7-2"])
            .values(group_chat_id=GROUP_72, group_updates=False)
        )
    kids = school.student_ids
    for child in ("李小明", "张伟", "李小红"):
        signed = await enrolment.sign_up(db, kids[child], course, user_id=None)
        assert not isinstance(signed, enrolment.Refusal)
    return World(
        course, dt.datetime.now(CST).date(), users, kids["李小明"], kids["李小红"], kids["张伟"]
    )


async def member(db: Database, telegram_id: int) -> members.Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


async def sent(db: Database) -> list[Outbox]:
    async with db.transaction() as session:
        return list(
            (
                await session.scalars(
                    select(Outbox).where(Outbox.kind == "update").order_by(Outbox.id)
                )
            ).all()
        )


async def posted_rows(db: Database) -> list[DailyUpdate]:
    async with db.transaction() as session:
        return list((await session.scalars(select(DailyUpdate).order_by(DailyUpdate.id))).all())


async def audits(db: Database, action: str) -> list[AuditLog]:
    async with db.transaction() as session:
        return list(
            (await session.scalars(select(AuditLog).where(AuditLog.action == action))).all()
        )


async def post(db: Database, w: World, who: int, text: str, photos: list[str], **kw: Any) -> Any:
    return await updates.post(
        db, await member(db, who), w.course, w.today, w.today, text, photos, **kw
    )


# ---------------------------------------------------------------------------------------------
# The service


async def test_photos_are_refused_while_a_child_without_consent_is_not_confirmed(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    outcome = await post(db, w, TEACHER, "今天剪了窗花", ["p1", "p2"])
    assert isinstance(outcome, NeedsConsent)
    # 李小明 has his mother's consent, 李小红 too; only 张伟 has no guardian who agreed.
    assert [c.name for c in outcome.children] == ["张伟"]
    assert await posted_rows(db) == [] and await sent(db) == []


async def test_the_text_alone_needs_no_consent_and_carries_no_photo(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    outcome = await post(db, w, TEACHER, "今天剪了窗花", [])
    assert isinstance(outcome, Posted) and outcome.photos == 0 and outcome.unconsented == ()
    (row,) = await posted_rows(db)
    assert row.photos == [] and row.unconsented is None
    assert all(m.attachment is None for m in await sent(db))
    assert await audits(db, updates.CONFIRMED) == []


async def test_a_confirmation_is_recorded_and_the_album_goes_to_each_family_once_by_choice(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    outcome = await post(db, w, TEACHER, "今天剪了窗花", ["p1", "p2", "p3"], confirmed=[w.zhang])
    assert isinstance(outcome, Posted)
    # MOM (two children in the session) once, now; DAD in the evening; ZHANG muted; 3-1's group.
    assert outcome.reach == updates.Reach(families=3, now=1, evening=1, muted=1, groups=1)
    (row,) = await posted_rows(db)
    assert row.unconsented == [w.zhang] and row.photos == ["p1", "p2", "p3"]
    (audit,) = await audits(db, updates.CONFIRMED)
    assert audit.actor_user_id == w.users[TEACHER]
    assert audit.details is not None and audit.details["students"] == [w.zhang]
    assert audit.details["count"] == 1
    messages = await sent(db)
    assert sorted(m.chat_id for m in messages) == sorted([MOM, GROUP_31])
    album = {"type": "album", "photos": ["p1", "p2", "p3"]}
    assert all(m.attachment == album for m in messages)
    family = next(m for m in messages if m.chat_id == MOM)
    assert family.params is not None and family.params["teacher"] == "王老师"
    assert family.params["course"] == "剪纸（非遗）" and family.params["text"] == "今天剪了窗花"
    # The group's copy is the same update, with no child named and no family's account.
    group = next(m for m in messages if m.chat_id == GROUP_31)
    assert group.user_id is None and group.params == family.params


async def test_one_photo_goes_as_a_photo_and_the_digest_reads_the_update(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    outcome = await post(db, w, TEACHER, "合影", ["p1"], confirmed=[w.zhang])
    assert isinstance(outcome, Posted)
    assert {m.chat_id: m.attachment for m in await sent(db)}[MOM] == {
        "type": "photo",
        "file_id": "p1",
    }
    async with db.transaction() as session:
        (day,) = await updates.updates_of_day(session, school.school_id, w.today)
        assert (
            await updates.updates_of_day(session, school.school_id, w.today - dt.timedelta(days=1))
            == []
        )
    assert (day.course, day.teacher, day.text, day.photos) == (
        "剪纸（非遗）",
        "王老师",
        "合影",
        ("p1",),
    )
    assert sorted(day.student_ids) == sorted([w.li, w.hong, w.zhang])


async def test_a_class_group_gets_updates_only_when_linked_with_updates_on(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    async with db.transaction() as session:
        await session.execute(update(SchoolClass).values(group_updates=False))
    outcome = await post(db, w, TEACHER, "今天剪了窗花", [])
    assert isinstance(outcome, Posted) and outcome.reach.groups == 0
    assert [m.chat_id for m in await sent(db)] == [MOM]


async def test_a_consent_withdrawn_just_before_sending_is_honoured(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    async with db.transaction() as session:
        plan = await updates.preview(
            session, await member(db, TEACHER), w.course, w.today, w.today
        )
    assert plan is not None and [c.name for c in plan.unconsented] == ["张伟"]
    # The teacher confirmed 张伟; meanwhile the mother withdraws her consent for 李小明.
    async with db.transaction() as session:
        await session.execute(
            update(Guardianship).where(Guardianship.student_id == w.li).values(photo_consent=False)
        )
    outcome = await post(db, w, TEACHER, "今天剪了窗花", ["p1"], confirmed=[w.zhang])
    assert isinstance(outcome, NeedsConsent)
    assert [c.name for c in outcome.new] == ["李小明"]
    assert await posted_rows(db) == [] and await sent(db) == []


async def test_a_retried_post_is_sent_once(db: Database, school: SchoolData) -> None:
    w = await world(db, school)
    first = await post(db, w, TEACHER, "今天剪了窗花", [])
    again = await post(db, w, TEACHER, "今天剪了窗花", [])
    assert isinstance(first, Posted) and isinstance(again, Posted)
    assert again.repeated and again.id == first.id and not first.repeated
    assert len(await posted_rows(db)) == 1
    assert len(await sent(db)) == 2  # MOM and the class group, once each
    assert {m.dedupe_key for m in await sent(db)} == {
        f"{school.school_id}:update:{first.id}:{w.users[MOM]}",
        f"{school.school_id}:update:{first.id}:group:{GROUP_31}",
    }


@pytest.mark.parametrize("who", [OTHER_TEACHER, MOM])
async def test_another_teacher_or_a_parent_is_refused_and_audited(
    who: int, db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    assert await post(db, w, who, "今天剪了窗花", []) is None
    assert [a.actor_user_id for a in await audits(db, updates.REFUSED)] == [w.users[who]]
    assert await posted_rows(db) == [] and await sent(db) == []


async def test_an_admin_may_post_and_the_content_is_checked_first(
    db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    assert await post(db, w, ADMIN, "   ", []) is Problem.EMPTY
    assert await post(db, w, ADMIN, "x", [f"p{i}" for i in range(11)]) is Problem.TOO_MANY_PHOTOS
    outcome = await post(db, w, ADMIN, "家长会通知", [])
    assert isinstance(outcome, Posted)
    (row,) = await posted_rows(db)
    assert row.author_user_id == w.users[ADMIN] and row.teacher_id == school.teacher_id


# ---------------------------------------------------------------------------------------------
# The teacher's flow, through the handlers


def last_buttons(calls: list[Call]) -> list[str]:
    shown = [c for c in calls if c.buttons()]
    assert shown, "no screen with buttons"
    return [b["text"] for b in shown[-1].buttons()]


async def send_photo(
    user: FakeUser, file_id: str, message_id: int, group: str | None, caption: str | None = None
) -> list[Call]:
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": user.chat,
        "from": user.user,
        "photo": [
            {
                "file_id": f"{file_id}-small",
                "file_unique_id": f"{file_id}s",
                "width": 90,
                "height": 90,
            },
            {"file_id": file_id, "file_unique_id": file_id, "width": 1280, "height": 960},
        ],
    }
    if group is not None:
        message["media_group_id"] = group
    if caption is not None:
        message["caption"] = caption
    return await user._feed({"update_id": next(_ids), "message": message})


async def album(app: KehouApplication, user: FakeUser) -> list[Call]:
    """The album's photos arrive in the wrong order; the wait after the last one ends."""
    for file_id, message_id, caption in (
        ("photo-3", 7003, None),
        ("photo-1", 7001, "今天我们剪了窗花"),
        ("photo-2", 7002, None),
    ):
        assert await send_photo(user, file_id, message_id, "album-1", caption) == []
    assert app.job_queue is not None
    jobs = [j for j in app.job_queue.get_jobs_by_name(f"update-album:{user.id}") if not j.removed]
    assert len(jobs) == 1  # one preview for the whole album
    before = len(user.request.calls)
    await jobs[0].run(app)
    return [c for c in user.request.calls[before:] if c.chat_id == user.id]


async def test_an_album_is_one_update_and_the_consent_screen_names_the_child(
    app: KehouApplication, make_user: Any, db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    teacher: FakeUser = make_user(TEACHER)
    opened = FakeUser.texts(await teacher.send("/update"))
    assert "剪纸（非遗）" in opened and "10" in opened  # one session today: straight to the text
    preview = await album(app, teacher)
    text = FakeUser.texts(preview)
    assert "今天我们剪了窗花" in text and "3 张照片" in text
    assert "张伟" in text and "李小明" not in text
    assert last_buttons(preview) == ["只发文字", "确认照片中没有他们", "‹ 返回", "取消"]
    result = FakeUser.texts(await teacher.click("确认照片中没有他们"))
    assert "剪纸（非遗）" in result and "已发送" in result
    messages = await sent(db)
    assert sorted(m.chat_id for m in messages) == sorted([MOM, GROUP_31])
    assert messages[0].attachment == {"type": "album", "photos": ["photo-1", "photo-2", "photo-3"]}
    (row,) = await posted_rows(db)
    assert row.unconsented == [w.zhang] and row.text == "今天我们剪了窗花"
    assert len(await audits(db, updates.CONFIRMED)) == 1


async def test_text_alone_sends_no_photo(
    app: KehouApplication, make_user: Any, db: Database, school: SchoolData
) -> None:
    await world(db, school)
    teacher: FakeUser = make_user(TEACHER)
    await teacher.send("/update")
    await album(app, teacher)
    result = FakeUser.texts(await teacher.click("只发文字"))
    assert "照片没有发送" in result
    messages = await sent(db)
    assert messages and all(m.attachment is None for m in messages)
    (row,) = await posted_rows(db)
    assert row.photos == [] and row.unconsented is None
    assert await audits(db, updates.CONFIRMED) == []


async def test_a_text_update_states_who_gets_it_now_and_a_second_tap_sends_nothing_more(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await world(db, school)
    teacher: FakeUser = make_user(TEACHER)
    await teacher.send("/update")
    preview = await teacher.send("今天剪了窗花")
    text = FakeUser.texts(preview)
    assert "3 个家庭" in text and "1 个现在收到" in text and "1 个在晚间汇总" in text
    assert last_buttons(preview) == ["发送", "‹ 返回", "取消"]
    send = next(c for c in preview if c.buttons())
    data = next(b["callback_data"] for b in send.buttons() if b["text"] == "发送")
    await teacher.press(data, send)
    replies = await teacher.press(data, send)  # the same press again: the draft is gone
    assert any(c.method == "answerCallbackQuery" for c in replies)
    assert len(await posted_rows(db)) == 1 and len(await sent(db)) == 2


async def test_a_parent_and_a_teacher_without_a_session_are_told_why(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await world(db, school)
    refused = FakeUser.texts(await make_user(MOM).send("/update"))
    assert "老师" in refused
    nothing = FakeUser.texts(await make_user(OTHER_TEACHER).send("/update"))
    assert "没有课后服务课程" in nothing and "/roster" in nothing
    assert await posted_rows(db) == []


# ---------------------------------------------------------------------------------------------
# /notices and /linkclass


async def test_notices_saves_the_update_choice_and_the_dismissal_message(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    dad: FakeUser = make_user(DAD)
    shown = await dad.send("/notices")
    assert "缺勤提醒" in FakeUser.texts(shown)
    assert "● 动态·晚间汇总" in last_buttons(shown)
    chosen = await dad.click("○ 动态·即时")
    assert "● 动态·即时" in last_buttons(chosen)
    await dad.click("○ 告诉我孩子怎样离校")
    async with db.transaction() as session:
        user = await session.get(User, w.users[DAD])
        assert user is not None
        assert user.update_mode is UpdateMode.INSTANT and user.dismissal_notice is True
    # A teacher's forged press changes nothing and is audited.
    await make_user(TEACHER).press("nt:u:muted")
    assert [a.actor_user_id for a in await audits(db, "notices.refused")] == [w.users[TEACHER]]


def group_user(make_user: Any, telegram_id: int) -> FakeUser:
    return make_user(
        telegram_id, chat={"id": -100555, "type": "supergroup", "title": "三年级1班家长群"}
    )


async def test_an_admin_links_a_class_group_and_a_parent_cannot(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    parent = group_user(make_user, ZHANG)
    assert [c for c in await parent.send("/linkclass 3-1") if c.chat_id == -100555] == []
    admin = group_user(make_user, ADMIN)
    replies = await admin.send("/linkclass 3-1")
    assert len(replies) == 1 and "三年级1班" in replies[0].text
    async with db.transaction() as session:
        linked = await session.get(SchoolClass, school.class_ids["3-1"])
        assert linked is not None and linked.group_chat_id == -100555 and linked.group_updates
    assert len(await audits(db, "class_group.linked")) == 1
    assert [a.actor_user_id for a in await audits(db, updates.LINK_REFUSED)] == [w.users[ZHANG]]
    picker = await admin.send("/linkclass")
    assert "七年级2班" in last_buttons(picker)
    await admin.click("七年级2班")
    unlinked = await admin.send("/unlinkclass")
    assert len(unlinked) == 1 and "七年级2班" in unlinked[0].text
    async with db.transaction() as session:
        rows = (await session.scalars(select(SchoolClass.group_chat_id))).all()
    assert -100555 not in rows


async def test_a_consent_withdrawn_while_the_teacher_looks_is_shown_before_anything_is_sent(
    app: KehouApplication, make_user: Any, db: Database, school: SchoolData
) -> None:
    w = await world(db, school)
    teacher: FakeUser = make_user(TEACHER)
    await teacher.send("/update")
    await album(app, teacher)
    async with db.transaction() as session:
        await session.execute(
            update(Guardianship).where(Guardianship.student_id == w.li).values(photo_consent=False)
        )
    again = await teacher.click("确认照片中没有他们")
    text = FakeUser.texts(again)
    assert "刚刚有家长更改了照片授权" in text and "李小明" in text and "张伟" in text
    assert await posted_rows(db) == [] and await sent(db) == []
    await teacher.click("确认照片中没有他们")
    (row,) = await posted_rows(db)
    assert sorted(row.unconsented or []) == sorted([w.li, w.zhang])


async def test_back_from_the_preview_starts_the_text_again(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    await world(db, school)
    teacher: FakeUser = make_user(TEACHER)
    await teacher.send("/update")
    await teacher.send("第一稿")
    back = FakeUser.texts(await teacher.click("‹ 返回"))
    assert "最多 10 张" in back
    preview = FakeUser.texts(await teacher.send("第二稿"))
    assert "第二稿" in preview and "第一稿" not in preview
    assert "已取消" in FakeUser.texts(await teacher.click("取消"))
    assert await posted_rows(db) == []
