"""The term's evaluation of each outside provider (社会力量), for the bureau's whitelist review.

Three voices and two facts make a provider's term (docs/PROVIDERS.md):

- the families' ratings of its courses (content, teaching, care and safety, "sign up again",
  the child's face), pooled over the courses whose results may be shown (`ratings.pooled`): a
  hidden course adds only its ballot count and turnout, never an answer;
- the school admins' own review (`ProviderReview`, one per term and provider);
- the attendance rate of its sessions (`term_attendance`) and the share of places given up
  during the term (withdrawals), courses the school cancelled left out.

A provider is flagged for each school threshold it falls short of (`School.provider_min_score`,
`provider_min_attendance`, `provider_max_withdrawal`) and while no admin has reviewed it. Exactly
at a threshold is not short of it. `export` writes the evidence as sheets (CSV / XLSX).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, Translator
from bot.services import audit, guard, ratings, term_attendance
from bot.services.members import Member
from bot.services.ratings import ASPECTS, SCORES, Pooled, Result
from bot.services.sheets import Cell, Sheet
from bot.services.term_attendance import Tally
from storage.models import (
    Again,
    Course,
    Enrolment,
    EnrolmentEvent,
    EnrolmentStatus,
    Face,
    Provider,
    ProviderKind,
    ProviderReview,
    Role,
    School,
    Teacher,
    Term,
    User,
    WhitelistStatus,
)

REFUSED = "providers.refused"
NOTE_MAX = 500  # characters of an admin's note

WHITELIST = {
    WhitelistStatus.WHITELISTED: N_("on the whitelist"),
    WhitelistStatus.PENDING: N_("pending approval"),
    WhitelistStatus.REMOVED: N_("removed from the whitelist"),
    WhitelistStatus.BLACKLISTED: N_("blacklisted"),
}
KINDS = {
    ProviderKind.OUTSIDE: N_("outside provider"),
    ProviderKind.SCHOOL: N_("run by the school"),
}
ASPECT_NAMES = {
    "content": N_("Content"),
    "teaching": N_("Teaching"),
    "safety": N_("Care and safety"),
}
FACE_MARKS = {Face.HAPPY: "😊", Face.SO_SO: "😐", Face.UNHAPPY: "🙁"}


# --- what an evaluation holds ------------


class FlagKind(enum.StrEnum):
    SCORE = "score"  # the families' mean score is below provider_min_score
    ATTENDANCE = "attendance"  # the attendance rate is below provider_min_attendance
    WITHDRAWAL = "withdrawal"  # the withdrawal rate is above provider_max_withdrawal
    NO_REVIEW = "no_review"  # no admin has reviewed it this term


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    value: Fraction | None = None  # the provider's figure: a mean score, or a share (0–1)
    limit: int | None = None  # the school's threshold: tenths of a score, or %


@dataclass(frozen=True)
class Review:
    score: int
    note: str | None
    reviewer: str | None  # the admin's display name
    reviewed_at: dt.datetime


@dataclass(frozen=True)
class CourseFigures:
    id: int
    code: str
    name: str
    period: int
    teacher: str | None
    enrolled: int  # places taken during the term (children ever enrolled)
    withdrew: int  # of them, given up during the term
    attendance: Tally | None
    result: Result  # `shown` False: only `ballots` and `families` may be used

    @property
    def withdrawal(self) -> Fraction | None:
        return Fraction(self.withdrew, self.enrolled) if self.enrolled else None


@dataclass(frozen=True)
class Evaluation:
    provider_id: int
    code: str
    name: str
    kind: ProviderKind
    whitelist: WhitelistStatus
    contract_starts_on: dt.date | None
    contract_ends_on: dt.date | None
    contact: str | None
    courses: tuple[CourseFigures, ...]
    cancelled: int  # courses of the term the school cancelled: left out of every figure
    ratings: Pooled
    attendance: Tally | None
    review: Review | None
    flags: tuple[Flag, ...]
    # The term-end rating has closed: before, no course's ratings are shown (`ratings`).
    ratings_closed: bool = True

    @property
    def score(self) -> Fraction | None:
        """The families' mean score over the shown courses (the mean of the aspects' means)."""
        return overall(self.ratings.result) if self.ratings.result else None

    @property
    def enrolled(self) -> int:
        return sum(c.enrolled for c in self.courses)

    @property
    def withdrew(self) -> int:
        return sum(c.withdrew for c in self.courses)

    @property
    def withdrawal(self) -> Fraction | None:
        return Fraction(self.withdrew, self.enrolled) if self.enrolled else None

    @property
    def attendance_rate(self) -> Fraction | None:
        a = self.attendance
        return Fraction(a.present, a.marked) if a is not None and a.marked else None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def mean(result: Result, aspect: str) -> Fraction | None:
    """An aspect's exact mean (`Result.mean` is a float; thresholds are compared exactly)."""
    counts = result.scores.get(aspect)
    if not counts or not sum(counts):
        return None
    return Fraction(sum(s * n for s, n in zip(SCORES, counts, strict=True)), sum(counts))


