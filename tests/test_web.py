"""The public disclosure page (bot/web): the schedule and the disclosed fee standards of a
school's current term, in Chinese and English, served by Kehou's own aiohttp server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from bot.cli import serve_web_pages
from bot.config import ConfigError, Settings
from bot.context import KehouApplication
from bot.i18n import I18n
from bot.services import fee_rules
from bot.services.letters import render_letters_pdf
from bot.web import create_app, disclosure_url
from sandbox import demo
from storage.db import Database
from storage.models import (
    Category,
    Course,
    FeeCovers,
    FeeStandard,
    FeeUnit,
    Provider,
    ProviderKind,
    School,
    Teacher,
    TeacherKind,
    Term,
    WhitelistStatus,
)
from tests.factories import SchoolData
from tests.test_letters import SAMPLE, page_count, shown_text, translator

SHANGHAI = ZoneInfo("Asia/Shanghai")
I18N = I18n(SHANGHAI)
ZH, EN = I18N.get("zh_CN"), I18N.get("en")
IN_TERM = dt.datetime(2026, 10, 15, 4, 0, tzinfo=dt.UTC)  # a Thursday in the autumn term
MON, WED = 1, 1 << 2
WINDOWS = {"refund": "windows", "windows": [{"until": "2026-09-30", "percent": 100}], "after": 50}
SCRIPT = '<script>alert("x")</script>'
Client = Callable[..., Awaitable[TestClient[Any, Any]]]


async def programme(db: Database, school: SchoolData) -> None:
    """Four courses (one run by an outside provider, one named like markup), one cancelled,
    and the fee standards: a superseded version, its replacement, a provider's fee collected by
    the school, a free item, and one never disclosed."""
    aug = lambda day: dt.datetime(2026, 8, day, tzinfo=SHANGHAI)  # noqa: E731
    async with db.transaction() as session:
        provider = Provider(
            school_id=school.school_id,
            code="QIZHI",
            name="启智科技",
            kind=ProviderKind.OUTSIDE,
            whitelist_status=WhitelistStatus.WHITELISTED,
        )
        odd = Teacher(
            school_id=school.school_id, code="T02", name="<b>赵</b>", kind=TeacherKind.STAFF
        )
        session.add_all([provider, odd])
        await session.flush()
        common = {"school_id": school.school_id, "term_id": school.term_id}
        old = FeeStandard(
            **common,
            code="SVC",
            name="课后服务费",
            amount_fen=25000,
            unit=FeeUnit.TERM,
            covers=FeeCovers.PERIOD_2,
            version=1,
            disclosed_on=dt.date(2026, 8, 1),
            disclosed_at=aug(1),
            superseded_at=aug(20),
        )
        svc = FeeStandard(
            **common,
            code="SVC",
            name="课后服务费",
            amount_fen=28000,
            unit=FeeUnit.TERM,
            covers=FeeCovers.PERIOD_2,
            version=2,
            approval_ref="河发改收费〔2026〕18号",
            disclosed_on=dt.date(2026, 8, 20),
            disclosed_at=aug(20),
            rule=WINDOWS,
        )
        material = FeeStandard(
            **common,
            code="MAT",
            name="机器人材料费（代收）",
            amount_fen=15000,
            unit=FeeUnit.MONTH,
            covers=FeeCovers.COURSE,
            provider_id=provider.id,
            disclosed_on=dt.date(2026, 8, 20),
            disclosed_at=aug(20),
        )
        flex = FeeStandard(
            **common,
            code="FLEX",
            name="弹性离校看护",
            amount_fen=0,
            unit=FeeUnit.TERM,
            covers=FeeCovers.FREE,
            disclosed_on=dt.date(2026, 8, 20),
            disclosed_at=aug(20),
        )
        hidden = FeeStandard(
            **common,
            code="BOOKS",
            name="未公示的资料费",
            amount_fen=9900,
            unit=FeeUnit.TERM,
        )
        session.add_all([old, svc, material, flex, hidden])
        await session.flush()

        def course(code: str, name: str, **values: Any) -> Course:
            fields: dict[str, Any] = {
                "category": Category.SCIENCE,
                "period": 2,
                "grade_min": 3,
                "grade_max": 5,
                "weekdays": MON | WED,
                "starts_at": dt.time(16, 50),
                "ends_at": dt.time(17, 50),
                "teacher_id": school.teacher_id,
                **values,
            }
            return Course(**common, code=code, name=name, **fields)

        session.add_all(
            [
                course(
                    "SCI",
                    "趣味科学实验",
                    venue="科学实验室一",
                    capacity=30,
                    fee_standard_id=svc.id,
                ),
                course(
                    "HW3",
                    "三年级课业辅导",
                    category=Category.HOMEWORK,
                    period=1,
                    grade_min=3,
                    grade_max=3,
                    weekdays=0b11111,
                    starts_at=dt.time(15, 40),
                    ends_at=dt.time(16, 40),
                    venue="三年级各班教室",
                ),
                course(
                    "ROBOT",
                    "乐高机器人",
                    venue="创客教室",
                    capacity=20,
                    provider_id=provider.id,
                    fee_standard_id=material.id,
                ),
                course("ODD", SCRIPT, venue="<i>礼堂</i>", teacher_id=odd.id, capacity=12),
                course(
                    "GONE",
                    "已取消的书法课",
                    venue="书法教室",
                    cancelled_at=dt.datetime(2026, 9, 10, tzinfo=dt.UTC),
                ),
            ]
        )


def text(markup: str) -> str:
    """What a reader sees: tags dropped, entities decoded, runs of blanks as one space."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def parts(page: str, testid: str, close: str) -> list[str]:
    """The text of every element marked data-testid=`testid`, up to its `close` tag."""
    chunks = page.split(f'data-testid="{testid}"')[1:]
    return [text(chunk.split(">", 1)[1].split(close)[0]) for chunk in chunks]


