"""Days and times as parents type them: 12月7日, 12/7, 下周一, 明天, 16:30, 4点半, 下午四点半.

The reading is JioNLP's time parser (the `jionlp-time` package: the parser alone, without
JioNLP's models), so Kehou keeps no grammar of its own. The ISO-like forms the prompts show as
examples (`12-08`, `12-08 to 12-12`, `16:50`) are read first, in any language. An English
reader's times also go through Babel (`4:30 pm`). Whatever is read, the caller still checks it
against the child's sessions: this module only turns text into dates and times.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from babel.dates import parse_time as babel_time

_DATE = r"(?:(\d{4})-)?(\d{1,2})-(\d{1,2})"
_RANGE = re.compile(rf"^\s*{_DATE}\s*(?:(?:to|至|到|-|~|—)\s*{_DATE})?\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2})[:：](\d{2})\s*$")
_WEEKDAY = re.compile(r"(周|星期|礼拜)[一二三四五六日天]")
LONGEST = 200  # characters; a longer text is no date


def _jio(text: str, base: dt.datetime) -> dict[str, Any] | None:
    """JioNLP's reading of `text`, or None when it reads no time in it."""
    from jionlp_time import parse_time  # 50 ms to import: only when someone types a date

    try:
        found = parse_time(text, time_base=base)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    if not isinstance(found, dict) or found.get("type") not in ("time_point", "time_span"):
        return None
    return found


def _stamp(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")


def days(text: str, today: dt.date) -> tuple[dt.date, dt.date] | None:
    """The first and last day a typed text names, or None. A date without a year is this
    year's unless that is more than half a year past (then next year's); a bare weekday
    (周三) is the next one to come, today included."""
    if not text or len(text) > LONGEST:
        return None
    match = _RANGE.match(text)
    if match is not None:
        return _iso_days(match, today)
    found = _jio(text.strip(), dt.datetime.combine(today, dt.time(12)))
    if found is None:
        return None
    first, last = (_stamp(v).date() for v in found["time"])
    if first == last and first < today and _WEEKDAY.search(text) and "上" not in text:
        first = last = first + dt.timedelta(days=7)
    return _next_year_if_long_past(first, last, today)


def _iso_days(match: re.Match[str], today: dt.date) -> tuple[dt.date, dt.date] | None:
    def one(year: str | None, month: str, day: str) -> dt.date:
        return dt.date(int(year) if year else today.year, int(month), int(day))

    try:
        first = one(*match.groups()[:3])
        last = one(*match.groups()[3:]) if match.group(5) else first
    except ValueError:
        return None
    if first > last:
        first, last = last, first
    return _next_year_if_long_past(first, last, today) if match.group(1) is None else (first, last)


def _next_year_if_long_past(
    first: dt.date, last: dt.date, today: dt.date
) -> tuple[dt.date, dt.date]:
    if first < today - dt.timedelta(days=180):
        try:
            return first.replace(year=first.year + 1), last.replace(year=last.year + 1)
        except ValueError:  # 29 February
            return first, last
    return first, last


def clock(text: str, locale: str) -> dt.time | None:
    """The time of day a typed text names, or None. "4点半" is 04:30: the caller decides
    whether the afternoon was meant, from the sessions of that day."""
    if not text or len(text) > LONGEST:
        return None
    text = " ".join(text.split())  # Babel writes "3:40\u202fPM"; a copied example keeps it
    match = _CLOCK.match(text)
    if match is not None:
        try:
            return dt.time(int(match.group(1)), int(match.group(2)))
        except ValueError:
            return None
    if text.isascii() and not locale.startswith("zh"):
        try:
            return babel_time(text.strip(), locale=locale)
        except (ValueError, IndexError):
            pass
    found = _jio(text.strip(), dt.datetime(2000, 1, 3, 0, 0))
    if found is None or found["type"] != "time_point":
        return None
    start, end = (_stamp(v) for v in found["time"])
    if start.date() != end.date() or end - start >= dt.timedelta(hours=1):
        return None  # a whole day or a part of it (下午), not a time; "4点" is 4:00–4:59
    return start.time()