def overall(result: Result) -> Fraction | None:
    means = [m for m in (mean(result, a) for a in ASPECTS) if m is not None]
    return sum(means, Fraction(0)) / len(means) if means else None


def again_share(result: Result) -> Fraction | None:
    answered = sum(result.again.values())
    return Fraction(result.again.get(Again.YES, 0), answered) if answered else None


def flags_of(
    school: School,
    kind: ProviderKind,
    score: Fraction | None,
    attendance: Fraction | None,
    withdrawal: Fraction | None,
    review: Review | None,
) -> tuple[Flag, ...]:
    """The thresholds a provider falls short of; a figure nobody could measure flags nothing."""
    found = []
    if score is not None and score * 10 < school.provider_min_score:
        found.append(Flag(FlagKind.SCORE, score, school.provider_min_score))
    if attendance is not None and attendance * 100 < school.provider_min_attendance:
        found.append(Flag(FlagKind.ATTENDANCE, attendance, school.provider_min_attendance))
    if withdrawal is not None and withdrawal * 100 > school.provider_max_withdrawal:
        found.append(Flag(FlagKind.WITHDRAWAL, withdrawal, school.provider_max_withdrawal))
    if kind is ProviderKind.OUTSIDE and review is None:
        found.append(Flag(FlagKind.NO_REVIEW))
    return tuple(found)


# --- evaluating ------------


async def evaluate(
    session: AsyncSession,
    school: School,
    term: Term,
    *,
    provider_id: int | None = None,
    include_school: bool = False,
) -> list[Evaluation]:
    """Every outside provider with courses this term (school-run ones too with
    `include_school`, after them), by name; only `provider_id` when given."""
    kinds = (
        [ProviderKind.OUTSIDE, ProviderKind.SCHOOL] if include_school else [ProviderKind.OUTSIDE]
    )
    query = (
        select(Course, Provider, Teacher.name)
        .join(Provider, Provider.id == Course.provider_id)
        .outerjoin(Teacher, Teacher.id == Course.teacher_id)
        .where(
            Course.school_id == school.id,
            Course.term_id == term.id,
            Provider.school_id == school.id,
            Provider.kind.in_(kinds),
        )
        .order_by(Course.period, Course.code)
    )
    if provider_id is not None:
        query = query.where(Provider.id == provider_id)
    rows = (await session.execute(query)).all()
    providers: dict[int, Provider] = {}
    running: dict[int, list[tuple[Course, str | None]]] = defaultdict(list)
    cancelled: dict[int, int] = defaultdict(int)
    for course, provider, teacher in rows:
        providers[provider.id] = provider
        if course.cancelled_at is not None:
            cancelled[provider.id] += 1
        else:
            running[provider.id].append((course, teacher))
    course_ids = [c.id for items in running.values() for c, _ in items]
    if not course_ids:
        return []
    places = await _places(session, term, course_ids)
    results = await ratings.course_results(session, school, term.id, course_ids)
    by_provider = await term_attendance.tally(session, school.id, term, "provider")
    by_course = await term_attendance.tally(session, school.id, term, "course")
    reviews = await _reviews(session, term.id, list(running))
    found = []
    for pid, items in running.items():
        provider = providers[pid]
        courses = tuple(
            CourseFigures(
                course.id,
                course.code,
                course.name,
                course.period,
                teacher,
                *places.get(course.id, (0, 0)),
                by_course.get((course.id,)),
                results.get(course.id) or Result(course.id, 0, 0, shown=False),
            )
            for course, teacher in items
        )
        pooled = ratings.pooled(c.result for c in courses)
        partial = Evaluation(
            pid,
            provider.code,
            provider.name,
            provider.kind,
            provider.whitelist_status,
            provider.contract_starts_on,
            provider.contract_ends_on,
            provider.contact,
            courses,
            cancelled.get(pid, 0),
            pooled,
            by_provider.get((pid,)),
            reviews.get(pid),
            (),
        )
        flags = flags_of(
            school,
            provider.kind,
            partial.score,
            partial.attendance_rate,
            partial.withdrawal,
            partial.review,
        )
        found.append(
            replace(partial, flags=flags, ratings_closed=term.rating_closed_at is not None)
        )
    found.sort(key=lambda e: (e.kind is not ProviderKind.OUTSIDE, e.name, e.code))
    return found


