"""Settings: defaults, one-line errors naming the bad variable, and a token that never leaks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import ConfigError, RedactingFilter, Settings

TOKEN = "123456:AAE-secret-token-value"


def parse(**env: str) -> Settings:
    return Settings.from_env(environ=env, env_file=None)


def test_defaults_are_sqlite_shanghai_and_chinese() -> None:
    settings = parse()
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.timezone.key == "Asia/Shanghai"
    assert settings.default_locale == "zh_CN"
    assert settings.token is None
    assert (settings.send_rate, settings.delivery) == (29.0, True)


def test_delivery_settings() -> None:
    settings = parse(KEHOU_SEND_RATE="12.5", KEHOU_DELIVERY="off")
    assert (settings.send_rate, settings.delivery) == (12.5, False)


def test_limits_are_on_unless_lifted() -> None:
    assert parse().limits is True
    assert parse(KEHOU_LIMITS="off").limits is False


def test_api_base_url_becomes_ptb_base_urls() -> None:
    settings = parse(KEHOU_API_BASE_URL="http://127.0.0.1:8081/")
    assert settings.bot_base_url == "http://127.0.0.1:8081/bot"
    assert settings.bot_base_file_url == "http://127.0.0.1:8081/file/bot"


@pytest.mark.parametrize(
    ("value", "write"),
    [
        ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081"),
        ("http://127.0.0.1:8081/bot/", "http://127.0.0.1:8081"),
        (f"https://api.example.org/telegram/bot{TOKEN}", "https://api.example.org/telegram"),
        ("http://127.0.0.1:8081/file/bot", "http://127.0.0.1:8081"),
    ],
)
def test_an_api_base_url_ending_in_bot_says_what_to_write(value: str, write: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(KEHOU_API_BASE_URL=value)
    message = str(caught.value)
    assert message.startswith("KEHOU_API_BASE_URL") and "\n" not in message
    assert message.endswith(f"write {write}")
    assert TOKEN not in message  # a pasted token is never echoed


@pytest.mark.parametrize("value", ["127.0.0.1:8081", "localhost", "ftp://host", "http://"])
def test_an_api_base_url_that_is_not_http_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(KEHOU_API_BASE_URL=value)
    message = str(caught.value)
    assert message.startswith("KEHOU_API_BASE_URL") and "\n" not in message
    assert "http://127.0.0.1:8081" in message


def test_an_api_base_url_under_a_path_is_kept() -> None:
    settings = parse(KEHOU_API_BASE_URL="https://proxy.example.org/botapi")
    assert settings.bot_base_url == "https://proxy.example.org/botapi/bot"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEHOU_TIMEZONE", "Mars/Olympus"),
        ("KEHOU_DEFAULT_LOCALE", "fr"),
        ("KEHOU_DATABASE_URL", "mysql://x"),
        ("KEHOU_API_BASE_URL", "ftp://host"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token"),
        ("KEHOU_LISTEN", "localhost"),
        ("KEHOU_WEBHOOK_URL", "https://bot.example.org/hook"),  # without a secret
        ("KEHOU_INVITE_TTL_DAYS", "0"),
        ("KEHOU_SEND_RATE", "fast"),
        ("KEHOU_SEND_RATE", "0"),
        ("KEHOU_DELIVERY", "maybe"),
        ("KEHOU_LIMITS", "fewer"),
    ],
)
def test_a_bad_value_is_named_in_one_line(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**{name: value})
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KEHOU_TIMEZONE=Asia/Urumqi\nKEHOU_DEFAULT_LOCALE=en\n")
    settings = Settings.from_env(environ={"KEHOU_DEFAULT_LOCALE": "zh_CN"}, env_file=env_file)
    assert settings.timezone.key == "Asia/Urumqi"
    assert settings.default_locale == "zh_CN"


def test_token_is_hidden_from_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = parse(TELEGRAM_BOT_TOKEN=TOKEN)
    assert settings.require_token() == TOKEN
    assert TOKEN not in repr(settings)
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter(TOKEN))
    with caplog.at_level(logging.INFO):
        logger.info("POST https://api.telegram.org/bot%s/getMe", TOKEN)
    assert TOKEN not in caplog.text
    assert "bot***" in caplog.text


def test_missing_token_explains_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"TELEGRAM_BOT_TOKEN.*BotFather"):
        parse().require_token()
