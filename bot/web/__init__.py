"""Kehou's own public web page: each school's schedule and fee disclosure (docs/WEB.md).

    GET /healthz                 200 "ok"
    GET /schools/{code}          the school's current term: schedule and disclosed fees
                                 (?lang=en or ?lang=zh_CN; default: the school's language)

`kehou run` serves it on KEHOU_WEB_HOST:KEHOU_WEB_PORT next to the bot (`start`); the demo
adds the routes to its sandbox (`add_routes`). The bot and the printed letters link to it with
`disclosure_url`, which needs KEHOU_PUBLIC_URL: where the page is reachable from outside.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

if TYPE_CHECKING:
    from jinja2 import Environment

    from bot.config import Settings
    from bot.i18n import I18n, Translator
    from storage.db import Database

log = logging.getLogger(__name__)

__all__ = ["add_routes", "create_app", "disclosure_url", "start"]

Clock = Callable[[], dt.datetime]
DB: web.AppKey[Database] = web.AppKey("kehou_web_db")
I18N: web.AppKey[I18n] = web.AppKey("kehou_web_i18n")
CLOCK: web.AppKey[Clock] = web.AppKey("kehou_web_clock")
HEADERS = {
    # Inline styles only; no script, no frame, nothing fetched from elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=300",
}
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}  # each in its own language, never translated
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


def disclosure_url(settings: Settings, school_code: str, locale: str | None = None) -> str | None:
    """The school's public disclosure page, for the bot and the letters to link to; None when
    KEHOU_PUBLIC_URL is not set."""
    if not settings.public_url:
        return None
    url = f"{settings.public_url.rstrip('/')}/schools/{quote(school_code, safe='')}"
    return f"{url}?{urlencode({'lang': locale})}" if locale else url


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(db: Database, i18n: I18n, *, clock: Clock = _now) -> web.Application:
    """The web application with the disclosure page and nothing else."""
    app = web.Application()
    add_routes(app, db, i18n, clock=clock)
    return app


def add_routes(app: web.Application, db: Database, i18n: I18n, *, clock: Clock = _now) -> None:
    """Serve the page from an existing application (the demo's sandbox)."""
    app[DB] = db
    app[I18N] = i18n
    app[CLOCK] = clock
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/schools/{code}", _school_page)


async def start(settings: Settings, db: Database, i18n: I18n) -> web.AppRunner | None:
    """Serve the page on KEHOU_WEB_HOST:KEHOU_WEB_PORT until the runner is cleaned up;
    None when KEHOU_WEB_PORT is 0."""
    if not settings.web_port:
        return None
    runner = web.AppRunner(create_app(db, i18n), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info(
        "disclosure pages at http://%s:%d/schools/<code> (public: %s)",
        settings.web_host,
        settings.web_port,
        settings.public_url or "KEHOU_PUBLIC_URL not set",
    )
    return runner


# --- rendering --------------------------------------------------------------------------------


@cache
def _css() -> str:
    return files("bot.web").joinpath("static", "disclosure.css").read_text(encoding="utf-8")


def _environment(t: Translator) -> Environment:
    """One Jinja2 environment per language: autoescaped, with the catalogs' gettext."""
    return _environments(t.locale, t.translations)


@cache
def _environments(locale: str, translations: object) -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("bot.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        translations.gettext,  # type: ignore[attr-defined]
        translations.ngettext,  # type: ignore[attr-defined]
        newstyle=True,
    )
    return env


def _locale(request: web.Request, default: str, i18n: I18n) -> str:
    wanted = request.query.get("lang", "").replace("-", "_")
    if wanted in i18n.catalogs:
        return wanted
    if wanted.lower().startswith("zh"):
        return "zh_CN"
    if wanted.lower().startswith("en"):
        return "en"
    return default if default in i18n.catalogs else i18n.default_locale


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _school_page(request: web.Request) -> web.Response:
    from markupsafe import Markup

    from bot.web import disclosure

    i18n = request.app[I18N]
    code = request.match_info["code"]
    async with request.app[DB].transaction() as session:
        school = await disclosure.find_school(session, code)
        if school is None:
            return _not_found(i18n)
        locale = _locale(request, school.default_locale, i18n)
        t = i18n.get(locale, school.timezone)
        now = request.app[CLOCK]()
        today = now.astimezone(ZoneInfo(school.timezone)).date()
        page = await disclosure.load(session, school, t, today)
    others = [
        (other, LANGUAGE_NAMES.get(other, other), HTML_LANG.get(other, other))
        for other in i18n.catalogs
        if other != locale
    ]
    body = (
        _environment(t)
        .get_template("disclosure.html")
        .render(
            page=page,
            css=Markup(_css()),
            html_lang=HTML_LANG.get(locale, locale),
            languages=others,
            as_of=t.datetime(now, format="short"),
        )
    )
    return _html(body)


def _not_found(i18n: I18n) -> web.Response:
    """A polite 404 in every language: who typed the address is not known."""
    from markupsafe import Markup

    messages = []
    for locale in i18n.catalogs:
        t = i18n.get(locale)
        messages.append(
            {
                "lang": HTML_LANG.get(locale, locale),
                "title": t.gettext("School not found"),
                "text": t.gettext(
                    "There is no school at this address. Please check the link, or ask "
                    "the school for the address of its after-school service page."
                ),
            }
        )
    env = _environment(i18n.get(i18n.default_locale))
    body = env.get_template("not_found.html").render(
        messages=messages,
        css=Markup(_css()),
        html_lang=HTML_LANG.get(i18n.default_locale, i18n.default_locale),
    )
    return _html(body, status=404)
