"""Translations and locale-aware formatting, chosen per user and carried on the context."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, get_day_names
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

SUPPORTED_LOCALES = ("zh_CN", "en")
DOMAIN = "messages"
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, where the locale is known."""
    return message


class CatalogError(RuntimeError):
    """A catalog is missing or broken; Kehou will not start with it."""


def _compile(po_path: Path, locale: str) -> Translations:
    """Compile a .po file in memory, so a fresh checkout needs no separate compile step."""
    with po_path.open("rb") as fp:
        catalog = read_po(fp, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def load_catalogs(directory: Path = LOCALES_DIR) -> dict[str, Translations]:
    """Load every supported locale's catalog; fails loudly if one is missing."""
    catalogs = {}
    for locale in SUPPORTED_LOCALES:
        po_path = directory / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
        if not po_path.is_file():
            raise CatalogError(f"missing translation catalog {po_path}")
        catalogs[locale] = _compile(po_path, locale)
    return catalogs


def negotiate(
    saved: str | None, telegram_code: str | None, default: str = SUPPORTED_LOCALES[0]
) -> str:
    """The user's saved choice, else their Telegram language, else the school's default."""
    if saved in SUPPORTED_LOCALES:
        return saved
    if telegram_code:
        try:
            language = Locale.parse(telegram_code, sep="-").language
        except (ValueError, UnknownLocaleError):
            language = None
        for candidate in SUPPORTED_LOCALES:
            if language and Locale.parse(candidate).language == language:
                return candidate
    return default


@dataclass(frozen=True)
class Translator:
    """Everything a reply needs to speak one user's language."""

    locale: str
    translations: Translations
    timezone: ZoneInfo

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        return str(self.translations.pgettext(context, message))

    def date(self, value: dt.date, format: str = "medium") -> str:
        return format_date(value, format=format, locale=self.locale)

    def time(self, value: dt.time) -> str:
        return format_time(value, format="short", locale=self.locale)

    def datetime(self, value: dt.datetime, format: str = "medium") -> str:
        """A moment shown in the school's time zone."""
        return format_datetime(value, format=format, tzinfo=self.timezone, locale=self.locale)

    def weekday(
        self, iso_weekday: int, width: Literal["abbreviated", "narrow", "short", "wide"] = "wide"
    ) -> str:
        """ISO weekday 1 = Monday; Babel counts Monday as 0."""
        return get_day_names(width, locale=self.locale)[iso_weekday - 1]

    def weekdays(self, iso_weekdays: Iterable[int]) -> str:
        separator = "、" if self.locale.startswith("zh") else ", "
        return separator.join(self.weekday(d, "abbreviated") for d in iso_weekdays)

    def money(self, fen: int) -> str:
        """An amount in fen (1/100 yuan) in the user's locale: ¥1,234.50 in both languages.

        Babel's English symbol for the yuan is "CN¥"; families in China read "¥", so the
        pattern names it, and Babel still places the separators and the sign.
        """
        return format_decimal(Decimal(fen) / 100, format="¥#,##0.00", locale=self.locale)


class I18n:
    """The loaded catalogs; hands out a Translator for a locale."""

    def __init__(self, timezone: ZoneInfo, default_locale: str = SUPPORTED_LOCALES[0]) -> None:
        self.catalogs = load_catalogs()
        self.timezone = timezone
        self.default_locale = default_locale
        self._translators = {
            locale: Translator(locale, translations, timezone)
            for locale, translations in self.catalogs.items()
        }
        self._zoned: dict[tuple[str, str], Translator] = {}

    def get(self, locale: str | None, zone: str | None = None) -> Translator:
        """The locale's translator, showing times in `zone` (a school's) when given."""
        translator = self._translators.get(locale or "", self._translators[self.default_locale])
        return self._in_zone(translator, zone)

    def choose(
        self, saved: str | None, telegram_code: str | None, zone: str | None = None
    ) -> Translator:
        translator = self._translators[negotiate(saved, telegram_code, self.default_locale)]
        return self._in_zone(translator, zone)

    def _in_zone(self, translator: Translator, zone: str | None) -> Translator:
        # The school's zone decides "today", cut-offs and typed times; KEHOU_TIMEZONE only
        # serves people who belong to no school yet.
        if zone is None or zone == translator.timezone.key:
            return translator
        key = (translator.locale, zone)
        if key not in self._zoned:
            self._zoned[key] = replace(translator, timezone=ZoneInfo(zone))
        return self._zoned[key]
