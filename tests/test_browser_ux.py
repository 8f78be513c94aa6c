"""The demo's web page on a phone (390×844), in Chinese and in English: no button label breaks
inside a word (docs/UX.md, convention 1).

A parent goes through /courses (picking one of two children), its filters, a course card and
the first screens of /leave; signs the child up for a course with seats (the result and its next
steps, convention 2), opens a course at the same time (the clash named, convention 4), /schedule
(the week in the user's language, convention 6) and /help (convention 7). In Chinese, the other
parent's chat shows what was done (convention 5), and /leave typed in the class group is answered
in private while the group sees nothing (convention 8). The admin goes through /broadcasts and
/broadcast up to the audience screen. On every screen each inline button's label is measured
where Chromium laid it out (a Range's client rects per grapheme): a word split over two lines
fails, and so does a label that fits on one line but takes two, or that does not fit in its
button at all. Chinese has no spaces: a break between two CJK characters fails unless the
label is wider than its button. Buttons are found by their callback data, position, child or
course name, not their words, so the screens' texts may change.

Screenshots go to test-artifacts/; with KEHOU_UX_SHOTS=1 also to docs/ux/ under stable names
(courses-zh.png, card-en.png, leave-zh.png, result-zh.png, refusal-en.png, schedule-en.png,
help-zh.png, other-guardian-zh.png, group-zh.png, group-private-zh.png,
broadcast-audience-en.png, …).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select, update

from bot.services import enrolment
from bot.services.invites import CONSENT_VERSION
from sandbox import demo
from storage.db import Database
from storage.models import Course, EnrolmentActor, Guardianship, SchoolClass, Student, User
from tests.test_browser import ARTIFACTS, TIMEOUT_MS, browser  # noqa: F401 - the fixture

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ux"
PHONE: ViewportSize = {"width": 390, "height": 844}
SCHOOL_ZONE = "Asia/Shanghai"  # the demo school's, and its parents' phones'
SIBLING = {"zh_CN": "202610101", "en": "202610102"}  # a younger brother or sister, in 1-1
ENROLLED_IN = "ART-OPERA"  # a Friday course, so that /leave has days to offer
SIGN_UP_FOR = "SPT-CHESS"  # 中国象棋, Wednesdays, with seats: signed up for on the page
CLASHING = "ART-CUT"  # 剪纸（非遗）, Wednesdays at the same time: its card names the clash

# The newest message from the bot: what the screen shows now.
LAST_BOT = "[data-testid=message][data-outgoing=true]"

SIGNATURE = """() => {
  const all = document.querySelectorAll('[data-testid=message][data-outgoing=true]');
  const last = all[all.length - 1];
  if (!last) return '';
  const busy = last.querySelector('.is-pending') ? 'busy' : '';
  return busy + last.dataset.messageId + '|' + last.innerText;
}"""

# Measures every inline button of the newest bot message (or of the message it is given); see
# the module's docstring.
MEASURE = r"""(given) => {
  const all = document.querySelectorAll('[data-testid=message][data-outgoing=true]');
  const message = given instanceof Element ? given : all[all.length - 1];
  const CJK = /[\u2E80-\u2FFF\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]/;
  const lang = document.documentElement.lang || undefined;
  const words = new Intl.Segmenter(lang, { granularity: "word" });
  const graphemes = new Intl.Segmenter(lang, { granularity: "grapheme" });
  const range = document.createRange();
  const results = [];
  for (const button of message ? message.querySelectorAll(".inline-button") : []) {
    const label = button.querySelector(".inline-label");
    const node = label && label.firstChild;
    if (!node || node.nodeType !== Node.TEXT_NODE || !node.data.trim()) continue;
    const text = node.data;
    const rects = (start, end) => {
      range.setStart(node, start);
      range.setEnd(node, end);
      return [...range.getClientRects()].filter((r) => r.width > 0.5);
    };
    const mids = []; // the vertical middle of each line, in the order first seen
    const lineOf = (r) => {
      const mid = (r.top + r.bottom) / 2;
      let i = mids.findIndex((m) => Math.abs(m - mid) < 4);
      if (i < 0) i = mids.push(mid) - 1;
      return i;
    };
    const clusters = [...graphemes.segment(text)].map((g) => {
      const found = rects(g.index, g.index + g.segment.length);
      return { start: g.index, end: g.index + g.segment.length, text: g.segment,
               line: found.length ? lineOf(found[0]) : null,
               lines: new Set(found.map(lineOf)) };
    });
    const lines = mids.length;
    const broken = [];
    for (const w of words.segment(text)) {
      if (!w.isWordLike || CJK.test(w.segment)) continue;
      const seen = new Set();
      for (const c of clusters) {
        const inside = c.start >= w.index && c.end <= w.index + w.segment.length;
        if (inside) c.lines.forEach((l) => seen.add(l));
      }
      if (seen.size > 1) broken.push(w.segment);
    }
    let cjkBreak = null;
    const shown = clusters.filter((c) => c.line !== null);
    for (let i = 1; i < shown.length; i++) {
      const a = shown[i - 1], b = shown[i];
      const between = a.line !== b.line && CJK.test(a.text) && CJK.test(b.text);
      if (between) cjkBreak = a.text + "|" + b.text;
    }
    const style = getComputedStyle(button);
    const box = button.getBoundingClientRect();
    const left = box.left + parseFloat(style.paddingLeft) + button.clientLeft;
    const right = box.right - parseFloat(style.paddingRight) - button.clientLeft;
    const overflow = rects(0, text.length).some((r) => r.left < left - 1 || r.right > right + 1);
    label.style.whiteSpace = "nowrap";
    const natural = rects(0, text.length).reduce((sum, r) => sum + r.width, 0);
    label.style.whiteSpace = "";
    results.push({ text, lines, broken, cjkBreak, overflow,
                   natural: Math.round(natural), room: Math.round(right - left) });
  }
  return results;
}"""


def faults(screen: str, measured: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the labels of one screen, one line each."""
    found = []
    for m in measured:
        fits = m["natural"] <= m["room"]
        why = []
        if m["broken"]:
            why.append(f"the word(s) {m['broken']} break over two lines")
        if m["cjkBreak"] and fits:
            why.append(f"breaks between {m['cjkBreak']} although it fits on one line")
        if fits and m["lines"] > 1 and not m["broken"] and not m["cjkBreak"]:
            why.append("takes two lines although it fits on one")
        if m["overflow"]:
            why.append(f"does not fit in its button ({m['natural']} px in {m['room']} px)")
        if why:
            found.append(f"{screen}: {m['text']!r} " + "; ".join(why))
    return found


