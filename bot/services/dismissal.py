"""Dismissal (弹性离校): how each child leaves a session, and the guardians' standing settings.

At the end of a session the teacher marks how each child left: handed to a guardian, to an
adult the guardians put on file (`PickupPerson`), home alone (only with a guardian's standing
permission, `Student.alone_permitted_at`), or on to extended care (延时托管). The list shows what
the teacher needs at the gate: early pick-ups and leaves filed by guardians, the authorised
adults, whether the child may go alone, and who has left already.

- The log is append-only (`Dismissal`): a correction is a new row and the latest counts.
- A mark is compare-and-set on the latest row the teacher was shown: if another device marked
  the child meanwhile, the loser writes nothing and is told what was recorded.
- Guardians who asked to be told (`User.dismissal_notice`) get one short message per row, at
  once, through the outbox, in their own language.
- Guardians keep the adults on file and the home-alone permission themselves (`/pickup`); the
  guard checks every press, and the child's other guardians are told (docs/UX.md, 5).

Flexible dismissal is free by policy: nothing here creates, reads or imports a fee.

    found = await dismissal.sheet(session, member, course_id, date, today)   # the list
    done = await dismissal.mark(session, member, session_id, student_id, way,
                                expected=pupil.latest, now=now, today=today)
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.i18n import N_, Translator
from bot.services import audit, family, guard, outbox, sessions
from bot.services.catalogue import CourseInfo
from bot.services.guard import Child
from bot.services.members import Member
from bot.services.outbox import NewMessage
from bot.services.sessions import Access
from storage.models import (
    AttendanceMark,
    Dismissal,
    DismissalWay,
    Guardianship,
    Leave,
    PickupPerson,
    Priority,
    School,
    Student,
    User,
)
from storage.models import Session as SessionRow

REFUSED = "dismissal.refused"  # a teacher's press on a session they may not mark
PICKUP_REFUSED = "pickup.refused"  # a settings press for a child not the presser's
MAX_ADULTS = 8  # authorised adults per child: one screen of buttons
NAME_MAX = 40
RELATION_MAX = 20
# Roll codes (the attendance log) that say the child is not in the room at dismissal.
NOT_HERE = frozenset({"absent", "leave", "early"})
HERE = frozenset({"present", "late"})

# The relations a guardian picks with a button, stored as the school's word (the column holds
# "爷爷", "姑姑" …) and shown in each reader's language; a typed relation is shown as typed.
RELATIONS = {
    "爷爷": N_("Grandpa (father's side)"),
    "奶奶": N_("Grandma (father's side)"),
    "外公": N_("Grandpa (mother's side)"),
    "外婆": N_("Grandma (mother's side)"),
}
NO_RELATION = N_("Authorised adult")

# What guardians who asked to be told read (outbox templates, in each reader's language).
NOTICES = {
    DismissalWay.GUARDIAN: N_("{child} {time} picked up by a guardian"),
    DismissalWay.AUTHORISED: N_("{child} {time} picked up by {relation} ({name})"),
    DismissalWay.ALONE: N_("{child} {time} went home alone"),
    DismissalWay.EXTENDED: N_("{child} {time} moved on to extended care"),
}
# What the child's other guardians are told of a change to the standing settings.
FAMILY_ADDED = N_("👪 {child}'s other guardian authorised {relation} ({name}) to collect {child}.")
FAMILY_REMOVED = N_(
    "👪 {child}'s other guardian removed {relation} ({name}) from the adults who may collect "
    "{child}."
)
FAMILY_ALONE_ON = N_(
    "👪 {child}'s other guardian allowed {child} to go home alone after the session: the "
    "teacher will no longer wait for a guardian."
)
FAMILY_ALONE_OFF = N_(
    "👪 {child}'s other guardian withdrew the permission to go home alone: {child} is "
    "collected by a guardian or an authorised adult again."
)


def relation_param(relation: str | None) -> dict[str, str] | str:
    """A relation as an outbox parameter: a known one translated for each reader."""
    if relation is None:
        return {"$msgid": NO_RELATION}
    known = RELATIONS.get(relation)
    return {"$msgid": known} if known else relation


def relation_text(t: Translator, relation: str | None) -> str:
    """A relation as this reader reads it: 爷爷 / Grandpa (father's side) / as typed."""
    if relation is None:
        return t.gettext(NO_RELATION)
    known = RELATIONS.get(relation)
    return t.gettext(known) if known else relation


# ---------------------------------------------------------------------------------------------
# The dismissal list


@dataclass(frozen=True)
class Adult:
    """An adult a guardian authorised to collect the child."""

    id: int
    name: str
    relation: str | None


@dataclass(frozen=True)
class Left:
    """How a child left (the latest dismissal row)."""

    id: int
    way: DismissalWay
    left_at: dt.datetime  # UTC
    adult: Adult | None  # who collected the child, for `AUTHORISED`


@dataclass(frozen=True)
class Pupil:
    """One child of the list, numbered like the roll."""

    number: int
    id: int
    name: str
    pickup_at: dt.time | None  # an early pick-up a guardian filed for today
    on_leave: bool  # a leave (or a pick-up before this session) covers it: not expected
    roll: str | None  # the roll's code, if taken (absent, late, …)
    adults: tuple[Adult, ...]
    alone: bool  # a guardian's standing permission to go home alone is on file
    left: Left | None

    @property
    def latest(self) -> int:
        """The latest dismissal row's id (0: none): what a mark compares against."""
        return self.left.id if self.left else 0

    @property
    def in_class(self) -> bool:
        """Still to be dismissed: not gone, and here by the roll, or else neither on leave nor
        marked away on it (a child on leave who came after all is marked present)."""
        if self.left is not None:
            return False
        return self.roll in HERE or (not self.on_leave and self.roll not in NOT_HERE)

    def adult(self, person_id: int) -> Adult | None:
        return next((a for a in self.adults if a.id == person_id), None)


@dataclass(frozen=True)
class Sheet:
    """The dismissal list of one session, as the member may see it."""

    course: CourseInfo
    date: dt.date
    access: Access
    session_id: int | None  # None until something happened in the session
    pupils: tuple[Pupil, ...]
    version: int  # the session's newest dismissal row (0: none); "all the rest" guards it

    @property
    def remaining(self) -> list[Pupil]:
        return [p for p in self.pupils if p.in_class]

    @property
    def gone(self) -> list[Pupil]:
        return [p for p in self.pupils if p.left is not None]

    def pupil(self, student_id: int) -> Pupil | None:
        return next((p for p in self.pupils if p.id == student_id), None)

    def numbered(self, number: int) -> Pupil | None:
        return next((p for p in self.pupils if p.number == number), None)


async def day(session: AsyncSession, member: Member, today: dt.date) -> list[sessions.Running]:
    """Today's sessions the member may see (their own, their class's, or all for an admin)."""
    return await sessions.day_of(session, member, today, today)


async def sheet(
    session: AsyncSession,
    member: Member | None,
    course_id: int,
    date: dt.date,
    today: dt.date,
    *,
    pressed: str | None = None,
) -> Sheet | None:
    """The dismissal list of a course's session on `date`; None (refused, audited) when the
    member may not see it. One who may mark it gets the session's row written, so buttons can
    name it."""
    running = await _running(session, member, course_id, date, today, Access.VIEW, pressed)
    if running is None:
        return None
    if running.access >= Access.MARK:
        row: SessionRow | None = await sessions.materialise(session, running.course, date)
    else:
        row = await session.scalar(
            select(SessionRow).where(SessionRow.course_id == course_id, SessionRow.date == date)
        )
    return await _build(session, running, row.id if row is not None else None)


async def sheet_of(
    session: AsyncSession,
    member: Member | None,
    session_id: int,
    today: dt.date,
    *,
    need: Access = Access.VIEW,
    pressed: str | None = None,
) -> Sheet | None:
    """The list of a session a button names; None (refused, audited) when not the member's."""
    found = await _session(session, member, session_id, today, need, pressed)
    if found is None:
        return None
    running, row = found
    return await _build(session, running, row.id)


async def _running(
    session: AsyncSession,
    member: Member | None,
    course_id: int,
    date: dt.date,
    today: dt.date,
    need: Access,
    pressed: str | None,
) -> sessions.Running | None:
    running = None
    if member is not None:
        running = await sessions.find(session, member, course_id, date, today)
    if running is None or running.access < need:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    return running


async def _session(
    session: AsyncSession,
    member: Member | None,
    session_id: int,
    today: dt.date,
    need: Access,
    pressed: str | None,
) -> tuple[sessions.Running, SessionRow] | None:
    row = None
    if member is not None:
        row = await session.scalar(
            select(SessionRow).where(
                SessionRow.id == session_id, SessionRow.school_id == member.school_id
            )
        )
    if row is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    running = await _running(session, member, row.course_id, row.date, today, need, pressed)
    return (running, row) if running is not None else None


async def _lock(session: AsyncSession, session_id: int) -> None:
    """Take the session's lock until the transaction ends: marks of one session queue.

    PostgreSQL locks the row; SQLite has no row locks, so a no-op UPDATE takes its single
    writer lock, and every read after it sees the newest rows (docs/STATE_CHANGES.md)."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id)
            .values(status=SessionRow.status)
            .execution_options(synchronize_session=False)
        )
    else:
        await session.execute(
            select(SessionRow.id).where(SessionRow.id == session_id).with_for_update()
        )


async def _build(
    session: AsyncSession, running: sessions.Running, session_id: int | None
) -> Sheet:
    """Everything the list shows, in five statements however many children."""
    course, date = running.course, running.date
    students = await sessions.roster(session, course.id)
    ids = [s.id for s in students]
    away: dict[int, Leave] = {}
    latest: dict[int, Dismissal] = {}
    roll: dict[int, str] = {}
    if ids:
        for filed in (
            await session.scalars(
                select(Leave)
                .where(Leave.student_id.in_(ids), Leave.date == date, Leave.cancelled_at.is_(None))
                .order_by(Leave.id)
            )
        ).all():
            known = away.get(filed.student_id)
            # A leave that keeps the child away outweighs a pick-up during the session.
            if _covers(filed, course) and (known is None or not _keeps_away(known, course)):
                away[filed.student_id] = filed
    if ids and session_id is not None:
        for given in (
            await session.scalars(
                select(Dismissal)
                .where(Dismissal.session_id == session_id)
                .order_by(Dismissal.id)
                .execution_options(populate_existing=True)
            )
        ).all():
            latest[given.student_id] = given
        for mark in (
            await session.execute(
                select(AttendanceMark.student_id, AttendanceMark.code)
                .where(AttendanceMark.session_id == session_id)
                .order_by(AttendanceMark.id)
            )
        ).all():
            roll[mark[0]] = mark[1]
    collected = {d.pickup_person_id for d in latest.values() if d.pickup_person_id is not None}
    adults: dict[int, list[Adult]] = {}
    named: dict[int, Adult] = {}
    if ids:
        for person in (
            await session.scalars(
                select(PickupPerson)
                .where(
                    PickupPerson.student_id.in_(ids),
                    PickupPerson.removed_at.is_(None)
                    | PickupPerson.id.in_(sorted(collected) or [0]),
                )
                .order_by(PickupPerson.id)
            )
        ).all():
            named[person.id] = Adult(person.id, person.name, person.relation)
            if person.removed_at is None:
                adults.setdefault(person.student_id, []).append(named[person.id])
    pupils = []
    for number, student in enumerate(students, start=1):
        leave = away.get(student.id)
        last = latest.get(student.id)
        left = None
        if last is not None:
            by = named.get(last.pickup_person_id) if last.pickup_person_id else None
            left = Left(last.id, last.way, last.left_at, by)
        pupils.append(
            Pupil(
                number=number,
                id=student.id,
                name=student.name,
                pickup_at=leave.pickup_at if leave is not None else None,
                on_leave=leave is not None and _keeps_away(leave, course),
                roll=roll.get(student.id),
                adults=tuple(adults.get(student.id, ())),
                alone=student.alone_permitted_at is not None,
                left=left,
            )
        )
    version = max((d.id for d in latest.values()), default=0)
    return Sheet(course, date, running.access, session_id, tuple(pupils), version)


def _covers(leave: Leave, course: CourseInfo) -> bool:
    """A leave of the child's day that concerns this session: its period, the whole day, or a
    pick-up before it starts (the child is gone by then)."""
    if leave.period is None or leave.period == course.period:
        return True
    return leave.pickup_at is not None and leave.pickup_at <= course.starts_at


def _keeps_away(leave: Leave, course: CourseInfo) -> bool:
    """Whether the child is not expected at all (a leave, or collected before the start)."""
    return leave.pickup_at is None or leave.pickup_at <= course.starts_at


# ---------------------------------------------------------------------------------------------
# Marking


class Outcome(enum.StrEnum):
    DONE = "done"
    RACED = "raced"  # another mark came in since the list was shown: nothing written
    NOT_PERMITTED = "not_permitted"  # home alone without a guardian's permission on file
    NO_ADULT = "no_adult"  # the adult is no longer on file
    NOBODY = "nobody"  # "all the rest": nobody is left in class


@dataclass(frozen=True)
class Marked:
    """What became of a mark: the outcome, the list afterwards and the children concerned."""

    outcome: Outcome
    sheet: Sheet
    pupils: tuple[Pupil, ...] = field(default_factory=tuple)  # as they are now


@dataclass(frozen=True)
class Wanted:
    """One child's mark as asked: the way, the adult (for `AUTHORISED`), and the latest row
    the teacher was shown (`Pupil.latest`)."""

    student_id: int
    way: DismissalWay
    expected: int
    person_id: int | None = None


async def mark(
    session: AsyncSession,
    member: Member | None,
    session_id: int,
    student_id: int,
    way: DismissalWay,
    *,
    expected: int,
    person_id: int | None = None,
    now: dt.datetime,
    today: dt.date,
    pressed: str | None = None,
) -> Marked | None:
    """Record how one child left; None (refused, audited) when the member may not mark this
    session or the child is not in it. `expected` is the latest row the teacher was shown
    (`Pupil.latest`): if another mark came in since, nothing is written (`RACED`)."""
    found = await mark_many(
        session,
        member,
        session_id,
        [Wanted(student_id, way, expected, person_id)],
        now=now,
        today=today,
        pressed=pressed,
    )
    return found[0] if found else None


async def mark_many(
    session: AsyncSession,
    member: Member | None,
    session_id: int,
    wanted: Sequence[Wanted],
    *,
    now: dt.datetime,
    today: dt.date,
    pressed: str | None = None,
) -> list[Marked] | None:
    """`mark` for several children at once (`/dismiss 3 7 家长`): each is compared with the
    row the teacher saw and written or not on its own; one outcome each, in order, each with
    the list as it is after all of them. None (refused, audited) as `mark`."""
    found = await _session(session, member, session_id, today, Access.MARK, pressed)
    if found is None:
        return None
    running, _ = found
    await _lock(session, session_id)
    current = await _build(session, running, session_id)
    outcomes: list[tuple[Outcome, Pupil]] = []
    marks: list[tuple[Pupil, DismissalWay, Adult | None]] = []
    for want in wanted:
        pupil = current.pupil(want.student_id)
        if pupil is None:
            guard.refuse(session, member, REFUSED, pressed)
            return None
        adult = pupil.adult(want.person_id) if want.person_id is not None else None
        if pupil.latest != want.expected or any(p.id == pupil.id for p, _, _ in marks):
            outcomes.append((Outcome.RACED, pupil))
        elif want.way is DismissalWay.ALONE and not pupil.alone:
            outcomes.append((Outcome.NOT_PERMITTED, pupil))
        elif want.way is DismissalWay.AUTHORISED and adult is None:
            outcomes.append((Outcome.NO_ADULT, pupil))
        else:
            outcomes.append((Outcome.DONE, pupil))
            marks.append((pupil, want.way, adult))
    if marks:
        assert member is not None  # `_session` refused otherwise
        current, written = await _write(session, member, current, marks, now)
        outcomes = [(o, written.get(p.id, p)) for o, p in outcomes]
    return [Marked(o, current, (p,)) for o, p in outcomes]


async def mark_rest(
    session: AsyncSession,
    member: Member | None,
    session_id: int,
    *,
    version: int,
    count: int,
    now: dt.datetime,
    today: dt.date,
    pressed: str | None = None,
) -> Marked | None:
    """Every child still in class handed to a guardian, in one press. `version` and `count`
    are what the confirm screen showed: if any mark came in since, or the children in class
    are no longer those, nothing is written (`RACED`) and the list is shown afresh."""
    found = await _session(session, member, session_id, today, Access.MARK, pressed)
    if found is None:
        return None
    running, _ = found
    await _lock(session, session_id)
    current = await _build(session, running, session_id)
    rest = current.remaining
    if current.version != version or len(rest) != count:
        return Marked(Outcome.RACED, current, tuple(rest))
    if not rest:
        return Marked(Outcome.NOBODY, current)
    assert member is not None
    after, written = await _write(
        session, member, current, [(p, DismissalWay.GUARDIAN, None) for p in rest], now
    )
    return Marked(Outcome.DONE, after, tuple(written.values()))


async def _write(
    session: AsyncSession,
    member: Member,
    current: Sheet,
    marks: Sequence[tuple[Pupil, DismissalWay, Adult | None]],
    now: dt.datetime,
) -> tuple[Sheet, dict[int, Pupil]]:
    """Write the rows, tell the guardians who asked; the list after, and each child marked."""
    assert current.session_id is not None
    rows = [
        Dismissal(
            school_id=member.school_id,
            session_id=current.session_id,
            student_id=pupil.id,
            way=way,
            pickup_person_id=adult.id if adult is not None else None,
            left_at=now,
            actor_user_id=member.user_id,
            created_at=now,
        )
        for pupil, way, adult in marks
    ]
    session.add_all(rows)
    await session.flush()
    changed = {
        pupil.id: replace(pupil, left=Left(row.id, row.way, now, adult))
        for (pupil, _, adult), row in zip(marks, rows, strict=True)
    }
    pupils = tuple(changed.get(p.id, p) for p in current.pupils)
    after = replace(current, pupils=pupils, version=max(r.id for r in rows))
    await _tell(session, member.school_id, list(changed.values()), now)
    return after, changed


async def _tell(
    session: AsyncSession, school_id: int, pupils: list[Pupil], now: dt.datetime
) -> None:
    """Tell the guardians who asked to be told how each child left; one message per row."""
    readers = (
        await session.execute(
            select(Guardianship.student_id, User.id, User.chat_id)
            .join(User, User.id == Guardianship.user_id)
            .where(
                Guardianship.student_id.in_([p.id for p in pupils]),
                User.dismissal_notice.is_(True),
                User.chat_id.is_not(None),
            )
        )
    ).all()
    if not readers:
        return
    zone = await session.scalar(select(School.timezone).where(School.id == school_id))
    local = now.astimezone(ZoneInfo(zone or "Asia/Shanghai")).time()
    by_child = {p.id: p for p in pupils}
    messages = []
    for student_id, user_id, chat_id in readers:
        pupil = by_child[student_id]
        assert pupil.left is not None and chat_id is not None
        params: dict[str, Any] = {
            "child": pupil.name,
            "time": {"$time": local.isoformat("minutes")},
        }
        adult = pupil.left.adult
        if adult is not None:
            params |= {"name": adult.name, "relation": relation_param(adult.relation)}
        messages.append(
            NewMessage(
                chat_id=chat_id,
                user_id=user_id,
                kind="dismissal",
                priority=Priority.INTERACTIVE,
                template=NOTICES[pupil.left.way],
                params=params,
                dedupe_key=f"dismissal:{pupil.left.id}:{user_id}",
            )
        )
    await outbox.enqueue_many(session, school_id, messages, now=now)


# ---------------------------------------------------------------------------------------------
# The guardians' standing settings (/pickup)


@dataclass(frozen=True)
class Settings:
    """/pickup: the member's children and, for the one chosen, what is on file."""

    children: list[Child]
    child: Child | None
    adults: tuple[Adult, ...] = ()
    alone_at: dt.datetime | None = None  # since when the child may go home alone
    alone_by_me: bool = False  # the permission is this guardian's own
    notice: bool = False  # this guardian wants to be told how the child left


class Change(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # another press (or guardian) did it first: nothing changed
    FULL = "full"  # `MAX_ADULTS` on file already
    BAD_NAME = "bad_name"  # empty, or too long


@dataclass(frozen=True)
class Changed:
    """What became of a change to the settings, and the settings afterwards."""

    result: Change
    settings: Settings
    adult: Adult | None = None


async def settings(
    session: AsyncSession,
    member: Member | None,
    student_id: int | None = None,
    *,
    pressed: str | None = None,
) -> Settings | None:
    """The member's children; with one chosen (or the only one), its settings. None (refused,
    audited) when `student_id` is not one of the member's children."""
    children = await guard.children(session, member)
    if student_id is None and len(children) == 1:
        student_id = children[0].id
    child = next((c for c in children if c.id == student_id), None)
    if student_id is not None and child is None:
        guard.refuse(session, member, PICKUP_REFUSED, pressed)
        return None
    if child is None or member is None:
        return Settings(children, None)
    return await _settings(session, member, children, child)


async def _settings(
    session: AsyncSession, member: Member, children: list[Child], child: Child
) -> Settings:
    people = (
        await session.scalars(
            select(PickupPerson)
            .where(PickupPerson.student_id == child.id, PickupPerson.removed_at.is_(None))
            .order_by(PickupPerson.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    notice = select(User.dismissal_notice).where(User.id == member.user_id).scalar_subquery()
    state = (
        await session.execute(
            select(Student.alone_permitted_at, Student.alone_permitted_by_user_id, notice).where(
                Student.id == child.id
            )
        )
    ).one()
    return Settings(
        children,
        child,
        tuple(Adult(p.id, p.name, p.relation) for p in people),
        state[0],
        state[1] == member.user_id,
        bool(state[2]),
    )


async def _guarded(
    session: AsyncSession, member: Member | None, student_id: int, pressed: str | None
) -> tuple[Member, Child, list[Child]] | None:
    child = await guard.child(session, member, student_id, action=PICKUP_REFUSED, pressed=pressed)
    if child is None or member is None:
        return None
    return member, child, await guard.children(session, member)


def clean(text: str, limit: int) -> str | None:
    """A typed name or relation, on one line; None when empty or too long."""
    value = " ".join(text.split())
    return value if 0 < len(value) <= limit else None


async def add_adult(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    name: str,
    relation: str | None,
    *,
    now: dt.datetime,
    pressed: str | None = None,
) -> Changed | None:
    """Put an adult on file to collect the child; the other guardians are told. None
    (refused, audited) if the child is not the member's."""
    found = await _guarded(session, member, student_id, pressed)
    if found is None:
        return None
    member, child, children = found
    before = await _settings(session, member, children, child)
    named = clean(name, NAME_MAX)
    kin = clean(relation, RELATION_MAX) if relation is not None else None
    if named is None or (relation is not None and kin is None):
        return Changed(Change.BAD_NAME, before)
    if len(before.adults) >= MAX_ADULTS:
        return Changed(Change.FULL, before)
    twin = next((a for a in before.adults if a.name == named and a.relation == kin), None)
    if twin is not None:  # a double submit, or the other guardian added them already
        return Changed(Change.ALREADY, before, twin)
    person = PickupPerson(
        school_id=child.school_id,
        student_id=child.id,
        name=named,
        relation=kin,
        added_by_user_id=member.user_id,
        created_at=now,
    )
    session.add(person)
    await session.flush()
    adult = Adult(person.id, named, kin)
    audit.record(
        session,
        child.school_id,
        "pickup.adult_added",
        actor_user_id=member.user_id,
        target=("student", child.id),
        details={"pickup_person_id": person.id},
    )
    await _tell_family(session, member, child, FAMILY_ADDED, f"add:{person.id}", adult)
    return Changed(Change.DONE, replace(before, adults=(*before.adults, adult)), adult)


async def remove_adult(
    session: AsyncSession,
    member: Member | None,
    person_id: int,
    *,
    now: dt.datetime,
    pressed: str | None = None,
) -> Changed | None:
    """Take an adult off file (compare-and-set: of two presses, one removes, the other is
    told it was done already). None (refused, audited) if not of the member's children."""
    student_id = await session.scalar(
        select(PickupPerson.student_id).where(PickupPerson.id == person_id)
    )
    if student_id is None:
        guard.refuse(session, member, PICKUP_REFUSED, pressed)
        return None
    found = await _guarded(session, member, student_id, pressed)
    if found is None:
        return None
    member, child, children = found
    person = await session.scalar(select(PickupPerson).where(PickupPerson.id == person_id))
    assert person is not None
    adult = Adult(person.id, person.name, person.relation)
    removed = await session.execute(
        update(PickupPerson)
        .where(PickupPerson.id == person_id, PickupPerson.removed_at.is_(None))
        .values(removed_at=now)
        .execution_options(synchronize_session=False)
    )
    won = getattr(removed, "rowcount", 0) == 1
    if won:
        set_committed_value(person, "removed_at", now)
        audit.record(
            session,
            child.school_id,
            "pickup.adult_removed",
            actor_user_id=member.user_id,
            target=("student", child.id),
            details={"pickup_person_id": person_id},
        )
        await _tell_family(session, member, child, FAMILY_REMOVED, f"remove:{person_id}", adult)
    after = await _settings(session, member, children, child)
    return Changed(Change.DONE if won else Change.ALREADY, after, adult)


async def permit_alone(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    allowed: bool,
    *,
    now: dt.datetime,
    pressed: str | None = None,
) -> Changed | None:
    """Give or withdraw the standing permission to go home alone: recorded with the guardian
    and the time, audited, and told to the other guardians. Compare-and-set: a permission
    given (or withdrawn) already changes nothing. None (refused, audited) if not their child."""
    found = await _guarded(session, member, student_id, pressed)
    if found is None:
        return None
    member, child, children = found
    condition = (
        Student.alone_permitted_at.is_(None)
        if allowed
        else Student.alone_permitted_at.is_not(None)
    )
    changed = await session.execute(
        update(Student)
        .where(Student.id == child.id, condition)
        .values(
            alone_permitted_at=now if allowed else None,
            alone_permitted_by_user_id=member.user_id if allowed else None,
        )
        .execution_options(synchronize_session=False)
    )
    won = getattr(changed, "rowcount", 0) == 1
    if won:
        audit.record(
            session,
            child.school_id,
            "pickup.alone_permitted" if allowed else "pickup.alone_withdrawn",
            actor_user_id=member.user_id,
            target=("student", child.id),
            details={"at": now.isoformat()},
        )
        template = FAMILY_ALONE_ON if allowed else FAMILY_ALONE_OFF
        key = f"alone:{int(allowed)}:{int(now.timestamp())}"
        await _tell_family(session, member, child, template, key, None)
    after = await _settings(session, member, children, child)
    return Changed(Change.DONE if won else Change.ALREADY, after)


async def _tell_family(
    session: AsyncSession,
    member: Member,
    child: Child,
    template: str,
    key: str,
    adult: Adult | None,
) -> None:
    params: dict[str, Any] = {"child": child.name}
    if adult is not None:
        params |= {"name": adult.name, "relation": relation_param(adult.relation)}
    await family.tell_other_guardians(
        session,
        child.school_id,
        child.id,
        member.user_id,
        kind="pickup",
        template=template,
        params=params,
        dedupe=f"pickup:{child.id}:{key}",
    )
