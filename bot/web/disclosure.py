"""The public disclosure page (课后服务安排表与收费公示): what a school must make public.

Policy (docs/POLICY.md, "Fees" and "Schedule publication"): a fee may be collected only after
its standard, the service time, content and session length were disclosed, and the school
publishes its schedule with content, time, venue, teacher and class size for every activity.
This module reads one school's current term into a `Disclosure` (plain, translated text), which
the templates lay out. Only standards with `disclosed_at` are shown: current versions first,
then the superseded ones as history. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import wording
from bot.i18n import N_, Translator
from bot.services import catalogue, fee_rules
from storage.models import Course, FeeCovers, FeeStandard, FeeUnit, Provider, School, Term

log = logging.getLogger(__name__)

UNIT_NAMES = {
    FeeUnit.TERM: N_("per term"),
    FeeUnit.MONTH: N_("per month"),
    FeeUnit.SESSION: N_("per session"),
    FeeUnit.DAY: N_("per day of service"),
}
COVERS_NAMES = {
    FeeCovers.PERIOD_1: N_("Period 1 (homework help), once per child"),
    FeeCovers.PERIOD_2: N_("Period 2 (enrichment), once per child"),
    FeeCovers.COURSE: N_("These courses:"),
    FeeCovers.FREE: N_("Free of charge"),
}
FREE_WORDS = N_("This service is free: no fee may ever be charged for it.")


@dataclass(frozen=True)
class CourseRow:
    name: str
    category: str
    period: str
    grades: str
    weekdays: str
    time: str
    venue: str
    teacher: str
    provider: str | None  # an outside provider's name
    size: str  # 班额, or "no limit"


@dataclass(frozen=True)
class FeeRow:
    code: str
    name: str
    free: bool
    amount: str  # ¥280.00, or "Free"
    unit: str
    covers: str
    courses: str  # the courses of the term billed under it, joined; "" when none
    provider: str | None  # collected on this provider's behalf (代收)
    approval_ref: str | None
    disclosed_on: str
    effective: tuple[str, str]  # from, to
    description: str | None
    rules: tuple[str, ...]
    version: int
    superseded_on: str | None


@dataclass(frozen=True)
class Disclosure:
    school_code: str
    school_name: str
    locale: str
    term_name: str | None
    term_dates: tuple[str, str] | None  # first and last day
    published_on: str | None  # when the schedule was published; None: not yet
    courses: tuple[CourseRow, ...] = ()
    current: tuple[FeeRow, ...] = ()
    history: tuple[FeeRow, ...] = ()


def _iso_weekdays(mask: int) -> list[int]:
    return [day + 1 for day in range(7) if mask & (1 << day)]


async def find_school(session: AsyncSession, code: str) -> School | None:
    return await session.scalar(select(School).where(School.code == code))


async def load(
    session: AsyncSession, school: School, t: Translator, today: dt.date | None = None
) -> Disclosure:
    """The school's current term as the page shows it, in `t`'s language and the school's zone.

    The current term is the one running `today` (the school's date), else the next one, else
    the latest.
    """
    today = today or dt.datetime.now(ZoneInfo(school.timezone)).date()
    found = await catalogue.of(session, school.id)
    info = found.current_term(today)
    if info is None:
        return Disclosure(school.code, school.name, t.locale, None, None, None)
    term = await session.get(Term, info.id)
    assert term is not None
    published = term.schedule_published_on

    rows: list[CourseRow] = []
    for course in found.of_term(info.id):
        if course.cancelled_at is not None:
            continue  # a cancelled course is no longer part of the service
        if course.capacity is None:
            size = t.gettext("No limit")
        else:
            size = t.ngettext("{count} child", "{count} children", course.capacity).format(
                count=course.capacity
            )
        row = CourseRow(
            name=course.name,
            category=wording.category(t, course.category),
            period=wording.period(t, course.period),
            grades=wording.grades(t, course.grade_min, course.grade_max),
            weekdays=wording.weekday_run(t, _iso_weekdays(course.weekdays)),
            time=wording.span(t, course.starts_at, course.ends_at),
            venue=course.venue,
            teacher=course.teacher or "",
            provider=course.provider,
            size=size,
        )
        rows.append(row)

    current, history = await _fees(session, school, term, t)
    return Disclosure(
        school_code=school.code,
        school_name=school.name,
        locale=t.locale,
        term_name=term.name,
        term_dates=(t.date(term.starts_on), t.date(term.ends_on)),
        published_on=t.date(published, format="long") if published else None,
        courses=tuple(rows),
        current=current,
        history=history,
    )


async def _fees(
    session: AsyncSession, school: School, term: Term, t: Translator
) -> tuple[tuple[FeeRow, ...], tuple[FeeRow, ...]]:
    """The term's disclosed standards: (current, history). Undisclosed ones are never shown."""
    billed: dict[int, list[str]] = {}
    for fee_id, name in await session.execute(
        select(Course.fee_standard_id, Course.name)
        .where(
            Course.term_id == term.id,
            Course.fee_standard_id.is_not(None),
            Course.cancelled_at.is_(None),
        )
        .order_by(Course.period, Course.code)
    ):
        if fee_id is not None:
            billed.setdefault(fee_id, []).append(name)
    try:
        default = fee_rules.parse(school.fee_rule)
    except ValueError:
        log.warning("school %s has an unreadable fee_rule; using the defaults", school.code)
        default = fee_rules.DEFAULT
    standards = (
        await session.execute(
            select(FeeStandard, Provider.name)
            .outerjoin(Provider, Provider.id == FeeStandard.provider_id)
            .where(FeeStandard.term_id == term.id, FeeStandard.disclosed_at.is_not(None))
            .order_by(FeeStandard.code, FeeStandard.version.desc())
        )
    ).all()
    # The courses billed under any version of a code are that item's courses.
    by_code: dict[str, list[str]] = {}
    for standard, _provider in standards:
        by_code.setdefault(standard.code, []).extend(billed.get(standard.id, []))
    current: list[FeeRow] = []
    history: list[FeeRow] = []
    for standard, provider in standards:
        row = _fee_row(t, standard, provider, term, default, by_code.get(standard.code, []))
        (history if standard.superseded_at is not None else current).append(row)
    # Free items after the charged ones: what a family pays comes first.
    current.sort(key=lambda r: (r.free, r.code))
    return tuple(current), tuple(history)


def _fee_row(
    t: Translator,
    standard: FeeStandard,
    provider: str | None,
    term: Term,
    default: fee_rules.Rule,
    courses: list[str],
) -> FeeRow:
    free = standard.covers is FeeCovers.FREE or standard.amount_fen == 0
    rules: list[str] = []
    if free:
        rules.append(t.gettext(FREE_WORDS))
    else:
        try:
            rules = fee_rules.describe(t, fee_rules.parse(standard.rule, default=default))
        except ValueError:
            log.warning("fee standard %s has an unreadable rule", standard.id)
    disclosed = standard.disclosed_on or (
        standard.disclosed_at.astimezone(t.timezone).date() if standard.disclosed_at else None
    )
    superseded = (
        standard.superseded_at.astimezone(t.timezone).date() if standard.superseded_at else None
    )
    return FeeRow(
        code=standard.code,
        name=standard.name,
        free=free,
        amount=t.gettext("Free") if free else t.money(standard.amount_fen),
        unit="" if free else t.gettext(UNIT_NAMES[standard.unit]),
        covers=(
            t.gettext("No course uses it this term")
            if standard.covers is FeeCovers.COURSE and not courses
            else t.gettext(COVERS_NAMES[standard.covers])
        ),
        courses=wording.joined(t, dict.fromkeys(courses)),
        provider=provider if standard.provider_id is not None else None,
        approval_ref=standard.approval_ref,
        disclosed_on=t.date(disclosed) if disclosed else "",
        effective=(
            t.date(standard.effective_from or term.starts_on),
            t.date(standard.effective_to or term.ends_on),
        ),
        description=standard.description,
        rules=tuple(rules),
        version=standard.version,
        superseded_on=t.date(superseded) if superseded else None,
    )
