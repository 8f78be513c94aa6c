"""Fee standards (收费公示) and the rule that nothing undisclosed is ever billed.

- A standard is **disclosed** when `disclosed_at` is set: by the import (its `disclosed_on`) or by
  an admin's `/fees publish` (`publish`). Once disclosed it is never edited; a change is a new
  version of the same code (`supersede`), and the old one keeps its history.
- **Which version bills an enrolment**: the newest one disclosed before the child was signed
  up (`version_for`). A child signed up before any disclosure is not billed for it at all.
- **Every bill line is checked** (`check_line`) before it is written: a disclosed standard,
  disclosed before the enrolment it bills, of the enrolled course (or its period), not free, at
  exactly the disclosed amount and unit, for exactly what the disclosed rule computes.
  Anything else is refused with its reason, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit, fee_rules
from bot.services.catalogue import CourseInfo
from storage.models import (
    Course,
    Enrolment,
    FeeCovers,
    FeeStandard,
    School,
    utcnow,
)


class LineRefusal(enum.StrEnum):
    NOT_DISCLOSED = "not_disclosed"  # the standard was never disclosed
    NOT_DISCLOSED_BEFORE = "not_disclosed_before"  # disclosed only after the child signed up
    SUPERSEDED = "superseded"  # a newer version was in force when the child signed up
    FREE_ITEM = "free_item"  # a free item (弹性离校, 午休, …) can carry no charge
    NOT_THIS_COURSE = "not_this_course"  # bundled: not the fee of what the child is enrolled in
    WRONG_AMOUNT = "wrong_amount"  # not the disclosed amount, unit or quantity


@dataclasses.dataclass(frozen=True)
class LineDraft:
    standard_id: int
    course_id: int | None  # None: a period's fee, once per child
    enrolment_id: int | None
    unit_fen: int
    quantity: int
    amount_fen: int
    from_date: dt.date | None = None
    unit: str | None = None  # when given, must be the standard's


async def standards_by_code(session: AsyncSession, term_id: int) -> dict[str, list[FeeStandard]]:
    """Every version of every standard of the term, oldest version first."""
    rows = await session.scalars(
        select(FeeStandard)
        .where(FeeStandard.term_id == term_id)
        .order_by(FeeStandard.code, FeeStandard.version)
    )
    found: dict[str, list[FeeStandard]] = defaultdict(list)
    for row in rows:
        found[row.code].append(row)
    return found


def version_for(versions: Sequence[FeeStandard], signed_up: dt.datetime) -> FeeStandard | None:
    """The version in force for a child signed up at `signed_up`: the newest disclosed by then."""
    disclosed = [v for v in versions if v.disclosed_at is not None and v.disclosed_at <= signed_up]
    return max(disclosed, key=lambda v: v.version) if disclosed else None


def check_line(
    draft: LineDraft,
    standard: FeeStandard,
    billed: Sequence[tuple[Enrolment, CourseInfo | None]],
    *,
    expected: fee_rules.Charge | None = None,
    versions: Sequence[FeeStandard] = (),
) -> LineRefusal | None:
    """Why this line may not be billed, or None. `billed` are the enrolments it charges (with
    their courses); `expected` what the disclosed rule computes for them."""
    if standard.disclosed_at is None:
        return LineRefusal.NOT_DISCLOSED
    if standard.covers is FeeCovers.FREE or standard.amount_fen == 0:
        return LineRefusal.FREE_ITEM
    if not billed:
        return LineRefusal.NOT_THIS_COURSE
    first = min(e.created_at for e, _ in billed)
    if standard.disclosed_at > first:
        return LineRefusal.NOT_DISCLOSED_BEFORE
    newest = version_for(versions, first) if versions else standard
    if newest is not None and newest.id != standard.id:
        return LineRefusal.SUPERSEDED
    # The standard (any version of its code) must be the one the course is billed under.
    own = {v.id for v in versions if v.code == standard.code} | {standard.id}
    for enrolment, course in billed:
        if course is None or course.fee_id not in own or enrolment.course_id != course.id:
            return LineRefusal.NOT_THIS_COURSE
        if course.term_id != standard.term_id:
            return LineRefusal.NOT_THIS_COURSE
        if standard.covers is FeeCovers.COURSE and draft.course_id != course.id:
            return LineRefusal.NOT_THIS_COURSE
        if standard.covers in (FeeCovers.PERIOD_1, FeeCovers.PERIOD_2):
            wanted = 1 if standard.covers is FeeCovers.PERIOD_1 else 2
            if course.period != wanted or draft.course_id is not None:
                return LineRefusal.NOT_THIS_COURSE
    if draft.unit_fen != standard.amount_fen or (
        draft.unit is not None and draft.unit != standard.unit.value
    ):
        return LineRefusal.WRONG_AMOUNT
    if draft.quantity <= 0 or draft.amount_fen <= 0:
        return LineRefusal.WRONG_AMOUNT
    if expected is not None and (
        draft.quantity != expected.quantity or draft.amount_fen != expected.amount_fen
    ):
        return LineRefusal.WRONG_AMOUNT
    if draft.amount_fen > draft.quantity * standard.amount_fen:
        return LineRefusal.WRONG_AMOUNT  # above the standard, whatever the rule
    return None


async def linked_codes(session: AsyncSession, term_id: int) -> set[str]:
    """Codes of standards some course of the term is billed under."""
    rows = await session.scalars(
        select(FeeStandard.code)
        .join(Course, Course.fee_standard_id == FeeStandard.id)
        .where(Course.term_id == term_id)
    )
    return set(rows)


# -------------------------------------------------------------------------------------------
# Publishing


class Published(enum.StrEnum):
    DONE = "done"
    ALREADY = "already"  # disclosed before (by someone else, or by the import)
    NOT_FOUND = "not_found"
    BAD_RULE = "bad_rule"


async def pending(session: AsyncSession, school_id: int, term_id: int) -> list[FeeStandard]:
    """Standards of the term not yet disclosed (imported without a `disclosed_on`)."""
    rows = await session.scalars(
        select(FeeStandard)
        .where(
            FeeStandard.school_id == school_id,
            FeeStandard.term_id == term_id,
            FeeStandard.disclosed_at.is_(None),
            FeeStandard.superseded_at.is_(None),
        )
        .order_by(FeeStandard.code)
    )
    return list(rows)


async def current(session: AsyncSession, school_id: int, term_id: int) -> list[FeeStandard]:
    """The term's standards in force: the newest version of each code."""
    rows = await session.scalars(
        select(FeeStandard)
        .where(
            FeeStandard.school_id == school_id,
            FeeStandard.term_id == term_id,
            FeeStandard.superseded_at.is_(None),
        )
        .order_by(FeeStandard.code)
    )
    return list(rows)


