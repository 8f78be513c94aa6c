"""`bot.transport.AiohttpRequest`: PTB's calls over aiohttp, against the local Bot API sandbox.

Everything goes through a real `telegram.Bot` or `Application`, so PTB builds the requests
(`RequestData`) and maps the answers exactly as it does in production; a small capture server
checks that the bytes on the wire are the ones PTB's own httpx transport sends.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, TimedOut
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes
from telegram.request import BaseRequest, HTTPXRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bot.transport import AiohttpRequest
from sandbox.core import Sandbox
from sandbox.server import run_sandbox
from tests.e2e import free_port

TOKEN = "123456789:SANDBOX-transport-token"
BOT_NAME = "kehou_transport_bot"
MOM, DAD = 101, 102
MANY = range(1_000, 1_200)  # 200 people for the concurrency test


@pytest.fixture
def sandbox() -> Sandbox:
    sandbox = Sandbox(TOKEN, bot_username=BOT_NAME)
    sandbox.add_user(MOM, "张琪妈妈")
    sandbox.add_user(DAD, "Dad", language_code="en")
    for user_id in MANY:
        sandbox.add_user(user_id, f"家长{user_id}")
    return sandbox


@pytest.fixture
async def url(sandbox: Sandbox) -> AsyncIterator[str]:
    port = free_port()
    runner = await run_sandbox(sandbox, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def make_bot(url: str, **request_options: Any) -> Bot:
    return Bot(
        TOKEN,
        base_url=f"{url}/bot",
        base_file_url=f"{url}/file/bot",
        request=AiohttpRequest(**request_options),
        get_updates_request=AiohttpRequest(),
    )


# ---------------------------------------------------------------------------------------------
# The life cycle


async def test_defaults_and_life_cycle() -> None:
    request = AiohttpRequest()
    assert request.read_timeout == 5.0
    assert (request.write_timeout, request.connect_timeout, request.pool_timeout) == (5, 5, 1)
    assert request.connection_pool_size == 256
    assert AiohttpRequest(read_timeout=None).read_timeout is None
    assert not request.initialized
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:1/", "GET")
    await request.shutdown()  # before initialize: nothing to do
    await request.initialize()
    await request.initialize()
    assert request.initialized
    await request.shutdown()
    await request.shutdown()
    assert not request.initialized
    async with request:  # BaseRequest's context manager: initialize again after shutdown
        assert request.initialized
    assert not request.initialized
    with pytest.raises(ValueError, match="connection_pool_size"):
        AiohttpRequest(connection_pool_size=0)


# ---------------------------------------------------------------------------------------------
# Bot API calls through telegram.Bot


async def test_get_me_and_send_message_with_html_and_keyboard(sandbox: Sandbox, url: str) -> None:
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("确认 ✓", callback_data="ok"),
                InlineKeyboardButton("x", url="https://example.org/?a=1&b=2"),
            ]
        ]
    )
    async with make_bot(url) as bot:
        me = await bot.get_me()
        assert me.username == BOT_NAME and me.is_bot
        sent = await bot.send_message(
            MOM,
            "<b>明天</b> 停课 &amp; <i>注意</i> a+b=c",
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )
    assert sent.chat.id == MOM and sent.text == "明天 停课 & 注意 a+b=c"
    [stored] = sandbox.messages(MOM)
    assert stored["message_id"] == sent.message_id and stored["outgoing"]
    assert stored["html"] == "<b>明天</b> 停课 &amp; <i>注意</i> a+b=c"
    assert stored["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "确认 ✓", "callback_data": "ok"},
                {"text": "x", "url": "https://example.org/?a=1&b=2"},
            ]
        ]
    }


async def test_upload_and_download_a_document(sandbox: Sandbox, url: str) -> None:
    data = bytes(range(256)) * 40 + "课后".encode()
    async with make_bot(url) as bot:
        message = await bot.send_document(
            MOM,
            InputFile(data, filename="三年级 课程表.pdf"),
            caption="<b>新</b>课程表",
            parse_mode=ParseMode.HTML,
        )
        assert message.document is not None
        assert message.document.file_name == "三年级 课程表.pdf"
        assert message.caption == "新课程表"
        file = await bot.get_file(message.document.file_id)
        assert file.file_size == len(data)
        assert bytes(await file.download_as_bytearray()) == data
    [stored] = sandbox.messages(MOM)
    assert stored["document_name"] == "三年级 课程表.pdf"


async def test_a_file_handle_is_sent_whole_and_left_open(sandbox: Sandbox, url: str) -> None:
    """``InputFile(read_file_handle=False)`` hands PTB's transport the open file itself."""
    handle = io.BytesIO(b"%PDF-1.4 notice")
    handle.seek(5)  # httpx sends it from the start, whatever the position
    async with make_bot(url) as bot:
        for _ in range(2):  # a retry sends the same file again
            document = InputFile(handle, filename="通知.pdf", read_file_handle=False)
            message = await bot.send_document(MOM, document)
            assert message.document is not None
            file = await bot.get_file(message.document.file_id)
            assert bytes(await file.download_as_bytearray()) == b"%PDF-1.4 notice"
    assert not handle.closed


