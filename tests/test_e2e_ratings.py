"""End to end, term-end ratings over the wire: the real bot polls the sandbox over HTTP. The demo
admin opens the rating from the chat; 张琪妈妈 (in Chinese) and Anna (in English) get the
invitation through the outbox and rate a course of their child's with the child, step by step;
张琪爸爸 hears that his family's ballot is in; the admin closes the window, and with two ballots
the results stay hidden."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.services import catalogue, enrolment
from bot.services.enrolment import SignedUp
from sandbox import demo
from storage.db import Database
from storage.models import (
    Ballot,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    RatingTurnout,
    Student,
    User,
)
from tests.e2e import Person

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)


async def test_families_rate_in_both_languages_and_small_results_stay_hidden(
    demo_world: demo.DemoWorld, database_url: str
) -> None:
    admin = Person(demo_world.sandbox, ADMIN)
    mom, dad, anna = (Person(demo_world.sandbox, who) for who in (MOM, DAD, ANNA))
    db = Database(database_url)
    try:
        await _some_course_for(db, ANNA)
        await admin.send("/ratings", expecting="学期末评价 ·")
        await admin.press("立即开放", expecting="立即收到邀请")
        opened = await admin.press("开放", expecting="评价已开放")
        assert "位监护人" in opened["text"]

        # The invitation comes through the outbox, with the courses named and a button.
        invitation = await mom.answer(0, "学期末评价：")
        assert "张琪" in invitation["text"] and "匿名" in invitation["text"]
        await mom.press("开始评价", expecting="请选择课程")
        listing = mom.sandbox.messages(mom.chat_id)[-1]
        first = listing["reply_markup"]["inline_keyboard"][0][0]["text"]
        saved = await _rate_from_list(mom, first, again="会", comment="不留言", saved="✅ 已保存")
        assert "★★★★☆ 4" in saved
        told = await dad.answer(0, "另一位监护人已完成张琪的")
        assert "/rate" in told["text"]

        await anna.answer(0, "Term-end rating:")
        await anna.press("Rate now", expecting="Choose a course")
        listing = anna.sandbox.messages(anna.chat_id)[-1]
        first = listing["reply_markup"]["inline_keyboard"][0][0]["text"]
        saved = await _rate_from_list(
            anna, first, again="Yes, I would", comment="No comment", saved="✅ Saved"
        )
        assert "Care and safety: ★★★★★ 5" in saved

        async with db.transaction() as session:
            complete = await session.scalar(
                select(func.count()).select_from(Ballot).where(Ballot.again.is_not(None))
            )
            done = await session.scalar(
                select(func.count()).select_from(RatingTurnout).where(RatingTurnout.done)
            )
        assert (complete, done) == (2, 2)

        await admin.send("/ratings", expecting="已评价：2/")
        await admin.press("立即截止", expecting="永久销毁")
        await admin.press("截止", expecting="共 2 份完整评价")
        await admin.send("/ratings", expecting="已于")
        results = await admin.press("结果", expecting="评价结果")
        assert "不显示" in results["text"] and "至少需 5 份" in results["text"]
    finally:
        await db.dispose()


async def _some_course_for(db: Database, telegram_id: int) -> None:
    """Sign the person's child up for a course, unless the demo did already."""
    async with db.transaction() as session:
        child_id, school_id, user_id = (
            await session.execute(
                select(Student.id, Student.school_id, User.id)
                .join(Guardianship, Guardianship.student_id == Student.id)
                .join(User, User.id == Guardianship.user_id)
                .where(User.telegram_id == telegram_id)
            )
        ).one()
        has = await session.scalar(
            select(func.count())
            .select_from(Enrolment)
            .where(Enrolment.student_id == child_id, Enrolment.status == EnrolmentStatus.ENROLLED)
        )
        found = await catalogue.of(session, school_id)
    if has:
        return
    for course in sorted(found.courses.values(), key=lambda c: c.code):
        signed = await enrolment.sign_up(db, child_id, course.id, user_id=user_id)
        if isinstance(signed, SignedUp) and signed.status is EnrolmentStatus.ENROLLED:
            return
    raise AssertionError("no course would take the child")


async def _rate_from_list(
    person: Person, course_label: str, *, again: str, comment: str, saved: str
) -> str:
    await person.press(course_label, expecting="(1/6)")
    await person.press("5", expecting="(2/6)")
    await person.press("4", expecting="(3/6)")
    await person.press("5", expecting="(4/6)")
    await person.press(again, expecting="(5/6)")
    await person.press("😊", expecting="(6/6)")
    final = await person.press(comment, expecting=saved)
    return str(final["text"])