async def _places(
    session: AsyncSession, term: Term, course_ids: list[int]
) -> dict[int, tuple[int, int]]:
    """Course → (places taken during the term, of them given up during the term).

    A place is taken by a child who was enrolled (now, or by the enrolment's history); one
    given up before the term's first day never took part and is not counted. A waitlist or
    draw entry that ended is no place at all."""
    was_enrolled = exists().where(
        EnrolmentEvent.enrolment_id == Enrolment.id,
        EnrolmentEvent.status == EnrolmentStatus.ENROLLED,
    )
    rows = await session.execute(
        select(Enrolment.course_id, Enrolment.status, Enrolment.withdrawn_from).where(
            Enrolment.course_id.in_(course_ids),
            or_(
                Enrolment.status == EnrolmentStatus.ENROLLED,
                and_(Enrolment.status == EnrolmentStatus.WITHDRAWN, was_enrolled),
            ),
        )
    )
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for course_id, status, left in rows.all():
        if status is EnrolmentStatus.WITHDRAWN and left is not None and left <= term.starts_on:
            continue  # gave the place up before the term began
        counts[course_id][0] += 1
        if status is EnrolmentStatus.WITHDRAWN and (left is None or left <= term.ends_on):
            counts[course_id][1] += 1
    return {course_id: (n[0], n[1]) for course_id, n in counts.items()}


async def _reviews(
    session: AsyncSession, term_id: int, provider_ids: list[int]
) -> dict[int, Review]:
    rows = await session.execute(
        select(ProviderReview, User.display_name)
        .outerjoin(User, User.id == ProviderReview.reviewed_by_user_id)
        .where(ProviderReview.term_id == term_id, ProviderReview.provider_id.in_(provider_ids))
    )
    return {r.provider_id: Review(r.score, r.note, name, r.reviewed_at) for r, name in rows.all()}


# --- what an admin opens ------------


@dataclass(frozen=True)
class Board:
    """What /providers shows: the term evaluated (None: the school has no term yet)."""

    school: School
    term: Term | None
    evaluations: list[Evaluation]


async def term_to_review(session: AsyncSession, school_id: int, today: dt.date) -> Term | None:
    """The latest term that has begun (the one running, or the one just ended), else the
    first one to come."""
    begun = await session.scalar(
        select(Term)
        .where(Term.school_id == school_id, Term.starts_on <= today)
        .order_by(Term.starts_on.desc(), Term.id.desc())
        .limit(1)
    )
    if begun is not None:
        return begun
    return await session.scalar(
        select(Term).where(Term.school_id == school_id).order_by(Term.starts_on).limit(1)
    )


async def _provider_of(
    session: AsyncSession, member: Member, provider_id: int, pressed: str | None
) -> Provider | None:
    """The provider if it is one of the member's school's; else None, refused and audited."""
    provider = await session.get(Provider, provider_id)
    if provider is None or provider.school_id != member.school_id:
        guard.refuse(session, member, REFUSED, pressed)
        return None
    return provider