async def test_telegram_errors_arrive_as_ptb_exceptions(sandbox: Sandbox, url: str) -> None:
    sandbox.faults.blocked_users = {DAD}
    async with make_bot(url) as bot:
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(5, "nobody")
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(DAD, "hello")
        assert (await bot.send_message(MOM, "still fine")).text == "still fine"


async def test_a_slow_answer_times_out(sandbox: Sandbox, url: str) -> None:
    async with make_bot(url, read_timeout=0.3) as bot:  # initialize() calls getMe
        sandbox.faults.delay = 2.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimedOut) as timed_out:
            await bot.send_message(MOM, "late")
        assert loop.time() - started < 1.5
        assert "Pool" not in str(timed_out.value)
    sandbox.faults.delay = 0.0


async def test_timeouts_left_default_or_none(sandbox: Sandbox, url: str) -> None:
    """A timeout of None waits for ever; one left at DEFAULT_NONE is the constructor's."""
    async with make_bot(url, read_timeout=0.2) as bot:
        sandbox.faults.delay = 0.5
        with pytest.raises(TimedOut):
            await bot.get_me(read_timeout=BaseRequest.DEFAULT_NONE)
        assert (await bot.get_me(read_timeout=None)).username == BOT_NAME
        assert (await bot.get_me(read_timeout=2.0)).username == BOT_NAME
    sandbox.faults.delay = 0.0


async def test_a_full_pool_times_out_without_sending(sandbox: Sandbox, url: str) -> None:
    sandbox.faults.delay = 0.5
    request = AiohttpRequest(connection_pool_size=1, pool_timeout=0.1)
    async with request:
        results = await asyncio.gather(
            *(request.post(f"{url}/bot{TOKEN}/getMe") for _ in range(2)),
            return_exceptions=True,
        )
        [error] = [r for r in results if isinstance(r, BaseException)]
        assert isinstance(error, TimedOut) and "Pool timeout" in str(error)
        assert sandbox.counters.methods["getMe"] == 1
        # without a pool timeout the second call waits for the connection instead
        results = await asyncio.gather(
            *(request.post(f"{url}/bot{TOKEN}/getMe", pool_timeout=None) for _ in range(2))
        )
        assert all(isinstance(r, dict) for r in results)
    sandbox.faults.delay = 0.0


async def test_a_closed_port_is_a_network_error() -> None:
    port = free_port()  # nothing listens there any more
    async with AiohttpRequest(connect_timeout=2.0) as request:
        bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request)
        with pytest.raises(NetworkError, match=r"aiohttp\.ClientError") as error:
            await bot.get_me()
        assert not isinstance(error.value, TimedOut)
        assert error.value.__cause__ is not None  # the aiohttp exception, as the cause only


