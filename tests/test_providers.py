"""Provider evaluation for the bureau's whitelist review: the figures, the flags, the admins'
review, the export, and /providers through the application.

The world (`world`): 启智科技 (outside) runs 机器人 (10 places, 2 given up during the term, rated
by 6 of 10 families: shown) and 编程 (5 places, 1 given up; rated by 3 of 5 families: too few
ballots, hidden), and had 陶艺 cancelled by the school (its 4 places, all given up, never count).
A roll of 机器人 has 7 of 10 present, one of 编程 5 of 5: attendance 12 / 15 = 80 %. Withdrawals:
3 of 15 places = 20 %. 机器人's answers average 4 in every aspect: a score of exactly 4.0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import func, select, update

from bot.config import Settings
from bot.context import KehouApplication
from bot.services import attendance, members, providers, sheets
from bot.services.members import Member
from bot.services.providers import FlagKind, Saved
from storage.db import Database
from storage.models import (
    Again,
    AttendanceMark,
    AuditLog,
    Ballot,
    Enrolment,
    EnrolmentActor,
    EnrolmentEvent,
    EnrolmentStatus,
    Face,
    Provider,
    ProviderKind,
    ProviderReview,
    RatingTurnout,
    Role,
    School,
    Session,
    SessionStatus,
    Student,
    Term,
    WhitelistStatus,
)
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser, RecordingRequest
from tests.test_enrolment import make_course

UTC = dt.UTC
MONDAY = dt.date(2026, 9, 7)
IN_TERM = dt.date(2026, 10, 12)
NOW = dt.datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, during the term
ADMIN, ADMIN2, PARENT = 9101, 9102, 9103


@dataclass
class World:
    provider_id: int
    own_id: int  # a provider run by the school itself
    shown: int  # 机器人
    hidden: int  # 编程
    cancelled: int  # 陶艺
    students: list[int]


_numbers = iter(range(1, 10_000))


async def children(db: Database, school: SchoolData, count: int) -> list[int]:
    async with db.transaction() as session:
        rows = [
            Student(
                school_id=school.school_id,
                class_id=school.class_ids["3-1"],
                student_no=f"P{next(_numbers):04d}",
                name=f"孩子{n}",
            )
            for n in range(count)
        ]
        session.add_all(rows)
        await session.flush()
        return [r.id for r in rows]


async def place(
    db: Database,
    school: SchoolData,
    course: int,
    student: int,
    *,
    left: dt.date | None = None,
    was_enrolled: bool = True,
) -> None:
    """A child's place in a course, with its history; `left`: withdrawn from that day."""
    async with db.transaction() as session:
        row = Enrolment(
            school_id=school.school_id,
            student_id=student,
            course_id=course,
            status=EnrolmentStatus.WITHDRAWN if left else EnrolmentStatus.ENROLLED,
            withdrawn_from=left,
        )
        session.add(row)
        await session.flush()
        first = EnrolmentStatus.ENROLLED if was_enrolled else EnrolmentStatus.WAITLISTED
        session.add(
            EnrolmentEvent(
                school_id=school.school_id,
                enrolment_id=row.id,
                status=first,
                waitlist_position=None if was_enrolled else 1,
                actor=EnrolmentActor.PARENT,
            )
        )
        if left:
            session.add(
                EnrolmentEvent(
                    school_id=school.school_id,
                    enrolment_id=row.id,
                    status=EnrolmentStatus.WITHDRAWN,
                    actor=EnrolmentActor.PARENT,
                )
            )


async def ballots(
    db: Database,
    school: SchoolData,
    course: int,
    asked: list[int],
    answers: list[tuple[int, int, int, Again, Face]],
) -> None:
    async with db.transaction() as session:
        for student in asked:
            session.add(
                RatingTurnout(
                    term_id=school.term_id,
                    course_id=course,
                    student_id=student,
                    school_id=school.school_id,
                    done=True,
                )
            )
        for n, (content, teaching, safety, again, face) in enumerate(answers):
            session.add(
                Ballot(
                    token=f"{course}-{n}",
                    school_id=school.school_id,
                    term_id=school.term_id,
                    course_id=course,
                    content=content,
                    teaching=teaching,
                    safety=safety,
                    again=again,
                    face=face,
                )
            )