async def board(
    session: AsyncSession,
    member: Member | None,
    today: dt.date,
    *,
    provider_id: int | None = None,
    include_school: bool = False,
    pressed: str | None = None,
) -> Board | None:
    """The term's evaluations (one provider's with `provider_id`) for an admin; None (refused
    and audited) for anyone else, or for a provider of another school."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return None
    assert member is not None
    if provider_id is not None:
        provider = await _provider_of(session, member, provider_id, pressed)
        if provider is None:
            return None
        include_school = provider.kind is ProviderKind.SCHOOL
    school = await session.get(School, member.school_id)
    assert school is not None
    term = await term_to_review(session, school.id, today)
    if term is None:
        return Board(school, None, [])
    found = await evaluate(
        session, school, term, provider_id=provider_id, include_school=include_school
    )
    return Board(school, term, found)


# --- the admins' review ------------


class Saved(enum.StrEnum):
    SAVED = "saved"
    STALE = "stale"  # another admin saved a review since this one began: nothing changed
    REFUSED = "refused"  # not an admin, or the provider or term is not the school's
    INVALID = "invalid"  # the score is not 1–5, or the provider is run by the school


class _Any:
    """`review(expected=ANY)`: save whatever is there (the saves of two admins apply in order)."""


ANY = _Any()


@dataclass(frozen=True)
class Reviewed:
    outcome: Saved
    provider: str | None = None  # its name, for the answer
    term: str | None = None
    review: Review | None = None  # as saved; for STALE, the review saved meanwhile


async def current_review(session: AsyncSession, term_id: int, provider_id: int) -> Review | None:
    return (await _reviews(session, term_id, [provider_id])).get(provider_id)


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def review(
    session: AsyncSession,
    member: Member | None,
    provider_id: int,
    term_id: int,
    score: int,
    note: str | None,
    now: dt.datetime,
    *,
    expected: dt.datetime | _Any | None = ANY,
    pressed: str | None = None,
) -> Reviewed:
    """An admin's review of an outside provider for the term, saved compare-and-set.

    `expected` is the `reviewed_at` of the review the admin saw when they began (None: there
    was none). If another admin saved since, nothing changes and the outcome is STALE with that
    review, so the admin can look before saving again. With ANY the save applies whatever is
    there; two admins saving at once then both succeed, in the order the database takes them.
    """
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return Reviewed(Saved.REFUSED)
    assert member is not None
    provider = await _provider_of(session, member, provider_id, pressed)
    term = await session.get(Term, term_id)
    if provider is None:
        return Reviewed(Saved.REFUSED)
    if term is None or term.school_id != member.school_id:
        guard.refuse(session, member, REFUSED, pressed)
        return Reviewed(Saved.REFUSED)
    if provider.kind is not ProviderKind.OUTSIDE or score not in SCORES:
        return Reviewed(Saved.INVALID, provider.name, term.name)
    text = (note or "").strip()[:NOTE_MAX] or None
    if isinstance(expected, dt.datetime) and now <= expected:
        now = expected + dt.timedelta(microseconds=1)  # a save always moves reviewed_at on
    values = {
        "score": score,
        "note": text,
        "reviewed_by_user_id": member.user_id,
        "reviewed_at": now,
    }
    previous = await current_review(session, term_id, provider_id)
    insert = _insert(session)(ProviderReview).values(
        school_id=member.school_id, term_id=term_id, provider_id=provider_id, **values
    )
    if isinstance(expected, _Any):
        statement: Any = insert.on_conflict_do_update(
            index_elements=["term_id", "provider_id"], set_=values
        )
    elif expected is None:
        statement = insert.on_conflict_do_nothing(index_elements=["term_id", "provider_id"])
    else:
        statement = (
            update(ProviderReview)
            .where(
                ProviderReview.term_id == term_id,
                ProviderReview.provider_id == provider_id,
                ProviderReview.reviewed_at == expected,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    won = (await session.execute(statement)).rowcount == 1  # type: ignore[attr-defined]
    if not won:
        meanwhile = await current_review(session, term_id, provider_id)
        return Reviewed(Saved.STALE, provider.name, term.name, meanwhile)
    audit.record(
        session,
        member.school_id,
        "provider.reviewed",
        actor_user_id=member.user_id,
        target=("provider", provider_id),
        details={
            "term_id": term_id,
            "score": score,
            "previous": previous.score if previous is not None else None,
        },
    )
    saved = await current_review(session, term_id, provider_id)
    return Reviewed(Saved.SAVED, provider.name, term.name, saved)


# --- words ------------


def _decimal(value: Fraction, places: int, rounding: str) -> Decimal:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return exact.quantize(Decimal(1).scaleb(-places), rounding=rounding)


def score_text(value: Fraction, *, up: bool = False) -> str:
    """A mean score to two places, rounded towards the side of its threshold it is on."""
    return format(_decimal(value, 2, ROUND_CEILING if up else ROUND_FLOOR), "f")


def percent_text(share: Fraction, *, up: bool = False) -> str:
    """A share as a percentage, one place at most ("78%", "84.9%"): rounded away from the
    threshold it missed, so 84.96 % never reads as the 85 % it is below."""
    value = _decimal(share * 100, 1, ROUND_CEILING if up else ROUND_FLOOR).normalize()
    return format(value, "f") + "%"


def limit_score(tenths: int) -> str:
    return format(Decimal(tenths) / 10, "f")


def flag_text(t: Translator, flag: Flag) -> str:
    """A flag in words, with the school's threshold: "出勤率 78%，低于学校设定的 85%"."""
    if flag.kind is FlagKind.SCORE:
        assert flag.value is not None and flag.limit is not None
        return t.gettext("Families' mean score {score}, below the school's {limit}").format(
            score=score_text(flag.value), limit=limit_score(flag.limit)
        )
    if flag.kind is FlagKind.ATTENDANCE:
        assert flag.value is not None and flag.limit is not None
        return t.gettext("Attendance {rate}, below the school's {limit}%").format(
            rate=percent_text(flag.value), limit=flag.limit
        )
    if flag.kind is FlagKind.WITHDRAWAL:
        assert flag.value is not None and flag.limit is not None
        return t.gettext("Withdrawals {rate}, above the school's {limit}%").format(
            rate=percent_text(flag.value, up=True), limit=flag.limit
        )
    return t.gettext("No admin review yet")


