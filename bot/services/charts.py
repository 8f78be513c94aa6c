"""Report charts as PNG bytes, sized for a phone (1080 px wide), labelled in the reader's
language: ratings per aspect, attendance over the term, the "1+N" heat-map.

Drawn with matplotlib's object API (`Figure` on the Agg canvas, never pyplot), so no GUI
backend and no global figure state are involved; rendering is CPU work, so callers run it in a
thread. The CJK font is `fonts.cjk_font()` (WenQuanYi Micro Hei), else a Noto Sans CJK the
machine has; with neither, charts still render (Chinese shows as boxes) and a warning is
logged once.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from babel.dates import format_skeleton
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from bot.i18n import N_, Translator
from bot.services import fonts
from bot.services.ratings import ASPECTS, Result
from bot.services.reports import ASPECT_NAMES, Heat, WeekRate

log = logging.getLogger(__name__)

WIDTH_IN, DPI = 10.8, 100  # 1080 px: a phone shows it full width without scaling text away
NOTO_NAMES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC")
NOTO_FILES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
)
# Scores 1 (worst) to 5 (best), red to green: readable by the common colour blindnesses too.
SCORE_COLOURS = ("#d7301f", "#fc8d59", "#fee08b", "#91cf60", "#1a9850")


@functools.cache
def font_name() -> str | None:
    """The CJK font family charts are drawn with (registered once), or None if none exists."""
    path = fonts.cjk_font()
    if path is not None:
        font_manager.fontManager.addfont(str(path))
        return str(font_manager.FontProperties(fname=str(path)).get_name())
    known = {f.name for f in font_manager.fontManager.ttflist}
    for name in NOTO_NAMES:
        if name in known:
            return name
    for candidate in NOTO_FILES:
        if candidate.is_file():
            font_manager.fontManager.addfont(str(candidate))
            return str(font_manager.FontProperties(fname=str(candidate)).get_name())
    log.warning(
        "no CJK font found: charts will show Chinese as boxes. Install fonts-wqy-microhei "
        "or set %s to a TrueType CJK font.",
        fonts.ENV,
    )
    return None


@contextmanager
def _style() -> Iterator[None]:
    family = font_name()
    params: dict[str, Any] = {
        "font.family": "sans-serif",
        "font.sans-serif": [family, "DejaVu Sans"] if family else ["DejaVu Sans"],
        "font.size": 18,
        "axes.titlesize": 22,
        "axes.unicode_minus": False,  # the CJK fonts lack U+2212
    }
    with matplotlib.rc_context(params), warnings.catch_warnings():  # type: ignore[arg-type]
        if family is None:  # boxes are expected then, and logged once above
            warnings.filterwarnings("ignore", message="Glyph .* missing")
        yield


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _short_day(t: Translator, value: dt.date) -> str:
    return str(format_skeleton("MMMd", value, locale=t.locale))


def ratings(t: Translator, result: Result, title: str) -> bytes:
    """How many gave 1–5 for each aspect, as shares of the ballots (a shown result only)."""
    if not result.shown:
        raise ValueError("a hidden course's results are never drawn")
    with _style():
        figure = Figure(figsize=(WIDTH_IN, 6.5), layout="constrained")
        axes = figure.add_subplot()
        names = [t.gettext(ASPECT_NAMES[a]) for a in ASPECTS]
        lefts = [0.0] * len(names)
        for index, colour in enumerate(SCORE_COLOURS):
            widths = []
            for aspect in ASPECTS:
                counts = result.scores[aspect]
                total = sum(counts) or 1
                widths.append(100 * counts[index] / total)
            bars = axes.barh(
                names,
                widths,
                left=lefts,
                color=colour,
                label=t.gettext("{score} points").format(score=index + 1),
            )
            for bar, width in zip(bars, widths, strict=True):
                if width >= 7:
                    axes.text(
                        bar.get_x() + width / 2,
                        bar.get_y() + bar.get_height() / 2,
                        f"{width:.0f}%",
                        ha="center",
                        va="center",
                        fontsize=15,
                    )
            lefts = [a + b for a, b in zip(lefts, widths, strict=True)]
        axes.invert_yaxis()
        axes.set_xlim(0, 100)
        axes.set_xlabel(t.gettext("Share of ballots (%)"))
        axes.set_title(
            t.ngettext("{title} · {n} ballot", "{title} · {n} ballots", result.ballots).format(
                title=title, n=result.ballots
            )
        )
        axes.legend(ncols=5, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
        return _png(figure)


def attendance(t: Translator, weeks: Sequence[WeekRate]) -> bytes:
    """The attendance rate of each week of the term."""
    with _style():
        figure = Figure(figsize=(WIDTH_IN, 7), layout="constrained")
        axes = figure.add_subplot()
        labels = [_short_day(t, w.week) for w in weeks]
        rates = [100 * (w.tally.rate or 0) for w in weeks]
        axes.bar(range(len(weeks)), rates, color="#3182bd")
        axes.set_xticks(range(len(weeks)), labels, rotation=60, ha="right", fontsize=14)
        axes.set_ylim(0, 100)
        axes.set_ylabel(t.gettext("Attendance (%)"))
        axes.set_xlabel(t.gettext("Week of"))
        axes.set_title(t.gettext("Attendance by week"))
        axes.grid(axis="y", alpha=0.3)
        return _png(figure)


def compliance(t: Translator, heat: Heat) -> bytes:
    """The share of each class's teaching days that pass "1+N", per weekday timetable."""
    rows = max(len(heat.classes), 1)
    with _style():
        figure = Figure(figsize=(WIDTH_IN, min(4 + 0.42 * rows, 60)), layout="constrained")
        axes = figure.add_subplot()
        values = [[float("nan") if v is None else v for v in row] for row in heat.share]
        image = axes.imshow(
            values or [[float("nan")]], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto"
        )
        axes.set_xticks(
            range(len(heat.weekdays)), [t.weekday(w, "abbreviated") for w in heat.weekdays]
        )
        axes.set_yticks(range(len(heat.classes)), heat.classes, fontsize=14)
        axes.xaxis.tick_top()
        if len(heat.classes) <= 30:
            for y, row in enumerate(heat.share):
                for x, value in enumerate(row):
                    if value is not None:
                        dark = value < 0.2 or value > 0.8  # the deep red and green ends
                        axes.text(
                            x,
                            y,
                            f"{value:.0%}",
                            ha="center",
                            va="center",
                            fontsize=13,
                            color="white" if dark else "black",
                        )
        bar = figure.colorbar(image, ax=axes, location="bottom", shrink=0.8)
        bar.ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        bar.set_label(t.gettext("Share of teaching days that pass 1+N"))
        axes.set_title(t.gettext(TITLE_1N))
        return _png(figure)


TITLE_1N = N_("1+N check by class and weekday")