async def roll(
    db: Database, school: SchoolData, course: int, marks: list[tuple[int, str]]
) -> None:
    async with db.transaction() as session:
        await attendance.codes(session, school.school_id)
        row = Session(
            school_id=school.school_id,
            course_id=course,
            date=MONDAY,
            starts_at=dt.time(16, 40),
            ends_at=dt.time(17, 40),
            venue="教室",
            status=SessionStatus.SCHEDULED,
        )
        session.add(row)
        await session.flush()
        for student, code in marks:
            session.add(
                AttendanceMark(
                    school_id=school.school_id,
                    session_id=row.id,
                    student_id=student,
                    code=code,
                    source="roll",
                )
            )


@pytest.fixture
async def world(db: Database, school: SchoolData) -> World:
    async with db.transaction() as session:
        qizhi = Provider(
            school_id=school.school_id,
            code="QIZHI",
            name="启智科技",
            kind=ProviderKind.OUTSIDE,
            whitelist_status=WhitelistStatus.WHITELISTED,
            contract_starts_on=dt.date(2026, 9, 1),
            contract_ends_on=dt.date(2027, 8, 31),
            contact="刘经理 138-0000-0000",
        )
        own = Provider(
            school_id=school.school_id, code="SELF", name="学校自办", kind=ProviderKind.SCHOOL
        )
        session.add_all([qizhi, own])
        await session.flush()
        qizhi_id, own_id = qizhi.id, own.id
    shown = await make_course(db, school, "ROBOT", name="机器人", provider_id=qizhi_id)
    hidden = await make_course(db, school, "CODE", name="编程", provider_id=qizhi_id)
    cancelled = await make_course(
        db, school, "POT", name="陶艺", provider_id=qizhi_id, cancelled_at=NOW
    )
    await make_course(db, school, "READ", name="阅读", provider_id=own_id)
    kids = await children(db, school, 14)
    # 机器人: 10 places, 2 given up during the term; one gave it up before the term began and a
    # waitlisted child who left never had a place: neither counts.
    for kid in kids[:8]:
        await place(db, school, shown, kid)
    for kid in kids[8:10]:
        await place(db, school, shown, kid, left=IN_TERM)
    await place(db, school, shown, kids[10], left=dt.date(2026, 9, 1))
    await place(db, school, shown, kids[11], left=IN_TERM, was_enrolled=False)
    # 编程: 5 places, 1 given up.
    for kid in kids[:4]:
        await place(db, school, hidden, kid)
    await place(db, school, hidden, kids[4], left=dt.date(2026, 11, 2))
    # 陶艺, cancelled by the school: its places never count.
    for kid in kids[:4]:
        await place(db, school, cancelled, kid, left=IN_TERM)
    good = [
        (5, 4, 5, Again.YES, Face.HAPPY),
        (5, 4, 3, Again.YES, Face.HAPPY),
        (4, 4, 4, Again.YES, Face.HAPPY),
        (4, 4, 4, Again.YES, Face.SO_SO),
        (3, 4, 4, Again.UNSURE, Face.SO_SO),
        (3, 4, 4, Again.NO, Face.UNHAPPY),
    ]
    await ballots(db, school, shown, kids[:10], good)
    bad = [(1, 1, 1, Again.NO, Face.UNHAPPY)] * 3
    await ballots(db, school, hidden, kids[:5], bad)
    await roll(
        db,
        school,
        shown,
        [(k, "present") for k in kids[:7]]
        + [(kids[7], "leave"), (kids[8], "absent")]
        + [(kids[9], "absent")],
    )
    await roll(db, school, hidden, [(k, "present") for k in kids[:5]])
    async with db.transaction() as session:  # the term-end rating has run and closed
        await session.execute(
            update(Term).values(
                rating_opened_at=NOW - dt.timedelta(days=14),
                rating_closed_at=NOW - dt.timedelta(days=2),
            )
        )
    return World(qizhi_id, own_id, shown, hidden, cancelled, kids)


