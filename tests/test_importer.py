"""The school import: the demo school, re-imports, rosters in CSV and XLSX, and validation."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import ColumnElement, func, select

import bot.demo
from bot.services.importer import (
    ImportProblem,
    ImportValidationError,
    import_school,
    load_and_validate,
)
from storage.db import Database
from storage.models import (
    Allocation,
    AuditLog,
    Base,
    CalendarDay,
    CalendarKind,
    Category,
    Course,
    FeeStandard,
    Provider,
    ProviderKind,
    School,
    SchoolClass,
    Student,
    Teacher,
    Term,
    WhitelistStatus,
)

DEMO = Path(bot.demo.__file__).parent


@pytest.fixture
async def import_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """The demo files in a scratch directory, so a test may edit them."""
    target = tmp_path / "demo"
    target.mkdir()
    for name in ("school.yaml", "students.csv"):
        shutil.copyfile(DEMO / name, target / name)
    return target / "school.yaml"


async def count(db: Database, model: type[Base], *where: ColumnElement[bool]) -> int:
    async with db.transaction() as session:
        total = await session.scalar(select(func.count()).select_from(model).where(*where))
    return int(total or 0)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first occurrence of needle."""
    return text[: text.index(needle)].count("\n") + 1


def edit(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def read_roster(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fp:
        return list(csv.reader(fp))


def write_roster(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fp:
        csv.writer(fp, lineterminator="\n").writerows(rows)


# --- the demo school ---------------------------------------------------------------------------


async def test_demo_school_imports_with_a_realistic_programme(import_db: Database) -> None:
    report = await import_school(import_db, DEMO / "school.yaml")

    assert report.warnings == []
    assert report.created("school") == 1 and report.created("term") == 1
    async with import_db.transaction() as session:
        school = await session.scalar(select(School).where(School.id == report.school_id))
        assert school is not None and school.code == "heqing" and school.name == "河清实验学校"
        classes = list(await session.scalars(select(SchoolClass)))
        students = list(await session.scalars(select(Student)))
        courses = list(await session.scalars(select(Course)))
        providers = list(await session.scalars(select(Provider)))
        fees = list(await session.scalars(select(FeeStandard)))
        teachers = list(await session.scalars(select(Teacher)))
        term = await session.scalar(select(Term))
        days = list(await session.scalars(select(CalendarDay)))

    assert len(classes) >= 20
    assert {c.grade for c in classes} == set(range(1, 10))
    assert len(students) >= 500 and all(s.active for s in students)
    assert report.created("students") == len(students)
    assert len(courses) >= 30
    assert {c.category for c in courses} == set(Category)
    assert {c.period for c in courses} == {1, 2}
    outside = [p for p in providers if p.kind is ProviderKind.OUTSIDE]
    assert len(outside) >= 3
    assert any(p.whitelist_status is not WhitelistStatus.WHITELISTED for p in outside)
    assert {t.kind.value for t in teachers} == {
        "staff",
        "retired",
        "volunteer",
        "heritage",
        "provider",
    }
    assert any(f.amount_fen == 0 for f in fees)
    assert any(f.provider_id is not None and f.amount_fen > 0 for f in fees)  # 代收费

    # POLICY: only whitelisted providers run courses, and they charge only disclosed fees.
    status = {p.id: p.whitelist_status for p in providers}
    fee_by_id = {f.id: f for f in fees}
    for course in courses:
        if course.provider_id is not None:
            assert status[course.provider_id] is WhitelistStatus.WHITELISTED
            if course.fee_standard_id is not None:
                assert fee_by_id[course.fee_standard_id].disclosed_on is not None
    # Science is mandatory: every grade has a science course.
    for grade in range(1, 10):
        assert any(
            c.category is Category.SCIENCE and c.grade_min <= grade <= c.grade_max for c in courses
        ), grade

    # Naive times in the file are Beijing time, stored as aware UTC.
    assert term is not None
    assert term.enrolment_opens_at == dt.datetime(2026, 8, 24, 0, 0, tzinfo=dt.UTC)
    assert (term.starts_on, term.ends_on) == (dt.date(2026, 9, 1), dt.date(2027, 1, 20))
    by_date = {d.date: d for d in days}
    assert by_date[dt.date(2026, 9, 25)].kind is CalendarKind.HOLIDAY  # 中秋
    assert by_date[dt.date(2026, 10, 1)].kind is CalendarKind.HOLIDAY  # 国庆
    make_up = by_date[dt.date(2026, 10, 10)]  # a Saturday running a weekday timetable
    assert make_up.kind is CalendarKind.WORKDAY and make_up.runs_weekday in range(1, 6)
    assert by_date[dt.date(2026, 9, 20)].kind is CalendarKind.WORKDAY

    assert await count(import_db, AuditLog, AuditLog.action == "school.import") == 1


async def test_demo_school_imports_on_the_migrated_schema(db: Database) -> None:
    """The same on the Alembic schema, on SQLite and (where installed) PostgreSQL."""
    report = await import_school(db, DEMO / "school.yaml")
    again = await import_school(db, DEMO / "school.yaml")
    assert again.school_id == report.school_id
    assert all(c.created == 0 and c.updated == 0 for c in again.counts.values())
    assert await count(db, Student) == report.created("students")


def test_generator_reproduces_the_committed_demo_files(tmp_path: Path) -> None:
    from bot.demo import generate

    generate.main(tmp_path)
    for name in ("school.yaml", "students.csv"):
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name


# --- re-import ---------------------------------------------------------------------------------


async def test_reimport_updates_rows_instead_of_duplicating(
    import_db: Database, demo_copy: Path
) -> None:
    first = await import_school(import_db, demo_copy)
    totals = {
        model: await count(import_db, model)
        for model in (School, Term, CalendarDay, Provider, Teacher, SchoolClass, FeeStandard)
    } | {Course: await count(import_db, Course), Student: await count(import_db, Student)}

    second = await import_school(import_db, demo_copy)
    assert second.school_id == first.school_id and second.term_id == first.term_id
    for kind, counts in second.counts.items():
        assert counts.created == 0 and counts.updated == 0, kind
        assert counts.unchanged == first.counts[kind].created, kind
    for model, total in totals.items():
        assert await count(import_db, model) == total, model

    # Edit a course name, a fee amount and a student's name and class.
    edit(
        demo_copy,
        lambda text: text.replace("name: 校园足球", "name: 校园足球（男女混合）").replace(
            "amount: 280.00", "amount: 260.00"
        ),
    )
    roster = demo_copy.parent / "students.csv"
    rows = read_roster(roster)
    number = rows[1][0]
    rows[1][1:] = ["改名字", "1-2"]
    write_roster(roster, rows)

    third = await import_school(import_db, demo_copy)
    assert third.updated("courses") == 1 and third.updated("fees") == 1
    assert third.updated("students") == 1
    assert all(c.created == 0 for c in third.counts.values())
    async with import_db.transaction() as session:
        football = await session.scalar(select(Course).where(Course.code == "SPT-FOOT"))
        versions = list(
            await session.scalars(
                select(FeeStandard).where(FeeStandard.code == "SVC").order_by(FeeStandard.version)
            )
        )
        billed_under = set(
            await session.scalars(
                select(Course.fee_standard_id).where(
                    Course.fee_standard_id.in_([v.id for v in versions])
                )
            )
        )
        student = await session.scalar(select(Student).where(Student.student_no == number))
        class_1_2 = await session.scalar(select(SchoolClass).where(SchoolClass.code == "1-2"))
    assert football is not None and football.name == "校园足球（男女混合）"
    # A disclosed standard is never edited: the new amount is a new version, disclosed now, and
    # the courses move to it; the old version stays, superseded, with its amount.
    old, new = versions
    assert (old.amount_fen, new.amount_fen) == (28000, 26000)
    assert old.superseded_at is not None and new.superseded_at is None
    assert new.disclosed_at is not None and old.disclosed_at is not None
    assert new.disclosed_at > old.disclosed_at
    assert billed_under == {new.id}
    assert student is not None and class_1_2 is not None
    assert (student.name, student.class_id) == ("改名字", class_1_2.id)
    assert await count(import_db, Course) == totals[Course]


async def test_students_missing_from_the_roster_become_inactive(
    import_db: Database, demo_copy: Path
) -> None:
    await import_school(import_db, demo_copy)
    roster = demo_copy.parent / "students.csv"
    rows = read_roster(roster)
    removed = {row[0] for row in rows[1:4]}
    write_roster(roster, [rows[0], *rows[4:]])

    report = await import_school(import_db, demo_copy)
    assert report.students_deactivated == 3
    async with import_db.transaction() as session:
        inactive = set(await session.scalars(select(Student.student_no).where(~Student.active)))
    assert inactive == removed
    assert await count(import_db, Student) == len(rows) - 1  # kept, not deleted

    write_roster(roster, rows)  # back on the roster: active again
    back = await import_school(import_db, demo_copy)
    assert back.updated("students") == 3 and back.students_deactivated == 0
    assert await count(import_db, Student, ~Student.active) == 0


async def test_calendar_days_left_out_are_removed(import_db: Database, demo_copy: Path) -> None:
    await import_school(import_db, demo_copy)
    edit(
        demo_copy,
        lambda text: "".join(line for line in text.splitlines(True) if "秋季运动会" not in line),
    )
    report = await import_school(import_db, demo_copy)
    assert report.calendar_days_removed == 1
    assert await count(import_db, CalendarDay, CalendarDay.date == dt.date(2026, 10, 30)) == 0


# --- a small school for targeted checks --------------------------------------------------------

SMALL = """\
school: {code: small, name: 小河小学, timezone: Asia/Shanghai}
term:
  name: 2026秋
  starts_on: 2026-09-01
  ends_on: 2027-01-20
  enrolment_opens_at: 2026-08-24 08:00
providers:
  - {code: GOOD, name: 好机构, whitelist_status: whitelisted}
  - {code: WAIT, name: 待审机构, whitelist_status: pending}
teachers:
  - {code: T1, name: 王老师, kind: staff}
  - {code: K1, name: 教练, kind: provider, provider: GOOD, credentials_checked: true}
classes:
  - {code: 3-1, grade: 3, name: 三年级1班, head_teacher: T1}
  - {code: 3-2, grade: 3, name: 三年级2班}
fees:
  - {code: FREE, name: 课业辅导, amount: 0, unit: term}
  - {code: ROBO, name: 材料费, amount: 12.5, unit: term, provider: GOOD, disclosed_on: 2026-08-20}
courses:
  - code: HW
    name: 课业辅导
    category: homework
    period: 1
    grades: 3
    weekdays: mon-fri
    starts_at: 15:40
    ends_at: 16:40
    venue: 教室
    teacher: T1
    fee: FREE
  - code: ROBOT
    name: 机器人
    category: science
    period: 2
    grades: [3, 4]
    weekdays: [周一, 3]
    time: 16:50-17:50
    venue: 创客空间
    teacher: K1
    provider: GOOD
    capacity: 20
    fee: ROBO
students:
  - {student_no: "0301", name: 李明, class: 3-1}
  - {student_no: "0302", name: 张华, class: 三年级2班}
"""


def write_small(tmp_path: Path, text: str = SMALL) -> Path:
    path = tmp_path / "school.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_small_school_values_are_parsed(tmp_path: Path) -> None:
    parsed = load_and_validate(write_small(tmp_path))

    homework, robot = parsed.courses
    # YAML 1.1 would read 15:40 as the number 940; the importer reads what was typed.
    assert (homework.starts_at, homework.ends_at) == (dt.time(15, 40), dt.time(16, 40))
    assert homework.weekdays == 0b0011111 and (homework.grade_min, homework.grade_max) == (3, 3)
    assert robot.weekdays == 0b0000101  # Monday and Wednesday
    assert (robot.grade_min, robot.grade_max, robot.capacity) == (3, 4, 20)
    assert {f.code: f.amount_fen for f in parsed.fees} == {"FREE": 0, "ROBO": 1250}
    # The student_no keeps its leading zero; a class may be named instead of coded.
    assert parsed.students is not None
    assert [(s.student_no, s.class_code) for s in parsed.students] == [
        ("0301", "3-1"),
        ("0302", "3-2"),
    ]
    assert parsed.term.enrolment_opens_at == dt.datetime(2026, 8, 24, 0, 0, tzinfo=dt.UTC)
    assert parsed.calendar is None  # absent: left untouched on import
    # The notice budget: no cap and an 18:30 evening digest unless the file says otherwise.
    assert (parsed.school.daily_notice_cap, parsed.school.digest_time) == (None, dt.time(18, 30))


def test_notice_budget_settings_are_read_and_checked(tmp_path: Path) -> None:
    text = SMALL.replace(
        "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}",
        "school: {code: small, name: 小河小学, daily_notice_cap: 3, digest_time: '20:30'}",
    )
    parsed = load_and_validate(write_small(tmp_path, text))
    assert (parsed.school.daily_notice_cap, parsed.school.digest_time) == (3, dt.time(20, 30))
    broken = SMALL.replace(
        "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}",
        "school: {code: small, name: 小河小学, daily_notice_cap: 0, digest_time: '25:00'}",
    )
    problems = problems_of(write_small(tmp_path, broken))
    find(problems, "school", "daily_notice_cap")
    find(problems, "school", "digest_time")


def test_fee_rules_and_free_items_are_checked(tmp_path: Path) -> None:
    parsed = load_and_validate(
        write_small(
            tmp_path,
            SMALL.replace(
                "  - {code: FREE, name: 课业辅导, amount: 0, unit: term}",
                "  - {code: FREE, name: 课业辅导, amount: 0, unit: term, covers: free}\n"
                "  - {code: SWIM, name: 游泳, amount: 300, unit: term, disclosed_on: 2026-08-20,"
                " rule: {refund: windows, windows: [{until: 2026-09-30, percent: 100}]}}",
            ),
        )
    )
    swim = next(f for f in parsed.fees if f.code == "SWIM")
    assert swim.rule == {
        "refund": "windows",
        "windows": [{"until": "2026-09-30", "percent": 100}],
    }
    broken = SMALL.replace(
        "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}",
        "school: {code: small, name: 小河小学, fee_reminder_time: '22:30',"
        " fee_rule: {refund: sometimes}}",
    ).replace(
        "  - {code: FREE, name: 课业辅导, amount: 0, unit: term}",
        "  - {code: FREE, name: 午休看护, amount: 5, unit: term, covers: free}",
    )
    problems = problems_of(write_small(tmp_path, broken))
    find(problems, "school", "fee_reminder_time")
    find(problems, "school", "fee_rule")
    assert "free" in str(find(problems, "fees[0]", "amount"))


def problems_of(path: Path) -> list[ImportProblem]:
    with pytest.raises(ImportValidationError) as caught:
        load_and_validate(path)
    return caught.value.errors


def find(problems: list[ImportProblem], location: str, field: str) -> ImportProblem:
    matches = [p for p in problems if p.location == location and p.field == field]
    assert matches, f"no problem at {location}.{field} in:\n" + "\n".join(map(str, problems))
    return matches[0]


BROKEN_COURSES = """\
courses:
  - code: HW
    name: 课业辅导
    category: homework
    period: 3
    grades: 3-10
    weekdays: [mon, fri2]
    time: 16:40-15:40
    venue: 教室
    teacher: NOBODY
    fee: FREE
  - code: HW
    name: 美术
    category: painting
    period: 2
    grades: 3
    weekdays: [tue]
    time: 16:50-17:50
    venue: 美术室
    teacher: T1
    provider: WAIT
    fee: SECRET
  - code: BOX
    name: 陶艺
    category: arts
    period: 2
    grades: 3
    weekdays: [wed]
    time: 16:50-17:50
    venue: 陶艺室
    teacher: K1
    fee: ROBO
    capactiy: 10
students:
  file: roster.csv
"""


async def test_every_problem_is_reported_with_file_line_and_field(
    tmp_path: Path, import_db: Database
) -> None:
    head = SMALL.split("courses:")[0]
    head = head.replace(
        "fees:\n", "fees:\n  - {code: ODD, name: 零头, amount: 1.005, unit: term}\n"
    ).replace(
        "{code: FREE, name: 课业辅导, amount: 0,", "{code: FREE, name: 课业辅导, amount: -1,"
    )
    head = head.replace("ends_on: 2027-01-20", "ends_on: 2027-02-30")
    text = head + BROKEN_COURSES
    path = write_small(tmp_path, text)
    (tmp_path / "roster.csv").write_text(
        "学号,姓名,班级\n0301,李明,3-1\n0302,,3-1\n0301,张华,3-1\n0304,赵云,9-9\n",
        encoding="utf-8",
    )

    problems = problems_of(path)
    rendered = "\n".join(map(str, problems))

    weekday = find(problems, "courses[0]", "weekdays")
    assert weekday.file == "school.yaml" and weekday.line == line_of(text, "weekdays: [mon, fri2]")
    assert str(weekday) == (
        f"school.yaml:{weekday.line} courses[0].weekdays: unknown weekday 'fri2'"
    )
    assert "between 1 and 2" in find(problems, "courses[0]", "period").message
    assert "1 to 9" in find(problems, "courses[0]", "grades").message
    assert "not after it starts" in find(problems, "courses[0]", "time").message
    assert "unknown teacher 'NOBODY'" in find(problems, "courses[0]", "teacher").message
    assert "duplicate course 'HW'" in find(problems, "courses[1]", "code").message
    assert "painting" in find(problems, "courses[1]", "category").message
    assert "only whitelisted" in find(problems, "courses[1]", "provider").message
    assert "unknown fee 'SECRET'" in find(problems, "courses[1]", "fee").message
    # Provider staff teaching outside their provider's course; a 代收费 for another provider.
    assert "GOOD" in find(problems, "courses[2]", "teacher").message
    assert "collected for provider" in find(problems, "courses[2]", "fee").message
    typo = find(problems, "courses[2]", "capactiy")
    assert typo.message.startswith("unknown field") and typo.line == line_of(text, "capactiy")
    assert "not a real date" in find(problems, "term", "ends_on").message
    assert "2 decimal places" in find(problems, "fees[0]", "amount").message
    assert "negative" in find(problems, "fees[1]", "amount").message

    roster = [p for p in problems if p.file == "roster.csv"]
    assert {(p.line, p.field) for p in roster} == {(3, "name"), (4, "student_no"), (5, "class")}
    assert "unknown class '9-9'" in rendered
    assert "roster.csv:4 student_no: duplicate student_no '0301' (first on line 2)" in rendered
    # YAML problems come first and in line order.
    yaml_lines = [p.line or 0 for p in problems if p.file == "school.yaml"]
    assert yaml_lines == sorted(yaml_lines)

    with pytest.raises(ImportValidationError):
        await import_school(import_db, path)
    for model in (School, Term, SchoolClass, Student, Course, Teacher, AuditLog):
        assert await count(import_db, model) == 0, model


def test_policy_checks_on_fees_and_outside_teachers(tmp_path: Path) -> None:
    text = (
        SMALL.replace("disclosed_on: 2026-08-20}", "}")  # the provider fee is not disclosed
        .replace("credentials_checked: true", "credentials_checked: false")
        .replace("{code: WAIT, name: 待审机构, whitelist_status: pending}", "{code: WAIT}")
    )
    problems = problems_of(write_small(tmp_path, text))
    assert "undisclosed" in find(problems, "courses[1]", "fee").message
    assert "credentials_checked" in find(problems, "courses[1]", "teacher").message
    assert find(problems, "providers[1]", "whitelist_status").message == "required"
    assert find(problems, "providers[1]", "name").message == "required"


def test_calendar_rules(tmp_path: Path) -> None:
    text = SMALL.replace(
        "providers:",
        textwrap.dedent("""\
        calendar:
          - {date: 2026-10-10, kind: workday}
          - {date: 2026-10-09, kind: workday, runs_weekday: fri}
          - {date: 2026-10-01, kind: holiday, runs_weekday: 4}
          - {date: 2026-10-01, kind: holiday}
          - {date: 2027-03-01, kind: no_service}
          - {date: 2026-10-11, kind: day_off}
        providers:"""),
    )
    problems = problems_of(write_small(tmp_path, text))
    assert "required for a workday" in find(problems, "calendar[0]", "runs_weekday").message
    assert "Saturday or Sunday" in find(problems, "calendar[1]", "date").message
    assert "only a workday" in find(problems, "calendar[2]", "runs_weekday").message
    assert "listed twice" in find(problems, "calendar[3]", "date").message
    assert "outside the term" in find(problems, "calendar[4]", "date").message
    assert "holiday, workday, no_service" in find(problems, "calendar[5]", "kind").message

    good = SMALL.replace(
        "providers:",
        "calendar:\n  - {date: 2026-10-10, kind: workday, runs_weekday: tue}\nproviders:",
    )
    parsed = load_and_validate(write_small(tmp_path, good))
    assert parsed.calendar is not None and parsed.calendar[0].runs_weekday == 2


def test_broken_yaml_and_empty_rosters_are_refused(tmp_path: Path) -> None:
    [problem] = problems_of(write_small(tmp_path, "school: {code: x\nterm: [\n"))
    assert problem.file == "school.yaml" and problem.line is not None
    assert "invalid YAML" in problem.message

    # An empty roster would set every student inactive, so it is an error.
    (tmp_path / "empty.csv").write_text("学号,姓名,班级\n", encoding="utf-8")
    text = SMALL.split("students:")[0] + "students: empty.csv\n"
    [problem] = problems_of(write_small(tmp_path, text))
    assert (problem.file, problem.message) == ("empty.csv", "the roster has no students")

    text = SMALL.split("students:")[0] + "students: {file: missing.xlsx}\n"
    [problem] = problems_of(write_small(tmp_path, text))
    assert problem.file == "missing.xlsx" and "not found" in problem.message


# --- roster files ------------------------------------------------------------------------------


def small_with_roster(tmp_path: Path, reference: str) -> Path:
    return write_small(tmp_path, SMALL.split("students:")[0] + f"students:\n  {reference}\n")


async def test_xlsx_roster_with_title_row_and_english_headers(
    tmp_path: Path, import_db: Database
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "名单"
    sheet.append(["小河小学 2026 秋季学生名单"])  # schools put a title above the header
    sheet.append(["Student No", "Name", "Class", "Gender"])  # extra columns are ignored
    sheet.append([20260301, "李明", "3-1", "男"])  # Excel stores the number as a number
    sheet.append([None, None, None, None])
    sheet.append(["20260302", "张华", "三年级2班", "女"])
    workbook.save(tmp_path / "roster.xlsx")
    path = small_with_roster(tmp_path, "file: roster.xlsx\n  sheet: 名单")

    report = await import_school(import_db, path)

    assert report.created("students") == 2
    async with import_db.transaction() as session:
        rows = (
            await session.execute(
                select(Student.student_no, Student.name, SchoolClass.code)
                .join(SchoolClass, Student.class_id == SchoolClass.id)
                .order_by(Student.student_no)
            )
        ).all()
    assert [tuple(r) for r in rows] == [("20260301", "李明", "3-1"), ("20260302", "张华", "3-2")]


def test_xlsx_roster_problems_name_the_spreadsheet_row(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["学号", "姓名", "班级"])
    sheet.append(["1", "李明", "3-1"])
    sheet.append(["2", "张华", "五年级9班"])
    workbook.save(tmp_path / "roster.xlsx")
    [problem] = problems_of(small_with_roster(tmp_path, "file: roster.xlsx"))
    assert str(problem) == "roster.xlsx:3 class: unknown class '五年级9班'"


async def test_csv_roster_saved_by_excel_in_gbk(tmp_path: Path, import_db: Database) -> None:
    (tmp_path / "roster.csv").write_bytes(
        "student_no,name,class\r\n0301,李明,3-1\r\n0302,张华,3-2\r\n".encode("gb18030")
    )
    report = await import_school(import_db, small_with_roster(tmp_path, "file: roster.csv"))
    assert report.created("students") == 2
    assert await count(import_db, Student, Student.name == "张华") == 1


def test_roster_without_the_required_columns(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text("学号,名称\n1,李明\n", encoding="utf-8")
    problems = problems_of(small_with_roster(tmp_path, "file: roster.csv"))
    assert {(p.file, p.line, p.field) for p in problems} == {
        ("roster.csv", 1, "name"),
        ("roster.csv", 1, "class"),
    }
    assert "姓名" in find(problems, "", "name").message


def test_minimum_size_and_lottery_allocation(tmp_path: Path) -> None:
    text = SMALL.replace(
        "    capacity: 20\n", "    capacity: 20\n    min_size: 8\n    allocation: lottery\n"
    )
    homework, robot = load_and_validate(write_small(tmp_path, text)).courses
    assert (robot.min_size, robot.allocation) == (8, Allocation.LOTTERY)
    assert (homework.min_size, homework.allocation) == (None, Allocation.FIRST_COME)
    broken = SMALL.replace(
        "    capacity: 20\n", "    capacity: 20\n    min_size: 21\n    allocation: auction\n"
    )
    problems = problems_of(write_small(tmp_path, broken))
    assert "larger than the capacity" in find(problems, "courses[1]", "min_size").message
    find(problems, "courses[1]", "allocation")


def test_rating_and_provider_review_settings_are_read_and_checked(tmp_path: Path) -> None:
    """The thresholds of the term-end ratings and of the providers' whitelist review: a score
    as typed (3.8 is stored as 38 tenths); below the policy's floor of 5 ballots and 20 % of the
    families, or a score with two decimals, is refused with the reason."""
    school_line = "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}"
    parsed = load_and_validate(write_small(tmp_path))
    defaults = parsed.school
    assert (defaults.rating_min_ballots, defaults.rating_min_share) == (5, 20)
    assert (
        defaults.provider_min_score,
        defaults.provider_min_attendance,
        defaults.provider_max_withdrawal,
    ) == (35, 85, 20)
    chosen = SMALL.replace(
        school_line,
        "school: {code: small, name: 小河小学, rating_min_ballots: 8, rating_min_share: 30, "
        "provider_min_score: 3.8, provider_min_attendance: 90, provider_max_withdrawal: 15}",
    )
    school = load_and_validate(write_small(tmp_path, chosen)).school
    assert (school.rating_min_ballots, school.rating_min_share) == (8, 30)
    assert (
        school.provider_min_score,
        school.provider_min_attendance,
        school.provider_max_withdrawal,
    ) == (38, 90, 15)
    whole = SMALL.replace(
        school_line, "school: {code: small, name: 小河小学, provider_min_score: 4}"
    )
    assert load_and_validate(write_small(tmp_path, whole)).school.provider_min_score == 40
    broken = SMALL.replace(
        school_line,
        "school: {code: small, name: 小河小学, rating_min_ballots: 3, rating_min_share: 10, "
        "provider_min_score: 3.55, provider_min_attendance: 120, provider_max_withdrawal: -1}",
    )
    problems = problems_of(write_small(tmp_path, broken))
    assert "fewer than 5 ballots" in find(problems, "school", "rating_min_ballots").message
    assert "got 3" in find(problems, "school", "rating_min_ballots").message
    assert "20% of the families" in find(problems, "school", "rating_min_share").message
    assert "one decimal place" in find(problems, "school", "provider_min_score").message
    assert "between 0 and 100" in find(problems, "school", "provider_min_attendance").message
    find(problems, "school", "provider_max_withdrawal")
    too_low = SMALL.replace(
        school_line, "school: {code: small, name: 小河小学, provider_min_score: 0.5}"
    )
    low = find(problems_of(write_small(tmp_path, too_low)), "school", "provider_min_score")
    assert "between 1 and 5" in low.message


def test_the_1_plus_n_science_reading_is_daily_unless_the_school_says_weekly(
    tmp_path: Path,
) -> None:
    school_line = "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}"
    assert load_and_validate(write_small(tmp_path)).school.science_every_day
    weekly = SMALL.replace(
        school_line, "school: {code: small, name: 小河小学, science_check: weekly}"
    )
    assert not load_and_validate(write_small(tmp_path, weekly)).school.science_every_day
    wrong = SMALL.replace(
        school_line, "school: {code: small, name: 小河小学, science_check: monthly}"
    )
    problem = find(problems_of(write_small(tmp_path, wrong)), "school", "science_check")
    assert "daily" in problem.message and "weekly" in problem.message


async def test_review_thresholds_reach_the_school_row(tmp_path: Path, import_db: Database) -> None:
    text = SMALL.replace(
        "school: {code: small, name: 小河小学, timezone: Asia/Shanghai}",
        "school: {code: small, name: 小河小学, provider_min_score: 3.2, rating_min_ballots: 6}",
    )
    await import_school(import_db, write_small(tmp_path, text))
    async with import_db.transaction() as session:
        row = await session.scalar(select(School).where(School.code == "small"))
    assert row is not None
    assert (row.provider_min_score, row.rating_min_ballots, row.provider_min_attendance) == (
        32,
        6,
        85,
    )
