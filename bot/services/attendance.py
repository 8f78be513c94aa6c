"""The roll: attendance marked by the teacher, an append-only log, and the alerts it causes.

Codes are data (`AttendanceCode`, seeded per school from `DEFAULT_CODES` the first time a
school needs them). Every mark and correction is a new `AttendanceMark` row (who, when, the code
before and after); the latest per session and child is the child's status.

Submitting a roll is compare-and-set on the session's `roll_version`: the teacher saves what
they saw, and if another device saved the roll in between, nothing is written and the teacher
sees the roll as it now is. In the same transaction:

- a child newly marked with an alerting code (absent) and no leave on file is an
  **unexplained absence**: each guardian gets an urgent message at once, with a button to give
  the reason (`give_reason`, which tells the teacher);
- a child who had been reported absent and is now marked present (or late, or collected)
  gets a short correction to the same guardians;
- a child absent on the school's `absence_streak` session days in a row is flagged to the
  head teacher and the admins.

An absence covered by a leave stays silent: the guardian told the school first.

    roll = await attendance.open_roll(session, member, course_id, date, today)
    result = await attendance.submit(session, member, course_id, date, marks, roll.version, now)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import audit, family, guard, outbox, sessions
from bot.services.catalogue import CourseInfo
from bot.services.members import Member
from bot.services.outbox import NewMessage
from bot.services.sessions import Access, Running
from storage.models import (
    AttendanceCode,
    AttendanceMark,
    Course,
    Leave,
    Priority,
    Role,
    School,
    SchoolClass,
    Session,
    Student,
    Teacher,
    User,
    UserRole,
)

REFUSED = "attendance.refused"


@dataclass(frozen=True)
class CodeSpec:
    code: str
    emoji: str
    label: str  # an English msgid
    words: tuple[str, ...]  # what a teacher may type for it (any case), beside the code
    present: bool
    alerts: bool = False
    cycle: int | None = None


# The codes a new school starts with. A school may rename, add or reorder them in its table;
# the code names below are the ones Kehou itself sets from guardians' requests.
PRESENT, ABSENT, LATE, LEAVE, EARLY = "present", "absent", "late", "leave", "early"
DEFAULT_CODES = (
    CodeSpec(PRESENT, "✅", N_("Present"), ("p", "到", "出勤", "在"), True, cycle=1),
    CodeSpec(ABSENT, "❌", N_("Absent"), ("a", "缺", "缺勤", "未到"), False, alerts=True, cycle=2),
    CodeSpec(LATE, "⏰", N_("Late"), ("l", "迟", "迟到"), True, cycle=3),
    CodeSpec(LEAVE, "📝", N_("On leave"), ("excused", "假", "请假"), False),
    CodeSpec(EARLY, "🚗", N_("Picked up early"), ("e", "早接", "提前接", "早退"), True),
)

ALERT = N_(
    "⚠️ {child} is not at {course} today ({start}–{end}, {venue}) and no leave is on file.\n"
    "Teacher: {teacher}\n"
    "If you know why, please tell the teacher with the button below."
)
CORRECTION = N_(
    "✅ Correction: {child} is at {course} after all. {teacher} marked {child} “{status}” at "
    "{time}. Sorry for the worry."
)
REASON_TO_TEACHER = N_(
    "📝 {child}'s guardian gave the reason for missing {course} today: {reason}"
)
REASON_TO_FAMILY = N_(
    "👪 {child}'s other guardian told the teacher why {child} missed {course}: {reason}"
)
STREAK = N_(
    "📌 {child} ({klass}) has been absent without leave on {days} session days in a row, the "
    "last today ({course}). Please check with the family."
)
# The reasons a guardian can give with one press (anything else is typed).
REASONS = (
    ("ill", N_("Ill")),
    ("family", N_("Family matter")),
    ("home", N_("Already home with us")),
    ("forgot", N_("Forgot to file a leave")),
)
REASON_MAX = 200


# --- codes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    code: str
    emoji: str
    label: str
    words: tuple[str, ...]
    present: bool
    alerts: bool
    cycle: int | None


@dataclass(frozen=True)
class Codes:
    """A school's codes, in their order."""

    all: tuple[Code, ...]

    def get(self, code: str | None) -> Code | None:
        return next((c for c in self.all if c.code == code), None)

    def named(self, word: str) -> Code | None:
        """The code a typed word means (its name, label or one of its words), any case."""
        word = word.casefold()
        return next(
            (
                c
                for c in self.all
                if word in (c.code, c.label.casefold()) or word in (w.casefold() for w in c.words)
            ),
            None,
        )

    def next(self, code: str | None) -> str:
        """The code one tap moves to: along the cycle, back to its start; a code outside the
        cycle (a leave, an early pick-up) and an unmarked child go to its start."""
        cycle = sorted((c for c in self.all if c.cycle is not None), key=lambda c: c.cycle or 0)
        current = self.get(code)
        if current is None or current.cycle is None:
            return cycle[0].code
        index = cycle.index(current)
        return cycle[(index + 1) % len(cycle)].code


