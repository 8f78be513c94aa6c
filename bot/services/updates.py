"""Daily updates: what a class did today, in a teacher's words and up to 10 photos.

A teacher (or an admin) posts an update for a session they may mark (`sessions.find` gives
`Access.MARK`). It goes to the guardians of the children enrolled, once per family account
however many of its children are in the session, as each guardian chose (`User.update_mode`):

- instant: through the outbox now (one album, or one photo, with the header and the text);
- digest: nothing now; the evening digest reads the day's updates (`updates_of_day`);
- muted: nothing (absence alerts are another kind and always come).

It is also posted to the parent group of each class of those children that linked its group
with `group_updates` on: the same text and photos, nothing about one child.

**Photo consent is enforced when the update is sent**, in the transaction that writes it: the
children enrolled for whom no guardian agreed to photos (`Guardianship.photo_consent`) must be
confirmed by the teacher as not in the photos (recorded in `DailyUpdate.unconsented` and the
audit log), or the update goes out as text alone. The guardians' rows are read under a shared
lock (PostgreSQL) or SQLite's write lock, so a consent withdrawn a second before is honoured and
one withdrawn while the update is written waits for it.

    plan = await updates.preview(session, member, course_id, date, today, photos=3)
    posted = await updates.post(db, member, course_id, date, today, text, photos,
                                confirmed=frozenset(ids_the_teacher_confirmed))

This module also links a class's parent group (`link_class`, `unlink_class`): the one switch
that lets a class's updates reach its group.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import audit, guard, outbox, sessions
from bot.services.catalogue import CourseInfo
from bot.services.members import Member
from bot.services.outbox import NewMessage
from bot.services.sessions import Access, Running
from storage.db import Database
from storage.models import (
    Course,
    DailyUpdate,
    Enrolment,
    EnrolmentStatus,
    Guardianship,
    Priority,
    Role,
    SchoolClass,
    Student,
    Teacher,
    UpdateMode,
    User,
    utcnow,
)
from storage.models import Session as SessionRow

MAX_PHOTOS = 10  # Telegram's album holds 2–10
# A Telegram message holds 4096 characters: the text leaves room for the header. With photos,
# a text longer than a caption (1024) follows the photos as a message of its own (the outbox).
MAX_TEXT = 3500
KIND = "update"
REFUSED = "update.refused"  # a post or preview for a session the member may not mark
CONFIRMED = "update.photos_confirmed"  # the teacher confirmed who is not in the photos
LINK_REFUSED = "class_group.refused"

# The header names the course, its teacher, the school and the day, in the reader's language.
TEMPLATE = N_("<b>Daily update · {course}</b>\n{teacher} · {school} · {day}\n\n{text}")
TEMPLATE_NO_TEACHER = N_("<b>Daily update · {course}</b>\n{school} · {day}\n\n{text}")


class Problem(enum.StrEnum):
    """What is wrong with the update itself (nothing is written)."""

    EMPTY = "empty"  # no text: the text is required, photos or not
    TOO_LONG = "too_long"
    TOO_MANY_PHOTOS = "too_many_photos"


@dataclass(frozen=True)
class Child:
    id: int
    name: str


@dataclass(frozen=True)
class Reach:
    """Who an update reaches: family accounts by their choice, and class groups."""

    families: int  # guardian accounts with a chat, each counted once
    now: int
    evening: int
    muted: int
    groups: int


@dataclass(frozen=True)
class Plan:
    """What posting an update for this session would do (the preview)."""

    course: CourseInfo
    date: dt.date
    school: str
    reach: Reach
    unconsented: tuple[Child, ...]  # enrolled, and no guardian agreed to photos


@dataclass(frozen=True)
class NeedsConsent:
    """Refused: photos are attached and these children have no guardian's photo consent, and
    the teacher has not confirmed they are not in the photos (nothing was written)."""

    course: CourseInfo
    date: dt.date
    children: tuple[Child, ...]  # all unconsented children now
    new: tuple[Child, ...]  # those the teacher had not confirmed (e.g. consent just withdrawn)


@dataclass(frozen=True)
class Posted:
    id: int
    course: CourseInfo
    date: dt.date
    reach: Reach
    photos: int
    unconsented: tuple[int, ...]  # confirmed not in the photos (empty without photos)
    created_at: dt.datetime
    repeated: bool = False  # the same update was posted already: nothing was sent again


@dataclass(frozen=True)
class _Family:
    user_id: int
    chat_id: int
    mode: UpdateMode


@dataclass(frozen=True)
class _Audience:
    children: list[Student]
    unconsented: tuple[Child, ...]
    families: list[_Family]
    groups: list[int]  # chat ids of the linked class groups

    def reach(self) -> Reach:
        modes = [f.mode for f in self.families]
        return Reach(
            families=len(modes),
            now=modes.count(UpdateMode.INSTANT),
            evening=modes.count(UpdateMode.DIGEST),
            muted=modes.count(UpdateMode.MUTED),
            groups=len(self.groups),
        )


def check(text: str, photos: Sequence[str]) -> Problem | None:
    """What is wrong with the update's content, if anything (no statement)."""
    if not text.strip():
        return Problem.EMPTY
    if len(text) > MAX_TEXT:
        return Problem.TOO_LONG
    if len(photos) > MAX_PHOTOS:
        return Problem.TOO_MANY_PHOTOS
    return None


