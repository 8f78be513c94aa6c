"""Term-end ratings (双评价): the window, the anonymous ballots, and what may be shown of them.

Families rate each course their child took this term: content, teaching, and care and safety
(1–5 each), whether they would sign up again, the child's own view (three faces, answered with
the child) and an optional comment. What they answered and who answered are kept apart:

- A ballot (`Ballot`) carries no user, child or time. While the window is open its token is an
  HMAC of the child and course under the term's key, so the family can come back and change
  it; closing the window re-keys every ballot at random and destroys the key.
- That a family has rated is in `RatingTurnout`, for reminders and turnout only.
- Results are shown only for a course with at least `rating_min_ballots` complete ballots from
  at least `rating_min_share` % of its families (never below 5 and 20 %), and a comment only
  after an admin has released it. A teacher's or provider's figures pool only courses that are
  shown, so a hidden course cannot be worked out by subtraction.

See docs/RATINGS.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import html
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_
from bot.services import audit, deadlines, guard, outbox
from bot.services import family as family_news
from bot.services.members import Member
from bot.services.outbox import NewMessage
from storage.models import (
    Again,
    Ballot,
    CommentStatus,
    Course,
    Enrolment,
    EnrolmentStatus,
    Face,
    Guardianship,
    RatingTurnout,
    Role,
    School,
    Student,
    Teacher,
    TeacherKind,
    Term,
    User,
)

ASPECTS = ("content", "teaching", "safety")
SCORES = (1, 2, 3, 4, 5)
RESULTS_MIN_BALLOTS = 5  # the policy's floor: a school may ask for more, never fewer
RESULTS_MIN_SHARE = 20  # %


@dataclass(frozen=True)
class Thresholds:
    ballots: int = RESULTS_MIN_BALLOTS
    share: int = RESULTS_MIN_SHARE  # % of the families asked

    @classmethod
    def of(cls, school: School) -> Thresholds:
        return cls(
            max(school.rating_min_ballots, RESULTS_MIN_BALLOTS),
            max(school.rating_min_share, RESULTS_MIN_SHARE),
        )

    def met(self, ballots: int, families: int) -> bool:
        return ballots >= self.ballots and families > 0 and ballots * 100 >= self.share * families


@dataclass(frozen=True)
class Result:
    """A course's ratings. When `shown` is False only the counts are filled: nothing of what
    was answered may be shown (too few ballots, or too small a share of the families)."""

    course_id: int
    families: int  # asked to rate (children who took the course)
    ballots: int  # complete ballots
    shown: bool
    # aspect → how many gave 1, 2, 3, 4, 5 (index 0 is the count of 1s)
    scores: dict[str, tuple[int, ...]] = field(default_factory=dict)
    again: dict[Again, int] = field(default_factory=dict)
    faces: dict[Face, int] = field(default_factory=dict)

    def mean(self, aspect: str) -> float | None:
        counts = self.scores.get(aspect)
        if not counts or not sum(counts):
            return None
        return sum(score * n for score, n in zip(SCORES, counts, strict=True)) / sum(counts)

    @property
    def overall(self) -> float | None:
        """The mean of the aspects' means (each aspect weighs the same)."""
        means = [m for m in (self.mean(a) for a in ASPECTS) if m is not None]
        return sum(means) / len(means) if means else None

    @property
    def turnout(self) -> float:
        return self.ballots / self.families if self.families else 0.0


def complete() -> list[ColumnElement[bool]]:
    """The conditions of a complete ballot: every aspect scored and "again" answered."""
    return [
        Ballot.content.is_not(None),
        Ballot.teaching.is_not(None),
        Ballot.safety.is_not(None),
        Ballot.again.is_not(None),
    ]