async def codes(session: AsyncSession, school_id: int) -> Codes:
    """The school's codes, seeding the defaults the first time (insert-or-ignore)."""
    rows = list(
        (
            await session.scalars(
                select(AttendanceCode)
                .where(AttendanceCode.school_id == school_id)
                .order_by(AttendanceCode.position, AttendanceCode.id)
            )
        ).all()
    )
    if not rows:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await session.execute(
            insert(AttendanceCode)
            .values(
                [
                    {
                        "school_id": school_id,
                        "code": spec.code,
                        "emoji": spec.emoji,
                        "label": spec.label,
                        "words": list(spec.words),
                        "present": spec.present,
                        "alerts": spec.alerts,
                        "cycle": spec.cycle,
                        "position": index,
                    }
                    for index, spec in enumerate(DEFAULT_CODES)
                ]
            )
            .on_conflict_do_nothing(index_elements=["school_id", "code"])
        )
        return await codes(session, school_id)
    return Codes(
        tuple(
            Code(r.code, r.emoji, r.label, tuple(r.words or ()), r.present, r.alerts, r.cycle)
            for r in rows
        )
    )


# --- the roll ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    id: int
    code: str
    note: str | None
    alerted: bool
    at: dt.datetime


@dataclass(frozen=True)
class Line:
    """One child on the roll: their number, the saved mark, and what guardians filed."""

    number: int
    student_id: int
    name: str
    class_id: int
    saved: Mark | None
    leave: Leave | None  # a leave or an early pick-up for this session (or before it)
    starts_at: dt.time | None = None  # the session's start

    @property
    def gone(self) -> bool:
        """Not expected at all: on leave, or collected before the session starts."""
        if self.leave is None:
            return False
        pickup = self.leave.pickup_at
        return pickup is None or (self.starts_at is not None and pickup <= self.starts_at)

    @property
    def proposed(self) -> str | None:
        """What the roll shows before the teacher marks: the saved code, else the guardian's."""
        if self.saved is not None:
            return self.saved.code
        if self.leave is not None:
            return LEAVE if self.gone else EARLY
        return None


@dataclass(frozen=True)
class Roll:
    running: Running
    session_id: int
    version: int
    submitted_at: dt.datetime | None
    lines: list[Line]
    codes: Codes
    teacher: str | None

    @property
    def course(self) -> CourseInfo:
        return self.running.course

    @property
    def editable(self) -> bool:
        return self.running.access is Access.MARK


def _latest(rows: Iterable[AttendanceMark]) -> dict[int, Mark]:
    found: dict[int, Mark] = {}
    for r in sorted(rows, key=lambda r: r.id):
        found[r.student_id] = Mark(r.id, r.code, r.note, r.alerted, r.created_at)
    return found


async def current(session: AsyncSession, session_id: int) -> dict[int, Mark]:
    """Student id → their latest mark in the session (the status the log derives)."""
    rows = await session.scalars(
        select(AttendanceMark).where(AttendanceMark.session_id == session_id)
    )
    return _latest(rows.all())


async def leaves_for(
    session: AsyncSession,
    student_ids: Sequence[int],
    date: dt.date,
    period: int,
    starts_at: dt.time | None = None,
) -> dict[int, Leave]:
    """The leaves and early pick-ups guardians filed that cover a session of `period`, and
    the pick-ups of an earlier period at or before `starts_at` (the child is gone by then)."""
    if not student_ids:
        return {}
    covers = Leave.period.is_(None) | (Leave.period == period)
    if starts_at is not None:
        covers = covers | (Leave.pickup_at.is_not(None) & (Leave.pickup_at <= starts_at))
    rows = await session.scalars(
        select(Leave)
        .where(
            Leave.student_id.in_(list(student_ids)),
            Leave.date == date,
            Leave.cancelled_at.is_(None),
            covers,
        )
        .order_by(Leave.id)
    )
    return {leave.student_id: leave for leave in rows.all()}