async def todays(session: AsyncSession, member: Member | None, today: dt.date) -> list[Running]:
    """The sessions of today the member may post an update for, by start time."""
    if member is None or not (member.has(Role.TEACHER) or member.has(Role.ADMIN)):
        return []
    found = await sessions.day_of(session, member, today, today)
    return sorted(
        (r for r in found if r.access is Access.MARK),
        key=lambda r: (r.course.starts_at, r.course.name, r.course.id),
    )


async def _session_of(
    session: AsyncSession,
    member: Member | None,
    course_id: int,
    date: dt.date,
    today: dt.date,
    pressed: str | None,
) -> Running | None:
    """The session if the member may mark it; else None, with the refusal audited."""
    found = None
    if member is not None:
        found = await sessions.find(session, member, course_id, date, today)
    if found is None or found.access is not Access.MARK:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    return found


async def _audience(session: AsyncSession, course_id: int, *, lock: bool = False) -> _Audience:
    """The children enrolled, those without photo consent, their families and class groups.

    With `lock`, the guardians' rows are read under a shared lock on PostgreSQL: a consent
    change waits until the update is written (SQLite's write lock, held by the caller, does the
    same there)."""
    children = await sessions.roster(session, course_id)
    if not children:
        return _Audience([], (), [], [])
    ids = [c.id for c in children]
    query = (
        select(
            Guardianship.student_id,
            Guardianship.photo_consent,
            User.id,
            User.chat_id,
            User.update_mode,
        )
        .join(User, User.id == Guardianship.user_id)
        .where(Guardianship.student_id.in_(ids))
        .order_by(User.id)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True, of=Guardianship)  # type: ignore[arg-type]
    rows = (await session.execute(query)).all()
    consenting = {student_id for student_id, consent, *_ in rows if consent}
    families: dict[int, _Family] = {}
    for _, _, user_id, chat_id, mode in rows:
        if chat_id is not None and user_id not in families:
            families[user_id] = _Family(user_id, chat_id, mode or UpdateMode.DIGEST)
    class_ids = {c.class_id for c in children}
    groups = await session.scalars(
        select(SchoolClass.group_chat_id)
        .where(
            SchoolClass.id.in_(class_ids),
            SchoolClass.group_chat_id.is_not(None),
            SchoolClass.group_updates.is_(True),
        )
        .order_by(SchoolClass.grade, SchoolClass.code)
    )
    return _Audience(
        children=children,
        unconsented=tuple(Child(c.id, c.name) for c in children if c.id not in consenting),
        families=list(families.values()),
        groups=list(dict.fromkeys(g for g in groups.all() if g is not None)),
    )


