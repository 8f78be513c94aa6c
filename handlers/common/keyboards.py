"""Keyboards that fit a phone, and the way back and out every step offers (docs/UX.md).

At 390 px a row holds three short text buttons; a longer label gets a row of its own or two.
A list screen shows at most `PAGE_MAX` content buttons, then its navigation row.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from telegram import InlineKeyboardButton

from bot.i18n import Translator

PER_ROW = 3  # text buttons in a row at most
PAGE_MAX = 8  # content buttons on one list screen, navigation apart
# A 390 px chat fits about 30 Latin characters, or 16 CJK ones, across one row of buttons
# (less the gaps between them); a label wider than its share wraps, often inside a word.
ROW_WIDTH = 30


def width(label: str) -> int:
    """A label's width in Latin-character units: a CJK character or an emoji counts two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in label)


def grid(
    buttons: Sequence[InlineKeyboardButton], per_row: int = PER_ROW
) -> list[list[InlineKeyboardButton]]:
    """Buttons in rows of at most `per_row`, starting a new row where the next label would not
    fit its share of a phone's width."""
    rows: list[list[InlineKeyboardButton]] = []
    row: list[InlineKeyboardButton] = []
    for button in buttons:
        candidate = [*row, button]
        widest = max(width(b.text) for b in candidate)
        if row and (len(candidate) > per_row or widest * len(candidate) > ROW_WIDTH):
            rows.append(row)
            candidate = [button]
        row = candidate
    if row:
        rows.append(row)
    return rows


def nav(
    t: Translator, *, back: str | None = None, cancel: str | None = None
) -> list[InlineKeyboardButton]:
    """The row that ends every step of a flow: ‹ 返回 (to the step before) and 取消 (out)."""
    row = []
    if back is not None:
        row.append(InlineKeyboardButton(t.gettext("‹ Back"), callback_data=back))
    if cancel is not None:
        row.append(InlineKeyboardButton(t.gettext("Cancel"), callback_data=cancel))
    return row


def pager(page: int, pages: int, data: Callable[[int], str]) -> list[InlineKeyboardButton]:
    """‹ 2/5 › under a list of more than one page (`data(n)` is the press for page n); an empty
    row for a single page."""
    if pages <= 1:
        return []
    row = []
    if page > 0:
        row.append(InlineKeyboardButton("‹", callback_data=data(page - 1)))
    row.append(InlineKeyboardButton(f"{page + 1}/{pages}", callback_data=data(page)))
    if page < pages - 1:
        row.append(InlineKeyboardButton("›", callback_data=data(page + 1)))
    return row