class Phone:
    """The page at 390×844, one persona at a time, collecting what is wrong on each screen."""

    def __init__(self, page: Page, lang: str) -> None:
        self.page = page
        self.lang = lang
        self.suffix = "zh" if lang == "zh_CN" else "en"
        self.problems: list[str] = []
        self.wrapped: list[str] = []  # labels on two lines or more, allowed: for the report

    async def open(self, persona: str) -> None:
        back = self.page.locator("#back-button")
        if await back.is_visible():
            await back.click()
        await self.page.get_by_test_id(f"persona-{persona}").click()
        await expect(self.page.get_by_test_id("composer-input")).to_be_visible()

    async def signature(self) -> str:
        return str(await self.page.evaluate(SIGNATURE))

    async def screen(self, before: str) -> None:
        """Wait until the newest bot message is new or edited, with its buttons, and settled."""
        await self.page.wait_for_function(
            f"(before) => {{ const s = ({SIGNATURE})(); return s && s !== before && "
            "!s.startsWith('busy'); }",
            arg=before,
            timeout=TIMEOUT_MS,
        )
        settled = await self.signature()
        while True:  # a second edit may follow at once (a toast, the answer to the press)
            await self.page.wait_for_timeout(400)
            now = await self.signature()
            if now == settled:
                return
            settled = now

    async def send(self, text: str) -> None:
        before = await self.signature()
        composer = self.page.get_by_test_id("composer-input")
        await composer.fill(text)
        await composer.press("Enter")
        await self.screen(before)

    async def press(self, button: Any) -> None:
        before = await self.signature()
        await button.click()
        await self.screen(before)

    def buttons(self, prefix: str = "") -> Any:
        """The newest bot message's buttons whose callback data starts with `prefix`."""
        selector = f"[data-callback^='{prefix}']" if prefix else "[data-testid=inline-button]"
        return self.page.locator(LAST_BOT).last.locator(selector)

    async def check(self, name: str, message: Any = None, *, buttons: bool = True) -> None:
        """Measure the labels of the newest bot message (or of `message`, scrolled to the top of
        the chat), and keep the screenshot under `name`. `buttons=False`: a screen that may
        have none (a notice, /help, a quiet group)."""
        if message is not None:
            await message.evaluate("(m) => m.scrollIntoView({ block: 'start' })")
            measured = await message.evaluate(MEASURE)
        else:
            measured = await self.page.evaluate(MEASURE)
        assert measured or not buttons, f"{name}: the screen has no buttons"
        self.problems += faults(f"{name}-{self.suffix}", measured)
        self.wrapped += [
            f"{name}-{self.suffix}: {m['text']!r} on {m['lines']} lines"
            for m in measured
            if m["lines"] > 1
        ]
        await self.shoot(name)
        if message is not None:  # back to the bottom, where the next answer appears
            await self.page.evaluate(
                "() => { const l = document.getElementById('messages'); "
                "l.scrollTop = l.scrollHeight; }"
            )

    async def shoot(self, name: str) -> None:
        shot = f"{name}-{self.suffix}.png"
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"ux-{shot}", animations="disabled")
        if os.environ.get("KEHOU_UX_SHOTS") == "1":
            DOCS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=DOCS / shot, animations="disabled")


