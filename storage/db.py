"""Engine, sessions and the unit of work."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.versions import CACHES, KehouSession


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the bot read while a job writes; busy_timeout waits instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL syncs at checkpoints rather than at every commit: a crash of Kehou
    # loses nothing; only a power cut can lose the last moments. Several times the writes/s.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # No busy wait inside SQLite: it would stall the event loop (statements run in its thread,
    # see InlineSqlite). A locked database is retried by InlineSqlite, awaiting between tries.
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


#: How long a statement waits for another writer's lock before "database is locked".
BUSY_TIMEOUT: Final = 5.0
# SQLite's own busy handler sleeps in these steps (sqlite3.c, sqliteDefaultBusyCallback).
_BUSY_STEPS: Final = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05)
_BUSY_LAST_STEP: Final = 0.1
# Operations that change nothing when SQLite answers SQLITE_BUSY, so may simply run again.
_RETRIABLE: Final = frozenset({"execute", "executemany", "commit"})


class InlineSqlite(aiosqlite.Connection):
    """An aiosqlite connection whose statements run in the event loop's own thread.

    aiosqlite sends every call (execute, each fetch, commit) to a thread of its own and wakes
    the event loop when it is done. For Kehou's statements, which take tens of microseconds,
    that crossing costs far more than the work: a one-statement transaction took about 1.0 ms
    of CPU that way and 0.3 ms inline, each further statement 0.5 ms against 0.1 ms
    (docs/PERFORMANCE.md). Here the sqlite3 call is made at once, in the caller's thread;
    aiosqlite's thread is left to open and close the connection.

    Nothing may then block: a busy wait inside SQLite would stop every other update. So the
    connection has ``busy_timeout=0``, and when another connection (of this process or any
    other) holds the write lock, the statement is tried again after an ``await`` in SQLite's
    own growing steps, for up to `BUSY_TIMEOUT` seconds; meanwhile the loop runs everything
    else, including the holder of the lock when it is this process. Only SQLITE_BUSY is
    retried, and only for calls that SQLite leaves without effect when it answers so; a stale
    snapshot (SQLITE_BUSY_SNAPSHOT) fails at once, as it would with a busy handler.
    """

    busy_timeout: float = BUSY_TIMEOUT

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as error:
            if not _busy(error) or getattr(fn, "__name__", "") not in _RETRIABLE:
                raise
            return await self._retry(fn, args, kwargs, error)

    async def _retry(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, error: sqlite3.OperationalError
    ) -> Any:
        deadline = time.monotonic() + self.busy_timeout
        step = 0
        while True:
            pause = _BUSY_STEPS[step] if step < len(_BUSY_STEPS) else _BUSY_LAST_STEP
            step += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise error
            await asyncio.sleep(min(pause, left))
            if not self._running or not self._connection:
                raise ValueError("Connection closed")
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as again:
                if not _busy(again):
                    raise
                error = again


def _busy(error: sqlite3.OperationalError) -> bool:
    # SQLITE_BUSY is 5; its extended codes keep 5 in the low byte. SQLITE_BUSY_SNAPSHOT (517)
    # means this transaction read before another one wrote: waiting cannot help.
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return "database is locked" in str(error)
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


_SQLITE_BUSY_SNAPSHOT: Final = 517


def _connect_inline(database: str, **kwargs: Any) -> InlineSqlite:
    # The connection is opened in aiosqlite's thread and then used in the loop's.
    kwargs["check_same_thread"] = False
    connection = InlineSqlite(partial(sqlite3.connect, database, **kwargs), iter_chunk_size=64)
    connection._thread.daemon = True
    return connection


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine with the per-backend settings Kehou relies on."""
    parsed = make_url(url)
    # SQL parameters are people's names, chat ids and invite codes: keep them out of the
    # error messages SQLAlchemy builds (and so out of logs and tracebacks).
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        connect_args = {"async_creator_fn": _connect_inline, **kwargs.pop("connect_args", {})}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
IDLE_BEFORE_PING: Final = 10.0
_CHECKED_IN = "kehou.checked_in"


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_CHECKED_IN] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's ``pool_pre_ping``, only for connections that sat idle.

    A ping is three round trips on asyncpg (BEGIN, the ping, ROLLBACK): before every checkout
    it cost about 7 % of the CPU of a typical action. A connection used within the last
    `IDLE_BEFORE_PING` seconds is handed out as it is (a server restart in that window fails
    one transaction, and SQLAlchemy then replaces every pooled connection); one idle longer,
    as after a night or a restart of the server, is pinged, and replaced if the ping fails
    (SQLAlchemy's documented recipe: raising DisconnectionError makes the pool retry).
    """
    checked_in = record.info.get(_CHECKED_IN)
    if checked_in is not None and time.monotonic() - checked_in < IDLE_BEFORE_PING:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise DisconnectionError() from error


#: Opens a `Database.writing` transaction on SQLite (counted as its start, not as a statement).
IMMEDIATE = "BEGIN IMMEDIATE"


class Database:
    """Owns the engine and hands out transactions; one per application."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        # Each school's cached programme (bot.services.catalogue), shared by this database's
        # sessions through Session.info; storage.versions keeps it from going stale.
        self.catalogues: dict[int, Any] = {}
        self.sessionmaker = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            sync_session_class=KehouSession,
            info={CACHES: self.catalogues},
        )
        self._writer: asyncio.Lock | None = None
        # One-statement reads (the loader's) need no transaction around them. On PostgreSQL
        # BEGIN and COMMIT are two round trips of their own, so these run in autocommit; on
        # SQLite the driver begins no transaction for a SELECT anyway.
        self._reader = (
            self.sessionmaker
            if self.dialect == "sqlite"
            else async_sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
                sync_session_class=KehouSession,
                info={CACHES: self.catalogues},
            )
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for one statement, which is atomic by itself: no BEGIN and COMMIT around
        it on PostgreSQL (autocommit). Never for several statements that must agree."""
        async with self._reader() as session, session.begin():
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction for a hot write path (a sign-up rush) that reads, then writes.

        SQLite has one writer at a time. Writers that start together otherwise each hold a
        pooled connection while SQLite's busy handler sleeps them in growing steps, and readers
        then wait for connections. Here they queue in-process instead, one after another, and
        hold no connection while they wait. Each begins with ``BEGIN IMMEDIATE``: it holds
        SQLite's write lock from its first read, so what it read cannot change before it writes
        (another process's writer waits, up to `BUSY_TIMEOUT`, see `InlineSqlite`). PostgreSQL
        needs neither: its statements lock the rows they read (``FOR UPDATE``).
        """
        if self.dialect != "sqlite":
            async with self.transaction() as session:
                yield session
            return
        if self._writer is None:
            self._writer = asyncio.Lock()
        async with self._writer, self.transaction() as session:
            await session.execute(text(IMMEDIATE))
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
