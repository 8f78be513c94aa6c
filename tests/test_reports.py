"""Admin reports without Telegram: exact figures for enrolment, attendance, ratings (hidden
courses never show a score), hours, the "1+N" check day by day, and the exported files.

The term is shrunk to two weeks, Monday 2 to Friday 13 November 2026: Wednesday 4 November
is a holiday and Saturday 7 November a swapped working day (调休) running Wednesday's
timetable. Grades 1–6 (三年级1班) have homework help every day 15:30–16:30, science on Monday,
ball games (sports) Monday to Wednesday and "=1+1 剪纸" (arts, 30 minutes) on Thursday, all
after 16:40; science on Monday 9 November is cancelled. Grades 7–9 (七年级2班) have running
(sports) every day and nothing else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import delete, update

from bot.i18n import I18n, Translator
from bot.services import attendance, reports, sheets
from storage.db import Database
from storage.models import (
    Again,
    AttendanceMark,
    Ballot,
    CalendarDay,
    CalendarKind,
    Category,
    Enrolment,
    EnrolmentStatus,
    Face,
    Provider,
    ProviderKind,
    RatingTurnout,
    School,
    Session,
    SessionStatus,
    Term,
    utcnow,
)
from tests.factories import SchoolData, add_member
from tests.test_enrolment import make_course, pupils

MON, TUE, WED, THU, FRI = 1, 2, 4, 8, 16
WEEK = MON | TUE | WED | THU | FRI
FIRST, LAST = dt.date(2026, 11, 2), dt.date(2026, 11, 13)
_tokens = itertools.count()


def zh() -> Translator:
    return I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")


def en() -> Translator:
    return I18n(ZoneInfo("Asia/Shanghai")).get("en")


@dataclass
class World:
    school: SchoolData
    courses: dict[str, int]
    extra: list[int]  # more third-graders, for the ratings' families


async def _session(
    db: Database, school: SchoolData, course: int, day: dt.date, **fields: Any
) -> int:
    async with db.transaction() as session:
        row = Session(
            school_id=school.school_id,
            course_id=course,
            date=day,
            starts_at=dt.time(15, 30),
            ends_at=dt.time(16, 30),
            venue="教室",
            **fields,
        )
        session.add(row)
        await session.flush()
        return row.id


async def _marks(
    db: Database, school: SchoolData, session_id: int, *marks: tuple[str, str]
) -> None:
    async with db.transaction() as session:
        await attendance.codes(session, school.school_id)
        for child, code in marks:
            session.add(
                AttendanceMark(
                    school_id=school.school_id,
                    session_id=session_id,
                    student_id=school.student_ids[child],
                    code=code,
                    source="roll",
                )
            )
            await session.flush()  # ids in order: the later mark is the latest


async def _enrol(
    db: Database, school: SchoolData, student: int, course: int, status: EnrolmentStatus
) -> None:
    async with db.transaction() as session:
        session.add(
            Enrolment(
                school_id=school.school_id,
                student_id=student,
                course_id=course,
                status=status,
                waitlist_position=1 if status is EnrolmentStatus.WAITLISTED else None,
            )
        )


async def _ballots(
    db: Database, school: SchoolData, course: int, families: list[int], answers: list[tuple]
) -> None:
    async with db.transaction() as session:
        for student in families:
            session.add(
                RatingTurnout(
                    term_id=school.term_id,
                    course_id=course,
                    student_id=student,
                    school_id=school.school_id,
                    done=True,
                )
            )
        for content, teaching, safety, again in answers:
            session.add(
                Ballot(
                    token=f"t{next(_tokens):06d}",
                    school_id=school.school_id,
                    term_id=school.term_id,
                    course_id=course,
                    content=content,
                    teaching=teaching,
                    safety=safety,
                    again=again,
                    face=Face.HAPPY,
                )
            )


async def build_world(db: Database, school: SchoolData) -> World:
    async with db.transaction() as session:
        await session.execute(
            update(Term)
            .where(Term.id == school.term_id)
            .values(starts_on=FIRST, ends_on=LAST, rating_closed_at=utcnow())
        )
        session.add_all(
            [
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=dt.date(2026, 11, 4),
                    kind=CalendarKind.HOLIDAY,
                ),
                CalendarDay(
                    school_id=school.school_id,
                    term_id=school.term_id,
                    date=dt.date(2026, 11, 7),
                    kind=CalendarKind.WORKDAY,
                    runs_weekday=3,
                ),
            ]
        )
        provider = Provider(
            school_id=school.school_id, code="XH", name="星火体育", kind=ProviderKind.OUTSIDE
        )
        session.add(provider)
        await session.flush()
        provider_id = provider.id
    late = {"starts_at": dt.time(16, 40), "ends_at": dt.time(17, 40)}
    courses = {
        "HW": await make_course(
            db,
            school,
            "HW",
            name="课业辅导",
            category=Category.HOMEWORK,
            period=1,
            weekdays=WEEK,
            starts_at=dt.time(15, 30),
            ends_at=dt.time(16, 30),
            capacity=40,
            teacher_id=school.teacher_id,
        ),
        "SCI": await make_course(
            db, school, "SCI", name="科学探究", weekdays=MON, teacher_id=school.teacher_id, **late
        ),
        "BALL": await make_course(
            db,
            school,
            "BALL",
            name="小篮球",
            category=Category.SPORTS,
            weekdays=MON | TUE | WED,
            capacity=1,
            teacher_id=school.teacher_id,
            provider_id=provider_id,
            **late,
        ),
        "ART": await make_course(
            db,
            school,
            "ART",
            name="=1+1 剪纸",
            category=Category.ARTS,
            weekdays=THU,
            starts_at=dt.time(16, 40),
            ends_at=dt.time(17, 10),
        ),
        "RUN": await make_course(
            db,
            school,
            "RUN",
            name="晨跑社",
            category=Category.SPORTS,
            weekdays=WEEK,
            grade_min=7,
            grade_max=9,
            capacity=30,
            **late,
        ),
    }
    ids = school.student_ids
    enrolled = EnrolmentStatus.ENROLLED
    for child, course, status in [
        ("李小明", "HW", enrolled),
        ("李小明", "SCI", enrolled),
        ("李小明", "BALL", enrolled),
        ("张伟", "HW", enrolled),
        ("张伟", "BALL", EnrolmentStatus.WAITLISTED),
        ("李小红", "RUN", enrolled),
        ("李小红", "ART", EnrolmentStatus.WITHDRAWN),
    ]:
        await _enrol(db, school, ids[child], courses[course], status)
    # Attendance: a correction (absent, then present) counts as present; a mark outside the
    # term's days counts for nothing.
    monday = await _session(
        db,
        school,
        courses["HW"],
        FIRST,
        teacher_id=school.teacher_id,
        roll_submitted_at=utcnow(),
    )
    await _marks(
        db,
        school,
        monday,
        ("李小明", attendance.ABSENT),
        ("张伟", attendance.LEAVE),
        ("李小明", attendance.PRESENT),
    )
    tuesday = await _session(
        db,
        school,
        courses["HW"],
        dt.date(2026, 11, 3),
        teacher_id=school.teacher_id,
        roll_submitted_at=utcnow(),
    )
    await _marks(db, school, tuesday, ("李小明", attendance.LATE), ("张伟", attendance.ABSENT))
    run = await _session(db, school, courses["RUN"], FIRST)
    await _marks(db, school, run, ("李小红", attendance.PRESENT))
    after = await _session(db, school, courses["HW"], dt.date(2026, 12, 1))
    await _marks(db, school, after, ("李小明", attendance.ABSENT))
    await _session(
        db, school, courses["SCI"], dt.date(2026, 11, 9), status=SessionStatus.CANCELLED
    )
    # Ratings: science has 5 complete ballots of 6 families (shown); ball games 4 of 6 (hidden).
    extra = await pupils(db, school, 6)
    await _ballots(
        db,
        school,
        courses["SCI"],
        extra,
        [
            (5, 5, 4, Again.YES),
            (5, 5, 4, Again.YES),
            (4, 5, 4, Again.YES),
            (4, 5, 4, Again.UNSURE),
            (3, 5, 4, Again.NO),
        ],
    )
    await _ballots(db, school, courses["BALL"], extra, [(1, 1, 1, Again.NO)] * 4)
    return World(school, courses, extra)


async def _school_term(db: Database, school: SchoolData) -> tuple[School, Term]:
    async with db.transaction() as session:
        found = await session.get(School, school.school_id)
        term = await session.get(Term, school.term_id)
        assert found is not None and term is not None
        return found, term


async def run(db: Database, school: SchoolData, key: str, t: Translator | None = None) -> Any:
    found, term = await _school_term(db, school)
    async with db.transaction() as session:
        return await reports.BUILDERS[key](session, found, term, t or zh())


def rows_of(sheet: sheets.Sheet) -> list[list[Any]]:
    return [list(r) for r in sheet.rows]


async def test_enrolment_counts_each_status_and_fill(db: Database, school: SchoolData) -> None:
    world = await build_world(db, school)
    report = await run(db, world.school, "enrolment")
    (sheet,) = report.sheets
    by_code = {r[0]: r for r in rows_of(sheet)}
    assert sheet.header[9:14] == ["名额", "已报名", "候补", "已退出", "报满率 %"]
    assert by_code["BALL"][9:14] == [1, 1, 1, 0, Decimal("100.0")]
    assert by_code["HW"][9:14] == [40, 2, 0, 0, Decimal("5.0")]
    assert by_code["ART"][12] == 1  # withdrawn
    assert by_code["BALL"][8] == "星火体育"
    assert "1 门课程已报满" in report.summary
    assert "1 名孩子在候补" in report.summary


async def test_attendance_counts_the_latest_mark_within_the_term(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    report = await run(db, world.school, "attendance")
    by_course, by_class, by_week = report.sheets
    courses = {r[0]: r[3:] for r in rows_of(by_course)}
    # 李小明 present (corrected) and late; 张伟 on leave and absent; December is outside.
    assert courses["HW"] == [2, 4, Decimal("50.0"), 1]
    assert courses["RUN"] == [1, 1, Decimal("100.0"), 0]
    assert "SCI" not in courses  # no roll taken: counts for nobody
    assert {r[0]: r[1:] for r in rows_of(by_class)} == {
        "三年级1班": [2, 4, Decimal("50.0"), 1],
        "七年级2班": [1, 1, Decimal("100.0"), 0],
    }
    assert rows_of(by_week) == [[FIRST, 3, 5, Decimal("60.0"), 1]]
    assert "出勤 3 人次，共点名 5 人次（60.0%）" in report.summary


async def test_ratings_show_only_courses_over_the_thresholds(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    report = await run(db, world.school, "ratings")
    by_course, by_teacher, by_provider = report.sheets
    courses = {r[0]: r for r in rows_of(by_course)}
    # Science: 5 of 6 families; content 4.2, teaching 5, care 4, overall 4.4, 3 of 5 again.
    assert courses["SCI"][4:] == [
        6,
        5,
        Decimal("83.3"),
        Decimal("4.20"),
        Decimal("5.00"),
        Decimal("4.00"),
        Decimal("4.40"),
        Decimal("60.0"),
        1,
        1,
        "",
    ]
    # Ball games: only the count and turnout, never a score.
    assert courses["BALL"][4:7] == [6, 4, Decimal("66.7")]
    assert courses["BALL"][7:] == [None] * 7 + ["票数太少，不予显示"]
    # The teacher of both: only science is pooled, so ball games cannot be worked out.
    (teacher,) = rows_of(by_teacher)
    assert teacher[:4] == ["王老师", 1, 1, 5]
    assert teacher[4:8] == [Decimal("4.20"), Decimal("5.00"), Decimal("4.00"), Decimal("4.40")]
    (provider,) = rows_of(by_provider)
    assert provider == ["星火体育", 0, 1, None, *([None] * 7), "票数太少，不予显示"]
    assert "1 门课程票数太少，不予显示" in report.summary
    assert "4.40" in report.summary
    # No sheet anywhere holds a 1.00 (the hidden ballots all gave 1).
    every = await _every_cell(db, world.school)
    scores = [c for c in every if isinstance(c, Decimal) and c.as_tuple().exponent == -2]
    assert scores and Decimal("1.00") not in scores


async def _every_cell(db: Database, school: SchoolData) -> list[Any]:
    found, term = await _school_term(db, school)
    async with db.transaction() as session:
        built = await reports.term_report(session, found, term, zh())
    return [cell for r in built for s in r.sheets for row in s.rows for cell in row]


async def test_hours_count_sessions_whose_roll_is_in(db: Database, school: SchoolData) -> None:
    world = await build_world(db, school)
    report = await run(db, world.school, "hours")
    assert rows_of(report.sheets[0]) == [["2026-11", "王老师", 2, Decimal("2.00")]]
    assert "2 节课" in report.summary


async def test_the_1_plus_n_check_names_each_failing_day_and_why(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    async with db.transaction() as session:
        term = await session.get(Term, world.school.term_id)
        assert term is not None
        row = await session.get(School, world.school.school_id)
        assert row is not None
        row.science_every_day = False  # the week's reading: see the daily one below
        days = await reports.class_days(session, row, term)
    t = zh()
    fails = {(d.klass, d.date): reports.why(t, d) for d in days if not d.passes}
    assert len(days) == 20  # 2 classes × 10 teaching days (holiday out, 调休 Saturday in)
    assert fails == {
        (
            "三年级1班",
            dt.date(2026, 11, 5),
        ): "兴趣活动仅占 33.3% 的时间（至少需 50%）；没有体育活动",
        ("三年级1班", dt.date(2026, 11, 6)): "只有课业辅导，没有兴趣活动；没有体育活动",
        (
            "三年级1班",
            dt.date(2026, 11, 12),
        ): "兴趣活动仅占 33.3% 的时间（至少需 50%）；没有体育活动",
        # Science was cancelled on Monday 9 November: the week had none.
        (
            "三年级1班",
            dt.date(2026, 11, 13),
        ): "只有课业辅导，没有兴趣活动；没有体育活动；本周没有科技活动",
        ("七年级2班", dt.date(2026, 11, 7)): "本周没有科技活动",
        ("七年级2班", dt.date(2026, 11, 13)): "本周没有科技活动",
    }
    saturday = next(d for d in days if d.klass == "三年级1班" and d.date == dt.date(2026, 11, 7))
    assert (saturday.weekday, saturday.total, saturday.interest) == (3, 120, 60)  # Wednesday's
    monday = next(d for d in days if d.klass == "三年级1班" and d.date == FIRST)
    assert monday.passes and monday.share == Decimal("50.0")
    assert (monday.attending, monday.homework_only) == (2, 1)  # 张伟 has homework help only

    report = await run(db, world.school, "compliance")
    assert "20 个班级日中有 6 个未达标" in report.summary
    assert "三年级1班 · 11月6日周五：只有课业辅导，没有兴趣活动" in report.summary
    failing, every = report.sheets
    assert len(rows_of(failing)) == 6 and len(rows_of(every)) == 20
    assert report.chart is not None


async def test_reports_speak_english_to_an_english_reader(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    report = await run(db, world.school, "compliance", en())
    assert "Fri, Nov 6: only homework help, no interest activity; no sports" in report.summary
    assert report.sheets[1].header[0] == "Class"


async def test_exports_open_as_text_never_formulas(
    db: Database, school: SchoolData, tmp_path: Path
) -> None:
    world = await build_world(db, school)
    found, term = await _school_term(db, world.school)
    async with db.transaction() as session:
        built = await reports.term_report(session, found, term, zh())
    assert [r.key for r in built] == list(reports.TITLES)
    for report in built:
        book = openpyxl.load_workbook(io.BytesIO(sheets.write_xlsx(report.sheets)))
        assert [ws.title for ws in book.worksheets] == [s.title for s in report.sheets]
        for ws, sheet in zip(book.worksheets, report.sheets, strict=True):
            assert [c.value for c in ws[1]] == list(sheet.header)
            for row in ws.iter_rows():
                assert all(cell.data_type != "f" for cell in row)
    enrolment = built[0]
    book = openpyxl.load_workbook(io.BytesIO(sheets.write_xlsx(enrolment.sheets)))
    art = next(
        r for r in book.active.iter_rows(min_row=2, values_only=False) if r[0].value == "ART"
    )
    assert art[1].value == "'=1+1 剪纸" and art[1].data_type == "s"
    csv_text = sheets.write_csv(enrolment.sheets[0].header, enrolment.sheets[0].rows).decode(
        "utf-8-sig"
    )
    assert "'=1+1 剪纸" in csv_text and csv_text.startswith("代码,课程")


async def test_a_term_report_costs_the_same_statements_whatever_its_size(
    db: Database, school: SchoolData
) -> None:
    """No query per course, class or child: more of each, the same statements."""
    from sqlalchemy import event

    world = await build_world(db, school)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    async def statements_of_report() -> int:
        statements.clear()
        found, term = await _school_term(db, world.school)
        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        try:
            async with db.transaction() as session:
                await reports.term_report(session, found, term, zh())
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    before = await statements_of_report()
    for n in range(5):
        course = await make_course(db, world.school, f"MORE{n}", weekdays=TUE)
        for kid in world.extra:
            await _enrol(db, world.school, kid, course, EnrolmentStatus.ENROLLED)
    assert await statements_of_report() <= before + 1  # + reading the catalogue again


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
async def test_the_district_export_lists_every_school_and_course(
    db: Database,
    school: SchoolData,
    database_url: str,
    tmp_path: Path,
    suffix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot import cli
    from tests.factories import make_school

    await build_world(db, school)
    other = await make_school(db, code="second")
    await make_course(db, other, "ONE", name="书法", category=Category.ARTS)
    monkeypatch.setenv("KEHOU_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    out = tmp_path / f"district{suffix}"
    # The command runs its own event loop, as `kehou export` does.
    args = ["export", "--district", str(out), "--term", "2026秋季学期"]
    assert await asyncio.to_thread(cli.main, args) == 0
    if suffix == ".csv":
        text = out.read_bytes().decode("utf-8-sig")
        lines = text.splitlines()
        assert lines[0].startswith("学校代码,学校,代码,课程")
        assert len(lines) == 1 + 5 + 1
        assert "票数太少，不予显示" in text  # ball games: hidden
        return
    book = openpyxl.load_workbook(out)
    schools, courses = book.worksheets
    assert [r[0] for r in schools.iter_rows(min_row=2, values_only=True)] == ["second", "test"]
    test_line = next(r for r in schools.iter_rows(min_row=2, values_only=True) if r[0] == "test")
    assert test_line[3:8] == (5, 5, 3, 5, 60)  # courses, places taken, present, marked, %
    # Class-days checked, failing: science is asked of every day (the default), and only the
    # first Monday has it (see test_science_on_every_teaching_day_is_the_default_reading).
    assert test_line[-2:] == (20, 19)
    rows = {r[2]: r for r in courses.iter_rows(min_row=2, values_only=True) if r[0] == "test"}
    assert rows["SCI"][10:12] == (5, 4.4)
    assert rows["BALL"][10:12] == (4, None) and rows["BALL"][13] == "票数太少，不予显示"
    assert all(c.data_type != "f" for ws in book.worksheets for r in ws.iter_rows() for c in r)


# -------------------------------------------------------------------------------------------
# /reports through the application


@pytest.fixture
def with_reports(app: Any) -> None:
    """/reports ahead of group 0's fallbacks, as handlers.register will place it."""
    from handlers.admin import reports as admin_reports

    app.handlers[0][0:0] = admin_reports.handlers()