async def preview(
    session: AsyncSession,
    member: Member | None,
    course_id: int,
    date: dt.date,
    today: dt.date,
    *,
    pressed: str | None = None,
) -> Plan | None:
    """Who an update for this session would reach, and who may not be in its photos; None
    (refused, audited) if the member may not post for it."""
    found = await _session_of(session, member, course_id, date, today, pressed)
    if found is None:
        return None
    assert member is not None
    audience = await _audience(session, course_id)
    return Plan(found.course, date, member.school_name, audience.reach(), audience.unconsented)


async def post(
    db: Database,
    member: Member | None,
    course_id: int,
    date: dt.date,
    today: dt.date,
    text: str,
    photos: Sequence[str] = (),
    *,
    confirmed: Iterable[int] = (),
    pressed: str | None = None,
    now: dt.datetime | None = None,
) -> Posted | NeedsConsent | Problem | None:
    """Post the update and send it; None (refused, audited) if the member may not mark the
    session. With photos, every enrolled child without photo consent must be in `confirmed`
    (the teacher said they are not in the photos), else `NeedsConsent` and nothing is written.

    Posting the same text and photos again for the session is recognised and sends nothing
    (`Posted.repeated`); every outbox row carries a dedupe key of the update besides.
    """
    problem = check(text, photos)
    if problem is not None:
        return problem
    now = now or utcnow()
    photos = list(dict.fromkeys(photos))
    async with db.writing() as session:
        found = await _session_of(session, member, course_id, date, today, pressed)
        if found is None:
            return None
        assert member is not None
        course = found.course
        row = await sessions.materialise(session, course, date)
        # Two posts for one session (a double tap on two devices) queue here on PostgreSQL;
        # SQLite's write lock (`db.writing`) already holds them apart.
        await session.execute(
            select(SessionRow.id)
            .where(SessionRow.id == row.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        audience = await _audience(session, course.id, lock=True)
        unconsented = audience.unconsented if photos else ()
        sure = set(confirmed)
        new = tuple(c for c in unconsented if c.id not in sure)
        if new:
            return NeedsConsent(course, date, unconsented, new)
        earlier = await _same(session, row.id, member.user_id, text, photos)
        if earlier is not None:
            return Posted(
                earlier.id,
                course,
                date,
                audience.reach(),
                len(photos),
                tuple(earlier.unconsented or ()),
                earlier.created_at,
                repeated=True,
            )
        posted = DailyUpdate(
            school_id=member.school_id,
            session_id=row.id,
            teacher_id=course.teacher_id,
            author_user_id=member.user_id,
            text=text,
            photos=photos,
            unconsented=[c.id for c in unconsented] or None,
            created_at=now,
        )
        session.add(posted)
        await session.flush()
        if unconsented:
            audit.record(
                session,
                member.school_id,
                CONFIRMED,
                actor_user_id=member.user_id,
                target=("daily_update", posted.id),
                details={
                    "students": [c.id for c in unconsented],
                    "count": len(unconsented),
                    "photos": len(photos),
                    "session": row.id,
                },
            )
        await outbox.enqueue_many(
            session,
            member.school_id,
            _messages(posted, course, member.school_name, date, audience),
            now=now,
        )
        return Posted(
            posted.id,
            course,
            date,
            audience.reach(),
            len(photos),
            tuple(c.id for c in unconsented),
            now,
        )


async def _same(
    session: AsyncSession, session_id: int, user_id: int, text: str, photos: list[str]
) -> DailyUpdate | None:
    """The update this author already posted for the session with this text and photos."""
    rows = await session.scalars(
        select(DailyUpdate).where(
            DailyUpdate.session_id == session_id,
            DailyUpdate.author_user_id == user_id,
            DailyUpdate.text == text,
        )
    )
    return next((r for r in rows.all() if list(r.photos or []) == photos), None)


def attachment(photos: Sequence[str]) -> dict[str, Any] | None:
    """The outbox attachment of an update's photos: one photo, or an album of 2–10."""
    if not photos:
        return None
    if len(photos) == 1:
        return {"type": "photo", "file_id": photos[0]}
    return {"type": "album", "photos": list(photos)}


def _messages(
    posted: DailyUpdate, course: CourseInfo, school: str, date: dt.date, audience: _Audience
) -> list[NewMessage]:
    params: dict[str, Any] = {
        "course": course.name,
        "school": school,
        "day": {"$day": date.isoformat()},
        "text": posted.text,
    }
    template = TEMPLATE_NO_TEACHER
    if course.teacher:
        template, params = TEMPLATE, params | {"teacher": course.teacher}
    photos = attachment(posted.photos)
    messages = [
        NewMessage(
            chat_id=f.chat_id,
            user_id=f.user_id,
            kind=KIND,
            priority=Priority.NORMAL,
            template=template,
            params=params,
            attachment=photos,
            dedupe_key=f"update:{posted.id}:{f.user_id}",
            # The guardian chose to get updates at once: not held for the notices' digest.
            digest=False,
        )
        for f in audience.families
        if f.mode is UpdateMode.INSTANT
    ]
    messages += [
        NewMessage(
            chat_id=chat_id,
            user_id=None,
            kind=KIND,
            priority=Priority.NORMAL,
            template=template,
            params=params,
            attachment=photos,
            dedupe_key=f"update:{posted.id}:group:{chat_id}",
        )
        for chat_id in audience.groups
    ]
    return messages


# ---------------------------------------------------------------------------------------------
# For the evening digest


@dataclass(frozen=True)
class DayUpdate:
    """One update of the day, as the evening digest tells it."""

    id: int
    session_id: int
    course_id: int
    course: str
    teacher: str | None
    text: str
    photos: tuple[str, ...]
    created_at: dt.datetime
    student_ids: tuple[int, ...]  # the children enrolled in the course now


async def updates_of_day(session: AsyncSession, school_id: int, date: dt.date) -> list[DayUpdate]:
    """The school's updates for the sessions of `date`, oldest first; two statements.

    Who gets which: each guardian of the children in `student_ids` whose `update_mode` is
    digest, once per account (a parent of two children in one session reads it once)."""
    rows = (
        await session.execute(
            select(DailyUpdate, SessionRow.course_id, Course.name, Teacher.name)
            .join(SessionRow, SessionRow.id == DailyUpdate.session_id)
            .join(Course, Course.id == SessionRow.course_id)
            .outerjoin(Teacher, Teacher.id == DailyUpdate.teacher_id)
            .where(DailyUpdate.school_id == school_id, SessionRow.date == date)
            .order_by(DailyUpdate.created_at, DailyUpdate.id)
        )
    ).all()
    if not rows:
        return []
    course_ids = {course_id for _, course_id, _, _ in rows}
    enrolled = await session.execute(
        select(Enrolment.course_id, Enrolment.student_id)
        .join(Student, Student.id == Enrolment.student_id)
        .where(
            Enrolment.course_id.in_(course_ids),
            Enrolment.status == EnrolmentStatus.ENROLLED,
            Student.active.is_(True),
        )
        .order_by(Enrolment.student_id)
    )
    students: dict[int, list[int]] = {}
    for course_id, student_id in enrolled.all():
        students.setdefault(course_id, []).append(student_id)
    return [
        DayUpdate(
            id=posted.id,
            session_id=posted.session_id,
            course_id=course_id,
            course=course,
            teacher=teacher,
            text=posted.text,
            photos=tuple(posted.photos or ()),
            created_at=posted.created_at,
            student_ids=tuple(students.get(course_id, ())),
        )
        for posted, course_id, course, teacher in rows
    ]


# ---------------------------------------------------------------------------------------------
# Class groups: a class's parent group, where its updates may also be posted


@dataclass(frozen=True)
class ClassInfo:
    id: int
    code: str
    name: str
    grade: int
    group_chat_id: int | None


@dataclass(frozen=True)
class Linked:
    """A class group linked (or unlinked): what the group's one answer names."""

    school_class: ClassInfo
    moved_from: tuple[ClassInfo, ...] = ()  # classes this group served before
    replaced: bool = False  # the class had another group, which no longer gets its updates


def _info(row: SchoolClass) -> ClassInfo:
    return ClassInfo(row.id, row.code, row.name, row.grade, row.group_chat_id)


async def classes(
    session: AsyncSession, member: Member | None, *, pressed: str | None = None
) -> list[ClassInfo] | None:
    """The school's classes by grade and code, for an admin to pick; None (refused, audited)
    for anyone else."""
    if not guard.holds(session, member, Role.ADMIN, action=LINK_REFUSED, pressed=pressed):
        return None
    assert member is not None
    rows = await session.scalars(
        select(SchoolClass)
        .where(SchoolClass.school_id == member.school_id)
        .order_by(SchoolClass.grade, SchoolClass.code)
    )
    return [_info(r) for r in rows.all()]


async def link_class(
    session: AsyncSession,
    member: Member | None,
    chat_id: int,
    *,
    code: str | None = None,
    class_id: int | None = None,
    pressed: str | None = None,
) -> Linked | str | None:
    """Make `chat_id` the parent group of the class named by `code` (as typed: "3-2") or
    `class_id`, with its updates posted there; audited. None (refused, audited) unless the
    member is an admin; the code as typed (a str) when the school has no such class."""
    if not guard.holds(session, member, Role.ADMIN, action=LINK_REFUSED, pressed=pressed):
        return None
    assert member is not None
    query = select(SchoolClass).where(SchoolClass.school_id == member.school_id)
    if class_id is not None:
        query = query.where(SchoolClass.id == class_id)
    else:
        typed = (code or "").strip()
        query = query.where((SchoolClass.code == typed) | (SchoolClass.name == typed))
    target = await session.scalar(query.with_for_update())
    if target is None:
        if class_id is not None:
            guard.refuse(session, member, LINK_REFUSED, pressed)  # a forged class button
            return None
        return (code or "").strip()
    before = await session.scalars(
        select(SchoolClass).where(
            SchoolClass.school_id == member.school_id,
            SchoolClass.group_chat_id == chat_id,
            SchoolClass.id != target.id,
        )
    )
    moved = tuple(_info(r) for r in before.all())
    replaced = target.group_chat_id is not None and target.group_chat_id != chat_id
    previous = target.group_chat_id
    if moved:
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id.in_([c.id for c in moved]))
            .values(group_chat_id=None, group_updates=False)
        )
    await session.execute(
        update(SchoolClass)
        .where(SchoolClass.id == target.id)
        .values(group_chat_id=chat_id, group_updates=True)
    )
    audit.record(
        session,
        member.school_id,
        "class_group.linked",
        actor_user_id=member.user_id,
        target=("class", target.id),
        details={
            "chat_id": chat_id,
            "previous_chat_id": previous,
            "moved_from": [c.id for c in moved],
        },
    )
    linked = ClassInfo(target.id, target.code, target.name, target.grade, chat_id)
    return Linked(linked, moved, replaced)


async def unlink_class(
    session: AsyncSession, member: Member | None, chat_id: int
) -> list[ClassInfo] | None:
    """This group is no longer any class's parent group; the classes it served (none if it
    was not linked). None (refused, audited) unless the member is an admin."""
    if not guard.holds(session, member, Role.ADMIN, action=LINK_REFUSED):
        return None
    assert member is not None
    rows = await session.scalars(
        select(SchoolClass)
        .where(SchoolClass.school_id == member.school_id, SchoolClass.group_chat_id == chat_id)
        .order_by(SchoolClass.grade, SchoolClass.code)
    )
    served = [_info(r) for r in rows.all()]
    if served:
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id.in_([c.id for c in served]))
            .values(group_chat_id=None, group_updates=False)
        )
        for c in served:
            audit.record(
                session,
                member.school_id,
                "class_group.unlinked",
                actor_user_id=member.user_id,
                target=("class", c.id),
                details={"chat_id": chat_id},
            )
    return served
