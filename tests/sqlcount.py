"""Counting the SQL an update costs: statements and transactions, the loader's apart.

    counter = SqlCounter(db, app)     # listens on the engine until `close()`
    with counter.update() as cost:
        await parent.press("cs:c:1:2:0:0:0:0")
    assert cost.statements <= 3 and cost.transactions <= 1   # beyond the loader

The loader (`handlers.common.loader.load_member`, handler group -1) runs for every update; its
statements and transaction are counted in `cost.loader_*` so a test can hold the work of the
handler itself to its budget. ``BEGIN IMMEDIATE`` (how `Database.writing` opens a SQLite
transaction) is the start of the transaction it belongs to, counted there, not as a statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from telegram.ext import Application

import handlers
from storage.db import IMMEDIATE, Database


@dataclass
class Cost:
    statements: int = 0
    transactions: int = 0
    loader_statements: int = 0
    loader_transactions: int = 0
    sql: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.statements} statements, {self.transactions} transactions:\n" + "\n".join(
            "  " + s.split("\n")[0][:120] for s in self.sql
        )


class SqlCounter:
    def __init__(self, db: Database, app: Application) -> None:  # type: ignore[type-arg]
        self.engine = db.engine.sync_engine
        (self.loader,) = app.handlers[handlers.LOADER]
        self.cost: Cost | None = None
        self.in_loader = False
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "begin", self._begin)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "begin", self._begin)

    def _statement(self, *args: Any) -> None:
        statement = args[2]
        if self.cost is None or statement == IMMEDIATE:
            return
        if self.in_loader:
            self.cost.loader_statements += 1
        else:
            self.cost.statements += 1
            self.cost.sql.append(statement)

    def _begin(self, *args: Any) -> None:
        if self.cost is None:
            return
        if self.in_loader:
            self.cost.loader_transactions += 1
        else:
            self.cost.transactions += 1

    @contextlib.contextmanager
    def update(self) -> Iterator[Cost]:
        """Count what runs inside the block (one update, usually)."""
        original = self.loader.callback
        self.cost = Cost()

        async def counted(*args: Any, **kwargs: Any) -> None:
            self.in_loader = True
            try:
                await original(*args, **kwargs)
            finally:
                self.in_loader = False

        self.loader.callback = counted
        try:
            yield self.cost
        finally:
            self.loader.callback = original
            self.cost = None
