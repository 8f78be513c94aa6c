"""The cached programme is never stale: whoever changes a course, the next update shows it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from bot.services import catalogue
from storage.db import Database
from storage.models import Course, Role, School
from tests.factories import SchoolData, add_member, term_around_today
from tests.harness import FakeUser
from tests.test_enrolment import make_course

MOM = 830


async def _family(make_user: Any, db: Database, school: SchoolData) -> tuple[FakeUser, int]:
    await term_around_today(db)
    await add_member(db, school, MOM, {Role.PARENT}, ("李小明",))
    course = await make_course(db, school, "ROBO", name="机器人编程", weekdays=0b11111)
    return make_user(MOM), course


def _texts(replies: list[Any]) -> str:
    """The messages and their buttons, where the list names each course."""
    return "\n".join(
        str(c.params.get("text", "")) + str(c.params.get("reply_markup", "")) for c in replies
    )


async def test_a_renamed_course_shows_on_the_next_update(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    mom, course = await _family(make_user, db, school)
    assert "机器人编程" in _texts(await mom.send("/courses"))  # now cached
    async with db.transaction() as session:  # a bulk statement, as an import makes
        await session.execute(update(Course).where(Course.id == course).values(name="航模"))
    shown = _texts(await mom.send("/courses"))
    assert "航模" in shown and "机器人编程" not in shown


async def test_a_change_to_a_loaded_row_moves_the_version_on(
    db: Database, school: SchoolData
) -> None:
    course = await make_course(db, school, "CLAY", name="陶艺")
    async with db.transaction() as session:
        before = (await catalogue.of(session, school.school_id)).version
    async with db.transaction() as session:
        row = await session.get(Course, course)
        assert row is not None
        row.venue = "美术教室"  # an ORM change, flushed at commit
    async with db.transaction() as session:
        found = await catalogue.of(session, school.school_id)
        version = await session.scalar(
            select(School.catalogue_version).where(School.id == school.school_id)
        )
    assert found.version == version and version > before
    info = found.course(course)
    assert info is not None and info.venue == "美术教室"


async def test_another_process_change_is_seen(
    make_user: Any, db: Database, school: SchoolData, database_url: str
) -> None:
    mom, course = await _family(make_user, db, school)
    assert "机器人编程" in _texts(await mom.send("/courses"))
    other = Database(database_url)  # another process: its own engine and cache
    try:
        async with other.transaction() as session:
            await session.execute(update(Course).where(Course.id == course).values(capacity=1))
            await session.execute(update(Course).where(Course.id == course).values(name="编程"))
    finally:
        await other.dispose()
    shown = _texts(await mom.send("/courses"))
    assert "编程" in shown and "机器人编程" not in shown


async def test_a_write_elsewhere_leaves_the_cache_alone(
    make_user: Any, db: Database, school: SchoolData
) -> None:
    """Sign-ups, leaves and the loader's own writes are not programme changes."""
    mom, course = await _family(make_user, db, school)
    await mom.send("/courses")
    async with db.transaction() as session:
        version = await session.scalar(
            select(School.catalogue_version).where(School.id == school.school_id)
        )
    child = school.student_ids["李小明"]
    await mom.press(f"cs:y:{child}:{course}")
    await mom.send("/schedule")
    async with db.transaction() as session:
        assert version == await session.scalar(
            select(School.catalogue_version).where(School.id == school.school_id)
        )
