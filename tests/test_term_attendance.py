"""term_attendance.tally: one grouped query of the term's attendance, by any keys.

The world is tests/test_reports.py's: on Monday 2 November 李小明 was marked absent and then
corrected to present and 张伟 was on leave (homework help), 李小红 was present (running); on
Tuesday 3 November 李小明 was late and 张伟 absent; a December roll falls outside the term.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from bot.services import term_attendance
from bot.services.term_attendance import Tally
from storage.db import Database
from storage.models import Term
from tests.factories import SchoolData, make_school
from tests.test_reports import FIRST, _marks, _session, build_world


async def _term(db: Database, term_id: int) -> Term:
    async with db.transaction() as session:
        term = await session.get(Term, term_id)
        assert term is not None
        return term


async def tally(db: Database, school: SchoolData, *keys: term_attendance.Key) -> dict:
    term = await _term(db, school.term_id)
    async with db.transaction() as session:
        return await term_attendance.tally(session, school.school_id, term, *keys)


async def test_the_latest_mark_counts_and_leave_is_counted_apart(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    assert await tally(db, school) == {(): Tally(present=3, marked=5, leave=1)}
    assert (await tally(db, school))[()].rate == 0.6
    by_course = await tally(db, school, "course")
    assert by_course == {
        (world.courses["HW"],): Tally(2, 4, 1),
        (world.courses["RUN"],): Tally(1, 1, 0),
    }


async def test_every_grouping_adds_up_to_the_same_total(db: Database, school: SchoolData) -> None:
    world = await build_world(db, school)
    ids = school.student_ids
    assert await tally(db, school, "student") == {
        (ids["李小明"],): Tally(2, 2, 0),
        (ids["张伟"],): Tally(0, 2, 1),
        (ids["李小红"],): Tally(1, 1, 0),
    }
    assert await tally(db, school, "class") == {
        (school.class_ids["3-1"],): Tally(2, 4, 1),
        (school.class_ids["7-2"],): Tally(1, 1, 0),
    }
    assert await tally(db, school, "date") == {
        (FIRST,): Tally(2, 3, 1),
        (dt.date(2026, 11, 3),): Tally(1, 2, 0),
    }
    by_teacher = await tally(db, school, "teacher")
    assert by_teacher == {(school.teacher_id,): Tally(2, 4, 1), (None,): Tally(1, 1, 0)}
    two_keys = await tally(db, school, "class", "date")
    assert two_keys[(school.class_ids["3-1"], FIRST)] == Tally(1, 2, 1)
    for grouped in (by_teacher, two_keys, await tally(db, school, "provider")):
        assert sum(grouped.values(), Tally(0, 0)) == Tally(3, 5, 1)
    assert world.courses  # the world's courses exist


async def test_another_school_and_another_term_count_for_nothing(
    db: Database, school: SchoolData
) -> None:
    world = await build_world(db, school)
    other = await make_school(db, code="other")
    # The other school's roll of the same day, with the same children's names.
    from tests.test_enrolment import make_course

    course = await make_course(db, other, "X", weekdays=1)
    roll = await _session(db, other, course, FIRST)
    await _marks(db, other, roll, ("李小明", "absent"), ("张伟", "absent"))
    # A roll of this school in a course of a later term, within this term's dates.
    async with db.transaction() as session:
        later = Term(
            school_id=school.school_id,
            name="2027春季学期",
            starts_on=dt.date(2027, 2, 20),
            ends_on=dt.date(2027, 7, 1),
        )
        session.add(later)
        await session.flush()
        later_id = later.id
    spring = await make_course(db, school, "SPRING", term_id=later_id)
    roll = await _session(db, school, spring, FIRST)
    await _marks(db, school, roll, ("李小明", "absent"))
    assert await tally(db, school) == {(): Tally(3, 5, 1)}
    assert await tally(db, other) == {(): Tally(0, 2, 0)}
    async with db.transaction() as session:
        spring_term = await session.get(Term, later_id)
        assert spring_term is not None
        # The later term's own window (February to July) has none of its November roll: the
        # total is there, and empty (its rate is None, not 0 %).
        empty = await term_attendance.tally(session, school.school_id, spring_term)
        assert empty == {(): Tally(0, 0, 0)} and empty[()].rate is None
        assert await term_attendance.tally(session, school.school_id, spring_term, "course") == {}
        assert await session.scalar(select(func.count()).select_from(Term)) == 3
    assert world.courses