async def member(db: Database, telegram_id: int) -> Member:
    async with db.transaction() as session:
        found = await members.find_member(session, telegram_id)
    assert found is not None
    return found


async def evaluate(db: Database, school: SchoolData, **kw: Any) -> list[providers.Evaluation]:
    async with db.transaction() as session:
        row = await session.get(School, school.school_id)
        term = await session.get(Term, school.term_id)
        assert row is not None and term is not None
        return await providers.evaluate(session, row, term, **kw)


async def thresholds(db: Database, school: SchoolData, **values: int) -> None:
    async with db.transaction() as session:
        await session.execute(update(School).values(**values))


# --- the figures ------------


async def test_a_providers_figures_pool_only_the_shown_course(
    db: Database, school: SchoolData, world: World
) -> None:
    (found,) = await evaluate(db, school)
    assert (found.name, found.kind, found.whitelist) == (
        "启智科技",
        ProviderKind.OUTSIDE,
        WhitelistStatus.WHITELISTED,
    )
    assert [c.name for c in found.courses] == ["编程", "机器人"] and found.cancelled == 1
    # Ratings: the shown course only; the hidden one adds its ballot count, nothing else.
    assert (found.ratings.courses, found.ratings.hidden) == (1, 1)
    pooled = found.ratings.result
    assert pooled is not None and pooled.ballots == 6
    assert [providers.mean(pooled, a) for a in ("content", "teaching", "safety")] == [4, 4, 4]
    assert found.score == Fraction(4)
    assert providers.again_share(pooled) == Fraction(4, 6)
    assert pooled.faces == {Face.HAPPY: 3, Face.SO_SO: 2, Face.UNHAPPY: 1}
    code, robot = found.courses
    assert (code.result.shown, code.result.ballots, code.result.families) == (False, 3, 5)
    assert code.result.scores == {} and code.result.faces == {}
    # Attendance 12 of 15; per course 7 of 10 and 5 of 5.
    assert found.attendance is not None
    assert (found.attendance.present, found.attendance.marked) == (12, 15)
    assert found.attendance_rate == Fraction(4, 5)
    assert robot.attendance is not None and robot.attendance.present == 7
    # Withdrawals: places taken during the term and given up during it.
    assert [(c.enrolled, c.withdrew) for c in found.courses] == [(5, 1), (10, 2)]
    assert found.withdrawal == Fraction(1, 5)
    # Every threshold met (defaults 3.5, 85 % … no: 80 % is below 85 %), and no review yet.
    assert [f.kind for f in found.flags] == [FlagKind.ATTENDANCE, FlagKind.NO_REVIEW]
    # School-run providers only when asked, after the outside ones.
    both = await evaluate(db, school, include_school=True)
    assert [(e.name, e.kind) for e in both] == [
        ("启智科技", ProviderKind.OUTSIDE),
        ("学校自办", ProviderKind.SCHOOL),
    ]
    assert FlagKind.NO_REVIEW not in [f.kind for f in both[1].flags]