async def publish(
    session: AsyncSession,
    school_id: int,
    standard_ids: Iterable[int],
    *,
    user_id: int | None,
    today: dt.date,
    now: dt.datetime | None = None,
) -> dict[int, Published]:
    """Disclose standards now (compare-and-set on `disclosed_at IS NULL`)."""
    now = now or utcnow()
    default = await session.scalar(select(School.fee_rule).where(School.id == school_id))
    outcome: dict[int, Published] = {}
    for standard_id in standard_ids:
        standard = await session.get(FeeStandard, standard_id)
        if standard is None or standard.school_id != school_id:
            outcome[standard_id] = Published.NOT_FOUND
            continue
        try:
            rule = fee_rules.parse(standard.rule, fee_rules.parse(default))
        except ValueError:
            outcome[standard_id] = Published.BAD_RULE
            continue
        done = await session.execute(
            update(FeeStandard)
            .where(FeeStandard.id == standard_id, FeeStandard.disclosed_at.is_(None))
            .values(
                disclosed_at=now,
                disclosed_on=today,
                disclosed_by_user_id=user_id,
                rule=rule.as_json(),
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(done, "rowcount", 0) != 1:
            outcome[standard_id] = Published.ALREADY
            continue
        outcome[standard_id] = Published.DONE
        audit.record(
            session,
            school_id,
            "fees.publish",
            actor_user_id=user_id,
            target=("fee_standard", standard_id),
            details={"code": standard.code, "amount_fen": standard.amount_fen},
        )
    return outcome


CONTENT = (
    "name",
    "amount_fen",
    "unit",
    "provider_id",
    "approval_ref",
    "description",
    "covers",
    "effective_from",
    "effective_to",
    "rule",
)


def differs(standard: FeeStandard, values: dict[str, Any]) -> bool:
    """Whether `values` change what was disclosed (the fields a family reads)."""
    return any(getattr(standard, k) != values[k] for k in CONTENT if k in values)


async def supersede(
    session: AsyncSession,
    standard: FeeStandard,
    values: dict[str, Any],
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> FeeStandard:
    """A new version of a disclosed standard; the old one is kept, marked superseded, and the
    courses billed under it move to the new one (children already signed up keep the version
    they signed up under: `version_for`)."""
    now = now or utcnow()
    fresh = FeeStandard(
        school_id=standard.school_id,
        term_id=standard.term_id,
        code=standard.code,
        version=standard.version + 1,
        **{k: values.get(k, getattr(standard, k)) for k in CONTENT},
        disclosed_on=values.get("disclosed_on"),
        disclosed_at=values.get("disclosed_at"),
        disclosed_by_user_id=user_id if values.get("disclosed_at") else None,
    )
    session.add(fresh)
    await session.flush()
    await session.execute(
        update(FeeStandard)
        .where(FeeStandard.id == standard.id, FeeStandard.superseded_at.is_(None))
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Course)
        .where(Course.fee_standard_id == standard.id)
        .values(fee_standard_id=fresh.id)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        standard.school_id,
        "fees.supersede",
        actor_user_id=user_id,
        target=("fee_standard", fresh.id),
        details={"code": standard.code, "version": fresh.version, "was": standard.id},
    )
    return fresh
