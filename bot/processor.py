"""Update processing: different users concurrently, one user's updates strictly in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger(__name__)


def ordering_key(update: object) -> int | None:
    """Updates with the same key are handled one after another, in arrival order."""
    if isinstance(update, Update):
        if update.effective_user is not None:
            return update.effective_user.id
        if update.effective_chat is not None:
            return update.effective_chat.id
    return None


class PerUserUpdateProcessor(BaseUpdateProcessor):
    """Like PTB's SimpleUpdateProcessor, with a queue (an asyncio.Lock) per user.

    PTB's default processes every update after the previous one, so a sign-up rush of hundreds
    of parents queues for minutes. Concurrency across users removes that; the per-user lock
    keeps a user's own messages and button presses from overtaking each other (a "confirm"
    press must not be handled before the choice it confirms).

    asyncio.Lock wakes waiters in FIFO order, so arrival order is kept. A user who floods the
    bot beyond `max_backlog` waiting updates has the excess dropped rather than letting one
    account tie up the shared concurrency budget.
    """

    def __init__(self, max_concurrent_updates: int = 2048, max_backlog: int = 20) -> None:
        super().__init__(max_concurrent_updates)
        self._max_backlog = max_backlog
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = ordering_key(update)
        if key is None:
            await coroutine
            return
        if self._waiting.get(key, 0) >= self._max_backlog:
            log.warning("dropping an update from %s: %d already waiting", key, self._max_backlog)
            if asyncio.iscoroutine(coroutine):
                coroutine.close()
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if self._waiting[key] == 0:
                # Forget idle users, so the maps do not grow with every account ever seen.
                del self._waiting[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""
