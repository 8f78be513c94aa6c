"""No log line, traceback or error message shows the bot token or the webhook secret."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot import logs
from tests.test_cli import kehou

TOKEN = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
SECRET = "webhook-secret_Value-1"
OTHER_TOKEN = "987654321:ZZZfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure_logging("DEBUG", [TOKEN, SECRET], stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    for name in logs.LIBRARY_LEVELS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_a_formatted_line_never_shows_a_secret(captured: io.StringIO) -> None:
    log = logging.getLogger("kehou.test")
    log.info("POST https://api.telegram.org/bot%s/getMe", TOKEN)
    log.warning("secret %s, someone else's token %s", SECRET, OTHER_TOKEN)
    text = captured.getvalue()
    assert TOKEN not in text and SECRET not in text and OTHER_TOKEN not in text
    assert "bot***/getMe" in text


def test_a_traceback_never_shows_the_token(captured: io.StringIO) -> None:
    def initialize() -> None:
        raise RuntimeError(f"The token `{TOKEN}` was rejected by the server.")

    try:
        initialize()
    except RuntimeError:
        logging.getLogger("telegram.ext.Application").exception("Invalid token; aborting")
    text = captured.getvalue()
    assert "Traceback" in text and "was rejected" in text
    assert TOKEN not in text
    assert "123456789" not in text  # not even the bot's id part


def test_library_loggers_stay_quiet_at_debug(captured: io.StringIO) -> None:
    logging.getLogger("telegram.ext.ExtBot").debug("Calling Bot API endpoint `sendMessage`")
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/...")
    logging.getLogger("sqlalchemy.engine.Engine").info("[parameters] ('Wang Xiaoming',)")
    logging.getLogger("kehou.delivery").debug("own debug line")
    text = captured.getvalue()
    assert "sendMessage" not in text and "HTTP Request" not in text
    assert "Wang Xiaoming" not in text
    assert "own debug line" in text


class _Unauthorized(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("command", ["run", "deliver"])
def test_a_rejected_token_is_one_line(command: str, rejecting_server: str, tmp_path: Path) -> None:
    result = kehou(
        command,
        cwd=tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        KEHOU_API_BASE_URL=rejecting_server,
        KEHOU_LOG_LEVEL="DEBUG",
    )
    assert result.returncode == 3
    assert TOKEN not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if " DEBUG " not in line]
    assert len(lines) == 1, result.stderr
    assert "rejected the bot token" in lines[0] and "TELEGRAM_BOT_TOKEN" in lines[0]
