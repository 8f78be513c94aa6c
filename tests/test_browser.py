"""The web chat page in Debian's Chromium, driven by Playwright: a new parent redeems an invite.

Playwright never downloads a browser here: it launches /usr/bin/chromium (installed by
.ci/run). Screenshots go to test-artifacts/ for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.services import invites
from sandbox import demo

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = os.environ.get("KEHOU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:  # a full path is found when it is an executable file
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI but {CHROMIUM} was not found")
        pytest.skip(f"no Chromium at {CHROMIUM} (CI installs it; see .ci/run)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,  # Playwright gives each launch a fresh, temporary profile
        )
        try:
            yield launched
        finally:
            await launched.close()


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name, full_page=True, animations="disabled")


async def bot_says(page: Page, text: str) -> None:
    """Wait until a message from the bot in the open chat contains `text`."""
    await expect(page.get_by_test_id("message").filter(has_text=text).last).to_be_visible(
        timeout=TIMEOUT_MS
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_new_parent_redeems_an_invite_in_the_web_chat(
    demo_world: demo.DemoWorld, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    await page.goto(demo_world.settings.api_base_url + "/")
    await page.get_by_test_id("persona-new-parent").click()

    composer = page.get_by_test_id("composer-input")
    await composer.fill("/start")
    await page.get_by_test_id("composer-send").click()
    await bot_says(page, "邀请码")
    await composer.fill(invites.pretty(demo_world.new_parent_code))
    await composer.press("Enter")
    await bot_says(page, "尹铭")

    await page.get_by_test_id("inline-button").filter(has_text="同意").first.click()
    await bot_says(page, "照片")
    await page.get_by_test_id("inline-button").filter(has_text="可以出现孩子的照片").click()
    # The list of people follows at once, without reloading the page: now a linked parent.
    entry = page.get_by_test_id("persona-new-parent")
    await expect(entry).to_contain_text("尹铭的家长，三年级2班", timeout=TIMEOUT_MS)
    await expect(entry).not_to_contain_text("尚未绑定")
    await bot_says(page, "已与尹铭绑定")
    # The consent message was edited in place: its consent buttons are gone.
    await expect(page.get_by_test_id("inline-button").filter(has_text="照片")).to_have_count(0)
    await screenshot(page, "browser-new-parent-zh.png")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_english_parent_on_a_phone_sized_window(
    demo_world: demo.DemoWorld, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 844}, locale="en-US")
    await page.goto(demo_world.settings.api_base_url + "/")
    await page.locator(".lang-option[data-lang='en']").click()
    await expect(page.get_by_test_id("persona-parent-en")).to_contain_text("uses English")
    await page.get_by_test_id("persona-parent-en").click()

    composer = page.get_by_test_id("composer-input")
    await composer.fill("/language")
    await composer.press("Enter")
    await bot_says(page, "Choose your language")
    await page.get_by_test_id("inline-button").filter(has_text="English").click()
    await bot_says(page, "Language set to English.")
    await composer.fill("/help")
    await composer.press("Enter")
    await bot_says(page, "you are: parent")
    await screenshot(page, "browser-parent-en-phone.png")
