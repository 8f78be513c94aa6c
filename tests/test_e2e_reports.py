"""End to end, reports over the wire: the real bot polls the sandbox over HTTP. The demo admin
opens /reports, reads the enrolment summary and fetches its Excel file, which lists every
course of the demo term with its places."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select

from bot.services import catalogue
from sandbox import demo
from storage.db import Database
from storage.models import Enrolment, EnrolmentStatus, School
from tests.e2e import TIMEOUT, Person, running_demo

ADMIN = demo.PERSONAS[0].user_id


@pytest.fixture
async def world(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The demo world, with /reports registered ahead of the fallbacks if the composition
    root does not list it yet."""
    from handlers.admin import reports as admin_reports

    build = demo.build_application

    def with_reports(*args: Any, **kwargs: Any) -> Any:
        application = build(*args, **kwargs)
        group = application.handlers[0]
        if not any(getattr(h, "callback", None) is admin_reports.show for h in group):
            group[0:0] = admin_reports.handlers()
        return application

    monkeypatch.setattr(demo, "build_application", with_reports)
    async with running_demo(database_url) as found:
        yield found


async def test_the_admin_fetches_the_enrolment_report_as_a_file(
    world: demo.DemoWorld, database_url: str
) -> None:
    admin = Person(world.sandbox, ADMIN)
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            school_id = await session.scalar(select(School.id))
            assert school_id is not None
            found = await catalogue.of(session, school_id)
            taken = await session.scalar(
                select(func.count()).where(Enrolment.status == EnrolmentStatus.ENROLLED)
            )
    finally:
        await db.dispose()

    menu = await admin.send("/reports", expecting="报表 ·")
    term = menu["text"].split("报表 · ", 1)[1].splitlines()[0]
    summary = await admin.press("报名", expecting="报名 ·")
    courses = [c for c in found.of_term(next(t.id for t in found.terms if t.name == term))]
    assert f"本学期 {len(courses)} 门课程" in summary["text"], summary["text"]

    after = world.sandbox.seq
    message, data = admin.button("Excel")
    await world.sandbox.user_presses(ADMIN, ADMIN, message["message_id"], data)
    document = await world.sandbox.wait_for_bot_message(
        ADMIN,
        after_seq=after,
        timeout=TIMEOUT,
        predicate=lambda m: (m.get("document_name") or "").endswith(".xlsx"),
    )
    assert document["document_name"] == f"报名-{term}.xlsx"
    content = world.sandbox.files[document["document"]["file_id"]].data
    book = openpyxl.load_workbook(io.BytesIO(content))
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:2] == ["代码", "课程"] and "已报名" in header
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert sorted(r[0] for r in rows) == sorted(c.code for c in courses)
    assert sum(r[header.index("已报名")] for r in rows) == taken
    assert all(c.data_type != "f" for r in sheet.iter_rows() for c in r)
