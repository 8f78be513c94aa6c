"""Logging with secrets redacted and libraries kept from writing message contents."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

# Anything shaped like a bot token, whoever's: a pasted or foreign token must not reach a log.
TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
MASK = "***"

# At DEBUG these libraries log every request with its parameters and every answer with its
# body: typed invite codes, children's names, chat ids. They never log below these levels,
# whatever KEHOU_LOG_LEVEL says; Kehou's own loggers follow the setting.
LIBRARY_LEVELS = {
    "telegram": logging.INFO,
    "telegram.ext": logging.INFO,
    "httpx": logging.WARNING,  # request URLs at INFO, and the Bot API URL holds the token
    "httpcore": logging.WARNING,
    "apscheduler": logging.WARNING,
    "aiohttp.access": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "aiosqlite": logging.WARNING,
    "asyncpg": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,
}


class Redactor:
    """Replaces the given secrets, and anything shaped like a bot token, in a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return TOKEN_SHAPE.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, exception and stack text before any handler formats it."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: whatever a filter missed cannot get past this."""

    def __init__(self, fmt: str, redact: Redactor) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    level: str | int, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Log to stderr (or `stream`) with secrets redacted; called at start, never at import."""
    secrets = list(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(FORMAT, Redactor(secrets)))
    handler.addFilter(RedactingFilter(*secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    cap_library_loggers(root.level)
    return handler


def cap_library_loggers(level: int) -> None:
    """Keep the libraries' request and SQL logging out, even at DEBUG.

    Set on each library logger itself: a record that passes its own logger reaches the root's
    handler whatever the root's level.
    """
    for name, floor in LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(max(floor, level))