async def family(database_url: str, lang: str) -> tuple[str, str, str]:
    """Give the parent a second child and the first child a Friday course (so that /courses
    asks which child and /leave has days); the admin speaks `lang`. Returns the persona key,
    the first child's name and the name of the demo's full course."""
    key = "parent-zhang" if lang == "zh_CN" else "parent-en"
    persona = next(p for p in demo.PERSONAS if p.key == key)
    admin = next(p for p in demo.PERSONAS if p.key == "admin")
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            user_id, school_id = (
                await session.execute(
                    select(User.id, User.school_id).where(User.telegram_id == persona.user_id)
                )
            ).one()
            child_id, child = (
                await session.execute(
                    select(Student.id, Student.name).where(
                        Student.student_no == persona.student_no
                    )
                )
            ).one()
            sibling = (
                await session.scalars(
                    select(Student.id)
                    .join(SchoolClass, SchoolClass.id == Student.class_id)
                    .where(Student.student_no == SIBLING[lang])
                )
            ).one()
            session.add(
                Guardianship(
                    school_id=school_id,
                    user_id=user_id,
                    student_id=sibling,
                    consent_version=CONSENT_VERSION,
                    consented_at=dt.datetime.now(dt.UTC),
                    photo_consent=True,
                )
            )
            if lang == "en":
                await session.execute(
                    update(User).where(User.telegram_id == admin.user_id).values(locale="en")
                )
            course = (
                await session.scalars(select(Course.id).where(Course.code == ENROLLED_IN))
            ).one()
            full = (
                await session.scalars(select(Course.name).where(Course.code == demo.FULL_COURSE))
            ).one()
        signed = await enrolment.sign_up(
            db, child_id, course, user_id=user_id, actor=EnrolmentActor.PARENT
        )
        assert isinstance(signed, enrolment.SignedUp), signed
    finally:
        await db.dispose()
    return key, child, full


async def course_names(database_url: str, *codes: str) -> list[str]:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            rows = await session.execute(select(Course.code, Course.name))
            found = {code: name for code, name in rows}
    finally:
        await db.dispose()
    return [found[code] for code in codes]