async def test_an_admin_reads_a_report_and_gets_its_files_and_chart(
    db: Database, school: SchoolData, make_user: Any, request_recorder: Any, with_reports: None
) -> None:
    from storage.models import Role

    await build_world(db, school)
    await add_member(db, school, 8009, {Role.ADMIN}, locale="zh_CN")
    admin = make_user(8009)
    menu = await admin.send("/reports")
    (shown,) = [c for c in menu if c.text]
    assert "报表 · 2026秋季学期" in shown.text
    labels = [b["text"] for b in shown.buttons()]
    assert labels == ["报名", "出勤", "评价", "1+N 达标检查", "费用", "教师课时", "关闭"]
    markup = shown.params["reply_markup"]
    rows = (
        json.loads(markup)["inline_keyboard"]
        if isinstance(markup, str)
        else markup["inline_keyboard"]
    )
    assert all(len(row) <= 3 for row in rows)

    summary = admin.texts(await admin.click("1+N 达标检查"))
    assert "20 个班级日中有 19 个未达标" in summary  # science asked of every day
    assert "三年级1班 · 11月6日周五：只有课业辅导，没有兴趣活动" in summary
    assert {"CSV", "Excel", "图表", "‹ 返回", "取消"} <= set(admin.all_buttons())

    await admin.click("Excel")
    (document,) = request_recorder.of("sendDocument")
    name, content, _ = document.files["document"]
    assert name == "1+N_达标检查-2026秋季学期.xlsx" and document.chat_id == 8009
    book = openpyxl.load_workbook(io.BytesIO(content))
    assert [ws.title for ws in book.worksheets] == ["未达标日", "逐日明细"]
    assert book.worksheets[0].max_row == 20  # the header and the 19 failing days

    await admin.click("CSV")
    names = [c.files["document"][0] for c in request_recorder.of("sendDocument")[1:]]
    assert names == [
        "1+N_达标检查-未达标日-2026秋季学期.csv",
        "1+N_达标检查-逐日明细-2026秋季学期.csv",
    ]

    await admin.click("图表")
    (photo,) = request_recorder.of("sendPhoto")
    assert photo.files["photo"][1][:4] == b"\x89PNG" and photo.chat_id == 8009

    await admin.click("‹ 返回")
    await admin.click("评价")
    ratings_text = admin.texts(request_recorder.of("editMessageText")[-1:])
    assert "1 门课程票数太少，不予显示" in ratings_text


