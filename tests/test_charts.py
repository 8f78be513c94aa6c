"""Report charts: PNGs 1080 px wide, Chinese labels drawn with the CJK font (a missing glyph
would be a warning, and warnings fail the tests), hidden ratings never drawn, and charts that
still render, with a warning in the log, on a machine without any CJK font."""

from __future__ import annotations

import datetime as dt
import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib import font_manager

from bot.services import charts
from bot.services.ratings import Result
from bot.services.reports import Heat, WeekRate
from bot.services.term_attendance import Tally
from storage.models import Again
from tests.test_reports import en, zh


def size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


SHOWN = Result(
    course_id=1,
    families=30,
    ballots=12,
    shown=True,
    scores={"content": (0, 1, 2, 4, 5), "teaching": (0, 0, 1, 3, 8), "safety": (1, 0, 0, 1, 10)},
    again={Again.YES: 10, Again.UNSURE: 1, Again.NO: 1},
)


def test_the_chart_font_is_the_cjk_font_file(cjk_font: Path) -> None:
    path = cjk_font  # the README's fonts-wqy-microhei (or KEHOU_CJK_FONT)
    name = charts.font_name()
    assert name == font_manager.FontProperties(fname=str(path)).get_name()
    with charts._style():
        used = font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))
    assert used == str(path)


def test_a_rating_chart_in_chinese_draws_every_glyph(cjk_font: Path) -> None:
    png = charts.ratings(zh(), SHOWN, "科学探究（三年级1组）")  # a missing glyph would raise
    assert size(png)[0] == 1080
    assert size(charts.ratings(en(), SHOWN, "Science"))[0] == 1080


def test_a_hidden_result_is_never_drawn() -> None:
    hidden = Result(course_id=2, families=30, ballots=3, shown=False)
    with pytest.raises(ValueError):
        charts.ratings(zh(), hidden, "小篮球")


def test_attendance_and_the_1_plus_n_heat_map_render_for_a_phone() -> None:
    weeks = [
        WeekRate(dt.date(2026, 11, 2) + dt.timedelta(weeks=n), Tally(40 - n, 45, n))
        for n in range(18)
    ]
    assert size(charts.attendance(zh(), weeks))[0] == 1080
    heat = Heat(
        ["三年级1班", "三年级2班", "七年级2班"],
        [1, 2, 3, 4, 5],
        [[1.0, 0.5, None, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
    )
    width, height = size(charts.compliance(zh(), heat))
    assert width == 1080 and height > 400
    many = Heat([f"{n}班" for n in range(66)], [1, 2, 3, 4, 5], [[0.8] * 5 for _ in range(66)])
    tall = size(charts.compliance(zh(), many))
    assert tall[0] == 1080 and tall[1] > height and tall[1] / tall[0] < 20  # Telegram's limit


@pytest.fixture
def no_cjk_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(charts.fonts, "cjk_font", lambda: None)
    monkeypatch.setattr(charts, "NOTO_NAMES", ())
    monkeypatch.setattr(charts, "NOTO_FILES", ())
    charts.font_name.cache_clear()
    yield
    charts.font_name.cache_clear()


def test_without_any_cjk_font_charts_still_render_and_say_so(
    no_cjk_font: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.services.charts"):
        png = charts.ratings(zh(), SHOWN, "科学探究")
    assert size(png)[0] == 1080
    assert any("no CJK font" in r.getMessage() for r in caplog.records)