async def test_many_concurrent_sends(sandbox: Sandbox, url: str) -> None:
    async with make_bot(url) as bot:
        sent = await asyncio.gather(*(bot.send_message(uid, f"第{uid}号通知") for uid in MANY))
    assert [m.chat.id for m in sent] == list(MANY)
    for uid in MANY:
        [stored] = sandbox.messages(uid)
        assert stored["text"] == f"第{uid}号通知"


# ---------------------------------------------------------------------------------------------
# A PTB Application polling through it


async def test_an_application_polls_and_replies(sandbox: Sandbox, url: str) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("你好")

    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .request(AiohttpRequest())
        .get_updates_request(AiohttpRequest(connection_pool_size=2))
        .build()
    )
    assert isinstance(application.bot.request, AiohttpRequest)
    application.add_handler(CommandHandler("start", start))
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=1)
    try:
        seq = sandbox.seq
        await sandbox.user_sends(MOM, MOM, "/start")
        reply = await sandbox.wait_for_bot_message(MOM, after_seq=seq, timeout=10)
        assert reply["text"] == "你好"
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
    assert sandbox.counters.methods["getUpdates"] >= 1


# ---------------------------------------------------------------------------------------------
# The bytes on the wire, next to PTB's own httpx transport


@pytest.fixture
async def capture() -> AsyncIterator[tuple[str, list[tuple[str, bytes]]]]:
    """A server that keeps each request's Content-Type and body and answers ``ok``."""
    seen: list[tuple[str, bytes]] = []

    async def keep(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Content-Type", ""), await request.read()))
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", keep)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        await runner.cleanup()


def _parts(content_type: str, body: bytes) -> list[tuple[bytes, bytes]]:
    """(Content-Disposition line, content) of each part of a multipart body."""
    boundary = content_type.split("boundary=")[1].encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk[2:-2].partition(b"\r\n\r\n")
        [disposition] = [h for h in head.split(b"\r\n") if h.startswith(b"Content-Disposition")]
        parts.append((disposition, content))
    return parts


async def test_the_same_bytes_as_httpx(capture: tuple[str, list[tuple[str, bytes]]]) -> None:
    target, seen = capture

    def calls() -> list[RequestData | None]:
        return [
            None,
            RequestData(),
            RequestData(
                [
                    RequestParameter.from_input("chat_id", MOM),
                    RequestParameter.from_input("text", "中文 & a+b=c ✓"),
                    RequestParameter.from_input("reply_markup", {"k": [["好", 1]]}),
                ]
            ),
            RequestData(
                [
                    RequestParameter.from_input("chat_id", MOM),
                    RequestParameter.from_input("caption", "说明"),
                    RequestParameter.from_input(
                        "document", InputFile(b"\x00\x01pdf", filename='课程"表\\v1\n.pdf')
                    ),
                ]
            ),
        ]

    for request in (HTTPXRequest(), AiohttpRequest()):
        async with request:
            for data in calls():
                status, body = await request.do_request(target, "POST", data)
                assert (status, body) == (200, b'{"ok": true, "result": true}')

    httpx_seen, aiohttp_seen = seen[:4], seen[4:]
    for ours, theirs in zip(aiohttp_seen[:2], httpx_seen[:2], strict=True):
        assert ours[1] == theirs[1] == b""
    form, httpx_form = aiohttp_seen[2], httpx_seen[2]
    assert form == httpx_form
    assert form[0] == "application/x-www-form-urlencoded"
    multipart, httpx_multipart = aiohttp_seen[3], httpx_seen[3]
    assert multipart[0].startswith("multipart/form-data; boundary=")
    assert _parts(*multipart) == _parts(*httpx_multipart)
    assert [disposition for disposition, _ in _parts(*multipart)] == [
        b'Content-Disposition: form-data; name="chat_id"',
        b'Content-Disposition: form-data; name="caption"',
        b'Content-Disposition: form-data; name="document"; filename="'
        + "课程%22表\\\\v1%0A.pdf".encode()
        + b'"',
    ]