def section(page: str, testid: str) -> str:
    """The text of one table (data-testid), or "" when the page has none."""
    found = parts(page, testid, "</table>")
    return found[0] if found else ""


@pytest.fixture
async def client(aiohttp_client: Client, db: Database) -> Callable[..., Any]:
    async def make(now: dt.datetime = IN_TERM) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(db, I18N, clock=lambda: now))

    return make


async def get(client: TestClient[Any, Any], path: str, status: int = 200) -> str:
    response = await client.get(path)
    body = await response.text()
    assert response.status == status, body[:500]
    return body


async def test_the_schedule_lists_every_course_with_time_venue_teacher_and_class_size(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    async with db.transaction() as session:
        await session.execute(
            update(Term)
            .where(Term.id == school.term_id)
            .values(schedule_published_on=dt.date(2026, 8, 21))
        )
    page = await get(await client(), "/schools/test")
    assert "河清实验学校" in page and "2026秋季学期" in page
    assert f"安排表公布日期：{ZH.date(dt.date(2026, 8, 21), format='long')}" in text(page)
    rows = {row.split(" ")[0]: row for row in parts(page, "course", "</tr>")}
    assert set(rows) == {"趣味科学实验", "三年级课业辅导", "乐高机器人", SCRIPT.split(" ")[0]}
    science = rows["趣味科学实验"]
    for shown in ("科技活动", "第二时段", "3–5 年级", "周一、周三", "16:50–17:50", "科学实验室一"):
        assert shown in science
    assert "王老师" in science and "30 人" in science
    homework = rows["三年级课业辅导"]
    assert "周一至周五" in homework and "15:40–16:40" in homework and "不限" in homework
    assert "第一时段" in homework and "三年级各班教室" in homework
    assert "校外机构：启智科技" in rows["乐高机器人"]
    assert "校外机构" not in science
    assert "已取消的书法课" not in page  # a cancelled course is no longer offered


async def test_a_disclosed_standard_shows_amount_unit_date_and_its_rules(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    page = await get(await client(), "/schools/test")
    current = section(page, "fees")
    svc = next(row for row in parts(page, "fee", "</tbody>") if "¥280.00" in row)
    assert "课后服务费" in svc and "每学期" in svc and "河发改收费〔2026〕18号" in svc
    assert ZH.date(dt.date(2026, 8, 20)) in svc  # disclosed on
    for line in fee_rules.describe(ZH, fee_rules.parse(WINDOWS)):
        assert line in svc  # the disclosed refund windows, under the standard
    material = next(row for row in parts(page, "fee", "</tbody>") if "¥150.00" in row)
    assert "每月" in material and "启智科技（学校代收）" in material
    assert "乐高机器人" in material  # the course it is collected for
    free = next(row for row in parts(page, "fee", "</tbody>") if "弹性离校看护" in row)
    assert "免费" in free and "此项服务免费，任何情况下均不得收费。" in free
    assert "¥" not in free
    assert "只能收取本页公示的费用" in text(page) and "请联系学校" in text(page)
    assert "¥280.00" in current


async def test_an_undisclosed_standard_is_not_shown(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    page = await get(await client(), "/schools/test")
    assert "未公示的资料费" not in page and "¥99.00" not in page
    # Disclosing it (a new, public standard) puts it on the page.
    async with db.transaction() as session:
        await session.execute(
            update(FeeStandard)
            .where(FeeStandard.code == "BOOKS")
            .values(disclosed_on=dt.date(2026, 10, 1), disclosed_at=dt.datetime.now(dt.UTC))
        )
    page = await get(await client(), "/schools/test")
    assert "未公示的资料费" in section(page, "fees") and "¥99.00" in page


async def test_a_superseded_version_is_history_not_current(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    page = await get(await client(), "/schools/test")
    current, history = section(page, "fees"), section(page, "history")
    assert "¥280.00" in current and "¥250.00" not in current
    assert "¥250.00" in history and "¥280.00" not in history
    assert f"第 1 版，{ZH.date(dt.date(2026, 8, 20))}起停止执行" in history
    assert ZH.date(dt.date(2026, 8, 1)) in history  # when the old version was disclosed


async def test_english_with_lang_en_and_a_switch_back(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    page = await get(await client(), "/schools/test?lang=en")
    assert '<html lang="en">' in page
    shown = text(page)
    assert "After-school service: schedule and fees" in shown
    assert "Mon, Wed" in shown and "4:50 PM–5:50 PM" in shown and "30 children" in shown
    svc = next(row for row in parts(page, "fee", "</tbody>") if "¥280.00" in row)
    assert "per term" in svc and EN.date(dt.date(2026, 8, 20)) in svc
    for line in fee_rules.describe(EN, fee_rules.parse(WINDOWS)):
        assert line in svc
    assert "启智科技 (collected by the school on its behalf)" in shown
    assert 'href="?lang=zh_CN"' in page and "课后服务安排表" not in page
    # The Chinese page (the school's language) links to the English one.
    chinese = await get(await client(), "/schools/test")
    assert '<html lang="zh-CN">' in chinese and 'href="?lang=en"' in chinese


async def test_the_schools_language_is_the_default(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    async with db.transaction() as session:
        await session.execute(update(School).values(default_locale="en"))
    page = await get(await client(), "/schools/test")
    assert "After-school schedule" in page
    assert "课后服务安排表" in await get(await client(), "/schools/test?lang=zh_CN")


async def test_unknown_school_is_a_polite_404_in_both_languages(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    page = await get(await client(), "/schools/nowhere", status=404)
    assert "未找到该学校" in page and "School not found" in page
    assert "请检查链接" in page and "Please check the link" in page


async def test_names_from_the_data_are_text_never_markup(
    db: Database, school: SchoolData, client: Callable[..., Any]
) -> None:
    await programme(db, school)
    for path in ("/schools/test", "/schools/test?lang=en"):
        page = await get(await client(), path)
        assert "<script" not in page and "<b>赵</b>" not in page and "<i>礼堂</i>" not in page
        assert "&lt;script&gt;" in page
        row = next(r for r in parts(page, "course", "</tr>") if "礼堂" in r)
        assert SCRIPT in row and "<b>赵</b>" in row and "<i>礼堂</i>" in row  # shown as text


@pytest.mark.parametrize(
    ("now", "term"),
    [
        (IN_TERM, "2026秋季学期"),  # the term running today
        (dt.datetime(2027, 2, 1, tzinfo=dt.UTC), "2027春季学期"),  # between terms: the next
        (dt.datetime(2027, 9, 1, tzinfo=dt.UTC), "2027春季学期"),  # after all terms: the latest
    ],
)
async def test_the_page_shows_the_current_term(
    db: Database,
    school: SchoolData,
    client: Callable[..., Any],
    now: dt.datetime,
    term: str,
) -> None:
    await programme(db, school)
    async with db.transaction() as session:
        spring = Term(
            school_id=school.school_id,
            name="2027春季学期",
            starts_on=dt.date(2027, 2, 20),
            ends_on=dt.date(2027, 7, 1),
        )
        session.add(spring)
        await session.flush()
        session.add(
            Course(
                school_id=school.school_id,
                term_id=spring.id,
                code="FOOT",
                name="春季校园足球",
                category=Category.SPORTS,
                period=2,
                grade_min=3,
                grade_max=6,
                weekdays=MON,
                starts_at=dt.time(16, 50),
                ends_at=dt.time(17, 50),
                venue="操场",
                teacher_id=school.teacher_id,
            )
        )
    page = await get(await client(now), "/schools/test")
    names = [row.split(" ")[0] for row in parts(page, "course", "</tr>")]
    assert term in page
    if term == "2027春季学期":
        assert names == ["春季校园足球"] and "¥280.00" not in page
    else:
        assert "春季校园足球" not in names and "趣味科学实验" in names


async def test_healthz(db: Database, school: SchoolData, client: Callable[..., Any]) -> None:
    assert await get(await client(), "/healthz") == "ok"


def test_settings_and_the_pages_address() -> None:
    settings = Settings._parse(
        {"KEHOU_PUBLIC_URL": "https://kehou.example.edu.cn/", "KEHOU_WEB_PORT": "9000"}
    )
    assert settings.public_url == "https://kehou.example.edu.cn"
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 9000)
    assert disclosure_url(settings, "heqing") == "https://kehou.example.edu.cn/schools/heqing"
    assert disclosure_url(settings, "heqing", "en") == (
        "https://kehou.example.edu.cn/schools/heqing?lang=en"
    )
    unset = Settings._parse({})
    assert unset.public_url is None and unset.web_port == 8081
    assert disclosure_url(unset, "heqing") is None
    assert Settings._parse({"KEHOU_WEB_PORT": "0"}).web_port == 0
    for bad in ({"KEHOU_WEB_PORT": "http"}, {"KEHOU_PUBLIC_URL": "kehou.example.edu.cn"}):
        with pytest.raises(ConfigError):
            Settings._parse(bad)


def test_the_letter_prints_the_pages_address() -> None:
    url = "https://kehou.example.edu.cn/schools/heqing"
    pdf = render_letters_pdf(
        SAMPLE[:2], school_name="河清实验学校", translator=translator("en"), disclosure_url=url
    )
    assert page_count(pdf) == 2  # still one page a letter
    assert shown_text(pdf).count(url.encode()) == 2
    plain = render_letters_pdf(SAMPLE[:1], school_name="河清实验学校", translator=translator("en"))
    assert b"/schools/" not in shown_text(plain)


async def test_kehou_run_serves_the_page_while_the_bot_runs(
    app: KehouApplication, settings: Settings, school: SchoolData
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hooks: list[str] = []

    async def bot_started(application: object) -> None:
        hooks.append("post_init")

    async def bot_stopped(application: object) -> None:
        hooks.append("post_shutdown")

    app.post_init, app.post_shutdown = bot_started, bot_stopped
    serve_web_pages(app, dataclasses.replace(settings, web_port=port))
    assert app.post_init is not None and app.post_shutdown is not None
    url = f"http://127.0.0.1:{port}/schools/test"
    await app.post_init(app)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 200
            assert "河清实验学校" in await response.text()
        await app.post_shutdown(app)
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url)
    assert hooks == ["post_init", "post_shutdown"]  # the bot's own hooks still run


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_demo_serves_its_schools_page_where_its_settings_say(
    demo_world: demo.DemoWorld,
) -> None:
    url = disclosure_url(demo_world.settings, "heqing", "en")
    assert url is not None and url.startswith(str(demo_world.settings.api_base_url))
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        page = await response.text()
    assert "河清实验学校" in page and "After-school schedule" in page
    assert len(parts(page, "course", "</tr>")) > 10
