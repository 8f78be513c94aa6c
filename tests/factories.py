"""Small, explicit test data: one school with two classes, students, a teacher and a term."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update

from storage.db import Database
from storage.models import (
    Guardianship,
    Role,
    School,
    SchoolClass,
    Student,
    Teacher,
    TeacherKind,
    Term,
    User,
    UserRole,
    utcnow,
)


@dataclass
class SchoolData:
    school_id: int
    term_id: int
    class_ids: dict[str, int]
    student_ids: dict[str, int]
    teacher_id: int


async def make_school(db: Database, code: str = "test") -> SchoolData:
    async with db.transaction() as session:
        school = School(code=code, name="河清实验学校", timezone="Asia/Shanghai")
        session.add(school)
        await session.flush()
        term = Term(
            school_id=school.id,
            name="2026秋季学期",
            starts_on=dt.date(2026, 9, 1),
            ends_on=dt.date(2027, 1, 20),
        )
        teacher = Teacher(school_id=school.id, code="T01", name="王老师", kind=TeacherKind.STAFF)
        classes = {
            "3-1": SchoolClass(school_id=school.id, code="3-1", grade=3, name="三年级1班"),
            "7-2": SchoolClass(school_id=school.id, code="7-2", grade=7, name="七年级2班"),
        }
        session.add_all([term, teacher, *classes.values()])
        await session.flush()
        students = {
            "李小明": Student(
                school_id=school.id, class_id=classes["3-1"].id, student_no="S001", name="李小明"
            ),
            "李小红": Student(
                school_id=school.id, class_id=classes["7-2"].id, student_no="S002", name="李小红"
            ),
            "张伟": Student(
                school_id=school.id, class_id=classes["3-1"].id, student_no="S003", name="张伟"
            ),
        }
        session.add_all(students.values())
        await session.flush()
        return SchoolData(
            school_id=school.id,
            term_id=term.id,
            class_ids={k: v.id for k, v in classes.items()},
            student_ids={k: v.id for k, v in students.items()},
            teacher_id=teacher.id,
        )


async def add_member(
    db: Database,
    school: SchoolData,
    telegram_id: int,
    roles: set[Role],
    children: tuple[str, ...] = (),
    locale: str | None = None,
    photo_consent: bool = False,
) -> int:
    """A user already linked the way an invite would have linked them; returns the user id."""
    async with db.transaction() as session:
        user = User(
            school_id=school.school_id,
            telegram_id=telegram_id,
            chat_id=telegram_id,
            display_name=f"user {telegram_id}",
            locale=locale,
        )
        session.add(user)
        await session.flush()
        for role in roles:
            session.add(UserRole(school_id=school.school_id, user_id=user.id, role=role))
        for child in children:
            session.add(
                Guardianship(
                    school_id=school.school_id,
                    user_id=user.id,
                    student_id=school.student_ids[child],
                    consent_version="test",
                    consented_at=utcnow(),
                    photo_consent=photo_consent,
                )
            )
        return user.id


async def term_around_today(db: Database) -> None:
    """Make every term run from a month ago to two months ahead, so "today" has sessions."""
    today = dt.date.today()
    async with db.transaction() as session:
        await session.execute(
            update(Term).values(
                starts_on=today - dt.timedelta(days=30), ends_on=today + dt.timedelta(days=60)
            )
        )
