"""Term-end ratings (双评价): the window, the ballots, anonymity and what may be shown."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, inspect, select, update

from bot import jobs
from bot.context import KehouApplication
from bot.services import members, ratings
from bot.services.ratings import Refusal, Thresholds, Window
from storage.db import Database
from storage.models import (
    Again,
    AuditLog,
    Ballot,
    CommentStatus,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    JobRun,
    Outbox,
    RatingTurnout,
    Role,
    School,
    Student,
    Term,
    User,
    utcnow,
)
from tests.factories import SchoolData, add_member
from tests.harness import FakeUser
from tests.test_enrolment import make_course, pupils

ZONE = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2027, 1, 11, 10, 0, tzinfo=dt.UTC)  # 18:00 in Shanghai on Jan 11
TODAY = dt.date(2027, 1, 11)


async def enrol(db: Database, course_id: int, student_ids: list[int], **fields: object) -> None:
    async with db.transaction() as session:
        await session.execute(
            insert(Enrolment),
            [
                {
                    "school_id": (await session.get(Student, s)).school_id,  # type: ignore[union-attr]
                    "student_id": s,
                    "course_id": course_id,
                    "status": EnrolmentStatus.ENROLLED,
                }
                | fields
                for s in student_ids
            ],
        )


async def guardians(db: Database, school: SchoolData, student_ids: list[int]) -> list[int]:
    """One guardian (a parent with a chat) for each child; their Telegram ids."""
    telegram_ids = []
    async with db.transaction() as session:
        for number, student_id in enumerate(student_ids):
            telegram_id = 900_000 + student_id
            user = User(
                school_id=school.school_id,
                telegram_id=telegram_id,
                chat_id=telegram_id,
                display_name=f"家长{number}",
            )
            session.add(user)
            await session.flush()
            session.add(
                Guardianship(
                    school_id=school.school_id,
                    user_id=user.id,
                    student_id=student_id,
                    consent_version="test",
                    consented_at=utcnow(),
                )
            )
            from storage.models import UserRole

            session.add(UserRole(school_id=school.school_id, user_id=user.id, role=Role.PARENT))
            telegram_ids.append(telegram_id)
    return telegram_ids


async def open_term(db: Database, school: SchoolData, closes_on: dt.date = TODAY) -> None:
    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        term.rating_opens_on = dt.date(2027, 1, 4)
        term.rating_closes_on = closes_on
        await session.flush()
        assert await ratings.open_window(session, row, term, NOW - dt.timedelta(days=7))


async def close_term(db: Database, school: SchoolData) -> int | None:
    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        return await ratings.close_window(session, row, term, NOW)


async def rate(
    db: Database,
    telegram_id: int,
    student_id: int,
    course_id: int,
    answers: dict[str, str],
) -> ratings.BallotView | Refusal:
    result: ratings.BallotView | Refusal = Refusal.BAD_ANSWER
    for question, raw in answers.items():
        async with db.transaction() as session:
            member = await members.find_member(session, telegram_id)
            result = await ratings.answer(session, member, student_id, course_id, question, raw)
    return result


FULL = {"content": "5", "teaching": "4", "safety": "5", "again": "yes"}


async def results(db: Database, school: SchoolData) -> dict[int, ratings.Result]:
    async with db.transaction() as session:
        row = await session.get(School, school.school_id)
        assert row is not None
        return await ratings.course_results(session, row, school.term_id)


async def test_opening_asks_each_child_of_each_course_once_and_invites_each_guardian(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 4)
    pottery = await make_course(db, school, "P", name="陶艺", capacity=None)
    cancelled = await make_course(db, school, "C", name="篮球", capacity=None, cancelled_at=NOW)
    await enrol(db, pottery, kids[:3])
    # Left before the term began: never took the course, so is not asked.
    await enrol(
        db, pottery, kids[3:], status=EnrolmentStatus.WITHDRAWN, withdrawn_from=dt.date(2026, 9, 1)
    )
    await enrol(db, cancelled, kids[:1])
    await guardians(db, school, kids)
    await open_term(db, school)

    async with db.transaction() as session:
        asked = (await session.execute(select(RatingTurnout.student_id))).scalars().all()
        invites = (
            await session.execute(
                select(Outbox.chat_id, Outbox.params).where(Outbox.kind == "rating")
            )
        ).all()
        ballots = await session.scalar(select(func.count()).select_from(Ballot))
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        again = await ratings.open_window(session, row, term, NOW)
    assert sorted(asked) == sorted(kids[:3])
    assert ballots == 3
    assert sorted(chat for chat, _ in invites) == sorted(900_000 + k for k in kids[:3])
    assert all(
        "陶艺" in params["courses"] and "篮球" not in params["courses"] for _, params in invites
    )
    assert again is None  # opened once: a second open changes nothing


async def test_a_ballot_is_completed_changed_and_counted_once(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 1)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    (parent,) = await guardians(db, school, kids)
    second = await add_member(db, school, 5555, {Role.PARENT})
    async with db.transaction() as session:
        session.add(
            Guardianship(
                school_id=school.school_id,
                user_id=second,
                student_id=kids[0],
                consent_version="t",
                consented_at=utcnow(),
            )
        )
    await open_term(db, school)

    partial = await rate(db, parent, kids[0], course, {"content": "4", "teaching": "3"})
    assert isinstance(partial, ratings.BallotView)
    assert not partial.complete and partial.after("teaching") == "safety"
    done = await rate(db, parent, kids[0], course, {"safety": "5", "again": "unsure"})
    assert isinstance(done, ratings.BallotView) and done.complete and done.item.done
    # The other guardian changes an answer: the same ballot, not a second one.
    changed = await rate(db, 5555, kids[0], course, {"content": "2"})
    assert isinstance(changed, ratings.BallotView) and changed.answers["content"] == 2

    async with db.transaction() as session:
        rows = (await session.execute(select(Ballot.content, Ballot.again))).all()
        turnout = await session.scalar(select(RatingTurnout.done))
        told = (
            (
                await session.execute(
                    select(Outbox.chat_id).where(Outbox.template == ratings.DONE_TO_FAMILY)
                )
            )
            .scalars()
            .all()
        )
    assert rows == [(2, Again.UNSURE)]
    assert turnout is True
    assert told == [5555]  # told once that the ballot is in, never what it says


async def test_bad_answers_and_other_families_change_nothing(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 2)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    other = await make_course(db, school, "Q", name="剪纸", capacity=None)
    await enrol(db, course, kids)
    first, _ = await guardians(db, school, kids)
    await open_term(db, school)

    assert await rate(db, first, kids[1], course, {"content": "5"}) is Refusal.NOT_PARENT
    assert await rate(db, first, kids[0], other, {"content": "5"}) is Refusal.NOT_ASKED
    assert await rate(db, first, kids[0], course, {"content": "6"}) is Refusal.BAD_ANSWER
    assert await rate(db, first, kids[0], course, {"again": "maybe"}) is Refusal.BAD_ANSWER
    assert await rate(db, first, kids[0], course, {"comment": "字" * 501}) is Refusal.BAD_ANSWER
    async with db.transaction() as session:
        answered = await session.scalar(
            select(func.count()).select_from(Ballot).where(Ballot.content.is_not(None))
        )
        refusals = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == ratings.REFUSED)
        )
    assert answered == 0
    assert refusals == 2  # another family's child, a course the child did not take


@pytest.mark.parametrize(
    ("families", "complete", "shown"),
    [
        (10, 4, False),  # fewer than 5 ballots
        (10, 5, True),  # 5 ballots, 50 %
        (30, 5, False),  # 5 ballots but 16.7 % of the families
        (30, 6, True),  # 6 ballots, exactly 20 %
    ],
)
async def test_results_need_five_ballots_and_a_fifth_of_the_families(
    db: Database, school: SchoolData, families: int, complete: int, shown: bool
) -> None:
    kids = await pupils(db, school, families)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    await open_term(db, school)
    for parent, kid in list(zip(parents, kids, strict=True))[:complete]:
        await rate(db, parent, kid, course, FULL)
    # An unfinished ballot never counts.
    await rate(db, parents[-1], kids[-1], course, {"content": "1"})

    assert not (await results(db, school))[course].shown  # nothing while the window is open
    assert await close_term(db, school) == complete
    result = (await results(db, school))[course]
    assert (result.families, result.ballots, result.shown) == (families, complete, shown)
    if shown:
        assert result.scores["content"] == (0, 0, 0, 0, complete)
        assert result.mean("teaching") == 4.0
        assert result.again[Again.YES] == complete
    else:
        assert result.scores == {} and result.mean("content") is None


async def test_a_school_may_ask_for_more_but_never_less() -> None:
    school = School(code="x", name="x", rating_min_ballots=3, rating_min_share=10)
    assert Thresholds.of(school) == Thresholds(5, 20)
    school.rating_min_ballots, school.rating_min_share = 8, 25
    assert not Thresholds.of(school).met(7, 10)
    assert Thresholds.of(school).met(8, 32) and not Thresholds.of(school).met(8, 33)


async def test_no_ballot_can_be_joined_back_to_its_family(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 6)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    await open_term(db, school)
    async with db.transaction() as session:
        key = await session.scalar(select(Term.rating_key))
    assert key is not None
    for parent, kid in zip(parents[:5], kids[:5], strict=True):
        await rate(db, parent, kid, course, FULL | {"comment": f"第{kid}号的话"})
    await close_term(db, school)

    async with db.transaction() as session:
        columns = await session.run_sync(
            lambda s: {c["name"] for c in inspect(s.connection()).get_columns("ballots")}
        )
        turnout_columns = await session.run_sync(
            lambda s: {c["name"] for c in inspect(s.connection()).get_columns("rating_turnout")}
        )
        tokens = set((await session.scalars(select(Ballot.token))).all())
        left_key = await session.scalar(select(Term.rating_key))
    # The ballot holds answers and the course, nothing of who or when.
    assert columns == {
        "token",
        "school_id",
        "term_id",
        "course_id",
        "content",
        "teaching",
        "safety",
        "again",
        "face",
        "comment",
        "comment_status",
    }
    # Who rated holds no answer and no time either.
    assert turnout_columns == {"term_id", "course_id", "student_id", "school_id", "done"}
    # The key is gone, and even with it no ballot is found from a child any more.
    assert left_key is None
    assert len(tokens) == 5  # the untouched ballot is gone
    assert not tokens & {ratings.token(key, kid, course) for kid in kids}
    # A closed window cannot be answered into.
    assert await rate(db, parents[5], kids[5], course, FULL) is Refusal.NOT_OPEN


async def test_reminders_go_only_to_families_with_courses_left(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 2)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    done, waiting = await guardians(db, school, kids)
    await open_term(db, school, closes_on=dt.date(2027, 1, 13))
    await rate(db, done, kids[0], course, FULL)
    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        counts = [
            await ratings.remind(session, row, term, day)
            for day in (dt.date(2027, 1, 10), dt.date(2027, 1, 11), dt.date(2027, 1, 13))
        ]
        reminded = (
            (
                await session.execute(
                    select(Outbox.chat_id).where(
                        Outbox.template.in_([ratings.REMIND_SOON, ratings.REMIND_TODAY])
                    )
                )
            )
            .scalars()
            .all()
        )
    assert counts == [0, 1, 1]  # two days before, and on the last day
    assert reminded == [waiting, waiting]


async def test_comments_are_read_only_after_review_and_only_where_results_show(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 5)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    admin = await add_member(db, school, 7777, {Role.ADMIN})
    assert admin
    await open_term(db, school)
    for parent, kid in zip(parents, kids, strict=True):
        await rate(db, parent, kid, course, FULL)
    await rate(db, parents[0], kids[0], course, {"comment": "老师很耐心"})
    await rate(db, parents[1], kids[1], course, {"comment": "点名太慢 王某某家长"})

    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        assert term is not None
        assert await ratings.next_comment(session, term) is None  # not while open
    await close_term(db, school)

    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        admin_member = await members.find_member(session, 7777)
        parent_member = await members.find_member(session, parents[0])
        assert term is not None and row is not None
        assert await ratings.released_comments(session, row, term.id, [course]) == {}
        first = await ratings.next_comment(session, term)
        assert first is not None and first.left == 2
        second = await ratings.next_comment(session, term, after=first.token)
        assert second is not None and second.token != first.token
        assert await ratings.review(session, parent_member, term, first.token, True) is (
            Refusal.NOT_PARENT
        )
        kind = {first.text: first, second.text: second}
        assert await ratings.review(session, admin_member, term, kind["老师很耐心"].token, True)
        assert await ratings.review(
            session, admin_member, term, kind["点名太慢 王某某家长"].token, False
        )
        # The second admin to press changes nothing and is told so.
        assert (
            await ratings.review(session, admin_member, term, kind["老师很耐心"].token, False)
            is False
        )
        shown = await ratings.released_comments(session, row, term.id, [course])
        statuses = sorted((await session.scalars(select(Ballot.comment_status))).all(), key=str)
    assert shown == {course: ["老师很耐心"]}
    assert statuses.count(CommentStatus.RELEASED) == 1
    assert statuses.count(CommentStatus.HIDDEN) == 1


async def test_a_small_course_keeps_its_comments_too(db: Database, school: SchoolData) -> None:
    kids = await pupils(db, school, 4)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    await open_term(db, school)
    for parent, kid in zip(parents, kids, strict=True):
        await rate(db, parent, kid, course, FULL | {"comment": "好"})
    await close_term(db, school)
    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        await session.execute(update(Ballot).values(comment_status=CommentStatus.RELEASED))
        assert await ratings.released_comments(session, row, term.id, [course]) == {}


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE).astimezone(dt.UTC)


async def test_the_window_opens_and_closes_through_the_ledger_across_a_restart(
    app: KehouApplication, db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 2)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    await guardians(db, school, kids)
    async with db.transaction() as session:
        await session.execute(
            update(Term).values(
                rating_opens_on=dt.date(2027, 1, 11), rating_closes_on=dt.date(2027, 1, 15)
            )
        )

    await jobs.Scheduler(app.runtime).tick(at(dt.date(2027, 1, 11), 17, 59))
    async with db.transaction() as session:
        assert (await session.get(Term, school.term_id)).rating_opened_at is None  # type: ignore[union-attr]
    first = jobs.Scheduler(app.runtime)
    await first.tick(at(dt.date(2027, 1, 11), 18, 0))
    await first.tick(at(dt.date(2027, 1, 11), 18, 1))
    # Kehou is down from the 12th to the 16th: the restarted process closes the window once,
    # and the reminders of days that are over are not sent late.
    restarted = jobs.Scheduler(app.runtime)
    ran = await restarted.tick(at(dt.date(2027, 1, 16), 9, 0))
    again = await jobs.Scheduler(app.runtime).tick(at(dt.date(2027, 1, 16), 9, 1))

    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        assert term is not None
        runs = dict(
            (
                await session.execute(
                    select(JobRun.job, JobRun.outcome).where(JobRun.job.like("ratings:%"))
                )
            ).all()
        )
        invites = await session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.template == ratings.INVITE)
        )
        reminders = await session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.template == ratings.REMIND_SOON)
        )
    assert ratings.window_of(term) is Window.CLOSED and term.rating_key is None
    assert invites == 2
    assert f"ratings:close:{term.id}" in ran and not [j for j in again if j.startswith("ratings")]
    assert runs[f"ratings:open:{term.id}"].startswith("opened: 2 ballots")
    assert runs[f"ratings:close:{term.id}"] == "closed: 0 complete ballots"
    assert reminders == 0
    assert f"ratings:remind:{term.id}:2027-01-13" not in runs or runs[
        f"ratings:remind:{term.id}:2027-01-13"
    ].startswith("stale")


# --- in the chat ------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_a_parent_rates_a_course_with_the_child_step_by_step(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData, language: str
) -> None:
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, [school.student_ids["张伟"]])
    await add_member(db, school, 801, {Role.PARENT}, children=("张伟",))
    await open_term(db, school)
    parent = make_user(801, language_code=language)
    zh = language == "zh-hans"

    listing = FakeUser.texts(await parent.send("/rate"))
    assert ("学期末评价" if zh else "Term-end rating") in listing
    assert ("已评价 0/1" if zh else "0 of 1 course rated") in listing
    question = FakeUser.texts(await parent.click("陶艺"))
    assert "张伟 · 陶艺" in question and "(1/6)" in question
    assert ("课程内容" if zh else "Content") in question
    await parent.click("5")
    await parent.click("4")
    asked = FakeUser.texts(await parent.click("5"))
    assert ("还会给张伟报名陶艺吗" if zh else "sign 张伟 up for 陶艺 again") in asked
    face = FakeUser.texts(await parent.click("会" if zh else "Yes, I would"))
    assert ("请问问张伟" if zh else "Now ask 张伟") in face
    comment = FakeUser.texts(await parent.click("😊"))
    assert ("留言" if zh else "comment") in comment
    await parent.click("✍️ 写留言" if zh else "✍️ Write a comment")
    summary = FakeUser.texts(await parent.send("老师很耐心，孩子每周都盼着上课"))
    assert ("✅ 已保存" if zh else "✅ Saved") in summary
    assert "★★★★☆ 4" in summary and "😊" in summary and "老师很耐心" in summary

    async with db.transaction() as session:
        row = (
            await session.execute(
                select(
                    Ballot.content,
                    Ballot.teaching,
                    Ballot.safety,
                    Ballot.again,
                    Ballot.face,
                    Ballot.comment_status,
                ).where(Ballot.content.is_not(None))
            )
        ).one()
        done = await session.scalar(select(RatingTurnout.done))
    assert tuple(row) == (5, 4, 5, Again.YES, "happy", CommentStatus.PENDING)
    assert done is True
    again = FakeUser.texts(await parent.send("/rate"))
    assert ("已评价 1/1" if zh else "1 of 1 course rated") in again
    # A change from the summary comes back to the summary.
    await parent.click("✅ 陶艺")
    await parent.click("教学" if zh else "Teaching")
    back = FakeUser.texts(await parent.click("2"))
    assert "★★☆☆☆ 2" in back


async def test_forged_presses_are_refused_and_change_nothing(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, [school.student_ids["张伟"], school.student_ids["李小明"]])
    await add_member(db, school, 802, {Role.PARENT}, children=("张伟",))
    await open_term(db, school)
    parent = make_user(802)
    other = school.student_ids["李小明"]
    for data in (
        f"rt:a:{other}:{course}:content:5",  # another family's child
        f"rt:a:{school.student_ids['张伟']}:{course}:content:9",  # not a score
        f"rt:a:{school.student_ids['张伟']}:{course}:owner:5",  # not a question
        f"rt:b:{other}:{course}",
        "rt:a:x:y",
    ):
        calls = await parent.press(data)
        alerts = [c for c in calls if c.method == "answerCallbackQuery"]
        assert alerts and alerts[0].params.get("show_alert"), data
    async with db.transaction() as session:
        answered = await session.scalar(
            select(func.count()).select_from(Ballot).where(Ballot.content.is_not(None))
        )
    assert answered == 0
    # A teacher or an admin is told where ratings are for them.
    await add_member(db, school, 803, {Role.TEACHER})
    teacher = make_user(803)
    assert "/ratings" in FakeUser.texts(await teacher.send("/rate"))


async def test_an_admin_opens_closes_and_reviews_through_the_chat(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 5)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    await add_member(db, school, 804, {Role.ADMIN})
    admin = make_user(804)

    status = FakeUser.texts(await admin.send("/ratings"))
    assert "学期末评价 · 2026秋季学期" in status and "未设置评价日期" in status
    ask = FakeUser.texts(await admin.click("立即开放"))
    assert "立即收到邀请" in ask
    done = FakeUser.texts(await admin.click("开放"))
    assert "共 5 份待评价，已邀请 5 位监护人" in done
    async with db.transaction() as session:
        invited = await session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.template == ratings.INVITE)
        )
    assert invited == 5
    # Pressing the stale confirm again opens nothing twice.
    again = FakeUser.texts(await admin.press(f"rr:oy:{school.term_id}"))
    assert "已经开放过" in again

    for parent, kid in zip(parents, kids, strict=True):
        await rate(db, parent, kid, course, FULL)
    await rate(db, parents[0], kids[0], course, {"comment": "希望多一些作品展示"})
    turnout = FakeUser.texts(await admin.send("/ratings"))
    assert "已评价：5/5 份（100%）" in turnout and "陶艺 5/5" in turnout
    await admin.click("立即截止")
    closed = FakeUser.texts(await admin.click("截止"))
    assert "共 5 份完整评价" in closed

    await admin.send("/ratings")
    results = FakeUser.texts(await admin.click("结果"))
    assert "陶艺" in results and "4.7" in results and "5 份" in results
    detail = FakeUser.texts(await admin.click("陶艺"))
    assert "还会报名：会 5" in detail and "希望多一些作品展示" not in detail
    await admin.send("/ratings")
    review = FakeUser.texts(await admin.click("留言（1）"))
    assert "希望多一些作品展示" in review and "待审阅留言 1 条" in review
    assert "没有待审阅的留言" in FakeUser.texts(await admin.click("公开"))
    await admin.send("/ratings")
    await admin.click("结果")
    assert "希望多一些作品展示" in FakeUser.texts(await admin.click("陶艺"))


async def test_a_teacher_sees_only_their_own_courses(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 5)
    mine = await make_course(
        db, school, "P", name="陶艺", capacity=None, teacher_id=school.teacher_id
    )
    theirs = await make_course(db, school, "Q", name="剪纸", capacity=None)
    await enrol(db, mine, kids)
    await enrol(db, theirs, kids)
    parents = await guardians(db, school, kids)
    user_id = await add_member(db, school, 805, {Role.TEACHER})
    async with db.transaction() as session:
        from storage.models import Teacher

        await session.execute(
            update(Teacher).where(Teacher.id == school.teacher_id).values(user_id=user_id)
        )
    await open_term(db, school)
    teacher = make_user(805)
    assert "尚未截止" in FakeUser.texts(await teacher.send("/ratings"))
    for parent, kid in zip(parents, kids, strict=True):
        await rate(db, parent, kid, mine, FULL)
        await rate(db, parent, kid, theirs, FULL | {"content": "1"})
    await close_term(db, school)

    own = FakeUser.texts(await teacher.send("/ratings"))
    assert "陶艺" in own and "剪纸" not in own
    calls = await teacher.press(f"rr:d:{theirs}")
    assert "剪纸" not in FakeUser.texts(calls)
    assert "审阅" not in FakeUser.texts(await teacher.press("rr:m"))
    chart = await teacher.click("陶艺")
    assert "内容 4.7" not in FakeUser.texts(chart)  # content is 5.0 on the teacher's own course
    assert "课程内容 5.0" in FakeUser.texts(chart) or "内容 5.0" in FakeUser.texts(chart)


async def test_mydata_says_what_was_rated_but_holds_no_answer(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, [school.student_ids["张伟"]])
    await add_member(db, school, 806, {Role.PARENT}, children=("张伟",))
    await open_term(db, school)
    await rate(db, 806, school.student_ids["张伟"], course, FULL | {"comment": "独一无二的留言"})
    parent = make_user(806)
    calls = await parent.send("/mydata")
    assert "学期末评价：已评价 1/1 门课程" in FakeUser.texts(calls)
    (document,) = [c for c in calls if c.method == "sendDocument"]
    _, content, _ = document.files["document"]
    record = json.loads(content)
    (child,) = record["children"]
    assert child["rated"] == [{"term_id": school.term_id, "course_id": course, "done": True}]
    assert "独一无二的留言" not in content.decode()


async def test_last_terms_results_stay_one_press_away_in_the_next_term(  # type: ignore[no-untyped-def]
    make_user, db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 5)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    parents = await guardians(db, school, kids)
    await open_term(db, school)
    for parent, kid in zip(parents, kids, strict=True):
        await rate(db, parent, kid, course, FULL)
    await close_term(db, school)
    today = dt.date.today()
    async with db.transaction() as session:
        session.add(
            Term(
                school_id=school.school_id,
                name="2027春季学期",
                starts_on=today - dt.timedelta(days=3),
                ends_on=today + dt.timedelta(days=90),
                rating_opens_on=today + dt.timedelta(days=80),
                rating_closes_on=today + dt.timedelta(days=86),
            )
        )
    await add_member(db, school, 807, {Role.ADMIN})
    admin = make_user(807)
    status = FakeUser.texts(await admin.send("/ratings"))
    assert "2027春季学期" in status and "18:00 开放" in status
    results = FakeUser.texts(await admin.click("2026秋季学期结果"))
    assert "评价结果 · 2026秋季学期" in results and "陶艺" in results and "4.7" in results


async def test_opened_late_at_night_the_invitations_wait_for_the_morning(
    db: Database, school: SchoolData
) -> None:
    kids = await pupils(db, school, 1)
    course = await make_course(db, school, "P", name="陶艺", capacity=None)
    await enrol(db, course, kids)
    await guardians(db, school, kids)
    late = at(dt.date(2027, 1, 11), 23, 10)
    async with db.transaction() as session:
        term = await session.get(Term, school.term_id)
        row = await session.get(School, school.school_id)
        assert term is not None and row is not None
        assert await ratings.open_window(session, row, term, late, actor_user_id=None)
        not_before = await session.scalar(
            select(Outbox.not_before).where(Outbox.template == ratings.INVITE)
        )
    assert not_before == at(dt.date(2027, 1, 12), 7, 0)  # the end of the quiet hours