async def course_results(
    session: AsyncSession,
    school: School,
    term_id: int,
    course_ids: Sequence[int] | None = None,
) -> dict[int, Result]:
    """Every course of the term that families were asked about (or only `course_ids`).

    Nothing is shown before the window has closed: a result that moves with each ballot would
    tell anyone who knows who just rated what they answered."""
    asked = select(RatingTurnout.course_id, func.count()).where(
        RatingTurnout.term_id == term_id, RatingTurnout.school_id == school.id
    )
    if course_ids is not None:
        asked = asked.where(RatingTurnout.course_id.in_(course_ids))
    families = dict(
        (c, n) for c, n in await session.execute(asked.group_by(RatingTurnout.course_id))
    )
    rows = select(
        Ballot.course_id, Ballot.content, Ballot.teaching, Ballot.safety, Ballot.again, Ballot.face
    ).where(Ballot.term_id == term_id, Ballot.school_id == school.id, *complete())
    if course_ids is not None:
        rows = rows.where(Ballot.course_id.in_(course_ids))
    tallies: dict[int, _Tally] = {}
    for course_id, content, teaching, safety, again, face in await session.execute(rows):
        assert content and teaching and safety and again  # complete(): all are given
        tallies.setdefault(course_id, _Tally()).add((content, teaching, safety), again, face)
    closed = await session.scalar(select(Term.rating_closed_at).where(Term.id == term_id))
    limits = Thresholds.of(school) if closed is not None else Thresholds(2**31, 100)
    results = {}
    for course_id, asked_n in families.items():
        tally = tallies.get(course_id, _Tally())
        results[course_id] = tally.result(course_id, asked_n, limits)
    return results


@dataclass
class _Tally:
    ballots: int = 0
    scores: dict[str, Counter[int]] = field(
        default_factory=lambda: {aspect: Counter() for aspect in ASPECTS}
    )
    again: Counter[Again] = field(default_factory=Counter)
    faces: Counter[Face] = field(default_factory=Counter)

    def add(self, scores: Iterable[int], again: Again, face: Face | None) -> None:
        self.ballots += 1
        for aspect, score in zip(ASPECTS, scores, strict=True):
            self.scores[aspect][score] += 1
        self.again[again] += 1
        if face is not None:
            self.faces[face] += 1

    def merge(self, other: _Tally) -> None:
        self.ballots += other.ballots
        for aspect in ASPECTS:
            self.scores[aspect].update(other.scores[aspect])
        self.again.update(other.again)
        self.faces.update(other.faces)

    def result(self, course_id: int, families: int, limits: Thresholds) -> Result:
        if not limits.met(self.ballots, families):
            return Result(course_id, families, self.ballots, shown=False)
        return Result(
            course_id,
            families,
            self.ballots,
            shown=True,
            scores={a: tuple(self.scores[a][s] for s in SCORES) for a in ASPECTS},
            again={a: self.again[a] for a in Again},
            faces={f: self.faces[f] for f in Face},
        )


@dataclass(frozen=True)
class Pooled:
    """Several courses' shown results together (a teacher's, a provider's): `courses` counted,
    `hidden` courses left out because their own results may not be shown."""

    courses: int
    hidden: int
    result: Result | None  # None: no course of theirs may be shown


def pooled(results: Iterable[Result]) -> Pooled:
    """Pool the shown results only: a hidden course's answers never reach a total, so a total
    cannot be used to work them out."""
    tally = _Tally()
    families = shown = hidden = 0
    for result in results:
        if not result.shown:
            hidden += 1
            continue
        shown += 1
        families += result.families
        part = _Tally(ballots=result.ballots)
        for aspect in ASPECTS:
            part.scores[aspect] = Counter(dict(zip(SCORES, result.scores[aspect], strict=True)))
        part.again = Counter(result.again)
        part.faces = Counter(result.faces)
        tally.merge(part)
    if not shown:
        return Pooled(0, hidden, None)
    return Pooled(shown, hidden, tally.result(0, families, Thresholds(0, 0)))


def window_open(term_opened: dt.datetime | None, term_closed: dt.datetime | None) -> bool:
    return term_opened is not None and term_closed is None


# --- the window -------------------------------------------------------------------------------

REFUSED = "ratings.refused"
DEFAULT_DAYS = 7  # a window an admin opens by hand, when the term names no closing day
QUESTIONS = ("content", "teaching", "safety", "again", "face", "comment")
MAX_COMMENT = 500


class Window(enum.StrEnum):
    NOT_SET = "not_set"  # the term names no rating days and nobody opened it
    WAITING = "waiting"  # opens on `rating_opens_on`
    OPEN = "open"
    CLOSED = "closed"


def window_of(term: Term) -> Window:
    if term.rating_closed_at is not None:
        return Window.CLOSED
    if term.rating_opened_at is not None:
        return Window.OPEN
    return Window.WAITING if term.rating_opens_on is not None else Window.NOT_SET


