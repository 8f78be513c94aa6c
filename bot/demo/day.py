"""The demo teacher's session today, as a real afternoon would have it by the time it starts.

`kehou demo` calls `arrange` after it has put the teacher's course on today's timetable: 张琪
(the guardians on the demo page) is in it too, so an absence alert, a correction, the day's
update and the evening digest reach people you can open; two classmates' guardians filed a
leave and an early pick-up this morning; 张琪's grandmother is on file to collect her, and her
mother asked to be told how she leaves.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Leave,
    PickupPerson,
    Student,
    User,
)

LEAVE_REASON = "发烧，在家休息"
GRANDMOTHER = ("王秀英", "奶奶")


async def arrange(
    session: AsyncSession,
    school_id: int,
    course_id: int,
    period: int,
    persona_child: str,
    classmates: list[int],
    ends_at: dt.time,
    today: dt.date,
    now: dt.datetime,
) -> None:
    """Enrol the persona's child in the course and file the day's leave and pick-up."""
    child = await session.scalar(
        select(Student.id).where(
            Student.school_id == school_id, Student.student_no == persona_child
        )
    )
    assert child is not None, "the demo persona's child is missing"
    enrolled = await session.scalar(
        select(Enrolment).where(Enrolment.student_id == child, Enrolment.course_id == course_id)
    )
    if enrolled is None:
        session.add(
            Enrolment(
                school_id=school_id,
                student_id=child,
                course_id=course_id,
                status=EnrolmentStatus.ENROLLED,
            )
        )
    elif enrolled.status is not EnrolmentStatus.ENROLLED:
        enrolled.status, enrolled.waitlist_position = EnrolmentStatus.ENROLLED, None
    filed = [c for c in classmates if c != child][:2]
    pickup = (dt.datetime.combine(today, ends_at) - dt.timedelta(minutes=20)).time()
    for number, classmate in enumerate(filed):
        session.add(
            Leave(
                school_id=school_id,
                student_id=classmate,
                date=today,
                period=period,
                reason=LEAVE_REASON if number == 0 else None,
                pickup_at=pickup if number == 1 else None,
                created_at=now,
            )
        )
    name, relation = GRANDMOTHER
    session.add(
        PickupPerson(
            school_id=school_id, student_id=child, name=name, relation=relation, created_at=now
        )
    )
    guardians = select(Guardianship.user_id).where(Guardianship.student_id == child)
    first = await session.scalar(guardians.order_by(Guardianship.id).limit(1))
    if first is not None:
        await session.execute(update(User).where(User.id == first).values(dismissal_notice=True))
