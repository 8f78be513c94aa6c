"""Growth notes: a teacher finds a child of their own courses by a fragment of the name or the
student number, an ambiguous fragment is answered with the children as buttons, the note goes
into the running term's record, and guardians are told nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from bot.services import enrolment, members, notes
from bot.services.members import Member
from storage.db import Database
from storage.models import AuditLog, GrowthNote, Outbox, Role, SchoolClass, Teacher
from tests.factories import SchoolData, add_member
from tests.harness import Call
from tests.test_enrolment import make_course

CST = ZoneInfo("Asia/Shanghai")
TEACHER, HEAD, ADMIN, MOM = 830, 831, 832, 833
MONDAY = dt.date(2026, 12, 7)
NOW = dt.datetime.combine(MONDAY, dt.time(17, 0), CST).astimezone(dt.UTC)


async def member(db: Database, telegram_id: int) -> Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


async def classroom(db: Database, school: SchoolData) -> int:
    """乐高机器人 (Mondays, 王老师) with 李小明 (3-1) and 李小红 (7-2); 张伟 (3-1) is not in it."""
    teacher_user = await add_member(db, school, TEACHER, {Role.TEACHER})
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
        starts_at=dt.time(16, 50),
        ends_at=dt.time(17, 50),
        grade_max=9,
        capacity=None,
    )
    for name in ("李小明", "李小红"):
        result = await enrolment.sign_up(db, school.student_ids[name], course, user_id=None)
        assert not isinstance(result, enrolment.Refusal)
    return course


async def saved(db: Database) -> list[GrowthNote]:
    async with db.transaction() as session:
        rows = await session.scalars(select(GrowthNote).order_by(GrowthNote.id))
        return list(rows.all())


# --- the service --------------------------------------------------------------------------------


async def test_a_note_for_a_child_of_the_teachers_course_goes_into_the_running_term(
    db: Database, school: SchoolData
) -> None:
    await classroom(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        found = await notes.note(session, teacher, "小明", "主动帮同学搭模型", NOW)
    assert isinstance(found, notes.Saved)
    assert (found.pupil.name, found.pupil.class_name, found.term) == (
        "李小明",
        "三年级1班",
        "2026秋季学期",
    )
    (note,) = await saved(db)
    assert note.student_id == school.student_ids["李小明"]
    assert (note.term_id, note.teacher_id, note.text) == (
        school.term_id,
        school.teacher_id,
        "主动帮同学搭模型",
    )
    assert note.released_at is None
    async with db.transaction() as session:
        # Guardians hear nothing of a note: it waits for the term's growth record.
        assert (await session.scalars(select(Outbox))).all() == []
        # By student number as well.
        again = await notes.note(session, teacher, "s001", "按时完成作品", NOW)
    assert isinstance(again, notes.Saved) and again.count == 2


async def test_an_ambiguous_fragment_lists_the_children_and_saves_for_the_chosen_one(
    db: Database, school: SchoolData
) -> None:
    await classroom(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        found = await notes.note(session, teacher, "李小", "认真", NOW)
    assert isinstance(found, notes.Ambiguous)
    assert [p.name for p in found.matches] == ["李小明", "李小红"]
    assert await saved(db) == []
    async with db.transaction() as session:
        chosen = await notes.save_for(session, teacher, school.student_ids["李小红"], "认真", NOW)
    assert isinstance(chosen, notes.Saved) and chosen.pupil.name == "李小红"


async def test_a_teacher_finds_only_their_childrens_and_their_class_an_admin_any(
    db: Database, school: SchoolData
) -> None:
    await classroom(db, school)
    teacher = await member(db, TEACHER)
    async with db.transaction() as session:
        found = await notes.note(session, teacher, "张伟", "很好", NOW)
    assert isinstance(found, notes.NotFound)
    assert found.searched is notes.Searched.MINE and found.query == "张伟"
    # As head teacher of 3-1, 张伟's class, 王老师 may write about him.
    async with db.transaction() as session:
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school.class_ids["3-1"])
            .values(head_teacher_id=school.teacher_id)
        )
        found = await notes.note(session, teacher, "张伟", "很好", NOW)
    assert isinstance(found, notes.Saved) and found.pupil.name == "张伟"
    await add_member(db, school, ADMIN, {Role.ADMIN})
    admin = await member(db, ADMIN)
    async with db.transaction() as session:
        found = await notes.note(session, admin, "S002", "进步很大", NOW)
    assert isinstance(found, notes.Saved) and found.pupil.name == "李小红"


async def test_no_term_running_or_no_teacher_is_refused(db: Database, school: SchoolData) -> None:
    await classroom(db, school)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    teacher, mom = await member(db, TEACHER), await member(db, MOM)
    winter = dt.datetime(2027, 2, 10, 9, tzinfo=CST)
    async with db.transaction() as session:
        assert await notes.note(session, teacher, "李小明", "x", winter) == notes.Refused(
            notes.Refusal.NO_TERM
        )
        assert await notes.note(session, mom, "李小明", "x", NOW) == notes.Refused(
            notes.Refusal.NOT_STAFF
        )
    assert await saved(db) == []
    async with db.transaction() as session:
        audited = (await session.scalars(select(AuditLog.action))).all()
    assert audited == [notes.REFUSED]


async def test_a_teacher_reads_their_notes_newest_first_at_most_eight(
    db: Database, school: SchoolData
) -> None:
    await classroom(db, school)
    teacher = await member(db, TEACHER)
    for n in range(10):
        async with db.transaction() as session:
            moment = NOW - dt.timedelta(days=10 - n)
            assert isinstance(
                await notes.note(session, teacher, "李小明", f"记录{n}", moment), notes.Saved
            )
    async with db.transaction() as session:
        found = await notes.note(session, teacher, "李小明", "", NOW)
    assert isinstance(found, notes.Notes)
    assert found.total == 10
    assert [e.text for e in found.entries] == [f"记录{n}" for n in range(9, 1, -1)]


# --- through Telegram ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handlers.teacher.note.utcnow", lambda: NOW)


def buttons(calls: list[Call]) -> list[str]:
    return [b["text"] for c in calls for b in c.buttons()]


async def test_a_teacher_writes_a_note_by_command(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await classroom(db, school)
    teacher = make_user(TEACHER)
    text = teacher.texts(await teacher.send("/note 小明 今天主动帮同学搭模型"))
    assert "✅ 已为李小明（三年级1班）记入2026秋季学期成长记录。" in text
    assert "家长要等本学期成长档案发布后才能看到。" in text
    assert [n.text for n in await saved(db)] == ["今天主动帮同学搭模型"]
    shown = teacher.texts(await teacher.click("查看记录"))
    assert "李小明（三年级1班）本学期（2026秋季学期）您写了 1 条成长记录" in shown
    assert "今天主动帮同学搭模型" in shown


async def test_an_ambiguous_name_is_answered_with_buttons_and_the_note_saved_once(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await classroom(db, school)
    teacher = make_user(TEACHER)
    calls = await teacher.send("/note 李小 认真完成了作品")
    assert "有 2 个孩子符合“李小”。" in teacher.texts(calls)
    assert buttons(calls) == ["李小明 3-1", "李小红 7-2", "取消"]
    assert await saved(db) == []
    result = teacher.texts(await teacher.click("李小红 7-2"))
    assert "已为李小红（七年级2班）记入" in result
    (note,) = await saved(db)
    assert (note.student_id, note.text) == (school.student_ids["李小红"], "认真完成了作品")
    # The same choice pressed again (a double tap, an old message) saves nothing more.
    again = await teacher.press(f"gn:s:xxxx:{school.student_ids['李小明']}")
    assert [c.params.get("text") for c in again if c.method == "answerCallbackQuery"] == [
        "这个选择已失效。"
    ]
    assert len(await saved(db)) == 1


async def test_note_alone_explains_and_offers_todays_children(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await classroom(db, school)
    teacher = make_user(TEACHER)
    calls = await teacher.send("/note")
    text = teacher.texts(calls)
    assert "/note 姓名或学号 内容" in text
    assert "今天的孩子（2 人）" in text
    assert buttons(calls) == ["李小明 3-1", "李小红 7-2"]
    shown = teacher.texts(await teacher.click("李小红 7-2"))
    assert "李小红（七年级2班）本学期（2026秋季学期）还没有成长记录。" in shown


async def test_nothing_found_says_what_was_searched(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await classroom(db, school)
    teacher = make_user(TEACHER)
    text = teacher.texts(await teacher.send("/note 张伟 很好"))
    assert "在您本学期所教课程的学生中没有找到“张伟”。" in text
    assert await saved(db) == []


async def test_a_forged_press_for_another_child_is_refused_and_a_parent_cannot_write(
    db: Database, school: SchoolData, make_user: Any, clock: None
) -> None:
    await classroom(db, school)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    teacher = make_user(TEACHER)
    calls = await teacher.press(f"gn:v:{school.student_ids['张伟']}")
    assert any(c.method == "answerCallbackQuery" and c.params.get("show_alert") for c in calls)
    mom = make_user(MOM)
    assert "成长记录由老师填写。" in mom.texts(await mom.send("/note 李小明 好"))
    assert await saved(db) == []
    async with db.transaction() as session:
        audited = (await session.scalars(select(AuditLog.action))).all()
    assert audited.count(notes.REFUSED) == 2
