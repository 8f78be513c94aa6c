"""The term's growth record (课后成长档案): what it holds (courses, exact attendance, activity
areas, this term's teachers' notes, advice), the PDF in both languages with the CJK font
embedded, the release (once, one message per guardian, notes released), the maker the
delivery worker calls, and /growth for guardians and admins."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import delete, event, select, update
from telegram.ext import CommandHandler

from bot import jobs
from bot.i18n import I18n, Translator
from bot.services import attendance, enrolment, growth
from bot.services.term_attendance import Tally
from handlers.parent import growth as growth_handlers
from storage.db import Database
from storage.models import (
    AttendanceMark,
    AuditLog,
    Category,
    Enrolment,
    GrowthNote,
    JobRun,
    NoticeMode,
    Outbox,
    OutboxStatus,
    Role,
    Session,
    Student,
    Teacher,
    Term,
    User,
    utcnow,
)
from tests.factories import SchoolData, add_member
from tests.harness import Call
from tests.test_delivery import World, world  # noqa: F401  (the sandbox, a real worker)
from tests.test_enrolment import WEDNESDAY, make_course

CST = ZoneInfo("Asia/Shanghai")
TUESDAY = 0b0000010
MOM, DAD, HONG, QUIET, ADMIN, TEACHER = 860, 861, 862, 863, 864, 865
NOW = dt.datetime(2026, 12, 7, 17, 0, tzinfo=CST).astimezone(dt.UTC)
SUMMER = dt.datetime(2026, 8, 25, 9, 0, tzinfo=CST).astimezone(dt.UTC)


def zh() -> Translator:
    return I18n(CST).get("zh_CN")


def en() -> Translator:
    return I18n(CST).get("en")


def flat(text: str) -> str:
    """Text without any whitespace: PDF extraction breaks lines and cells where it likes."""
    return "".join(text.split())


def pdf_text(data: bytes) -> str:
    return flat("\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages))


@dataclass
class Term2:
    courses: dict[str, int]
    spring: int  # another term of the school


async def _roll(
    db: Database, school: SchoolData, course: int, day: dt.date, *marks: tuple[str, str]
) -> None:
    """A session of `course` on `day` and its marks, in order (a later mark corrects one)."""
    async with db.transaction() as session:
        await attendance.codes(session, school.school_id)
        row = Session(
            school_id=school.school_id,
            course_id=course,
            date=day,
            starts_at=dt.time(16, 50),
            ends_at=dt.time(17, 50),
            venue="教室",
        )
        session.add(row)
        await session.flush()
        for child, code in marks:
            session.add(
                AttendanceMark(
                    school_id=school.school_id,
                    session_id=row.id,
                    student_id=school.student_ids[child],
                    code=code,
                    source="roll",
                )
            )
            await session.flush()


async def _note(
    db: Database, school: SchoolData, term: int, child: str, text: str, on: dt.date, by: bool
) -> None:
    async with db.transaction() as session:
        session.add(
            GrowthNote(
                school_id=school.school_id,
                term_id=term,
                student_id=school.student_ids[child],
                teacher_id=school.teacher_id if by else None,
                text=text,
                created_at=dt.datetime.combine(on, dt.time(17, 30), CST).astimezone(dt.UTC),
            )
        )


async def build(db: Database, school: SchoolData) -> Term2:
    """李小明 (3-1) takes 乐高机器人 (science, Mon, 王老师) and 篮球 (sports, Wed) all term, and
    剪纸 (arts, Tue) until 3 Nov; 李小红 (7-2) joins 乐高机器人 on 12 Oct; 张伟 takes nothing.
    Rolls, notes of this term and of the spring term."""
    async with db.transaction() as session:
        spring = Term(
            school_id=school.school_id,
            name="2026春季学期",
            starts_on=dt.date(2026, 2, 20),
            ends_on=dt.date(2026, 7, 10),
        )
        session.add(spring)
        await session.flush()
        spring_id = spring.id
    common = {"capacity": None, "grade_max": 9, "starts_at": dt.time(16, 50)}
    courses = {
        "lego": await make_course(
            db,
            school,
            "LEGO",
            name="乐高机器人",
            teacher_id=school.teacher_id,
            ends_at=dt.time(17, 50),
            **common,
        ),
        "ball": await make_course(
            db,
            school,
            "BALL",
            name="篮球",
            category=Category.SPORTS,
            weekdays=WEDNESDAY,
            ends_at=dt.time(17, 50),
            **common,
        ),
        "cut": await make_course(
            db,
            school,
            "CUT",
            name="剪纸",
            category=Category.ARTS,
            weekdays=TUESDAY,
            ends_at=dt.time(17, 50),
            **common,
        ),
    }
    ming, hong = school.student_ids["李小明"], school.student_ids["李小红"]
    for course in courses.values():
        signed = await enrolment.sign_up(db, ming, course, user_id=None, now=SUMMER)
        assert isinstance(signed, enrolment.SignedUp)
    october = dt.datetime(2026, 10, 12, 9, tzinfo=CST).astimezone(dt.UTC)
    signed = await enrolment.sign_up(db, hong, courses["lego"], user_id=None, now=october)
    assert isinstance(signed, enrolment.SignedUp)
    async with db.transaction() as session:
        place = await session.scalar(
            select(Enrolment.id).where(
                Enrolment.student_id == ming, Enrolment.course_id == courses["cut"]
            )
        )
        assert place is not None
        left = await enrolment.withdraw(
            session, place, from_date=dt.date(2026, 11, 3), user_id=None, now=NOW
        )
        assert left is not None
    lego, ball = courses["lego"], courses["ball"]
    await _roll(
        db, school, lego, dt.date(2026, 11, 2), ("李小明", "present"), ("李小红", "present")
    )
    await _roll(
        db, school, lego, dt.date(2026, 11, 9), ("李小明", "absent"), ("李小红", "present")
    )
    # Marked absent, then corrected to late: the latest mark counts (present).
    await _roll(db, school, lego, dt.date(2026, 11, 16), ("李小明", "absent"), ("李小明", "late"))
    await _roll(db, school, lego, dt.date(2026, 11, 23), ("李小明", "leave"))
    for day in (4, 11, 18):
        await _roll(db, school, ball, dt.date(2026, 11, day), ("李小明", "present"))
    await _roll(db, school, courses["cut"], dt.date(2026, 10, 27), ("李小明", "present"))
    await _note(
        db, school, school.term_id, "李小明", "主动帮同学搭模型", dt.date(2026, 11, 5), True
    )
    await _note(
        db, school, school.term_id, "李小明", "运动会跑步第一名", dt.date(2026, 12, 1), False
    )
    await _note(db, school, spring_id, "李小明", "春季学期的记录", dt.date(2026, 5, 6), True)
    await _note(db, school, school.term_id, "张伟", "作业认真", dt.date(2026, 11, 5), True)
    return Term2(courses, spring_id)


async def all_records(db: Database, school: SchoolData) -> dict[str, growth.Record]:
    async with db.transaction() as session:
        found = await growth.records(session, school.term_id)
    return {r.child: r for r in found}


# --- the record ---------------------------------------------------------------------------------


async def test_a_record_holds_the_courses_exact_attendance_areas_and_this_terms_notes(
    db: Database, school: SchoolData
) -> None:
    await build(db, school)
    found = await all_records(db, school)
    assert list(found) == ["李小明", "李小红"]  # 张伟 took no course: no record
    ming = found["李小明"]
    assert (ming.class_name, ming.student_no, ming.term) == ("三年级1班", "S001", "2026秋季学期")
    by_name = {c.name: c for c in ming.courses}
    assert by_name["乐高机器人"].attendance == Tally(present=2, marked=4, leave=1)
    assert by_name["篮球"].attendance == Tally(present=3, marked=3, leave=0)
    assert by_name["剪纸"].attendance == Tally(present=1, marked=1, leave=0)
    assert ming.attendance == Tally(present=6, marked=8, leave=1)
    assert by_name["乐高机器人"].teacher == "王老师" and by_name["篮球"].teacher is None
    # Signed up before the term began: no "joined" date; 剪纸 left from 3 Nov.
    assert by_name["乐高机器人"].joined_on is None and by_name["乐高机器人"].left_on is None
    assert by_name["剪纸"].left_on == dt.date(2026, 11, 3)
    assert ming.covered == (Category.SCIENCE, Category.ARTS, Category.SPORTS)
    assert [(n.text, n.teacher) for n in ming.notes] == [
        ("主动帮同学搭模型", "王老师"),
        ("运动会跑步第一名", None),
    ]
    advice = growth.advice(zh(), ming)
    assert advice == [
        "尚未参加的活动类别：劳动实践、阅读朗诵、心理健康和安全教育。",
        "本学期出勤率为 75%。如孩子因故经常缺席，请与老师沟通。",
    ]
    hong = found["李小红"]
    (lego,) = hong.courses
    assert lego.joined_on == dt.date(2026, 10, 12)
    assert hong.attendance == Tally(2, 2, 0) and hong.notes == ()
    assert (
        growth.advice(zh(), hong)[0]
        == "本学期未参加体育锻炼类课程，建议下学期选一门，保证日常锻炼。"
    )
    assert hong.untried[:1] == (Category.SPORTS,)


async def test_records_cost_the_same_statements_for_more_children(
    db: Database, school: SchoolData
) -> None:
    """No statement per child: the batch path of 3,000 children is as many statements as 2."""
    built = await build(db, school)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    async def statements_of_records() -> int:
        statements.clear()
        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        try:
            async with db.transaction() as session:
                await growth.records(session, school.term_id)
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    before = await statements_of_records()
    signed = await enrolment.sign_up(
        db, school.student_ids["张伟"], built.courses["ball"], user_id=None, now=SUMMER
    )
    assert isinstance(signed, enrolment.SignedUp)
    await _roll(db, school, built.courses["ball"], dt.date(2026, 11, 25), ("张伟", "present"))
    assert len(await all_records(db, school)) == 3
    assert await statements_of_records() == before


# --- the PDF -------------------------------------------------------------------------------------


async def test_the_pdf_in_chinese_and_english_with_the_cjk_font_embedded(
    db: Database, school: SchoolData, cjk_font: Path
) -> None:
    await build(db, school)
    ming = (await all_records(db, school))["李小明"]
    chinese = growth.render_pdf(ming, zh())
    text = pdf_text(chinese)
    for expected in (
        "课后成长档案",
        "河清实验学校",
        "李小明",
        "三年级1班",
        "S001",
        "乐高机器人",
        "科技活动",
        "第二时段",
        "王老师",
        "出勤2/4次（50%）",
        "出勤3/3次（100%）",
        "合计：出勤6/8次（75%）。其中1次为家长请假。",
        "本学期参加的活动（8类中的3类）：科技活动、美育、体育锻炼",
        "11月3日周二起退出",
        "主动帮同学搭模型",
        "运动会跑步第一名",
        "下学期建议",
    ):
        assert expected in text, expected
    assert "春季学期的记录" not in text and "作业认真" not in text
    assert growth.filename(ming, zh()) == "李小明-2026秋季学期-成长档案.pdf"

    english = pdf_text(growth.render_pdf(ming, en()))
    for expected in (
        "After-schoolgrowthrecord",
        "李小明",
        "attended2/4sessions(50%)",
        "Overall:attended6/8sessions(75%).1absencewasonleavethefamilyaskedfor.",
        "Science",
        "Teachers'notes",
        "主动帮同学搭模型",
    ):
        assert expected in english, expected
    assert growth.filename(ming, en()) == "李小明 - growth record - 2026秋季学期.pdf"

    # The TrueType CJK font is in the file (a subset), not left to the reader's fonts.
    reader = PdfReader(io.BytesIO(chinese))
    faces: Any = reader.pages[0]["/Resources"]["/Font"]  # type: ignore[index]
    embedded = [
        f.get_object()["/BaseFont"]
        for f in faces.values()
        if "/FontDescriptor" in f.get_object()
        and "/FontFile2" in f.get_object()["/FontDescriptor"].get_object()
    ]
    assert embedded, faces


async def test_the_maker_makes_the_document_and_fails_cleanly_when_the_child_is_gone(
    db: Database, school: SchoolData
) -> None:
    await build(db, school)
    args = {"student_id": school.student_ids["李小明"], "term_id": school.term_id}
    async with db.transaction() as session:
        name, data = await growth.make(session, args, en())
    assert name.endswith(".pdf") and "attended2/4sessions" in pdf_text(data)
    async with db.transaction() as session:
        await session.execute(delete(Student).where(Student.id == args["student_id"]))
    async with db.transaction() as session:
        with pytest.raises(LookupError):
            await growth.make(session, args, en())
        with pytest.raises(LookupError):
            await growth.make(session, {"student_id": "x"}, en())


# --- the release --------------------------------------------------------------------------------


async def guardians(db: Database, school: SchoolData) -> None:
    """李小明: 妈妈 (Chinese, evening digest), 爸爸 (English), and a guardian the bot cannot
    write to (no chat); 李小红: one guardian."""
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    await add_member(db, school, DAD, {Role.PARENT}, ("李小明",), locale="en")
    await add_member(db, school, HONG, {Role.PARENT}, ("李小红",))
    await add_member(db, school, QUIET, {Role.PARENT}, ("李小明",))
    async with db.transaction() as session:
        await session.execute(update(User).where(User.telegram_id == QUIET).values(chat_id=None))
        await session.execute(
            update(User).where(User.telegram_id == MOM).values(notice_mode=NoticeMode.DIGEST)
        )


async def test_the_schedule_releases_once_on_the_last_day_and_never_a_term_long_over(
    app: Any, db: Database, school: SchoolData
) -> None:
    """The autumn term ends on 20 January: at the digest time (18:30) its records go, once,
    across a restart. The spring term, over since July, is left to an admin."""
    await build(db, school)
    await guardians(db, school)

    def at(day: dt.date, hour: int, minute: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=CST).astimezone(dt.UTC)

    autumn = f"growth:{school.term_id}"
    last = dt.date(2027, 1, 20)
    assert autumn not in await jobs.Scheduler(app.runtime).tick(at(last, 18, 29))
    ran = await jobs.Scheduler(app.runtime).tick(at(last, 18, 31))
    again = await jobs.Scheduler(app.runtime).tick(at(last, 18, 40))
    assert autumn in ran and autumn not in again
    async with db.transaction() as session:
        sent = await session.scalars(select(Outbox.chat_id).where(Outbox.kind == growth.KIND))
        spring_id, released = (
            await session.execute(
                select(Term.id, Term.growth_released_at).where(Term.name == "2026春季学期")
            )
        ).one()
        outcome = await session.scalar(
            select(JobRun.outcome).where(JobRun.job == f"growth:{spring_id}")
        )
        count = len(sent.all())
    assert count == 3
    assert released is None and outcome is not None and outcome.startswith("stale")


async def test_released_late_at_night_the_records_wait_for_the_morning(
    db: Database, school: SchoolData
) -> None:
    await build(db, school)
    await guardians(db, school)
    zone = ZoneInfo("Asia/Shanghai")
    late = dt.datetime(2027, 1, 20, 22, 30, tzinfo=zone).astimezone(dt.UTC)
    async with db.transaction() as session:
        assert await growth.release(session, school.school_id, school.term_id, late) == 3
        due = set((await session.scalars(select(Outbox.not_before))).all())
    assert due == {dt.datetime(2027, 1, 21, 7, 0, tzinfo=zone).astimezone(dt.UTC)}


async def test_release_happens_once_with_one_message_per_guardian_and_the_notes_released(
    db: Database, school: SchoolData
) -> None:
    built = await build(db, school)
    await guardians(db, school)
    async with db.transaction() as session:
        assert await growth.release(session, school.school_id, school.term_id, NOW) == 3
    # The scheduler, a second process, an admin's late press: nothing more.
    async with db.transaction() as session:
        assert await growth.release(session, school.school_id, school.term_id, NOW) == 0
        term = await session.get(Term, school.term_id)
        assert term is not None
        assert await growth.release(session, school.school_id, term, NOW) == 0
        rows = (await session.scalars(select(Outbox).order_by(Outbox.chat_id))).all()
        notes = (await session.execute(select(GrowthNote.text, GrowthNote.released_at))).all()
        released = await session.scalar(
            select(Term.growth_released_at).where(Term.id == school.term_id)
        )
    assert released == NOW
    assert [(r.chat_id, r.params) for r in rows] == [
        (MOM, {"child": "李小明", "term": "2026秋季学期"}),
        (DAD, {"child": "李小明", "term": "2026秋季学期"}),
        (HONG, {"child": "李小红", "term": "2026秋季学期"}),
    ]
    for row in rows:
        assert row.kind == growth.KIND and row.template == growth.SUMMARY
        assert row.attachment == {
            "type": "made",
            "maker": "growth",
            "args": {
                "student_id": school.student_ids[(row.params or {})["child"]],
                "term_id": school.term_id,
            },
        }
        # Never held for the evening digest (妈妈 chose the digest): a PDF is not a line.
        assert row.status is OutboxStatus.PENDING
    assert {text: at for text, at in notes} == {
        "主动帮同学搭模型": NOW,
        "运动会跑步第一名": NOW,
        "作业认真": NOW,
        "春季学期的记录": None,  # another term's note stays unreleased
    }
    async with db.transaction() as session:  # the spring term was not released
        assert (
            await session.scalar(select(Term.growth_released_at).where(Term.id == built.spring))
            is None
        )


async def test_a_made_pdf_reaches_the_guardian_and_a_gone_child_fails_the_row(
    world: World,  # noqa: F811
) -> None:
    """Through the real delivery worker and the sandbox: the guardian gets the PDF as a
    document in their language; the row of a child deleted meanwhile fails and nothing is sent."""
    db, school = world.db, world.school
    await build(db, school)
    (mom, mom_chat), (hong, hong_chat) = await world.people(2, locale="en")
    async with db.transaction() as session:
        from storage.models import Guardianship

        for user_id, child in ((mom, "李小明"), (hong, "李小红")):
            session.add(
                Guardianship(
                    school_id=school.school_id,
                    user_id=user_id,
                    student_id=school.student_ids[child],
                    consent_version="test",
                    consented_at=NOW,
                )
            )
    async with db.transaction() as session:
        assert await growth.release(session, school.school_id, school.term_id, utcnow()) == 2
        await session.execute(delete(Student).where(Student.id == school.student_ids["李小红"]))
    worker = await world.worker(rate=30)
    worker.wake()
    await worker.idle()
    (sent,) = [m for m in world.sandbox.messages(mom_chat) if m["outgoing"]]
    assert sent["document_name"] == "李小明 - growth record - 2026秋季学期.pdf"
    assert sent["caption"].startswith("📘 李小明's after-school growth record for 2026秋季学期")
    stored = world.sandbox.files[sent["document"]["file_id"]]
    assert "attended2/4sessions(50%)" in pdf_text(stored.data)
    assert [m for m in world.sandbox.messages(hong_chat) if m["outgoing"]] == []
    async with db.transaction() as session:
        rows = dict(
            (await session.execute(select(Outbox.chat_id, Outbox.status))).all()  # type: ignore[arg-type]
        )
        error = await session.scalar(select(Outbox.last_error).where(Outbox.chat_id == hong_chat))
    assert rows == {mom_chat: OutboxStatus.SENT, hong_chat: OutboxStatus.FAILED}
    assert error is not None and error.startswith("cannot make")


# --- through Telegram ---------------------------------------------------------------------------


@pytest.fixture
def growth_app(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app with /growth (first in its group, unless handlers/__init__ registers it) and
    the clock at Monday 7 December 2026, 17:00."""
    monkeypatch.setattr("handlers.parent.growth._now", lambda: NOW)
    registered = any(
        isinstance(h, CommandHandler) and "growth" in h.commands for h in app.handlers.get(0, [])
    )
    if not registered:
        for handler in reversed(growth_handlers.handlers()):
            app.handlers[0].insert(0, handler)
    return app


