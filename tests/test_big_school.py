"""The generated school of any size (`bot.demo.big`): realistic classes, every child with a
guardian, and sign-ups that respect every course's capacity."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from sqlalchemy import func, select

from bot.demo import big, live
from bot.services import invites
from bot.services.invites import InvitePreview
from sandbox import demo
from storage.db import Database
from storage.models import (
    Course,
    Enrolment,
    EnrolmentEvent,
    EnrolmentStatus,
    Guardianship,
    Role,
    SchoolClass,
    Student,
    Teacher,
    User,
    UserRole,
)


@pytest.mark.parametrize(("students", "grades"), [(617, 9), (1_234, 9), (10_000, 9), (3_001, 6)])
def test_classes_hold_40_to_50_children_where_the_grade_allows(students: int, grades: int) -> None:
    plan = big.plan_school(students, grades=grades)
    assert sum(plan.class_sizes.values()) == len(plan.roster) == students
    assert sorted(plan.per_grade) == list(range(1, grades + 1))
    for grade, count in plan.per_grade.items():
        sizes = [plan.class_sizes[k.code] for k in plan.classes if k.grade == grade]
        assert sum(sizes) == count
        if big.split_classes(count):
            assert all(big.CLASS_MIN <= s <= big.CLASS_MAX for s in sizes), (grade, sizes)
        else:  # e.g. 68 children: two classes of 34 are nearer 40-50 than one of 68
            assert max(sizes) - min(sizes) <= 1, (grade, sizes)
    assert len({number for number, _, _ in plan.roster}) == students
    # Every class has its own head teacher and its own period 1.
    assert len({k.head_teacher for k in plan.classes}) == len(plan.classes)
    assert sum(1 for c in plan.courses if c["period"] == 1) == len(plan.classes)


def test_every_class_size_is_as_close_to_40_50_as_its_grade_allows() -> None:
    rng = random.Random(1)
    for count in range(1, 400):
        sizes = big.class_sizes(count, rng)
        assert sum(sizes) == count
        if big.split_classes(count):
            assert all(40 <= s <= 50 for s in sizes), (count, sizes)


def test_the_programme_grows_with_the_school_and_the_plan_is_seeded() -> None:
    small, large = big.plan_school(617), big.plan_school(10_000)
    seats = {
        plan.students: sum(c.get("capacity") or 0 for c in plan.courses if c["period"] == 2)
        for plan in (small, large)
    }
    # About as many period-2 seats per child as the demo school has (1.9).
    assert 1.7 < seats[10_000] / 10_000 < 2.2
    assert large.sections > 10 * small.sections
    assert big.plan_school(617) == small
    assert big.plan_school(617, seed=1).roster != small.roster
    # No teacher teaches two courses at the same time.
    slots = Counter((c["teacher"], day, c["time"]) for c in large.courses for day in c["weekdays"])
    assert max(slots.values()) == 1


async def test_a_school_of_300(db: Database) -> None:
    school = await big.build_school(db, 300, grades=6)
    assert school.report.warnings == []
    population = school.population
    assert population.sign_up_calls > 300
    async with db.transaction() as session:
        sizes = Counter(
            (
                await session.scalars(
                    select(SchoolClass.code).join(Student, Student.class_id == SchoolClass.id)
                )
            ).all()
        )
        guardians = Counter(
            (await session.scalars(select(Guardianship.student_id))).all()
        )  # per child
        students = (await session.scalars(select(Student.id))).all()
        parents = set((await session.scalars(select(Guardianship.user_id))).all())
        roles = Counter((await session.scalars(select(UserRole.role))).all())
        unbound = await session.scalar(
            select(func.count()).select_from(Teacher).where(Teacher.user_id.is_(None))
        )
        places = (
            await session.execute(
                select(
                    Enrolment.student_id,
                    Enrolment.status,
                    Enrolment.waitlist_position,
                    Course.id,
                    Course.capacity,
                    Course.period,
                    Course.weekdays,
                ).join(Course, Course.id == Enrolment.course_id)
            )
        ).all()
        events = await session.scalar(select(func.count()).select_from(EnrolmentEvent))

    # 300 children in grades 1-6: one class of 50 per grade.
    assert sorted(sizes.values()) == [50] * 6
    assert all(1 <= guardians[s] <= 2 for s in students), "every child has one or two"
    assert roles[Role.PARENT] == len(parents) == len(population.guardians)
    assert roles[Role.ADMIN] == 1 and unbound == 0

    enrolled: Counter[int] = Counter()
    waitlist: dict[int, list[int]] = defaultdict(list)
    days: dict[tuple[int, int], int] = defaultdict(int)  # (child, period) -> weekday bits
    capacity: dict[int, int | None] = {}
    for child, status, position, course, cap, period, weekdays in places:
        capacity[course] = cap
        if status is EnrolmentStatus.ENROLLED:
            enrolled[course] += 1
            assert days[child, period] & weekdays == 0, "two courses at the same time"
            days[child, period] |= weekdays
        else:
            assert status is EnrolmentStatus.WAITLISTED and position is not None
            waitlist[course].append(position)
    for course, taken in enrolled.items():
        seats = capacity[course]
        assert seats is None or taken <= seats
    for course, positions in waitlist.items():
        assert enrolled[course] == capacity[course], "a waitlist only for a full course"
        assert sorted(positions) == list(range(1, len(positions) + 1))
    # Every place was made by the sign-up service, which writes its history.
    assert events == len(places)
    outcome = Counter(status.value for _, status, *_ in places)
    assert outcome == +Counter(
        {k: v for k, v in population.sign_ups.items() if not k.startswith("refused")}
    )
    assert any(waitlist.values()), "some course filled up"


async def test_the_demo_of_a_generated_school_casts_its_own_members(database_url: str) -> None:
    """`kehou demo --students N`: the people on the page are members of the generated school."""
    world = await live.prepare(database_url, "http://127.0.0.1:9", 200)
    personas = {p["key"]: p for p in world.sandbox.personas}
    assert set(personas) == {p.key for p in demo.PERSONAS} | {"new-parent", "class-group"}
    assert personas["parent-en"]["language"] == "en"
    db = Database(database_url)
    try:
        async with db.transaction() as session:

            async def children(persona: str) -> set[int]:
                found = await session.scalars(
                    select(Guardianship.student_id)
                    .join(User, User.id == Guardianship.user_id)
                    .where(User.telegram_id == personas[persona]["user_id"])
                )
                return set(found)

            assert len(await children("parent-zhang")) == 1
            assert await children("parent-zhang") == await children("parent-zhang-dad")
            head_of = await session.scalar(
                select(SchoolClass.name)
                .join(Teacher, Teacher.id == SchoolClass.head_teacher_id)
                .join(User, User.id == Teacher.user_id)
                .where(User.telegram_id == personas["teacher"]["user_id"])
            )
            assert head_of is not None and head_of in personas["teacher"]["description"]["en"]
            preview = await invites.inspect(session, demo.NEW_PARENT_ID, world.new_parent_code)
            assert isinstance(preview, InvitePreview)
            assert preview.student_name == world.new_parent_child
    finally:
        await db.dispose()