# --- the export ------------


def _share(value: Fraction | None) -> Decimal | None:
    return _decimal(value * 100, 1, "ROUND_HALF_UP") if value is not None else None


def _score(value: Fraction | None) -> Decimal | None:
    return _decimal(value, 2, "ROUND_HALF_UP") if value is not None else None


def _local(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return value.astimezone(zone).replace(tzinfo=None)


def _course_header(t: Translator) -> list[str]:
    return [
        t.gettext("Course code"),
        t.gettext("Course"),
        t.gettext("Period"),
        t.gettext("Teacher"),
        t.gettext("Places taken"),
        t.gettext("Withdrew"),
        t.gettext("Withdrawal rate (%)"),
        t.gettext("Attendance rate (%)"),
        t.gettext("Families asked"),
        t.gettext("Complete ballots"),
        t.gettext("Ratings shown"),
        *(t.gettext(ASPECT_NAMES[a]) for a in ASPECTS),
        t.gettext("Overall"),
        t.gettext("Would sign up again (%)"),
        *(FACE_MARKS[f] for f in Face),
    ]


def _rating_cells(t: Translator, result: Result | None) -> list[Cell]:
    """A result's answers, or blanks: nothing of a hidden course is written."""
    if result is None or not result.shown:
        return [None] * (len(ASPECTS) + 2 + len(Face))
    return [
        *(_score(mean(result, a)) for a in ASPECTS),
        _score(overall(result)),
        _share(again_share(result)),
        *(result.faces.get(f, 0) for f in Face),
    ]


def _course_row(t: Translator, course: CourseFigures, closed: bool) -> list[Cell]:
    result = course.result
    rate = course.attendance
    if result.shown:
        shown = t.gettext("yes")
    elif closed:
        shown = t.gettext("no: too few ballots")
    else:
        shown = t.gettext("no: the rating has not closed")
    return [
        course.code,
        course.name,
        wording.period(t, course.period),
        course.teacher,
        course.enrolled,
        course.withdrew,
        _share(course.withdrawal),
        _share(Fraction(rate.present, rate.marked) if rate and rate.marked else None),
        result.families,
        result.ballots,
        shown,
        *_rating_cells(t, result),
    ]


def provider_sheet(
    t: Translator, school: School, term: Term, evaluation: Evaluation, zone: ZoneInfo
) -> Sheet:
    """One provider's evidence: who and under what contract, the term's figures, its flags,
    then one row per course."""
    e = evaluation
    pooled = e.ratings
    review = e.review
    rows: list[Sequence[Cell]] = [
        [t.gettext("Term"), term.name, term.starts_on, term.ends_on],
        [t.gettext("Provider"), e.name, e.code],
        [t.gettext("Kind"), t.gettext(KINDS[e.kind])],
        [t.gettext("Whitelist status"), t.gettext(WHITELIST[e.whitelist])],
        [t.gettext("Contract"), e.contract_starts_on, e.contract_ends_on],
        [t.gettext("Contact"), e.contact],
        [],
        [t.gettext("Courses"), len(e.courses)],
        [t.gettext("Courses cancelled by the school (not counted)"), e.cancelled],
        [
            t.gettext("Term-end rating"),
            t.gettext("closed") if e.ratings_closed else t.gettext("not closed yet"),
        ],
        [t.gettext("Courses with ratings shown"), pooled.courses],
        [t.gettext("Courses with too few ballots (not counted)"), pooled.hidden],
        [t.gettext("Families' mean score"), _score(e.score)],
        *(
            [
                t.gettext(ASPECT_NAMES[a]),
                _score(mean(pooled.result, a)) if pooled.result else None,
            ]
            for a in ASPECTS
        ),
        [
            t.gettext("Would sign up again (%)"),
            _share(again_share(pooled.result)) if pooled.result else None,
        ],
        [
            t.gettext("Children's faces"),
            *(
                f"{FACE_MARKS[f]} {pooled.result.faces.get(f, 0)}" if pooled.result else None
                for f in Face
            ),
        ],
        [
            t.gettext("Attendance rate (%)"),
            _share(e.attendance_rate),
            t.gettext("marks"),
            e.attendance.marked if e.attendance else 0,
        ],
        [
            t.gettext("Withdrawal rate (%)"),
            _share(e.withdrawal),
            t.gettext("withdrew / places"),
            f"{e.withdrew} / {e.enrolled}",
        ],
        [
            t.gettext("School's review"),
            review.score if review else None,
            review.note if review else None,
            review.reviewer if review else None,
            _local(review.reviewed_at, zone) if review else None,
        ],
        [
            t.gettext("Thresholds"),
            t.gettext("mean score ≥ {score}").format(score=limit_score(school.provider_min_score)),
            t.gettext("attendance ≥ {rate}%").format(rate=school.provider_min_attendance),
            t.gettext("withdrawals ≤ {rate}%").format(rate=school.provider_max_withdrawal),
        ],
        [t.gettext("Below standard"), *(flag_text(t, f) for f in e.flags)]
        if e.flags
        else [t.gettext("Below standard"), t.gettext("none")],
        [],
        _course_header(t),
        *(_course_row(t, c, e.ratings_closed) for c in e.courses),
    ]
    return Sheet(e.name, [t.gettext("School"), school.name], rows)


def overview_sheet(t: Translator, school: School, term: Term, found: list[Evaluation]) -> Sheet:
    header = [
        t.gettext("Provider"),
        t.gettext("Kind"),
        t.gettext("Whitelist status"),
        t.gettext("Contract from"),
        t.gettext("Contract to"),
        t.gettext("Courses"),
        t.gettext("Courses with too few ballots (not counted)"),
        t.gettext("Families' mean score"),
        t.gettext("Attendance rate (%)"),
        t.gettext("Withdrawal rate (%)"),
        t.gettext("School's review"),
        t.gettext("Below standard"),
    ]
    rows = [
        [
            e.name,
            t.gettext(KINDS[e.kind]),
            t.gettext(WHITELIST[e.whitelist]),
            e.contract_starts_on,
            e.contract_ends_on,
            len(e.courses),
            e.ratings.hidden,
            _score(e.score),
            _share(e.attendance_rate),
            _share(e.withdrawal),
            e.review.score if e.review else None,
            "; ".join(flag_text(t, f) for f in e.flags),
        ]
        for e in found
    ]
    title = t.gettext("{school} · {term}").format(school=school.name, term=term.name)
    return Sheet(t.gettext("All providers"), header, [[title], *rows])


async def export(
    session: AsyncSession,
    school: School,
    term: Term,
    t: Translator,
    provider_id: int | None,
    *,
    include_school: bool = False,
) -> list[Sheet]:
    """The evidence for the bureau: one sheet per provider (one provider's with
    `provider_id`), after an overview of them all when there are several."""
    found = await evaluate(
        session, school, term, provider_id=provider_id, include_school=include_school
    )
    zone = ZoneInfo(school.timezone)
    sheets = [provider_sheet(t, school, term, e, zone) for e in found]
    if provider_id is None and sheets:
        sheets.insert(0, overview_sheet(t, school, term, found))
    return sheets


@dataclass(frozen=True)
class Exported:
    term: str
    provider: str | None  # None: every provider
    sheets: list[Sheet]


async def export_for(
    session: AsyncSession,
    member: Member | None,
    t: Translator,
    today: dt.date,
    provider_id: int | None,
    *,
    pressed: str | None = None,
) -> Exported | None:
    """`export` for an admin; None (refused and audited) for anyone else."""
    if not guard.holds(session, member, Role.ADMIN, action=REFUSED, pressed=pressed):
        return None
    assert member is not None
    name = None
    include_school = False
    if provider_id is not None:
        provider = await _provider_of(session, member, provider_id, pressed)
        if provider is None:
            return None
        name, include_school = provider.name, provider.kind is ProviderKind.SCHOOL
    school = await session.get(School, member.school_id)
    assert school is not None
    term = await term_to_review(session, school.id, today)
    if term is None:
        return Exported("", name, [])
    sheets = await export(session, school, term, t, provider_id, include_school=include_school)
    return Exported(term.name, name, sheets)
