"""Fixtures: a migrated database per test on SQLite and PostgreSQL, the app, a school, users."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.config import Secret, Settings
from bot.context import KehouApplication
from bot.services import fonts
from storage.db import Database
from storage.migrate import upgrade
from tests import pg
from tests.factories import SchoolData, make_school
from tests.harness import FakeUser, RecordingRequest

BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()


def _postgres_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("KEHOU_REQUIRE_POSTGRES"))


@pytest.fixture(scope="session")
def cjk_font() -> Path:
    """The TrueType CJK font PDFs and charts are drawn with (fonts-wqy-microhei). CI installs
    it, and there a missing font is an error; elsewhere the tests that need it are skipped."""
    found = fonts.cjk_font()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the CJK font is required in CI: apt-get install fonts-wqy-microhei")
        pytest.skip("no CJK TrueType font here: apt-get install fonts-wqy-microhei")
    return found


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str | None]:
    """One cluster for the whole run; None where PostgreSQL is not installed (never in CI)."""
    if pg.find_bindir() is None:
        if _postgres_required():
            pytest.fail("PostgreSQL binaries are required in CI but were not found")
        yield None
        return
    with pg.cluster() as url:
        yield url


@pytest.fixture(scope="session")
def templates(pg_server: str | None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Databases migrated once to head; every test copies one, which is much faster."""
    sqlite_path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{sqlite_path}")
    found = {"sqlite": str(sqlite_path)}
    if pg_server is not None:
        import asyncio

        asyncio.run(_pg_execute(pg_server, "CREATE DATABASE kehou_template"))
        upgrade(pg_server.rsplit("/", 1)[0] + "/kehou_template")
        found["postgresql"] = "kehou_template"
    return found


async def _pg_execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, pg_server: str | None) -> str:
    if request.param == "postgresql" and pg_server is None:
        pytest.skip("PostgreSQL is not installed here (CI installs it and runs these)")
    return str(request.param)


@pytest.fixture
async def empty_database_url(backend: str, pg_server: str | None, tmp_path: Path) -> str:
    """A database with no tables at all."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/empty.sqlite3"
    assert pg_server is not None
    name = f"kehou_empty_{os.getpid()}_{next(_counter)}"
    await _pg_execute(pg_server, f"CREATE DATABASE {name}")
    return pg_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def database_url(
    backend: str, pg_server: str | None, templates: dict[str, str], tmp_path: Path
) -> str:
    """A fresh database at the newest schema."""
    if backend == "sqlite":
        path = tmp_path / "kehou.sqlite3"
        shutil.copyfile(templates["sqlite"], path)
        return f"sqlite+aiosqlite:///{path}"
    assert pg_server is not None
    name = f"kehou_test_{os.getpid()}_{next(_counter)}"
    await _pg_execute(pg_server, f"CREATE DATABASE {name} TEMPLATE {templates['postgresql']}")
    return pg_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def school(db: Database) -> SchoolData:
    return await make_school(db)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(token=Secret("123456:TEST-TOKEN"), database_url=database_url)


@pytest.fixture
def request_recorder() -> RecordingRequest:
    return RecordingRequest()


@pytest.fixture
async def app(
    settings: Settings, db: Database, request_recorder: RecordingRequest
) -> AsyncIterator[KehouApplication]:
    """The real application over a recording request; any handler exception fails the test."""
    from bot.app import build_application

    application = build_application(settings, request=request_recorder, db=db)
    errors: list[BaseException] = []

    async def collect(update: object, context: object) -> None:
        errors.append(context.error)  # type: ignore[attr-defined]

    application.add_error_handler(collect)
    application.errors_expected = False  # type: ignore[attr-defined]
    await application.initialize()
    yield application
    await application.shutdown()
    if errors and not application.errors_expected:  # type: ignore[attr-defined]
        raise errors[0]


@pytest.fixture
def make_user(app: KehouApplication, request_recorder: RecordingRequest):  # type: ignore[no-untyped-def]
    """Create a FakeUser talking to the app."""

    def make(user_id: int, **kwargs: object) -> FakeUser:
        return FakeUser(app, request_recorder, user_id, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def demo_world(database_url: str) -> AsyncIterator[object]:
    """The demo school, the sandbox on a free port and the real bot polling it over HTTP."""
    from tests.e2e import running_demo

    async with running_demo(database_url) as world:
        yield world
