"""SQLite statements run in the event loop's thread and must never stall it (storage.db).

A writer that finds the database locked (by another process, or by another update of this
one) waits with ``await`` and tries again, so every other update goes on meanwhile and the
holder of the lock can finish; after `InlineSqlite.busy_timeout` it gives up, having changed
nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storage.db import Database, InlineSqlite


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "inline.sqlite3"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE marks (id INTEGER PRIMARY KEY, who TEXT)"))
    yield db, path
    await db.dispose()


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    """Another program writing: takes SQLite's write lock and keeps it for a while."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO marks (who) VALUES ('other program')")
    locked.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


class Ticker:
    """Counts how often the event loop got to run something else."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest_gap = 0.0

    async def run(self, until: asyncio.Event) -> None:
        last = time.monotonic()
        while not until.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.ticks += 1


async def _who(db: Database) -> list[str]:
    async with db.transaction() as session:
        return list((await session.execute(text("SELECT who FROM marks ORDER BY id"))).scalars())


async def test_a_writer_waits_for_another_program_without_stalling_the_bot(
    sqlite_db: tuple[Database, Path],
) -> None:
    db, path = sqlite_db
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.4, locked))
    holder.start()
    await asyncio.to_thread(locked.wait)

    done, ticker = asyncio.Event(), Ticker()
    ticking = asyncio.create_task(ticker.run(done))
    started = time.monotonic()
    async with db.writing() as session:
        await session.execute(text("INSERT INTO marks (who) VALUES ('kehou')"))
    waited = time.monotonic() - started
    done.set()
    await ticking
    await asyncio.to_thread(holder.join)

    assert waited >= 0.3, "the write went through while another program held the lock"
    assert await _who(db) == ["other program", "kehou"]
    # The loop went on answering while the write waited: no stall near the lock's 0.4 s.
    assert ticker.ticks >= 20
    assert ticker.longest_gap < 0.2


async def test_a_writer_gives_up_after_the_busy_timeout_and_changes_nothing(
    sqlite_db: tuple[Database, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, path = sqlite_db
    monkeypatch.setattr(InlineSqlite, "busy_timeout", 0.2)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.8, locked))
    holder.start()
    await asyncio.to_thread(locked.wait)

    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"):
        async with db.writing() as session:
            await session.execute(text("INSERT INTO marks (who) VALUES ('kehou')"))
    gave_up_after = time.monotonic() - started
    await asyncio.to_thread(holder.join)

    assert 0.15 <= gave_up_after < 0.6
    assert await _who(db) == ["other program"]


async def test_two_updates_of_this_process_writing_at_once_both_land(
    sqlite_db: tuple[Database, Path],
) -> None:
    """The first holds the write lock across an await; the second must let it finish.

    A busy wait in the loop's thread would deadlock here until the timeout: the holder could
    not run to commit while the waiter blocked the loop.
    """
    db, _ = sqlite_db
    first_wrote = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO marks (who) VALUES ('first')"))
            first_wrote.set()
            await asyncio.sleep(0.3)

    async def second() -> float:
        await first_wrote.wait()
        started = time.monotonic()
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO marks (who) VALUES ('second')"))
        return time.monotonic() - started

    _, waited = await asyncio.gather(first(), second())

    assert await _who(db) == ["first", "second"]
    assert 0.2 <= waited < 2.0