async def open_roll(
    session: AsyncSession, member: Member, course_id: int, date: dt.date, today: dt.date
) -> Roll | None:
    """The roll of one session as the member may see it; None (refused, audited) otherwise.

    A head teacher who does not teach the course sees only their own class's children.
    """
    running = await sessions.find(session, member, course_id, date, today)
    if running is None:
        guard.refuse(session, member, REFUSED)
        return None
    row = await sessions.materialise(session, running.course, date)
    children = await sessions.roster(session, course_id)
    if running.access is Access.VIEW and not member.has(Role.ADMIN):
        mine = await sessions.teacher_ids(session, member)
        if running.course.teacher_id not in mine:
            classes = await sessions.head_of(session, member)
            children = [c for c in children if c.class_id in classes]
    ids = [c.id for c in children]
    saved = await current(session, row.id)
    course = running.course
    filed = await leaves_for(session, ids, date, course.period, course.starts_at)
    lines = [
        Line(n, c.id, c.name, c.class_id, saved.get(c.id), filed.get(c.id), course.starts_at)
        for n, c in enumerate(children, start=1)
    ]
    return Roll(
        running,
        row.id,
        row.roll_version,
        row.roll_submitted_at,
        lines,
        await codes(session, member.school_id),
        running.course.teacher,
    )


# --- submitting -------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    SAVED = "saved"
    CONFLICT = "conflict"  # another device saved the roll first: nothing written
    UNMARKED = "unmarked"  # some children have no mark yet: nothing written
    REFUSED = "refused"


@dataclass
class Submitted:
    outcome: Outcome
    roll: Roll | None = None
    changed: int = 0
    alerts: list[int] = field(default_factory=list)  # children whose guardians are alerted
    corrections: list[int] = field(default_factory=list)
    flagged: list[int] = field(default_factory=list)  # children on an absence streak
    unmarked: list[int] = field(default_factory=list)  # roll numbers