async def test_flags_exactly_at_a_threshold_and_just_below_it(
    db: Database, school: SchoolData, world: World
) -> None:
    # The score is exactly 4.0, attendance exactly 80 %, withdrawals exactly 20 %.
    await thresholds(
        db, school, provider_min_score=40, provider_min_attendance=80, provider_max_withdrawal=20
    )
    (at,) = await evaluate(db, school)
    assert [f.kind for f in at.flags] == [FlagKind.NO_REVIEW]
    await thresholds(
        db, school, provider_min_score=41, provider_min_attendance=81, provider_max_withdrawal=19
    )
    (below,) = await evaluate(db, school)
    assert [(f.kind, f.value, f.limit) for f in below.flags] == [
        (FlagKind.SCORE, Fraction(4), 41),
        (FlagKind.ATTENDANCE, Fraction(4, 5), 81),
        (FlagKind.WITHDRAWAL, Fraction(1, 5), 19),
        (FlagKind.NO_REVIEW, None, None),
    ]
    from bot.i18n import I18n

    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    zh, en = i18n.get("zh_CN"), i18n.get("en")
    assert [providers.flag_text(zh, f) for f in below.flags] == [
        "家长评分均值 4.00，低于学校设定的 4.1",
        "出勤率 80%，低于学校设定的 81%",
        "退出率 20%，高于学校设定的 19%",
        "学校尚未评价",
    ]
    assert providers.flag_text(en, below.flags[1]) == "Attendance 80%, below the school's 81%"
    # A rate just under a threshold never reads as the threshold itself.
    assert providers.percent_text(Fraction(8496, 10000)) == "84.9%"
    assert providers.percent_text(Fraction(2004, 10000), up=True) == "20.1%"


# --- the admins' review ------------


async def test_a_review_is_saved_compare_and_set_and_refused_to_others(
    db: Database, school: SchoolData, world: World
) -> None:
    await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, ADMIN2, {Role.ADMIN})
    await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    first, second, parent = [await member(db, n) for n in (ADMIN, ADMIN2, PARENT)]
    pid, term = world.provider_id, school.term_id

    async def save(who: Member, score: int, expected: Any = providers.ANY, **kw: Any) -> Any:
        async with db.transaction() as session:
            return await providers.review(
                session,
                who,
                pid,
                term,
                score,
                kw.get("note"),
                kw.get("now", NOW),
                expected=expected,
            )

    refused = await save(parent, 5, None)
    assert refused.outcome is Saved.REFUSED
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ProviderReview)) == 0
        assert (
            await session.scalar(select(func.count()).where(AuditLog.action == providers.REFUSED))
            == 1
        )

    done = await save(first, 4, None, note="  安全管理到位  ")
    assert done.outcome is Saved.SAVED and done.provider == "启智科技"
    assert done.review is not None and (done.review.score, done.review.note) == (4, "安全管理到位")
    seen_at = done.review.reviewed_at
    # The second admin began before the first saved (saw no review): told, nothing changed.
    stale = await save(second, 2, None, now=NOW + dt.timedelta(minutes=1))
    assert stale.outcome is Saved.STALE and stale.review is not None and stale.review.score == 4
    # Having looked, they save over it; the first admin's old screen is now stale in turn.
    later = await save(second, 3, seen_at, now=NOW + dt.timedelta(minutes=2))
    assert later.outcome is Saved.SAVED
    assert (await save(first, 5, seen_at, now=NOW + dt.timedelta(minutes=3))).outcome is (
        Saved.STALE
    )
    (found,) = await evaluate(db, school)
    assert found.review is not None and found.review.score == 3
    assert FlagKind.NO_REVIEW not in [f.kind for f in found.flags]
    async with db.transaction() as session:
        actions = (
            await session.scalars(
                select(AuditLog.details).where(AuditLog.action == "provider.reviewed")
            )
        ).all()
    assert [(d["score"], d["previous"]) for d in actions] == [(4, None), (3, 4)]
    # Not 1–5, or a school-run provider: nothing saved.
    assert (await save(first, 6)).outcome is Saved.INVALID
    async with db.transaction() as session:
        own = await providers.review(session, first, world.own_id, term, 4, None, NOW)
    assert own.outcome is Saved.INVALID


