"""The disclosure page in a real browser (Debian's Chromium through Playwright): the demo
school's schedule and fees on a desktop (1280 px) and a phone (390 px), in Chinese and English.

Nothing is wider than a phone's screen, the fee amounts are on screen, and printing (print
media) hides the language switch. Screenshots go to docs/ux/disclosure-{desktop,phone}-{zh,en}.png.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ViewportSize, expect
from sqlalchemy import select, update

from bot.i18n import I18n
from bot.services.importer import import_school
from bot.web import create_app
from storage.db import Database
from storage.models import FeeStandard, FeeUnit
from tests.test_browser import TIMEOUT_MS, browser  # noqa: F401 - the fixture

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ux"
DEMO_SCHOOL = Path(__file__).resolve().parent.parent / "bot" / "demo" / "school.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
IN_TERM = dt.datetime(2026, 10, 15, 4, 0, tzinfo=dt.UTC)
VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 900},
    "phone": {"width": 390, "height": 844},
}
LANGUAGES = {"zh": ("zh_CN", "zh-CN", "课后服务安排表"), "en": ("en", "en-GB", "Fee standards")}


@pytest.fixture
async def site(database_url: str) -> Any:
    """The demo school with its fees disclosed, one of them in a second version, served by
    Kehou's web app on a free port."""
    db = Database(database_url)
    await import_school(db, DEMO_SCHOOL, actor_label="test")
    async with db.transaction() as session:
        disclosed = dt.datetime(2026, 8, 20, tzinfo=SHANGHAI)
        await session.execute(
            update(FeeStandard)
            .where(FeeStandard.disclosed_on.is_not(None))
            .values(disclosed_at=disclosed)
        )
        svc = (await session.scalars(select(FeeStandard).where(FeeStandard.code == "SVC"))).one()
        svc.version = 2  # and the version it replaced:
        session.add(
            FeeStandard(
                school_id=svc.school_id,
                term_id=svc.term_id,
                code="SVC",
                name=svc.name,
                amount_fen=26000,
                unit=FeeUnit.TERM,
                version=1,
                disclosed_on=dt.date(2026, 6, 30),
                disclosed_at=dt.datetime(2026, 6, 30, tzinfo=SHANGHAI),
                superseded_at=disclosed,
            )
        )
    server = TestServer(create_app(db, I18n(SHANGHAI), clock=lambda: IN_TERM))
    await server.start_server()
    try:
        yield str(server.make_url("/schools/heqing"))
    finally:
        await server.close()
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("device", list(VIEWPORTS))
@pytest.mark.parametrize("language", list(LANGUAGES))
async def test_the_page_fits_the_screen_and_prints_without_the_switch(
    site: str,
    browser: Browser,  # noqa: F811 - the fixture
    device: str,
    language: str,
) -> None:
    locale, browser_locale, heading = LANGUAGES[language]
    viewport = VIEWPORTS[device]
    page = await browser.new_page(viewport=viewport, locale=browser_locale)
    await page.goto(f"{site}?lang={locale}")
    await expect(page.get_by_text(heading).first).to_be_visible(timeout=TIMEOUT_MS)

    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
    )
    assert max(widths[:2]) <= widths[2], f"the page is wider than the screen: {widths}"

    amounts = page.locator("[data-testid=fees] [data-testid=amount]")
    assert await amounts.count() >= 5
    for index in range(await amounts.count()):
        amount = amounts.nth(index)
        await amount.scroll_into_view_if_needed()
        await expect(amount).to_be_visible()
        box = await amount.bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"]
    await expect(amounts.filter(has_text="¥280.00")).to_have_count(1)
    await expect(page.locator("[data-testid=history]")).to_contain_text("¥260.00")

    switch = page.get_by_test_id("languages")
    await expect(switch).to_be_visible()
    await page.emulate_media(media="print")
    await expect(switch).to_be_hidden()
    await expect(amounts.first).to_be_visible()
    await page.emulate_media(media="screen")

    await page.evaluate("window.scrollTo(0, 0)")
    DOCS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(
        path=DOCS / f"disclosure-{device}-{language}.png", full_page=True, animations="disabled"
    )
    await page.close()
