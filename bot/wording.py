"""Words and formats every screen shares, so one thing is called one name everywhere.

`docs/UX.md` gives the rules; these functions are where they live. Each takes the reader's
`Translator`, so counts use `ngettext`, and days and times are shown in the school's zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from babel.dates import format_skeleton

from bot.i18n import N_, Translator
from storage.models import Category

CATEGORY_NAMES = {
    Category.HOMEWORK: N_("Homework help"),
    Category.SCIENCE: N_("Science"),
    Category.ARTS: N_("Arts"),
    Category.SPORTS: N_("Sports"),
    Category.LABOUR: N_("Labour"),
    Category.READING: N_("Reading"),
    Category.WELLBEING: N_("Wellbeing and safety"),
    Category.OFF_CAMPUS: N_("Off campus"),
}
# The policy's two periods: 第一时段 (homework help) and 第二时段 (enrichment).
PERIOD_NAMES = {1: N_("Period 1"), 2: N_("Period 2")}


def category(t: Translator, value: Category) -> str:
    return t.gettext(CATEGORY_NAMES[value])


def period(t: Translator, number: int) -> str:
    """第一时段 / Period 1."""
    return t.gettext(PERIOD_NAMES[number])


def grades(t: Translator, low: int, high: int) -> str:
    """ "3 年级" / "Grade 3" for one grade, "3–5 年级" / "Grades 3–5" for a range."""
    if low == high:
        return t.gettext("Grade {grade}").format(grade=low)
    return t.gettext("Grades {low}–{high}").format(low=low, high=high)


def span(t: Translator, start: dt.time, end: dt.time) -> str:
    """16:50–17:50."""
    return f"{t.time(start)}–{t.time(end)}"


def weekday_run(t: Translator, iso_weekdays: Iterable[int]) -> str:
    """Weekdays in order, a run of three or more as one range: "周一至周五", "周二、周四"."""
    days = sorted(set(iso_weekdays))
    parts: list[str] = []
    start = 0
    while start < len(days):
        end = start
        while end + 1 < len(days) and days[end + 1] == days[end] + 1:
            end += 1
        if end - start >= 2:
            parts.append(
                t.gettext("{first}–{last}").format(
                    first=t.weekday(days[start], "abbreviated"),
                    last=t.weekday(days[end], "abbreviated"),
                )
            )
        else:
            parts.extend(t.weekday(d, "abbreviated") for d in days[start : end + 1])
        start = end + 1
    return joined(t, parts)


def joined(t: Translator, items: Iterable[str]) -> str:
    """Items of a list in running text: 剪纸、书法 / paper cutting, calligraphy."""
    return ("、" if t.locale.startswith("zh") else ", ").join(items)


def day(t: Translator, value: dt.date) -> str:
    """A day in a list or a result: "12月7日 周一" / "Mon 7 Dec"."""
    return format_skeleton("MMMEd", value, locale=t.locale)


def moment(t: Translator, value: dt.datetime) -> str:
    """A moment in a history: the day as in `day`, then the time, in the school's zone."""
    local = value.astimezone(t.timezone)
    return f"{day(t, local.date())} {t.time(local.time())}"