async def test_two_admins_saving_at_once_one_wins_and_the_other_is_told(
    db: Database, school: SchoolData, world: World
) -> None:
    await add_member(db, school, ADMIN, {Role.ADMIN})
    await add_member(db, school, ADMIN2, {Role.ADMIN})
    first, second = await member(db, ADMIN), await member(db, ADMIN2)

    async def save(who: Member, score: int) -> Saved:
        async with db.transaction() as session:
            done = await providers.review(
                session, who, world.provider_id, school.term_id, score, None, NOW, expected=None
            )
            return done.outcome

    outcomes = await asyncio.gather(save(first, 4), save(second, 2))
    assert sorted(outcomes) == sorted([Saved.SAVED, Saved.STALE])
    async with db.transaction() as session:
        scores = (await session.scalars(select(ProviderReview.score))).all()
    assert len(scores) == 1


async def test_a_provider_of_another_school_is_refused(
    db: Database, school: SchoolData, world: World
) -> None:
    from tests.factories import make_school

    other = await make_school(db, code="other")
    async with db.transaction() as session:
        theirs = Provider(
            school_id=other.school_id, code="X", name="别校机构", kind=ProviderKind.OUTSIDE
        )
        session.add(theirs)
        await session.flush()
        theirs_id = theirs.id
    await add_member(db, school, ADMIN, {Role.ADMIN})
    admin = await member(db, ADMIN)
    async with db.transaction() as session:
        done = await providers.review(session, admin, theirs_id, school.term_id, 4, None, NOW)
        board = await providers.board(session, admin, NOW.date(), provider_id=theirs_id)
    assert done.outcome is Saved.REFUSED and board is None


# --- the export ------------


def cells(book: Any) -> list[list[Any]]:
    return [list(row) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)]


async def test_the_export_is_the_bureaus_evidence_and_keeps_hidden_answers_out(
    db: Database, school: SchoolData, world: World
) -> None:
    from bot.i18n import I18n

    zh = I18n(ZoneInfo("Asia/Shanghai")).get("zh_CN")
    await add_member(db, school, ADMIN, {Role.ADMIN})
    async with db.transaction() as session:
        await providers.review(
            session,
            await member(db, ADMIN),
            world.provider_id,
            school.term_id,
            4,
            "守时",
            NOW,
        )
    async with db.transaction() as session:
        row = await session.get(School, school.school_id)
        term = await session.get(Term, school.term_id)
        assert row is not None and term is not None
        one = await providers.export(session, row, term, zh, world.provider_id)
        every = await providers.export(session, row, term, zh, None, include_school=True)
    assert [s.title for s in every] == ["全部机构", "启智科技", "学校自办"]
    book = openpyxl.load_workbook(io.BytesIO(sheets.write_xlsx(one)))
    (sheet,) = book.worksheets
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][:2] == ["学校", "河清实验学校"]
    by_label = {r[0]: r[1:] for r in rows if r and r[0]}
    assert by_label["学期"][:3] == [
        "2026秋季学期",
        dt.datetime(2026, 9, 1),
        dt.datetime(2027, 1, 20),
    ]
    assert by_label["机构"][:2] == ["启智科技", "QIZHI"]
    assert by_label["白名单状态"][0] == "在白名单内"
    assert by_label["合同期"][:2] == [dt.datetime(2026, 9, 1), dt.datetime(2027, 8, 31)]
    assert by_label["家长评分均值"][0] == 4
    assert by_label["出勤率（%）"][0] == 80
    assert by_label["退出率（%）"][:3] == [20, "退出 / 名额", "3 / 15"]
    assert by_label["评价人数不足的课程（不计入）"][0] == 1
    assert by_label["学校评价"][:3] == [4, "守时", "user 9101"]
    assert by_label["未达标项"][0] == "出勤率 80%，低于学校设定的 85%"
    header = next(r for r in rows if r and r[0] == "课程代码")
    assert header[:11] == [
        "课程代码",
        "课程",
        "时段",
        "任课老师",
        "报名名额",
        "退出",
        "退出率（%）",
        "出勤率（%）",
        "应评家庭",
        "有效评价",
        "结果公布",
    ]
    robot = next(r for r in rows if r and r[0] == "ROBOT")
    assert robot[4:11] == [10, 2, 20, 70, 10, 6, "是"]
    assert robot[11:15] == [4, 4, 4, 4]
    code = next(r for r in rows if r and r[0] == "CODE")
    # The hidden course: its counts and turnout, nothing of what was answered.
    assert code[8:11] == [5, 3, "否：评价人数不足"]
    assert all(value is None for value in code[11:])
    # Its answers (all 1s, three 🙁) are nowhere in the workbook, nor in the CSV.
    everything = cells(openpyxl.load_workbook(io.BytesIO(sheets.write_xlsx(every))))
    values = [v for r in everything for v in r if v is not None]
    hidden_rows = [r for r in everything if r and r[0] == "CODE"]
    assert hidden_rows and all(v is None for r in hidden_rows for v in r[11:])
    overview = next(r for r in everything if r and r[0] == "启智科技")
    assert overview[7] == 4  # the mean of the shown course, not pulled down by the hidden 1s
    assert "🙁 4" not in values and "🙁 1" in values  # the pooled faces: the shown course's
    csv_text = sheets.write_csv(one[0].header, one[0].rows).decode("utf-8-sig")
    assert "CODE,编程" in csv_text
    code_line = next(line for line in csv_text.splitlines() if line.startswith("CODE,"))
    assert code_line == "CODE,编程,第二时段,,5,1,20.0,100.0,5,3,否：评价人数不足" + "," * 8


