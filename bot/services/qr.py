"""Telegram deep links and their QR codes, for printed letters and for photos sent by the bot."""

from __future__ import annotations

import io
import re

import segno

# Telegram usernames: 5–32 characters, letters, digits and underscores, starting with a letter.
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
# A /start parameter may hold up to 64 of these characters.
_START_PARAMETER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def deep_link(bot_username: str | None, code: str) -> str | None:
    """https://t.me/<bot>?start=<code>, which opens the bot and sends `/start <code>`.

    None without a username: a printed code can still be typed, but there is nothing to link to.
    """
    if not bot_username or not bot_username.strip().lstrip("@"):
        return None
    username = bot_username.strip().lstrip("@")
    if not _USERNAME.fullmatch(username):
        raise ValueError(f"not a Telegram username: {bot_username!r}")
    if not _START_PARAMETER.fullmatch(code):
        raise ValueError("a /start parameter may only hold letters, digits, _ and -")
    return f"https://t.me/{username}?start={code}"


def _make(data: str) -> segno.QRCode:
    # Medium error correction survives a smudged or creased printout; never a Micro QR,
    # which phone cameras do not read.
    return segno.make(data, error="m", micro=False)


def qr_png(data: str, scale: int = 8) -> bytes:
    """A black-on-white PNG of the QR code, with the standard four-module quiet zone."""
    buffer = io.BytesIO()
    _make(data).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR modules row by row, True = dark, without the quiet zone.

    Whoever draws it must leave at least four modules of white around it.
    """
    return [[bool(module) for module in row] for row in _make(data).matrix]