def token(key: str, student_id: int, course_id: int) -> str:
    """The ballot of a child and course while the window is open: an HMAC under the term's key,
    so only someone holding the key (Kehou, until the window closes) can find it."""
    message = f"{student_id}:{course_id}".encode()
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def _asked(term: Term) -> Select[int, int]:
    """(student, course) of every child who took a course of the term: enrolled at the end, or
    withdrawn after the term began. Cancelled courses are not asked about."""
    return (
        select(Enrolment.student_id, Enrolment.course_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(
            Course.term_id == term.id,
            Course.cancelled_at.is_(None),
            or_(
                Enrolment.status == EnrolmentStatus.ENROLLED,
                and_(
                    Enrolment.status == EnrolmentStatus.WITHDRAWN,
                    Enrolment.withdrawn_from > term.starts_on,
                ),
            ),
        )
    )


@dataclass(frozen=True)
class Opened:
    term: str
    closes_on: dt.date
    ballots: int  # child × course pairs asked
    families: int  # guardians invited


async def open_window(
    session: AsyncSession,
    school: School,
    term: Term,
    now: dt.datetime,
    *,
    actor_user_id: int | None = None,
) -> Opened | None:
    """Open the term's window (compare-and-set: None if it was opened before), make an empty
    ballot for every child and course in random order, and invite every guardian."""
    today = now.astimezone(ZoneInfo(school.timezone)).date()
    closes_on = term.rating_closes_on
    if closes_on is None or closes_on < today:
        closes_on = today + dt.timedelta(days=DEFAULT_DAYS)
    key = secrets.token_hex(32)
    opened = await session.execute(
        update(Term)
        .where(Term.id == term.id, Term.rating_opened_at.is_(None))
        .values(rating_opened_at=now, rating_key=key, rating_closes_on=closes_on)
        .execution_options(synchronize_session=False)
    )
    if opened.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.refresh(term)
    pairs: list[tuple[int, int]] = [(s, c) for s, c in await session.execute(_asked(term))]
    if pairs:
        await session.execute(
            insert(RatingTurnout),
            [
                {"term_id": term.id, "course_id": c, "student_id": s, "school_id": school.id}
                for s, c in pairs
            ],
        )
        # Empty ballots for everyone, in an order that says nothing about anyone: which
        # ballots were ever answered, and in which order, is not in the table's layout.
        ballots = [
            {
                "token": token(key, s, c),
                "school_id": school.id,
                "term_id": term.id,
                "course_id": c,
            }
            for s, c in pairs
        ]
        random.SystemRandom().shuffle(ballots)
        await session.execute(insert(Ballot), ballots)
    invited = await _invite(session, school, term, {s for s, _ in pairs}, now)
    audit.record(
        session,
        school.id,
        "ratings.opened",
        actor_user_id=actor_user_id,
        actor_label=None if actor_user_id else "scheduler",
        target=("term", term.id),
        details={"ballots": len(pairs), "invited": invited, "closes_on": closes_on.isoformat()},
    )
    return Opened(term.name, closes_on, len(pairs), invited)


@dataclass(frozen=True)
class Acted:
    term: str
    done: Opened | int | None  # opened, the complete ballots of a closed window, or nothing


async def set_window(
    session: AsyncSession,
    member: Member | None,
    term_id: int,
    now: dt.datetime,
    *,
    opening: bool,
    pressed: str | None = None,
) -> Acted | Refusal:
    """An admin opens or closes a term's window by hand (`open_window`, `close_window`): the
    role and the term's school are checked here, a refusal audited."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return Refusal.NOT_STAFF
    assert member is not None
    term = await session.get(Term, term_id)
    school = await session.get(School, member.school_id)
    if term is None or school is None or term.school_id != member.school_id:
        guard.refuse(session, member, REFUSED, pressed)
        return Refusal.NOT_YOURS
    if opening:
        done: Opened | int | None = await open_window(
            session, school, term, now, actor_user_id=member.user_id
        )
    else:
        done = await close_window(session, school, term, now, actor_user_id=member.user_id)
    return Acted(term.name, done)


INVITE = N_(
    "⭐ <b>Term-end rating: {term}</b>\n"
    "How was this term's after-school service? Please rate each course with your child — "
    "about a minute a course:\n{courses}\n\n"
    "🔒 Anonymous: the school sees only totals, and only for courses enough families rated. "
    "Open until {closes}; you can change your answers until then."
)
REMIND_SOON = N_("⏰ The {term} rating closes in two days ({closes}). Still to rate:\n{courses}")
REMIND_TODAY = N_("⏰ The {term} rating closes tonight. Still to rate:\n{courses}")
START = N_("Rate now")


async def _to_rate(
    session: AsyncSession, term: Term, student_ids: Iterable[int] | None, *, open_only: bool
) -> dict[int, list[tuple[int, str, str]]]:
    """Guardian user id → (chat, child, course) still to rate (`open_only`) or asked."""
    query = (
        select(User.id, User.chat_id, Student.name, Course.name)
        .select_from(RatingTurnout)
        .join(Student, Student.id == RatingTurnout.student_id)
        .join(Course, Course.id == RatingTurnout.course_id)
        .join(Guardianship, Guardianship.student_id == RatingTurnout.student_id)
        .join(User, User.id == Guardianship.user_id)
        .where(RatingTurnout.term_id == term.id, User.chat_id.is_not(None))
        .order_by(User.id, Student.name, Course.name)
    )
    if open_only:
        query = query.where(RatingTurnout.done.is_(False))
    if student_ids is not None:
        query = query.where(RatingTurnout.student_id.in_(list(student_ids)))
    found: dict[int, list[tuple[int, str, str]]] = {}
    for user_id, chat_id, child, course in await session.execute(query):
        assert chat_id is not None
        found.setdefault(user_id, []).append((chat_id, child, course))
    return found


def _lines(items: Sequence[tuple[int, str, str]]) -> str:
    return "\n".join(
        f"• {html.escape(child)} · {html.escape(course)}" for _, child, course in items
    )


def _asking(
    term: Term,
    asked: dict[int, list[tuple[int, str, str]]],
    template: str,
    dedupe: str,
    not_before: dt.datetime | None = None,
) -> list[NewMessage]:
    """One message per guardian naming each child and course in `asked`, with 开始评价."""
    assert term.rating_closes_on is not None
    return [
        NewMessage(
            chat_id=items[0][0],
            user_id=user_id,
            kind="rating",
            template=template,
            params={
                "term": term.name,
                "courses": _lines(items),
                "closes": {"$day": term.rating_closes_on.isoformat()},
            },
            buttons=[[{"label": START, "data": "rt:go"}]],
            dedupe_key=f"{dedupe}:{user_id}",
            not_before=not_before,
        )
        for user_id, items in asked.items()
    ]


async def _invite(
    session: AsyncSession, school: School, term: Term, student_ids: set[int], now: dt.datetime
) -> int:
    """Invite every guardian; opened by an admin late in the evening, the invitations wait
    for the end of the school's quiet hours."""
    if not student_ids:
        return 0
    asked = await _to_rate(session, term, student_ids, open_only=False)
    later = deadlines.out_of_quiet_hours(school, now)
    messages = _asking(term, asked, INVITE, f"rating-open:{term.id}", later)
    await outbox.enqueue_many(session, school.id, messages)
    return len(messages)


async def remind(session: AsyncSession, school: School, term: Term, today: dt.date) -> int:
    """Remind the guardians of children with courses still to rate: two days before the window
    closes and on its last day. Nobody who has finished hears anything."""
    if window_of(term) is not Window.OPEN or term.rating_closes_on is None:
        return 0
    days_left = (term.rating_closes_on - today).days
    if days_left not in (0, 2):
        return 0
    template = REMIND_TODAY if days_left == 0 else REMIND_SOON
    left = await _to_rate(session, term, None, open_only=True)
    messages = _asking(term, left, template, f"rating-remind:{term.id}:{today.isoformat()}")
    await outbox.enqueue_many(session, school.id, messages)
    return len(messages)


async def close_window(
    session: AsyncSession,
    school: School,
    term: Term,
    now: dt.datetime,
    *,
    actor_user_id: int | None = None,
) -> int | None:
    """Close the window (compare-and-set: None if it is not open), destroy the key, drop the
    ballots nobody touched and re-key the others at random, so no ballot can be found from a
    child and course again. Returns the number of complete ballots."""
    closed = await session.execute(
        update(Term)
        .where(
            Term.id == term.id,
            Term.rating_opened_at.is_not(None),
            Term.rating_closed_at.is_(None),
        )
        .values(rating_closed_at=now, rating_key=None)
        .execution_options(synchronize_session=False)
    )
    if closed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await session.refresh(term)
    untouched = [getattr(Ballot, q).is_(None) for q in QUESTIONS]
    await session.execute(delete(Ballot).where(Ballot.term_id == term.id, *untouched))
    old = list(await session.scalars(select(Ballot.token).where(Ballot.term_id == term.id)))
    if old:
        table = cast(Table, Ballot.__table__)
        await session.execute(
            update(table)
            .where(table.c.token == bindparam("p_old"))
            .values(token=bindparam("p_new")),
            [{"p_old": t, "p_new": uuid.uuid4().hex} for t in old],
        )
    complete_n = await session.scalar(
        select(func.count()).where(Ballot.term_id == term.id, *complete())
    )
    audit.record(
        session,
        school.id,
        "ratings.closed",
        actor_user_id=actor_user_id,
        actor_label=None if actor_user_id else "scheduler",
        target=("term", term.id),
        details={"complete": complete_n},
    )
    return int(complete_n or 0)


# --- a family's ballots -----------------------------------------------------------------------


class Refusal(enum.StrEnum):
    NOT_PARENT = "not_parent"
    NOT_OPEN = "not_open"  # no window is open (`Closed` says more)
    NOT_ASKED = "not_asked"  # this child did not take this course this term
    BAD_ANSWER = "bad_answer"
    NOT_STAFF = "not_staff"  # results are for the school's teachers and admins
    NOT_YOURS = "not_yours"  # a teacher asked for a course that is not theirs


@dataclass(frozen=True)
class TermWindow:
    id: int
    name: str
    window: Window
    opens_on: dt.date | None
    closes_on: dt.date | None

    @classmethod
    def of(cls, term: Term) -> TermWindow:
        return cls(
            term.id, term.name, window_of(term), term.rating_opens_on, term.rating_closes_on
        )


@dataclass(frozen=True)
class Item:
    """One course a child is asked about."""

    student_id: int
    child: str
    course_id: int
    course: str
    done: bool


@dataclass(frozen=True)
class Family:
    term: TermWindow
    items: list[Item]

    @property
    def left(self) -> int:
        return sum(not item.done for item in self.items)


@dataclass(frozen=True)
class BallotView:
    term: TermWindow
    item: Item
    answers: dict[str, Any]  # question → answer (None: not answered)

    @property
    def complete(self) -> bool:
        return all(self.answers[q] is not None for q in QUESTIONS[:4])

    def after(self, question: str | None) -> str | None:
        """The next question to ask after `question` (None: from the start): the first not yet
        answered. None when every one has been asked."""
        start = 0 if question is None else QUESTIONS.index(question) + 1
        return next((q for q in QUESTIONS[start:] if self.answers[q] is None), None)


async def window_term(session: AsyncSession, school_id: int, today: dt.date) -> Term | None:
    """The term whose ratings a screen is about: the one with an open window; else the latest
    term whose window has run or is set; else the term running today."""
    terms = list(
        await session.scalars(
            select(Term).where(Term.school_id == school_id).order_by(Term.starts_on.desc())
        )
    )
    for term in terms:
        if window_of(term) is Window.OPEN:
            return term
    for term in terms:
        if term.rating_closed_at is not None or (
            term.rating_opens_on is not None and term.starts_on <= today
        ):
            return term
    return next((t for t in terms if t.starts_on <= today <= t.ends_on), None)


async def last_closed(session: AsyncSession, school_id: int) -> Term | None:
    """The term whose window closed last: the results people read, into the next term."""
    return await session.scalar(
        select(Term)
        .where(Term.school_id == school_id, Term.rating_closed_at.is_not(None))
        .order_by(Term.rating_closed_at.desc(), Term.id.desc())
        .limit(1)
    )


async def family(
    session: AsyncSession, member: Member | None, today: dt.date
) -> Family | Refusal | TermWindow:
    """What the member's children are asked to rate in the open window. A `TermWindow` when no
    window is open (it says when it opens or that it has closed)."""
    user_id = guard.parent(member)
    if member is None or user_id is None:
        guard.refuse(session, member, REFUSED)
        return Refusal.NOT_PARENT
    term = await window_term(session, member.school_id, today)
    if term is None:
        return Refusal.NOT_OPEN
    if window_of(term) is not Window.OPEN:
        return TermWindow.of(term)
    rows = await session.execute(
        select(Student.id, Student.name, Course.id, Course.name, RatingTurnout.done)
        .select_from(RatingTurnout)
        .join(Student, Student.id == RatingTurnout.student_id)
        .join(Course, Course.id == RatingTurnout.course_id)
        .join(
            Guardianship,
            (Guardianship.student_id == Student.id) & (Guardianship.user_id == user_id),
        )
        .where(RatingTurnout.term_id == term.id)
        .order_by(Student.name, Student.id, Course.starts_at, Course.name)
    )
    return Family(TermWindow.of(term), [Item(*row) for row in rows])


async def _item(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    course_id: int,
    pressed: str | None,
) -> tuple[Term, Item] | Refusal:
    """The open term and the child's course, if the member is the child's guardian and the
    child was asked about the course; a refusal (audited when it is not the member's)."""
    child = await guard.child(session, member, student_id, action=REFUSED, pressed=pressed)
    if child is None or member is None:
        return Refusal.NOT_PARENT
    term = await session.scalar(
        select(Term).where(
            Term.school_id == member.school_id,
            Term.rating_opened_at.is_not(None),
            Term.rating_closed_at.is_(None),
        )
    )
    if term is None or term.rating_key is None:
        return Refusal.NOT_OPEN
    row = (
        await session.execute(
            select(Course.name, RatingTurnout.done)
            .join(Course, Course.id == RatingTurnout.course_id)
            .where(
                RatingTurnout.term_id == term.id,
                RatingTurnout.student_id == student_id,
                RatingTurnout.course_id == course_id,
            )
        )
    ).first()
    if row is None:
        guard.refuse(session, member, REFUSED, pressed)
        return Refusal.NOT_ASKED
    return term, Item(student_id, child.name, course_id, row[0], row[1])


async def _answers(session: AsyncSession, ballot_token: str) -> dict[str, Any] | None:
    row = (
        await session.execute(
            select(
                Ballot.content,
                Ballot.teaching,
                Ballot.safety,
                Ballot.again,
                Ballot.face,
                Ballot.comment,
            ).where(Ballot.token == ballot_token)
        )
    ).first()
    return None if row is None else dict(zip(QUESTIONS, row, strict=True))


async def ballot(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    course_id: int,
    pressed: str | None = None,
) -> BallotView | Refusal:
    """The family's ballot for a child and course, as it stands."""
    found = await _item(session, member, student_id, course_id, pressed)
    if isinstance(found, Refusal):
        return found
    term, item = found
    assert term.rating_key is not None
    answers = await _answers(session, token(term.rating_key, student_id, course_id))
    if answers is None:  # the window closed between the two statements
        return Refusal.NOT_OPEN
    return BallotView(TermWindow.of(term), item, answers)


def parse_answer(question: str, raw: str) -> Any:
    """The stored value of an answer as it comes from a button or a message; ValueError if it
    is not one the question takes ("" for the optional ones: skipped)."""
    if question in ("content", "teaching", "safety"):
        score = int(raw)
        if score not in SCORES:
            raise ValueError(raw)
        return score
    if question == "again":
        return Again(raw)
    if question == "face":
        return Face(raw)
    if question == "comment":
        text = raw.strip()
        if len(text) > MAX_COMMENT:
            raise ValueError("too long")
        return text or None
    raise ValueError(question)


DONE_TO_FAMILY = N_(
    "⭐ {child}'s rating of {course} is in, given by {actor}. You can see or change it with "
    "/rate until {closes}."
)


async def answer(
    session: AsyncSession,
    member: Member | None,
    student_id: int,
    course_id: int,
    question: str,
    raw: str,
    *,
    pressed: str | None = None,
) -> BallotView | Refusal:
    """Record one answer on the family's ballot. The ballot row gets the answer and nothing
    else; the first time the ballot is complete, the turnout says so and the child's other
    guardians hear that it is done (not what was answered)."""
    if question not in QUESTIONS:
        guard.refuse(session, member, REFUSED, pressed)
        return Refusal.BAD_ANSWER
    try:
        value = parse_answer(question, raw)
    except ValueError:
        return Refusal.BAD_ANSWER
    found = await _item(session, member, student_id, course_id, pressed)
    if isinstance(found, Refusal):
        return found
    term, item = found
    assert term.rating_key is not None and member is not None
    ballot_token = token(term.rating_key, student_id, course_id)
    values: dict[str, Any] = {question: value}
    if question == "comment":
        values["comment_status"] = CommentStatus.PENDING if value else None
    written = await session.execute(
        update(Ballot)
        .where(Ballot.token == ballot_token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if written.rowcount != 1:  # type: ignore[attr-defined]
        return Refusal.NOT_OPEN  # closed meanwhile: the ballot has another key now
    answers = await _answers(session, ballot_token)
    assert answers is not None
    view = BallotView(TermWindow.of(term), item, answers)
    if view.complete and not item.done:
        finished = await session.execute(
            update(RatingTurnout)
            .where(
                RatingTurnout.term_id == term.id,
                RatingTurnout.course_id == course_id,
                RatingTurnout.student_id == student_id,
                RatingTurnout.done.is_(False),
            )
            .values(done=True)
            .execution_options(synchronize_session=False)
        )
        if finished.rowcount == 1:  # type: ignore[attr-defined]
            assert term.rating_closes_on is not None
            await family_news.tell_other_guardians(
                session,
                member.school_id,
                student_id,
                member.user_id,
                kind="rating",
                template=DONE_TO_FAMILY,
                params={
                    "child": item.child,
                    "course": item.course,
                    "actor": {"$msgid": ANOTHER_GUARDIAN},
                    "closes": {"$day": term.rating_closes_on.isoformat()},
                },
                dedupe=f"rating-done:{term.id}:{student_id}:{course_id}",
            )
        view = BallotView(view.term, dataclasses.replace(item, done=True), answers)
    return view


ANOTHER_GUARDIAN = N_("another guardian")


# --- what the school sees ---------------------------------------------------------------------


@dataclass(frozen=True)
class CourseTurnout:
    course_id: int
    course: str
    asked: int
    done: int


@dataclass(frozen=True)
class Status:
    term: TermWindow
    opened_at: dt.datetime | None
    closed_at: dt.datetime | None
    courses: list[CourseTurnout]
    pending_comments: int

    @property
    def asked(self) -> int:
        return sum(c.asked for c in self.courses)

    @property
    def done(self) -> int:
        return sum(c.done for c in self.courses)


async def status(session: AsyncSession, term: Term) -> Status:
    """Turnout per course (counts only, never who) and the comments waiting for review."""
    rows = await session.execute(
        select(
            Course.id,
            Course.name,
            func.count(),
            func.sum(case((RatingTurnout.done.is_(True), 1), else_=0)),
        )
        .select_from(RatingTurnout)
        .join(Course, Course.id == RatingTurnout.course_id)
        .where(RatingTurnout.term_id == term.id)
        .group_by(Course.id, Course.name)
        .order_by(Course.name, Course.id)
    )
    courses = [CourseTurnout(c, name, int(n), int(d or 0)) for c, name, n, d in rows]
    pending = await session.scalar(
        select(func.count()).where(
            Ballot.term_id == term.id, Ballot.comment_status == CommentStatus.PENDING
        )
    )
    return Status(
        TermWindow.of(term),
        term.rating_opened_at,
        term.rating_closed_at,
        courses,
        int(pending or 0),
    )


@dataclass(frozen=True)
class Comment:
    token: str
    course_id: int
    course: str
    text: str
    left: int  # pending comments, this one included


async def next_comment(session: AsyncSession, term: Term, after: str = "") -> Comment | None:
    """A comment waiting for review, after the window has closed (while it is open, comments
    may still change, and reading them as they come would tie them to who just rated)."""
    if window_of(term) is not Window.CLOSED:
        return None
    pending = (Ballot.term_id == term.id) & (Ballot.comment_status == CommentStatus.PENDING)
    row = (
        await session.execute(
            select(Ballot.token, Course.id, Course.name, Ballot.comment)
            .join(Course, Course.id == Ballot.course_id)
            .where(pending, Ballot.token > after)
            .order_by(Ballot.token)
            .limit(1)
        )
    ).first()
    if row is None and after:
        return await next_comment(session, term)
    if row is None:
        return None
    left = await session.scalar(select(func.count()).where(pending))
    return Comment(row[0], row[1], row[2], row[3] or "", int(left or 0))


async def review(
    session: AsyncSession,
    member: Member | None,
    term: Term,
    ballot_token: str,
    release: bool,
    *,
    pressed: str | None = None,
) -> bool | Refusal:
    """Release or hide a comment (admins only; compare-and-set on its pending status: False
    when another admin reviewed it first)."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return Refusal.NOT_PARENT
    assert member is not None
    if term.school_id != member.school_id or window_of(term) is not Window.CLOSED:
        return Refusal.NOT_OPEN
    done = await session.execute(
        update(Ballot)
        .where(
            Ballot.token == ballot_token,
            Ballot.term_id == term.id,
            Ballot.comment_status == CommentStatus.PENDING,
        )
        .values(comment_status=CommentStatus.RELEASED if release else CommentStatus.HIDDEN)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    audit.record(
        session,
        member.school_id,
        "ratings.comment_released" if release else "ratings.comment_hidden",
        actor_user_id=member.user_id,
        target=("term", term.id),
    )
    return True


async def released_comments(
    session: AsyncSession, school: School, term_id: int, course_ids: Sequence[int]
) -> dict[int, list[str]]:
    """Released comments of the courses whose results are shown, in an order that is not the
    order they were written."""
    results = await course_results(session, school, term_id, course_ids)
    return await _released(session, term_id, [c for c, r in results.items() if r.shown])


async def _released(
    session: AsyncSession, term_id: int, shown: Sequence[int]
) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    if not shown:
        return found
    rows = await session.execute(
        select(Ballot.course_id, Ballot.comment)
        .where(
            Ballot.term_id == term_id,
            Ballot.course_id.in_(list(shown)),
            Ballot.comment_status == CommentStatus.RELEASED,
        )
        .order_by(Ballot.token)
    )
    for course_id, text in rows:
        if text:
            found.setdefault(course_id, []).append(text)
    return found


@dataclass(frozen=True)
class Readable:
    """The results a member may read: of the term whose window closed last, every course for
    an admin, their own for a teacher (`own_courses`)."""

    term: Term
    thresholds: Thresholds
    results: dict[int, Result]
    names: dict[int, str]
    comments: dict[int, list[str]]  # released, of the one course asked for (when shown)


async def readable(
    session: AsyncSession,
    member: Member | None,
    course_id: int | None = None,
    *,
    pressed: str | None = None,
) -> Readable | Refusal | None:
    """What `member` may read of the last closed window (None: no window has closed yet),
    or one course of it with its released comments. A parent, a stranger, or a teacher
    asking for someone else's course is refused, and the refusal audited."""
    if member is None or not (member.has(Role.ADMIN) or member.has(Role.TEACHER)):
        guard.refuse(session, member, REFUSED, pressed)
        return Refusal.NOT_STAFF
    term = await last_closed(session, member.school_id)
    school = await session.get(School, member.school_id)
    if term is None or school is None:
        return None
    allowed: list[int] | None = None
    if not member.has(Role.ADMIN):
        allowed = [c.id for c in await own_courses(session, member, term.id)]
    if course_id is not None:
        if allowed is not None and course_id not in allowed:
            guard.refuse(session, member, REFUSED, pressed)
            return Refusal.NOT_YOURS
        allowed = [course_id]
    results = await course_results(session, school, term.id, allowed)
    if course_id is not None and course_id not in results:  # not of this school's term
        guard.refuse(session, member, REFUSED, pressed)
        return Refusal.NOT_YOURS
    rows = await session.execute(select(Course.id, Course.name).where(Course.id.in_(results)))
    names = {course: name for course, name in rows}
    comments: dict[int, list[str]] = {}
    if course_id is not None and course_id in results and results[course_id].shown:
        comments = await _released(session, term.id, [course_id])
    return Readable(term, Thresholds.of(school), results, names, comments)


async def own_courses(session: AsyncSession, member: Member, term_id: int) -> list[Course]:
    """The term's courses a teacher teaches, and, for a provider's staff, the provider's."""
    teachers = list(
        await session.execute(
            select(Teacher.id, Teacher.kind, Teacher.provider_id).where(
                Teacher.user_id == member.user_id, Teacher.school_id == member.school_id
            )
        )
    )
    mine = [Course.teacher_id.in_([t for t, _, _ in teachers])]
    providers = [p for _, kind, p in teachers if kind is TeacherKind.PROVIDER and p is not None]
    if providers:
        mine.append(Course.provider_id.in_(providers))
    if not teachers:
        return []
    return list(
        await session.scalars(
            select(Course)
            .where(Course.term_id == term_id, or_(*mine))
            .order_by(Course.name, Course.id)
        )
    )