async def test_others_are_told_politely_and_a_forged_press_sends_nothing(
    db: Database, school: SchoolData, make_user: Any, request_recorder: Any, with_reports: None
) -> None:
    from storage.models import Role, UserRole

    await build_world(db, school)
    await add_member(db, school, 8001, {Role.PARENT}, children=("李小明",))
    await add_member(db, school, 8002, {Role.TEACHER})
    admin_id = await add_member(db, school, 8009, {Role.ADMIN})
    parent, teacher, admin = make_user(8001), make_user(8002), make_user(8009)
    assert parent.texts(await parent.send("/reports")) == "报表仅供学校管理员查看。"
    assert "/ratings" in teacher.texts(await teacher.send("/reports"))
    answers = await parent.press("rp:e:compliance")
    assert [c.params.get("text") for c in answers if c.method == "answerCallbackQuery"] == [
        "报表仅供学校管理员查看。"
    ]
    # An admin who is no longer one: the button they still have does nothing.
    await admin.send("/reports")
    async with db.transaction() as session:
        await session.execute(delete(UserRole).where(UserRole.user_id == admin_id))
    await admin.click("报名")
    await admin.press("rp:e:enrolment")
    await admin.press("rp:s:nothing")
    assert request_recorder.of("sendDocument") == []
    assert not any("报名 · 2026秋季学期" in c.text for c in request_recorder.of("editMessageText"))


