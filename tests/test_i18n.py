"""Catalogs are complete and in step with the code; formatting follows the user's locale."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.i18n import LOCALES_DIR, SUPPORTED_LOCALES, I18n, negotiate

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{(\w*)\}")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """What `pybabel extract` finds in the code right now."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run(
        [str(pybabel), "extract", "-F", "babel.cfg", "-o", str(pot), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as fp:
        return read_po(fp)


def load(locale: str) -> Catalog:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fp:
        return read_po(fp, locale=locale)


def ids(catalog: Catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_catalog_has_every_message_in_the_code(template: Catalog, locale: str) -> None:
    catalog = load(locale)
    assert ids(template) - ids(catalog) == set(), "run `python3 dev.py catalogs` and translate"
    assert ids(catalog) - ids(template) == set(), "the catalog keeps messages the code dropped"


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_message_is_translated_and_not_fuzzy(locale: str) -> None:
    problems = []
    for message in load(locale):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            problems.append(message.id)
    assert problems == []


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_translations_keep_the_placeholders(locale: str) -> None:
    for message in load(locale):
        if not message.id:
            continue
        source = message.id if isinstance(message.id, str) else message.id[0]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) == set(PLACEHOLDER.findall(source)), source


@pytest.mark.parametrize(
    ("saved", "telegram", "expected"),
    [
        ("en", "zh-hans", "en"),  # a saved choice wins
        (None, "en-GB", "en"),
        (None, "zh-hant", "zh_CN"),
        (None, "ru", "zh_CN"),  # unsupported: the school's default
        (None, None, "zh_CN"),
        ("xx", "not a locale!", "zh_CN"),
    ],
)
def test_language_is_negotiated(saved: str | None, telegram: str | None, expected: str) -> None:
    assert negotiate(saved, telegram, "zh_CN") == expected


def test_formatting_follows_the_locale() -> None:
    i18n = I18n(ZoneInfo("Asia/Shanghai"))
    zh, en = i18n.get("zh_CN"), i18n.get("en")
    assert zh.money(30050) == "¥300.50"
    # Families in China read "¥" in both languages (Babel's English symbol would be "CN¥").
    assert en.money(30050) == "¥300.50"
    assert zh.money(123450) == "¥1,234.50" and en.money(-5) == "-¥0.05"
    assert zh.weekday(1) == "星期一" and en.weekday(1) == "Monday"
    assert zh.date(dt.date(2026, 9, 1), "long") == "2026年9月1日"
    assert en.date(dt.date(2026, 9, 1), "long") == "September 1, 2026"
    # 07:30 UTC is 15:30 in Shanghai, when school ends (the "三点半难题").
    moment = dt.datetime(2026, 9, 1, 7, 30, tzinfo=dt.UTC)
    assert "15:30" in zh.datetime(moment, "short")
    assert zh.time(dt.time(15, 40)) == "15:40"
    assert zh.gettext("I agree") == "同意" and en.gettext("I agree") == "I agree"
