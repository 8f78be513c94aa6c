"""The draw (摇号) of a term's lottery courses: fair, seeded, published and reproducible.

Instead of a seat race at a fixed hour, families enter lottery courses while enrolment is open,
ranking up to three choices per period and weekday (the order they chose them in; a dropped
choice moves the later ones up, and the ranks are derived again from the live entries when the
draw runs). When
enrolment closes, one draw decides every lottery course of the term:

1. A random seed is drawn (128 bits from the operating system) and stored.
2. Every entry gets a key: ``sha256("<seed>:<course code>:<student number>")`` in hex. A lower
   key draws earlier. Anyone with the seed and the list of entries can recompute every key.
3. First choices are placed first, course by course (in course-code order): in key order, each
   child gets a seat while seats remain. Then second choices, then third. A child who has won a
   seat is not placed in another course at an overlapping time: that entry ends.
4. Everyone not placed is waitlisted on each course in order of (rank, key).
5. Every family is told the result, its position and the seed.

`draw` does steps 2–4 for a given seed; `run_due_draws` runs it when enrolment closes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import enrolment, family, outbox
from bot.services.outbox import NewMessage
from storage.models import (
    Allocation,
    Course,
    Enrolment,
    EnrolmentActor,
    EnrolmentStatus,
    LotteryDraw,
    Priority,
    Student,
    Term,
)

WON = N_(
    "🎉 Draw result: {child} has a seat in <b>{course}</b> (choice {rank}, drawn {position} "
    "of {entries}). The draw's seed, for anyone to check: {seed}"
)
WAITING = N_(
    "Draw result: {child} did not get a seat in <b>{course}</b> this time (choice {rank}, drawn "
    "{position} of {entries}; seats: {seats}) and is on its waitlist at position {waitlist}. "
    "The draw's seed, for anyone to check: {seed}"
)
ENDED = N_(
    "Draw result: {child} won a seat in another course at the same time, so their entry for "
    "<b>{course}</b> has ended. The draw's seed: {seed}"
)


CLASHED = "won a course at the same time"  # the note in the enrolment history


def key(seed: str, course_code: str, student_no: str) -> str:
    return hashlib.sha256(f"{seed}:{course_code}:{student_no}".encode()).hexdigest()


@dataclass
class _Entry:
    enrolment: Enrolment
    course: Course
    student_no: str
    key: str


def _overlap(a: Course, b: Course) -> bool:
    return bool(a.weekdays & b.weekdays) and a.starts_at < b.ends_at and b.starts_at < a.ends_at


async def draw(session: AsyncSession, term_id: int, seed: str, now: dt.datetime) -> int:
    """Place every entry of the term's lottery courses; returns the number of entries."""
    rows = await session.execute(
        select(Enrolment, Course, Student.student_no)
        .join(Course, Course.id == Enrolment.course_id)
        .join(Student, Student.id == Enrolment.student_id)
        .where(
            Course.term_id == term_id,
            Course.allocation == Allocation.LOTTERY,
            Enrolment.status == EnrolmentStatus.ENTERED,
        )
        .execution_options(populate_existing=True)
    )
    found = rows.all()
    # The family's preference is the order of the child's live entries, whatever was dropped.
    ranks = enrolment.choice_ranks((e, c) for e, c, _ in found)
    for row, _, _ in found:
        row.draw_rank = ranks[row.id]
    entries = [_Entry(e, c, no, key(seed, c.code, no)) for e, c, no in found]
    seats = {}
    for course_id in {e.course.id for e in entries}:
        free = await enrolment.free_seats(session, course_id)
        seats[course_id] = free  # None: no limit
    won: dict[int, list[Course]] = {}  # student id → courses won
    waiting: list[_Entry] = []
    for rank in (1, 2, 3):
        this_rank = sorted(
            (e for e in entries if e.enrolment.draw_rank == rank),
            key=lambda e: (e.course.code, e.key),
        )
        for entry in this_rank:
            student_id = entry.enrolment.student_id
            if any(_overlap(entry.course, c) for c in won.get(student_id, [])):
                await _finish(session, entry, EnrolmentStatus.WITHDRAWN, None, now, CLASHED)
                continue
            free = seats[entry.course.id]
            if free is None or free > 0:
                if not await _finish(session, entry, EnrolmentStatus.ENROLLED, None, now, "drawn"):
                    continue  # withdrawn meanwhile: the seat stays free
                if free is not None:
                    seats[entry.course.id] = free - 1
                won.setdefault(student_id, []).append(entry.course)
            else:
                waiting.append(entry)
    for course_id in {e.course.id for e in waiting}:
        last = await session.scalar(
            select(func.coalesce(func.max(Enrolment.waitlist_position), 0)).where(
                Enrolment.course_id == course_id,
                Enrolment.status == EnrolmentStatus.WAITLISTED,
            )
        )
        queue = sorted(
            (e for e in waiting if e.course.id == course_id),
            key=lambda e: (e.enrolment.draw_rank or 9, e.key),
        )
        for offset, entry in enumerate(queue, 1):
            student_id = entry.enrolment.student_id
            if any(_overlap(entry.course, c) for c in won.get(student_id, [])):
                await _finish(session, entry, EnrolmentStatus.WITHDRAWN, None, now, CLASHED)
                continue
            await _finish(
                session, entry, EnrolmentStatus.WAITLISTED, int(last or 0) + offset, now, "drawn"
            )
        await session.flush()
        await enrolment.compact_waitlist(session, course_id)
    for entry in entries:
        entry.enrolment.draw_key = entry.key
    await session.flush()
    await _tell(session, entries, seed)
    return len(entries)


