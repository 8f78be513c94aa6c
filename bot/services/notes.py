"""Growth notes (成长记录): a teacher's notes about a child, kept for the term's growth record.

A teacher finds the child by a fragment of the name or the student number among the children
they teach this term (an admin: any child of the school; a head teacher: also their class's),
writes a note, and reads their notes of that child back. Notes belong to the term that contains
today; guardians see them only when the term's growth record is released (`released_at`),
never before: nothing here sends anything to a family.

    found = await notes.note(session, member, "张琪", "今天主动帮同学搭模型", now)
    # Saved / Notes (no text: the child's notes so far) / Ambiguous / NotFound / Refused
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit, catalogue, guard, sessions
from bot.services.catalogue import TermInfo
from bot.services.leaves import sessions_on
from bot.services.members import Member
from storage.models import (
    Enrolment,
    EnrolmentStatus,
    GrowthNote,
    Role,
    SchoolClass,
    Student,
    Teacher,
)

REFUSED = "note.refused"  # the audit action of a refused note or press
SHOWN = 8  # notes of a child shown at once, newest first
MATCHES = 8  # children offered when a name fragment is ambiguous
MAX_TEXT = 1000  # characters of one note


class Refusal(enum.StrEnum):
    NOT_STAFF = "not_staff"  # neither a teacher nor an admin
    NO_TERM = "no_term"  # today is in no term: there is no growth record to add to
    TOO_LONG = "too_long"


class Searched(enum.StrEnum):
    """Which children a member's search covered, for the answer when none matched."""

    SCHOOL = "school"  # an admin: every child of the school
    MINE = "mine"  # the children of the teacher's courses this term
    MINE_AND_CLASS = "mine_and_class"  # … and of the classes they are head teacher of


@dataclass(frozen=True)
class Pupil:
    id: int
    name: str
    student_no: str
    class_code: str
    class_name: str


@dataclass(frozen=True)
class Entry:
    text: str
    created_at: dt.datetime
    author: str | None  # the teacher's name; None: the school's admin wrote it


@dataclass(frozen=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True)
class NotFound:
    query: str
    searched: Searched
    term: str


@dataclass(frozen=True)
class Ambiguous:
    query: str
    matches: list[Pupil]  # at most MATCHES
    total: int


@dataclass(frozen=True)
class Saved:
    pupil: Pupil
    term: str
    count: int  # the member's notes of this child this term, this one included


@dataclass(frozen=True)
class Notes:
    pupil: Pupil
    term: str
    entries: list[Entry]  # newest first, at most SHOWN
    total: int
    everyone: bool  # an admin sees every teacher's notes; a teacher their own


Outcome = Refused | NotFound | Ambiguous | Saved | Notes


@dataclass(frozen=True)
class Scope:
    term: TermInfo
    searched: Searched
    teacher_id: int | None  # the member's teacher row, the note's `teacher_id`
    courses: frozenset[int]  # the teacher's courses this term
    classes: frozenset[int]  # the classes they are head teacher of


def term_of(terms: Sequence[TermInfo], today: dt.date) -> TermInfo | None:
    """The term that contains today (not the next one: a note needs a running term)."""
    return next((t for t in terms if t.starts_on <= today <= t.ends_on), None)


async def _scope(
    session: AsyncSession, member: Member | None, today: dt.date, pressed: str | None = None
) -> Scope | Refused:
    if member is None or not (member.has(Role.TEACHER) or member.has(Role.ADMIN)):
        guard.refuse(session, member, REFUSED, pressed)
        return Refused(Refusal.NOT_STAFF)
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    term = term_of(found.terms, today)
    if term is None:
        return Refused(Refusal.NO_TERM)
    mine = await sessions.teacher_ids(session, member)
    classes: set[int] = set()
    if mine:
        rows = await session.scalars(
            select(SchoolClass.id).where(SchoolClass.head_teacher_id.in_(mine))
        )
        classes = set(rows.all())
    courses = frozenset(
        c.id for c in found.of_term(term.id) if c.teacher_id in mine and c.cancelled_at is None
    )
    if member.has(Role.ADMIN):
        searched = Searched.SCHOOL
    else:
        searched = Searched.MINE_AND_CLASS if classes else Searched.MINE
    return Scope(term, searched, min(mine) if mine else None, courses, frozenset(classes))


def _pupils(member: Member, scope: Scope) -> Select[Any, Any, Any, Any, Any]:
    """The children the member may write about, as `Pupil` columns."""
    query: Select[Any, Any, Any, Any, Any] = (
        select(Student.id, Student.name, Student.student_no, SchoolClass.code, SchoolClass.name)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Student.school_id == member.school_id, Student.active.is_(True))
    )
    if scope.searched is Searched.SCHOOL:
        return query
    taught = select(Enrolment.student_id).where(
        Enrolment.course_id.in_(scope.courses), Enrolment.status == EnrolmentStatus.ENROLLED
    )
    return query.where(or_(Student.id.in_(taught), Student.class_id.in_(scope.classes)))


