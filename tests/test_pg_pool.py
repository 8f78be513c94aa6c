"""PostgreSQL connections that died while idle in the pool are replaced, not handed out.

Kehou pings a pooled connection before use only when it sat idle (`storage.db._ping_if_idle`);
a busy pool skips the ping. After the server dropped every connection (a restart, a failover,
an idle timeout on the way), the next transaction must still succeed.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

import storage.db
from storage.db import Database


async def _drop_every_other_connection(database_url: str) -> int:
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return len(
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await admin.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.transaction() as session:
        assert await session.scalar(text("SELECT 1")) == 1
    assert await _drop_every_other_connection(database_url) >= 1

    monkeypatch.setattr(storage.db, "IDLE_BEFORE_PING", 0.0)  # the connection has sat idle
    async with db.transaction() as session:
        assert await session.scalar(text("SELECT 2")) == 2


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_connection_in_steady_use_is_not_pinged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    real = AsyncAdapt_asyncpg_connection.ping

    def counting(self: AsyncAdapt_asyncpg_connection) -> None:
        pings.append(self)
        real(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting)
    async with db.transaction() as session:  # a new connection: pinged once
        await session.scalar(text("SELECT 1"))
    assert len(pings) == 1
    for _ in range(5):  # used again at once: no more pings
        async with db.transaction() as session:
            await session.scalar(text("SELECT 1"))
    assert len(pings) == 1

    monkeypatch.setattr(storage.db, "IDLE_BEFORE_PING", 0.0)  # now it has sat idle
    async with db.transaction() as session:
        await session.scalar(text("SELECT 1"))
    assert len(pings) == 2
