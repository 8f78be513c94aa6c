"""Dates and times typed by parents, read without Telegram (bot/services/when.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.services import when

SATURDAY = dt.date(2026, 12, 5)


@pytest.mark.parametrize(
    ("typed", "first", "last"),
    [
        ("12月7日", dt.date(2026, 12, 7), dt.date(2026, 12, 7)),
        ("12/7", dt.date(2026, 12, 7), dt.date(2026, 12, 7)),
        ("下周一", dt.date(2026, 12, 7), dt.date(2026, 12, 7)),
        ("明天", dt.date(2026, 12, 6), dt.date(2026, 12, 6)),
        ("周三", dt.date(2026, 12, 9), dt.date(2026, 12, 9)),  # the next Wednesday, not the last
        ("12-08", dt.date(2026, 12, 8), dt.date(2026, 12, 8)),
        ("12-12 to 12-08", dt.date(2026, 12, 8), dt.date(2026, 12, 12)),
        ("12月8日至12月12日", dt.date(2026, 12, 8), dt.date(2026, 12, 12)),
        ("1月4日", dt.date(2027, 1, 4), dt.date(2027, 1, 4)),  # after the new year
        ("1-4", dt.date(2027, 1, 4), dt.date(2027, 1, 4)),
    ],
)
def test_days_as_parents_write_them(typed: str, first: dt.date, last: dt.date) -> None:
    assert when.days(typed, SATURDAY) == (first, last)


@pytest.mark.parametrize("typed", ["", "好的", "hello", "13-45", "x" * 500])
def test_what_names_no_day_is_not_read(typed: str) -> None:
    assert when.days(typed, SATURDAY) is None


@pytest.mark.parametrize(
    ("typed", "locale", "clock"),
    [
        ("16:30", "zh_CN", dt.time(16, 30)),
        ("16：50", "zh_CN", dt.time(16, 50)),
        ("4点半", "zh_CN", dt.time(4, 30)),  # the caller decides it is the afternoon
        ("下午四点半", "zh_CN", dt.time(16, 30)),
        ("下午4点50", "zh_CN", dt.time(16, 50)),
        ("4点", "zh_CN", dt.time(4, 0)),
        ("4:30 pm", "en", dt.time(16, 30)),
        ("3:40\u202fPM", "en", dt.time(15, 40)),  # the prompt's example, copied
        ("4点半", "en", dt.time(4, 30)),  # Chinese typed by an English reader
    ],
)
def test_times_as_parents_write_them(typed: str, locale: str, clock: dt.time) -> None:
    assert when.clock(typed, locale) == clock


@pytest.mark.parametrize("typed", ["明天", "下午", "hello", "25:00", ""])
def test_what_names_no_time_is_not_read(typed: str) -> None:
    assert when.clock(typed, "zh_CN") is None