async def _match(
    session: AsyncSession, member: Member, scope: Scope, query: str
) -> tuple[list[Pupil], int]:
    """Children matching `query`: its student number exactly, else its name exactly, else a
    name containing it. Returns at most MATCHES, and how many matched."""
    base = _pupils(member, scope)
    for condition in (
        func.lower(Student.student_no) == query.lower(),
        Student.name == query,
        Student.name.contains(query, autoescape=True),
    ):
        rows = (
            await session.execute(
                base.where(condition).order_by(Student.class_id, Student.name, Student.id)
            )
        ).all()
        if rows:
            return [Pupil(*row) for row in rows[:MATCHES]], len(rows)
    return [], 0


async def _pupil(
    session: AsyncSession, member: Member, scope: Scope, student_id: int
) -> Pupil | None:
    row = (await session.execute(_pupils(member, scope).where(Student.id == student_id))).first()
    return Pupil(*row) if row is not None else None


async def note(
    session: AsyncSession, member: Member | None, query: str, text: str, now: dt.datetime
) -> Outcome:
    """`/note <child> <text>`: save the note for the one child `query` names; with no text,
    the member's notes of that child so far."""
    today = await sessions.local_today(session, member.school_id, now) if member else now.date()
    scope = await _scope(session, member, today)
    if isinstance(scope, Refused):
        return scope
    assert member is not None
    text = text.strip()
    if len(text) > MAX_TEXT:
        return Refused(Refusal.TOO_LONG)
    matches, total = await _match(session, member, scope, query.strip())
    if total == 0:
        return NotFound(query.strip(), scope.searched, scope.term.name)
    if total > 1:
        return Ambiguous(query.strip(), matches, total)
    if not text:
        return await _notes(session, member, scope, matches[0])
    return await _save(session, member, scope, matches[0], text, now)


async def save_for(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    text: str,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Outcome:
    """The child chosen from an ambiguous answer: save the note kept meanwhile for them."""
    today = await sessions.local_today(session, member.school_id, now) if member else now.date()
    scope = await _scope(session, member, today, pressed)
    if isinstance(scope, Refused):
        return scope
    assert member is not None
    pupil = await _pupil(session, member, scope, student_id)
    if pupil is None:
        guard.refuse(session, member, REFUSED, pressed)
        return Refused(Refusal.NOT_STAFF)
    if not text.strip():
        return await _notes(session, member, scope, pupil)
    return await _save(session, member, scope, pupil, text.strip()[:MAX_TEXT], now)


async def notes_of(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Outcome:
    """A child's notes so far (a child pressed under `/note`)."""
    return await save_for(session, member, student_id, "", now, pressed=pressed)


async def _save(
    session: AsyncSession,
    member: Member,
    scope: Scope,
    pupil: Pupil,
    text: str,
    now: dt.datetime,
) -> Saved:
    row = GrowthNote(
        school_id=member.school_id,
        term_id=scope.term.id,
        student_id=pupil.id,
        teacher_id=scope.teacher_id,
        author_user_id=member.user_id,
        text=text,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        member.school_id,
        "note.added",
        actor_user_id=member.user_id,
        target=("growth_note", row.id),
        details={"student_id": pupil.id},
    )
    count = await session.scalar(
        select(func.count()).where(
            GrowthNote.term_id == scope.term.id,
            GrowthNote.student_id == pupil.id,
            GrowthNote.author_user_id == member.user_id,
        )
    )
    return Saved(pupil, scope.term.name, count or 1)


async def _notes(session: AsyncSession, member: Member, scope: Scope, pupil: Pupil) -> Notes:
    everyone = member.has(Role.ADMIN)
    conditions = [GrowthNote.term_id == scope.term.id, GrowthNote.student_id == pupil.id]
    if not everyone:
        conditions.append(GrowthNote.author_user_id == member.user_id)
    rows = (
        await session.execute(
            select(GrowthNote.text, GrowthNote.created_at, Teacher.name)
            .outerjoin(Teacher, Teacher.id == GrowthNote.teacher_id)
            .where(*conditions)
            .order_by(GrowthNote.created_at.desc(), GrowthNote.id.desc())
            .limit(SHOWN)
        )
    ).all()
    total = await session.scalar(select(func.count()).where(*conditions))
    return Notes(pupil, scope.term.name, [Entry(*r) for r in rows], total or 0, everyone)


async def today_children(
    session: AsyncSession, member: Member | None, now: dt.datetime
) -> list[Pupil] | Refused:
    """The children of the member's sessions today (for `/note` alone), by class and name."""
    today = await sessions.local_today(session, member.school_id, now) if member else now.date()
    scope = await _scope(session, member, today)
    if isinstance(scope, Refused):
        return scope
    assert member is not None
    found = await catalogue.of(session, member.school_id, member.catalogue_version)
    running = sessions_on(found, (found.courses[c] for c in scope.courses), today)
    if not running:
        return []
    rows = await session.execute(
        select(Student.id, Student.name, Student.student_no, SchoolClass.code, SchoolClass.name)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .join(Enrolment, Enrolment.student_id == Student.id)
        .where(
            Enrolment.course_id.in_([c.id for c in running]),
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Student.active.is_(True),
        )
        .distinct()
        .order_by(Student.name, Student.id)
    )
    return [Pupil(*row) for row in rows.all()]