# -------------------------------------------------------------------------------------------
# bench/reports.py at a tiny size, so it does not rot


async def test_the_reports_bench_runs_small(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    """On SQLite the school part (a generated school, rolls, ballots, every report, its files
    and charts); on PostgreSQL the district part (bulk seeding and `kehou export`)."""
    import importlib

    bench = importlib.import_module("bench.reports")
    if backend == "sqlite":
        result = await bench.run_school(database_url, 150, weeks=1)
        assert result["marks"] > 0 and result["ballots"] > 0
        assert result["charts"] == 3 and result["rows"] > 0
        assert "出勤" in result["summaries"]["attendance"]
        assert result["term_report_s"] < bench.SCHOOL_TARGET_S
        return
    result = await bench.run_district(database_url, 3500, 1, tmp_path)
    assert (result["schools"], result["students"]) == (2, 3500)
    assert result["marks"] > 0 and result["xlsx"]["bytes"] > 0
    book = openpyxl.load_workbook(tmp_path / "district.xlsx")
    schools, courses = book.worksheets
    lines = list(schools.iter_rows(min_row=2, values_only=True))
    assert [line[0] for line in lines] == ["S000", "S001"]
    assert sum(line[4] for line in lines) == result["enrolments"]
    assert sum(line[6] for line in lines) == result["marks"]
    assert courses.max_row == 1 + 2 * 6 * 7


async def test_the_fees_report_sums_what_fee_reports_builds(
    db: Database, school: SchoolData
) -> None:
    """Two children billed ¥280 each for a term course; one has paid: ¥560 charged, ¥280
    paid and due, one family owing (fee_reports.build's own figures are tested there)."""
    from bot.services import billing
    from storage.models import FeeUnit
    from tests.test_fees import bill_of, enrol, issue, standard

    fee = await standard(db, school, "ART", 28000, FeeUnit.TERM)
    course = await make_course(db, school, "ART", fee_standard_id=fee, capacity=5)
    await enrol(db, school, "李小明", course)
    await enrol(db, school, "张伟", course)
    await issue(db, school)
    view = await bill_of(db, school, "李小明")
    async with db.transaction() as session:
        done = await billing.record_payment(
            session, view.bill_id, 28000, user_id=None, expected_version=view.version
        )
    assert done.result is billing.Recorded.DONE
    report = await run(db, school, "fees")
    assert "应收 ¥560.00 · 已收 ¥280.00 · 未收 ¥280.00" in report.summary
    assert "1 户家庭尚有欠费" in report.summary
    assert [s.title for s in report.sheets] == ["按班级和项目", "按家庭待缴", "退费", "减免"]


async def test_science_on_every_teaching_day_is_the_default_reading(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    async with db.transaction() as session:
        term = await session.get(Term, world.school.term_id)
        row = await session.get(School, world.school.school_id)
        assert term is not None and row is not None and row.science_every_day
        days = await reports.class_days(session, row, term)
    no_science = {(d.klass, d.date) for d in days if reports.NO_SCIENCE_TODAY in d.reasons}
    assert not [d for d in days if reports.NO_SCIENCE in d.reasons]
    # 三年级1班 has science on Mondays only, and the second Monday's was cancelled.
    junior = sorted(day for klass, day in no_science if klass == "三年级1班")
    assert FIRST not in junior and dt.date(2026, 11, 9) in junior and len(junior) == 9
    # 七年级2班 never has science: every one of its ten teaching days says so.
    assert len([k for k, _ in no_science if k == "七年级2班"]) == 10
    report = await run(db, world.school, "compliance")
    assert "当天有体育和科技活动" in report.summary
    assert "三年级1班 · 11月3日周二：没有科技活动" in report.summary