def labels(calls: list[Call]) -> list[str]:
    return [b["text"] for c in calls for b in c.buttons()]


def alerts(calls: list[Call]) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in calls
        if c.method == "answerCallbackQuery" and c.params.get("show_alert")
    ]


async def test_a_guardian_is_told_when_the_record_comes_then_reads_it_and_gets_the_pdf(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    await build(db, school)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明", "李小红"))
    mom = make_user(MOM)
    calls = await mom.send("/growth")
    assert "要查看哪个孩子的成长档案？" in mom.texts(calls)
    assert labels(calls) == ["李小明", "李小红", "取消"]
    waiting = mom.texts(await mom.click("李小明"))
    assert (
        "李小明2026秋季学期的成长档案尚未发布，将于学期末 1月20日周三 18:30 以 PDF 发给您"
        in waiting
    )
    assert labels(mom.request.sent_to(MOM)[-1:]) == ["‹ 返回", "取消"]

    async with db.transaction() as session:
        await growth.release(session, school.school_id, school.term_id, NOW)
    await mom.click("‹ 返回")
    calls = await mom.click("李小明")
    shown = mom.texts(calls)
    assert "📘 <b>李小明</b> · 2026秋季学期成长档案" in shown
    assert "• 乐高机器人（科技活动）：出勤 2/4 次（50%）" in shown
    assert "合计：出勤 6/8 次（75%）。" in shown
    assert "<b>参加的活动：</b>科技活动、美育、体育锻炼" in shown
    assert "<b>老师的记录：</b>2 条（王老师），详见 PDF。" in shown
    assert labels(calls) == ["📄 获取 PDF", "‹ 返回", "取消"]

    calls = await mom.click("📄 获取 PDF")
    (document,) = [c for c in calls if c.method == "sendDocument"]
    (name, data, *_rest) = document.files["document"]
    assert name == "李小明-2026秋季学期-成长档案.pdf"
    assert "出勤2/4次（50%）" in pdf_text(data)
    assert document.params["caption"] == "李小明2026秋季学期的成长档案。"


async def test_another_familys_child_and_an_admins_press_are_refused_for_a_guardian(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    await build(db, school)
    await add_member(db, school, HONG, {Role.PARENT}, ("李小红",))
    async with db.transaction() as session:
        await growth.release(session, school.school_id, school.term_id, NOW)
    hong = make_user(HONG)
    ming = school.student_ids["李小明"]
    for data in (f"gr:d:{ming}:{school.term_id}", f"gr:c:{ming}", "gr:r", "gr:d:1:99999999999"):
        calls = await hong.press(data)
        assert alerts(calls), data
        assert not [c for c in calls if c.method == "sendDocument"]
    async with db.transaction() as session:
        audited = (await session.scalars(select(AuditLog.action))).all()
    assert audited.count(growth.REFUSED) == 4


async def test_an_admin_sees_the_status_releases_after_a_confirm_and_not_twice(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    await build(db, school)
    await guardians(db, school)
    await add_member(db, school, ADMIN, {Role.ADMIN})
    admin = make_user(ADMIN)
    calls = await admin.send("/growth")
    text = admin.texts(calls)
    assert "📘 成长档案 · 2026秋季学期（2026年9月1日至2027年1月20日）" in text
    assert "本学期有 2 名孩子参加了课程，每人一份档案。" in text
    assert "尚未发布。将于 1月20日周三 18:30 自动发给 3 位家长。" in text
    assert labels(calls) == ["立即发布…", "取消"]
    calls = await admin.click("立即发布…")
    assert "3 位家长将各自收到孩子的档案 PDF（共 2 名孩子）" in admin.texts(calls)
    assert "发布后不能撤回" in admin.texts(calls)
    assert labels(calls) == ["✅ 发布档案", "‹ 返回", "取消"]
    async with db.transaction() as session:
        assert (await session.scalars(select(Outbox))).all() == []
    confirm = admin.request.sent_to(ADMIN)[-1]
    calls = await admin.click("✅ 发布档案")
    assert "📘 已发布：3 条附有孩子成长档案的消息正在发给家长。" in admin.texts(calls)
    # The same confirm pressed again (a double tap, a second admin): told, nothing sent.
    again = await admin.press(f"gr:y:{school.term_id}", confirm)
    assert "的成长档案已于" in admin.texts(again) and "不会重复发送" in admin.texts(again)
    async with db.transaction() as session:
        assert len((await session.scalars(select(Outbox))).all()) == 3
    status = admin.texts(await admin.click("发送情况"))
    assert "已于 12月7日周一 17:00 发布。" in status
    assert "发给家长的消息共 3 条：已送达 0 · 待发送 3 · 失败 0。" in status
    assert admin.texts(await admin.click("取消")) == "已关闭。发送 /growth 可再次查看。"


async def test_an_admin_previews_one_childs_pdf_by_student_number(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    await build(db, school)
    await add_member(db, school, ADMIN, {Role.ADMIN}, locale="en")
    admin = make_user(ADMIN)
    calls = await admin.send("/growth s001")
    (document,) = [c for c in calls if c.method == "sendDocument"]
    name, data, *_rest = document.files["document"]
    assert name == "李小明 - growth record - 2026秋季学期.pdf"
    assert "Overall:attended6/8sessions(75%)" in pdf_text(data)
    assert document.params["caption"].startswith("Preview: 李小明's growth record")
    assert "No child has the student number S999." in admin.texts(await admin.send("/growth S999"))
    assert "张伟 took no after-school course in 2026秋季学期" in admin.texts(
        await admin.send("/growth S003")
    )
    # Nothing was released by a preview.
    async with db.transaction() as session:
        assert (
            await session.scalar(select(Term.growth_released_at).where(Term.id == school.term_id))
            is None
        )


async def test_a_teacher_without_a_child_is_told_who_records_are_for(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    await add_member(db, school, TEACHER, {Role.TEACHER})
    async with db.transaction() as session:
        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=None)
        )
    teacher = make_user(TEACHER)
    assert "成长档案供已绑定孩子的家长和学校管理员使用。" in teacher.texts(
        await teacher.send("/growth")
    )


async def test_every_growth_button_with_a_forged_id_is_answered_and_changes_nothing(
    db: Database, school: SchoolData, make_user: Any, growth_app: Any
) -> None:
    """As tests/test_presses.py does for every registered pattern: ids past the integer range,
    pressed by someone who is parent, teacher and admin at once."""
    from tests.test_presses import overflowing_data

    await add_member(db, school, ADMIN, {Role.PARENT, Role.TEACHER, Role.ADMIN}, ("李小明",))
    person = make_user(ADMIN, language_code="en")
    for handler in growth_handlers.handlers():
        if not hasattr(handler, "pattern"):
            continue
        data = overflowing_data(handler.pattern.pattern)
        assert data
        for datum in data:
            replies = await person.press(datum)
            assert [c.method for c in replies if c.method == "answerCallbackQuery"], datum
            assert not [c for c in replies if c.method == "sendDocument"], datum
    async with db.transaction() as session:
        assert (
            await session.scalar(select(Term.growth_released_at).where(Term.id == school.term_id))
            is None
        )
        assert (await session.scalars(select(Outbox))).all() == []


async def test_the_benchmark_builds_renders_and_releases_a_small_school(tmp_path: Any) -> None:
    """bench/growth.py on 120 children (the 3,000-child run is for docs/PERFORMANCE.md)."""
    import importlib

    bench = importlib.import_module("bench.growth")
    result = await bench.run(f"sqlite+aiosqlite:///{tmp_path}/bench.sqlite3", 120, 3)
    assert result["records"] > 100
    assert result["messages"] >= result["records"]  # a guardian with a chat for each, or more
    # A page of text either way; with the embedded font (CI) a PDF is about 39 KB.
    assert result["marks"] > 0 and result["pdf_kb"] > 1
