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


# ---------------------------------------------------------------------------------------------
# Albums (sendMediaGroup) on a phone-sized page, and photos sent from the composer


async def test_an_album_is_one_bubble_with_a_photo_grid_on_a_phone(browser: Browser) -> None:
    import json
    from zoneinfo import ZoneInfo

    import aiohttp

    from bot.i18n import I18n
    from sandbox.core import Sandbox
    from sandbox.page_i18n import all_page_strings
    from sandbox.server import run_sandbox
    from tests.e2e import free_port
    from tests.test_sandbox import png

    token, teacher = "777001:ALBUM-browser", 7001
    sandbox = Sandbox(token, bot_username="kehou_test_bot")
    sandbox.add_user(teacher, "吴丽萍")
    sandbox.add_persona(
        "teacher", kind="private", chat_id=teacher, user_id=teacher, label="吴老师"
    )
    port = free_port()
    strings = all_page_strings(I18n(ZoneInfo("Asia/Shanghai")))
    runner = await run_sandbox(sandbox, "127.0.0.1", port, page_strings=strings)
    url = f"http://127.0.0.1:{port}"
    try:
        form = aiohttp.FormData()  # the bot sends an album of five photos, a caption on the first
        form.add_field("chat_id", str(teacher))
        media = [{"type": "photo", "media": f"attach://p{n}"} for n in range(5)]
        media[0].update(caption="<b>运动会</b>的照片", parse_mode="HTML")
        form.add_field("media", json.dumps(media))
        for n in range(5):
            form.add_field(f"p{n}", png(40 + 10 * n, 30), filename=f"{n}.png")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/bot{token}/sendMediaGroup", data=form) as response:
                assert (await response.json())["ok"] is True

        page = await browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
        await page.goto(f"{url}/?lang=zh_CN#persona=teacher")
        album = page.get_by_test_id("album")
        await expect(album).to_have_count(1, timeout=TIMEOUT_MS)  # one bubble, not five
        tiles = album.get_by_test_id("album-photo")
        await expect(tiles).to_have_count(5)
        boxes = [await tiles.nth(n).bounding_box() for n in range(5)]
        assert all(box is not None for box in boxes)
        x = [(b["x"], b["x"] + b["width"]) for b in boxes if b]
        y = [round(b["y"]) for b in boxes if b]
        assert all(0 <= left and right <= 390 for left, right in x)  # fits the phone's width
        assert y[0] == y[1] < y[2] == y[3] == y[4]  # a row of two, then a row of three
        bubble = page.get_by_test_id("message").filter(has=album)
        await expect(bubble).to_contain_text("运动会的照片")
        caption = await bubble.locator(".rich").bounding_box()
        grid = await album.bounding_box()
        assert caption and grid and caption["y"] >= grid["y"] + grid["height"]  # under it

        await tiles.nth(3).click()  # each photo opens in the photo dialog
        dialog = page.locator("#photo-dialog")
        await expect(dialog).to_be_visible()
        fourth = sandbox.messages(teacher)[3]["photo_url"]
        await expect(page.locator("#photo-dialog-img")).to_have_attribute("src", fourth)
        await expect(dialog).to_contain_text("运动会的照片")  # the album's caption
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        # The teacher sends three photos and a caption: the bot gets one album.
        await page.get_by_test_id("attach-input").set_input_files(
            [
                {"name": f"{n}.png", "mimeType": "image/png", "buffer": png(20, 20 + n)}
                for n in range(3)
            ]
        )
        await expect(page.get_by_test_id("attachment")).to_have_count(3)
        await page.get_by_test_id("composer-input").fill("今天的手工课")
        await page.get_by_test_id("composer-send").click()
        await expect(album).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("attachment")).to_have_count(0)
        await expect(album.last.get_by_test_id("album-photo")).to_have_count(3)
        await screenshot(page, "browser-album-phone.png")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/bot{token}/getUpdates") as response:
                updates = [update["message"] for update in (await response.json())["result"]]
        assert len(updates) == 3 and len({u["media_group_id"] for u in updates}) == 1
        assert [u.get("caption") for u in updates] == ["今天的手工课", None, None]
    finally:
        await runner.cleanup()
