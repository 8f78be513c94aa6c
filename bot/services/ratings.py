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

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Again, Ballot, Face, RatingTurnout, School

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
    """Every course of the term that families were asked about (or only `course_ids`)."""
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
    limits = Thresholds.of(school)
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
