"""Upgrading an empty database gives exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.migrate import upgrade_async
from storage.models import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _check_constraints(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {c["name"] for c in inspector.get_check_constraints(table)}
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


def _model_check_constraints() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table in Base.metadata.sorted_tables:
        names = set()
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "CheckConstraint":
                names.add(str(constraint.name))
        found[table.name] = names
    # Enum columns carry their CHECK on the type, created with the table.
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if getattr(column.type, "create_constraint", False):
                found[table.name].add(f"ck_{table.name}_{column.type.name}")  # type: ignore[attr-defined]
    return found


async def test_upgrade_of_an_empty_database_matches_the_models(empty_database_url: str) -> None:
    await upgrade_async(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            assert await connection.run_sync(_check_constraints) == _model_check_constraints()
    finally:
        await engine.dispose()


async def test_every_school_table_carries_school_id() -> None:
    deployment_wide = {"schools", "bot_state", "invite_attempts", "delivery_workers"}
    missing = [
        t.name
        for t in Base.metadata.sorted_tables
        if t.name not in deployment_wide and "school_id" not in t.columns
    ]
    assert missing == []


def test_each_migration_logs_one_line() -> None:
    """`kehou migrate` and `kehou import` log each migration's message as it runs: the first
    paragraph of its docstring must be one line, or the log breaks in the middle of a line."""
    from pathlib import Path

    for path in sorted(
        (Path(__file__).parent.parent / "storage/migrations/versions").glob("0*.py")
    ):
        doc = path.read_text(encoding="utf-8").split('"""')[1]
        first_paragraph = doc.split("\n\n")[0]
        assert "\n" not in first_paragraph.strip(), path.name