# --- /providers in the chat ------------


@pytest.fixture
async def bot_app(
    settings: Settings, db: Database, request_recorder: RecordingRequest
) -> AsyncIterator[KehouApplication]:
    """The real application with /providers registered first in the feature group (until the
    composition root registers it; then as registered there)."""
    from bot.app import build_application
    from handlers.admin import providers as admin_providers

    application = build_application(settings, request=request_recorder, db=db)
    features = application.handlers[0]
    if not any(getattr(h, "name", None) == "providers" for h in features):
        for handler in admin_providers.handlers():
            application.add_handler(handler, group=0)
            features.remove(handler)
            features.insert(0, handler)
    errors: list[BaseException] = []

    async def collect(update: object, context: object) -> None:
        errors.append(context.error)  # type: ignore[attr-defined]

    application.add_error_handler(collect)
    await application.initialize()
    yield application
    await application.shutdown()
    if errors:
        raise errors[0]


async def test_an_admin_reviews_and_exports_a_provider_in_the_chat(
    db: Database,
    school: SchoolData,
    world: World,
    bot_app: KehouApplication,
    request_recorder: RecordingRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("handlers.admin.providers.utcnow", lambda: NOW)
    await add_member(db, school, ADMIN, {Role.ADMIN}, locale="zh_CN")
    await add_member(db, school, PARENT, {Role.PARENT}, children=("李小明",))
    admin = FakeUser(bot_app, request_recorder, ADMIN)
    listing = admin.texts(await admin.send("/providers"))
    assert "校外机构 · 2026秋季学期" in listing and "1 家机构本学期开课" in listing
    assert "⚠️ 启智科技" in admin.all_buttons()
    card = admin.texts(await admin.click("⚠️ 启智科技"))
    assert "启智科技</b>（校外机构）" in card
    assert "综合 4.00" in card and "愿意再报 66.6%" in card and "😊 3 😐 2 🙁 1" in card
    assert "1 门课程评价人数不足，未公布，不计入" in card
    assert "出勤率 80%（15 人次）" in card and "退出率 20%（15 个名额中退出 3 个）" in card
    assert "出勤率 80%，低于学校设定的 85%" in card and "学校尚未评价" in card
    assert {"评价", "导出 CSV", "导出 XLSX", "‹ 返回", "取消"} <= set(admin.all_buttons())

    await admin.click("评价")
    assert {"1", "2", "3", "4", "5"} <= set(admin.all_buttons())
    note = admin.texts(await admin.click("4"))
    assert "启智科技：4 分" in note and "跳过" in admin.all_buttons()
    confirm = admin.texts(await admin.send("课前准备充分，安全管理到位"))
    assert "启智科技" in confirm and "4 分" in confirm and "课前准备充分" in confirm
    saved = admin.texts(await admin.click("✅ 保存"))
    assert "已保存" in saved and "启智科技" in saved and "4 分" in saved
    async with db.transaction() as session:
        row = await session.scalar(select(ProviderReview))
    assert row is not None and (row.score, row.note) == (4, "课前准备充分，安全管理到位")
    card = admin.texts(await admin.click("查看机构"))
    assert "学校评价：4 分" in card and "学校尚未评价" not in card

    replies = await admin.click("导出 XLSX")
    (document,) = [c for c in replies if c.method == "sendDocument"]
    name, content, _ = document.files["document"]
    assert name.endswith(".xlsx") and "启智科技" in name
    book = openpyxl.load_workbook(io.BytesIO(content))
    assert book.worksheets[0]["B1"].value == "河清实验学校"
    replies = await admin.click("导出 CSV")
    (document,) = [c for c in replies if c.method == "sendDocument"]
    assert "启智科技" in document.files["document"][1].decode("utf-8-sig")

    # A parent: a polite refusal, and a forged press changes nothing and is audited.
    parent = FakeUser(bot_app, request_recorder, PARENT)
    assert "仅供学校管理员" in parent.texts(await parent.send("/providers"))
    answer = await parent.press(f"pv:e:{world.provider_id}:x")
    assert not [c for c in answer if c.method == "sendDocument"]
    await parent.press("pv:y:deadbeef")
    async with db.transaction() as session:
        refused = await session.scalar(
            select(func.count()).where(AuditLog.action == providers.REFUSED)
        )
        assert await session.scalar(select(func.count()).select_from(ProviderReview)) == 1
    assert refused == 3


async def test_a_stale_review_screen_is_told_and_forged_presses_are_refused(
    db: Database,
    school: SchoolData,
    world: World,
    bot_app: KehouApplication,
    request_recorder: RecordingRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("handlers.admin.providers.utcnow", lambda: NOW)
    await add_member(db, school, ADMIN, {Role.ADMIN}, locale="zh_CN")
    await add_member(db, school, ADMIN2, {Role.ADMIN})
    admin = FakeUser(bot_app, request_recorder, ADMIN)
    await admin.send("/providers")
    await admin.click("⚠️ 启智科技")
    await admin.click("评价")
    await admin.click("2")
    await admin.click("跳过")
    # Meanwhile another admin saves a review.
    other = await member(db, ADMIN2)
    async with db.transaction() as session:
        await providers.review(
            session, other, world.provider_id, school.term_id, 5, None, NOW, expected=None
        )
    told = admin.texts(await admin.click("✅ 保存"))
    assert "未保存" in told and "5 分" in told
    assert "重新评价" in admin.all_buttons()
    async with db.transaction() as session:
        assert (await session.scalar(select(ProviderReview.score))) == 5
    # Forged data: another draft's id, a score of 9, an id too large: nothing happens.
    before = len(request_recorder.of("sendDocument"))
    for data in ("pv:s:nope:4", "pv:c:99999999999:0", "pv:e:1:z", "pv:l:q:0", "pv:zz"):
        await admin.press(data)
    assert len(request_recorder.of("sendDocument")) == before
    async with db.transaction() as session:
        assert (await session.scalar(select(ProviderReview.score))) == 5
    # ‹ 返回 and 取消 on the card.
    await admin.send("/providers")
    await admin.click("⚠️ 启智科技")
    back = admin.texts(await admin.click("‹ 返回"))
    assert "校外机构 · 2026秋季学期" in back
    closed = admin.texts(await admin.click("取消"))
    assert "/providers" in closed
