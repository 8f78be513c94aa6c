"""Engine, sessions and the unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
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
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine with the per-backend settings Kehou relies on."""
    parsed = make_url(url)
    # SQL parameters are people's names, chat ids and invite codes: keep them out of the
    # error messages SQLAlchemy builds (and so out of logs and tracebacks).
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A transaction for a hot write path (a sign-up rush) that reads, then writes.

        SQLite has one writer at a time. Writers that start together otherwise each hold a
        pooled connection while SQLite's busy handler sleeps them in growing steps, and readers
        then wait for connections. Here they queue in-process instead, one after another, and
        hold no connection while they wait. Each begins with ``BEGIN IMMEDIATE``: it holds
        SQLite's write lock from its first read, so what it read cannot change before it writes
        (another process's writer waits, up to busy_timeout). PostgreSQL needs neither: its
        statements lock the rows they read (``FOR UPDATE``).
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
