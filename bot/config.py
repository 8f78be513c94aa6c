"""Settings, read once from the environment (and an optional `.env`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from bot import logs
from bot.i18n import SUPPORTED_LOCALES
from bot.logs import RedactingFilter

__all__ = ["ConfigError", "RedactingFilter", "Secret", "Settings", "configure_logging"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///kehou.sqlite3"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    token: Secret | None = None
    database_url: str = DEFAULT_DATABASE_URL
    api_base_url: str | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    default_locale: str = "zh_CN"
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    invite_ttl_days: int = 30
    bot_username: str | None = None
    log_level: str = "INFO"
    # Bulk messages per second (Telegram asks for about 30; a little under leaves room for
    # network jitter), shared by every delivery worker. Replies are limited per chat only.
    send_rate: float = 29.0
    delivery: bool = True  # run an outbox delivery worker in this process
    # False (KEHOU_LIMITS=off): Kehou paces no sends, neither the bulk rate nor any chat's
    # bucket; for a local Bot API server and benchmarks only. A 429 is still honoured.
    limits: bool = True
    # Where the public disclosure page (bot.web: schedule and fee standards, 收费公示) is
    # reachable from outside, e.g. https://kehou.example.edu.cn; None: nothing links to it.
    public_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 8081  # 0: no web server in `kehou run`

    @property
    def bot_base_url(self) -> str | None:
        return f"{self.api_base_url.rstrip('/')}/bot" if self.api_base_url else None

    @property
    def bot_base_file_url(self) -> str | None:
        return f"{self.api_base_url.rstrip('/')}/file/bot" if self.api_base_url else None

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token "
                "in the environment or in .env (see README)"
            )
        return self.token.get()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
    ) -> Settings:
        """Read settings; the process environment wins over `.env`."""
        values: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls._parse(values)

    @classmethod
    def _parse(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        token = get("TELEGRAM_BOT_TOKEN")
        if token is not None and (":" not in token or not token.split(":", 1)[0].isdigit()):
            raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (<digits>:<key>)")

        database_url = get("KEHOU_DATABASE_URL") or DEFAULT_DATABASE_URL
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ConfigError(
                "KEHOU_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )

        api_base_url = get("KEHOU_API_BASE_URL")
        if api_base_url is not None:
            _check_api_base_url(api_base_url)

        tz_name = get("KEHOU_TIMEZONE") or "Asia/Shanghai"
        try:
            timezone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"KEHOU_TIMEZONE: unknown time zone {tz_name!r}") from None

        locale = get("KEHOU_DEFAULT_LOCALE") or "zh_CN"
        if locale not in SUPPORTED_LOCALES:
            raise ConfigError(
                f"KEHOU_DEFAULT_LOCALE must be one of {', '.join(SUPPORTED_LOCALES)}, "
                f"not {locale!r}"
            )

        webhook_url = get("KEHOU_WEBHOOK_URL")
        webhook_secret = get("KEHOU_WEBHOOK_SECRET")
        if webhook_url is not None:
            _check_http_url("KEHOU_WEBHOOK_URL", webhook_url)
            if webhook_secret is None:
                raise ConfigError("KEHOU_WEBHOOK_SECRET is required when KEHOU_WEBHOOK_URL is set")
        if webhook_secret is not None and not _valid_webhook_secret(webhook_secret):
            raise ConfigError(
                "KEHOU_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
            )

        listen = get("KEHOU_LISTEN") or "127.0.0.1:8080"
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"KEHOU_LISTEN must be host:port, not {listen!r}")

        ttl_text = get("KEHOU_INVITE_TTL_DAYS") or "30"
        if not ttl_text.isdigit() or not 1 <= int(ttl_text) <= 365:
            raise ConfigError("KEHOU_INVITE_TTL_DAYS must be a whole number of days from 1 to 365")

        bot_username = (get("KEHOU_BOT_USERNAME") or "").lstrip("@") or None
        if bot_username is not None and not (
            5 <= len(bot_username) <= 32 and bot_username.replace("_", "").isalnum()
        ):
            raise ConfigError(f"KEHOU_BOT_USERNAME is not a Telegram username: {bot_username!r}")

        log_level = (get("KEHOU_LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("KEHOU_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

        rate_text = get("KEHOU_SEND_RATE") or "29"
        try:
            send_rate = float(rate_text)
        except ValueError:
            send_rate = 0.0
        if not 0 < send_rate <= 10_000:
            raise ConfigError("KEHOU_SEND_RATE must be a number of messages per second above 0")

        delivery_text = (get("KEHOU_DELIVERY") or "on").lower()
        if delivery_text not in ("on", "off"):
            raise ConfigError("KEHOU_DELIVERY must be on or off")

        limits_text = (get("KEHOU_LIMITS") or "on").lower()
        if limits_text not in ("on", "off"):
            raise ConfigError("KEHOU_LIMITS must be on or off")

        public_url = get("KEHOU_PUBLIC_URL")
        if public_url is not None:
            _check_http_url("KEHOU_PUBLIC_URL", public_url)
            if urlparse(public_url).query or urlparse(public_url).fragment:
                raise ConfigError("KEHOU_PUBLIC_URL must be a plain address without ?query or #")
            public_url = public_url.rstrip("/")
        web_host = get("KEHOU_WEB_HOST") or "127.0.0.1"
        web_port_text = get("KEHOU_WEB_PORT") or "8081"
        if not web_port_text.isdigit() or not 0 <= int(web_port_text) < 65536:
            raise ConfigError(
                f"KEHOU_WEB_PORT must be a port number (0: no web server), not {web_port_text!r}"
            )

        return cls(
            token=Secret(token) if token else None,
            database_url=database_url,
            api_base_url=api_base_url,
            timezone=timezone,
            default_locale=locale,
            webhook_url=webhook_url,
            webhook_secret=Secret(webhook_secret) if webhook_secret else None,
            listen_host=host,
            listen_port=int(port_text),
            invite_ttl_days=int(ttl_text),
            bot_username=bot_username,
            log_level=log_level,
            send_rate=send_rate,
            delivery=delivery_text == "on",
            limits=limits_text == "on",
            public_url=public_url,
            web_host=web_host,
            web_port=int(web_port_text),
        )


def _check_http_url(name: str, value: str) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, not {value!r}")


# The last path segment PTB itself adds: `bot` or `bot<token>`, and `file/bot…` for files.
_BOT_SEGMENT = re.compile(r"bot(\d+:[A-Za-z0-9_-]*)?", re.IGNORECASE)


def _check_api_base_url(value: str) -> None:
    """The Bot API server's root: PTB appends `/bot<token>/<method>`, so a `/bot` here breaks."""
    name = "KEHOU_API_BASE_URL"
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        # Not echoed back: a pasted URL with a token in it must not reach a log.
        raise ConfigError(
            f"{name} must be the Bot API server's http(s) address, like http://127.0.0.1:8081"
        )
    if parsed.query or parsed.fragment:
        raise ConfigError(f"{name} must be a plain address without ?query or #fragment")
    segments = parsed.path.rstrip("/").split("/")
    if not _BOT_SEGMENT.fullmatch(segments[-1]):
        return
    segments.pop()
    if segments[-1:] == ["file"]:
        segments.pop()
    root = f"{parsed.scheme}://{parsed.netloc}{'/'.join(segments)}"
    raise ConfigError(f"{name} must not end in /bot (Kehou adds /bot<token> itself): write {root}")


def _valid_webhook_secret(value: str) -> bool:
    return 1 <= len(value) <= 256 and all(c.isalnum() or c in "_-" for c in value)


def configure_logging(settings: Settings) -> None:
    """Log to stderr with the token and webhook secret redacted (see bot.logs)."""
    secrets = [s.get() for s in (settings.token, settings.webhook_secret) if s]
    logs.configure_logging(settings.log_level, secrets)