async def submit(
    session: AsyncSession,
    member: Member,
    course_id: int,
    date: dt.date,
    marks: dict[int, str],
    version: int,
    now: dt.datetime,
    *,
    source: str = "roll",
) -> Submitted:
    """Save the roll as the teacher marked it (`marks`: student id → code, for every child the
    roll shows without a proposed code) if it is still at `version`; then alert, correct and
    flag. Codes not of the school and children not on the roll are ignored by the caller's
    parser; here they refuse the whole submission."""
    today = await sessions.local_today(session, member.school_id, now)
    roll = await open_roll(session, member, course_id, date, today)
    if roll is None or not roll.editable:
        if roll is not None:
            guard.refuse(session, member, REFUSED)
        return Submitted(Outcome.REFUSED)
    on_roll = {line.student_id: line for line in roll.lines}
    if any(s not in on_roll or roll.codes.get(c) is None for s, c in marks.items()):
        guard.refuse(session, member, REFUSED)
        return Submitted(Outcome.REFUSED, roll)
    final = {line.student_id: marks.get(line.student_id) or line.proposed for line in roll.lines}
    unmarked = [line.number for line in roll.lines if final[line.student_id] is None]
    if unmarked:
        return Submitted(Outcome.UNMARKED, roll, unmarked=unmarked)
    moved = await session.execute(
        update(Session)
        .where(Session.id == roll.session_id, Session.roll_version == version)
        .values(
            roll_version=Session.roll_version + 1,
            roll_submitted_at=func.coalesce(Session.roll_submitted_at, now),
            roll_submitted_by_user_id=func.coalesce(
                Session.roll_submitted_by_user_id, member.user_id
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        fresh = await open_roll(session, member, course_id, date, today)
        return Submitted(Outcome.CONFLICT, fresh)
    result = Submitted(Outcome.SAVED)
    new_marks: list[tuple[Line, AttendanceMark]] = []
    for line in roll.lines:
        code = final[line.student_id]
        assert code is not None
        before = line.saved.code if line.saved else None
        if code == before:
            continue
        mark = AttendanceMark(
            school_id=member.school_id,
            session_id=roll.session_id,
            student_id=line.student_id,
            code=code,
            previous=before,
            source=source,
            actor_user_id=member.user_id,
            created_at=now,
            alerted=False,
        )
        session.add(mark)
        new_marks.append((line, mark))
    result.changed = len(new_marks)
    if new_marks:
        await session.flush()
        await _tell_guardians(session, member, roll, new_marks, now, result)
        await _flag_streaks(session, member.school_id, roll, result.alerts, date)
    audit.record(
        session,
        member.school_id,
        "attendance.submitted",
        actor_user_id=member.user_id,
        target=("session", roll.session_id),
        details={"changed": result.changed, "alerts": len(result.alerts), "source": source},
    )
    # The roll as saved, from what was just written (no second read).
    written = {line.student_id: mark for line, mark in new_marks}
    result.roll = dataclasses.replace(
        roll,
        version=version + 1,
        submitted_at=roll.submitted_at or now,
        lines=[
            dataclasses.replace(
                line,
                saved=Mark(m.id, m.code, None, m.alerted, now)
                if (m := written.get(line.student_id)) is not None
                else line.saved,
            )
            for line in roll.lines
        ],
    )
    return result


async def _tell_guardians(
    session: AsyncSession,
    member: Member,
    roll: Roll,
    new_marks: list[tuple[Line, AttendanceMark]],
    now: dt.datetime,
    result: Submitted,
) -> None:
    """The urgent alerts for unexplained absences and the corrections, in one statement."""
    course = roll.course
    alerting, correcting = [], []
    for line, mark in new_marks:
        code = roll.codes.get(mark.code)
        before = roll.codes.get(line.saved.code) if line.saved else None
        covered = line.gone
        if code is not None and code.alerts and not (before and before.alerts) and not covered:
            alerting.append((line, mark))
        elif line.saved is not None and line.saved.alerted and code is not None and code.present:
            correcting.append((line, mark))
    if not alerting and not correcting:
        return
    guardians = await family.guardian_chats(
        session, [line.student_id for line, _ in alerting + correcting]
    )
    common = {
        "course": course.name,
        "teacher": roll.teacher or "",
        "start": {"$time": course.starts_at.isoformat("minutes")},
        "end": {"$time": course.ends_at.isoformat("minutes")},
        "venue": course.venue,
    }
    messages = []
    for line, mark in alerting:
        mark.alerted = True
        result.alerts.append(line.student_id)
        for user_id, chat_id in guardians.get(line.student_id, []):
            messages.append(
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="absence",
                    priority=Priority.URGENT,
                    template=ALERT,
                    params={**common, "child": line.name},
                    buttons=[[{"label": N_("Give the reason"), "data": f"ab:r:{mark.id}"}]],
                    dedupe_key=f"absence:{mark.id}:{user_id}",
                    digest=False,
                )
            )
    zone = await sessions.zone_of(session, member.school_id)
    clock = now.astimezone(zone).time().isoformat("minutes")
    for line, mark in correcting:
        result.corrections.append(line.student_id)
        code = roll.codes.get(mark.code)
        for user_id, chat_id in guardians.get(line.student_id, []):
            messages.append(
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="absence",
                    priority=Priority.URGENT,
                    template=CORRECTION,
                    params={
                        **common,
                        "child": line.name,
                        "status": {"$msgid": code.label if code else mark.code},
                        "time": {"$time": clock},
                    },
                    dedupe_key=f"absence-fixed:{mark.id}:{user_id}",
                    digest=False,
                )
            )
    await outbox.enqueue_many(session, member.school_id, messages, now=now)


async def _flag_streaks(
    session: AsyncSession, school_id: int, roll: Roll, absent: list[int], date: dt.date
) -> None:
    """Flag children absent (an alerting code) on the school's streak of session days."""
    if not absent:
        return
    streak = await session.scalar(select(School.absence_streak).where(School.id == school_id))
    if not streak or streak < 1:
        return
    alerting = {c.code for c in roll.codes.all if c.alerts}
    rows = await session.execute(
        select(
            AttendanceMark.student_id, AttendanceMark.session_id, AttendanceMark.code, Session.date
        )
        .join(Session, Session.id == AttendanceMark.session_id)
        .where(AttendanceMark.student_id.in_(absent), Session.date <= date)
        .order_by(AttendanceMark.id)
    )
    # The latest mark per child and session, then per child and day: absent when every
    # session of the day with a roll has the child absent.
    latest: dict[tuple[int, int], tuple[str, dt.date]] = {}
    for student_id, session_id, code, day in rows.all():
        latest[(student_id, session_id)] = (code, day)
    by_day: dict[int, dict[dt.date, bool]] = {}
    for (student_id, _), (code, day) in latest.items():
        days = by_day.setdefault(student_id, {})
        days[day] = days.get(day, True) and code in alerting
    flagged = []
    for student_id in absent:
        recent = sorted(by_day.get(student_id, {}).items(), reverse=True)[:streak]
        if len(recent) == streak and all(away for _, away in recent):
            flagged.append(student_id)
    if flagged:
        await _tell_school(session, school_id, roll, flagged, streak, date)


async def _tell_school(
    session: AsyncSession,
    school_id: int,
    roll: Roll,
    flagged: list[int],
    streak: int,
    date: dt.date,
) -> None:
    """The flag to each flagged child's head teacher and to the school's admins."""
    children = (
        await session.execute(
            select(Student.id, Student.name, SchoolClass.name, Teacher.user_id)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .outerjoin(Teacher, Teacher.id == SchoolClass.head_teacher_id)
            .where(Student.id.in_(flagged))
        )
    ).all()
    admins = (
        await session.execute(
            select(User.id, User.chat_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.school_id == school_id,
                UserRole.role == Role.ADMIN,
                User.chat_id.is_not(None),
            )
        )
    ).all()
    head_users = [row[3] for row in children if row[3] is not None]
    heads: dict[int, int] = {
        user_id: chat_id
        for user_id, chat_id in (
            await session.execute(
                select(User.id, User.chat_id).where(
                    User.id.in_(head_users), User.chat_id.is_not(None)
                )
            )
        ).all()
        if chat_id is not None
    }
    messages = []
    for student_id, name, klass, head_user in children:
        readers: dict[int, int] = {u: c for u, c in admins if c is not None}
        if head_user in heads:
            readers[head_user] = heads[head_user]
        for user_id, chat_id in readers.items():
            messages.append(
                NewMessage(
                    chat_id=chat_id,
                    user_id=user_id,
                    kind="absence-streak",
                    priority=Priority.INTERACTIVE,
                    template=STREAK,
                    params={
                        "child": name,
                        "klass": klass,
                        "days": streak,
                        "course": roll.course.name,
                    },
                    dedupe_key=f"streak:{student_id}:{date.isoformat()}:{user_id}",
                    digest=False,
                )
            )
    await outbox.enqueue_many(session, school_id, messages)


# --- the shorthand ----------------------------------------------------------------------------


class ShorthandError(enum.StrEnum):
    NO_SESSION = "no_session"  # the words name none of the member's sessions of the day
    AMBIGUOUS_SESSION = "ambiguous_session"
    NO_CODE = "no_code"  # no status word
    NO_CHILD = "no_child"  # a number or name that is on no line
    AMBIGUOUS_CHILD = "ambiguous_child"


@dataclass(frozen=True)
class Shorthand:
    """`/attendance 乐高 absent 3 7 late 12` read against the day's rolls."""

    roll: Roll | None = None
    marks: dict[int, str] = field(default_factory=dict)  # student id → code
    error: ShorthandError | None = None
    words: tuple[str, ...] = ()  # what the error is about: the word typed, the matches


_NUMBER = re.compile(r"^\d{1,3}$")


def read_shorthand(text: str, rolls: Sequence[Roll]) -> Shorthand:
    """Read the words after /attendance: an optional course fragment, then one or more status
    words each followed by roll numbers or name fragments. Nothing is guessed: any word that
    matches two sessions or two children is an error naming them."""
    words = text.replace(",", " ").replace("，", " ").replace("、", " ").split()
    if not rolls:
        return Shorthand(error=ShorthandError.NO_SESSION)
    codes_ = rolls[0].codes
    first_code = next((i for i, w in enumerate(words) if codes_.named(w)), None)
    if first_code is None:
        return Shorthand(error=ShorthandError.NO_CODE)
    fragment = " ".join(words[:first_code]).casefold()
    chosen = [r for r in rolls if r.editable and (not fragment or _names(r.course, fragment))]
    if not chosen:
        return Shorthand(error=ShorthandError.NO_SESSION, words=(fragment,))
    if len(chosen) > 1:
        # No course named: the session whose roll has every child named by name, if only one
        # has (roll numbers alone cannot tell two sessions apart).
        named = [w for w in words[first_code:] if not codes_.named(w)]
        fits = [
            read
            for r in chosen
            if named and not any(_NUMBER.match(w) for w in named)
            if (read := _read_roll(r, words[first_code:])).error is None
        ]
        if len(fits) == 1:
            return fits[0]
        return Shorthand(
            error=ShorthandError.AMBIGUOUS_SESSION,
            words=tuple(r.course.name for r in chosen),
        )
    return _read_roll(chosen[0], words[first_code:])


def _read_roll(roll: Roll, words: Sequence[str]) -> Shorthand:
    """The status words and children after the course words, against one roll."""
    codes_ = roll.codes
    marks: dict[int, str] = {}
    code: Code | None = None
    for word in words:
        named = codes_.named(word)
        if named is not None:
            code = named
            continue
        assert code is not None
        if _NUMBER.match(word):
            line = next((x for x in roll.lines if x.number == int(word)), None)
            if line is None:
                return Shorthand(roll, error=ShorthandError.NO_CHILD, words=(word,))
            marks[line.student_id] = code.code
            continue
        matches = [x for x in roll.lines if word.casefold() in x.name.casefold()]
        if not matches:
            return Shorthand(roll, error=ShorthandError.NO_CHILD, words=(word,))
        if len(matches) > 1:
            return Shorthand(
                roll,
                error=ShorthandError.AMBIGUOUS_CHILD,
                words=(word, *(f"{x.number} {x.name}" for x in matches)),
            )
        marks[matches[0].student_id] = code.code
    return Shorthand(roll, marks)


def _names(course: CourseInfo, fragment: str) -> bool:
    return fragment in course.name.casefold() or fragment == course.code.casefold()


def fill_rest(roll: Roll, marks: dict[int, str]) -> dict[int, str]:
    """The shorthand's meaning for the children it does not name: on a roll not yet saved,
    what guardians filed, else present; on a saved roll, unchanged."""
    full = dict(marks)
    for line in roll.lines:
        if line.student_id not in full and line.proposed is None:
            full[line.student_id] = PRESENT
    return full


# --- the guardian's reason --------------------------------------------------------------------


@dataclass(frozen=True)
class Reasoned:
    child: str
    course: str
    reason: str


async def give_reason(
    session: AsyncSession,
    member: Member | None,
    mark_id: int,
    reason: str,
    now: dt.datetime,
    *,
    pressed: str | None = None,
) -> Reasoned | None:
    """A guardian gives the reason for an absence they were alerted to: a new log row (same
    code, the reason as its note), told to the teacher, the head teacher and the other
    guardians. None (refused, audited) when the mark is not of one of the member's children."""
    reason = reason.strip()[:REASON_MAX]
    user_id = guard.parent(member)
    row = None
    if user_id is not None and reason:
        query = select(*guard.child_columns(), AttendanceMark, Session.course_id)
        row = (
            await session.execute(
                guard.of_guardian(query, user_id)
                .join(AttendanceMark, AttendanceMark.student_id == Student.id)
                .join(Session, Session.id == AttendanceMark.session_id)
                .where(AttendanceMark.id == mark_id)
            )
        ).first()
    if row is None:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    assert member is not None
    child = guard.Child(*row[:6])
    mark: AttendanceMark = row[6]
    course_id: int = row[7]
    session.add(
        AttendanceMark(
            school_id=child.school_id,
            session_id=mark.session_id,
            student_id=child.id,
            code=mark.code,
            previous=mark.code,
            source="guardian",
            note=reason,
            actor_user_id=user_id,
            created_at=now,
            alerted=mark.alerted,  # still the absence the guardians were alerted to
        )
    )
    course_name, teacher_user, head_user = (
        await session.execute(
            select(
                Course.name,
                select(Teacher.user_id).where(Teacher.id == Course.teacher_id).scalar_subquery(),
                select(Teacher.user_id)
                .join(SchoolClass, SchoolClass.head_teacher_id == Teacher.id)
                .join(Student, Student.class_id == SchoolClass.id)
                .where(Student.id == child.id)
                .scalar_subquery(),
            ).where(Course.id == course_id)
        )
    ).one()
    readers = [u for u in (teacher_user, head_user) if u is not None]
    staff = (
        await session.execute(
            select(User.id, User.chat_id).where(User.id.in_(readers), User.chat_id.is_not(None))
        )
    ).all()
    params = {"child": child.name, "course": course_name, "reason": {"$msgid": reason}}
    await family.tell(
        session,
        child.school_id,
        [(u, c) for u, c in staff if c is not None],
        kind="absence-reason",
        template=REASON_TO_TEACHER,
        params=params,
        dedupe=f"reason:{mark_id}:{now.timestamp():.0f}",
    )
    await family.tell_other_guardians(
        session,
        child.school_id,
        child.id,
        user_id,
        kind="absence-reason",
        template=REASON_TO_FAMILY,
        params=params,
        dedupe=f"reason-family:{mark_id}:{now.timestamp():.0f}",
    )
    return Reasoned(child.name, course_name, reason)
