"""A fee standard's disclosed rules as data: what a late join pays, what leaving gives back.

Cities differ (`docs/FEES.md`): a term fee refunded per unused day (Wuhan, Xiantao), by whole
half-months (Haikou), as a share by date (full before a deadline, half after), or settled by
the days actually served at term end (Enshi, "一期一结，多退少补"). So the rule is a small JSON
object stored with the standard when it is disclosed, never code per school:

    {"join": "by_day", "refund": "by_day", "count_leave": true, "settle": "refund"}
    {"refund": "windows", "windows": [{"until": "2026-09-30", "percent": 100}], "after": 50}

The arithmetic works on the days a line covers: the *universe* is every day in the term on
which the billed course (or period) runs for the child, and a line bills the days from its
start. The standard's unit cuts the universe into units: one for a term fee, one per calendar
month for a monthly fee, one per day for a per-session or per-day fee. Amounts are exact:
fractions of a unit are computed as fractions and rounded to the fen once, half up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from bot.i18n import N_, Translator
from storage.models import FeeUnit


class Join(enum.StrEnum):
    """How a child who joins after the start pays for a unit already begun."""

    FULL = "full"  # the whole unit
    BY_DAY = "by_day"  # its days still to come, as a share of its days
    BY_HALF_MONTH = "by_half_month"  # its half-months still to come (a begun one is not owed)


class Refund(enum.StrEnum):
    """What leaving before the end gives back."""

    BY_DAY = "by_day"  # every unused day at the unit's price per day
    BY_HALF_MONTH = "by_half_month"  # every whole unused half-month (1st–15th, 16th–end)
    WINDOWS = "windows"  # a share of the line by the date of leaving
    AT_TERM_END = "at_term_end"  # settled by the days actually served, at term end
    NONE = "none"  # nothing (a cancelled course is still refunded in full)


class Settle(enum.StrEnum):
    """Where money owed to a family goes."""

    REFUND = "refund"  # paid back
    CREDIT = "credit"  # carried to the next term's bill


@dataclasses.dataclass(frozen=True)
class Window:
    until: dt.date  # leaving on or before this day …
    percent: int  # … gives back this share of the line


@dataclasses.dataclass(frozen=True)
class Rule:
    join: Join = Join.BY_DAY
    refund: Refund = Refund.BY_DAY
    count_leave: bool = False  # days on approved leave count as unused (by_day, at_term_end)
    windows: tuple[Window, ...] = ()
    after: int = 0  # the share after the last window
    settle: Settle = Settle.REFUND

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "join": self.join.value,
            "refund": self.refund.value,
            "count_leave": self.count_leave,
            "settle": self.settle.value,
        }
        if self.refund is Refund.WINDOWS:
            data["windows"] = [
                {"until": w.until.isoformat(), "percent": w.percent} for w in self.windows
            ]
            data["after"] = self.after
        return data


DEFAULT = Rule()
RULE_FIELDS = frozenset({"join", "refund", "count_leave", "windows", "after", "settle"})


def parse(data: Mapping[str, Any] | None, default: Rule = DEFAULT) -> Rule:
    """A rule from its JSON (fields left out come from `default`); ValueError names a bad one."""
    if not data:
        return default
    unknown = set(data) - RULE_FIELDS
    if unknown:
        raise ValueError(f"unknown rule field: {', '.join(sorted(unknown))}")
    try:
        join = Join(data.get("join", default.join))
        refund = Refund(data.get("refund", default.refund))
        settle = Settle(data.get("settle", default.settle))
    except ValueError as exc:
        raise ValueError(f"unknown rule value: {exc}") from None
    count_leave = data.get("count_leave", default.count_leave)
    if not isinstance(count_leave, bool):
        raise ValueError("count_leave must be true or false")
    windows = default.windows
    if "windows" in data:
        windows = tuple(_window(w) for w in data["windows"] or [])
    after = data.get("after", default.after)
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= 100:
        raise ValueError("after must be a percentage from 0 to 100")
    if refund is Refund.WINDOWS and not windows:
        raise ValueError("a windows refund needs at least one window")
    if [w.until for w in windows] != sorted({w.until for w in windows}):
        raise ValueError("windows must be in date order, each date once")
    return Rule(join, refund, count_leave, windows, after, settle)


def _window(raw: Any) -> Window:
    if not isinstance(raw, Mapping) or set(raw) != {"until", "percent"}:
        raise ValueError("a window is {until: date, percent: 0-100}")
    until = raw["until"]
    day = until if isinstance(until, dt.date) else dt.date.fromisoformat(str(until))
    percent = raw["percent"]
    if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise ValueError("a window's percent must be from 0 to 100")
    return Window(day, percent)


# -------------------------------------------------------------------------------------------
# Arithmetic


def _unit_key(unit: FeeUnit, day: dt.date) -> tuple[int, ...]:
    if unit is FeeUnit.TERM:
        return ()
    if unit is FeeUnit.MONTH:
        return (day.year, day.month)
    return (day.toordinal(),)  # per session or per day: each day is a unit


def _half(day: dt.date) -> tuple[int, int, int]:
    return (day.year, day.month, 1 if day.day <= 15 else 2)


def _units(unit: FeeUnit, universe: Iterable[dt.date]) -> dict[tuple[int, ...], list[dt.date]]:
    found: dict[tuple[int, ...], list[dt.date]] = {}
    for day in sorted(set(universe)):
        found.setdefault(_unit_key(unit, day), []).append(day)
    return found


def _share(days: Sequence[dt.date], kept: set[dt.date], by_half_month: bool) -> Fraction:
    """The share of one unit's days (`days`) that `kept` covers, by day or by whole half-month."""
    if not by_half_month:
        return Fraction(sum(1 for d in days if d in kept), len(days))
    halves: dict[tuple[int, int, int], list[dt.date]] = {}
    for d in days:
        halves.setdefault(_half(d), []).append(d)
    whole = sum(1 for part in halves.values() if all(d in kept for d in part))
    return Fraction(whole, len(halves))


