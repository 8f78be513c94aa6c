"""End to end, the growth record over the wire: the real bot polls the sandbox over HTTP. The
demo admin looks at the term's growth records and releases them after the confirm step; the
delivery worker makes each guardian's PDF as it sends it; 张琪's mother reads hers back from
the sandbox (her child, the courses, the teacher's note, in Chinese), Anna gets hers in English,
and the mother asks for it again with /growth."""

from __future__ import annotations

import io
from typing import Any

from pypdf import PdfReader
from sqlalchemy import select
from telegram.ext import CommandHandler

from bot.services import catalogue, enrolment
from bot.services.enrolment import SignedUp
from handlers.parent import growth as growth_handlers
from sandbox import demo
from storage.db import Database
from storage.models import (
    EnrolmentStatus,
    GrowthNote,
    Guardianship,
    Student,
    Teacher,
    Term,
    User,
    utcnow,
)
from tests.e2e import Person, free_port

ADMIN, TEACHER, MOM, DAD, ANNA = (p.user_id for p in demo.PERSONAS)
NOTE = "在科学课上主动提问，动手能力强"


def pdf_text(data: bytes) -> str:
    pages = PdfReader(io.BytesIO(data)).pages
    return "".join("".join(page.extract_text() for page in pages).split())


def with_growth(application: Any) -> None:
    """/growth first in its group, unless handlers/__init__ registers it already."""
    group = application.handlers.get(0, [])
    if not any(isinstance(h, CommandHandler) and "growth" in h.commands for h in group):
        for handler in reversed(growth_handlers.handlers()):
            group.insert(0, handler)


def document_of(world: demo.DemoWorld, message: dict[str, Any]) -> bytes:
    assert message.get("document"), message
    return world.sandbox.files[message["document"]["file_id"]].data


async def test_the_admin_releases_and_each_guardian_gets_the_pdf_in_their_language(
    database_url: str,
) -> None:
    port = free_port()
    world = await demo.prepare(database_url, f"http://127.0.0.1:{port}")
    db = Database(database_url)
    try:
        async with demo.running(world, "127.0.0.1", port) as application:
            with_growth(application)
            async with db.transaction() as session:
                child_id, child, school_id = (
                    await session.execute(
                        select(Student.id, Student.name, Student.school_id)
                        .join(Guardianship, Guardianship.student_id == Student.id)
                        .join(User, User.id == Guardianship.user_id)
                        .where(User.telegram_id == MOM)
                    )
                ).one()
                term_id, term_name = (
                    await session.execute(
                        select(Term.id, Term.name)
                        .where(Term.school_id == school_id)
                        .where(Term.starts_on <= utcnow().date())
                        .order_by(Term.starts_on.desc())
                        .limit(1)
                    )
                ).one()
                teacher_id = await session.scalar(
                    select(Teacher.id).where(Teacher.school_id == school_id, Teacher.code == "T08")
                )
                session.add(
                    GrowthNote(
                        school_id=school_id,
                        term_id=term_id,
                        student_id=child_id,
                        teacher_id=teacher_id,
                        text=NOTE,
                    )
                )
                anna_child = await session.scalar(
                    select(Student.id)
                    .join(Guardianship, Guardianship.student_id == Student.id)
                    .join(User, User.id == Guardianship.user_id)
                    .where(User.telegram_id == ANNA)
                )
                found = await catalogue.of(session, school_id)
            assert anna_child is not None
            # Anna's child takes a course this term (the sign-up screens have their own tests).
            for course in sorted(found.of_term(term_id), key=lambda c: c.code):
                signed = await enrolment.sign_up(db, anna_child, course.id, user_id=None)
                if isinstance(signed, SignedUp) and signed.status is EnrolmentStatus.ENROLLED:
                    break
            else:
                raise AssertionError("no course would take Anna's child")
            admin, mom, anna = (Person(world.sandbox, p) for p in (ADMIN, MOM, ANNA))
            await admin.send("/growth", expecting="尚未发布")
            await admin.press("立即发布…", expecting="发布后不能撤回")
            released = await admin.press("✅ 发布档案", expecting="已发布")
            assert "正在发给家长" in released["text"]

            sent = await mom.answer(0, f"{child}{term_name}的课后成长档案已生成")
            assert sent["document_name"] == f"{child}-{term_name}-成长档案.pdf"
            text = pdf_text(document_of(world, sent))
            for expected in (child, "课后成长档案", term_name, "课程与出勤", NOTE):
                assert expected in text, expected

            english = await anna.answer(0, "after-school growth record")
            assert english["document_name"].endswith(f"growth record - {term_name}.pdf")
            text = pdf_text(document_of(world, english))
            assert "After-schoolgrowthrecord" in text and "Coursesandattendance" in text

            # Again, on request: the record's summary, then the PDF as a document.
            summary = await mom.send("/growth", expecting="成长档案")
            assert child in summary["text"] and "课程与出勤" in summary["text"]
            again = await mom.press("📄 获取 PDF", expecting=f"{child}{term_name}的成长档案。")
            assert NOTE in pdf_text(document_of(world, again))
    finally:
        await db.dispose()