async def _finish(
    session: AsyncSession,
    entry: _Entry,
    status: EnrolmentStatus,
    position: int | None,
    now: dt.datetime,
    note: str,
) -> bool:
    """The entry's result, if it is still an entry (compare-and-set)."""
    return await enrolment.move(
        session,
        entry.enrolment,
        status,
        expected=EnrolmentStatus.ENTERED,
        actor=EnrolmentActor.DRAW,
        user_id=None,
        now=now,
        position=position,
        note=note,
    )


async def _tell(session: AsyncSession, entries: list[_Entry], seed: str) -> None:
    """Every family learns its child's result, position in the draw and the seed."""
    by_course: dict[int, list[_Entry]] = {}
    for entry in entries:
        by_course.setdefault(entry.course.id, []).append(entry)
    students = {e.enrolment.student_id for e in entries}
    names = dict(
        (
            await session.execute(select(Student.id, Student.name).where(Student.id.in_(students)))
        ).all()
    )
    guardians = await family.guardian_chats(session, students)
    messages: dict[int, list[NewMessage]] = {}
    for course_entries in by_course.values():
        ordered = sorted(course_entries, key=lambda e: (e.enrolment.draw_rank or 9, e.key))
        for position, entry in enumerate(ordered, 1):
            row = entry.enrolment
            template = {
                EnrolmentStatus.ENROLLED: WON,
                EnrolmentStatus.WAITLISTED: WAITING,
            }.get(row.status, ENDED)
            params: dict[str, Any] = {
                "child": names[row.student_id],
                "course": entry.course.name,
                "rank": row.draw_rank,
                "position": position,
                "entries": len(ordered),
                "seats": entry.course.capacity or "—",
                "waitlist": row.waitlist_position,
                "seed": seed,
            }
            messages.setdefault(row.school_id, []).extend(
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="draw_result",
                    priority=Priority.INTERACTIVE,
                    template=template,
                    params=params,
                    dedupe_key=f"draw:{row.id}:{user_id}",
                )
                for user_id, chat_id in guardians.get(row.student_id, [])
            )
    for school_id, batch in messages.items():
        await outbox.enqueue_many(session, school_id, batch)


async def run_due_draws(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Draw every term whose enrolment has closed and whose lottery has entries."""
    terms = await session.scalars(
        select(Term).where(
            Term.enrolment_closes_at.is_not(None),
            Term.enrolment_closes_at <= now,
            ~select(LotteryDraw.id).where(LotteryDraw.term_id == Term.id).exists(),
        )
    )
    drawn = []
    for term in terms.all():
        pending = await session.scalar(
            select(func.count())
            .select_from(Enrolment)
            .join(Course, Course.id == Enrolment.course_id)
            .where(Course.term_id == term.id, Enrolment.status == EnrolmentStatus.ENTERED)
        )
        if not pending:
            continue
        seed = secrets.token_hex(16)
        session.add(
            LotteryDraw(school_id=term.school_id, term_id=term.id, seed=seed, drawn_at=now)
        )
        await session.flush()
        await draw(session, term.id, seed, now)
        drawn.append(term.id)
    return drawn