def fen(value: Fraction) -> int:
    """Exact to the fen, half up."""
    return int(
        (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )


@dataclasses.dataclass(frozen=True)
class Charge:
    quantity: int  # units billed (days, sessions, months; 1 for a term)
    amount_fen: int


def charge(
    unit: FeeUnit, unit_fen: int, universe: Iterable[dt.date], start: dt.date, join: Join
) -> Charge:
    """What a line costs: `unit_fen` for each unit with days from `start`, a begun unit as the
    join rule says. Nothing when no day is left."""
    units = _units(unit, universe)
    quantity = 0
    total = Fraction(0)
    for days in units.values():
        kept = {d for d in days if d >= start}
        if not kept:
            continue
        quantity += 1
        if len(kept) == len(days) or join is Join.FULL:
            total += unit_fen
        else:
            total += unit_fen * _share(days, kept, join is Join.BY_HALF_MONTH)
    return Charge(quantity, fen(total))


def unused_value(
    unit: FeeUnit,
    unit_fen: int,
    universe: Iterable[dt.date],
    start: dt.date,
    unused: set[dt.date],
    *,
    by_half_month: bool = False,
) -> int:
    """The price of the billed days in `unused` (days on or after `start`), per unit."""
    total = Fraction(0)
    for days in _units(unit, universe).values():
        billed = [d for d in days if d >= start]
        if not billed:
            continue
        # A unit begun before the child joined was billed for its remaining share only; the
        # unused part is priced on the unit's whole days either way.
        total += unit_fen * _share(days, {d for d in billed if d in unused}, by_half_month)
    return fen(total)


@dataclasses.dataclass(frozen=True)
class Leaving:
    """A child leaves the billed course (or it is cancelled) from `on` (the first day missed)."""

    on: dt.date
    cancelled: bool = False  # the school cancelled it: everything back


def refund_for_leaving(
    rule: Rule,
    unit: FeeUnit,
    unit_fen: int,
    universe: Iterable[dt.date],
    start: dt.date,
    charged_fen: int,
    leaving: Leaving,
    leave_days: Iterable[dt.date] = (),
    still_served: Iterable[dt.date] = (),
    period_kept: bool = False,
) -> int:
    """What leaving gives back under the rule, never more than the line's charge.

    `leave_days` are days on approved leave before leaving, which count as unused when the rule
    says so. `still_served` are days after `leaving.on` the line still pays for (a period fee,
    served by another course of the period): they are not unused. `period_kept`: the child
    keeps a course of the period, so a share-by-date or no-refund rule gives nothing yet, and a
    cancelled course gives back its own days only. A term-end settlement gives back the days
    after leaving now, and the rest at the end (`settle_at_term_end`).
    """
    kept = set(still_served)
    if leaving.cancelled and not period_kept:
        return charged_fen
    if leaving.cancelled:
        rule = dataclasses.replace(rule, refund=Refund.BY_DAY, count_leave=False)
    days = sorted(set(universe))
    after = {d for d in days if d >= leaving.on} - kept
    if period_kept and rule.refund in (Refund.NONE, Refund.WINDOWS):
        amount = 0
    elif rule.refund is Refund.NONE:
        amount = 0
    elif rule.refund is Refund.WINDOWS:
        percent = next((w.percent for w in rule.windows if leaving.on <= w.until), rule.after)
        amount = fen(Fraction(charged_fen * percent, 100))
    else:
        unused = set(after)
        if rule.count_leave and rule.refund in (Refund.BY_DAY, Refund.AT_TERM_END):
            unused |= {d for d in leave_days if d < leaving.on}
        amount = unused_value(
            unit,
            unit_fen,
            days,
            start,
            unused,
            by_half_month=rule.refund is Refund.BY_HALF_MONTH,
        )
    return min(amount, charged_fen)


def settle_at_term_end(
    rule: Rule,
    unit: FeeUnit,
    unit_fen: int,
    universe: Iterable[dt.date],
    start: dt.date,
    charged_fen: int,
    already_back_fen: int,
    served: Iterable[dt.date],
    leave_days: Iterable[dt.date] = (),
) -> int:
    """At term end, under an `at_term_end` rule: the days billed that were not served (the
    child absent, the session not held; approved leave only when `count_leave`) come back,
    less what was already given back. 0 under any other rule."""
    if rule.refund is not Refund.AT_TERM_END:
        return 0
    days = sorted(set(universe))
    served_days = set(served)
    leave = set(leave_days)
    unused = {
        d
        for d in days
        if d >= start and d not in served_days and (rule.count_leave or d not in leave)
    }
    owed = unused_value(unit, unit_fen, days, start, unused)
    return max(0, min(owed, charged_fen) - already_back_fen)


# -------------------------------------------------------------------------------------------
# Words: the rule as families read it (disclosure page, /fees, the withdrawal preview)

JOIN_WORDS = {
    Join.FULL: N_("Joining late: the unit already begun is charged in full."),
    Join.BY_DAY: N_("Joining late: only the service days still to come are charged."),
    Join.BY_HALF_MONTH: N_("Joining late: only the half-months still to come are charged."),
}
REFUND_WORDS = {
    Refund.BY_DAY: N_("Leaving early: every unused service day is refunded."),
    Refund.BY_HALF_MONTH: N_(
        "Leaving early: every whole unused half-month (1st–15th, 16th–end) is refunded."
    ),
    Refund.AT_TERM_END: N_(
        "Settled at term end by the days actually served: unused days are refunded."
    ),
    Refund.NONE: N_("Leaving early: no refund."),
}
LEAVE_WORDS = N_("Days on approved leave count as unused days.")
CANCELLED_WORDS = N_("A course the school cancels is refunded in full.")
CREDIT_WORDS = N_("Money owed back is carried to the next term's bill as a credit.")


def describe(t: Translator, rule: Rule) -> list[str]:
    """The rule in sentences, in the reader's language."""
    lines = [t.gettext(JOIN_WORDS[rule.join])]
    if rule.refund is Refund.WINDOWS:
        for window in rule.windows:
            lines.append(
                t.gettext("Leaving by {day}: {percent}% refunded.").format(
                    day=t.date(window.until), percent=window.percent
                )
            )
        lines.append(t.gettext("Leaving later: {percent}% refunded.").format(percent=rule.after))
    else:
        lines.append(t.gettext(REFUND_WORDS[rule.refund]))
    if rule.count_leave and rule.refund in (Refund.BY_DAY, Refund.AT_TERM_END):
        lines.append(t.gettext(LEAVE_WORDS))
    lines.append(t.gettext(CANCELLED_WORDS))
    if rule.settle is Settle.CREDIT:
        lines.append(t.gettext(CREDIT_WORDS))
    return lines