async def open_card(phone: Phone, course: str) -> None:
    """On the course list, turn the pages until `course` is listed, and open its card."""
    for _ in range(4):
        named = phone.buttons("cs:c:").filter(has_text=course)
        if await named.count():
            await phone.press(named.first)
            await expect(phone.buttons("cs:c:")).to_have_count(0)
            return
        await phone.press(phone.buttons("cs:l:").filter(has_text="›").first)
        await expect(phone.buttons("cs:c:").first).to_be_visible()
    raise AssertionError(f"{course} is not on the course list")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("lang", ["zh_CN", "en"])
async def test_no_button_label_breaks_inside_a_word_on_a_phone(
    demo_world: demo.DemoWorld,
    database_url: str,
    browser: Browser,  # noqa: F811 - the fixture
    lang: str,
) -> None:
    key, child, full = await family(database_url, lang)
    page = await browser.new_page(
        viewport=PHONE,
        locale="zh-CN" if lang == "zh_CN" else "en-US",
        timezone_id=SCHOOL_ZONE,  # the phone shows the times the bot writes
    )
    await page.goto(f"{demo_world.settings.api_base_url}/")
    await page.locator(f".lang-option[data-lang='{lang}']").click()
    phone = Phone(page, lang)

    # A parent of two: /courses asks which child, then lists the courses; a course card.
    await phone.open(key)
    await phone.send("/courses")
    await phone.check("courses-child")
    await phone.press(phone.buttons().filter(has_text=child).first)
    await expect(phone.buttons("cs:c:").first).to_be_visible()
    await phone.check("courses")
    if await phone.buttons("cs:f:").count():  # the filters, behind one button
        await phone.press(phone.buttons("cs:f:").first)
        await phone.check("courses-filter")
        await phone.press(phone.buttons("cs:l:").last)  # back to the list
        await expect(phone.buttons("cs:c:").first).to_be_visible()
    course = phone.buttons("cs:c:")
    named = course.filter(has_text=full)  # the demo's full course, with its waitlist
    await phone.press(named.first if await named.count() else course.first)
    await expect(phone.buttons("cs:c:")).to_have_count(0)
    await phone.check("card")

    # /leave: which child, then the days.
    await phone.send("/leave")
    await phone.check("leave")
    await phone.press(phone.buttons("lv:k:").filter(has_text=child).first)
    await expect(phone.buttons("lv:w:").first).to_be_visible()
    await phone.check("leave-days")

    # A result with its next steps (convention 2): the child signed up for a course with seats.
    signed, clashing = await course_names(database_url, SIGN_UP_FOR, CLASHING)
    await phone.send("/courses")
    await phone.press(phone.buttons().filter(has_text=child).first)
    await open_card(phone, signed)
    await phone.press(phone.buttons("cs:s:").first)
    await phone.press(phone.buttons("cs:y:").first)
    result = page.locator(LAST_BOT).last
    await expect(result).to_contain_text(child)
    await expect(result).to_contain_text(signed)
    for step in ("sc:v", "cs:l:", "wd:a:"):  # 查看课表 · 继续选课 · 撤销
        await expect(phone.buttons(step)).to_have_count(1)
    await phone.check("result")

    # A refusal that says why (convention 4): a course at the same time names the one signed up
    # for, and offers the way back; there is nothing to sign up for.
    await phone.press(phone.buttons("cs:l:").first)  # 继续选课: the list again
    await open_card(phone, clashing)
    card = page.locator(LAST_BOT).last
    await expect(card).to_contain_text("⚠️")
    await expect(card).to_contain_text(signed)
    await expect(phone.buttons("cs:s:")).to_have_count(0)
    await expect(phone.buttons("cs:l:")).to_have_count(1)  # ‹ 返回
    await expect(phone.buttons("cs:x")).to_have_count(1)  # 取消
    await phone.check("refusal")

    # The week in the user's language (convention 6): one message per child; the first
    # child's names the course just signed up for, on its weekday.
    before = await page.locator(LAST_BOT).count()
    await phone.send("/schedule")
    await expect(page.locator(LAST_BOT)).to_have_count(before + 2)  # two children
    week = page.locator(LAST_BOT).filter(has_text=child).filter(has_text=signed).last
    wednesday = "星期三" if lang == "zh_CN" else "Wednesday"
    await expect(week).to_contain_text(wednesday)
    if lang == "en":
        await expect(week).not_to_contain_text("周")
    await phone.check("schedule", week, buttons=False)

    # /help promises only what exists (convention 7).
    await phone.send("/help")
    await expect(page.locator(LAST_BOT).last).to_contain_text("/courses")
    await phone.check("help", buttons=False)

    if lang == "zh_CN":
        # Both guardians in step (convention 5): the other parent is told of the sign-up.
        await phone.open("parent-zhang-dad")
        told = page.locator(LAST_BOT).filter(has_text="👪").filter(has_text=signed)
        await expect(told).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(told).to_contain_text(child)
        await phone.check("other-guardian", told, buttons=False)

        # A class group stays quiet (convention 8): /leave typed in the group is answered in
        # the parent's private chat, with the button that opens it; the group sees nothing.
        await phone.open("class-group")
        said = await page.locator(LAST_BOT).count()
        composer = page.get_by_test_id("composer-input")
        await composer.fill("/leave")
        await composer.press("Enter")
        await expect(
            page.locator("[data-testid=message][data-outgoing=false]").filter(has_text="/leave")
        ).to_have_count(1)
        await phone.open(key)
        await expect(page.locator(LAST_BOT).last).to_contain_text(demo.GROUP_TITLE)
        await expect(phone.buttons("go:leave")).to_have_count(1)
        await phone.check("group-private")
        await phone.open("class-group")
        await page.wait_for_timeout(1000)
        assert await page.locator(LAST_BOT).count() == said, "the bot answered in the group"
        await phone.shoot("group")

    # The admin: /broadcasts lists the notices; /broadcast asks for the text, then who gets it.
    await phone.open("admin")
    await phone.send("/broadcasts")  # the demo's scheduled notice is listed
    await phone.check("broadcasts")
    await phone.send("/broadcast")
    if await phone.buttons().count():
        await phone.check("broadcast")
    await phone.send("本周五下午课后服务照常进行。" if lang == "zh_CN" else "No change on Friday.")
    assert await phone.buttons().count() >= 3, "the audience screen offers several audiences"
    await phone.check("broadcast-audience")
    await phone.press(
        phone.buttons("bc:a:").filter(has_text="班级" if lang == "zh_CN" else "Classes").first
    )
    await phone.check("broadcast-classes")
    await phone.press(phone.buttons("bc:t:").first)
    await phone.check("broadcast-classes-picked")
    await phone.press(phone.buttons("bc:d:").first)
    await phone.check("broadcast-preview")
    await phone.press(phone.buttons("bc:o:").first)
    await phone.check("broadcast-preview-ack")
    await phone.press(phone.buttons("bc:send:").first)
    await phone.check("broadcast-confirm")
    await phone.press(phone.buttons("bc:go:").first)
    await phone.page.wait_for_timeout(3000)
    await phone.send("/broadcasts")
    await phone.press(phone.buttons("bl:open:").first)
    await phone.check("broadcast-card")
    await phone.press(phone.buttons("bl:list:").first)
    await phone.press(phone.buttons("bl:open:").last)
    await phone.press(phone.buttons("bl:cancel:").first)
    await phone.check("broadcast-cancel-ask")

    # The teacher's day: the roll (张琪 marked absent), the alert and its reasons on the
    # mother's phone, dismissal, the day's update; the admin's evening digest.
    await phone.open("teacher")
    await phone.send("/attendance")
    if not await phone.buttons("at:t:").count():  # two sessions today: the day's list first
        await phone.check("attendance-day")
        await phone.press(phone.buttons("at:o:").first)  # the scene's session starts first
    await phone.check("attendance")
    for _ in range(8):
        if await phone.buttons("at:t:").filter(has_text="张琪").count():
            break
        await phone.press(phone.buttons("at:o:").filter(has_text="›").first)
    await phone.press(phone.buttons("at:t:").filter(has_text="张琪").first)
    await phone.press(phone.buttons("at:t:").filter(has_text="张琪").first)
    await phone.check("attendance-tapped")
    await phone.press(phone.buttons("at:a:").first)
    await phone.press(phone.buttons("at:s:").first)
    await phone.check("attendance-saved")
    await phone.send("/dismiss")
    await phone.check("dismiss")
    await phone.send("/update")
    await phone.check("update", buttons=False)
    await phone.send("今天我们搭了一座桥。" if lang == "zh_CN" else "We built a bridge today.")
    await phone.check("update-preview")
    await phone.open("parent-zhang")  # 张琪's mother (Chinese, whatever the page's language)
    await page.wait_for_timeout(1000)
    alert = page.locator(LAST_BOT).filter(has_text="张琪").last
    await expect(alert.locator("[data-callback^='ab:r:']")).to_have_count(1)
    await phone.check("absence-alert", alert)
    await phone.press(alert.locator("[data-callback^='ab:r:']").first)
    await phone.check("absence-reasons")
    await phone.open("admin")
    await phone.send("/digest")
    await phone.check("digest")

    # Term-end ratings: the admin opens the window; the parent rates a course with the child.
    await phone.send("/ratings")
    await phone.press(phone.buttons("rr:o").first)
    await phone.press(phone.buttons("rr:oy:").first)
    await phone.send("/ratings")
    await phone.check("ratings-status")
    await phone.open(key)
    await phone.send("/rate")
    await phone.check("rate-list")
    await phone.press(phone.buttons("rt:b:").first)
    await phone.check("rate-question")
    for prefix in ("rt:a:", "rt:a:", "rt:a:"):
        await phone.press(phone.buttons(prefix).last)
    await phone.check("rate-again")
    await phone.press(phone.buttons("rt:a:").first)
    await phone.check("rate-face")
    await phone.press(phone.buttons("rt:a:").first)
    await phone.press(phone.buttons("rt:n:").first)
    await phone.check("rate-summary")

    # The admin's term-end screens: reports (the "1+N" check), providers, growth records.
    await phone.open("admin")
    await phone.send("/reports")
    await phone.check("reports")
    await phone.press(phone.buttons("rp:s:compliance").first)
    await phone.check("report-compliance")
    await phone.send("/providers")
    await phone.check("providers")
    await phone.press(phone.buttons("pv:c:").first)
    await phone.check("provider-card")
    await phone.press(phone.buttons("pv:r:").first)
    await phone.check("provider-review")
    await phone.send("/growth")
    await phone.check("growth-admin")

    print("\n".join(["labels on more than one line:", *phone.wrapped]))
    assert not phone.problems, "labels that break inside a word:\n" + "\n".join(phone.problems)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_measure_finds_labels_that_break_inside_a_word(
    demo_world: demo.DemoWorld,
    browser: Browser,  # noqa: F811 - the fixture
) -> None:
    """The check above can fail: a long English word in a third of a row breaks inside the
    word; a long Chinese label may wrap; a short one squeezed onto two lines is caught."""
    admin = next(p for p in demo.PERSONAS if p.key == "admin").user_id
    keyboard = [
        [
            {"text": "Internationalisation", "callback_data": "t:1"},
            {"text": "取消报名并加入候补名单", "callback_data": "t:2"},
            {"text": "OK", "callback_data": "t:3"},
        ],
        [{"text": "继续选课", "callback_data": "t:4"}],
    ]
    url = f"{demo_world.settings.api_base_url}/bot{demo.DEMO_TOKEN}/sendMessage"
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": admin, "text": "测试", "reply_markup": {"inline_keyboard": keyboard}}
        async with http.post(url, json=body) as response:
            assert (await response.json())["ok"]
    page = await browser.new_page(viewport=PHONE, locale="zh-CN")
    await page.goto(f"{demo_world.settings.api_base_url}/")
    phone = Phone(page, "zh_CN")
    await phone.open("admin")
    await expect(phone.buttons("t:")).to_have_count(4)

    found = faults("test", await page.evaluate(MEASURE))
    assert len(found) == 1 and "'Internationalisation'" in found[0], found
    assert "break over two lines" in found[0]

    await page.add_style_tag(content=".inline-label { max-width: 2em; }")
    squeezed = faults("test", await page.evaluate(MEASURE))
    assert any("'继续选课'" in line and "although it fits" in line for line in squeezed), squeezed
